"""Checkpoints that survive interruption: atomic writes, and resuming from the newest checkpoint that loads.

Example::

    from lit_gans.checkpoints import resolve_checkpoint
    trainer.fit(model, datamodule, ckpt_path=resolve_checkpoint("lightning_logs/lit-gans/abc123/checkpoints"))
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Optional, Union

import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_warn

from lit_gans.datamodules.preprocessing import atomic_write_bytes

REQUIRED_KEYS = ("state_dict", "optimizer_states", "loops")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO``, but a checkpoint on local disk is written to a temporary file in the same
    folder, fsync'ed and renamed over the target: a run killed mid-save (SIGKILL included) leaves the previous
    checkpoint intact, never a truncated one. The GAN engine installs it automatically."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Union[str, os.PathLike], storage_options: Optional[Any] = None) -> None:
        if storage_options is not None or get_filesystem(path).protocol not in ("file", ("file", "local")):
            return super().save_checkpoint(checkpoint, path, storage_options)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(Path(path), buffer.getvalue())


def checkpoint_problem(path: Union[str, os.PathLike]) -> Optional[str]:
    """``None`` if ``path`` is a complete Lightning checkpoint, else what is wrong with it."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # truncated zip, bad pickle, missing file
        return f"unreadable ({type(err).__name__}: {err})"
    if not isinstance(checkpoint, dict):
        return "not a checkpoint dictionary"
    missing = [k for k in REQUIRED_KEYS if k not in checkpoint]
    return f"incomplete (missing {', '.join(missing)})" if missing else None


def resolve_checkpoint(path: Union[str, os.PathLike]) -> Path:
    """The checkpoint to resume from: ``path`` itself when it is a valid checkpoint file; for a folder, or a file
    that turns out corrupt, the newest valid ``*.ckpt`` beside it (by modification time), with a warning for
    every corrupt one skipped.

    Raises:
        FileNotFoundError: when no valid checkpoint exists there.
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    candidates = [] if path.is_dir() else [path]
    candidates += sorted(
        (p for p in folder.glob("*.ckpt") if p != path), key=lambda p: p.stat().st_mtime, reverse=True
    )
    for candidate in candidates:
        problem = checkpoint_problem(candidate)
        if problem is None:
            return candidate
        rank_zero_warn(f"Skipping checkpoint {candidate}: {problem}; falling back to an older one")
    raise FileNotFoundError(f"no valid checkpoint to resume from at {path}")


__all__ = ["AtomicCheckpointIO", "checkpoint_problem", "resolve_checkpoint"]
