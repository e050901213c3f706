"""The decoded splits of the MNIST family, kept in the user's cache folder.

Reading a split the first time imports torchvision and decodes the IDX files (about two seconds
on a 2-core CPU); later runs load one file of tensors instead. An entry is keyed by its raw
files' paths, sizes and modification times: when they change, it is rebuilt. Entries are
written atomically and read with torch.load(weights_only=True), so a damaged or hostile file
cannot run code; a cache folder that cannot be written is skipped without a word.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from .errors import MnistCnnError, first_line
from .files import write_atomic

CACHE_ENV = "MNIST_CNN_CACHE"
FORMAT = 1  # bump when what read_split returns changes, so that old entries are rebuilt

Split = tuple[torch.Tensor, torch.Tensor]  # images (N, 1, 28, 28) uint8, labels (N,) int64


def cache_dir() -> Path:
    """$MNIST_CNN_CACHE, else $XDG_CACHE_HOME/mnist-cnn, else ~/.cache/mnist-cnn."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mnist-cnn"


def cached_split(name: str, files: tuple[Path, ...], read: Callable[[], Split]) -> Split:
    """The split called name (say mnist-train) whose raw files are files: from the cache when its
    entry is there and current, else read() and keep the result for next time."""
    path, key = None, None
    if all(file.is_file() for file in files):
        path, key = entry_path(name, files), source_key(files)
        split, problem = load_entry(path, key)
        if split is not None:
            return split
        if problem:
            print(f"note: {path} was {problem}; rebuilding it", file=sys.stderr)
    split = read()  # may download the files
    if key is None and all(file.is_file() for file in files):
        path, key = entry_path(name, files), source_key(files)
    if path is not None and key is not None:
        save_entry(path, key, split)
    return split


def entry_path(name: str, files: tuple[Path, ...]) -> Path:
    """One entry per split and data folder: two folders of MNIST do not evict each other."""
    folder = hashlib.sha256(str(files[0].resolve().parent).encode()).hexdigest()[:16]
    return cache_dir() / f"{name}-{folder}.pt"


def source_key(files: tuple[Path, ...]) -> dict:
    """What the entry was made from: each raw file's path, size and modification time."""
    stats = {str(file.resolve()): file.stat() for file in files}
    return {"format": FORMAT, "files": {p: [s.st_size, s.st_mtime_ns] for p, s in stats.items()}}


def load_entry(path: Path, key: dict) -> tuple[Split | None, str | None]:
    """(the cached split, None) when the entry is there, whole and current; else (None, why not:
    None when there is simply no entry)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": the note says enough
            entry = torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, NotADirectoryError):
        return None, None
    except Exception as error:  # whatever a damaged file makes torch.load raise
        return None, f"damaged ({first_line(error)})"
    try:
        images, labels = entry["images"], entry["labels"]
        whole = (
            images.dtype == torch.uint8
            and images.shape[1:] == (1, 28, 28)
            and labels.shape == images.shape[:1]
        )
    except (TypeError, KeyError, AttributeError, IndexError):
        whole = False
    if not whole:
        return None, "damaged (not a split)"
    if entry.get("key") != key:
        return None, "stale (its raw files changed)"
    return (images, labels), None


def save_entry(path: Path, key: dict, split: Split) -> None:
    """Keep split for next time; a cache folder that cannot be written is not the user's problem."""
    buffer = io.BytesIO()
    torch.save({"key": key, "images": split[0], "labels": split[1]}, buffer)
    with contextlib.suppress(MnistCnnError):
        write_atomic(path, buffer.getvalue())
