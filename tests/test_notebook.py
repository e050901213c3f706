"""The tutorial notebook, run top to bottom in a fresh Jupyter kernel as a learner runs it: every
cell runs, the pictures show inline, the progress bar is the notebook's, and the notebook's
matplotlib is left as it was (its backend, and a later cell's plt.show())."""

from __future__ import annotations

import os

import pytest

from .helpers import REPO

nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed: pip install -e '.[test]'")
nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed: pip install -e '.[test]'")
pytest.importorskip("ipykernel", reason="ipykernel is not installed: pip install -e '.[test]'")

NOTEBOOK = REPO / "notebooks" / "tutorial.ipynb"
FIGURES = ("curves_figure(", "confusion_figure(", "mistakes_figure(", "explain_figure(")
AFTER = """import matplotlib
import matplotlib.pyplot as plt

print(matplotlib.get_backend())
plt.plot([0, 1], [1, 0])
plt.show()"""


def outputs(cell) -> list[str]:
    """What a cell's outputs hold: their MIME types, and "text:..." for printed text."""
    kinds = []
    for output in cell.get("outputs", []):
        kinds += list(output.get("data", {}))
        if output.get("output_type") == "stream":
            kinds.append("text:" + output["text"])
    return kinds


@pytest.mark.slow
@pytest.mark.parametrize("data", ["real MNIST", "synthetic"])
def test_the_tutorial_runs_top_to_bottom_and_leaves_matplotlib_as_it_was(data, tmp_path, monkeypatch):
    if data == "real MNIST" and not os.environ.get("MNIST_DATA_DIR"):
        pytest.skip("real MNIST not available: set MNIST_DATA_DIR to a folder holding MNIST/raw/")
    if data == "synthetic":
        monkeypatch.delenv("MNIST_DATA_DIR", raising=False)  # no data, no network: the stand-in
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    notebook.cells.insert(0, nbformat.v4.new_code_cell("%matplotlib inline"))  # as Jupyter starts
    notebook.cells.append(nbformat.v4.new_code_cell(AFTER))
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # a cell that fails raises CellExecutionError, naming it

    cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    printed = "".join(kind for cell in cells for kind in outputs(cell) if kind.startswith("text:"))
    assert ("synthetic stand-in" in printed) == (data == "synthetic"), printed
    for cell in cells:
        if cell.source.startswith(FIGURES) or any(f"\n{name}" in cell.source for name in FIGURES):
            assert "image/png" in outputs(cell), cell.source
    (fit_cell,) = [cell for cell in cells if "fit(config, progress=True" in cell.source]
    assert "application/vnd.jupyter.widget-view+json" in outputs(fit_cell)  # tqdm.auto's widget
    last = outputs(cells[-1])
    assert any("inline" in kind for kind in last if kind.startswith("text:")), last
    assert "image/png" in last  # a later plt.show() still shows its figure
