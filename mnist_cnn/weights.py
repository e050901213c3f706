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

import copy
import os
from collections.abc import Callable
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from .checkpoint import TrainedModel
from .data import DATASETS
from .errors import MnistCnnError, moved
from .model import build_model, count_parameters
from .preprocess import load_digit, to_mnist
from .weights_file import (
    build_from_metadata,
    load_tensors,
    read_checked,
    read_metadata,
    trained_from_metadata,
)

WEIGHTS_DIR = Path(__file__).with_name("weights")


class WeightsEnum(Enum):
    """A model's shipped weights: each member's value is (file name, its sha256)."""

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.value[0]

    @property
    def meta(self) -> dict[str, Any]:
        """What the file says of itself (model, data set, normalization, accuracy, recipe, ...),
        with `categories`, `num_params` and the file's `sha256`. Its header is read once."""
        return copy.deepcopy(shipped_metadata(self.path, self.value[1]))

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
        return trained_from_metadata(build_from_metadata(meta, self.state_dict()).to(device), meta)

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


@cache
def shipped_metadata(path: Path, sha256: str) -> dict[str, Any]:
    """A shipped file's metadata, with `categories`, `num_params` and `sha256`: read once a
    process (the file's bytes are checked against sha256 when its tensors are read)."""
    meta = read_metadata(path)
    classes = list(DATASETS[meta["dataset"]].classes)
    model = build_model(meta["model"], **meta["model_args"])
    return {**meta, "categories": classes, "num_params": count_parameters(model), "sha256": sha256}


def seed_net(*, weights: SeedNetWeights | str | None = None, **kwargs: Any) -> nn.Module:
    """The seed's Net; with weights (a member or its name, "DEFAULT" say), trained and in eval mode."""
    return built("seed", weights, kwargs)


def improved_net(*, weights: ImprovedNetWeights | str | None = None, **kwargs: Any) -> nn.Module:
    """The improved net; with weights (a member or its name, "DEFAULT" say), trained and in eval mode."""
    return built("improved", weights, kwargs)


def separable_net(*, weights: str | None = None, **kwargs: Any) -> nn.Module:
    """The separable net the search found (8,982 parameters), untrained: no weights ship for it."""
    return built("separable", weights, kwargs)


def built(name: str, weights: WeightsEnum | str | None, kwargs: dict[str, Any]) -> nn.Module:
    if weights is None:
        return build_model(name, **kwargs)
    if name not in WEIGHTS:
        raise MnistCnnError(f"no trained weights ship for the {name} net: train it with --model {name}")
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


# Moved to weights_file.py (the file format) and loading.py (whatever net the user named).
__getattr__ = moved(
    __name__,
    {
        **dict.fromkeys(
            ["METADATA_KEY", "net_metadata", "weights_bytes", "load_weights_file"],
            ".weights_file",
        ),
        "open_net": ".loading",
    },
)
