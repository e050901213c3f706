"""Pictures of a run and of a model's mistakes, drawn with matplotlib (an optional extra).

Each picture has a function that returns its figure (`curves_figure`, ...), which a notebook
shows inline, and one that writes it as a PNG (`draw_curves`, ...). The figures are
`matplotlib.figure.Figure`s made without pyplot: nothing here changes matplotlib's backend, or
opens, shows or closes a figure of pyplot's, so a notebook's `%matplotlib inline` and a script's
own figures are left as they were, and a machine with no display draws as well. Writes are
atomic, and a place that cannot be written is an MnistCnnError naming the file.
"""

from __future__ import annotations

import io
import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .files import write_atomic
from .metrics import SPLIT_NAMES, evaluated_split

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .cam import ClassActivationMaps, Explanation


class NoMatplotlib(RuntimeError):
    """matplotlib is not installed: pictures are skipped, everything else works."""


def new_figure(**kwargs: Any) -> Figure:
    """A matplotlib Figure made without pyplot, so that no backend or pyplot state is touched
    (see the module's docstring); NoMatplotlib when matplotlib is not installed."""
    try:
        import matplotlib.figure
        from matplotlib.backends.backend_agg import FigureCanvasAgg
    except ImportError:
        raise NoMatplotlib(
            "matplotlib is not installed (pip install matplotlib): no pictures drawn"
        ) from None
    figure = matplotlib.figure.Figure(**kwargs)
    FigureCanvasAgg(figure)  # its own canvas, to draw on and lay out with: no backend is chosen
    return figure


def save_figure(fig: Figure, path: str | os.PathLike) -> None:
    """Write fig to path as a PNG (atomically, making the folder)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    write_atomic(path, buffer.getvalue())


def curves_figure(history: list[dict]) -> Figure:
    """Loss (train and test) and test accuracy against epoch, with whole-epoch ticks."""
    fig = new_figure(figsize=(10, 4))
    from matplotlib.ticker import MaxNLocator

    epochs = [m["epoch"] for m in history]
    split = evaluated_split(history[0])  # the test split, or the validation split with --val-split
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, [m["train_loss"] for m in history], "o-", label="train")
    loss_ax.plot(epochs, [m[f"{split}_loss"] for m in history], "o-", label=split)
    loss_ax.set(xlabel="epoch", ylabel="NLL loss", yscale="log", title="Loss")
    loss_ax.legend()
    acc_ax.plot(epochs, [100 * m[f"{split}_accuracy"] for m in history], "o-", color="C2")
    acc_ax.set(xlabel="epoch", ylabel="%", title=f"{SPLIT_NAMES[split].removesuffix(' set')} accuracy")
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
    fig = new_figure(figsize=(6, 5.5))
    ax = fig.subplots()
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


def blank_grid(cells: int, columns: int, cell: tuple[float, float]) -> tuple[Figure, list[Axes]]:
    """A figure with room for cells axes in rows of columns, each cell (width, height) inches, all
    without frames or ticks until drawn on."""
    rows = max(1, -(-cells // columns))
    # Constrained layout keeps a suptitle clear of the first row: tight_layout lets them overlap
    # once there are a dozen rows or more.
    fig = new_figure(figsize=(columns * cell[0], rows * cell[1]), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, list(axes.flat)


def mistakes_figure(
    images: torch.Tensor, true: list[int], predicted: list[int], probability: list[float]
) -> Figure:
    """A grid of misclassified normalized images, each titled true -> predicted (probability)."""
    fig, axes = blank_grid(len(images), columns=8, cell=(1.3, 1.5))
    for ax, image, t, p, prob in zip(axes, images, true, predicted, probability, strict=False):
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


def percent(probability: float) -> str:
    """A probability as a percentage that does not round a small one to 0.0%."""
    return f"{100 * probability:.1f}%" if probability >= 0.001 else f"{100 * probability:.1g}%"


def mosaic(maps: torch.Tensor) -> np.ndarray:
    """Channels (C, h, w) side by side in one array, in rows about twice as long as they are many,
    with NaN (drawn blank) between them."""
    channels, h, w = maps.shape
    columns = min(channels, math.ceil(math.sqrt(2 * channels)))
    rows = -(-channels // columns)
    gap = max(1, max(h, w) // 8)
    canvas = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap), np.nan, dtype=np.float32)
    for i, channel in enumerate(maps.float().numpy()):
        top, left = (i // columns) * (h + gap), (i % columns) * (w + gap)
        canvas[top : top + h, left : left + w] = channel
    return canvas


def overlay(ax: Axes, image: torch.Tensor, class_map: torch.Tensor) -> None:
    """A class map (H, W) over its gray input image (H, W), coloured from its lowest value (blue)
    to its highest (red), as Zhou et al. show them: where the net found the class most."""
    ax.imshow(image.cpu().numpy(), cmap="gray")
    ax.imshow(class_map.numpy(), cmap="turbo", alpha=0.5)


def map_title(cams: ClassActivationMaps, index: int, label: str, what: str = "") -> str:
    """label, the class's probability, then (what, then) the range and mean (the class's score) of
    its class map."""
    coarse = cams.maps[index]
    return (
        f"{label} ({percent(float(cams.probabilities[index]))})\n{what}"
        f"{float(coarse.min()):.1f} to {float(coarse.max()):.1f}, mean {float(coarse.mean()):.1f}"
    )


def explain_figure(explanation: Explanation, classes: tuple[str, ...]) -> Figure:
    """explain's picture: the input as the net saw it, the first layer's filters, the class maps of
    the two likeliest classes over the input, and every layer's output, named as torchsummary does."""
    image, cams, features = explanation.image[0], explanation.cams, explanation.features
    columns = 7
    rows = -(-len(features) // columns)
    fig = new_figure(figsize=(2.1 * columns, 3.6 + 1.7 * rows), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[3.6, 1.7 * rows], squeeze=False)[:, 0]

    ax_input, ax_filters, *ax_maps = top.subplots(1, 4)
    ax_input.imshow(image.numpy(), cmap="gray")
    ax_input.set_title(f"Input {image.shape[0]}x{image.shape[1]}, as the net saw it", fontsize=9)
    filters = explanation.filters[:, 0]  # one input channel: gray images
    limit = float(filters.abs().max())
    # coolwarm's zero is light gray, so that the blank between the filters stands out.
    ax_filters.imshow(mosaic(filters), cmap="coolwarm", vmin=-limit, vmax=limit)
    n, kh, kw = filters.shape
    ax_filters.set_title(f"First layer's {n} filters, {kh}x{kw}\n(red: positive weights)", fontsize=9)

    h, w = cams.maps.shape[1:]
    for ax, index, role in zip(ax_maps, cams.ranked(), ("Predicted", "Runner-up"), strict=False):
        overlay(ax, image, cams.upsampled(index))
        ax.set_title(map_title(cams, index, f"{role}: {classes[index]}", f"{h}x{w} class map: "), fontsize=9)
    for ax in (ax_input, ax_filters, *ax_maps):
        ax.set(xticks=[], yticks=[])
    top.suptitle(
        "Where the net found the two likeliest classes: each class map over the input, from its lowest "
        "value (blue) to its highest (red); a map's mean is its class's score (the logit)",
        fontsize=10,
    )

    from matplotlib import colormaps

    cmap = colormaps["viridis"].with_extremes(bad="white")
    grid = bottom.subplots(rows, columns, squeeze=False).flat  # the last row may have cells to spare
    for ax, (name, output) in zip(grid, features.items(), strict=False):
        ax.imshow(mosaic(output), cmap=cmap)
        ax.set_title(f"{name}\n{' x '.join(map(str, output.shape))}", fontsize=8)
    for ax in bottom.axes:
        ax.axis("off")
    bottom.suptitle(
        "Every layer's output, named as torchsummary names them, channel by channel (one colour scale "
        "per layer)",
        fontsize=10,
    )
    return fig


def draw_explain(explanation: Explanation, classes: tuple[str, ...], path: str | os.PathLike) -> None:
    """explain_figure(...) as a PNG."""
    save_figure(explain_figure(explanation, classes), path)


def explained_mistakes_figure(
    images: torch.Tensor,
    true: list[int],
    predicted: list[int],
    cams: list[ClassActivationMaps],
    classes: tuple[str, ...],
) -> Figure:
    """For each mistake, where the net found the class it predicted and the true class: their class
    maps over the image, as explain_figure draws them."""
    fig, axes = blank_grid(2 * len(images), columns=8, cell=(1.3, 1.6))
    pairs = zip(axes[0::2], axes[1::2], images, true, predicted, cams, strict=False)
    for ax_predicted, ax_true, image, t, p, maps in pairs:
        overlay(ax_predicted, image[0], maps.upsampled(p))
        overlay(ax_true, image[0], maps.upsampled(t))
        ax_predicted.set_title(map_title(maps, p, f"{classes[t]} -> {classes[p]}"), fontsize=7)
        ax_true.set_title(map_title(maps, t, f"true {classes[t]}"), fontsize=7)
    fig.suptitle(
        "Most confident mistakes, true -> predicted: the class maps of the predicted class (left) and\n"
        "the true one (right), each from its lowest value (blue) to its highest (red); the probability,\n"
        "the map's range and its mean (the class's score)",
        fontsize=9,
    )
    return fig


def draw_explained_mistakes(
    images: torch.Tensor,
    true: list[int],
    predicted: list[int],
    cams: list[ClassActivationMaps],
    classes: tuple[str, ...],
    path: str | os.PathLike,
) -> None:
    """explained_mistakes_figure(...) as a PNG."""
    save_figure(explained_mistakes_figure(images, true, predicted, cams, classes), path)
