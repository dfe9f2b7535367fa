"""What a user watching a fit sees: a progress bar of generator steps, a console without Lightning's noise, and a
summary at the end (steps, best FID, where the checkpoints, images and W&B run are)."""

from __future__ import annotations

import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Optional

from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm, convert_inf
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_info

#: the losses the bar shows, from the engine's logged values (``train/<name>``), in this order
BAR_LOSSES = ("d_loss", "g_loss")


class GANProgressBar(TQDMProgressBar):
    """One bar for the whole fit, counting generator steps against ``max_generator_steps`` (a resumed fit starts at
    its step), with an ETA and the latest logged losses and FID: ``G steps: 41% 4100/10000 [03:12<04:37, 21.3it/s,
    d_loss=1.21, g_loss=0.93, fid=12.4, best_fid=11.8]``. Lightning's default bar counts the D batches of each epoch,
    which for a GAN says little. The engine uses it in place of Lightning's default; modules without a
    ``generator_step`` get Lightning's bar.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(callbacks=[GANProgressBar(refresh_rate=10)])
    """

    def _counts_generator_steps(self, pl_module: Any) -> bool:
        return getattr(pl_module, "generator_step", None) is not None

    def init_train_tqdm(self) -> Tqdm:
        module = self.trainer.lightning_module
        if not self._counts_generator_steps(module):
            return super().init_train_tqdm()
        return Tqdm(
            desc="G steps",
            total=convert_inf(getattr(module, "max_generator_steps", None)),
            initial=int(module.generator_step),  # a resumed fit starts at its step; the ETA counts this run's steps
            position=2 * self.process_position,
            disable=self.is_disabled,
            leave=True,
            dynamic_ncols=True,
            file=sys.stdout,
            smoothing=0,
            bar_format=self.BAR_FORMAT,
        )

    def on_train_epoch_start(self, trainer: Any, *args: Any) -> None:
        if not self._counts_generator_steps(trainer.lightning_module):
            super().on_train_epoch_start(trainer, *args)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not self._counts_generator_steps(pl_module):
            return super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        bar, step = self.train_progress_bar, int(pl_module.generator_step)
        if step != bar.n and self._should_update(step, bar.total):
            bar.n = step
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            bar.refresh()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if not self._counts_generator_steps(pl_module):
            super().on_train_epoch_end(trainer, pl_module)

    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        if not self._counts_generator_steps(pl_module):
            return super().get_metrics(trainer, pl_module)
        metrics = trainer.callback_metrics
        shown: dict[str, Any] = {}
        for name in BAR_LOSSES:
            if f"train/{name}" in metrics:
                shown[name] = f"{float(metrics[f'train/{name}']):.3g}"
        for name, value in metrics.items():  # the metric callbacks' values: fid, fid_classifier, best_fid, ...
            if name.startswith(("fid", "best_fid")) and getattr(value, "numel", lambda: 1)() == 1:
                shown[name] = f"{float(value):.4g}"
        return shown


class FitSummary(Callback):
    """Prints, when a fit ends (rank 0), what it did and where its results are: generator steps done, the best FID
    and its step, the checkpoint files, where the sample images went and the W&B run (with the ``wandb sync``
    command of an offline run). The engine adds it to every fit; :func:`fit_summary` gives the text."""

    def __init__(self) -> None:
        self._started = time.monotonic()

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self._started = time.monotonic()
        if trainer.is_global_zero:
            rank_zero_info(fit_header(trainer, pl_module))

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.is_global_zero:
            sys.stdout.flush()  # after the progress bar's last line
            rank_zero_info(fit_summary(trainer, pl_module, time.monotonic() - self._started))

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt) and trainer.is_global_zero:  # Ctrl-C: where it got, how to go on
            sys.stdout.flush()
            rank_zero_info(fit_summary(trainer, pl_module, time.monotonic() - self._started, interrupted=True))


def fit_header(trainer: Any, pl_module: Any) -> str:
    """One line at the start of a fit: what trains on what, how big, for how long, where (the CLI shows it instead
    of Lightning's model summary table)."""
    from lightning.pytorch.utilities.model_summary import get_human_readable_count

    def size(net: Any) -> str:
        return get_human_readable_count(sum(p.numel() for p in net.parameters())).replace(" ", "")

    data = trainer.datamodule
    shape = "x".join(map(str, getattr(data, "image_shape", None) or pl_module.image_shape or ()))
    budget = pl_module.max_generator_steps
    devices = f"{trainer.world_size} {trainer.strategy.root_device.type} process" + ("es" if trainer.world_size > 1 else "")
    return (
        f"lit-gans: {type(pl_module).__name__} on {type(data).__name__ if data is not None else 'the data'}"
        + (f" ({shape})" if shape else "")
        + f": generator {size(pl_module.generator)} parameters, discriminator {size(pl_module.discriminator)}; "
        + (f"{budget} generator steps" if budget else "no generator-step budget")
        + f", n_critic={pl_module.n_critic}; {devices}"
    )


def fit_summary(trainer: Any, pl_module: Any, seconds: Optional[float] = None, interrupted: bool = False) -> str:
    """The end-of-fit summary as text (see :class:`FitSummary`); ``interrupted``: a fit stopped by Ctrl-C, with
    the command-line option that resumes it from its last checkpoint."""
    from lit_gans.callbacks import FIDCallback, SampleGrid
    from lit_gans.callbacks.base import image_dir

    step, budget = int(pl_module.generator_step), pl_module.max_generator_steps
    took = f" in {_duration(seconds)}" if seconds is not None else ""
    ended = "was interrupted" if interrupted else "ended"
    lines = [f"lit-gans: fit {ended} at generator step {step}" + (f" of {budget}" if budget else "") + took]
    if interrupted:
        last = [c.last_model_path for c in trainer.callbacks if isinstance(c, ModelCheckpoint) and c.last_model_path]
        if last and Path(last[0]).exists():
            folder = Path(last[0]).parent
            resumes = _resume_step(folder)
            at = f": training resumes at generator step {resumes}" if resumes is not None else ""
            lines.append(f"  resume with --ckpt_path {folder} (its newest checkpoint{at})")
    for fid in (c for c in trainer.callbacks if isinstance(c, FIDCallback)):
        if fid.best_fid is not None:
            lines.append(f"  best {fid.fid_key}: {fid.best_fid:.4g} at generator step {fid.best_step}")
    for checkpoint in (c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)):
        paths = [checkpoint.best_model_path] if checkpoint.monitor else []
        paths.append(checkpoint.last_model_path)
        for path in dict.fromkeys(p for p in paths if p and Path(p).exists()):
            what = f"best {checkpoint.monitor}" if path == checkpoint.best_model_path and checkpoint.monitor else "last"
            lines.append(f"  checkpoint ({what}): {path}")
    wandb = next((logger for logger in trainer.loggers if isinstance(logger, WandbLogger)), None)
    if wandb is not None:
        lines.append("  " + _wandb_line(wandb))
    if any(isinstance(c, SampleGrid) for c in trainer.callbacks):
        shown_by = [lg for lg in trainer.loggers if isinstance(lg, (WandbLogger, TensorBoardLogger))]
        where = "in the W&B run" if wandb is not None else f"in TensorBoard ({shown_by[0].log_dir})" if shown_by else None
        lines.append(f"  sample images: {where or image_dir(trainer)}")
        gif = image_dir(trainer) / "samples_grid.gif"
        if gif.exists():
            lines.append(f"  samples over training: {gif}")
    return "\n".join(lines)


def _resume_step(folder: Path) -> Optional[int]:
    """The generator step of the checkpoint that ``--ckpt_path folder`` resumes from (the newest valid one), which
    is behind the step where the fit stopped when steps ran after the last save."""
    from lit_gans.checkpoints import load_checkpoint_file, resolve_checkpoint

    try:
        return int(load_checkpoint_file(resolve_checkpoint(folder), mmap=True)["state_dict"]["generator_steps"])
    except (FileNotFoundError, KeyError):  # no valid checkpoint there, or not a lit-gans one
        return None


def _wandb_line(logger: Any) -> str:
    run = logger.experiment
    if getattr(run, "offline", False) or getattr(getattr(run, "settings", None), "mode", None) == "offline":
        folder = Path(run.dir).parent  # <save_dir>/wandb/offline-run-<time>-<id>/files
        return f"W&B run {run.id} (offline): upload it with `wandb sync {folder}`"
    url = getattr(run, "url", None)
    return f"W&B run {run.id}: {url}" if url else f"W&B run {run.id}"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m{rest % 60:02d}s" if hours else f"{rest // 60}m{rest % 60:02d}s"


def console_callbacks(trainer: Any) -> list[Callback]:
    """What the engine adds to a fit (``configure_callbacks``, for ``fit`` only): the :class:`GANProgressBar` in place of Lightning's
    default bar (not of a bar the user chose, nor when the bar is disabled) and the :class:`FitSummary`."""
    added: list[Callback] = []
    if type(trainer.progress_bar_callback) is TQDMProgressBar:  # Lightning's default; the model's replaces it
        added.append(GANProgressBar(refresh_rate=trainer.progress_bar_callback.refresh_rate))
    if not any(isinstance(c, FitSummary) for c in trainer.callbacks):
        added.append(FitSummary())
    return added


#: Lightning console lines a GAN user does not act on
_QUIET_LINES = (
    "litlogger", "TPU available", "HPU available", "configure_callbacks` will override",
    "distributed_backend=", "Initializing distributed:",  # the header line says how many processes
)


class _DropLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(part in str(record.msg) for part in _QUIET_LINES)


def _format_warning(message: Any, category: type, filename: str, lineno: int, line: Any = None) -> str:
    """A warning as one line, ``lit-gans: warning: <message>``, without the source file and line Python's format
    adds (they name library code, not the user's); on a terminal it first clears the progress bar's line, which
    the bar redraws below it."""
    text = " ".join(str(message).split())
    kind = "" if category in (UserWarning, Warning) else f" ({category.__name__})"
    clear = "\r\x1b[K" if sys.stderr.isatty() else ""
    return f"{clear}lit-gans: warning{kind}: {text}\n"


def quiet_console() -> None:
    """Drop what a default ``lit-gans`` run printed without meaning anything to its user: Lightning's litlogger
    advertisement and TPU/HPU lines, a deprecation warning that Lightning's own ``_pytree`` module triggers in torch
    (nothing a user can change), and the warning that an epoch is shorter than ``log_every_n_steps`` (for a GAN,
    whose budget spans epochs, it is wrong: logging counts batches across epochs); other warnings print as one
    line. Idempotent."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropLines) for f in log.filters):
            log.addFilter(_DropLines())
        for handler in log.handlers:  # Lightning logs through its own handlers; records created below bypass logger filters
            if not any(isinstance(f, _DropLines) for f in handler.filters):
                handler.addFilter(_DropLines())
    warnings.formatwarning = _format_warning  # not showwarning: warnings recorded by catch_warnings stay recorded
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*is deprecated")
    # logging counts batches across epochs, so a short epoch loses no logs (the losses of the bar are logged ones)
    warnings.filterwarnings("ignore", message=r".*is smaller than the logging interval")
    # a resumed fit continues in its own run's checkpoint folder, on purpose
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


__all__ = ["FitSummary", "GANProgressBar", "console_callbacks", "fit_header", "fit_summary", "quiet_console"]
