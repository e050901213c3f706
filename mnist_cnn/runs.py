"""A training run's state, what it saves, and how it goes on after a stop.

A run owns its output folder: `run.json` names the run, so that no other run writes over its
metrics and checkpoints (unless told to with --overwrite). After every epoch it writes its
metrics and, with --save-model, last.pt and best.pt; a signal saves it mid-epoch. A saved run
goes on with --resume, bitwise as if it had not stopped, or is extended by --epochs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from . import distributed
from .checkpoint import load_checkpoint, save_checkpoint
from .config import RESUMABLE_OVERRIDES, TrainConfig, flag
from .data import Normalization, epoch_order
from .errors import MnistCnnError, TrainingInterrupted, command_name, first_line
from .files import write_atomic
from .metrics import evaluated_split, write_metrics
from .plots import NoMatplotlib, draw_curves

if TYPE_CHECKING:
    from .losses import Teacher

History = list[dict]
RUN_FILE = "run.json"  # marks a folder as one run's: its id, and when and how it started
RUN_OUTPUTS = ("metrics.json", "metrics.csv", "curves.png", "last.pt", "best.pt")


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


def default_output_dir() -> Path:
    """runs/<date>-<time>-<process id>: unique even for runs started in the same second."""
    return Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"


def claim_output_dir(output_dir: Path, run_id: str, *, overwrite: bool = False, own: bool = False) -> None:
    """Make output_dir run_id's folder before any training, or fail with one line: a folder that
    is a file or cannot be written, or that holds another run (unless overwrite, which removes
    that run's files). own: the folder the resumed checkpoint lies in, whose files are this run's
    even when they predate run.json."""
    marker = output_dir / RUN_FILE
    if output_dir.exists() and not output_dir.is_dir():
        raise MnistCnnError(f"--output-dir {output_dir} is a file, not a folder")
    owner = run_owner(marker)
    if owner == run_id:  # this run, going on: make sure it can still write there
        write_atomic(marker, marker.read_bytes())
        return
    others = [name for name in RUN_OUTPUTS if (output_dir / name).exists()]
    if (owner is not None or (others and not own)) and not overwrite:
        found = ", ".join([RUN_FILE] * (owner is not None) + others)
        raise MnistCnnError(
            f"--output-dir {output_dir} holds another run ({found}): pick another folder, continue "
            f"that run with --resume {output_dir / 'last.pt'}, or replace it with --overwrite"
        )
    if overwrite:  # the other run's files go; in the run's own folder, they are its own and stay
        for name in (RUN_FILE, *([] if own else others)):
            (output_dir / name).unlink(missing_ok=True)
    record = {"run_id": run_id, "started": datetime.now().isoformat(timespec="seconds"), "pid": os.getpid()}
    text = json.dumps({**record, "command": sys.argv}, indent=2).encode()
    tmp = output_dir / f".{RUN_FILE}.{run_id}.tmp"
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(tmp, text)
        # A hard link appears whole and fails where the name exists: of two runs starting in one
        # folder at once, exactly one gets it.
        try:
            os.link(tmp, marker)
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links: create it exclusively, then fill it
            with open(marker, "xb") as file:
                file.write(text)
    except FileExistsError:
        raise MnistCnnError(f"--output-dir {output_dir}: another run started there just now") from None
    except OSError as error:
        raise MnistCnnError(f"--output-dir {output_dir} cannot be written: {error.strerror}") from None
    except MnistCnnError as error:
        raise MnistCnnError(f"--output-dir {output_dir} cannot be written ({error})") from None
    finally:
        with contextlib.suppress(OSError):  # the folder may be no folder at all
            tmp.unlink(missing_ok=True)


def earlier_attempt(output_dir: Path) -> bool:
    """Whether output_dir holds only the run.json of an earlier attempt of this very command (a
    process restarted with the same arguments before it saved anything), which it may take over."""
    try:
        record = json.loads((output_dir / RUN_FILE).read_text())
    except (OSError, ValueError):
        return False
    nothing_saved = not any((output_dir / name).exists() for name in RUN_OUTPUTS)
    return isinstance(record, dict) and record.get("command") == sys.argv and nothing_saved


def run_owner(marker: Path) -> str | None:
    """The run id in a run.json, None when there is none ("?" when it cannot be read)."""
    try:
        return str(json.loads(marker.read_text())["run_id"])
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return "?"


def new_run_id() -> str:
    """A fresh run's id, as run.json and its checkpoints record it."""
    return uuid.uuid4().hex


@dataclass
class Learner:
    """What a training step changes and learns from: the net, its optimizer and learning-rate
    schedule, the generator that draws the batches and distortions, and, when the run has them,
    a moving average of the weights (--ema) and a teacher (--teacher)."""

    model: nn.Module  # the net itself, as it is saved
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator
    ema: AveragedModel | None = None
    teacher: Teacher | None = None
    net: nn.Module | None = None  # what trains: model, or model in DDP under torchrun; None: model

    @property
    def trained(self) -> nn.Module:
        """The net that forward and backward passes go through."""
        return self.model if self.net is None else self.net

    @property
    def evaluated(self) -> nn.Module:
        """The net the run reports and saves: with --ema, the average."""
        return self.model if self.ema is None else self.ema.module

    def average_buffers(self) -> None:
        """Under torchrun, make the processes' BatchNorm statistics (and their averages) agree."""
        for net in (self.model,) if self.ema is None else (self.model, self.ema.module):
            distributed.average_buffers(net)


@dataclass
class Run:
    """A training run as it stands: what it is, what learns, and how far it has come."""

    config: TrainConfig
    learner: Learner
    normalization: Normalization  # of the training split: what the saved net's inputs need
    run_id: str = dataclasses.field(default_factory=new_run_id)
    history: History = dataclasses.field(default_factory=list)  # one dict of metrics per epoch done
    position: EpochPosition | None = None  # where it stopped within an epoch

    def checkpoint(self, threads: int | None = None) -> dict:
        """The run as a resumable checkpoint: after len(history) epochs, and position into the
        next one when it stopped part-way; threads: the CPU thread count it ran with.

        model_state is the net the run reports and users load: with --ema, the average. The
        weights that train on are then train_state."""
        config, learner = self.config, self.learner
        averaged = (
            {}
            if learner.ema is None
            else {"train_state": learner.model.state_dict(), "ema_updates": int(learner.ema.n_averaged)}
        )
        return {
            "model": config.model,
            "model_args": config.model_args,
            "model_state": learner.evaluated.state_dict(),
            **averaged,
            "dataset": config.dataset,
            "normalization": self.normalization,
            "optimizer_state": learner.optimizer.state_dict(),
            "scheduler_state": learner.scheduler.state_dict(),
            "rng_state": {
                "torch": torch.get_rng_state(),
                "generator": learner.generator.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            "epoch": len(self.history),
            "position": self.position.to_dict() if self.position is not None else None,
            "config": config.to_dict(),
            "history": list(self.history),
            "run_id": self.run_id,
            "threads": threads,
        }

    def restore(self, saved: SavedRun) -> None:
        """Put a run saved by checkpoint() back in place: the weights, the optimizer and schedule,
        the random streams, the history and where in an epoch it stopped. A run extended by
        --epochs keeps its momentum, and its schedule (built for the added epochs) starts afresh."""
        checkpoint, learner = saved.checkpoint, self.learner
        new_schedule = saved.config.schedule_start != self.config.schedule_start
        try:
            learner.model.load_state_dict(checkpoint.get("train_state", checkpoint["model_state"]))
            if learner.ema is not None:
                learner.ema.module.load_state_dict(checkpoint["model_state"])
                learner.ema.n_averaged.fill_(checkpoint["ema_updates"])
            first_lrs = [group["lr"] for group in learner.optimizer.param_groups]
            learner.optimizer.load_state_dict(checkpoint["optimizer_state"])
            if new_schedule:  # the momentum goes on; the learning rate is the new schedule's
                for group, lr in zip(learner.optimizer.param_groups, first_lrs, strict=True):
                    group["lr"] = lr
            else:
                learner.scheduler.load_state_dict(checkpoint["scheduler_state"])
            rng = checkpoint["rng_state"]
            torch.set_rng_state(rng["torch"])
            learner.generator.set_state(rng["generator"])
            if rng["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])
            device = next(learner.model.parameters()).device
            position = checkpoint.get("position")
            self.position = position and EpochPosition.from_dict(position, device)
            if self.position and not distributed.is_main():  # rank 0 carries the totals so far
                self.position.loss_sum, self.position.seen = torch.zeros((), device=device), 0
            self.history = list(checkpoint["history"])
        except (KeyError, RuntimeError, ValueError, TypeError) as error:
            raise MnistCnnError(f"cannot resume from this checkpoint: {first_line(error)}") from None
        self.run_id = checkpoint.get("run_id", self.run_id)  # checkpoints from before run.json have none


def save_run(output_dir: Path, checkpoint: dict, save_model: bool) -> None:
    """After an epoch: metrics.json and metrics.csv; with save_model, last.pt and, when the test
    (or, with --val-split, validation) accuracy is the best of the run so far, best.pt."""
    history = checkpoint["history"]
    write_metrics(output_dir, history)
    if not save_model:
        return
    save_checkpoint(output_dir / "last.pt", checkpoint)
    accuracy = f"{evaluated_split(history[-1])}_accuracy"
    if history[-1][accuracy] >= max(m[accuracy] for m in history):
        save_checkpoint(output_dir / "best.pt", checkpoint)


def draw_run_curves(output_dir: Path, history: History, quiet: bool = False) -> None:
    """curves.png, once, when the run ends or stops: importing matplotlib and drawing take about
    a second, which every epoch would pay again. A picture that cannot be drawn or written (no
    matplotlib, a full disk) is a note, or with quiet nothing (when an error stopped the run,
    which must not be hidden by the picture's): the metrics and checkpoints are written by then."""
    try:
        draw_curves(history, output_dir / "curves.png")
    except (NoMatplotlib, MnistCnnError) as error:
        if not quiet:
            print(f"note: {error}", file=sys.stderr)


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
    command = (
        f"torchrun --nproc_per_node={processes} -m mnist_cnn.train"
        if processes > 1
        else command_name("mnist_cnn.train")
    )
    return TrainingInterrupted(
        f"{name} {where}; saved {path}; go on with: {command} --resume {path}", signal_number
    )


@dataclass(frozen=True)
class SavedRun:
    """A run saved to go on from (a last.pt), read once: where it lies and what it holds."""

    path: Path
    checkpoint: dict

    @classmethod
    def open(cls, path: str | os.PathLike) -> SavedRun:
        """Read the checkpoint at path; one that holds a net but not a resumable run is refused."""
        checkpoint = load_checkpoint(path)
        if "config" not in checkpoint or "rng_state" not in checkpoint:
            raise MnistCnnError(f"{path} holds a model but not a resumable run")
        return cls(Path(path), checkpoint)

    @property
    def config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.checkpoint["config"])

    @property
    def epochs_done(self) -> int:
        return self.checkpoint["epoch"]

    def has_trained(self, epochs: int | None = None) -> bool:
        """Whether the run has trained epochs (by default all of its own) and stopped between
        epochs, not inside one: then resuming it to that many has nothing left to do."""
        epochs = self.config.epochs if epochs is None else epochs
        return self.epochs_done >= epochs and self.checkpoint.get("position") is None


def resume_config(saved: SavedRun | str | os.PathLike, **overrides: Any) -> TrainConfig:
    """The config of the run saved at a checkpoint (a path, or one already read), with
    where-and-how settings (device, data_dir, output_dir, threads, ...: the resumable fields of
    TrainConfig) replaced by overrides. What decides the result (model, learning rate, seed, ...)
    cannot change: that would not be the same run. epochs may grow once the run has finished:
    the added epochs get a schedule of their own.

    The run goes on writing in the checkpoint's own folder, wherever it has been moved, unless
    overrides name another output_dir.
    """
    if not isinstance(saved, SavedRun):
        saved = SavedRun.open(saved)
    config, done = saved.config, saved.epochs_done
    epochs = overrides.pop("epochs", config.epochs)
    if epochs != config.epochs:
        if not saved.has_trained():
            raise MnistCnnError(
                f"--epochs: {saved.path} stopped in epoch {done + 1} of {config.epochs}; --resume "
                "finishes it as it was, and only a finished run can be extended with --epochs"
            )
        if epochs < done:
            raise MnistCnnError(
                f"--epochs {epochs}: {saved.path} has trained {done} epochs already; give more to extend it"
            )
        # The added epochs get a learning-rate schedule of their own (see optim.build_optimizer).
        config = dataclasses.replace(config, epochs=epochs, schedule_start=done)
    fixed = set(overrides) - RESUMABLE_OVERRIDES
    changed = sorted(flag(k) for k in fixed if overrides[k] != getattr(config, k))
    if changed:
        raise MnistCnnError(
            f"--resume continues the saved run as it was; it cannot change {', '.join(changed)}"
        )
    overrides.setdefault("output_dir", str(saved.path.parent))
    return dataclasses.replace(config, **{k: v for k, v in overrides.items() if k in RESUMABLE_OVERRIDES})


def output_folder(run: Run, saved: SavedRun | None, overwrite: bool = False) -> Path | None:
    """The folder the run writes to, claimed for it (see claim_output_dir) before it trains, so
    that no trained epoch is lost to a bad folder: config.output_dir, else with --save-model
    runs/<timestamp>. None when it writes nothing: a dry run, or a process other than rank 0
    (which speaks for the run). A resumed run owns the folder its checkpoint lies in."""
    config = run.config
    output_dir = Path(config.output_dir) if config.output_dir else None
    if config.save_model and output_dir is None:
        output_dir = default_output_dir()
    if output_dir is None or config.dry_run or not distributed.is_main():
        return None
    own = saved is not None and saved.path.parent.resolve() == output_dir.resolve()
    folder_owner = run_owner(output_dir / RUN_FILE)
    if saved is not None and own and "run_id" not in saved.checkpoint and folder_owner not in (None, "?"):
        run.run_id = folder_owner  # a checkpoint from before run ids, resumed once before
    claim_output_dir(output_dir, run.run_id, overwrite=overwrite, own=own)
    return output_dir


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # what asks training to stop, saving the run


@contextlib.contextmanager
def stop_signals() -> Iterator[Callable[[], int | None]]:
    """While training, SIGINT (Ctrl-C) and SIGTERM ask it to stop at the next check (every
    --log-interval batches), so the run can be saved whole; a second one stops it at once.
    Yields stop(): the first signal received, else None. Outside the main thread (where Python
    allows no handlers) nothing changes."""
    received: list[int] = []

    def handler(signal_number: int, frame) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signal_number)

    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield lambda: received[0] if received else None
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
