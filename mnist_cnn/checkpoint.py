"""Saving and loading runs and models. Writes are atomic; loads never unpickle code."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import MnistCnnError
from .model import MODELS, build_model


def save_checkpoint(path: str | os.PathLike, checkpoint: dict[str, Any]) -> None:
    """Write checkpoint to path through a temporary file in the same folder and a rename,
    so a crash mid-write leaves the previous file whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            torch.save(checkpoint, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint with weights_only=True: tensors and plain data only, never code."""
    path = Path(path)
    if not path.is_file():
        raise MnistCnnError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise MnistCnnError(f"{path} is not a readable checkpoint: {reason}") from None
    if not isinstance(checkpoint, dict) or "model_state" not in checkpoint:
        raise MnistCnnError(f"{path} is not an mnist-cnn checkpoint (no model_state)")
    return checkpoint


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu") -> nn.Module:
    """The trained net stored in a checkpoint, on device, in eval mode."""
    checkpoint = load_checkpoint(path)
    name = checkpoint.get("model", "seed")
    if name not in MODELS:
        raise MnistCnnError(f"{path} holds an unknown model {name!r}")
    model = build_model(name, **checkpoint.get("model_args", {}))
    try:
        model.load_state_dict(checkpoint["model_state"])
    except (RuntimeError, TypeError, AttributeError) as error:
        reason = str(error).strip().splitlines()[0]
        raise MnistCnnError(f"{path} does not fit the {name!r} model: {reason}") from None
    return model.to(device).eval()
