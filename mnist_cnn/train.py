"""Training: `fit(config) -> history`, one epoch at a time, and the `python -m mnist_cnn.train` command.

One step is: index a batch from the in-memory split, (augment it), forward, loss (losses.py),
backward, SGD step, learning-rate step (optim.py), and with --ema an update of the weights'
moving average. Nothing else runs per step but a progress-bar update every few batches.
Under torchrun, each process takes its share of every batch (see distributed.py).
"""

from __future__ import annotations

import gc
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from . import distributed
from .augment import augment_batch
from .cli import ArgumentParser, add_config_arguments, exit_on_error
from .config import RECIPES, TrainConfig, flag
from .data import Splits, load_splits, resolve_data_dir
from .device import ThreadCount, autocast, cpu_threads, select_device
from .errors import MnistCnnError, TrainingDiverged, moved
from .losses import batch_loss, load_teacher
from .metrics import format_test_line
from .model import build_model, count_parameters
from .optim import build_optimizer, exponential_average
from .runs import (
    EpochPosition,
    History,
    Learner,
    Run,
    SavedRun,
    default_output_dir,
    draw_run_curves,
    earlier_attempt,
    interrupted,
    output_folder,
    resume_config,
    save_run,
    stop_signals,
)

if TYPE_CHECKING:
    from tqdm import tqdm  # imported where a bar is shown: see progress_bar

# What this module held before the losses, the optimizer and the batch check had modules of their own.
__getattr__ = moved(
    __name__,
    {
        **dict.fromkeys(["classification_loss", "distillation_loss", "Teacher", "load_teacher"], ".losses"),
        **dict.fromkeys(["build_optimizer", "cosine_restarts", "exponential_average"], ".optim"),
        "check_batch_shares": ".distributed",
    },
)


class EpochStopped(Exception):
    """train_epoch stopped after a batch because stop() said so; position says where."""

    def __init__(self, position: EpochPosition, signal_number: int) -> None:
        super().__init__(f"stopped after batch {position.step}")
        self.position, self.signal_number = position, signal_number


def train_epoch(
    learner: Learner,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: TrainConfig,
    *,
    position: EpochPosition | None = None,
    progress: tqdm | None = None,
    stop: Callable[[], int | None] | None = None,
) -> float:
    """Train one epoch of shuffled mini-batches of config.batch_size; returns the mean training loss.

    learner.generator draws the batches' order and, with config.augment, each image's random
    distortion. position continues an epoch from where it stopped. Every config.log_interval
    batches the loss is checked (a loss that is no longer finite stops the run with
    MnistCnnError) and stop is asked whether to stop; when it returns a signal number, the epoch
    stops there with EpochStopped. Under torchrun, learner.net is the DDP-wrapped net, each
    process trains on its share of every batch, and the processes agree on both checks.
    """
    net, optimizer, generator = learner.trained, learner.optimizer, learner.generator
    net.train()
    if position is None:
        position = EpochPosition.start(len(images), generator, optimizer, images.device)
    batches = position.order.to(images.device).split(config.batch_size)[: 1 if config.dry_run else None]
    if progress is not None:
        progress.update(position.step)
    for batch in batches[position.step :]:
        index = distributed.share(batch)  # this process's share of the batch: all of it in one process
        x = images[index]
        if config.augment:
            x = augment_batch(x, generator, len(batch), distributed.share, config.elastic, config.erase)
        with autocast(images.device, config.precision):
            loss_sum = batch_loss(net(x), labels[index], x, config.label_smoothing, learner.teacher)
        optimizer.zero_grad(set_to_none=True)
        # The batch's mean loss. DDP averages the gradients of the world_size processes, so each
        # scales its share's sum by world_size too.
        (loss_sum * (distributed.world_size() / len(batch))).backward()
        optimizer.step()
        learner.scheduler.step()
        if learner.ema is not None:
            learner.ema.update_parameters(learner.model)
        # Summed on the device: no wait for the device but every log_interval batches.
        position.loss_sum += loss_sum.detach()
        position.seen += len(index)
        position.step += 1
        if position.step % config.log_interval == 0 or position.step == len(batches):
            check_in(position, progress, stop)
    loss_sum, seen = epoch_totals(position)
    return loss_sum.item() / max(seen, 1)


def check_in(position: EpochPosition, progress: tqdm | None, stop: Callable[[], int | None] | None) -> None:
    """Every --log-interval batches: the only time a step waits for the device. Stop a diverged
    run, update the bar, and stop (every process at the same batch) when stop() says so."""
    loss_sum, seen = epoch_totals(position)
    mean_loss = loss_sum.item() / seen  # the epoch's so far, over all processes
    if not math.isfinite(mean_loss):
        raise TrainingDiverged(
            f"the training loss became {mean_loss} by batch {position.step}: training diverged; try a lower --lr"
        )
    if progress is not None:
        progress.set_postfix(loss=f"{mean_loss:.4f}", refresh=False)
        progress.update(position.step - progress.n)
    # Every process stops at the same batch, or the others would wait for it forever.
    signal_number = int(distributed.all_reduce(torch.tensor((stop and stop()) or 0), "max"))
    if signal_number:
        position.loss_sum, position.seen = loss_sum, seen  # for rank 0 to save
        raise EpochStopped(position, signal_number)


def epoch_totals(position: EpochPosition) -> tuple[torch.Tensor, int]:
    """The epoch's summed training loss and image count so far, over all processes."""
    seen = torch.tensor(float(position.seen), device=position.loss_sum.device)
    loss_sum, seen = distributed.all_reduce(torch.stack([position.loss_sum.float(), seen]))
    return loss_sum, int(seen)


@torch.inference_mode()
def evaluate_split(
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


evaluate = evaluate_split  # its name before the evaluate command took it


def fit(
    config: TrainConfig,
    *,
    on_start: Callable[[dict], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    progress: bool = False,
    resume: SavedRun | str | os.PathLike | None = None,
    overwrite: bool = False,
) -> History:
    """Train config.model on config.dataset as config says; returns one dict of metrics per epoch.

    on_start is called once the data is loaded and training is about to begin, with what it runs
    on (model, parameters, dataset, device, processes, threads); on_epoch with each epoch's
    metrics as soon as they are known; progress shows a tqdm bar per epoch. resume continues the
    run saved in a checkpoint (its config comes from runs.resume_config): on CPU the result is
    bitwise the same as an uninterrupted run's. With config.output_dir, metrics and curves are
    written there; with config.save_model, checkpoints too. With config.val_split, the held-out
    training images stand in for the test set, which is not read (see data.load_splits), and the
    metrics say "val_". Before training, the run claims its output folder: one that holds another
    run is refused, unless overwrite (which removes that run's files). A dry run writes nothing.
    config.threads None fits torch's CPU threads to the cores that other processes leave free
    (see device.ThreadCount).

    Started by torchrun, the processes train together (DistributedDataParallel); only rank 0
    calls on_epoch, shows progress and writes files, and every rank returns the same history.
    """
    saved = SavedRun.open(resume) if resume is not None and not isinstance(resume, SavedRun) else resume
    device = distributed.local_device(select_device(config.device))
    if not distributed.is_main():  # rank 0 speaks for the run
        on_start, on_epoch, progress = None, None, False
    # cpu_threads(None): the run sets torch's thread count (ThreadCount); it is put back after.
    with cpu_threads(None), stop_signals() as stop, distributed.process_group(device):
        # Measures what other processes use of the cores from here until training starts.
        threads = ThreadCount(config.threads, adaptive=device.type == "cpu")
        run, data = set_up(config, device, saved)
        output_dir = output_folder(run, saved, overwrite)
        threads.start(saved.checkpoint.get("threads") if saved is not None else None)
        if on_start is not None:
            on_start(describe(run, device, threads))
        try:
            train_epochs(run, data, output_dir, threads, stop, on_epoch, progress)
        except BaseException:  # the curves of what was trained, without a word: the error says what matters
            if output_dir is not None and run.history:
                draw_run_curves(output_dir, run.history, quiet=True)
            raise
        else:
            if output_dir is not None and run.history:
                draw_run_curves(output_dir, run.history)
        finally:
            # DDP holds the process group: let go of it before the group is destroyed, or its
            # gloo threads die with the interpreter and abort the process at exit.
            run.learner.net = None
            gc.collect()
    return run.history


def set_up(config: TrainConfig, device: torch.device, saved: SavedRun | None = None) -> tuple[Run, Splits]:
    """The run of config on device, and its data: its net, teacher, optimizer and weight average,
    fresh or, from saved, as they were when it was saved."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = build_model(config.model, **config.model_args).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    teacher = load_teacher(config, device)  # before the data: a bad --teacher fails fast

    with distributed.main_process_first():  # one download, not one a process
        data = load_splits(
            resolve_data_dir(config.data_dir), config.dataset, device, config.cache, config.val_split
        )
    if config.channels_last:
        data = data._replace(
            train_images=data.train_images.contiguous(memory_format=torch.channels_last),
            test_images=data.test_images.contiguous(memory_format=torch.channels_last),
        )
    distributed.check_batch_shares(len(data.train_images), config.batch_size)

    steps_per_epoch = -(-len(data.train_images) // config.batch_size)
    optimizer, scheduler = build_optimizer(model, config, steps_per_epoch)
    ema = exponential_average(model, config.ema) if config.ema else None
    run = Run(config, Learner(model, optimizer, scheduler, generator, ema, teacher), data.normalization)
    if saved is not None:
        run.restore(saved)
    run.learner.net = distributed.wrap(model, device)  # once the weights are in place
    return run, data


def describe(run: Run, device: torch.device, threads: ThreadCount) -> dict[str, Any]:
    """What fit's on_start is told: what trains, on what."""
    return {
        "model": run.config.model,
        "parameters": count_parameters(run.learner.model),
        "dataset": run.config.dataset,
        "device": str(device),
        "processes": distributed.world_size(),
        "threads": threads.describe(),
    }


def train_epochs(
    run: Run,
    data: Splits,
    output_dir: Path | None,
    threads: ThreadCount,
    stop: Callable[[], int | None],
    on_epoch: Callable[[dict], None] | None,
    progress: bool,
) -> None:
    """Train and evaluate the epochs the run has left, saving it after each (and when a signal
    stops it, where it stopped)."""
    config, learner = run.config, run.learner
    split = "val" if config.val_split else "test"  # what data.test_images hold (see load_splits)

    def check() -> int | None:
        """Every --log-interval batches: fit the thread count to the machine, then say whether a
        signal asked to stop."""
        threads.adapt()
        return stop()

    for epoch in range(len(run.history) + 1, config.epochs + 1):
        bar = progress_bar(len(data.train_images), config.batch_size, epoch) if progress else None
        position = run.position or EpochPosition.start(
            len(data.train_images), learner.generator, learner.optimizer, data.train_images.device
        )
        start = time.perf_counter()
        try:
            train_loss = train_epoch(
                learner,
                data.train_images,
                data.train_labels,
                config,
                position=position,
                progress=bar,
                stop=check,
            )
        except EpochStopped as stopped:
            learner.average_buffers()  # every process stopped here; rank 0 saves for all
            run.position = stopped.position
            raise interrupted(output_dir, run.checkpoint(threads.count), stopped.signal_number) from None
        finally:
            if bar is not None:
                bar.close()
        train_seconds = time.perf_counter() - start
        learner.average_buffers()
        start = time.perf_counter()
        test_loss, correct, total = evaluate_split(
            learner.evaluated,
            data.test_images,
            data.test_labels,
            batch_size=config.test_batch_size,
            precision=config.precision,
            max_batches=1 if config.dry_run else None,
        )
        run.history.append(
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
        run.position = None
        if output_dir is not None:
            save_run(output_dir, run.checkpoint(threads.count), save_model=config.save_model)
        if on_epoch is not None:
            on_epoch(run.history[-1])
        if config.dry_run:
            break


def progress_bar(images: int, batch_size: int, epoch: int) -> tqdm:
    """A tqdm bar over an epoch's batches: a notebook's widget in Jupyter, text in a terminal
    (tqdm.auto); tqdm is imported only when a bar is shown."""
    from tqdm.auto import tqdm

    return tqdm(total=-(-images // batch_size), desc=f"Epoch {epoch}", unit="batch")


# ---------------------------------------------------------------------------------------------
# The command: python -m mnist_cnn.train


class Command(NamedTuple):
    """What the command line asks for: the run, and how to go about it."""

    config: TrainConfig
    progress: bool  # show a progress bar
    resume: SavedRun | None  # the run to go on from
    overwrite: bool  # replace a run already in the output folder


def parser() -> ArgumentParser:
    """The command's flags: one for every TrainConfig field that has one (config.py describes
    them), then those that say how to go about the run."""
    improved = ", ".join(f"{flag(k)} {v}" for k, v in RECIPES["improved"].items())
    p = ArgumentParser(
        "mnist_cnn.train",
        description="Train the seed's 9,032-parameter fully convolutional net (or --model improved) on MNIST.",
        epilog=f"Defaults are the seed net's recipe; --model improved changes them to {improved}. "
        "Started by torchrun (torchrun --nproc_per_node=N -m mnist_cnn.train ...), N processes train "
        "together with DistributedDataParallel (gloo on CPU, nccl on CUDA, a GPU each): each takes "
        "its share of every --batch-size batch, so the batch and the learning rate mean what they "
        "mean in one process.",
    )
    add_config_arguments(p)
    add = p.add_argument
    add("--no-accel", action="store_true", help="train on the CPU even when an accelerator is present")
    add("--overwrite", action="store_true", help="replace the run already in --output-dir")
    add(
        "--resume",
        metavar="CHECKPOINT",
        help="continue the run saved in CHECKPOINT (a last.pt), in its folder; with --epochs N, "
        "train a finished run further; auto: go on from --output-dir's last.pt if there is one, else "
        "start (for torchrun --max-restarts and Slurm --requeue)",
    )
    add("--no-progress", action="store_true", help="no progress bar")
    return p


def parse_args(argv: list[str] | None = None) -> Command:
    """Command-line flags (compatible with pytorch/examples' mnist/main.py) -> what to do."""
    p = parser()
    args = vars(p.parse_args(argv))
    if args.pop("no_accel"):
        args["device"] = "cpu"
    del args["debug"]
    progress, overwrite, resume = not args.pop("no_progress"), args.pop("overwrite"), args.pop("resume")
    if resume == "auto":
        return auto_resume(args, progress, overwrite)
    if resume is not None:
        saved = SavedRun.open(resume)
        return Command(resume_config(saved, **args), progress, saved, overwrite)
    args.setdefault("output_dir", str(default_output_dir()))
    return Command(TrainConfig(**args), progress, None, overwrite)


def auto_resume(args: dict[str, Any], progress: bool, overwrite: bool) -> Command:
    """--resume auto: go on from --output-dir's last.pt when there is one, else start there,
    saving last.pt every epoch. What torchrun --max-restarts and Slurm --requeue restart, with the
    same flags, goes on where it stopped, as the same run: a folder holding only run.json from
    this command's earlier attempt is taken over, as nothing in it was saved yet."""
    if "output_dir" not in args:
        raise MnistCnnError(
            "--resume auto goes on in --output-dir: name the folder, as a restart gives it again"
        )
    args["save_model"] = True
    output_dir = Path(args["output_dir"])
    if (output_dir / "last.pt").is_file():
        saved = SavedRun.open(output_dir / "last.pt")
        return Command(resume_config(saved, **args), progress, saved, overwrite)
    return Command(TrainConfig(**args), progress, None, overwrite or earlier_attempt(output_dir))


@exit_on_error
def main(argv: list[str] | None = None) -> History:
    """`python -m mnist_cnn.train`: parse flags, print the net, train, print each epoch's test line.
    Under torchrun only rank 0 prints."""
    config, progress, saved, overwrite = parse_args(argv)
    speaks = distributed.is_main()
    if saved is not None and saved.has_trained(config.epochs):
        if speaks:
            print(
                f"Nothing left to do: {saved.path} has trained all {config.epochs} epochs of its run; "
                f"--epochs N (more than {config.epochs}) trains it further"
            )
        return saved.checkpoint["history"]
    if speaks:
        print_summary(build_model(config.model, **config.model_args))

    def banner(run: dict) -> None:
        processes = f" x {run['processes']} processes" if run["processes"] > 1 else ""
        print(
            f"Training {run['model']} ({run['parameters']:,} parameters) on {run['dataset']}, "
            f"{run['device']}{processes}, {run['threads']}"
        )
        if saved is not None:
            print(f"Resuming {saved.path}, writing to {config.output_dir}")

    def report(metrics: dict) -> None:
        changes = metrics["thread_changes"]
        threads = f" (the thread count changed {changes}x, to {metrics['threads']})" if changes else ""
        print(
            f"Epoch {metrics['epoch']}: train loss {metrics['train_loss']:.4f}, "
            f"{metrics['train_seconds']:.1f} s{threads}"
        )
        print(format_test_line(metrics))

    history = fit(
        config, on_start=banner, on_epoch=report, progress=progress, resume=saved, overwrite=overwrite
    )
    if speaks:
        print(finished_line(config))
    return history


def print_summary(model: nn.Module) -> None:
    """torchsummary's table for a 1x28x28 input, computed on the CPU."""
    from torchsummary import summary

    # torchsummary feeds random inputs; keep them out of the run's random stream.
    with torch.random.fork_rng(devices=[]):
        summary(model, (1, 28, 28), device="cpu")


def finished_line(config: TrainConfig) -> str:
    """Where the run's files are, as they are: a dry run writes none, and curves need matplotlib."""
    if config.dry_run:
        return "Dry run: nothing written"
    output_dir = Path(config.output_dir or ".")
    what = (
        "Metrics and curves" if (output_dir / "curves.png").exists() else "Metrics (no curves: no matplotlib)"
    )
    return f"{what} in {output_dir}" + (" (with last.pt and best.pt)" if config.save_model else "")


if __name__ == "__main__":
    main()
