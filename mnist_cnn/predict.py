"""`python -m mnist_cnn.predict CHECKPOINT IMAGE...`: the digit in each picture.

python -m mnist_cnn.predict runs/<run>/best.pt my_seven.png photos/
"""

from __future__ import annotations

import json
import os
import sys

import torch
from torch import nn

from .checkpoint import load_model
from .errors import ArgumentParser, MnistCnnError, exit_on_error
from .preprocess import image_files, load_image, to_mnist
from .train import select_device


@torch.inference_mode()
def predict_digits(model: nn.Module, images: torch.Tensor, top: int = 3) -> list[dict]:
    """For MNIST-form images (N, 1, 28, 28): each one's digit, probability and top guesses."""
    device = next(model.parameters()).device
    probabilities = model.eval()(images.to(device)).exp().cpu()
    best = probabilities.topk(top, dim=1)
    return [
        {
            "digit": int(digits[0]),
            "probability": float(p[0]),
            "top": [{"digit": int(d), "probability": float(q)} for d, q in zip(digits, p, strict=True)],
        }
        for p, digits in zip(best.values, best.indices, strict=True)
    ]


def predict_files(model: nn.Module, paths: list[str | os.PathLike]) -> tuple[list[dict], list[str]]:
    """Predictions for image files and folders of them, and one error line per bad file."""
    results, errors = [], []
    for path in image_files(paths):
        try:
            image = to_mnist(load_image(path))
        except MnistCnnError as error:
            message = str(error)
            errors.append(message if message.startswith(str(path)) else f"{path}: {message}")
            continue
        results.append({"file": str(path), **predict_digits(model, image[None])[0]})
    return results, errors


@exit_on_error
def main(argv: list[str] | None = None) -> int:
    """Parse flags, load the model, print each file's digit; exit 2 if any file was bad."""
    p = ArgumentParser(
        prog="python -m mnist_cnn.predict", description="Read the handwritten digit in images."
    )
    p.add_argument("checkpoint", help="a checkpoint written by --save-model (best.pt or last.pt)")
    p.add_argument("images", nargs="+", help="image files (any format Pillow reads) or folders of them")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps (default: cpu)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = p.parse_args(argv)

    model = load_model(args.checkpoint, select_device(args.device))
    results, errors = predict_files(model, args.images)
    if not results and not errors:
        raise MnistCnnError(f"no image files in {', '.join(args.images)}")
    if args.json:
        print(json.dumps({"predictions": results, "errors": errors}, indent=2))
    else:
        for r in results:
            top = ", ".join(f"{t['digit']} {100 * t['probability']:.1f}%" for t in r["top"])
            print(f"{r['file']}: {r['digit']} ({100 * r['probability']:.1f}%)   top 3: {top}")
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if errors:
        raise SystemExit(2)
    return 0


if __name__ == "__main__":
    main()
