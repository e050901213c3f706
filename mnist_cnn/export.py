"""`python -m mnist_cnn.export CHECKPOINT --format onnx|torchscript --output PATH`.

The exported net takes a batch of any size of MNIST-form images (N, 1, 28, 28), normalized as
`mnist_cnn.preprocess.to_mnist` makes them, and returns log-probabilities (N, 10).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from .checkpoint import load_model, write_atomic
from .errors import ArgumentParser, MnistCnnError, exit_on_error

FORMATS = ("onnx", "torchscript")


def export_model(model: nn.Module, fmt: str, path: str | os.PathLike) -> None:
    """Write model (eval mode, CPU) as ONNX or TorchScript, with a dynamic batch size."""
    model = model.cpu().eval()
    example = torch.zeros(2, 1, 28, 28)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # Both formats warn that newer exporters exist; these are the ones that need no extra
        # packages and that C++, mobile and onnxruntime load. The user needs no such note.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        if fmt == "onnx":
            torch.onnx.export(
                model,
                (example,),
                buffer,
                input_names=["images"],
                output_names=["log_probs"],
                dynamic_axes={"images": {0: "batch"}, "log_probs": {0: "batch"}},
                dynamo=False,  # the TorchScript-based exporter: no extra packages, well tested on convnets
            )
        elif fmt == "torchscript":
            torch.jit.save(torch.jit.trace(model, example), buffer)
        else:
            raise MnistCnnError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    write_atomic(path, buffer.getvalue())


@exit_on_error
def main(argv: list[str] | None = None) -> Path:
    """Parse flags, load the checkpoint, write the exported model."""
    p = ArgumentParser(
        prog="python -m mnist_cnn.export", description="Export a trained net to ONNX or TorchScript."
    )
    p.add_argument("checkpoint", help="a checkpoint written by --save-model (best.pt or last.pt)")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--output", required=True, metavar="PATH", help="the file to write")
    args = p.parse_args(argv)
    export_model(load_model(args.checkpoint), args.format, args.output)
    print(f"Wrote {args.output} ({args.format}): input 'images' (N, 1, 28, 28), output 'log_probs' (N, 10)")
    return Path(args.output)


if __name__ == "__main__":
    main()
