"""The package's one error type, and how command-line entry points report it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

T = TypeVar("T")


class MnistCnnError(Exception):
    """A problem the user can fix (a bad flag, missing data, a bad file): one clear line."""


def exit_on_error(main: Callable[..., T]) -> Callable[..., T]:
    """Turn MnistCnnError and Ctrl-C into one line on stderr and a non-zero exit, no traceback."""

    @wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except MnistCnnError as error:
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (and exit status 2), like every other error."""

    def error(self, message: str) -> None:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")
