"""What a user watching a fit sees: a progress bar of generator steps with the losses and the latest quality
metrics, a console without Lightning's noise, warnings and messages on lines of their own, and a summary at the
end (steps, the latest and best metrics, where the checkpoints, images and W&B run are, how to resume).

The ``lit-gans`` command and a Python ``Trainer(...).fit`` of a GAN look the same: importing the engine drops
Lightning's lines that ask nothing of a GAN user (:func:`quiet_lightning`), and the engine's callbacks
(:func:`console_callbacks`) put the bar, the one-line header and the summary in place of Lightning's default bar
and model-summary table, and print warnings as one line during the fit.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint, ModelSummary, RichModelSummary, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm, convert_inf
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_info

from lit_gans.loggers import wandb_run_in_checkpoint
from lit_gans.preemption import FitInterrupted, running_as_command

#: the losses the bar shows, from the engine's logged values (``train/<name>``), in this order
BAR_LOSSES = ("d_loss", "g_loss")
#: how a monitoring callback's accuracy of generated images ends: ``<metric_name>/accuracy`` (ConditionalAccuracy's
#: ``conditional/accuracy``, a calligraphy run's ``legibility/accuracy``, ClassificationAccuracyScore's ``cas/...``)
ACCURACY_SUFFIX = "/accuracy"


def quality_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numbers that say whether training works, among a fit's logged values (``trainer.callback_metrics``):
    every FID the callbacks computed (``fid``, ``best_fid``, ``fid_classifier``, ...), then every accuracy of
    generated images (``<metric_name>/accuracy``), as floats."""
    fids, accuracies = {}, {}
    for name, value in metrics.items():
        if getattr(value, "numel", lambda: 1)() != 1:
            continue
        if name.startswith(("fid", "best_fid")):
            fids[name] = float(value)
        elif name.endswith(ACCURACY_SUFFIX) and not name.startswith("train/"):
            accuracies[name] = float(value)
    return {**fids, **accuracies}


class _BarTqdm(Tqdm):
    """Lightning's ``Tqdm`` that knows whether its line is open (drawn, and not ended since), so that a line printed
    between two of its updates starts on a line of its own (:func:`end_bar_lines`)."""

    line_open = False

    def display(self, *args: Any, **kwargs: Any) -> Any:
        self.line_open = True
        return super().display(*args, **kwargs)


def end_bar_lines() -> None:
    """Let the next console line start on a line of its own, not inside a progress bar's line: on a terminal, clear
    every live bar's line (the bar draws itself again at its next update, below); in a file or pipe, where a bar's
    updates follow each other on one line, end the open line of the engine's bar."""
    for bar in list(getattr(Tqdm, "_instances", ())):
        if getattr(bar, "disable", True):
            continue
        try:
            if bar.fp.isatty():
                bar.clear()
            elif getattr(bar, "line_open", False):
                bar.fp.write("\n")
                bar.fp.flush()
        except (AttributeError, ValueError, OSError):  # a closed stream
            continue
        bar.line_open = False


class GANProgressBar(TQDMProgressBar):
    """One bar for the whole fit, counting generator steps against ``max_generator_steps`` (a resumed fit starts at
    its step), with an ETA, the latest logged losses and the latest quality metrics (:func:`quality_metrics`; an
    accuracy ``<name>/accuracy`` shows as ``<name>_acc``): ``G steps: 41% 4100/10000 [03:12<04:37, 21.3it/s,
    d_loss=1.21, g_loss=0.93, fid=12.4, best_fid=11.8, legibility_acc=0.91]``. Lightning's default bar counts the
    D batches of each epoch, which for a GAN says little. The engine uses it in place of Lightning's default;
    modules without a ``generator_step`` get Lightning's bar.

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
        return _BarTqdm(
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
        for name, value in quality_metrics(metrics).items():  # the metric callbacks' latest values
            short = name[: -len(ACCURACY_SUFFIX)] + "_acc" if name.endswith(ACCURACY_SUFFIX) else name
            shown[short] = f"{value:.4g}"
        return shown


class FitSummary(Callback):
    """Prints, when a fit starts, what trains (:func:`fit_header`), and when it ends (rank 0), what it did and where
    its results are (:func:`fit_summary`), after Ctrl-C too, with how to resume. During the fit, warnings print as
    one line of their own (:func:`quiet_console`'s format). The engine adds it to every fit."""

    def __init__(self) -> None:
        self._started = time.monotonic()
        self._formatwarning: Any = None

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if warnings.formatwarning is not _format_warning:  # a Python fit: as the command's, until the fit ends
            self._formatwarning, warnings.formatwarning = warnings.formatwarning, _format_warning

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._restore_warning_format()

    def _restore_warning_format(self) -> None:
        if self._formatwarning is not None:
            warnings.formatwarning, self._formatwarning = self._formatwarning, None

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self._started = time.monotonic()
        if trainer.is_global_zero:
            rank_zero_info(fit_header(trainer, pl_module))

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.is_global_zero:
            sys.stdout.flush()  # after the progress bar's last line
            rank_zero_info(fit_summary(trainer, pl_module, time.monotonic() - self._started))

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        # Ctrl-C (the engine's FitInterrupted, or a KeyboardInterrupt where a program handles SIGINT itself): where
        # it got, how to go on
        if isinstance(exception, (KeyboardInterrupt, FitInterrupted)) and trainer.is_global_zero:
            sys.stdout.flush()
            rank_zero_info(fit_summary(trainer, pl_module, time.monotonic() - self._started, interrupted=True))
        self._restore_warning_format()


def fit_header(trainer: Any, pl_module: Any) -> str:
    """One line at the start of a fit: what trains on what, how big, for how long, where (the engine shows it instead
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
    how to resume it from its newest checkpoint (the command's ``--ckpt_path``, or ``trainer.fit``'s in Python)."""
    from lit_gans.callbacks import FIDCallback, SampleGrid
    from lit_gans.callbacks.base import image_dir

    step, budget = int(pl_module.generator_step), pl_module.max_generator_steps
    took = f" in {_duration(seconds)}" if seconds is not None else ""
    ended = "was interrupted" if interrupted else "ended"
    lines = [f"lit-gans: fit {ended} at generator step {step}" + (f" of {budget}" if budget else "") + took]
    if interrupted:
        lines += _resume_lines(trainer)
    latest = {name: value for name, value in quality_metrics(trainer.callback_metrics).items() if not name.startswith("best_")}
    if latest:
        lines.append("  latest metrics: " + ", ".join(f"{name} {value:.4g}" for name, value in latest.items()))
    for fid in (c for c in trainer.callbacks if isinstance(c, FIDCallback)):
        if fid.best_fid is not None:
            lines.append(f"  best {fid.fid_key}: {fid.best_fid:.4g} at generator step {fid.best_step}")
    for checkpoint in (c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)):
        # a ModelCheckpoint without a metric (Lightning's default one) keeps its newest file as its "best"
        paths = [checkpoint.best_model_path, checkpoint.last_model_path]
        for path in dict.fromkeys(p for p in paths if p and Path(p).exists()):
            what = f"best {checkpoint.monitor}" if path == checkpoint.best_model_path and checkpoint.monitor else "last"
            lines.append(f"  checkpoint ({what}): {path}")
    wandb = next((logger for logger in trainer.loggers if isinstance(logger, WandbLogger)), None)
    if wandb is not None:
        lines.append("  " + _wandb_line(wandb, trainer.ckpt_path))
    if any(isinstance(c, SampleGrid) for c in trainer.callbacks):
        shown_by = [lg for lg in trainer.loggers if isinstance(lg, (WandbLogger, TensorBoardLogger))]
        where = "in the W&B run" if wandb is not None else f"in TensorBoard ({shown_by[0].log_dir})" if shown_by else None
        lines.append(f"  sample images: {where or image_dir(trainer)}")
        gif = image_dir(trainer) / "samples_grid.gif"
        if gif.exists():
            lines.append(f"  samples over training: {gif}")
    return "\n".join(lines)


def _resume_lines(trainer: Any) -> list[str]:
    """How to resume an interrupted fit from the newest valid checkpoint of its checkpoint folder (where the engine
    saves at Ctrl-C), with the generator step it resumes at, which is behind the step where the fit stopped when
    steps ran after the last save; none without a checkpoint."""
    from lit_gans.checkpoints import load_checkpoint_file, resolve_checkpoint
    from lit_gans.trainer_plumbing import preemption_checkpoint_path

    folder = Path(preemption_checkpoint_path(trainer)).parent
    try:
        newest = resolve_checkpoint(folder)
    except FileNotFoundError:  # nothing saved yet
        return []
    try:
        at = f"training resumes at generator step {int(load_checkpoint_file(newest, mmap=True)['state_dict']['generator_steps'])}"
    except KeyError:  # not a lit-gans checkpoint
        at = None
    if running_as_command():
        return [f"  resume with --ckpt_path {folder} (its newest checkpoint" + (f": {at})" if at else ")")]
    return [f'  resume with trainer.fit(model, datamodule, ckpt_path="{newest}")' + (f" ({at})" if at else "")]


def _wandb_line(logger: Any, ckpt_path: Optional[str] = None) -> str:
    """The run's address, or for an offline run the command that uploads it: ``wandb sync --append`` for the piece
    a resumed fit wrote into its checkpoint's run (each offline piece is its own folder; a plain ``wandb sync``
    would not add it to the run)."""
    run = logger.experiment
    if getattr(run, "offline", False) or getattr(getattr(run, "settings", None), "mode", None) == "offline":
        folder = Path(run.dir).parent  # <save_dir>/wandb/offline-run-<time>-<id>/files
        append = ckpt_path is not None and (wandb_run_in_checkpoint(ckpt_path) or {}).get("id") == run.id
        command = f"wandb sync --append {folder}" if append else f"wandb sync {folder}"
        return f"W&B run {run.id} (offline{', resumed' if append else ''}): upload it with `{command}`"
    url = getattr(run, "url", None)
    return f"W&B run {run.id}: {url}" if url else f"W&B run {run.id}"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m{rest % 60:02d}s" if hours else f"{rest // 60}m{rest % 60:02d}s"


def console_callbacks(trainer: Any) -> list[Callback]:
    """What the engine adds to a fit (``configure_callbacks``, for ``fit`` only): the :class:`GANProgressBar` in
    place of Lightning's default bar (not of a bar the user chose, nor when the bar is disabled), the
    :class:`FitSummary`, and, in place of Lightning's default model-summary table (``enable_model_summary=True``,
    or a ``ModelSummary()`` of the default depth), one that prints nothing: the summary's header line says what
    it said. A ``ModelSummary(max_depth=2)`` of the user's is kept."""
    added: list[Callback] = []
    if type(trainer.progress_bar_callback) is TQDMProgressBar:  # Lightning's default; the model's replaces it
        added.append(GANProgressBar(refresh_rate=trainer.progress_bar_callback.refresh_rate))
    if not any(isinstance(c, FitSummary) for c in trainer.callbacks):
        added.append(FitSummary())
    tables = [c for c in trainer.callbacks if isinstance(c, ModelSummary)]
    if tables and all(type(c) in (ModelSummary, RichModelSummary) and getattr(c, "_max_depth", None) == 1 for c in tables):
        added += [kind(max_depth=0) for kind in dict.fromkeys(type(c) for c in tables)]  # a callback of a type replaces it
    return added


#: Lightning console lines a GAN user does not act on
_QUIET_LINES = (
    "litlogger", "litmodels", "TPU available", "HPU available", "configure_callbacks` will override",
    "distributed_backend=", "Initializing distributed:",  # the header line says how many processes
)


class _DropLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(part in str(record.msg) for part in _QUIET_LINES)


class _OwnLine(logging.Filter):
    """On a handler that prints: a record starts on a line of its own (:func:`end_bar_lines`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        end_bar_lines()
        return True


def _format_warning(message: Any, category: type, filename: str, lineno: int, line: Any = None) -> str:
    """A warning as one line, ``lit-gans: warning: <message>``, without the source file and line Python's format
    adds (they name library code, not the user's); a progress bar's line is first cleared or ended
    (:func:`end_bar_lines`), so that the warning is not printed inside it."""
    text = " ".join(str(message).split())
    kind = "" if category in (UserWarning, Warning) else f" ({category.__name__})"
    end_bar_lines()
    return f"lit-gans: warning{kind}: {text}\n"


def quiet_lightning() -> None:
    """Drop what Lightning prints for any ``Trainer`` without meaning anything to a GAN user: its litlogger and
    litmodels advertisements, the TPU/HPU lines, the line that the engine's callbacks "will override" Lightning's
    defaults, the notice that ``logger=True`` writes CSV files unless tensorboard is installed, and a deprecation
    warning that Lightning's own ``_pytree`` module triggers in torch (nothing a user can change); and start every
    line Lightning logs on a line of its own (:func:`end_bar_lines`). Importing the engine calls it: several of these
    lines are printed when a ``Trainer`` is built, before any hook of a fit. Idempotent."""
    loggers = ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero",
               "lightning.fabric.utilities.rank_zero")  # fmt: skip  # the last two log rank_zero_info's lines
    for name in loggers:  # a logger's filters see the records created there, its handlers' those that reach them
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropLines) for f in log.filters):
            log.addFilter(_DropLines())
        for handler in log.handlers:
            if not any(isinstance(f, _DropLines) for f in handler.filters):
                handler.addFilter(_DropLines())
                handler.addFilter(_OwnLine())  # after _DropLines: only for a line that is printed
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*is deprecated")
    warnings.filterwarnings("ignore", message=r".*`tensorboardX` has been removed as a dependency")


def quiet_console() -> None:
    """The ``lit-gans`` command's console: :func:`quiet_lightning`, every warning as one line, and no warning that an
    epoch is shorter than ``log_every_n_steps`` (for a GAN, whose budget spans epochs, it is wrong: logging counts
    batches across epochs) or that a resumed fit's checkpoint folder is not empty (it continues there on purpose).
    Idempotent."""
    quiet_lightning()
    warnings.formatwarning = _format_warning  # not showwarning: warnings recorded by catch_warnings stay recorded
    # logging counts batches across epochs, so a short epoch loses no logs (the losses of the bar are logged ones)
    warnings.filterwarnings("ignore", message=r".*is smaller than the logging interval")
    # a resumed fit continues in its own run's checkpoint folder, on purpose
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


quiet_lightning()  # see its docstring: a Python user's Trainer(...) prints before any hook of the engine runs

__all__ = [
    "FitSummary", "GANProgressBar", "console_callbacks", "end_bar_lines", "fit_header", "fit_summary",
    "quality_metrics", "quiet_console", "quiet_lightning",
]  # fmt: skip
