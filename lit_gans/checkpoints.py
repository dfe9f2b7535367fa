"""Checkpoints that survive interruption: atomic writes, a ``last.ckpt`` written on a schedule, and resuming from
the newest checkpoint that loads.

Example::

    from lit_gans.checkpoints import LastCheckpoint, resolve_checkpoint
    trainer = Trainer(callbacks=[LastCheckpoint(every_n_generator_steps=500, every_n_minutes=10)])
    trainer.fit(model, datamodule, ckpt_path=resolve_checkpoint("lightning_logs/lit-gans/abc123/checkpoints"))
"""

from __future__ import annotations

import io
import os
import pickle
import re
import time
from pathlib import Path
from typing import Any, Optional, Union

import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from lit_gans.files import TEMPORARY_FILE, atomic_write_bytes
from lit_gans.validation import check_float, check_int

REQUIRED_KEYS = ("state_dict", "optimizer_states", "loops")
#: how torch names the object that its restricted unpickler (``weights_only=True``) refused to build
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")


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


class UnsafeCheckpointError(ValueError):
    """A file that only ``torch.load(weights_only=False)`` can read: unpickling it could run arbitrary code."""


def load_checkpoint_file(
    path: Union[str, os.PathLike], map_location: Any = "cpu", mmap: bool = False
) -> Any:
    """``torch.load(path, weights_only=True)``: the one way the package reads a checkpoint it did not just write.

    PyTorch's restricted unpickler builds only tensors and plain values (dicts, lists, strings, numbers), which is
    all a lit-gans or Lightning checkpoint holds; an unrestricted load (``weights_only=False``) would call whatever
    a crafted file names, so a file that needs one is refused, never loaded.

    Raises:
        UnsafeCheckpointError: ``path`` holds another object; one line naming the file and the object.
        Exception: whatever torch raises for a missing, truncated or foreign file.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        unsupported = _UNSUPPORTED_GLOBAL.search(str(err))
        if unsupported is None:  # a broken file, not a refused object
            raise
        raise UnsafeCheckpointError(
            f"{path} is refused: it refers to {unsupported[1]}, which only torch.load(weights_only=False) would "
            "call, and that can run arbitrary code (lit-gans checkpoints hold only tensors and plain values)"
        ) from None


def checkpoint_problem(path: Union[str, os.PathLike], required: tuple[str, ...] = REQUIRED_KEYS) -> Optional[str]:
    """``None`` if ``path`` is a complete Lightning checkpoint (one holding the ``required`` entries) that loads
    with :func:`load_checkpoint_file`, else what is wrong with it."""
    try:
        checkpoint = load_checkpoint_file(path, mmap=True)
    except UnsafeCheckpointError as err:
        return str(err).replace(f"{path} is refused", "refused", 1)
    except Exception as err:  # truncated zip, bad pickle, missing file
        return f"unreadable ({type(err).__name__}: {' '.join(str(err).split())[:200]})"
    if not isinstance(checkpoint, dict):
        return "not a checkpoint dictionary"
    missing = [k for k in required if k not in checkpoint]
    return f"incomplete (missing {', '.join(missing)})" if missing else None


def resolve_checkpoint(path: Union[str, os.PathLike]) -> Path:
    """The checkpoint to resume from: ``path`` itself when it is a valid checkpoint file; for a folder, or a file
    that turns out corrupt, the newest valid ``*.ckpt`` beside it (by modification time), with a warning naming
    every corrupt one skipped. Temporary files left by a run killed while saving are removed.

    Raises:
        FileNotFoundError: when ``path`` does not exist, or no valid checkpoint exists there (naming what is wrong
            with each one tried).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint file or folder at {path}")
    folder = path if path.is_dir() else path.parent
    remove_stale_temporaries(folder)
    candidates = [] if path.is_dir() else [path]
    candidates += sorted(
        (p for p in folder.glob("*.ckpt") if p != path), key=lambda p: p.stat().st_mtime, reverse=True
    )
    skipped = []
    for candidate in candidates:
        problem = checkpoint_problem(candidate)
        if problem is None:
            if skipped:
                rank_zero_warn(f"Skipping {'; '.join(skipped)}; resuming from {candidate}")
            return candidate
        skipped.append(f"checkpoint {candidate}: {problem}")
    found = f": {'; '.join(skipped)}" if skipped else " (no *.ckpt file)"
    raise FileNotFoundError(f"no valid checkpoint to resume from at {path}{found}")


def remove_stale_temporaries(folder: Union[str, os.PathLike]) -> list[Path]:
    """Delete the temporary files (``.<name>.tmp-<pid>``) that a process killed while saving left in ``folder``;
    those of a process still running on this machine are kept. Returns the removed paths."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        match = TEMPORARY_FILE.match(path.name)
        if match is None or _process_alive(int(match["pid"])):
            continue
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:  # another process cleaned it first
            pass
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt`` for resuming, written on a schedule: every ``every_n_generator_steps`` generator updates and
    every ``every_n_minutes`` minutes of training, whichever comes first (each right after a generator update), and
    when training ends; the engine also writes it when SIGTERM arrives. Always the same file, replaced atomically,
    so ``last.ckpt`` is the newest state even after a resume (never ``last-v1.ckpt``).

    Generator steps put checkpoints at the same steps in every run; the time bound keeps the work a kill can lose
    small when steps are slow (a 128x128 WGAN-GP on a CPU). Either can be ``None``.

    The folder is Lightning's (``<save_dir>/<project>/<run id>/checkpoints`` with a logger) unless ``dirpath`` is
    given; stale temporary files of an earlier killed save are removed there at the start.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(callbacks=[LastCheckpoint(every_n_generator_steps=500, every_n_minutes=10)])
    """

    def __init__(
        self,
        dirpath: Optional[Union[str, os.PathLike]] = None,
        every_n_generator_steps: Optional[int] = 500,
        every_n_minutes: Optional[float] = 10.0,
    ) -> None:
        super().__init__(dirpath=dirpath, filename=self.CHECKPOINT_NAME_LAST, save_top_k=0, enable_version_counter=False)
        self.every_n_generator_steps = check_int("every_n_generator_steps", every_n_generator_steps, optional=True)
        self.every_n_minutes = check_float("every_n_minutes", every_n_minutes, optional=True)
        self._saved_step: Optional[int] = None
        self._saved_time = time.monotonic()

    @property
    def path(self) -> str:
        """Where ``last.ckpt`` is written (known once the trainer is set up)."""
        return os.path.join(str(self.dirpath), self.CHECKPOINT_NAME_LAST + self.FILE_EXTENSION)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._saved_step, self._saved_time = _generator_step(pl_module), time.monotonic()
        if trainer.is_global_zero:
            for stale in remove_stale_temporaries(self.dirpath):
                rank_zero_info(f"lit_gans: removed {stale}, left by a run killed while saving")

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = _generator_step(pl_module)
        if step == self._saved_step or trainer.received_sigterm:  # no new generator update (or the engine saves)
            return
        due = self.every_n_generator_steps is not None and step % self.every_n_generator_steps == 0
        if self.every_n_minutes is not None:  # rank 0's clock decides: every rank must take part in the save
            late = time.monotonic() - self._saved_time >= 60 * self.every_n_minutes
            due = trainer.strategy.broadcast(due or late)
        if due:
            self.save(trainer, step)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if _generator_step(pl_module) != self._saved_step:
            self.save(trainer, _generator_step(pl_module))

    def save(self, trainer: Any, step: int) -> None:
        if self._should_skip_saving_checkpoint(trainer):
            return
        self.last_model_path = self.path  # part of the saved state
        self._save_checkpoint(trainer, self.path)
        self._saved_step, self._saved_time = step, time.monotonic()

    # Lightning's epoch-end and validation-end saves: this callback has its own schedule
    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        pass

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        pass


class BestCheckpoint(ModelCheckpoint):
    """Keeps the ``save_top_k`` checkpoints with the best ``monitor`` value (``fid`` by default, lower is better),
    checked right after each generator step at which the metric was computed: GANs often get worse after their best
    step, so the best checkpoint is the one to sample from and to evaluate. The saved weights are those the metric
    was measured on (metric callbacks run before checkpoint callbacks).

    Lightning's ``ModelCheckpoint(every_n_train_steps=1, monitor=...)`` does the same but, under manual
    optimization, warns at every save; its ``step`` counts optimizer steps of both networks. Here file names carry
    the generator step: ``best-fid-generator_step=4000.ckpt``.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(callbacks=[BestCheckpoint(monitor="fid")])
    """

    def __init__(
        self,
        monitor: str = "fid",
        mode: str = "min",
        save_top_k: int = 1,
        dirpath: Optional[Union[str, os.PathLike]] = None,
        filename: Optional[str] = None,
    ) -> None:
        if not monitor:
            raise ValueError("BestCheckpoint(monitor=...) names the logged metric to keep the best checkpoints of")
        super().__init__(
            dirpath=dirpath,
            filename=filename or f"best-{monitor}-{{generator_step}}",
            monitor=monitor,
            mode=mode,
            save_top_k=check_int("save_top_k", save_top_k),
            save_on_train_epoch_end=False,
        )
        self._seen: Any = None

    def _monitor_candidates(self, trainer: Any) -> dict[str, Any]:
        candidates = super()._monitor_candidates(trainer)
        candidates["generator_step"] = torch.tensor(_generator_step(trainer.lightning_module))
        return candidates

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or value is self._seen:  # not computed at this step (metric callbacks log new tensors)
            return
        self._seen = value
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))

    # Lightning's epoch-end and validation-end saves: the metric is computed on generator steps
    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        pass

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        pass


def _generator_step(pl_module: Any) -> int:
    return int(getattr(pl_module, "generator_step", pl_module.global_step))


__all__ = ["AtomicCheckpointIO", "BestCheckpoint", "LastCheckpoint", "UnsafeCheckpointError", "checkpoint_problem", "load_checkpoint_file", "remove_stale_temporaries", "resolve_checkpoint"]
