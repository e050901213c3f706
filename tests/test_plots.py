import pytest
import torch

from mnist_cnn.errors import MnistCnnError
from mnist_cnn.plots import curves_figure, draw_confusion, mistakes_figure

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


@pytest.mark.parametrize("n", [1, 32, 127])
def test_the_mistakes_title_stays_above_the_first_row(n):
    fig = mistakes_figure(torch.randn(n, 1, 28, 28), [1] * n, [7] * n, [0.9] * n)
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
