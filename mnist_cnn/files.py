"""Files written whole: a crash or a second writer never leaves half of one."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .errors import MnistCnnError, first_line


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write data to path through a temporary file in the same folder and a rename, so that a
    crash mid-write leaves the previous file whole. The file gets the permissions the user's
    umask gives (as open() would); a folder that cannot be written is an MnistCnnError."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # os.open applies the umask to 0o666; tempfile.mkstemp would make every file 0600.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as error:
        raise MnistCnnError(f"cannot write {path}: {error.strerror or first_line(error)}") from None
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise MnistCnnError(f"cannot write {path}: {error.strerror or first_line(error)}") from None
        raise
