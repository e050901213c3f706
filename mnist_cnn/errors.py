"""The package's one error type: a problem the user can fix, said in one line.

Functions raise `MnistCnnError`; the command-line entry points turn it into that line on stderr
and exit status 2 (see cli.exit_on_error), and the server into a documented 4xx answer.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


class MnistCnnError(Exception):
    """A problem the user can fix (a bad flag, missing data, a bad file): one clear line."""


class TrainingDiverged(MnistCnnError):
    """The training loss stopped being a finite number: the learning rate was too high."""


class TrainingInterrupted(MnistCnnError):
    """SIGINT or SIGTERM stopped training after a whole batch; the run was saved to resume."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.signal_number = signal_number


def first_line(error: BaseException | str) -> str:
    """An exception (or a message) as one short line: its first line, else the exception's type."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def moved(module: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module's __getattr__ that finds the names which moved to other modules of the package
    (name -> its new module, relative: ".cli"), so that imports written before the move work."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(names[name], __package__), name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__


# Moved to cli.py, with everything else the commands share.
__getattr__ = moved(__name__, dict.fromkeys(["ArgumentParser", "exit_on_error", "command_name"], ".cli"))
