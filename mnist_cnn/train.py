"""Training: `fit(config) -> history`, one epoch at a time, and the `python -m mnist_cnn.train` CLI.

One step is: index a batch from the in-memory split, forward, NLL loss (with --teacher, mixed
with the teacher's softened answers), backward, SGD step, learning-rate step (and, with --ema, an
update of the weights' moving average). Nothing else runs per step but a progress-bar update
every few batches.
Under torchrun, each process takes its share of every batch (see distributed.py).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from . import distributed
from .augment import augment_batch
from .checkpoint import load_checkpoint, load_trained
from .config import PRECISIONS, RECIPES, SCHEDULES, TrainConfig, default_config, flag
from .data import DATASETS, load_splits, resolve_data_dir
from .device import ThreadCount, autocast, cpu_threads, select_device
from .errors import ArgumentParser, MnistCnnError, exit_on_error
from .metrics import format_test_line
from .model import MODELS, build_model, count_parameters
from .runs import (
    RUN_FILE,
    EpochPosition,
    History,
    claim_output_dir,
    default_output_dir,
    draw_run_curves,
    interrupted,
    new_run_id,
    restore_run,
    resume_config,
    run_owner,
    run_state,
    save_run,
    stop_signals,
)

if TYPE_CHECKING:
    from tqdm import tqdm  # imported where a bar is shown: see progress_bar


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
    elastic: float = 0.0,
    erase: float = 0.0,
    label_smoothing: float = 0.0,
    teacher: Teacher | None = None,
    ema: AveragedModel | None = None,
    max_batches: int | None = None,
    log_interval: int = 10,
    progress: tqdm | None = None,
    position: EpochPosition | None = None,
    stop: Callable[[], int | None] | None = None,
) -> float:
    """Train one epoch of shuffled mini-batches; returns the mean training loss.

    generator draws the batches' order and, with augment, each image's random distortion
    (elastic and erase: see augment.augment_batch).
    label_smoothing: see classification_loss; teacher: see distillation_loss. ema, when given,
    averages the weights after every step.
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
        if augment:
            x = augment_batch(x, generator, len(batch), distributed.share, elastic, erase)
        with autocast(images.device, precision):
            output = model(x)
            loss_sum = classification_loss(output, labels[index], label_smoothing)
            if teacher is not None:
                with torch.no_grad():
                    answers = teacher.model(x)
                soft_loss_sum = distillation_loss(output, answers, teacher.temperature)
                loss_sum = (1 - teacher.weight) * loss_sum + teacher.weight * soft_loss_sum
        optimizer.zero_grad(set_to_none=True)
        # The batch's mean loss. DDP averages the gradients of the world_size processes, so each
        # scales its share's sum by world_size too.
        (loss_sum * (distributed.world_size() / len(batch))).backward()
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
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


def classification_loss(
    log_probs: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """The summed NLL loss of a batch. With label smoothing e, each target is 1 - e on its class
    and e spread evenly over all ten, so the net is not pushed towards ever more confident
    answers (Szegedy et al. 2016): (1 - e) NLL + e (mean over classes of -log p)."""
    loss = F.nll_loss(log_probs, labels, reduction="sum")
    if label_smoothing:
        loss = (1 - label_smoothing) * loss - label_smoothing * log_probs.mean(dim=1).sum()
    return loss


class Teacher(NamedTuple):
    """A trained net the run learns from (train --teacher), and how (see distillation_loss)."""

    model: nn.Module  # in eval mode
    weight: float  # of its answers in the loss; the labels' is 1 - weight
    temperature: float


def distillation_loss(
    log_probs: torch.Tensor, teacher_log_probs: torch.Tensor, temperature: float
) -> torch.Tensor:
    """The summed KL divergence of the student's answers from the teacher's, both softened by
    temperature T: softened, the teacher's answers say which wrong classes look alike (a 7 a bit
    like a 1), more than a label can. Times T^2, so that its gradients keep their size as T
    changes (Hinton et al. 2015, "Distilling the knowledge in a neural network")."""
    student = F.log_softmax(log_probs.float() / temperature, dim=1)
    teacher = F.log_softmax(teacher_log_probs.float() / temperature, dim=1)
    return F.kl_div(student, teacher, reduction="sum", log_target=True) * temperature**2


def load_teacher(config: TrainConfig, device: torch.device) -> Teacher | None:
    """config.teacher's net, on device, ready to teach (None without one). It must have learnt
    the same data set from the same training split (--val-split): a teacher that saw the images
    this run validates on would leak them, and the two nets' inputs are normalized alike."""
    if config.teacher is None:
        return None
    try:
        with torch.random.fork_rng(devices=[]):  # building the net draws weights: not from the run's stream
            trained = load_trained(config.teacher, device, config.dataset)
    except MnistCnnError as error:
        raise MnistCnnError(f"--teacher: {error}") from None
    if trained.val_split != config.val_split:
        raise MnistCnnError(
            f"--teacher {config.teacher} was trained with --val-split {trained.val_split}, this run has "
            f"{config.val_split}: train the teacher on the same split"
        )
    model = trained.model
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return Teacher(model, config.distill, config.temperature)


def exponential_average(model: nn.Module, decay: float) -> AveragedModel:
    """A copy of model whose weights (and BatchNorm statistics) follow an exponential moving
    average of model's, updated after every step: it smooths out the last steps' noise, and
    usually tests better than the weights themselves (Polyak averaging)."""
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


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
    # One schedule over the run's epochs; over the added ones when --epochs extended a finished run.
    total_steps = (config.epochs - config.schedule_start) * steps_per_epoch
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
    on_start: Callable[[dict], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    progress: bool = False,
    resume: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> History:
    """Train config.model on config.dataset as config says; returns one dict of metrics per epoch.

    on_start is called once the data is loaded and training is about to begin, with what it runs
    on (model, parameters, dataset, device, processes, threads); on_epoch with each epoch's
    metrics as soon as they are known; progress shows a tqdm bar per epoch. resume continues the
    run saved in a checkpoint (see resume_config): on CPU the result is bitwise the same as an
    uninterrupted run's. With config.output_dir, metrics and curves are written there; with
    config.save_model, checkpoints too. With config.val_split, the held-out training images stand
    in for the test set, which is not read (see data.load_splits), and the metrics say "val_".
    Before training, the run claims its output folder: one that holds another run is refused,
    unless overwrite (which removes that run's files). A dry run writes nothing. config.threads
    None fits torch's CPU threads to the cores that other processes leave free (see
    device.ThreadCount).

    Started by torchrun, the processes train together (DistributedDataParallel); only rank 0
    calls on_epoch, shows progress and writes files, and every rank returns the same history.
    """
    device = distributed.local_device(select_device(config.device))
    # cpu_threads(None): the run sets torch's thread count (ThreadCount); it is put back after.
    with cpu_threads(None), stop_signals() as stop, distributed.process_group(device):
        return _fit(config, device, on_start, on_epoch, progress, resume, overwrite, stop)


def _fit(
    config: TrainConfig,
    device: torch.device,
    on_start: Callable[[dict], None] | None,
    on_epoch: Callable[[dict], None] | None,
    progress: bool,
    resume: str | os.PathLike | None,
    overwrite: bool,
    stop: Callable[[], int | None],
) -> History:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    # Measures what other processes use of the cores from here until training starts.
    threads = ThreadCount(config.threads, adaptive=device.type == "cpu")
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = build_model(config.model, **config.model_args).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    teacher = load_teacher(config, device)  # before the data: a bad --teacher fails fast

    with distributed.main_process_first():  # one download, not one a process
        splits = load_splits(
            resolve_data_dir(config.data_dir), config.dataset, device, config.cache, config.val_split
        )
    train_images, train_labels, test_images, test_labels, normalization = splits
    if config.channels_last:
        train_images = train_images.contiguous(memory_format=torch.channels_last)
        test_images = test_images.contiguous(memory_format=torch.channels_last)
    check_batch_shares(len(train_images), config.batch_size)

    steps_per_epoch = -(-len(train_images) // config.batch_size)
    optimizer, scheduler = build_optimizer(model, config, steps_per_epoch)
    ema = exponential_average(model, config.ema) if config.ema else None
    evaluated = model if ema is None else ema.module  # the net the run reports and saves
    split = "val" if config.val_split else "test"  # what test_images hold (see load_splits)
    history: History = []
    position = None  # where a resumed run stopped within an epoch
    run_id = new_run_id()
    if resume is not None:
        saved = load_checkpoint(resume)
        run_id = saved.get("run_id", run_id)  # checkpoints from before run.json have none
        new_schedule = saved["config"].get("schedule_start", 0) != config.schedule_start
        history, position = restore_run(saved, model, optimizer, scheduler, generator, ema, new_schedule)
    net = distributed.wrap(model, device)  # what trains; model is the net itself, for saving
    max_batches = 1 if config.dry_run else None
    output_dir = Path(config.output_dir) if config.output_dir else None
    if config.save_model and output_dir is None:
        output_dir = default_output_dir()
    if not distributed.is_main() or config.dry_run:
        output_dir = None  # rank 0 speaks for the run; a dry run only checks the setup
    if not distributed.is_main():
        on_start, on_epoch, progress = None, None, False
    if output_dir is not None:  # before training, so that no trained epoch is lost to a bad folder
        own = resume is not None and Path(resume).parent.resolve() == output_dir.resolve()
        folder_owner = run_owner(output_dir / RUN_FILE)
        if own and "run_id" not in saved and folder_owner not in (None, "?"):
            run_id = folder_owner  # a checkpoint from before run ids, resumed once before
        claim_output_dir(output_dir, run_id, overwrite=overwrite, own=own)
    # run(): the run as a checkpoint, as it stands now (history grows in place below).
    run = partial(
        run_state, run_id, config, normalization, history, model, optimizer, scheduler, generator, ema
    )
    if resume is not None and saved.get("threads"):
        threads.resume_at(saved["threads"])  # a resumed run goes on with the count it had
    else:
        threads.adapt(force=True)  # from what others used of the cores since the run started
    threads.take_changes()  # the epochs count their own changes
    if on_start is not None:
        on_start(
            {
                "model": config.model,
                "parameters": count_parameters(model),
                "dataset": config.dataset,
                "device": str(device),
                "processes": distributed.world_size(),
                "threads": threads.describe(),
            }
        )

    def average_buffers() -> None:
        """Under torchrun, make the processes' BatchNorm statistics (and their averages) agree."""
        for net in (model, evaluated) if ema is not None else (model,):
            distributed.average_buffers(net)

    def check() -> int | None:
        """Every --log-interval batches: fit the thread count to the machine, then say whether a
        signal asked to stop."""
        threads.adapt()
        return stop()

    try:
        for epoch in range(len(history) + 1, config.epochs + 1):
            bar = progress_bar(steps_per_epoch, f"Epoch {epoch}") if progress else None
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
                    elastic=config.elastic,
                    erase=config.erase,
                    label_smoothing=config.label_smoothing,
                    teacher=teacher,
                    ema=ema,
                    max_batches=max_batches,
                    log_interval=config.log_interval,
                    progress=bar,
                    position=position,
                    stop=check,
                )
            except EpochStopped as stopped:
                average_buffers()  # every process stopped here; rank 0 saves for all
                stopped_run = run(position=stopped.position, threads=threads.count)
                raise interrupted(output_dir, stopped_run, stopped.signal_number) from None
            finally:
                if bar is not None:
                    bar.close()
            train_seconds = time.perf_counter() - start
            average_buffers()
            start = time.perf_counter()
            test_loss, correct, total = evaluate(
                evaluated,
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
                    f"{split}_loss": test_loss,
                    f"{split}_correct": correct,
                    f"{split}_total": total,
                    f"{split}_accuracy": correct / total,
                    "lr": position.lr,
                    "train_seconds": train_seconds,
                    f"{split}_seconds": time.perf_counter() - start,
                    "threads": threads.count,  # at the epoch's end
                    "thread_changes": threads.take_changes(),  # during the epoch
                }
            )
            position = None
            if output_dir is not None:
                save_run(output_dir, run(threads=threads.count), save_model=config.save_model)
            if on_epoch is not None:
                on_epoch(history[-1])
            if config.dry_run:
                break
    finally:
        if output_dir is not None and history:
            draw_run_curves(output_dir, history)
    return history


def progress_bar(total: int, description: str):
    """A tqdm bar of total batches; tqdm is imported only when a bar is shown."""
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="batch")


def check_batch_shares(n: int, batch_size: int) -> None:
    """Under torchrun, every process must get a part of every batch, the last one included."""
    processes = distributed.world_size()
    last = n % batch_size or batch_size
    if processes > 1 and min(batch_size, last) < processes:
        raise MnistCnnError(
            f"--batch-size {batch_size} cannot be shared among {processes} processes: a batch of "
            f"{min(batch_size, last)} images would leave some without any; pick another --batch-size"
        )


def print_summary(model: nn.Module) -> None:
    """torchsummary's table for a 1x28x28 input, computed on the CPU."""
    from torchsummary import summary

    # torchsummary feeds random inputs; keep them out of the run's random stream.
    with torch.random.fork_rng(devices=[]):
        summary(model, (1, 28, 28), device="cpu")


class Command(NamedTuple):
    """What the command line asks for: the run, and how to go about it."""

    config: TrainConfig
    progress: bool  # show a progress bar
    resume: str | None  # the checkpoint to go on from
    overwrite: bool  # replace a run already in the output folder


def parse_args(argv: list[str] | None = None) -> Command:
    """Command-line flags (compatible with pytorch/examples' mnist/main.py) -> what to do."""
    d = TrainConfig()
    improved = ", ".join(f"{flag(k)} {v}" for k, v in RECIPES["improved"].items())
    p = ArgumentParser(
        "mnist_cnn.train",
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
    add(
        "--elastic",
        type=float,
        metavar="PX",
        help="with --augment: an elastic distortion too, moving pixels about PX pixels (default: off)",
    )
    add(
        "--erase",
        type=float,
        metavar="P",
        help="with --augment: erase a random patch of an image with probability P (default: off)",
    )
    add(
        "--label-smoothing",
        type=float,
        metavar="E",
        help=f"spread E of each target over all classes (default: {d.label_smoothing})",
    )
    add(
        "--ema",
        type=float,
        metavar="DECAY",
        help="evaluate and save an exponential moving average of the weights, e.g. 0.999 (default: off)",
    )
    add(
        "--teacher",
        metavar="CHECKPOINT",
        help="learn from the answers of the net in CHECKPOINT too (knowledge distillation), e.g. "
        "one trained with --model wide (default: none)",
    )
    add(
        "--distill",
        type=float,
        metavar="W",
        help=f"with --teacher: the weight of its answers in the loss, the labels' is 1 - W (default: {d.distill})",
    )
    add(
        "--temperature",
        type=float,
        metavar="T",
        help=f"with --teacher: soften both nets' answers by T (default: {d.temperature})",
    )
    add(
        "--val-split",
        type=int,
        metavar="N",
        help="hold out N training images and report on them instead of the test set, to tune a "
        "recipe without looking at the test set (default: 0, off)",
    )
    add("--seed", type=int, metavar="S", help=f"random seed; fixes the run on CPU (default: {d.seed})")
    add("--device", help="auto, cpu, cuda, cuda:N or mps (default: auto: CUDA, then MPS, else CPU)")
    add("--no-accel", action="store_true", help="train on the CPU even when an accelerator is present")
    add(
        "--data-dir",
        metavar="DIR",
        help="folder holding MNIST/raw/ (FashionMNIST/raw/, ... for --dataset) (default: $MNIST_DATA_DIR, else ./data)",
    )
    add("--no-cache", dest="cache", action="store_false", help="read the raw data files, not the cache")
    add("--precision", choices=PRECISIONS, help=f"fp32, or bf16 autocast (default: {d.precision})")
    add("--channels-last", action=argparse.BooleanOptionalAction, help="NHWC memory layout (default: on)")
    add(
        "--threads",
        type=int,
        metavar="N",
        help="CPU threads for torch, fixed (default: auto, one per core that other processes leave free)",
    )
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
        help="where metrics, curves and checkpoints go; a folder that holds another run is refused "
        "(default: runs/<date>-<time>-<process id>)",
    )
    add("--overwrite", action="store_true", help="replace the run already in --output-dir")
    add(
        "--resume",
        metavar="CHECKPOINT",
        help="continue the run saved in CHECKPOINT (a last.pt), in its folder; with --epochs, "
        "train a finished run further",
    )
    add("--no-progress", action="store_true", help="no progress bar")
    args = vars(p.parse_args(argv))
    args.pop("debug")
    progress = not args.pop("no_progress", False)
    if args.pop("no_accel", False):
        args["device"] = "cpu"
    overwrite = args.pop("overwrite", False)
    resume = args.pop("resume", None)
    if resume is not None:
        return Command(resume_config(resume, **args), progress, resume, overwrite)
    args.setdefault("output_dir", str(default_output_dir()))
    return Command(default_config(**args), progress, None, overwrite)


@exit_on_error
def main(argv: list[str] | None = None) -> History:
    """`python -m mnist_cnn.train`: parse flags, print the net, train, print each epoch's test line.
    Under torchrun only rank 0 prints."""
    config, progress, resume, overwrite = parse_args(argv)
    speaks = distributed.is_main()
    if resume is not None:
        saved = load_checkpoint(resume)
        if saved["epoch"] >= config.epochs and saved.get("position") is None:
            if speaks:
                print(
                    f"Nothing left to do: {resume} has trained all {config.epochs} epochs of its run; "
                    f"--epochs N (more than {config.epochs}) trains it further"
                )
            return saved["history"]
    if speaks:
        print_summary(build_model(config.model, **config.model_args))

    def banner(run: dict) -> None:
        processes = f" x {run['processes']} processes" if run["processes"] > 1 else ""
        print(
            f"Training {run['model']} ({run['parameters']:,} parameters) on {run['dataset']}, "
            f"{run['device']}{processes}, {run['threads']}"
        )
        if resume is not None:
            print(f"Resuming {resume}, writing to {config.output_dir}")

    def report(metrics: dict) -> None:
        changes = metrics["thread_changes"]
        threads = f" (the thread count changed {changes}x, to {metrics['threads']})" if changes else ""
        print(
            f"Epoch {metrics['epoch']}: train loss {metrics['train_loss']:.4f}, "
            f"{metrics['train_seconds']:.1f} s{threads}"
        )
        print(format_test_line(metrics))

    history = fit(
        config, on_start=banner, on_epoch=report, progress=progress, resume=resume, overwrite=overwrite
    )
    if speaks:
        print(finished_line(config))
    return history


def finished_line(config: TrainConfig) -> str:
    """Where the run's files are, as they are: a dry run writes none, and curves need matplotlib."""
    if config.dry_run:
        return "Dry run: nothing written"
    output_dir = Path(config.output_dir)
    what = (
        "Metrics and curves" if (output_dir / "curves.png").exists() else "Metrics (no curves: no matplotlib)"
    )
    return f"{what} in {output_dir}" + (" (with last.pt and best.pt)" if config.save_model else "")


if __name__ == "__main__":
    main()
