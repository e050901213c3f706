"""`python -m mnist_cnn.export CHECKPOINT --format onnx|pt2|torchscript|safetensors --output PATH`.

Writes a trained net for other runtimes (see exporters.py for what the files hold).
"""

from __future__ import annotations

import sys
from pathlib import Path

from .cli import ArgumentParser, add_net_arguments, exit_on_error, open_named_net
from .errors import moved
from .exporters import FORMATS, WHERE_METADATA, export_model

# The exporters, where they were before they had a module of their own.
__getattr__ = moved(__name__, dict.fromkeys(["METADATA_FILE", "export_metadata"], ".exporters"))


@exit_on_error
def main(argv: list[str] | None = None) -> Path:
    """Parse flags, load the net, write the exported model."""
    p = ArgumentParser(
        "mnist_cnn.export",
        description="Export a trained net to ONNX, a torch.export program (.pt2), TorchScript or safetensors.",
    )
    add_net_arguments(p, device=False)  # the exported net runs where its user puts it
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--output", required=True, metavar="PATH", help="the file to write")
    args = p.parse_args(argv)
    trained = open_named_net(args, args.checkpoint, default=False)
    for note in export_model(trained, args.format, args.output):
        print(f"note: {note}", file=sys.stderr)
    if args.format == "safetensors":
        print(
            f"Wrote {args.output} (safetensors): the state dict, with the model, data set and normalization in its header"
        )
        return Path(args.output)
    print(
        f"Wrote {args.output} ({args.format}): input 'images' (N, 1, H, W) with H, W >= 28, output "
        f"'log_probs' (N, 10); data set {trained.dataset}, its class names and the normalization "
        f"in its {WHERE_METADATA[args.format]}"
    )
    return Path(args.output)


if __name__ == "__main__":
    main()
