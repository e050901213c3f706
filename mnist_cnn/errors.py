"""The package's one error type, and how command-line entry points report it."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class MnistCnnError(Exception):
    """A problem the user can fix (a bad flag, missing data, a bad file): one clear line."""


class TrainingInterrupted(MnistCnnError):
    """SIGINT or SIGTERM stopped training after a whole batch; the run was saved to resume."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.signal_number = signal_number


def first_line(error: BaseException | str) -> str:
    """An exception (or a message) as one short line: its first line, else the exception's type."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def exit_on_error(main: Callable[..., T]) -> Callable[..., T]:
    """Turn MnistCnnError and Ctrl-C into one line on stderr and a non-zero exit, no traceback.

    Exit status 2 for the user's errors; 128 + the signal for an interrupted run (130 for
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

    return wrapper


def command_name(module: str) -> str:
    """The command as the user called it: its console script (mnist-cnn-train, ...) or
    `python -m module`."""
    script = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return script if script.startswith("mnist-cnn-") else f"python -m {module}"


class ArgumentParser(argparse.ArgumentParser):
    """argparse for the command in module, named as the user called it; a bad flag is one line
    on stderr (and exit status 2), like every other error; every command takes --debug and
    --version."""

    def __init__(self, module: str | None = None, **kwargs) -> None:
        if module is not None:
            kwargs["prog"] = command_name(module)
        super().__init__(**kwargs)
        from . import __version__  # here: the package has finished importing by now

        self.add_argument("--version", action="version", version=f"%(prog)s (mnist-cnn) {__version__}")
        self.add_argument(
            "--debug", action="store_true", default=False, help="show the traceback of an error"
        )

    def error(self, message: str) -> None:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")
