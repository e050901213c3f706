"""MNIST in, normalized tensors and seeded batches out.

torchvision reads (and when it can, downloads) the files; each split is then held in memory as
one tensor on the training device, so a training step only indexes it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import torch
from torchvision import datasets

from .errors import MnistCnnError

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

    Downloads into root when the files are missing and the network allows.
    """
    raw = Path(root) / "MNIST" / "raw"
    try:
        dataset = datasets.MNIST(root, train=train, download=True)
    except Exception as error:  # torchvision raises many types for missing or bad files
        if all((raw / name).is_file() for name in RAW_FILES):
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise MnistCnnError(f"could not read the MNIST files in {raw}: {reason}") from None
        raise MnistCnnError(
            f"MNIST is not in {raw} and could not be downloaded; put the files "
            f"{', '.join(RAW_FILES)} there, or point --data-dir or {DATA_DIR_ENV} "
            "at the folder that holds MNIST/raw/"
        ) from None
    images, labels = dataset.data, dataset.targets
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise MnistCnnError(
            f"the MNIST files in {raw} disagree: {tuple(images.shape)} images, {len(labels)} labels"
        )
    return normalize(images.unsqueeze(1)).to(device), labels.long().to(device)


def shuffled_batches(
    n: int, batch_size: int, generator: torch.Generator, device: torch.device | str = "cpu"
) -> Iterator[torch.Tensor]:
    """Index tensors for one epoch of shuffled mini-batches; the last may be smaller.

    The permutation is drawn on the CPU from the seeded generator, so the order is the same on
    every device.
    """
    order = torch.randperm(n, generator=generator).to(device)
    yield from order.split(batch_size)
