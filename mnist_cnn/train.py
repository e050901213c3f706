"""Training: `fit(config) -> history`, one epoch at a time, and the `python -m mnist_cnn.train` CLI.

One step is: index a batch from the in-memory split, forward, NLL loss, backward, SGD step,
learning-rate step. Nothing else runs per step but a progress-bar update every few batches.
Under torchrun, each process takes its share of every batch (see distributed.py).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from . import distributed
from .augment import distort, random_distortions
from .checkpoint import load_checkpoint, save_checkpoint
from .config import PRECISIONS, RECIPES, SCHEDULES, TrainConfig, default_config, flag
from .data import DATASETS, Normalization, epoch_order, load_splits, resolve_data_dir
from .device import autocast, cpu_threads, select_device
from .errors import ArgumentParser, MnistCnnError, TrainingInterrupted, exit_on_error, first_line
from .metrics import format_test_line, write_metrics
from .model import MODELS, build_model, count_parameters
from .plots import NoMatplotlib, draw_curves

History = list[dict]


@dataclass
class EpochPosition:
    """How far a run is through an epoch: enough to stop after any batch and later go on exactly
    as if it had not stopped."""

    order: torch.Tensor  # the epoch's shuffled order of the training set
    lr: float  # the learning rate at the epoch's first batch, for its record
    loss_sum: torch.Tensor  # the summed training loss of the batches done, on the training device
    step: int = 0  # batches done
    seen: int = 0  # images done

    @classmethod
    def start(
        cls, n: int, generator: torch.Generator, optimizer: torch.optim.Optimizer, device: torch.device
    ) -> EpochPosition:
        """A new epoch: draw its order of n images."""
        order = epoch_order(n, generator)
        return cls(order, optimizer.param_groups[0]["lr"], torch.zeros((), device=device))

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "loss_sum": self.loss_sum.cpu()}

    @classmethod
    def from_dict(cls, data: dict, device: torch.device) -> EpochPosition:
        return cls(**{**data, "loss_sum": data["loss_sum"].to(device)})


class EpochStopped(Exception):
    """train_epoch stopped after a batch because stop() said so; position says where."""

    def __init__(self, position: EpochPosition, signal_number: int) -> None:
        super().__init__(f"stopped after batch {position.step}")
        self.position, self.signal_number = position, signal_number


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_size: int,
    generator: torch.Generator,
    precision: str = "fp32",
    augment: bool = False,
    max_batches: int | None = None,
    log_interval: int = 10,
    progress: tqdm | None = None,
    position: EpochPosition | None = None,
    stop: Callable[[], int | None] | None = None,
) -> float:
    """Train one epoch of shuffled mini-batches; returns the mean training loss.

    generator draws the batches' order and, with augment, each image's random distortion.
    position continues an epoch from where it stopped. Every log_interval batches the loss is
    checked (a loss that is no longer finite stops the run with MnistCnnError) and stop is asked
    whether to stop; when it returns a signal number, the epoch stops there with EpochStopped.
    Under torchrun, model is the DDP-wrapped net, each process trains on its share of every
    batch, and the processes agree on both checks.
    """
    model.train()
    if position is None:
        position = EpochPosition.start(len(images), generator, optimizer, images.device)
    batches = position.order.to(images.device).split(batch_size)[:max_batches]
    if progress is not None:
        progress.update(position.step)
    for batch in batches[position.step :]:
        index = distributed.share(batch)  # this process's share of the batch: all of it in one process
        x = images[index]
        if augment:  # drawn for the whole batch, so that every process's generator stays in step
            x = distort(x, distributed.share(random_distortions(len(batch), generator)))
        with autocast(images.device, precision):
            loss_sum = F.nll_loss(model(x), labels[index], reduction="sum")
        optimizer.zero_grad(set_to_none=True)
        # The batch's mean loss. DDP averages the gradients of the world_size processes, so each
        # scales its share's sum by world_size too.
        (loss_sum * (distributed.world_size() / len(batch))).backward()
        optimizer.step()
        scheduler.step()
        # Summed on the device: no wait for the device but every log_interval batches.
        position.loss_sum += loss_sum.detach()
        position.seen += len(index)
        position.step += 1
        if position.step % log_interval == 0 or position.step == len(batches):
            loss_sum_so_far, seen = epoch_totals(position)
            mean_loss = loss_sum_so_far.item() / seen  # the epoch's so far, over all processes
            if not math.isfinite(mean_loss):
                raise MnistCnnError(
                    f"the training loss became {mean_loss} by batch {position.step}: training "
                    "diverged; try a lower --lr"
                )
            if progress is not None:
                progress.set_postfix(loss=f"{mean_loss:.4f}", refresh=False)
                progress.update(position.step - progress.n)
            # Every process stops at the same batch, or the others would wait for it forever.
            signal_number = int(distributed.all_reduce(torch.tensor((stop and stop()) or 0), "max"))
            if signal_number:
                position.loss_sum, position.seen = loss_sum_so_far, seen  # for rank 0 to save
                raise EpochStopped(position, signal_number)
    loss_sum, seen = epoch_totals(position)
    return loss_sum.item() / max(seen, 1)


def epoch_totals(position: EpochPosition) -> tuple[torch.Tensor, int]:
    """The epoch's summed training loss and image count so far, over all processes."""
    seen = torch.tensor(float(position.seen), device=position.loss_sum.device)
    loss_sum, seen = distributed.all_reduce(torch.stack([position.loss_sum.float(), seen]))
    return loss_sum, int(seen)


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_size: int = 1000,
    precision: str = "fp32",
    max_batches: int | None = None,
) -> tuple[float, int, int]:
    """(mean NLL loss, correct, total) of model on a split, in large batches. Under torchrun each
    process evaluates its share of the split, and the counts are summed."""
    model.eval()
    images, labels = distributed.share(images), distributed.share(labels)
    sums = torch.zeros(3, device=images.device)  # loss, correct, total (exact in float32 to 2**24)
    for step, (x, y) in enumerate(zip(images.split(batch_size), labels.split(batch_size), strict=True)):
        if max_batches is not None and step >= max_batches:
            break
        with autocast(images.device, precision):
            output = model(x).float()
        sums[0] += F.nll_loss(output, y, reduction="sum")
        sums[1] += (output.argmax(dim=1) == y).sum()
        sums[2] += len(y)
    total_loss, correct, total = distributed.all_reduce(sums).tolist()
    return total_loss / max(total, 1), int(correct), int(total)


def build_optimizer(
    model: nn.Module, config: TrainConfig, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """SGD with Nesterov momentum, and config.schedule's learning rate, stepped every batch.

    onecycle: a warm-up over config.warmup of the run, then a cosine anneal to zero. The warm-up
    lets the BatchNorm-free seed net take a high peak rate without diverging; the long anneal is
    what makes one epoch enough for it.
    restarts: cosine anneals to zero over 1, 2, 4, ... epochs (the last one cut to end with the
    run), each restarting at the peak. Every cycle ends on a well-settled net, so epoch 1 is
    already good, and the long last cycle gives the final accuracy (SGDR, Loshchilov & Hutter).
    """
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.momentum > 0,
        weight_decay=config.weight_decay,
    )
    total_steps = config.epochs * steps_per_epoch
    if config.schedule == "restarts":
        factor = partial(cosine_restarts, first_cycle=steps_per_epoch, total=total_steps)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=total_steps, pct_start=config.warmup, cycle_momentum=False
    )
    return optimizer, scheduler


def cosine_restarts(step: int, first_cycle: int, total: int) -> float:
    """The learning-rate factor at step: cosine cycles of first_cycle steps, doubling in length;
    a cycle after which the next would not fit is the last, and stretches to end at total."""
    start, length = 0, first_cycle
    while start + 3 * length <= total and step >= start + length:
        start, length = start + length, 2 * length
    if start + 3 * length > total:
        length = total - start
    return 0.5 * (1 + math.cos(math.pi * min(step - start, length) / length))


def fit(
    config: TrainConfig,
    *,
    on_epoch: Callable[[dict], None] | None = None,
    progress: bool = False,
    resume: str | os.PathLike | None = None,
) -> History:
    """Train config.model on config.dataset as config says; returns one dict of metrics per epoch.

    on_epoch is called with each epoch's metrics as soon as they are known; progress shows a tqdm
    bar per epoch. resume continues the run saved in a checkpoint (see resume_config): on CPU
    the result is bitwise the same as an uninterrupted run's. With config.output_dir, metrics
    and curves are written there; with config.save_model, checkpoints too.

    Started by torchrun, the processes train together (DistributedDataParallel); only rank 0
    calls on_epoch, shows progress and writes files, and every rank returns the same history.
    """
    device = distributed.local_device(select_device(config.device))
    with cpu_threads(config.threads), stop_signals() as stop, distributed.process_group(device):
        return _fit(config, device, on_epoch, progress, resume, stop)


@contextlib.contextmanager
def stop_signals() -> Iterator[Callable[[], int | None]]:
    """While training, SIGINT (Ctrl-C) and SIGTERM ask it to stop at the next check (every
    --log-interval batches), so the run can be saved whole; a second one stops it at once. Yields stop(): the first signal
    received, else None. Outside the main thread (where Python allows no handlers) nothing
    changes."""
    received: list[int] = []

    def handler(signal_number: int, frame) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signal_number)

    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: received[0] if received else None
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _fit(
    config: TrainConfig,
    device: torch.device,
    on_epoch: Callable[[dict], None] | None,
    progress: bool,
    resume: str | os.PathLike | None,
    stop: Callable[[], int | None],
) -> History:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = build_model(config.model, **config.model_args).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)

    with distributed.main_process_first():  # one download, not one a process
        splits = load_splits(resolve_data_dir(config.data_dir), config.dataset, device)
    train_images, train_labels, test_images, test_labels, normalization = splits
    if config.channels_last:
        train_images = train_images.contiguous(memory_format=torch.channels_last)
        test_images = test_images.contiguous(memory_format=torch.channels_last)
    check_batch_shares(len(train_images), config.batch_size)

    steps_per_epoch = -(-len(train_images) // config.batch_size)
    optimizer, scheduler = build_optimizer(model, config, steps_per_epoch)
    history: History = []
    position = None  # where a resumed run stopped within an epoch
    if resume is not None:
        history, position = restore_run(load_checkpoint(resume), model, optimizer, scheduler, generator)
    net = distributed.wrap(model, device)  # what trains; model is the net itself, for saving
    max_batches = 1 if config.dry_run else None
    output_dir = Path(config.output_dir) if config.output_dir else None
    if config.save_model and output_dir is None:
        output_dir = default_output_dir()
    if not distributed.is_main():
        output_dir, on_epoch, progress = None, None, False  # rank 0 speaks for the run
    # run(): the run as a checkpoint, as it stands now (history grows in place below).
    run = partial(run_state, config, normalization, history, model, optimizer, scheduler, generator)

    for epoch in range(len(history) + 1, config.epochs + 1):
        bar = tqdm(total=steps_per_epoch, desc=f"Epoch {epoch}", unit="batch") if progress else None
        position = position or EpochPosition.start(len(train_images), generator, optimizer, device)
        start = time.perf_counter()
        try:
            train_loss = train_epoch(
                net,
                optimizer,
                scheduler,
                train_images,
                train_labels,
                batch_size=config.batch_size,
                generator=generator,
                precision=config.precision,
                augment=config.augment,
                max_batches=max_batches,
                log_interval=config.log_interval,
                progress=bar,
                position=position,
                stop=stop,
            )
        except EpochStopped as stopped:
            distributed.average_buffers(model)  # every process stopped here; rank 0 saves for all
            raise interrupted(output_dir, run(position=stopped.position), stopped.signal_number) from None
        finally:
            if bar is not None:
                bar.close()
        train_seconds = time.perf_counter() - start
        distributed.average_buffers(model)
        start = time.perf_counter()
        test_loss, correct, total = evaluate(
            model,
            test_images,
            test_labels,
            batch_size=config.test_batch_size,
            precision=config.precision,
            max_batches=max_batches,
        )
        history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "test_loss": test_loss,
                "test_correct": correct,
                "test_total": total,
                "test_accuracy": correct / total,
                "lr": position.lr,
                "train_seconds": train_seconds,
                "test_seconds": time.perf_counter() - start,
            }
        )
        position = None
        if output_dir is not None:
            save_run(output_dir, run(), save_model=config.save_model)
        if on_epoch is not None:
            on_epoch(history[-1])
        if config.dry_run:
            break
    return history


def check_batch_shares(n: int, batch_size: int) -> None:
    """Under torchrun, every process must get a part of every batch, the last one included."""
    processes = distributed.world_size()
    last = n % batch_size or batch_size
    if processes > 1 and min(batch_size, last) < processes:
        raise MnistCnnError(
            f"--batch-size {batch_size} cannot be shared among {processes} processes: a batch of "
            f"{min(batch_size, last)} images would leave some without any; pick another --batch-size"
        )


def default_output_dir() -> Path:
    """runs/<timestamp>, for a run that saves and was given no --output-dir."""
    return Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")


def run_state(
    config: TrainConfig,
    normalization: Normalization,
    history: History,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
    position: EpochPosition | None = None,
) -> dict:
    """A resumable checkpoint of the run as it stands: after len(history) epochs, and position
    into the next one when it stopped part-way."""
    return {
        "model": config.model,
        "model_args": config.model_args,
        "model_state": model.state_dict(),
        "dataset": config.dataset,
        "normalization": normalization,
        "optimizer_state": optimizer.state_dict(),
        "scheduler_state": scheduler.state_dict(),
        "rng_state": {
            "torch": torch.get_rng_state(),
            "generator": generator.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        },
        "epoch": len(history),
        "position": position.to_dict() if position is not None else None,
        "config": config.to_dict(),
        "history": list(history),
    }


def save_run(output_dir: Path, checkpoint: dict, save_model: bool) -> None:
    """After an epoch: metrics.json, metrics.csv and curves.png; with save_model, last.pt and,
    when the test accuracy is the best so far, best.pt."""
    history = checkpoint["history"]
    write_metrics(output_dir, history)
    try:
        draw_curves(history, output_dir / "curves.png")
    except NoMatplotlib as error:
        if len(history) == 1:  # say it once a run
            print(f"note: {error}", file=sys.stderr)
    if not save_model:
        return
    save_checkpoint(output_dir / "last.pt", checkpoint)
    if history[-1]["test_accuracy"] >= max(m["test_accuracy"] for m in history):
        save_checkpoint(output_dir / "best.pt", checkpoint)


def interrupted(output_dir: Path | None, checkpoint: dict, signal_number: int) -> TrainingInterrupted:
    """Save a run stopped by a signal as last.pt, and the error that tells how to resume it."""
    where = f"after batch {checkpoint['position']['step']} of epoch {checkpoint['epoch'] + 1}"
    name = signal.Signals(signal_number).name
    if not distributed.is_main():
        return TrainingInterrupted(f"{name} {where}; rank 0 saves the run", signal_number)
    if output_dir is None:
        return TrainingInterrupted(f"{name} {where}; nothing saved (no output folder)", signal_number)
    path = output_dir / "last.pt"
    save_checkpoint(path, checkpoint)
    processes = distributed.world_size()
    command = f"torchrun --nproc_per_node={processes}" if processes > 1 else "python"
    return TrainingInterrupted(
        f"{name} {where}; saved {path}; go on with: {command} -m mnist_cnn.train --resume {path}",
        signal_number,
    )


def restore_run(
    checkpoint: dict,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
) -> tuple[History, EpochPosition | None]:
    """Put a run saved by run_state back in place; returns its history so far and, when it
    stopped within an epoch, where."""
    try:
        model.load_state_dict(checkpoint["model_state"])
        optimizer.load_state_dict(checkpoint["optimizer_state"])
        scheduler.load_state_dict(checkpoint["scheduler_state"])
        rng = checkpoint["rng_state"]
        torch.set_rng_state(rng["torch"])
        generator.set_state(rng["generator"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        position = checkpoint.get("position")
        device = next(model.parameters()).device
        position = position and EpochPosition.from_dict(position, device)
        if position and not distributed.is_main():  # rank 0 carries the totals so far
            position.loss_sum, position.seen = torch.zeros((), device=device), 0
        return list(checkpoint["history"]), position
    except (KeyError, RuntimeError, ValueError, TypeError) as error:
        raise MnistCnnError(f"cannot resume from this checkpoint: {first_line(error)}") from None


def resume_config(checkpoint_path: str | os.PathLike, **overrides) -> TrainConfig:
    """The config of the run saved at checkpoint_path, with where-and-how settings (device,
    data_dir, output_dir, threads, ...) replaced by overrides. What decides the result (model,
    epochs, learning rate, seed, ...) cannot change: that would not be the same run."""
    saved = load_checkpoint(checkpoint_path)
    if "config" not in saved or "rng_state" not in saved:
        raise MnistCnnError(f"{checkpoint_path} holds a model but not a resumable run")
    config = TrainConfig.from_dict(saved["config"])
    fixed = set(overrides) - RESUMABLE_OVERRIDES
    changed = sorted(flag(k) for k in fixed if overrides[k] != getattr(config, k))
    if changed:
        raise MnistCnnError(
            f"--resume continues the saved run as it was; it cannot change {', '.join(changed)}"
        )
    # A run saved to runs/<timestamp> goes on writing there.
    overrides.setdefault("output_dir", config.output_dir or str(Path(checkpoint_path).parent))
    return dataclasses.replace(config, **{k: v for k, v in overrides.items() if k in RESUMABLE_OVERRIDES})


RESUMABLE_OVERRIDES = {"device", "data_dir", "output_dir", "threads", "log_interval", "save_model", "dry_run"}


def print_summary(model: nn.Module) -> None:
    """torchsummary's table for a 1x28x28 input, computed on the CPU."""
    from torchsummary import summary

    # torchsummary feeds random inputs; keep them out of the run's random stream.
    with torch.random.fork_rng(devices=[]):
        summary(model, (1, 28, 28), device="cpu")


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, bool, str | None]:
    """Command-line flags (compatible with pytorch/examples' mnist/main.py) -> the run's config,
    whether to show a progress bar, and the checkpoint to resume from, if any."""
    d = TrainConfig()
    improved = ", ".join(f"{flag(k)} {v}" for k, v in RECIPES["improved"].items())
    p = ArgumentParser(
        prog="python -m mnist_cnn.train",
        description="Train the seed's 9,032-parameter fully convolutional net (or --model improved) on MNIST.",
        epilog=f"Defaults are the seed net's recipe; --model improved changes them to {improved}. "
        "Started by torchrun (torchrun --nproc_per_node=N -m mnist_cnn.train ...), N processes train "
        "together with DistributedDataParallel (gloo on CPU, nccl on CUDA, a GPU each): each takes "
        "its share of every --batch-size batch, so the batch and the learning rate mean what they "
        "mean in one process.",
        argument_default=argparse.SUPPRESS,  # flags not given come from the model's recipe
    )
    add = p.add_argument
    add("--model", choices=sorted(MODELS), help="which net (default: seed)")
    add("--dataset", choices=list(DATASETS), help=f"which member of the MNIST family (default: {d.dataset})")
    add(
        "--batch-size",
        type=int,
        metavar="N",
        help=f"training batch size; under torchrun, of all processes together (default: {d.batch_size})",
    )
    add(
        "--test-batch-size",
        type=int,
        metavar="N",
        help=f"evaluation batch size (default: {d.test_batch_size})",
    )
    add("--epochs", type=int, metavar="N", help=f"epochs to train (default: {d.epochs})")
    add(
        "--lr",
        type=float,
        metavar="LR",
        help=f"peak learning rate of the one-cycle schedule (default: {d.lr})",
    )
    add(
        "--warmup",
        type=float,
        metavar="F",
        help=f"fraction of the run warming up the learning rate (default: {d.warmup})",
    )
    add("--schedule", choices=SCHEDULES, help=f"learning-rate schedule (default: {d.schedule})")
    add("--momentum", type=float, metavar="M", help=f"SGD Nesterov momentum (default: {d.momentum})")
    add("--weight-decay", type=float, metavar="WD", help=f"L2 weight decay (default: {d.weight_decay})")
    add(
        "--augment",
        action=argparse.BooleanOptionalAction,
        help="random rotation, shift and scale (default: off)",
    )
    add("--seed", type=int, metavar="S", help=f"random seed; fixes the run on CPU (default: {d.seed})")
    add("--device", help="auto, cpu, cuda, cuda:N or mps (default: auto: CUDA, then MPS, else CPU)")
    add("--no-accel", action="store_true", help="train on the CPU even when an accelerator is present")
    add(
        "--data-dir",
        metavar="DIR",
        help="folder holding MNIST/raw/ (FashionMNIST/raw/, ... for --dataset) (default: $MNIST_DATA_DIR, else ./data)",
    )
    add("--precision", choices=PRECISIONS, help=f"fp32, or bf16 autocast (default: {d.precision})")
    add("--channels-last", action=argparse.BooleanOptionalAction, help="NHWC memory layout (default: on)")
    add("--threads", type=int, metavar="N", help="CPU threads for torch (default: torch's, one per core)")
    add("--dry-run", action="store_true", help="one batch of training and evaluation, to check the setup")
    add(
        "--log-interval",
        type=int,
        metavar="N",
        help=f"batches between progress-bar updates, loss and stop checks (default: {d.log_interval})",
    )
    add("--save-model", action="store_true", help="write last.pt (every epoch) and best.pt to --output-dir")
    add(
        "--output-dir",
        metavar="DIR",
        help="where metrics, curves and checkpoints go (default: runs/<timestamp>)",
    )
    add("--resume", metavar="CHECKPOINT", help="continue the run saved in CHECKPOINT (a last.pt)")
    add("--no-progress", action="store_true", help="no progress bar")
    args = vars(p.parse_args(argv))
    args.pop("debug")
    progress = not args.pop("no_progress", False)
    if args.pop("no_accel", False):
        args["device"] = "cpu"
    resume = args.pop("resume", None)
    if resume is not None:
        return resume_config(resume, **args), progress, resume
    args.setdefault("output_dir", str(default_output_dir()))
    return default_config(**args), progress, None


@exit_on_error
def main(argv: list[str] | None = None) -> History:
    """`python -m mnist_cnn.train`: parse flags, print the net, train, print each epoch's test line.
    Under torchrun only rank 0 prints."""
    config, progress, resume = parse_args(argv)
    speaks = distributed.is_main()
    if speaks:
        model = build_model(config.model, **config.model_args)
        print_summary(model)
        device = distributed.local_device(select_device(config.device))
        processes = distributed.launched_processes()
        print(
            f"Training {config.model} ({count_parameters(model):,} parameters) on {config.dataset}, "
            f"{device}" + (f" x {processes} processes" if processes > 1 else "")
        )

    def report(metrics: dict) -> None:
        print(
            f"Epoch {metrics['epoch']}: train loss {metrics['train_loss']:.4f}, {metrics['train_seconds']:.1f} s"
        )
        print(format_test_line(metrics))

    if resume is not None and speaks:
        print(f"Resuming {resume}")
    history = fit(config, on_epoch=report, progress=progress, resume=resume)
    if speaks:
        print(
            f"Metrics and curves in {config.output_dir}"
            + (" (with last.pt and best.pt)" if config.save_model else "")
        )
    return history


if __name__ == "__main__":
    main()
