"""Saving and loading runs and models. Writes are atomic; loads never unpickle code."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from .data import DATASETS, MNIST_NORMALIZATION, Normalization
from .errors import MnistCnnError, first_line
from .model import MODELS, build_model


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write data to path through a temporary file in the same folder and a rename, so that a
    crash mid-write leaves the previous file whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: str | os.PathLike, checkpoint: dict[str, Any]) -> None:
    """torch.save checkpoint to path, atomically."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    write_atomic(path, buffer.getvalue())


def write_metrics(output_dir: str | os.PathLike, history: list[dict]) -> None:
    """The per-epoch history as metrics.json and metrics.csv in output_dir."""
    output_dir = Path(output_dir)
    write_atomic(output_dir / "metrics.json", json.dumps(history, indent=2).encode())
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    write_atomic(output_dir / "metrics.csv", text.getvalue().encode())


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint with weights_only=True: tensors and plain data only, never code."""
    path = Path(path)
    if path.is_dir():
        raise MnistCnnError(f"checkpoint {path} is a folder, not a file")
    if not path.is_file():
        raise MnistCnnError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": the error says enough
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load fails in many ways on bytes that are not a checkpoint
        text = str(error)
        if "WeightsUnpickler error:" in text:
            # Not torch's own advice (weights_only=False would run whatever code the file holds).
            detail = first_line(text.split("WeightsUnpickler error:", 1)[1])
            reason = f"refused by torch.load(weights_only=True), which loads only tensors and plain data ({detail})"
        else:
            reason = (
                f"not a file torch.save wrote, or a damaged one ({type(error).__name__}: {first_line(error)})"
            )
        raise MnistCnnError(f"{path} is not a readable checkpoint: {reason}") from None
    if not isinstance(checkpoint, dict) or "model_state" not in checkpoint:
        raise MnistCnnError(f"{path} is not an mnist-cnn checkpoint (no model_state)")
    return checkpoint


class TrainedModel(NamedTuple):
    """A trained net, ready in eval mode, and what its inputs must be."""

    model: nn.Module
    dataset: str  # the data set it learnt (a key of data.DATASETS)
    normalization: Normalization  # the (mean, std) its inputs were normalized with


def load_trained(
    path: str | os.PathLike, device: torch.device | str = "cpu", dataset: str | None = None
) -> TrainedModel:
    """The trained net stored in a checkpoint, on device, in eval mode, with the data set it learnt
    and its normalization. With dataset, a checkpoint trained on another data set is refused."""
    checkpoint = load_checkpoint(path)
    name = checkpoint.get("model", "seed")
    if name not in MODELS:
        raise MnistCnnError(f"{path} holds an unknown model {name!r}")
    # Checkpoints from before --dataset learnt MNIST.
    trained_on = checkpoint.get("dataset", "mnist")
    try:
        mean, std = map(float, checkpoint.get("normalization", MNIST_NORMALIZATION))
    except (TypeError, ValueError):
        raise MnistCnnError(f"{path} holds a damaged normalization entry") from None
    if trained_on not in DATASETS:
        raise MnistCnnError(f"{path} was trained on an unknown data set {trained_on!r}")
    if dataset is not None and dataset != trained_on:
        raise MnistCnnError(
            f"{path} was trained on {trained_on}, not {dataset}: use --dataset {trained_on}, or a "
            f"checkpoint trained on {dataset}"
        )
    model = build_model(name, **checkpoint.get("model_args", {}))
    try:
        model.load_state_dict(checkpoint["model_state"])
    except (RuntimeError, TypeError, AttributeError) as error:
        raise MnistCnnError(f"{path} does not fit the {name!r} model: {first_line(error)}") from None
    return TrainedModel(model.to(device).eval(), trained_on, (mean, std))


def load_model(
    path: str | os.PathLike, device: torch.device | str = "cpu", dataset: str | None = None
) -> nn.Module:
    """The trained net stored in a checkpoint, on device, in eval mode (see load_trained)."""
    return load_trained(path, device, dataset).model
