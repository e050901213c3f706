"""A trained net for other runtimes: ONNX, a torch.export program (.pt2), TorchScript, or a
safetensors weights file.

The exported net takes a batch 'images' (N, 1, H, W) of any size N and any H, W >= 28 (the net
is fully convolutional; MNIST-form images are 28x28), normalized as `mnist_cnn.preprocess.to_mnist`
makes them with the net's normalization, and returns log-probabilities 'log_probs' (N, 10).

What a program needs to use it travels with it (`export_metadata`): the data set, its class names
and the normalization mean and std. ONNX keeps them in the model's metadata_props (strings as
they are, the rest as JSON); a .pt2 and TorchScript in the extra file mnist_cnn.json
(`torch.export.load(path, extra_files={"mnist_cnn.json": ""})`); safetensors in its header.

- ONNX goes through torch's `torch.export`-based exporter (it needs onnxscript, in the `export`
  extra); where that fails, through the older TorchScript-based one, and the command says so.
- A .pt2 also holds the net's weights as a safetensors file in its mnist_cnn.json: `torch.export.load`
  unpickles, so the package's own commands (predict, evaluate, export) never call it; they
  rebuild the net from those weights instead (see read_pt2).
- TorchScript is deprecated upstream in favour of torch.export; it stays for the runtimes that
  load it (C++, mobile), and `torch.jit` warns when it is used.
"""

from __future__ import annotations

import base64
import inspect
import io
import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import TrainedModel
from .data import DATASETS
from .errors import MnistCnnError
from .files import write_atomic
from .weights_file import (
    build_from_metadata,
    load_tensors,
    net_metadata,
    read_metadata_bytes,
    trained_from_metadata,
    weights_bytes,
)

FORMATS = ("onnx", "pt2", "torchscript", "safetensors")
METADATA_FILE = "mnist_cnn.json"  # the extra file of a .pt2 and of TorchScript holding export_metadata
WHERE_METADATA = {
    "onnx": "metadata_props",
    "pt2": f"extra file {METADATA_FILE}",
    "torchscript": f"extra file {METADATA_FILE}",
    "safetensors": "header",
}


def export_metadata(trained: TrainedModel) -> dict[str, Any]:
    """The data set, its class names and the normalization (mean, std) the net's inputs need."""
    mean, std = trained.normalization
    classes = list(DATASETS[trained.dataset].classes)
    return {"dataset": trained.dataset, "classes": classes, "mean": mean, "std": std}


def dynamic_shapes() -> tuple[dict[int, Any]]:
    """torch.export's dynamic dimensions of the one input: any batch, any height and width >= 28."""
    from torch.export import Dim

    return ({0: Dim("batch"), 2: Dim("height", min=28), 3: Dim("width", min=28)},)


def exported_program(model: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    """model as a torch.export program, for any batch size, height and width."""
    return torch.export.export(model, (example,), dynamic_shapes=dynamic_shapes())


def _onnx_bytes(trained: TrainedModel, model: nn.Module, example: torch.Tensor) -> tuple[bytes, list[str]]:
    try:
        import onnx
    except ImportError:
        # torch's exporter would fail on it too, with a traceback that names no way out.
        raise MnistCnnError('--format onnx needs the onnx package: pip install "mnist-cnn[export]"') from None
    notes: list[str] = []
    try:
        program = torch.onnx.export(
            model,
            (example,),
            input_names=["images"],
            output_names=["log_probs"],
            dynamic_shapes=dynamic_shapes(),
            dynamo=True,
            verbose=False,
        )
        if program is None:
            raise RuntimeError("the exporter returned nothing")
        proto = program.model_proto
    except Exception as error:  # no onnxscript, or an op the new exporter cannot take
        notes.append(
            f"the torch.export-based ONNX exporter failed ({error.__class__.__name__}); used the older one"
        )
        buffer = io.BytesIO()
        # The TorchScript-based exporter: torch's default before 2.9, asked for by name after.
        older: dict[str, Any] = (
            {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
        )
        torch.onnx.export(
            model,
            (example,),
            buffer,  # type: ignore[arg-type]  # torch's annotation leaves out the file objects it takes
            input_names=["images"],
            output_names=["log_probs"],
            dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}, "log_probs": {0: "batch"}},
            **older,
        )
        proto = onnx.load_from_string(buffer.getvalue())
    props = export_metadata(trained)
    onnx.helper.set_model_props(
        proto, {k: v if isinstance(v, str) else json.dumps(v) for k, v in props.items()}
    )
    return proto.SerializeToString(), notes


def _pt2_bytes(trained: TrainedModel, model: nn.Module, example: torch.Tensor) -> tuple[bytes, list[str]]:
    try:
        program = exported_program(model, example)
    except Exception as error:  # torch.export's errors for what a release cannot trace generally
        raise MnistCnnError(
            f"--format pt2: torch {torch.__version__} cannot export this net for any height and width "
            f"({type(error).__name__}); a newer torch can (2.14.1 does, 2.5.1 does not)"
        ) from None
    weights = weights_bytes(model, net_metadata(trained))
    extra = {**export_metadata(trained), "safetensors": base64.b64encode(weights).decode()}
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={METADATA_FILE: json.dumps(extra)})
    return buffer.getvalue(), []


def _torchscript_bytes(
    trained: TrainedModel, model: nn.Module, example: torch.Tensor
) -> tuple[bytes, list[str]]:
    buffer = io.BytesIO()
    extra = {METADATA_FILE: json.dumps(export_metadata(trained))}
    torch.jit.save(torch.jit.trace(model, example), buffer, _extra_files=extra)
    return buffer.getvalue(), []


def export_model(trained: TrainedModel, fmt: str, path: str | os.PathLike) -> list[str]:
    """Write the trained net (eval mode, CPU) in format fmt (see FORMATS), with dynamic batch
    size, height and width, and export_metadata(trained) inside the file. Returns notes for the
    user: what was done other than asked (an older exporter)."""
    exporters = {"onnx": _onnx_bytes, "pt2": _pt2_bytes, "torchscript": _torchscript_bytes}
    if fmt not in FORMATS:
        raise MnistCnnError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "safetensors":  # the state dict, as the shipped weights are stored
        write_atomic(path, weights_bytes(trained.model, net_metadata(trained)))
        return []
    example = torch.zeros(2, 1, 28, 28)
    with warnings.catch_warnings():
        # The exporters warn about their own internals (TorchScript: that it is deprecated, which
        # the docs say); a user asked for this format and needs no such note.
        warnings.simplefilter("ignore")
        data, notes = exporters[fmt](trained, trained.model.cpu().eval(), example)
    write_atomic(path, data)
    return notes


def read_pt2(path: str | os.PathLike, device: torch.device | str = "cpu") -> TrainedModel:
    """The net in a .pt2 that export wrote, on device, in eval mode, rebuilt from the weights in
    its mnist_cnn.json, without unpickling anything (torch.export.load would). A .pt2 of
    another making, or a damaged one, is an MnistCnnError."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith(f"extra/{METADATA_FILE}")]
            if not names:
                raise MnistCnnError(
                    f"{path} is a torch.export program that mnist-cnn's export did not write (no "
                    f"{METADATA_FILE} in it): load it with torch.export.load, if you trust it"
                )
            extra = json.loads(archive.read(names[0]))
        data = base64.b64decode(extra["safetensors"], validate=True)
        meta = read_metadata_bytes(data, path)
        return trained_from_metadata(build_from_metadata(meta, load_tensors(data, path)).to(device), meta)
    except MnistCnnError:
        raise
    except FileNotFoundError:
        raise MnistCnnError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
        raise MnistCnnError(
            f"{path} is not a whole .pt2 file ({error.__class__.__name__}: {error})"
        ) from None
