"""Where the arithmetic runs: device selection, bf16 autocast, torch's CPU threads.

Used by training and by everything that only uses a trained net, so it imports nothing but torch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from .errors import MnistCnnError


def select_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA, then Apple MPS, else CPU; a named device must be available."""
    has_mps = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise MnistCnnError(f"--device {name!r} is not a device (try cpu, cuda, cuda:1, mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MnistCnnError(f"--device {name}: CUDA is not available on this machine")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise MnistCnnError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not has_mps:
        raise MnistCnnError(f"--device {name}: Apple MPS is not available on this machine")
    return device


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast when asked for, else nothing."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """torch's CPU thread count set to threads (when given) for the duration."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
