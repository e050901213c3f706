"""A trained net for other runtimes: ONNX, TorchScript, or a safetensors weights file.

The exported net takes a batch 'images' (N, 1, H, W) of any size N and any H, W >= 28 (the net
is fully convolutional; MNIST-form images are 28x28), normalized as `mnist_cnn.preprocess.to_mnist`
makes them with the net's normalization, and returns log-probabilities 'log_probs' (N, 10).

What a program needs to use it travels with it (`export_metadata`): the data set, its class names
and the normalization mean and std. ONNX keeps them in the model's metadata_props (strings as
they are, the rest as JSON); TorchScript in the extra file mnist_cnn.json, read with
`torch.jit.load(path, _extra_files={"mnist_cnn.json": ""})`; safetensors in its header.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from typing import Any

import torch
from torch import nn

from .checkpoint import TrainedModel
from .data import DATASETS
from .errors import MnistCnnError
from .files import write_atomic
from .weights_file import net_metadata, weights_bytes

FORMATS = ("onnx", "torchscript", "safetensors")
METADATA_FILE = "mnist_cnn.json"  # TorchScript's extra file holding export_metadata
WHERE_METADATA = {
    "onnx": "metadata_props",
    "torchscript": f"extra file {METADATA_FILE}",
    "safetensors": "header",
}


def export_metadata(trained: TrainedModel) -> dict[str, Any]:
    """The data set, its class names and the normalization (mean, std) the net's inputs need."""
    mean, std = trained.normalization
    classes = list(DATASETS[trained.dataset].classes)
    return {"dataset": trained.dataset, "classes": classes, "mean": mean, "std": std}


def _onnx_bytes(model: nn.Module, example: torch.Tensor, metadata: dict[str, Any]) -> bytes:
    try:
        import onnx
    except ImportError:
        # torch's exporter would fail on it too, with a traceback that names no way out.
        raise MnistCnnError('--format onnx needs the onnx package: pip install "mnist-cnn[export]"') from None
    buffer = io.BytesIO()
    torch.onnx.export(
        model,
        (example,),
        buffer,  # type: ignore[arg-type]  # torch's annotation leaves out the file objects it takes
        input_names=["images"],
        output_names=["log_probs"],
        dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}, "log_probs": {0: "batch"}},
        dynamo=False,  # the TorchScript-based exporter: no extra packages, well tested on convnets
    )
    proto = onnx.load_from_string(buffer.getvalue())
    props = {key: value if isinstance(value, str) else json.dumps(value) for key, value in metadata.items()}
    onnx.helper.set_model_props(proto, props)
    return proto.SerializeToString()


def _torchscript_bytes(model: nn.Module, example: torch.Tensor, metadata: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(
        torch.jit.trace(model, example), buffer, _extra_files={METADATA_FILE: json.dumps(metadata)}
    )
    return buffer.getvalue()


def export_model(trained: TrainedModel, fmt: str, path: str | os.PathLike) -> None:
    """Write the trained net (eval mode, CPU) as ONNX or TorchScript, with dynamic batch size,
    height and width, and export_metadata(trained) inside the file."""
    exporters = {"onnx": _onnx_bytes, "torchscript": _torchscript_bytes}
    if fmt not in FORMATS:
        raise MnistCnnError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "safetensors":  # the state dict, as the shipped weights are stored
        write_atomic(path, weights_bytes(trained.model, net_metadata(trained)))
        return
    example = torch.zeros(2, 1, 28, 28)
    with warnings.catch_warnings():
        # Both formats warn that newer exporters exist; these are the ones that need no extra
        # packages and that C++, mobile and onnxruntime load. The user needs no such note.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        data = exporters[fmt](trained.model.cpu().eval(), example, export_metadata(trained))
    write_atomic(path, data)
