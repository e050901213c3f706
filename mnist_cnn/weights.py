"""Trained nets that ship with the package, the torchvision way: weights enums and builders.

    from mnist_cnn import ImprovedNetWeights, improved_net

    weights = ImprovedNetWeights.DEFAULT
    model = improved_net(weights=weights)  # trained, in eval mode
    image = weights.transforms()("my_digit.png")  # 1x28x28, as the net expects it
    weights.meta["categories"][model(image[None]).argmax()]

Each member is a safetensors file in mnist_cnn/weights/ (tensors and a JSON header: no pickle,
so loading one can never run code), checked against its sha256 before it is used. Its metadata
records how it was made: `python scripts/make_weights.py` makes the same files again, bit for
bit, with the same torch version and thread count.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from .checkpoint import TrainedModel, check_dataset, load_trained
from .data import DATASETS
from .errors import MnistCnnError, first_line
from .model import build_model, count_parameters
from .preprocess import load_digit, to_mnist

WEIGHTS_DIR = Path(__file__).with_name("weights")
METADATA_KEY = "mnist_cnn"  # the safetensors header entry holding the JSON metadata


class WeightsEnum(Enum):
    """A model's shipped weights: each member's value is (file name, its sha256)."""

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.value[0]

    @property
    def meta(self) -> dict[str, Any]:
        """What the file says of itself (model, data set, normalization, accuracy, recipe, ...),
        with `categories`, `num_params` and the file's `sha256`."""
        meta = read_metadata(self.path)
        classes = list(DATASETS[meta["dataset"]].classes)
        model = build_model(meta["model"], **meta["model_args"])
        return {**meta, "categories": classes, "num_params": count_parameters(model), "sha256": self.value[1]}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The trained tensors, once the file's bytes match its sha256."""
        data = read_checked(self.path, self.value[1])
        return load_tensors(data, self.path)

    def transforms(self) -> Callable[[Image.Image | str | os.PathLike], torch.Tensor]:
        """A function from a PIL image or an image file to the normalized 1x28x28 tensor the net
        expects: the preprocessing `predict` uses, with these weights' normalization."""
        normalization = tuple(self.meta["normalization"])

        def transform(image: Image.Image | str | os.PathLike) -> torch.Tensor:
            if isinstance(image, Image.Image):
                return to_mnist(image, normalization)
            return load_digit(image, normalization)[1]  # its errors name the file, as predict's do

        return transform

    def load(self, device: torch.device | str = "cpu") -> TrainedModel:
        """The trained net on device, in eval mode, with its data set and normalization."""
        meta = self.meta
        model = build_model(meta["model"], **meta["model_args"])
        model.load_state_dict(self.state_dict())
        return trained_from_metadata(model.to(device).eval(), meta)

    @classmethod
    def get(cls, name: str | WeightsEnum) -> WeightsEnum:
        """A member, or its name ("DEFAULT", "MNIST_V1"), as torchvision's weights= takes it."""
        if isinstance(name, cls):
            return name
        try:
            return cls[str(name)]
        except KeyError:
            raise MnistCnnError(
                f"no weights {name!r} for {cls.__name__}; there are {', '.join(cls.__members__)}"
            ) from None


class SeedNetWeights(WeightsEnum):
    """The seed's net (9,032 parameters), trained by its recipe with --epochs 15."""

    MNIST_V1 = (
        "seed-mnist-v1.safetensors",
        "6fbb6dd93ce5da88865de7973e96f0311cef9e6154f57193cc66c9000c2a55df",
    )
    DEFAULT = MNIST_V1


class ImprovedNetWeights(WeightsEnum):
    """The improved net (8,880 parameters): the V1 files trained by its first recipe (15 epochs:
    config.IMPROVED_V1), MNIST_V2 by today's (40 epochs, chosen on a validation split)."""

    MNIST_V1 = (
        "improved-mnist-v1.safetensors",
        "345a5bb829a65e59f7de51a9f2a44d3609dbab341d1776a1a394e617e8ee01a0",
    )
    FASHION_MNIST_V1 = (
        "improved-fashion-mnist-v1.safetensors",
        "5734cbc484e4ac9322864f8adf700148aa5261176f5e94c7e43e3ead927d6ec6",
    )
    MNIST_V2 = (
        "improved-mnist-v2.safetensors",
        "e9e1c5b869ddb0bfca4139064604e3cab6cbd58e5201f259515e96d9d7471723",
    )
    DEFAULT = MNIST_V2


WEIGHTS: dict[str, type[WeightsEnum]] = {"seed": SeedNetWeights, "improved": ImprovedNetWeights}


def seed_net(*, weights: SeedNetWeights | str | None = None, **kwargs: Any) -> nn.Module:
    """The seed's Net; with weights (a member or its name, "DEFAULT" say), trained and in eval mode."""
    return built("seed", weights, kwargs)


def improved_net(*, weights: ImprovedNetWeights | str | None = None, **kwargs: Any) -> nn.Module:
    """The improved net; with weights (a member or its name, "DEFAULT" say), trained and in eval mode."""
    return built("improved", weights, kwargs)


def built(name: str, weights: WeightsEnum | str | None, kwargs: dict[str, Any]) -> nn.Module:
    if weights is None:
        return build_model(name, **kwargs)
    member = WEIGHTS[name].get(weights)
    saved = member.meta["model_args"]
    changed = sorted(k for k, v in kwargs.items() if saved.get(k, v) != v or k not in saved)
    if changed:
        raise MnistCnnError(f"{member} was trained with other {', '.join(changed)}; leave them out")
    return member.load().model


def default_weights(dataset: str | None = None) -> WeightsEnum:
    """The shipped weights predict uses when given no net: the improved net's newest for dataset
    (MNIST when none is named); a data set that no shipped net learnt is an MnistCnnError."""
    for member in reversed(ImprovedNetWeights):  # the members are listed oldest first
        if member.meta["dataset"] == (dataset or "mnist"):
            return member
    raise MnistCnnError(f"no shipped net learnt {dataset}: give a checkpoint trained on it")


def get_weights(name: str) -> WeightsEnum:
    """Shipped weights by the name the command lines take: "DEFAULT" (the improved net on
    MNIST), "improved" or "seed" (that net's default), "improved:FASHION_MNIST_V1", or
    "ImprovedNetWeights.MNIST_V1"."""
    model, _, member = name.replace(".", ":").partition(":")
    if not member and model == "DEFAULT":
        return ImprovedNetWeights.DEFAULT
    enums = {**WEIGHTS, **{enum.__name__: enum for enum in WEIGHTS.values()}}
    try:
        return enums[model].get(member or "DEFAULT")
    except (KeyError, MnistCnnError):
        names = ", ".join(f"{m}:{w}" for m, enum in WEIGHTS.items() for w in enum.__members__)
        raise MnistCnnError(f"--weights {name!r}: no such weights; there are DEFAULT, {names}") from None


def read_metadata(path: Path) -> dict[str, Any]:
    """The JSON metadata in a safetensors file's header (the header only: no tensor is read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as file:
            header = file.metadata() or {}
        return json.loads(header[METADATA_KEY])
    except FileNotFoundError:
        raise MnistCnnError(f"{path}: no such weights file") from None
    except (KeyError, ValueError, TypeError):
        raise MnistCnnError(f"{path} is not an mnist-cnn weights file (no {METADATA_KEY} metadata)") from None
    except Exception as error:  # safetensors' own error for a damaged header
        raise MnistCnnError(f"{path} is not a readable safetensors file ({first_line(error)})") from None


def read_checked(path: Path, sha256: str) -> bytes:
    """path's bytes, when their sha256 is the one expected; a damaged file is an MnistCnnError."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise MnistCnnError(f"{path}: {error.strerror}") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise MnistCnnError(
            f"{path} is damaged: its sha256 is not the one it shipped with; reinstall mnist-cnn"
        )
    return data


def load_tensors(data: bytes, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file's bytes."""
    from safetensors.torch import load

    try:
        return load(data)
    except Exception as error:  # safetensors raises its own error type for damaged files
        raise MnistCnnError(f"{path} is not a readable safetensors file ({first_line(error)})") from None


def net_metadata(trained: TrainedModel) -> dict[str, Any]:
    """What a weights file must say to rebuild its net: model, arguments, data set, normalization."""
    return {
        "model": trained.name,
        "model_args": trained.args,
        "dataset": trained.dataset,
        "normalization": list(trained.normalization),
        "torch": torch.__version__,
    }


def weights_bytes(model: nn.Module, metadata: dict[str, Any]) -> bytes:
    """model's state dict and metadata as the bytes of a safetensors file, as the shipped ones are."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return save(tensors, metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)})


def trained_from_metadata(model: nn.Module, meta: dict[str, Any]) -> TrainedModel:
    """A loaded net with what a weights file's metadata says of it (its test accuracy, when it
    records one: the shipped files do, export's do not)."""
    accuracy = meta.get("metrics", {}).get("test_accuracy")
    return TrainedModel(
        model,
        meta["dataset"],
        tuple(meta["normalization"]),
        meta["model"],
        meta.get("model_args", {}),
        accuracy,
    )


def load_weights_file(path: str | os.PathLike, device: torch.device | str = "cpu") -> TrainedModel:
    """A net saved as weights_bytes writes it (export --format safetensors), on device, in eval mode."""
    path = Path(path)
    meta = read_metadata(path)
    try:
        name, args = meta["model"], meta.get("model_args", {})
        model = build_model(name, **args)
        model.load_state_dict(load_tensors(path.read_bytes(), path))
        return trained_from_metadata(model.to(device).eval(), meta)
    except (KeyError, RuntimeError, TypeError, MnistCnnError) as error:
        raise MnistCnnError(f"{path} does not hold a whole mnist-cnn net ({first_line(error)})") from None


def open_net(
    checkpoint: str | os.PathLike | None,
    weights: str | None,
    device: torch.device | str = "cpu",
    dataset: str | None = None,
) -> TrainedModel:
    """The net a command was given: a checkpoint written by training (best.pt), a weights file
    (.safetensors, as export writes them), or shipped weights by name (--weights, see
    get_weights). With dataset (--dataset), a net that learnt another data set is refused."""
    if checkpoint is not None and weights is not None:
        raise MnistCnnError("give a checkpoint or --weights, not both")
    if checkpoint is None and weights is None:
        raise MnistCnnError(
            "give a checkpoint, or --weights NAME (DEFAULT: the shipped improved net on MNIST)"
        )
    if checkpoint is not None and Path(checkpoint).suffix.lower() != ".safetensors":
        return load_trained(checkpoint, device, dataset)
    source = checkpoint if checkpoint is not None else f"--weights {weights}"
    trained = (
        load_weights_file(checkpoint, device) if checkpoint is not None else get_weights(weights).load(device)
    )
    check_dataset(source, trained.dataset, dataset)
    return trained
