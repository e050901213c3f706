"""Several processes training one model (torchrun), and the same calls as no-ops in one process.

torchrun starts the processes and tells each its RANK, LOCAL_RANK and WORLD_SIZE through the
environment. Every process runs the same code on its own share of each batch; DDP averages the
gradients, so all of them hold the same weights after every step. Rank 0 speaks for the run.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import secrets
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .errors import MnistCnnError


def launched_processes() -> int:
    """How many processes torchrun started for this run: 1 without torchrun."""
    return int(os.environ.get("WORLD_SIZE", 1))


def world_size() -> int:
    """How many processes train together now: 1 outside process_group (before and after fit, say)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    """This process's number among them: 0 without torchrun."""
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", 0))


def is_main() -> bool:
    """Whether this process prints and writes for the run (rank 0)."""
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """Under torchrun on CUDA, each process takes the GPU of its LOCAL_RANK."""
    if launched_processes() == 1 or device.type != "cuda":
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if local_rank >= torch.cuda.device_count():
        raise MnistCnnError(
            f"process {local_rank} of this machine has no GPU of its own: it has "
            f"{torch.cuda.device_count()}; start at most that many (torchrun --nproc_per_node)"
        )
    return torch.device("cuda", local_rank)


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """Join the other processes for the duration (gloo on CPU, nccl on CUDA), when torchrun
    started several and nobody has joined them yet; otherwise do nothing."""
    if launched_processes() == 1 or dist.is_initialized():
        yield
        return
    if device.type not in ("cpu", "cuda"):
        raise MnistCnnError(f"--device {device.type}: torchrun training runs on cpu or cuda only")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield
        # Leave together: a process that tears its connections down while another is still
        # writing its files can make that one's gloo threads abort the process at exit.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def init_process_group(backend: str) -> None:
    """dist.init_process_group from torchrun's environment, with this attempt's keys apart from an
    earlier attempt's. torchrun keeps one store for all the attempts of a run it restarts
    (--max-restarts, and a machine that rejoins): under the same keys, a restarted process may
    read the address of a process of the attempt that died, and the group never forms
    (connection refused, or a hang). Nor do the processes share an attempt number: each machine
    counts its own restarts. So they agree on one first (see agree_on_attempt)."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        dist.init_process_group(backend)
        return
    rank, size = int(os.environ["RANK"]), launched_processes()
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False, timeout=GROUP_TIMEOUT
    )
    attempt = agree_on_attempt(store, rank, size)
    prefixed = dist.PrefixStore(f"mnist_cnn/attempt_{attempt}", store)
    dist.init_process_group(backend, store=prefixed, rank=rank, world_size=size, timeout=GROUP_TIMEOUT)


GROUP_TIMEOUT = timedelta(minutes=30)  # torch's own default for gloo


def agree_on_attempt(store: dist.Store, rank: int, size: int, poll: float = 0.05) -> int:
    """A number that every process of this attempt gets and no earlier attempt had, through a
    store that may still hold an earlier attempt's keys.

    Rank 0 counts attempts (store.add: a new number each time). Every other process says hello
    under its rank with a nonce of its own; rank 0 answers every hello it sees with the number,
    under a key made of that nonce, which no earlier attempt can have written; each process then
    acknowledges under the number itself, which is new. Rank 0 answers hellos (stale ones too:
    their answers are never read) until all have acknowledged."""
    if rank == 0:
        attempt = store.add("mnist_cnn/attempts", 1)
        waiting, answered = set(range(1, size)), set()
        deadline = time.monotonic() + GROUP_TIMEOUT.total_seconds()
        while waiting:
            for other in list(waiting):
                if store.check([f"mnist_cnn/hello/{other}"]):
                    nonce = store.get(f"mnist_cnn/hello/{other}").decode()
                    if nonce not in answered:
                        store.set(f"mnist_cnn/welcome/{nonce}", str(attempt))
                        answered.add(nonce)
                if store.check([f"mnist_cnn/ack/{attempt}/{other}"]):
                    waiting.discard(other)
            if time.monotonic() > deadline:
                raise MnistCnnError(f"processes {sorted(waiting)} of the run never joined attempt {attempt}")
            time.sleep(poll)
        return attempt
    nonce = secrets.token_hex(8)
    store.set(f"mnist_cnn/hello/{rank}", nonce)
    attempt = int(store.get(f"mnist_cnn/welcome/{nonce}"))  # waits for it, up to the store's timeout
    store.set(f"mnist_cnn/ack/{attempt}/{rank}", "1")
    return attempt


def share(tensor: torch.Tensor) -> torch.Tensor:
    """This process's share of tensor's first dimension: near-equal consecutive parts, one a rank."""
    return tensor.tensor_split(world_size())[rank()] if world_size() > 1 else tensor


def check_batch_shares(n: int, batch_size: int) -> None:
    """Every process must get a part of every batch of batch_size out of n images, the last one
    included; else an MnistCnnError says to pick another --batch-size."""
    processes = world_size()
    last = n % batch_size or batch_size
    if processes > 1 and min(batch_size, last) < processes:
        raise MnistCnnError(
            f"--batch-size {batch_size} cannot be shared among {processes} processes: a batch of "
            f"{min(batch_size, last)} images would leave some without any; pick another --batch-size"
        )


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """tensor summed (op "sum") or maximized ("max") over all processes, on tensor's device;
    tensor itself in one process. nccl reduces only GPU tensors, so a CPU one goes through this
    process's GPU."""
    if world_size() == 1:
        return tensor
    on_gpu = dist.get_backend() == "nccl" and tensor.device.type != "cuda"
    reduced = tensor.to(torch.device("cuda", torch.cuda.current_device())) if on_gpu else tensor
    dist.all_reduce(reduced, dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return reduced.to(tensor.device)


# torch 2.13 renamed DDP's broadcast_buffers to forward_sync_buffers; the old name now warns.
NO_BUFFER_SYNC: dict[str, Any] = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(nn.parallel.DistributedDataParallel).parameters
    else {"broadcast_buffers": False}
)


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """model in DistributedDataParallel when several processes train, else model itself.

    Buffers (BatchNorm's running statistics) are not broadcast at every step; average_buffers
    makes them agree once an epoch instead."""
    if world_size() == 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        model, device_ids=ids, gradient_as_bucket_view=True, **NO_BUFFER_SYNC
    )


def average_buffers(model: nn.Module) -> None:
    """Average the floating-point buffers (BatchNorm's running mean and variance) over processes,
    so every process evaluates and saves the same model."""
    if world_size() == 1:
        return
    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer, dist.ReduceOp.SUM)
            buffer /= world_size()


def local_rank() -> int:
    """This process's number among those torchrun started on its machine: 0 without torchrun."""
    return int(os.environ.get("LOCAL_RANK", 0))


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Each machine's first process (LOCAL_RANK 0) runs the body first (a download into that
    machine's data folder, say), then the others: machines need not share a folder. An error in
    a first process's body stops them all instead of leaving them waiting."""
    if world_size() == 1:
        yield
        return
    if local_rank() != 0:
        if not _all_succeeded(True):
            raise MnistCnnError("the first process of a machine could not get the data; see its message")
        yield
        return
    try:
        yield
    except BaseException:
        _all_succeeded(False)
        raise
    _all_succeeded(True)


def _all_succeeded(succeeded: bool) -> bool:
    return all_reduce(torch.tensor([0 if succeeded else 1]), "max").item() == 0
