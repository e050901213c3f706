import numpy as np
import pytest
import torch

from mnist_cnn.cam import class_activation_maps, explain
from mnist_cnn.data import DIGITS
from mnist_cnn.errors import MnistCnnError
from mnist_cnn.model import build_model
from mnist_cnn.plots import (
    curves_figure,
    draw_confusion,
    explain_figure,
    explained_mistakes_figure,
    mistakes_figure,
    mosaic,
    percent,
)

plt = pytest.importorskip("matplotlib.pyplot", reason="matplotlib is not installed (pip install matplotlib)")


@pytest.mark.parametrize("epochs", [1, 3])
def test_curves_have_whole_epoch_ticks(epochs):
    history = [
        {"epoch": e, "train_loss": 1 / e, "test_loss": 1.2 / e, "test_accuracy": 0.9}
        for e in range(1, epochs + 1)
    ]
    fig = curves_figure(history)
    fig.canvas.draw()
    try:
        for ax in fig.axes:
            low, high = ax.get_xlim()
            shown = [tick for tick in ax.get_xticks() if low <= tick <= high]
            assert shown and all(float(tick).is_integer() for tick in shown), shown
            assert set(range(1, epochs + 1)) <= set(shown)
    finally:
        plt.close(fig)


def explained_mistakes(n: int):
    """The class maps of n random images taken for 7s that are 1s, by an untrained seed net."""
    images, net = torch.randn(n, 1, 28, 28), build_model("seed")
    cams = [class_activation_maps(net, image) for image in images]
    return explained_mistakes_figure(images, [1] * n, [7] * n, cams, DIGITS)


@pytest.mark.slow
@pytest.mark.parametrize(
    "make",
    [
        *(
            lambda n=n: mistakes_figure(torch.randn(n, 1, 28, 28), [1] * n, [7] * n, [0.9] * n)
            for n in (1, 32, 127)
        ),
        *(lambda n=n: explained_mistakes(n) for n in (1, 24)),
    ],
    ids=["mistakes-1", "mistakes-32", "mistakes-127", "explained-1", "explained-24"],
)
def test_the_mistakes_title_stays_above_the_first_row(make):
    fig = make()
    try:
        renderer = fig.canvas.get_renderer()
        fig.draw(renderer)  # lays the figure out, as savefig does
        title_box = fig._suptitle.get_window_extent(renderer)
        first_row = [ax for ax in fig.axes[:8] if ax.get_title()]
        assert first_row
        for ax in first_row:
            assert title_box.y0 >= ax.title.get_window_extent(renderer).y1
            assert title_box.y0 >= ax.get_window_extent(renderer).y1
    finally:
        plt.close(fig)


def test_a_picture_that_cannot_be_written_is_an_error_naming_it(tmp_path):
    (tmp_path / "file.txt").write_text("not a folder")
    path = tmp_path / "file.txt" / "confusion.png"
    with pytest.raises(MnistCnnError, match=f"cannot write {path}"):
        draw_confusion(torch.eye(10, dtype=torch.long), path)


def test_mosaic_lays_the_channels_side_by_side_with_blank_between():
    maps = torch.arange(8.0)[:, None, None].expand(8, 26, 26)
    canvas = mosaic(maps)  # 4 columns, 2 rows, 3 blank pixels between channels
    assert canvas.shape == (2 * 26 + 3, 4 * 26 + 3 * 3)
    assert canvas[0, 0] == 0 and canvas[0, 29] == 1 and canvas[29, 0] == 4 and canvas[-1, -1] == 7
    assert np.isnan(canvas[26:29]).all() and np.isnan(canvas[:, 26:29]).all()
    assert mosaic(torch.zeros(10, 1, 1)).shape == (3, 9)  # the class scores: 2 rows of 5


def test_percent_keeps_small_probabilities_readable():
    assert [percent(p) for p in (0.9994, 0.5, 0.001, 3e-8)] == ["99.9%", "50.0%", "0.1%", "3e-06%"]


def test_the_explain_picture_names_and_sizes_every_layer():
    explanation = explain(build_model("seed"), torch.randn(1, 28, 28))
    fig = explain_figure(explanation, DIGITS)
    try:
        titles = [ax.get_title() for ax in fig.get_axes()]
        for name, output in explanation.features.items():
            assert f"{name}\n{' x '.join(map(str, output.shape))}" in titles
        best, second = explanation.cams.ranked()[:2]
        assert any(t.startswith(f"Predicted: {best} (") and "2x2 class map: " in t for t in titles)
        assert any(t.startswith(f"Runner-up: {second} (") for t in titles)
        assert "Input 28x28, as the net saw it" in titles
    finally:
        plt.close(fig)
