"""The configuration of one training run: plain, frozen data."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .data import get_dataset
from .errors import MnistCnnError


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run. The CLI builds it, `fit` takes it, checkpoints
    store it (as a dict). Field `x_y` is the command-line flag `--x-y`."""

    model: str = "seed"
    model_args: dict[str, Any] = field(default_factory=dict)  # the net's constructor arguments
    dataset: str = "mnist"  # a key of data.DATASETS
    epochs: int = 1
    batch_size: int = 64  # the global batch: under torchrun, the processes share each batch
    test_batch_size: int = 1000
    lr: float = 0.03  # peak learning rate of the one-cycle schedule
    schedule: str = "onecycle"  # or "restarts": see train.build_optimizer
    warmup: float = 0.2  # onecycle: fraction of the run spent raising the learning rate to its peak
    schedule_start: int = 0  # the epoch the schedule starts at: > 0 once --resume --epochs extended a run
    momentum: float = 0.9
    weight_decay: float = 0.0
    augment: bool = False  # random rotation, shift and scale of every training image
    elastic: float = 0.0  # with augment: an elastic distortion too, moving pixels this far (rms)
    erase: float = 0.0  # with augment: the probability that an image gets a patch erased
    label_smoothing: float = 0.0  # the share of each target spread evenly over all classes
    ema: float = 0.0  # the decay of an exponential moving average of the weights; 0: none
    teacher: str | None = None  # a checkpoint whose net's softened answers the run learns from too
    distill: float = 0.5  # with teacher: the weight of its answers in the loss (the labels': 1 - distill)
    temperature: float = 4.0  # with teacher: how much both nets' answers are softened
    val_split: int = 0  # hold out this many training images and evaluate on them, not on the test set
    seed: int = 1
    device: str = "auto"  # auto: CUDA, then Apple MPS, else CPU
    data_dir: str | None = None  # None: $MNIST_DATA_DIR, else ./data
    cache: bool = True  # keep the decoded data in the user's cache folder (see cache.py)
    precision: str = "fp32"  # or bf16 (autocast)
    channels_last: bool = True
    threads: int | None = None  # CPU threads for torch; None: torch's default (one per core)
    dry_run: bool = False  # one batch of training and of evaluation
    log_interval: int = 10  # batches between progress-bar updates, loss and stop checks
    save_model: bool = False
    output_dir: str | None = None  # None: runs/<timestamp>

    def __post_init__(self) -> None:
        for name, low in (("epochs", 1), ("batch_size", 1), ("test_batch_size", 1)):
            if getattr(self, name) < low:
                raise MnistCnnError(f"{flag(name)} must be at least {low}, got {getattr(self, name)}")
        if not self.lr > 0:
            raise MnistCnnError(f"--lr must be above 0, got {self.lr}")
        if not 0 < self.warmup < 1:
            raise MnistCnnError(f"--warmup must be between 0 and 1, got {self.warmup}")
        if not 0 <= self.momentum < 1:
            raise MnistCnnError(f"--momentum must be in [0, 1), got {self.momentum}")
        if not 0 <= self.weight_decay < math.inf:
            raise MnistCnnError(f"--weight-decay must be at least 0, got {self.weight_decay}")
        if not 0 <= self.elastic < math.inf:
            raise MnistCnnError(f"--elastic must be a number of at least 0, got {self.elastic}")
        if not 0 <= self.erase <= 1:
            raise MnistCnnError(f"--erase must be in [0, 1], got {self.erase}")
        for name in ("elastic", "erase"):
            if getattr(self, name) and not self.augment:
                raise MnistCnnError(f"{flag(name)} adds to --augment's distortions: give --augment too")
        if not 0 <= self.label_smoothing < 1:
            raise MnistCnnError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0 <= self.ema < 1:
            raise MnistCnnError(f"--ema must be in [0, 1) (0: off), got {self.ema}")
        if not 0 <= self.distill <= 1:
            raise MnistCnnError(f"--distill must be in [0, 1], got {self.distill}")
        if not 0 < self.temperature < math.inf:
            raise MnistCnnError(f"--temperature must be a number above 0, got {self.temperature}")
        if self.val_split < 0:
            raise MnistCnnError(f"--val-split must be at least 0, got {self.val_split}")
        if self.threads is not None and self.threads < 1:
            raise MnistCnnError(f"--threads must be at least 1, got {self.threads}")
        if self.log_interval < 1:
            raise MnistCnnError(f"--log-interval must be at least 1, got {self.log_interval}")
        if self.schedule not in SCHEDULES:
            raise MnistCnnError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        get_dataset(self.dataset)  # a clear error for an unknown one
        if self.precision not in PRECISIONS:
            raise MnistCnnError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")

    def to_dict(self) -> dict:
        """Plain data for checkpoints and JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """The inverse of to_dict; unknown keys (from newer versions) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


PRECISIONS = ("fp32", "bf16")
SCHEDULES = ("onecycle", "restarts")

# The improved net's first recipe, 15 epochs: it made ImprovedNetWeights.MNIST_V1 and FASHION_MNIST_V1.
IMPROVED_V1: dict[str, Any] = {
    "epochs": 15,
    "schedule": "restarts",
    "lr": 0.1,
    "weight_decay": 2e-4,
    "augment": True,
}

# Each model's default training recipe: what differs from TrainConfig's defaults (the seed's).
# The improved net's 40 epochs were chosen on a validation split (README: Results).
# The wide net is a teacher for the improved one (train --teacher), trained by the same recipe: a
# teacher trained 15 epochs was no better than its student, and taught it nothing (README: Results).
RECIPES: dict[str, dict[str, Any]] = {
    "seed": {},
    "improved": {**IMPROVED_V1, "epochs": 40},
}
RECIPES["wide"] = RECIPES["improved"]


def default_config(model: str = "seed", **overrides: Any) -> TrainConfig:
    """TrainConfig with model's recipe, then overrides on top."""
    if model not in RECIPES:
        raise MnistCnnError(f"--model must be one of {', '.join(RECIPES)}, got {model!r}")
    return TrainConfig(model=model, **{**RECIPES[model], **overrides})


def flag(field_name: str) -> str:
    """The command-line flag of a config field."""
    return "--" + field_name.replace("_", "-")
