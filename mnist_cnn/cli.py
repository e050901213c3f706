"""What the commands share: a parser whose errors are one line, the flags that name a net
(a checkpoint, --weights, --device, --dataset) and the default weights, the training flags made
from TrainConfig, and the wrapper that turns errors into one line and an exit status.

Only the command modules (train, evaluate, predict, export, explain, serve, search) import it; it imports
nothing of the training machinery, so a command that uses a trained net starts fast.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import typing
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import torch.distributed

from .checkpoint import TrainedModel
from .config import FIELDS, TrainConfig, flag
from .data import DATASETS
from .device import select_device
from .errors import MnistCnnError, TrainingInterrupted, first_line
from .loading import open_net
from .preprocess import IMAGE_SUFFIXES
from .weights import default_weights

T = TypeVar("T")

DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps (default: auto: CUDA when there is one, then MPS, else the CPU)"
CHECKPOINT_SUFFIXES = {".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".pt2"}


def lost_peers(error: RuntimeError) -> str | None:
    """What went wrong, in a few words, when error is a collective's failure under torchrun
    because another process of the run died or never came; None for any other error."""
    if int(os.environ.get("WORLD_SIZE", 1)) == 1:
        return None
    text = first_line(error)
    if not isinstance(error, torch.distributed.DistError) and not re.search(
        r"gloo|nccl|NCCL|Connection", text
    ):
        return None
    # gloo says where in its sources before what happened: "[.../pair.cc:545] Read error ..."
    return re.sub(r"^\[[^\]]*\]\s*", "", text).split(". ")[0]


def command_name(module: str) -> str:
    """The command as the user called it: its console script (mnist-cnn-train, ...) or
    `python -m module`."""
    script = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return script if script.startswith("mnist-cnn-") else f"python -m {module}"


class ArgumentParser(argparse.ArgumentParser):
    """argparse for the command in module, named as the user called it; a bad flag is one line
    on stderr (and exit status 2), like every other error; every command takes --debug and
    --version."""

    def __init__(self, module: str | None = None, **kwargs: Any) -> None:
        if module is not None:
            kwargs["prog"] = command_name(module)
        super().__init__(**kwargs)
        from . import __version__  # here: the package has finished importing by now

        self.add_argument("--version", action="version", version=f"%(prog)s (mnist-cnn) {__version__}")
        self.add_argument(
            "--debug", action="store_true", default=False, help="show the traceback of an error"
        )

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def exit_on_error(main: Callable[..., T]) -> Callable[..., T]:
    """Turn MnistCnnError, Ctrl-C and a lost torchrun peer into one line on stderr and a
    non-zero exit, no traceback.

    Exit status 2 for the user's errors and for a process of the run that died (torchrun then
    restarts the group, with --max-restarts); 128 + the signal for an interrupted run (130 for
    Ctrl-C, 143 for SIGTERM), as shells do. With --debug the traceback is shown instead. Under
    torchrun, the processes other than rank 0 say which they are.
    """

    @wraps(main)
    def wrapper(argv: list[str] | None = None) -> T:
        debug = "--debug" in (sys.argv[1:] if argv is None else argv)
        rank = os.environ.get("RANK", "0")  # set by torchrun
        who = "" if rank == "0" else f"rank {rank}: "
        try:
            return main(argv)
        except TrainingInterrupted as error:
            if debug:
                raise
            print(f"{who}interrupted: {error}", file=sys.stderr)
            raise SystemExit(128 + error.signal_number) from None
        except MnistCnnError as error:
            if debug:
                raise
            print(f"{who}error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            if debug:
                raise
            print(f"{who}interrupted", file=sys.stderr)
            raise SystemExit(130) from None
        except RuntimeError as error:  # gloo's and nccl's errors, when another process of the run died
            lost = lost_peers(error)
            if debug or not lost:
                raise
            print(f"{who}error: lost the other processes of the run ({lost})", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper


# ---------------------------------------------------------------------------------------------
# A trained net, named on the command line


def add_net_arguments(
    p: argparse.ArgumentParser,
    *,
    images: str | None = None,
    checkpoint_flag: bool = False,
    device: bool = True,
) -> None:
    """The flags of a command that uses a trained net: the checkpoint (with images: `[CHECKPOINT]
    IMAGE...`, images saying what they may be; with checkpoint_flag: `--checkpoint PATH`; else an
    optional positional CHECKPOINT), --weights, --device (unless device is False) and --dataset."""
    source = "a checkpoint written by training (best.pt), or a .safetensors or .pt2 file export wrote"
    # where --weights goes: beside --checkpoint, one or the other
    named: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup = p
    if images is not None:
        p.add_argument(
            "inputs",
            nargs="+",
            metavar="[CHECKPOINT] IMAGE",
            help=f"{source}, then {images} (any format Pillow reads); the shipped improved net when no "
            "checkpoint or --weights is given",
        )
    elif checkpoint_flag:
        named = p.add_mutually_exclusive_group()
        named.add_argument("--checkpoint", metavar="PATH", help=source)
    else:
        p.add_argument("checkpoint", nargs="?", help=source)
    named.add_argument(
        "--weights",
        metavar="NAME",
        help="shipped weights instead of a checkpoint: DEFAULT, seed, improved:FASHION_MNIST_V1, ... "
        "(default: the improved net that learnt --dataset, MNIST when none is named)",
    )
    if device:
        p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument(
        "--dataset",
        choices=list(DATASETS),
        help="refuse a net trained on another data set (default: take the net's)",
    )


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """--data-dir and --no-cache, as training has them."""
    for name in ("data_dir", "cache"):
        add_field_argument(p, name, suppress=False)


def split_inputs(inputs: list[str]) -> tuple[str | None, list[str]]:
    """(the checkpoint, the images) of `[CHECKPOINT] IMAGE...`: the first is a checkpoint when its
    name ends like one, or it is a file that is no image; else every argument is an image."""
    first = Path(inputs[0])
    suffix = first.suffix.lower()
    if suffix in CHECKPOINT_SUFFIXES or (first.is_file() and suffix not in IMAGE_SUFFIXES):
        if len(inputs) == 1:
            raise MnistCnnError(f"no images given after the checkpoint {first}")
        return inputs[0], inputs[1:]
    return None, inputs


def weights_or_default(
    checkpoint: str | None, weights: str | None, dataset: str | None = None, *, quiet: bool = False
) -> str | None:
    """The weights for open_net: weights as given or, when a command was given neither a
    checkpoint nor weights, the name of the shipped improved net that learnt dataset (MNIST when
    None), which a note on stderr names unless quiet (for a command that says it otherwise)."""
    if checkpoint is not None or weights is not None:
        return weights
    default = default_weights(dataset)
    if not quiet:
        print(f"note: no checkpoint given: reading with the shipped {default}", file=sys.stderr)
    return f"improved:{default.name}"


def open_named_net(
    args: argparse.Namespace, checkpoint: str | None, *, default: bool = True, quiet: bool = False
) -> TrainedModel:
    """The net that add_net_arguments' flags name, on args.device (the CPU without that flag).
    default: with neither a checkpoint nor --weights, the shipped improved net (see
    weights_or_default); else that is an error."""
    dataset = getattr(args, "dataset", None)
    weights = weights_or_default(checkpoint, args.weights, dataset, quiet=quiet) if default else args.weights
    return open_net(checkpoint, weights, select_device(getattr(args, "device", "cpu")), dataset)


# ---------------------------------------------------------------------------------------------
# The training flags, made from TrainConfig's fields


def add_field_argument(p: argparse.ArgumentParser, name: str, *, suppress: bool = True) -> None:
    """The flag of TrainConfig's field name, as its Option describes it. With suppress, its value
    is left out when the flag is not given (argparse.SUPPRESS), so that TrainConfig fills in the
    model's recipe; else it is the field's default."""
    described = FIELDS[name]
    kind = typing.get_args(FIELD_TYPES[name]) or (FIELD_TYPES[name],)  # Optional[int] -> (int, None)
    options: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS if suppress else described.default}
    help_text = described.help
    if kind[0] is bool and not described.negatable:  # --save-model, --no-cache: no default to show
        options["action"] = "store_false" if described.default else "store_true"
    else:
        help_text += f" (default: {default_text(name)})"
        if kind[0] is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["type"] = kind[0]
            options["choices"] = described.choices
            options["metavar"] = described.metavar
    p.add_argument(flag(name), help=help_text.replace("%", "%%"), **options)


def default_text(name: str) -> str:
    """A field's default as --help and the docs show it: the seed net's recipe for what a recipe
    sets."""
    described = FIELDS[name]
    if described.default_text is not None:
        return described.default_text
    if isinstance(described.default, bool):
        return "on" if described.default else "off"
    return "none" if described.default is None else str(described.default)


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    """A flag for every TrainConfig field that has one, in the fields' order."""
    for name, described in FIELDS.items():
        if described.flag is not None:
            add_field_argument(p, name)


FIELD_TYPES: dict[str, Any] = typing.get_type_hints(TrainConfig)
