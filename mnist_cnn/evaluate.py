"""`python -m mnist_cnn.evaluate CHECKPOINT`: how a trained net does on the test set of the data
set it learnt (MNIST, or another with --dataset at training).

Prints the test loss and accuracy, the accuracy of each class and the confusion matrix; then
draws the confusion matrix and the most confident mistakes as PNG files (with matplotlib), and
with --explain the class activation maps of the most confident mistakes. A picture that cannot be
written is a note on stderr: the printed report stands.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .cam import class_activation_maps
from .cli import ArgumentParser, add_data_arguments, add_net_arguments, exit_on_error, open_named_net
from .data import DATASETS, DIGITS, load_mnist, resolve_data_dir
from .errors import MnistCnnError, moved
from .inference import evaluation_report, first_mistakes, report_text
from .plots import NoMatplotlib, draw_confusion, draw_explained_mistakes, draw_mistakes

# The report itself moved to inference.py, beside predict's answers.
__getattr__ = moved(
    __name__,
    dict.fromkeys(
        ["Mistakes", "confusion_text", "evaluation_report", "first_mistakes", "report_text"], ".inference"
    ),
)


def draw_pictures(
    report: dict[str, Any],
    images: torch.Tensor,
    output_dir: Path,
    mistakes: int,
    explain: int = 0,
    model: nn.Module | None = None,
    classes: tuple[str, ...] = DIGITS,
) -> list[str]:
    """Draw in output_dir confusion.png; with mistakes > 0 and any to show, mistakes.png (the
    report's first mistakes); with explain > 0, explain-mistakes.png (model's class maps of the
    first explain mistakes). The paths drawn. A picture that cannot be drawn or written is a note
    on stderr, not an error: the report it shows is printed by then."""
    drawn: list[str] = []
    shown = first_mistakes(report, images, mistakes)
    explained = first_mistakes(report, images, explain)
    try:
        draw_confusion(torch.tensor(report["confusion"]), output_dir / "confusion.png")
        drawn.append(str(output_dir / "confusion.png"))
        if shown.true:
            draw_mistakes(*shown, output_dir / "mistakes.png")
            drawn.append(str(output_dir / "mistakes.png"))
        if explained.true:
            if model is None:
                raise ValueError("draw_pictures needs the model to explain its mistakes")
            cams = [class_activation_maps(model, image) for image in explained.images]
            path = output_dir / "explain-mistakes.png"
            draw_explained_mistakes(
                explained.images, explained.true, explained.predicted, cams, classes, path
            )
            drawn.append(str(path))
    except NoMatplotlib as error:
        print(f"note: {error}", file=sys.stderr)
    except MnistCnnError as error:  # the folder cannot be made or written
        print(f"note: {error}; --output-dir DIR draws the pictures elsewhere", file=sys.stderr)
    return drawn


@exit_on_error
def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse flags, evaluate the checkpoint on the test set, print the results, then draw them."""
    p = ArgumentParser(
        "mnist_cnn.evaluate",
        description="Evaluate a checkpoint on the test set of the data set it learnt.",
    )
    add_net_arguments(p)
    add_data_arguments(p)
    p.add_argument("--output-dir", help="where the PNG files go (default: the checkpoint's folder)")
    p.add_argument(
        "--mistakes",
        type=int,
        default=32,
        metavar="N",
        help="mistakes to draw in mistakes.png; 0 draws none (default: 32)",
    )
    p.add_argument(
        "--explain",
        type=int,
        default=0,
        metavar="N",
        help="draw the class activation maps of the N most confident mistakes in "
        "explain-mistakes.png: where the net found the class it chose and the true one (default: 0)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = p.parse_args(argv)
    for flag, n in (("--mistakes", args.mistakes), ("--explain", args.explain)):
        if n < 0:
            raise MnistCnnError(f"{flag} must be at least 0, got {n}")

    trained = open_named_net(args, args.checkpoint, default=False)
    device = next(trained.model.parameters()).device
    images, labels = load_mnist(
        resolve_data_dir(args.data_dir), False, device, trained.dataset, trained.normalization, args.cache
    )
    report = evaluation_report(trained.model, images, labels)

    # The report first: a picture that cannot be written must not lose a whole test-set pass.
    print(json.dumps(report, indent=2) if args.json else report_text(trained.dataset, report))
    output_dir = Path(args.output_dir or (Path(args.checkpoint).parent if args.checkpoint else "."))
    classes = DATASETS[trained.dataset].classes
    report["pictures"] = draw_pictures(
        report, images, output_dir, args.mistakes, args.explain, trained.model, classes
    )
    if report["pictures"] and not args.json:
        *others, last = report["pictures"]
        print(f"\nDrew {', '.join(others)}{' and ' if others else ''}{last}")
    return report


if __name__ == "__main__":
    main()
