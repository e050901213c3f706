"""Pictures of a run and of a model's mistakes, drawn with matplotlib (an optional extra).

Each picture has a function that builds its figure (`curves_figure`, ...) and one that writes it
as a PNG (`draw_curves`, ...). Writes are atomic, and a place that cannot be written is an
MnistCnnError naming the file.
"""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING

import torch

from .files import write_atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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


def save_figure(fig: Figure, path: str | os.PathLike) -> None:
    """Write fig to path as a PNG (atomically, making the folder) and close it."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=100)
    finally:
        _pyplot().close(fig)
    write_atomic(path, buffer.getvalue())


def curves_figure(history: list[dict]) -> Figure:
    """Loss (train and test) and test accuracy against epoch, with whole-epoch ticks."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [m["epoch"] for m in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    loss_ax.plot(epochs, [m["train_loss"] for m in history], "o-", label="train")
    loss_ax.plot(epochs, [m["test_loss"] for m in history], "o-", label="test")
    loss_ax.set(xlabel="epoch", ylabel="NLL loss", yscale="log", title="Loss")
    loss_ax.legend()
    acc_ax.plot(epochs, [100 * m["test_accuracy"] for m in history], "o-", color="C2")
    acc_ax.set(xlabel="epoch", ylabel="%", title="Test accuracy")
    acc_ax.set_ylim(top=min(acc_ax.get_ylim()[1], 100))  # the autoscale's margin passes 100%
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        # The default locator splits a short run into fractions of an epoch (0.96, 0.98, ...);
        # min_n_ticks=1 keeps whole epochs when only one lies in view (a 1-epoch run).
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    fig.tight_layout()
    return fig


def draw_curves(history: list[dict], path: str | os.PathLike) -> None:
    """curves_figure(history) as a PNG."""
    save_figure(curves_figure(history), path)


def confusion_figure(confusion: torch.Tensor) -> Figure:
    """A 10x10 confusion matrix (rows: true class, columns: predicted)."""
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
    return fig


def draw_confusion(confusion: torch.Tensor, path: str | os.PathLike) -> None:
    """confusion_figure(confusion) as a PNG."""
    save_figure(confusion_figure(confusion), path)


def mistakes_figure(
    images: torch.Tensor, true: list[int], predicted: list[int], probability: list[float]
) -> Figure:
    """A grid of misclassified normalized images, each titled true -> predicted (probability)."""
    plt = _pyplot()
    columns = 8
    rows = max(1, -(-len(images) // columns))
    # Constrained layout keeps the suptitle clear of the first row: tight_layout lets them overlap
    # once there are a dozen rows or more.
    fig, axes = plt.subplots(
        rows, columns, figsize=(columns * 1.3, rows * 1.5), squeeze=False, layout="constrained"
    )
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, t, p, prob in zip(axes.flat, images, true, predicted, probability, strict=False):
        ax.imshow(image[0].cpu().numpy(), cmap="gray")  # imshow scales the normalized values to black-white
        ax.set_title(f"{t} -> {p} ({100 * prob:.0f}%)", fontsize=8)
    fig.suptitle("Most confident mistakes: true -> predicted (probability)", fontsize=9)
    return fig


def draw_mistakes(
    images: torch.Tensor,
    true: list[int],
    predicted: list[int],
    probability: list[float],
    path: str | os.PathLike,
) -> None:
    """mistakes_figure(...) as a PNG."""
    save_figure(mistakes_figure(images, true, predicted, probability), path)
