"""What every monitoring callback shares: when to run (every n generator steps or epochs), and how to log scalars
and images through whatever loggers the Trainer has, against the generator step, from rank 0 only."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional, TypeVar

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities.seed import isolate_rng
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from torch import Tensor

from lit_gans.latent import to_uint8_image
from lit_gans.trainer_plumbing import GENERATOR_STEP
from lit_gans.validation import check_int


def generator_step(pl_module: LightningModule) -> int:
    """The x-axis of everything lit_gans logs: generator updates (Lightning's global step for other modules)."""
    step = getattr(pl_module, "generator_step", None)
    return int(step) if step is not None else int(pl_module.trainer.global_step)


Method = TypeVar("Method", bound=Callable[..., Any])


def keeps_global_rng(method: Method) -> Method:
    """Run ``method`` with the global random state (CPU and CUDA) saved and restored afterwards (Lightning's
    ``isolate_rng``). Monitoring must not draw from it: building a classifier (random initialisation before its
    weights load) or a new DataLoader iterator would otherwise shift what dropout and augmentation draw in training,
    and a run with a monitoring callback would not train like one without."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with isolate_rng():
            return method(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def fixed_labels(pl_module: Any, n: int, generator: torch.Generator) -> Optional[Tensor]:
    """The class labels of ``n`` fixed samples of a class-conditional model, on the CPU (``None`` for an
    unconditional one): drawn from ``generator``, a metric's own seeded one, by the model's ``draw_labels`` (the
    training data's class frequencies), else balanced (``i % num_classes``). Never from the model's training noise
    stream, which ``sample(labels=None)`` would use: such values would change at every call, shift the training
    randomness, and not be reproducible by ``lit-gans evaluate``."""
    num_classes = int(getattr(pl_module, "num_classes", 0) or 0)
    if not num_classes:
        return None
    draw = getattr(pl_module, "draw_labels", None)
    if callable(draw):
        return draw(n, generator=generator).cpu()
    return torch.arange(n) % num_classes


class PeriodicCallback(Callback):
    """Runs :meth:`run` every ``every_n_generator_steps`` generator updates and/or every ``every_n_epochs`` epochs
    (and once at the end of training with ``at_train_end``). Each generator step runs at most once, with the global
    random state left as it was (:func:`keeps_global_rng`)."""

    def __init__(
        self, every_n_generator_steps: Optional[int] = None, every_n_epochs: Optional[int] = None, at_train_end: bool = False
    ) -> None:
        self.every_n_generator_steps = check_int("every_n_generator_steps", every_n_generator_steps, optional=True)
        self.every_n_epochs = check_int("every_n_epochs", every_n_epochs, optional=True)
        self.at_train_end = at_train_end
        self._last_step: Optional[int] = None

    def run(self, trainer: Trainer, pl_module: LightningModule) -> None:
        raise NotImplementedError

    def _maybe_run(self, trainer: Trainer, pl_module: LightningModule) -> None:
        step = generator_step(pl_module)
        if step != self._last_step:
            self._last_step = step
            keeps_global_rng(self.run)(trainer, pl_module)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        n = self.every_n_generator_steps
        step = generator_step(pl_module)
        if n is not None and step > 0 and step % n == 0:
            self._maybe_run(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.every_n_epochs is not None and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._maybe_run(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.at_train_end:
            self._maybe_run(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self._last_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._last_step = state_dict.get("last_step")


class MetricCallback(PeriodicCallback):
    """A :class:`PeriodicCallback` that measures the generator, with one entry point: :meth:`evaluate` computes the
    metrics now and returns them (a collective call under DDP: every rank calls it), :meth:`run` logs them.
    ``setup(trainer, pl_module, stage)`` is called first (extractors, classifiers); ``trainer`` needs
    ``datamodule``, ``global_rank``, ``world_size``, ``is_global_zero`` and ``strategy`` (``reduce``,
    ``broadcast``, ``barrier``). ``lit-gans evaluate`` (:func:`lit_gans.evaluate.evaluate`) computes the metrics of
    a checkpoint this way, outside training.

    :attr:`evaluation_settings` names the constructor arguments that ``lit-gans evaluate``'s flags override:
    ``{"num_fake": "num_samples"}`` means ``--num_fake N`` builds the callback with ``num_samples=N``."""

    #: ``lit-gans evaluate``'s flag -> this class's constructor argument it sets
    evaluation_settings: ClassVar[dict[str, str]] = {}

    def evaluate(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Tensor]:
        raise NotImplementedError

    def run(self, trainer: Trainer, pl_module: LightningModule) -> None:
        log_scalars(trainer, pl_module, self.evaluate(trainer, pl_module))


def train_loader(trainer: Trainer) -> Any:
    """The training batches: the fit's train dataloader, else (outside a fit: ``lit-gans evaluate``) the
    datamodule's ``train_dataloader()``."""
    loader = getattr(trainer, "train_dataloader", None)
    return loader if loader is not None else trainer.datamodule.train_dataloader()


def log_scalars(trainer: Trainer, pl_module: LightningModule, metrics: dict[str, Tensor]) -> None:
    """Send ``metrics`` to every logger at the generator step (rank 0), and make them ``callback_metrics`` so that
    ``ModelCheckpoint(monitor=...)`` and ``EarlyStopping`` see them."""
    metrics = {k: torch.as_tensor(v).detach().float().cpu() for k, v in metrics.items()}
    for key, value in metrics.items():
        trainer.callback_metrics[key] = value
    if trainer.is_global_zero:
        step = generator_step(pl_module)
        values = {k: float(v) for k, v in metrics.items()}
        if getattr(pl_module, "generator_step", None) is not None:  # also as a value: a CSV column, W&B's x-axis
            values[GENERATOR_STEP] = step
        for logger in trainer.loggers:
            logger.log_metrics(values, step=step)


def image_dir(trainer: Trainer) -> Path:
    """This run's image folder (PNGs when no logger can show them, the grid's GIF): ``images`` in the first
    logger's run folder (``log_dir``; for W&B ``<save_dir>/<project>/<run id>``, beside the checkpoints, so that
    runs sharing a ``save_dir`` do not overwrite each other's), else in the root dir."""
    for logger in trainer.loggers:
        folder = getattr(logger, "log_dir", None)
        if folder:
            return Path(folder) / "images"
        save_dir = getattr(logger, "save_dir", None)
        if save_dir:
            run = [str(part) for part in (logger.name, logger.version) if part not in (None, "")]
            return Path(save_dir, *run) / "images"
    return Path(trainer.default_root_dir) / "images"


def log_image(trainer: Trainer, pl_module: LightningModule, key: str, grid: Tensor, caption: Optional[str] = None) -> None:
    """Log a ``(C, H, W)`` grid in [0, 1] as an image (converted to uint8 explicitly; rank 0 only): W&B and
    TensorBoard loggers get it natively; otherwise (CSV, no logger) it is written as
    ``<log dir>/images/<key>/<generator step>.png``. ``caption`` goes to W&B's caption, a TensorBoard text entry
    ``<key>/caption``, or the PNG's ``Description`` text chunk."""
    if not trainer.is_global_zero:
        return
    array = to_uint8_image(grid)
    step = generator_step(pl_module)
    shown = False
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):  # as Lightning's log_image, with the step named (use_generator_step_axis)
            import wandb

            metrics = {key: [wandb.Image(array, caption=caption)]}
            if getattr(pl_module, "generator_step", None) is not None:
                metrics[GENERATOR_STEP] = step
            logger.log_metrics(metrics, step=step)
            shown = True
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, array, step, dataformats="HWC")
            if caption:
                logger.experiment.add_text(f"{key}/caption", caption, step)
            shown = True
    if not shown:
        path = image_dir(trainer) / key.replace("/", "_") / f"{step:08d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        info = PngInfo()
        if caption:
            info.add_itxt("Description", caption)
        Image.fromarray(array).save(path, pnginfo=info)


__all__ = [
    "MetricCallback", "PeriodicCallback", "fixed_labels", "generator_step", "image_dir", "keeps_global_rng", "log_image",
    "log_scalars", "train_loader",
]
