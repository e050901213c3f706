"""Pictures of a run and of a model's mistakes, drawn with matplotlib (an optional extra)."""

from __future__ import annotations

import os
from pathlib import Path

import torch


class NoMatplotlib(RuntimeError):
    """matplotlib is not installed: pictures are skipped, everything else works."""


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no window
        import matplotlib.pyplot as plt
    except ImportError:
        raise NoMatplotlib(
            "matplotlib is not installed (pip install matplotlib): no pictures drawn"
        ) from None
    return plt


def draw_curves(history: list[dict], path: str | os.PathLike) -> None:
    """Loss (train and test) and test accuracy against epoch, as a PNG."""
    plt = _pyplot()
    epochs = [m["epoch"] for m in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    loss_ax.plot(epochs, [m["train_loss"] for m in history], "o-", label="train")
    loss_ax.plot(epochs, [m["test_loss"] for m in history], "o-", label="test")
    loss_ax.set(xlabel="epoch", ylabel="NLL loss", yscale="log", title="Loss")
    loss_ax.legend()
    acc_ax.plot(epochs, [100 * m["test_accuracy"] for m in history], "o-", color="C2")
    acc_ax.set(xlabel="epoch", ylabel="%", title="Test accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(Path(path), dpi=100)
    plt.close(fig)


def draw_confusion(confusion: torch.Tensor, path: str | os.PathLike) -> None:
    """A 10x10 confusion matrix (rows: true digit, columns: predicted), as a PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5.5))
    ax.imshow(confusion.log1p().numpy(), cmap="Blues")
    for (true, predicted), count in zip(
        torch.cartesian_prod(torch.arange(10), torch.arange(10)).tolist(),
        confusion.flatten().tolist(),
        strict=True,
    ):
        color = "white" if true == predicted else "black"
        ax.text(predicted, true, str(count), ha="center", va="center", fontsize=7, color=color)
    ax.set(xlabel="predicted", ylabel="true", xticks=range(10), yticks=range(10), title="Confusion matrix")
    fig.tight_layout()
    fig.savefig(Path(path), dpi=100)
    plt.close(fig)


def draw_mistakes(
    images: torch.Tensor,
    true: list[int],
    predicted: list[int],
    probability: list[float],
    path: str | os.PathLike,
) -> None:
    """A grid of misclassified normalized images, each titled true -> predicted (probability)."""
    plt = _pyplot()
    columns = 8
    rows = max(1, -(-len(images) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.3, rows * 1.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, t, p, prob in zip(axes.flat, images, true, predicted, probability, strict=False):
        ax.imshow(image[0].cpu().numpy(), cmap="gray")  # imshow scales the normalized values to black-white
        ax.set_title(f"{t} -> {p} ({100 * prob:.0f}%)", fontsize=8)
    fig.suptitle("Most confident mistakes: true -> predicted (probability)", fontsize=9)
    fig.tight_layout()
    fig.savefig(Path(path), dpi=100)
    plt.close(fig)
