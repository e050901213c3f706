"""A trained net at work: its answers for images and image files (predict), and its report on a
whole test set (evaluate): accuracy per class, the confusion matrix, the mistakes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .data import DATASETS, DIGITS, MNIST_NORMALIZATION, Normalization
from .errors import MnistCnnError
from .metrics import format_test_line
from .preprocess import image_files, load_digit


@torch.inference_mode()
def predict_digits(
    model: nn.Module, images: torch.Tensor, top: int = 3, classes: tuple[str, ...] = DIGITS
) -> list[dict[str, Any]]:
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
    paths: Sequence[str | os.PathLike],
    normalization: Normalization = MNIST_NORMALIZATION,
    classes: tuple[str, ...] = DIGITS,
    top: int = 3,
) -> tuple[list[dict[str, Any]], list[str]]:
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


@torch.inference_mode()
def evaluation_report(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000
) -> dict[str, Any]:
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


def report_text(dataset: str, report: dict[str, Any]) -> str:
    """The report as the text evaluate prints: test line, accuracy per class, confusion matrix."""
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


def first_mistakes(report: dict[str, Any], images: torch.Tensor, n: int) -> Mistakes:
    """The report's first n mistakes (the most confident), with their images."""
    shown = report["mistakes"][:n]
    return Mistakes(
        images[[m["index"] for m in shown]],
        [m["true"] for m in shown],
        [m["predicted"] for m in shown],
        [m["probability"] for m in shown],
    )
