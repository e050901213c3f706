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
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .data import DATASETS, DIGITS, load_mnist, resolve_data_dir
from .device import select_device
from .errors import ArgumentParser, MnistCnnError, exit_on_error
from .explain import class_activation_maps
from .metrics import format_test_line
from .plots import NoMatplotlib, draw_confusion, draw_explained_mistakes, draw_mistakes
from .weights import open_net


@torch.inference_mode()
def evaluation_report(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000
) -> dict:
    """Loss, accuracy, per-digit accuracy, confusion matrix and the mistakes, most confident first."""
    model.eval()
    log_probs = torch.cat([model(x) for x in images.split(batch_size)]).float()
    predicted = log_probs.argmax(dim=1)
    confusion = torch.zeros(10, 10, dtype=torch.long, device=labels.device)
    confusion.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
    confusion = confusion.cpu()
    wrong = (predicted != labels).nonzero().flatten()
    confidence = log_probs[wrong, predicted[wrong]].exp()
    wrong = wrong[confidence.argsort(descending=True)]
    correct = int(confusion.diag().sum())
    return {
        "test_loss": F.nll_loss(log_probs, labels).item(),
        "test_correct": correct,
        "test_total": len(labels),
        "test_accuracy": correct / len(labels),
        "per_class_accuracy": (confusion.diag() / confusion.sum(dim=1).clamp(min=1)).tolist(),
        "confusion": confusion.tolist(),
        "mistakes": [
            {
                "index": int(i),
                "true": int(labels[i]),
                "predicted": int(predicted[i]),
                "probability": float(log_probs[i, predicted[i]].exp()),
            }
            for i in wrong.tolist()
        ],
    }


def confusion_text(confusion: list[list[int]]) -> str:
    """The confusion matrix as aligned text: rows true digits, columns predicted ones."""
    lines = ["true\\pred " + "".join(f"{d:>6}" for d in range(10))]
    lines += [f"{t:>9} " + "".join(f"{n:>6}" for n in row) for t, row in enumerate(confusion)]
    return "\n".join(lines)


def report_text(dataset: str, report: dict) -> str:
    """The report as the text the command prints: test line, accuracy per class, confusion matrix."""
    classes = DATASETS[dataset].classes
    width = max(map(len, classes))
    lines = [f"{dataset}: {format_test_line(report)}", "", "Accuracy per class:"]
    lines += [
        f"  {name:>{width}}: {100 * accuracy:6.2f}%"
        for name, accuracy in zip(classes, report["per_class_accuracy"], strict=True)
    ]
    return "\n".join([*lines, "", "Confusion matrix:", confusion_text(report["confusion"])])


class Mistakes(NamedTuple):
    """Some of a report's mistakes, as the pictures take them."""

    images: torch.Tensor
    true: list[int]
    predicted: list[int]
    probability: list[float]


def first_mistakes(report: dict, images: torch.Tensor, n: int) -> Mistakes:
    """The report's first n mistakes (the most confident), with their images."""
    shown = report["mistakes"][:n]
    return Mistakes(
        images[[m["index"] for m in shown]],
        [m["true"] for m in shown],
        [m["predicted"] for m in shown],
        [m["probability"] for m in shown],
    )


def draw_pictures(
    report: dict,
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
def main(argv: list[str] | None = None) -> dict:
    """Parse flags, evaluate the checkpoint on the test set, print the results, then draw them."""
    p = ArgumentParser(
        "mnist_cnn.evaluate",
        description="Evaluate a checkpoint on the test set of the data set it learnt.",
    )
    p.add_argument("checkpoint", nargs="?", help="a checkpoint written by --save-model (best.pt or last.pt)")
    p.add_argument(
        "--weights", metavar="NAME", help="shipped weights instead of a checkpoint (DEFAULT, seed, ...)"
    )
    p.add_argument(
        "--data-dir",
        help="folder holding MNIST/raw/ (FashionMNIST/raw/, ... for other data sets) "
        "(default: $MNIST_DATA_DIR, else ./data)",
    )
    p.add_argument(
        "--dataset",
        choices=list(DATASETS),
        help="refuse a checkpoint trained on another data set (default: take the checkpoint's)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (default: auto)")
    p.add_argument(
        "--no-cache", dest="cache", action="store_false", help="read the raw data files, not the cache"
    )
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

    device = select_device(args.device)
    model, dataset, normalization, *_ = open_net(args.checkpoint, args.weights, device, args.dataset)
    data_dir = resolve_data_dir(args.data_dir)
    images, labels = load_mnist(data_dir, False, device, dataset, normalization, args.cache)
    report = evaluation_report(model, images, labels)

    # The report first: a picture that cannot be written must not lose a whole test-set pass.
    print(json.dumps(report, indent=2) if args.json else report_text(dataset, report))
    output_dir = Path(args.output_dir or (Path(args.checkpoint).parent if args.checkpoint else "."))
    classes = DATASETS[dataset].classes
    report["pictures"] = draw_pictures(
        report, images, output_dir, args.mistakes, args.explain, model, classes
    )
    if report["pictures"] and not args.json:
        *others, last = report["pictures"]
        print(f"\nDrew {', '.join(others)}{' and ' if others else ''}{last}")
    return report


if __name__ == "__main__":
    main()
