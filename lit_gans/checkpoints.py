"""Checkpoints that survive interruption: atomic writes, a ``last.ckpt`` written on a schedule, resuming from the
newest checkpoint that loads, the best checkpoint kept by a metric; and which file of a run's folder each command
takes (:func:`resolve_checkpoint` to resume, :func:`checkpoint_to_sample` to sample and evaluate).

Example::

    from lit_gans.checkpoints import LastCheckpoint, resolve_checkpoint
    trainer = Trainer(callbacks=[LastCheckpoint(every_n_generator_steps=500, every_n_minutes=10)])
    trainer.fit(model, datamodule, ckpt_path=resolve_checkpoint("lightning_logs/lit-gans/abc123/checkpoints"))
"""

from __future__ import annotations

import errno
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

try:
    import fcntl
except ImportError:  # Windows: folders are not locked
    fcntl = None  # type: ignore[assignment]

from lit_gans.files import TEMPORARY_FILE, atomic_write_bytes
from lit_gans.validation import check_float, check_int

REQUIRED_KEYS = ("state_dict", "optimizer_states", "loops")
#: the config a fit saved in its run folder, beside ``checkpoints/`` (:class:`lit_gans.fit_cli.RunConfig`)
RUN_CONFIG = "config.yaml"
#: how torch names the object that its restricted unpickler (``weights_only=True``) refused to build
#: what a metric's name may not put into a file name: ``conditional/accuracy`` -> ``best-conditional_accuracy-...``
FILE_UNSAFE = re.compile(r"[^\w.-]+")  # \w is Unicode-aware: the calligraphy classes' characters are kept
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


def newest_first(folder: Union[str, os.PathLike]) -> list[Path]:
    """The ``*.ckpt`` files of ``folder``, newest (by modification time) first."""
    return sorted(Path(folder).glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)


def checkpoint_folder(folder: Union[str, os.PathLike]) -> Path:
    """The folder of checkpoints that ``folder`` means: a run folder (``<save_dir>/<project>/<run id>``) holding no
    ``*.ckpt`` of its own means its ``checkpoints/``; any other folder itself."""
    folder = Path(folder)
    inner = folder / "checkpoints"
    return inner if inner.is_dir() and not any(folder.glob("*.ckpt")) else folder


def find_run_config(ckpt_path: Union[str, os.PathLike]) -> Optional[Path]:
    """The config a checkpoint's fit saved in its run folder (:data:`RUN_CONFIG`), for a checkpoint file, its
    ``checkpoints/`` folder or the run folder; ``None`` when there is none (a run trained before fits saved one)."""
    path = Path(ckpt_path)
    folder = path if path.is_dir() else path.parent
    for candidate in (folder, folder.parent):
        if (candidate / RUN_CONFIG).is_file() and (candidate / "checkpoints").is_dir():
            return candidate / RUN_CONFIG
    return None


def resolve_checkpoint(path: Union[str, os.PathLike]) -> Path:
    """The checkpoint to resume from: ``path`` itself when it is a valid checkpoint file; for a folder (a run folder
    means its ``checkpoints/``), or a file that turns out corrupt, the newest valid ``*.ckpt`` beside it (by
    modification time), with a warning naming every corrupt one skipped. Temporary files left by a run killed while
    saving are removed.

    Raises:
        FileNotFoundError: when ``path`` does not exist, or no valid checkpoint exists there (naming what is wrong
            with each one tried).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint file or folder at {path}")
    folder = checkpoint_folder(path) if path.is_dir() else path.parent
    remove_stale_temporaries(folder)
    candidates = [] if path.is_dir() else [path]
    candidates += [p for p in newest_first(folder) if p != path]
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


def checkpoint_to_sample(folder: Union[str, os.PathLike]) -> Path:
    """The checkpoint of a run's folder (or of its ``checkpoints/``) to sample from or evaluate: the best by its
    metric among those a :class:`BestCheckpoint` (or any monitoring ``ModelCheckpoint``) saved, by the metric's
    ``mode`` (the lowest FID, the highest accuracy; the newer of equal ones); else the newest ``best-*.ckpt`` that
    records no metric, else the newest other ``*.ckpt`` (``last.ckpt``). Files that do not load are skipped (weights only: no optimizer state needed). A folder holding the best checkpoints of
    several metrics is ranked by the metric of its newest one.

    Raises:
        FileNotFoundError: no loadable checkpoint in ``folder``.
    """
    scored, unscored = [], []
    for path in newest_first(checkpoint_folder(folder)):
        try:
            checkpoint = load_checkpoint_file(path, mmap=True)
        except Exception:  # unreadable, or refused (UnsafeCheckpointError)
            continue
        if isinstance(checkpoint, dict) and "state_dict" in checkpoint:
            score = saved_score(checkpoint, path.name)
            (unscored if score is None else scored).append((path, score))
    if scored:
        monitor = scored[0][1][0]  # that of the newest scored file
        ranked = [(path, value) for path, (name, mode, value) in scored if name == monitor]
        sign = -1.0 if scored[0][1][1] == "max" else 1.0
        return min(ranked, key=lambda item: sign * item[1])[0]  # min keeps the first (newest) of equal values
    if unscored:  # sorted() keeps newest first within each group
        return sorted(unscored, key=lambda item: not item[0].name.startswith("best-"))[0][0]
    raise FileNotFoundError(f"ckpt_path={folder}: no loadable *.ckpt file in this folder")


#: the mode in a ``ModelCheckpoint``'s state key, for checkpoints whose state does not store it
_STATE_KEY_MODE = re.compile(r"'mode': '(min|max)'")


def saved_score(checkpoint: dict[str, Any], file_name: str) -> Optional[tuple[str, str, float]]:
    """``(monitor, mode, value)``: the metric value for which a checkpoint callback saved the checkpoint
    ``file_name``, as its state in the file records (the callback adds the file to its ``best_k_models`` before
    saving it); ``None`` for a file saved without a metric (``last.ckpt``)."""
    for key, state in (checkpoint.get("callbacks") or {}).items():
        if not isinstance(state, dict) or not state.get("monitor") or not isinstance(state.get("best_k_models"), dict):
            continue
        for saved_path, value in state["best_k_models"].items():
            if Path(str(saved_path)).name == file_name and value is not None:
                mode = state.get("mode") or (_STATE_KEY_MODE.search(str(key)) or [None, "min"])[1]
                return str(state["monitor"]), mode, float(value)
    return None


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


#: the lock file of a checkpoint folder, held (``fcntl.flock``) by the fit that writes there, with its pid in it
LOCK_FILE = ".lit-gans.lock"
#: the folders this process holds: real path -> [file descriptor, holders, lock file]
_held_locks: dict[str, list[Any]] = {}


def lock_checkpoint_folder(folder: Union[str, os.PathLike]) -> None:
    """Hold ``folder`` for this process until :func:`release_checkpoint_folder` or the process's end, so that no
    second fit writes its checkpoints there at the same time (re-entrant: the callbacks of one fit share the lock).
    The operating system drops the lock of a process that dies, SIGKILL included: a stale lock file stops nothing.

    Raises:
        ValueError: another process holds the folder; one line with its pid.
    """
    folder = Path(folder)
    key = os.path.realpath(folder)
    if key in _held_locks:
        _held_locks[key][1] += 1
        return
    if fcntl is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if err.errno not in (errno.EAGAIN, errno.EACCES):  # a filesystem without locks: say so, go on
                rank_zero_warn(f"lit-gans: cannot lock {path} ({err.strerror}); nothing stops a second fit writing there")
                return
            raise ValueError(
                f"checkpoint folder {folder} is in use by another fit (pid {holder}): wait for it to end or stop it, "
                "or train into another folder"
            ) from None
        try:  # the holder may have released and removed the file between our open and lock: lock the new one
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held_locks[key] = [fd, 1, path]


def release_checkpoint_folder(folder: Union[str, os.PathLike]) -> None:
    """Give back this process's hold of ``folder`` (:func:`lock_checkpoint_folder`); the last holder removes the lock
    file."""
    key = os.path.realpath(folder)
    entry = _held_locks.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] > 0:
        return
    del _held_locks[key]
    fd, _, path = entry
    try:
        path.unlink()  # while still locked: a process waiting on the old file sees it gone and retries
    except FileNotFoundError:
        pass
    os.close(fd)


class _LocksFolder(ModelCheckpoint):
    """A checkpoint callback that holds its folder during a fit (:func:`lock_checkpoint_folder`): a second fit into
    the same folder (``fit --ckpt_path`` of a run that is still training) stops at setup, before writing anything."""

    _locked_folder: Optional[str] = None

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit" or self._locked_folder is not None:
            return
        problem = None
        if trainer.is_global_zero:  # the other ranks write nothing; all of them stop with rank 0's message
            try:
                lock_checkpoint_folder(self.dirpath)
                self._locked_folder = str(self.dirpath)
            except ValueError as err:
                problem = str(err)
        problem = trainer.strategy.broadcast(problem)
        if problem:
            raise ValueError(problem)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._release()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        super().on_exception(trainer, pl_module, exception)
        self._release()

    def _release(self) -> None:
        if self._locked_folder is not None:
            release_checkpoint_folder(self._locked_folder)
            self._locked_folder = None


class LastCheckpoint(_LocksFolder):
    """``last.ckpt`` for resuming, written on a schedule: every ``every_n_generator_steps`` generator updates and
    every ``every_n_minutes`` minutes of training, whichever comes first (each right after a generator update), and
    when training ends; the engine also writes it when SIGTERM arrives. Always the same file, replaced atomically,
    so ``last.ckpt`` is the newest state even after a resume (never ``last-v1.ckpt``).

    Generator steps put checkpoints at the same steps in every run; the time bound keeps the work a kill can lose
    small when steps are slow (a 128x128 WGAN-GP on a CPU). Either can be ``None``.

    The folder is Lightning's (``<save_dir>/<project>/<run id>/checkpoints`` with a logger) unless ``dirpath`` is
    given; stale temporary files of an earlier killed save are removed there at the start. The fit holds the folder
    (a lock file, :data:`LOCK_FILE`, with its pid): a second fit into it at the same time is refused.

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
                rank_zero_info(f"lit-gans: removed {stale}, left by a run killed while saving")

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
        if self._should_skip_saving_checkpoint(trainer) or not _guard_allows(trainer, self.path):
            return
        self.last_model_path = self.path  # part of the saved state
        self._save_checkpoint(trainer, self.path)
        self._saved_step, self._saved_time = step, time.monotonic()

    # Lightning's epoch-end and validation-end saves: this callback has its own schedule
    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        pass

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        pass


class BestCheckpoint(_LocksFolder):
    """Keeps the ``save_top_k`` checkpoints with the best ``monitor`` value (``fid`` by default, lower is better),
    checked right where the metric was computed (after a generator step, at an epoch's end, or when training ends):
    GANs often get worse after their best step, so the best checkpoint is the one to sample from and to evaluate.
    The saved weights are those the metric was measured on (in each hook, Lightning runs metric callbacks before
    checkpoint callbacks).

    Lightning's ``ModelCheckpoint(every_n_train_steps=1, monitor=...)`` does the same but, under manual
    optimization, warns at every save; its ``step`` counts optimizer steps of both networks. Here file names carry
    the generator step: ``best-fid-generator_step=4000.ckpt`` (characters of the metric's name that do not belong
    in a file name become ``_``: ``best-conditional_accuracy-generator_step=4000.ckpt``).
    :func:`checkpoint_to_sample` picks the best of them by the value and ``mode`` each file records.

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
            filename=filename or f"best-{FILE_UNSAFE.sub('_', monitor)}-{{generator_step}}",
            monitor=monitor,
            mode=mode,
            save_top_k=check_int("save_top_k", save_top_k),
            save_on_train_epoch_end=False,
        )
        self._seen: Any = None

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "mode": self.mode}  # how checkpoint_to_sample ranks the saved files

    def _monitor_candidates(self, trainer: Any) -> dict[str, Any]:
        candidates = super()._monitor_candidates(trainer)
        candidates["generator_step"] = torch.tensor(_generator_step(trainer.lightning_module))
        return candidates

    # The metric may be computed after a batch (every_n_generator_steps), at an epoch's end (every_n_epochs) or when
    # training ends (at_train_end): the check follows each, in the same hook, before the next optimizer step.
    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._save_if_measured(trainer)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._save_if_measured(trainer)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._save_if_measured(trainer)
        if self._seen is None and not self.best_k_models and not trainer.fast_dev_run:
            rank_zero_warn(
                f"BestCheckpoint(monitor={self.monitor!r}): nothing logged {self.monitor} in this fit, so no best "
                f"checkpoint was saved (its callback off, as with --fid=null? then pass --best_checkpoint=null too, or "
                f"--best_checkpoint.monitor=ANOTHER_METRIC)"
            )

    def _save_if_measured(self, trainer: Any) -> None:
        """Offer the current weights to the top ``save_top_k`` when the metric was computed since the last check:
        metric callbacks log a new tensor each time, and run before checkpoint callbacks in every hook."""
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or value is self._seen:
            return
        self._seen = value
        if not self._should_skip_saving_checkpoint(trainer) and _guard_allows(trainer, f"a best-{self.monitor} checkpoint"):
            self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))

    # Lightning's validation-end save: a GAN fit has no validation loop
    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        pass


def _guard_allows(trainer: Any, what: str) -> bool:
    """False while the model's divergence guard rejects its state (it says so): a rollback never lands there."""
    allowed = getattr(trainer.lightning_module, "checkpoint_allowed", None)
    return allowed is None or allowed(what)


def _generator_step(pl_module: Any) -> int:
    return int(getattr(pl_module, "generator_step", pl_module.global_step))


__all__ = ["AtomicCheckpointIO", "BestCheckpoint", "LastCheckpoint", "FILE_UNSAFE", "LOCK_FILE", "UnsafeCheckpointError", "checkpoint_problem", "checkpoint_to_sample",
           "load_checkpoint_file", "lock_checkpoint_folder", "newest_first", "release_checkpoint_folder",
           "remove_stale_temporaries", "resolve_checkpoint", "saved_score"]
