"""A Weights & Biases logger that works on a fresh machine: offline unless an API key is configured."""

from __future__ import annotations

import netrc
import os
import shutil
from pathlib import Path
from typing import Any, Optional, Union
from urllib.parse import urlsplit

from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from lit_gans.checkpoints import load_checkpoint_file
from lit_gans.preemption import running_as_command

WANDB_RUN_KEY = "lit_gans_wandb_run"


def wandb_api_key_configured() -> bool:
    """Whether W&B could authenticate without asking: ``WANDB_API_KEY`` or a ``.netrc`` entry (``wandb login``)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlsplit(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).netloc
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return netrc.netrc(str(path)).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


class WandbLogger(_LightningWandbLogger):
    """Lightning's ``WandbLogger`` that never prompts for a login.

    With ``offline=None`` (the default) the run is online when an API key is configured (``wandb login`` or
    ``WANDB_API_KEY``) and offline otherwise; an explicit ``WANDB_MODE`` in the environment always wins. Offline
    runs are written under ``save_dir/wandb/offline-run-*``; upload them later with ``wandb sync <that folder>``.
    Offline mode is passed to ``wandb.init(mode="offline")`` rather than through Lightning's ``offline=True``,
    which sets a process-global environment variable. A fit that fails before it logged a value (at setup: a
    missing weights file, unusable data, a batch larger than the data) leaves no offline run behind: its folder,
    and its empty checkpoint folder, are removed, without a ``wandb sync`` hint for a run that trained nothing.

    Args:
        name: display name of the run.
        save_dir: where W&B files and checkpoints (``save_dir/<project>/<run id>/checkpoints``) go.
        project: W&B project.
        offline: ``True``/``False`` to force a mode, ``None`` to decide as above.
        log_model: upload checkpoints as artifacts (online runs).
        **kwargs: passed to Lightning's ``WandbLogger`` and on to ``wandb.init``.
    """

    def __init__(
        self,
        name: Optional[str] = None,
        save_dir: str = "lightning_logs",
        project: str = "lit-gans",
        offline: Optional[bool] = None,
        log_model: bool = False,
        **kwargs: Any,
    ) -> None:
        if offline is None and kwargs.get("mode") is None:
            if "WANDB_MODE" in os.environ:  # read now: W&B's settings of this process may predate it
                offline = os.environ["WANDB_MODE"] == "offline"
                kwargs["mode"] = os.environ["WANDB_MODE"]
            else:
                offline = not wandb_api_key_configured()
                if offline:
                    rank_zero_info("lit-gans: no W&B API key configured, logging offline (the fit's summary says how to upload)")
        if offline:
            kwargs["mode"] = "offline"
            log_model = False  # nothing can be uploaded offline; Lightning would raise
        # LightningCLI passes every wandb.init argument, unset ones as None; a None would override Lightning's own
        # choices (resume="allow", which lets a resumed fit continue its run) with wandb.init's defaults
        kwargs = {key: value for key, value in kwargs.items() if value is not None}
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        super().__init__(name=name, save_dir=save_dir, project=project, log_model=log_model, **kwargs)
        if self._wandb_init.get("anonymous") is None:  # wandb >= 0.19 warns on any explicit value, None included
            self._wandb_init.pop("anonymous", None)
        self._wrote = False  # whether the fit logged a value (hyperparameters alone are logged before the data loads)

    def log_metrics(self, metrics: Any, step: Optional[int] = None) -> None:
        self._wrote = True
        super().log_metrics(metrics, step)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        super().finalize(status)
        if status == "failed" and not self._wrote and self._experiment is not None:
            discard_offline_run(self._experiment, Path(self.save_dir or "."))
        elif running_as_command() and self._experiment is not None and getattr(self._experiment._settings, "_offline", False):
            # the command ends with the fit: finish the run now, without W&B's `wandb sync` hint, since the fit's
            # summary printed the right command (`wandb sync --append` for a resumed piece)
            self._experiment._settings.quiet = True
            self._experiment.finish(exit_code=1 if status == "failed" else 0)


def discard_offline_run(run: Any, save_dir: Path) -> None:
    """Finish an offline W&B run without its ``wandb sync`` hint and delete its folder, the links W&B made to it,
    and ``<save_dir>/<project>/<run id>``, ``<save_dir>/<project>`` and ``<save_dir>/wandb`` where they hold no
    file: for a fit that failed before logging anything. An online run is only finished, as failed (it exists on
    the server)."""
    settings = run._settings  # what finish() prints from
    offline = bool(getattr(settings, "_offline", False))
    folder, project, run_id = Path(settings.sync_dir), str(run.project), str(run.id)
    if offline:
        settings.quiet = True
    run.finish(exit_code=1)
    if not offline:
        return
    for link in (p for p in folder.parent.iterdir() if p.is_symlink()):  # latest-run, debug.log, debug-internal.log
        if Path(os.path.realpath(link)).is_relative_to(os.path.realpath(folder)):
            link.unlink()
    shutil.rmtree(folder, ignore_errors=True)
    for empty in (save_dir / project / run_id, save_dir / project, folder.parent):
        if empty.is_dir() and not any(p.is_file() or p.is_symlink() for p in empty.rglob("*")):
            shutil.rmtree(empty, ignore_errors=True)


def wandb_run_of(trainer: Any) -> Optional[dict[str, str]]:
    """``{"id", "project"}`` of the W&B run the trainer's first ``WandbLogger`` writes to (``None`` without one, or
    before its run exists). The engine stores it in every checkpoint so that a resumed fit continues that run."""
    for logger in trainer.loggers:
        if isinstance(logger, _LightningWandbLogger) and logger.version:
            return {"id": str(logger.version), "project": str(logger.name)}
    return None


def wandb_run_in_checkpoint(path: Union[str, os.PathLike]) -> Optional[dict[str, str]]:
    """The W&B run a checkpoint's training logged to, ``{"id", "project"}``, or ``None``.

    Example::

        run = wandb_run_in_checkpoint("lightning_logs/lit-gans/ab12cd34/checkpoints/last.ckpt")
        logger = WandbLogger(project=run["project"], version=run["id"])  # the resumed fit continues that run

    Raises:
        UnsafeCheckpointError: a file that only an unrestricted load, which can run code, would read
            (:func:`~lit_gans.checkpoints.load_checkpoint_file`).
    """
    # memory-mapped: only the small dictionary is read, not the weights (the resume loads them anyway)
    checkpoint = load_checkpoint_file(path, mmap=True)
    return checkpoint.get(WANDB_RUN_KEY) if isinstance(checkpoint, dict) else None
