"""Writing files so that a crash, a kill or a full disk never leaves a partial one: the one home of
:func:`atomic_write_bytes`, used by checkpoints, caches, generated images and metric files alike."""

from __future__ import annotations

import os
import re
from pathlib import Path

#: the temporary files of :func:`atomic_write_bytes`: ``.<name>.tmp-<pid>``
TEMPORARY_FILE = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)$")


def atomic_write_bytes(path: Path, data: bytes, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file, nothing, or the complete new file:
    a temporary file in the same folder, fsync'ed, then renamed over ``path`` (atomic on POSIX and Windows).
    ``fsync=False`` skips the wait for the disk (thousands of generated images): a crash can then lose the file,
    never leave a partial one under ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


__all__ = ["TEMPORARY_FILE", "atomic_write_bytes"]
