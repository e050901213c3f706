"""Shared fixtures: tiny synthetic MNIST in torchvision's raw IDX layout, and the real data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import NO_NETWORK, RAW_NAMES, write_mnist

# Every test, and every process a test starts, uses one CPU thread: a fixed count (so a run is the
# same bit for bit), and one that does not collapse when other processes share the cores. Set
# before any test module imports torch, which reads it once.
os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    for name, value in NO_NETWORK.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="session", autouse=True)
def own_cache(tmp_path_factory) -> Iterator[Path]:
    """The tests' own cache of decoded data sets, never the user's ~/.cache: set before any other
    fixture (session-scoped ones included) reads data; subprocesses inherit it."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("cache")
        patch.setenv("MNIST_CNN_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory) -> Path:
    """A data folder holding small synthetic MNIST files (512 train, 256 test images)."""
    return write_mnist(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="session")
def real_mnist_dir() -> Path:
    """The real MNIST data folder from $MNIST_DATA_DIR; skips when it is not there."""
    value = os.environ.get("MNIST_DATA_DIR")
    if not value:
        pytest.skip("real MNIST not available: set MNIST_DATA_DIR to a folder holding MNIST/raw/")
    root = Path(value)
    missing = [n for pair in RAW_NAMES.values() for n in pair if not (root / "MNIST" / "raw" / n).is_file()]
    if missing:
        pytest.skip(f"real MNIST not available: {root}/MNIST/raw/ lacks {', '.join(missing)}")
    return root


@pytest.fixture(scope="session")
def real_fashion_dir() -> Path:
    """A folder holding the real Fashion-MNIST in FashionMNIST/raw/, from $FASHION_MNIST_DATA_DIR;
    skips when it is not there (.ci/run unpacks Debian's dataset-fashion-mnist into one)."""
    value = os.environ.get("FASHION_MNIST_DATA_DIR")
    if not value or not (Path(value) / "FashionMNIST" / "raw").is_dir():
        pytest.skip(
            "real Fashion-MNIST not available: set FASHION_MNIST_DATA_DIR to a folder holding "
            "FashionMNIST/raw/ (apt-get install dataset-fashion-mnist, then gunzip its files there)"
        )
    return Path(value)


@pytest.fixture(scope="session")
def checkpoint(mnist_dir, tmp_path_factory) -> Path:
    """best.pt of a short run of the seed net on the synthetic data."""
    from mnist_cnn import TrainConfig, fit

    out = tmp_path_factory.mktemp("run")
    fit(TrainConfig(data_dir=str(mnist_dir), batch_size=32, epochs=2, save_model=True, output_dir=str(out)))
    return out / "best.pt"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that reads the real data sets is marked real_data; real-data and browser tests are
    slow too, so that `pytest -m "not slow"` (the everyday run) leaves them to CI."""
    for item in items:
        if {"real_mnist_dir", "real_fashion_dir"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.real_data)
        if any(item.iter_markers("real_data")) or any(item.iter_markers("browser")):
            item.add_marker(pytest.mark.slow)
