"""`python -m mnist_cnn.predict [CHECKPOINT] IMAGE...`: the digit (or the class of the net's data
set) in each picture.

python -m mnist_cnn.predict my_seven.png photos/          # the shipped improved net
python -m mnist_cnn.predict runs/<run>/best.pt my_seven.png
python -m mnist_cnn.predict --weights improved:FASHION_MNIST_V1 shoe.jpg
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from .data import DATASETS, DIGITS, MNIST_NORMALIZATION, Normalization
from .device import select_device
from .errors import ArgumentParser, MnistCnnError, exit_on_error
from .preprocess import IMAGE_SUFFIXES, image_files, load_digit
from .weights import default_weights, open_net


@torch.inference_mode()
def predict_digits(
    model: nn.Module, images: torch.Tensor, top: int = 3, classes: tuple[str, ...] = DIGITS
) -> list[dict]:
    """For MNIST-form images (N, 1, 28, 28): each one's class ("digit": its number, "label": its
    name in classes), probability and top guesses."""
    device = next(model.parameters()).device
    probabilities = model.eval()(images.to(device)).exp().cpu()
    best = probabilities.topk(top, dim=1)
    guesses = [
        [
            {"digit": int(d), "label": classes[d], "probability": float(q)}
            for d, q in zip(digits, p, strict=True)
        ]
        for p, digits in zip(best.values, best.indices, strict=True)
    ]
    return [{**first[0], "top": first} for first in guesses]


def predict_files(
    model: nn.Module,
    paths: list[str | os.PathLike],
    normalization: Normalization = MNIST_NORMALIZATION,
    classes: tuple[str, ...] = DIGITS,
    top: int = 3,
) -> tuple[list[dict], list[str]]:
    """Predictions for image files and folders of them, and one error line per bad file.
    normalization and classes are those of the data set model learnt (MNIST's unless told).
    Each prediction's "notes" say what the user may not expect (an animated GIF's first frame)."""
    results, errors = [], []
    for path in image_files(paths):
        try:
            picture, image = load_digit(path, normalization)
        except MnistCnnError as error:  # its message names the file
            errors.append(str(error))
            continue
        guess = predict_digits(model, image[None], top, classes)[0]
        results.append({"file": str(path), **guess, "notes": notes_on(picture, str(path))})
    return results, errors


def notes_on(picture: Image.Image, name: str) -> list[str]:
    """What a prediction's "notes" say about a picture load_image read: what the user may not
    expect (an animated GIF's first frame)."""
    frames = picture.info.get("frames", 1)
    return [f"{name} has {frames} frames; read the first"] if frames > 1 else []


CHECKPOINT_SUFFIXES = {".pt", ".pth", ".ckpt", ".bin", ".safetensors"}


def split_inputs(inputs: list[str]) -> tuple[str | None, list[str]]:
    """(the checkpoint, the images) of predict's arguments: the first is a checkpoint when its
    name ends like one, or it is a file that is no image; else every argument is an image."""
    first = Path(inputs[0])
    suffix = first.suffix.lower()
    if suffix in CHECKPOINT_SUFFIXES or (first.is_file() and suffix not in IMAGE_SUFFIXES):
        if len(inputs) == 1:
            raise MnistCnnError(f"no images given after the checkpoint {first}")
        return inputs[0], inputs[1:]
    return None, inputs


def weights_or_default(
    checkpoint: str | None, weights: str | None, dataset: str | None = None, *, quiet: bool = False
) -> str | None:
    """The weights for open_net: weights as given or, when a command was given neither a
    checkpoint nor weights, the name of the shipped improved net that learnt dataset (MNIST when
    None), which a note on stderr names unless quiet (for a command that says it otherwise)."""
    if checkpoint is not None or weights is not None:
        return weights
    default = default_weights(dataset)
    if not quiet:
        print(f"note: no checkpoint given: reading with the shipped {default}", file=sys.stderr)
    return f"improved:{default.name}"


def add_net_arguments(p: argparse.ArgumentParser, images: str) -> None:
    """The arguments of the commands that read images with a net (predict, explain): [CHECKPOINT]
    IMAGE..., --weights, --device and --dataset; images says what the images may be."""
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="[CHECKPOINT] IMAGE",
        help=f"a checkpoint written by training (best.pt), or a .safetensors file, then {images} (any "
        "format Pillow reads); the shipped improved net when no checkpoint or --weights is given",
    )
    p.add_argument(
        "--weights",
        metavar="NAME",
        help="shipped weights instead of a checkpoint: DEFAULT, seed, improved:FASHION_MNIST_V1, ...",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps (default: cpu)")
    p.add_argument(
        "--dataset",
        choices=list(DATASETS),
        help="refuse a net trained on another data set (default: take the net's)",
    )


@exit_on_error
def main(argv: list[str] | None = None) -> int:
    """Parse flags, load the model, print each file's digit; exit 2 if any file was bad."""
    p = ArgumentParser(
        "mnist_cnn.predict",
        description="Read the handwritten digit in images, with a checkpoint, --weights, or the "
        "shipped improved net when neither is given.",
    )
    add_net_arguments(p, "image files or folders of them")
    p.add_argument(
        "--top", type=int, default=3, metavar="K", help="show the K likeliest classes (default: 3)"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = p.parse_args(argv)

    checkpoint, images = split_inputs(args.inputs)
    weights = weights_or_default(checkpoint, args.weights, args.dataset)
    trained = open_net(checkpoint, weights, select_device(args.device), args.dataset)
    classes = DATASETS[trained.dataset].classes
    if not 1 <= args.top <= len(classes):  # checked here: the checkpoint's data set sets the classes
        raise MnistCnnError(f"--top must be between 1 and {len(classes)}, got {args.top}")
    results, errors = predict_files(trained.model, images, trained.normalization, classes, args.top)
    if not results and not errors:
        raise MnistCnnError(f"no image files in {', '.join(images)}")
    if args.json:
        print(json.dumps({"predictions": results, "errors": errors}, indent=2))
    else:
        for r in results:
            top = ", ".join(f"{t['label']} {100 * t['probability']:.1f}%" for t in r["top"])
            print(f"{r['file']}: {r['label']} ({100 * r['probability']:.1f}%)   top {args.top}: {top}")
    for note in (note for r in results for note in r["notes"]):
        print(f"note: {note}", file=sys.stderr)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if errors:
        raise SystemExit(2)
    return 0


if __name__ == "__main__":
    main()
