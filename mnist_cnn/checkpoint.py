"""Saving and loading runs and models. Writes are atomic; loads never unpickle code."""

from __future__ import annotations

import io
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from .data import DATASETS, MNIST_NORMALIZATION, Normalization
from .errors import MnistCnnError, first_line
from .files import write_atomic
from .model import MODELS, build_model


def save_checkpoint(path: str | os.PathLike, checkpoint: dict[str, Any]) -> None:
    """torch.save checkpoint to path, atomically."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    write_atomic(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint with weights_only=True: tensors and plain data only, never code."""
    path = Path(path)
    if path.is_dir():
        raise MnistCnnError(f"checkpoint {path} is a folder, not a file")
    if not path.is_file():
        raise MnistCnnError(f"checkpoint {path} does not exist")
    # An exported model is recognised before torch.load sees it: some torch releases hand a
    # TorchScript archive to torch.jit.load, which runs its code.
    exported = exported_format(path)
    if exported == "torch.export":
        raise MnistCnnError(
            f"{path} is a torch.export program: name it .pt2 and the commands read it, when "
            "mnist-cnn's export wrote it"
        )
    if exported:
        raise MnistCnnError(
            f"{path} is a model exported to {exported}, for other runtimes; this command takes a "
            "checkpoint written by training (best.pt or last.pt)"
        )
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


def exported_format(path: Path) -> str | None:
    """'TorchScript', 'ONNX' or 'torch.export' when path holds a model that mnist_cnn.export (or
    another exporter) wrote, else None."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
            if any(n.endswith("archive_format") for n in names):  # torch.export's .pt2 archive
                return "torch.export"
            # TorchScript: a zip with the model's code
            return (
                "TorchScript" if any("/code/" in n or n.endswith("/constants.pkl") for n in names) else None
            )
        with open(path, "rb") as file:
            head = file.read(3)
    except OSError:
        return None
    # An ONNX file is a ModelProto: field 1 (ir_version, a small varint), then field 2 (producer).
    return (
        "ONNX" if path.suffix.lower() == ".onnx" or (head[:1] == b"\x08" and head[2:3] == b"\x12") else None
    )


class TrainedModel(NamedTuple):
    """A trained net, ready in eval mode, and what its inputs must be."""

    model: nn.Module
    dataset: str  # the data set it learnt (a key of data.DATASETS)
    normalization: Normalization  # the (mean, std) its inputs were normalized with
    name: str = "seed"  # the model's name for build_model ...
    args: dict = {}  # ... and its constructor arguments
    test_accuracy: float | None = None  # as recorded with it (its run's last epoch), when it was
    val_split: int = 0  # the training images its run held out (--val-split): it never learnt them


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
    check_dataset(path, trained_on, dataset)
    args = checkpoint.get("model_args", {})
    model = build_model(name, **args)
    try:
        model.load_state_dict(checkpoint["model_state"])
    except (RuntimeError, TypeError, AttributeError) as error:
        raise MnistCnnError(f"{path} does not fit the {name!r} model: {first_line(error)}") from None
    last_epoch = (checkpoint.get("history") or [{}])[-1]  # a --val-split run records no test accuracy
    accuracy = last_epoch.get("test_accuracy") if isinstance(last_epoch, dict) else None
    held_out = checkpoint.get("config", {}).get("val_split", 0)
    return TrainedModel(model.to(device).eval(), trained_on, (mean, std), name, args, accuracy, held_out)


def check_dataset(source: str | os.PathLike, trained_on: str, dataset: str | None) -> None:
    """With dataset (--dataset), a net that learnt another data set is an MnistCnnError."""
    if dataset is not None and dataset != trained_on:
        raise MnistCnnError(
            f"{source} was trained on {trained_on}, not {dataset}: use --dataset {trained_on}, or a "
            f"net trained on {dataset}"
        )


def load_model(
    path: str | os.PathLike, device: torch.device | str = "cpu", dataset: str | None = None
) -> nn.Module:
    """The trained net stored in a checkpoint, on device, in eval mode (see load_trained)."""
    return load_trained(path, device, dataset).model
