"""Synthetic stand-ins for the MNIST family, written in torchvision's raw layout: for trying the
package (its notebook, its tests, CI) where the real files are not at hand.

Each image is noise with a bright bar whose height is its class: easy to learn, but it must be
learnt, and the real loading code reads the files as it reads MNIST's.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from .data import DATASETS


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an array in the IDX format of the original files: uint8, or big-endian int32 for a
    file named ...-int (QMNIST's labels)."""
    dtype, code = (np.dtype(">i4"), 0x0C) if path.name.endswith("-int") else (np.dtype(np.uint8), 0x08)
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(dtype).tobytes())


def synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n noisy 28x28 uint8 images whose class is where a bright bar lies, and their labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 60, (n, 28, 28))
    for image, label in zip(images, labels, strict=True):
        row = 3 + 2 * label + rng.integers(0, 2)
        image[row : row + 2, 4:24] = 255
    return images.astype(np.uint8), labels.astype(np.uint8)


def write_synthetic(
    root: str | os.PathLike, n_train: int = 512, n_test: int = 256, dataset: str = "mnist"
) -> Path:
    """Write synthetic data as dataset's files under root/<folder>/raw/, laid out as torchvision
    has them (EMNIST's images transposed, QMNIST's labels 8 int32 columns); returns root, a data
    folder for --data-dir."""
    spec, root = DATASETS[dataset], Path(root)
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
