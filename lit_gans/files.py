"""Writing files so that a crash, a kill or a full disk never leaves a partial one: the one home of
:func:`atomic_write_bytes`, used by checkpoints, caches, generated images and metric files alike."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Union

#: the temporary files of :func:`atomic_write_bytes`: ``.<name>.tmp-<pid>``
TEMPORARY_FILE = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)$")
#: what a full disk (or a quota, or a file size limit) makes a write fail with
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class WriteError(OSError):
    """Writing a file failed (a full disk, a read-only filesystem, ...): the message names the file and says that
    the file there before, if any, is unchanged (:func:`atomic_write_bytes` never leaves a partial one); a caller
    may add what else it had written (``context``)."""

    context = ""

    def __str__(self) -> str:
        hint = " (the disk is full)" if self.errno in DISK_FULL and self.errno != errno.EFBIG else ""
        text = f"cannot write {self.filename}: {self.strerror}{hint}; an earlier {Path(self.filename).name} there is unchanged"
        return f"{text}; {self.context}" if self.context else text


def check_writable(path: Union[str, os.PathLike], name: str, folder: bool = False) -> None:
    """Refuse now, in one line naming parameter ``name``, a file (or with ``folder``, a folder) that could not be
    written later: a file path that is a folder, a path below a file, a folder that refuses new files (read-only,
    permissions). Leaves nothing behind: the test file it creates in the nearest existing folder is removed.

    Raises:
        ValueError: what is wrong, naming ``name=path``.
    """
    path = Path(path)
    if not folder and path.is_dir():
        raise ValueError(f"{name}={path} is a folder: give a file path")
    if folder and path.exists() and not path.is_dir():
        raise ValueError(f"{name}={path} is a file, not a folder")
    existing = path if folder else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{name}={path} cannot be created: {existing} is a file, not a folder")
    probe = existing / f".lit-gans-write-test-{os.getpid()}"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        os.unlink(probe)
    except OSError as err:
        raise ValueError(f"{name}={path} cannot be written: {existing} refuses new files ({err.strerror})") from None


def atomic_write_bytes(path: Path, data: bytes, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file, nothing, or the complete new file:
    a temporary file in the same folder, fsync'ed, then renamed over ``path`` (atomic on POSIX and Windows).
    ``fsync=False`` skips the wait for the disk (thousands of generated images): a crash can then lose the file,
    never leave a partial one under ``path``.

    Raises:
        WriteError: the write failed (disk full, read-only, ``path`` a folder, ...), naming ``path``; the temporary
            file is removed and what was at ``path`` before is unchanged.
    """
    atomic_write(path, lambda f: f.write(data), fsync)


def atomic_write(path: Path, write: Callable[[BinaryIO], Any], fsync: bool = True) -> None:
    """:func:`atomic_write_bytes` for a file that ``write(file)`` writes itself (``torch.save(obj, file)``), with
    no copy of its bytes in memory."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise WriteError(err.errno, err.strerror or str(err), str(path)) from err
    finally:
        if tmp.exists():
            tmp.unlink()


def permissions_as_created(path: Union[str, os.PathLike]) -> None:
    """Give ``path`` and, for a folder, everything under it the permissions a plain ``open`` or ``mkdir`` would
    have (0o666 or 0o777 less the umask): ``tempfile.mkdtemp`` and safetensors make theirs owner-only, which other
    accounts (the nodes' service account, a colleague) cannot read on a shared filesystem."""
    umask = os.umask(0)
    os.umask(umask)
    path = Path(path)
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.chmod(item, (0o777 if item.is_dir() else 0o666) & ~umask)


__all__ = [
    "DISK_FULL", "TEMPORARY_FILE", "WriteError", "atomic_write", "atomic_write_bytes", "check_writable",
    "permissions_as_created",
]  # fmt: skip
