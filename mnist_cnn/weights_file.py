"""The weights file: a net's state dict in safetensors, with a JSON header that says how to
rebuild it (model, arguments, data set, normalization). Tensors and text only, no pickle, so
reading one can never run code. The shipped nets (weights.py) and `export --format safetensors`
write this format.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import TrainedModel
from .errors import MnistCnnError, first_line
from .model import build_model

METADATA_KEY = "mnist_cnn"  # the safetensors header entry holding the JSON metadata


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


def read_metadata_bytes(data: bytes, source: str | os.PathLike) -> dict[str, Any]:
    """read_metadata for a safetensors file's bytes held in memory (inside a .pt2, say): its header
    is an 8-byte little-endian length, then that much JSON, whose __metadata__ holds ours."""
    try:
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + size])
        return json.loads(header["__metadata__"][METADATA_KEY])
    except (ValueError, KeyError, TypeError):
        raise MnistCnnError(f"{source} does not hold an mnist-cnn weights file") from None


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


def build_from_metadata(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> nn.Module:
    """The net a weights file describes, with its tensors loaded, in eval mode on the CPU."""
    model = build_model(meta["model"], **meta.get("model_args", {}))
    model.load_state_dict(tensors)
    return model.eval()


def load_weights_file(path: str | os.PathLike, device: torch.device | str = "cpu") -> TrainedModel:
    """A net saved as weights_bytes writes it (export --format safetensors), on device, in eval
    mode. The file is read afresh every time."""
    path = Path(path)
    meta = read_metadata(path)
    try:
        model = build_from_metadata(meta, load_tensors(path.read_bytes(), path))
        return trained_from_metadata(model.to(device), meta)
    except (KeyError, RuntimeError, TypeError, ValueError, MnistCnnError) as error:
        raise MnistCnnError(f"{path} does not hold a whole mnist-cnn net ({first_line(error)})") from None
