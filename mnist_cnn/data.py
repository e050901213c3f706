"""MNIST in, normalized tensors and seeded batches out.

torchvision reads (and when it can, downloads) the files; each split is then held in memory as
one tensor on the training device, so a training step only indexes it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torchvision import datasets

from .errors import MnistCnnError, first_line

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
DATA_DIR_ENV = "MNIST_DATA_DIR"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data folder: the argument, else $MNIST_DATA_DIR, else ./data."""
    return Path(data_dir or os.environ.get(DATA_DIR_ENV) or "data")


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (any shape) -> float32 with MNIST's mean and std."""
    return (images.float() / 255 - MNIST_MEAN) / MNIST_STD


def load_mnist(
    root: str | os.PathLike, train: bool, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """One split as (images (N, 1, 28, 28) float32 normalized, labels (N,) int64) on device.

    Downloads into root when the files are missing and the network allows; root is written
    only then, so a read-only folder that holds the files works.
    """
    root = Path(root)
    raw = root / "MNIST" / "raw"
    if root.exists() and not root.is_dir():
        raise MnistCnnError(f"--data-dir {root} is a file, not a folder")
    files = [raw / name for name in (RAW_FILES[:2] if train else RAW_FILES[2:])]
    try:
        dataset = datasets.MNIST(root, train=train, download=True)
    except Exception as error:  # torchvision raises many types for missing, unreadable or bad files
        if not all(path.is_file() for path in files):
            raise MnistCnnError(
                f"MNIST is not in {raw} and could not be downloaded ({first_line(error)}); put the "
                f"files {', '.join(RAW_FILES)} there, or point --data-dir or {DATA_DIR_ENV} "
                "at the folder that holds MNIST/raw/"
            ) from None
        for path, ndim in zip(files, (3, 1), strict=True):
            problem = idx_problem(path, ndim)
            if problem:
                raise MnistCnnError(f"{path}: {problem}") from None
        raise MnistCnnError(f"could not read the MNIST files in {raw}: {first_line(error)}") from None
    images, labels = dataset.data, dataset.targets
    if images.shape[1:] != (28, 28):
        raise MnistCnnError(f"{files[0]}: images are {tuple(images.shape[1:])} pixels, not 28x28")
    if len(images) != len(labels):
        raise MnistCnnError(
            f"{files[0].name} holds {len(images)} images but {files[1].name} {len(labels)} labels (in {raw})"
        )
    return normalize(images.unsqueeze(1)).to(device), labels.long().to(device)


def idx_problem(path: Path, ndim: int) -> str | None:
    """What is wrong with an IDX file of uint8 data in ndim dimensions, or None.

    torchvision reads the files; this only explains, in words, why it could not.
    """
    try:
        with open(path, "rb") as file:
            header = file.read(4 + 4 * ndim)
        size = path.stat().st_size
    except OSError as error:
        return f"cannot be read ({error.strerror})"
    if len(header) < 4 + 4 * ndim:
        return f"truncated: {size} bytes is not even an IDX header"
    magic = int.from_bytes(header[:4], "big")
    if magic != 0x800 + ndim:
        return f"wrong magic number {magic:#010x} (an MNIST {'image' if ndim == 3 else 'label'} file has {0x800 + ndim:#010x})"
    shape = [int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = len(header) + math.prod(shape)
    if size != expected:
        return f"{'truncated' if size < expected else 'too long'}: {size:,} bytes, its header ({'x'.join(map(str, shape))}) says {expected:,}"
    return None


def epoch_order(n: int, generator: torch.Generator) -> torch.Tensor:
    """One epoch's shuffled order of n samples, drawn on the CPU from the seeded generator, so the
    order is the same on every device."""
    return torch.randperm(n, generator=generator)
