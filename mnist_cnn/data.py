"""The MNIST family in, normalized tensors and seeded batches out.

torchvision reads (and when it can, downloads) the files, and is imported only then: the
decoded splits are cached (cache.py), so later runs need neither. Each split is held in memory
as one tensor on the training device, so a training step only indexes it.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch

from .cache import cached_split
from .errors import MnistCnnError, first_line

Normalization = tuple[float, float]  # (mean, std) of a training split's pixels, scaled to [0, 1]

MNIST_NORMALIZATION: Normalization = (0.1307, 0.3081)
DATA_DIR_ENV = "MNIST_DATA_DIR"
DIGITS = tuple("0123456789")
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@dataclass(frozen=True)
class Dataset:
    """One member of the MNIST family: how torchvision opens it, where its files lie
    (<root>/<folder>/raw/), and its class names."""

    open: Callable[[Path, bool], Any]  # (root, train) -> torchvision's data set (an MNIST subclass)
    folder: str
    files: tuple[str, str, str, str]  # train images, train labels, test images, test labels
    classes: tuple[str, ...]
    transposed: bool = False  # EMNIST stores each image transposed
    hint: str = ""  # where else to get the files

    def split_files(self, root: Path, train: bool) -> tuple[Path, Path]:
        """The (images, labels) files of a split."""
        names = self.files[:2] if train else self.files[2:]
        return root / self.folder / "raw" / names[0], root / self.folder / "raw" / names[1]


DATASETS: dict[str, Dataset] = {
    "mnist": Dataset(
        lambda root, train: torchvision_datasets().MNIST(root, train, download=True),
        "MNIST",
        MNIST_FILES,
        DIGITS,
    ),
    "fashion-mnist": Dataset(
        lambda root, train: torchvision_datasets().FashionMNIST(root, train, download=True),
        "FashionMNIST",
        MNIST_FILES,
        (
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        hint="Debian's dataset-fashion-mnist package has them: gunzip /usr/share/datasets/fashion-mnist/*.gz there",
    ),
    "kmnist": Dataset(
        lambda root, train: torchvision_datasets().KMNIST(root, train, download=True),
        "KMNIST",
        MNIST_FILES,
        ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    ),
    # QMNIST's test split is its first 10,000 images (test10k): MNIST's test set, reconstructed,
    # so that accuracies compare with MNIST's. Its labels file holds 8 columns; the class is the first.
    "qmnist": Dataset(
        lambda root, train: torchvision_datasets().QMNIST(
            root, what="train" if train else "test10k", download=True
        ),
        "QMNIST",
        (
            "qmnist-train-images-idx3-ubyte",
            "qmnist-train-labels-idx2-int",
            "qmnist-test-images-idx3-ubyte",
            "qmnist-test-labels-idx2-int",
        ),
        DIGITS,
    ),
    "emnist-digits": Dataset(
        lambda root, train: torchvision_datasets().EMNIST(root, split="digits", train=train, download=True),
        "EMNIST",
        (
            "emnist-digits-train-images-idx3-ubyte",
            "emnist-digits-train-labels-idx1-ubyte",
            "emnist-digits-test-images-idx3-ubyte",
            "emnist-digits-test-labels-idx1-ubyte",
        ),
        DIGITS,
        transposed=True,
    ),
}


def torchvision_datasets():
    """torchvision.datasets, imported when files must be read: torchvision takes seconds to import."""
    from torchvision import datasets

    return datasets


def get_dataset(name: str) -> Dataset:
    """The data set called name (the --dataset flag), or a clear error."""
    if name not in DATASETS:
        raise MnistCnnError(f"--dataset must be one of {', '.join(DATASETS)}, got {name!r}")
    return DATASETS[name]


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data folder: the argument, else $MNIST_DATA_DIR, else ./data."""
    return Path(data_dir or os.environ.get(DATA_DIR_ENV) or "data")


def read_split(
    root: str | os.PathLike, train: bool, dataset: str = "mnist", cache: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """One split as stored: (images (N, 1, 28, 28) uint8, upright; labels (N,) int64).

    Downloads into root when the files are missing and the network allows; root is written
    only then, so a read-only folder that holds the files works. With cache, the decoded split
    comes from (and goes to) the user's cache folder (see cache.py).
    """
    spec, root = get_dataset(dataset), Path(root)
    if root.exists() and not root.is_dir():
        raise MnistCnnError(f"--data-dir {root} is a file, not a folder")
    files = spec.split_files(root, train)
    if not all(path.is_file() for path in files):
        check_not_misplaced(root, spec)
    if not cache:
        return decode_split(root, train, dataset)
    name = f"{dataset}-{'train' if train else 'test'}"
    return cached_split(name, files, lambda: decode_split(root, train, dataset))


def decode_split(root: Path, train: bool, dataset: str) -> tuple[torch.Tensor, torch.Tensor]:
    """read_split without the cache: torchvision reads the files (downloading them if it can)."""
    spec = DATASETS[dataset]
    files = spec.split_files(root, train)
    raw = files[0].parent
    # The outermost of the folders that torchvision would create: removed again if it fails.
    created = next((folder for folder in (root, root / spec.folder, raw) if not folder.exists()), None)
    try:
        data = spec.open(root, train)
    except Exception as error:  # torchvision raises many types for missing, unreadable or bad files
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        if not all(path.is_file() for path in files):
            hint = f" ({spec.hint})" if spec.hint else ""
            raise MnistCnnError(
                f"{dataset} is not in {raw} and could not be downloaded ({first_line(error)}); put the "
                f"files {', '.join(spec.files)} there{hint}, or point --data-dir or {DATA_DIR_ENV} at "
                f"the folder that holds {spec.folder}/raw/"
            ) from None
        for path in files:
            problem = idx_problem(path)
            if problem:
                raise MnistCnnError(f"{path}: {problem}") from None
        raise MnistCnnError(f"could not read the {dataset} files in {raw}: {first_line(error)}") from None
    images, labels = data.data, data.targets
    if labels.ndim == 2:  # QMNIST: the class, then details of the writer
        labels = labels[:, 0]
    if images.shape[1:] != (28, 28):
        raise MnistCnnError(f"{files[0]}: images are {tuple(images.shape[1:])} pixels, not 28x28")
    if len(images) != len(labels):
        raise MnistCnnError(
            f"{files[0].name} holds {len(images)} images but {files[1].name} {len(labels)} labels (in {raw})"
        )
    if spec.transposed:
        images = images.transpose(1, 2)
    return images.unsqueeze(1).contiguous(), labels.long()


def check_not_misplaced(root: Path, spec: Dataset) -> None:
    """A data folder given one level too deep (DIR/MNIST/raw) or too shallow (the files right
    in it) is a clear error, before torchvision downloads into DIR/MNIST/raw/MNIST/raw."""
    if root.name == "raw" and root.parent.name == spec.folder:
        holder = root.parent.parent
    elif root.name == spec.folder and (root / "raw").is_dir():
        holder = root.parent
    elif any((root / name).is_file() for name in spec.files):
        raise MnistCnnError(
            f"--data-dir {root} holds the {spec.folder} files themselves: move them into "
            f"{root / spec.folder / 'raw'}, where torchvision looks for them"
        )
    else:
        return
    raise MnistCnnError(
        f"--data-dir {root} is the {spec.folder} folder itself: point --data-dir at the folder that "
        f"holds {spec.folder}/raw ({holder})"
    )


def pixel_statistics(images: torch.Tensor) -> Normalization:
    """(mean, std) of uint8 images' pixels scaled to [0, 1], to 4 decimals (MNIST: 0.1307, 0.3081)."""
    return scaled_statistics(images.float() / 255)


def scaled_statistics(scaled: torch.Tensor) -> Normalization:
    """pixel_statistics of images already scaled to [0, 1]."""
    std, mean = torch.std_mean(scaled)
    return round(mean.item(), 4), round(std.item(), 4)


def normalize(images: torch.Tensor, normalization: Normalization = MNIST_NORMALIZATION) -> torch.Tensor:
    """uint8 images (any shape) -> float32 with a training split's (mean, std)."""
    mean, std = normalization
    # In place, one float copy: bitwise the same as (images.float() / 255 - mean) / std, faster.
    return images.float().div_(255).sub_(mean).div_(std)


def load_mnist(
    root: str | os.PathLike,
    train: bool,
    device: torch.device | str = "cpu",
    dataset: str = "mnist",
    normalization: Normalization | None = None,
    cache: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One split as (images (N, 1, 28, 28) float32 normalized, labels (N,) int64) on device.

    normalization: the (mean, std) to normalize with; None: the data set's own, measured on its
    training split (which is read for it when train is False). cache: see read_split.
    """
    images, labels = read_split(root, train, dataset, cache)
    if normalization is None:
        normalization = pixel_statistics(images if train else read_split(root, True, dataset, cache)[0])
    return normalize(images, normalization).to(device), labels.to(device)


class Splits(NamedTuple):
    """A data set in memory: both splits normalized by the training split's statistics. With a
    validation split, test_* hold the validation images (see load_splits)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    normalization: Normalization


VAL_SPLIT_SEED = 0  # every run holds out the same images, whatever its --seed, so runs compare


def load_splits(
    root: str | os.PathLike,
    dataset: str = "mnist",
    device: torch.device | str = "cpu",
    cache: bool = True,
    val_split: int = 0,
) -> Splits:
    """Both splits of dataset on device, normalized by the training split's (mean, std).
    cache: see read_split.

    val_split N > 0 holds out N training images (the last N of a shuffle seeded by
    VAL_SPLIT_SEED) and returns them in place of the test split, which is not even read: recipes
    are tuned on them, and the test set stays unseen until the final run. The statistics then
    come from the images that are left to train on."""
    train_images, train_labels = read_split(root, True, dataset, cache)
    if val_split:
        if val_split >= len(train_images):
            raise MnistCnnError(
                f"--val-split {val_split} leaves nothing to train on: the training split has "
                f"{len(train_images):,} images"
            )
        order = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(VAL_SPLIT_SEED))
        keep, held_out = order[:-val_split].sort().values, order[-val_split:].sort().values
        test_images, test_labels = train_images[held_out], train_labels[held_out]
        train_images, train_labels = train_images[keep], train_labels[keep]
    else:
        test_images, test_labels = read_split(root, False, dataset, cache)
    train_scaled = train_images.float().div_(255)  # measured and normalized in one float copy
    normalization = scaled_statistics(train_scaled)
    mean, std = normalization
    return Splits(
        train_scaled.sub_(mean).div_(std).to(device),
        train_labels.to(device),
        normalize(test_images, normalization).to(device),
        test_labels.to(device),
        normalization,
    )


def idx_problem(path: Path) -> str | None:
    """What is wrong with an IDX file (named like train-images-idx3-ubyte), or None.

    torchvision reads the files; this only explains, in words, why it could not.
    """
    named = re.search(r"idx(\d)-(ubyte|int)", path.name)
    if named is None:
        return None  # not named as an IDX file: nothing to say about it
    ndim, size_of = int(named.group(1)), {"ubyte": 1, "int": 4}[named.group(2)]
    try:
        with open(path, "rb") as file:
            header = file.read(4 + 4 * ndim)
        size = path.stat().st_size
    except OSError as error:
        return f"cannot be read ({error.strerror})"
    if len(header) < 4 + 4 * ndim:
        return f"truncated: {size} bytes is not even an IDX header"
    magic, expected_magic = int.from_bytes(header[:4], "big"), {1: 0x800, 4: 0xC00}[size_of] + ndim
    if magic != expected_magic:
        return f"wrong magic number {magic:#010x} (a {path.name} file has {expected_magic:#010x})"
    shape = [int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = len(header) + size_of * math.prod(shape)
    if size != expected:
        return f"{'truncated' if size < expected else 'too long'}: {size:,} bytes, its header ({'x'.join(map(str, shape))}) says {expected:,}"
    return None


def epoch_order(n: int, generator: torch.Generator) -> torch.Tensor:
    """One epoch's shuffled order of n samples, drawn on the CPU from the seeded generator, so the
    order is the same on every device."""
    return torch.randperm(n, generator=generator)
