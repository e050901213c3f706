"""Shared fixtures: tiny synthetic MNIST in torchvision's raw IDX layout, and the real data."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

# Every test, and every process a test starts, uses one CPU thread: a fixed count (so a run is the
# same bit for bit), and one that does not collapse when other processes share the cores. Set
# before any test module imports torch, which reads it once.
os.environ["OMP_NUM_THREADS"] = "1"

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
RAW_NAMES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Point urllib at a closed local port, so that no test can download MNIST (fast, offline, the same
# on a machine with a network). Subprocesses inherit it.
NO_NETWORK = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an array in the IDX format of the original files: uint8, or big-endian int32 for a
    file named ...-int (QMNIST's labels)."""
    dtype, code = (np.dtype(">i4"), 0x0C) if path.name.endswith("-int") else (np.dtype(np.uint8), 0x08)
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(dtype).tobytes())


def synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n noisy 28x28 images whose class is where a bright bar lies: easy, but must be learnt."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 60, (n, 28, 28))
    for image, label in zip(images, labels, strict=True):
        row = 3 + 2 * label + rng.integers(0, 2)
        image[row : row + 2, 4:24] = 255
    return images.astype(np.uint8), labels.astype(np.uint8)


def write_mnist(root: Path, n_train: int = 512, n_test: int = 256, dataset: str = "mnist") -> Path:
    """Write synthetic data as dataset's files under root/<folder>/raw/, laid out as torchvision
    has them (EMNIST's images transposed, QMNIST's labels 8 int32 columns); returns root."""
    from mnist_cnn.data import DATASETS

    spec = DATASETS[dataset]
    for train, n, seed in ((True, n_train, 0), (False, n_test, 1)):
        images, labels = synthetic_digits(n, seed)
        if spec.transposed:
            images = images.transpose(0, 2, 1)
        if dataset == "qmnist":  # the class, then writer details that the package ignores
            labels = np.column_stack([labels, np.full((n, 7), 7)])
        image_file, label_file = spec.split_files(root, train)
        image_file.parent.mkdir(parents=True, exist_ok=True)
        write_idx(image_file, images)
        write_idx(label_file, labels)
    return root


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


def render_digit(
    text: str = "7", size: tuple[int, int] = (120, 160), dark_on_light: bool = True, mode: str = "L"
):
    """A digit drawn with Pillow's font, as a user's photo or scan might show it."""
    from PIL import Image, ImageDraw, ImageFont

    paper, pen = (235, 20) if dark_on_light else (10, 240)
    image = Image.new("L", size, paper)
    font = ImageFont.load_default(size=int(min(size) * 0.6))
    ImageDraw.Draw(image).text((size[0] * 0.3, size[1] * 0.15), text, fill=pen, font=font)
    return image.convert(mode, dither=Image.Dither.NONE)  # a scanner's black and white, not dots


def pen_digit(digit: int, width: int = 3, page: int = 400):
    """A digit written with a pen `width` pixels wide on a white page: strokes, as people write."""
    import math

    from PIL import Image, ImageDraw

    def arc(cx, cy, rx, ry, start, stop, n=48):
        angles = (math.radians(start + (stop - start) * i / n) for i in range(n + 1))
        return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]

    def curve(p0, p1, p2, n=30):  # a quadratic Bezier curve
        ts = (i / n for i in range(n + 1))
        return [
            tuple(
                (1 - t) ** 2 * a + 2 * (1 - t) * t * b + t * t * c for a, b, c in zip(p0, p1, p2, strict=True)
            )
            for t in ts
        ]

    strokes = {  # in a unit box, y down
        0: [arc(0.5, 0.5, 0.35, 0.45, -90, 270)],
        1: [[(0.3, 0.22), (0.55, 0.05), (0.55, 0.95)]],
        2: [arc(0.5, 0.3, 0.3, 0.25, 190, 380) + [(0.15, 0.95), (0.88, 0.95)]],
        3: [arc(0.5, 0.27, 0.27, 0.22, -160, 90) + arc(0.5, 0.72, 0.3, 0.23, -90, 160)[1:]],
        4: [[(0.7, 0.95), (0.7, 0.05), (0.1, 0.65), (0.9, 0.65)]],
        5: [[(0.8, 0.05), (0.3, 0.05), (0.25, 0.45)] + arc(0.48, 0.68, 0.32, 0.27, -140, 150)],
        6: [curve((0.75, 0.05), (0.2, 0.2), (0.2, 0.7)) + arc(0.5, 0.7, 0.3, 0.25, 180, 540)],
        7: [[(0.12, 0.05), (0.88, 0.05), (0.4, 0.95)]],
        8: [arc(0.5, 0.27, 0.25, 0.22, 90, 450), arc(0.5, 0.71, 0.3, 0.24, -90, 270)],
        9: [arc(0.5, 0.3, 0.3, 0.25, 0, 360), curve((0.8, 0.3), (0.8, 0.7), (0.65, 0.95))],
    }[digit]
    image = Image.new("L", (page, page), 255)
    draw = ImageDraw.Draw(image)
    box_w, box_h = 0.4 * page, 0.6 * page
    for stroke in strokes:
        points = [(page / 2 + (x - 0.5) * box_w, page / 2 + (y - 0.5) * box_h) for x, y in stroke]
        draw.line(points, fill=0, width=width, joint="curve" if width > 2 else None)
    return image
