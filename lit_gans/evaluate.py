"""``lit-gans evaluate``: the metrics of a trained checkpoint, computed as the config's monitoring callbacks compute
them during training (same fixed latents, same real statistics, same generator), in one process, writing no logs
or checkpoints.

The checkpoint gives the model (its class is stored in it); the config, the same yaml(s) that ``lit-gans fit``
takes, gives the data and the metrics: the ``trainer.callbacks`` entries that measure something
(:class:`~lit_gans.callbacks.base.MetricCallback`: ``FIDCallback``, ``DiversityMonitor``, ``ConditionalAccuracy``,
``ClassificationAccuracyScore``; the others are left out). Each is set up on a single-device Trainer built from the
config and asked for :meth:`~lit_gans.callbacks.base.MetricCallback.evaluate`.

Example::

    lit-gans evaluate --ckpt_path lightning_logs/lit-gans/<run id>/checkpoints/last.ckpt \\
        --config configs/dcgan_mnist.yaml --num_fake 10000 --output_json metrics.json

    from lit_gans.evaluate import evaluate, format_metrics
    print(format_metrics(evaluate("last.ckpt", "configs/dcgan_mnist.yaml", data_dir="data")))
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Optional, Union

import torch
from jsonargparse import ArgumentError, Namespace
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities.seed import isolate_rng

from lit_gans.callbacks.base import MetricCallback
from lit_gans.fit_cli import CLI_OPTIONS, GANCLI
from lit_gans.datamodules import ImageDataModule
from lit_gans.files import atomic_write_bytes, check_writable
from lit_gans.gan import GAN
from lit_gans.generate import import_class, load_model

#: what the config's trainer becomes for an evaluation: one process on one device, no logger, no progress bar, no
#: global seeding (each metric is seeded on its own, see :func:`evaluate`)
EVALUATION_ARGS = (
    "--trainer.logger=false",
    "--trainer.devices=1",
    "--trainer.num_nodes=1",
    "--trainer.strategy=auto",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--seed_everything=false",
)


def is_metric_callback(callback: Any) -> bool:
    """Whether a callback (or callback class) measures something: a
    :class:`~lit_gans.callbacks.base.MetricCallback`, or any callback with an ``evaluate(trainer, pl_module)``
    method."""
    cls = callback if isinstance(callback, type) else type(callback)
    return issubclass(cls, MetricCallback) or callable(getattr(cls, "evaluate", None))


class EvaluationCLI(GANCLI):
    """:class:`~lit_gans.fit_cli.GANCLI` (the same parsing, links and validation as ``lit-gans fit``) whose trainer
    keeps only the metric callbacks, built with ``overrides`` (flag -> value, mapped to each class's constructor
    arguments by its ``evaluation_settings``)."""

    def __init__(self, *args: Any, overrides: Optional[dict[str, Any]] = None, **kwargs: Any) -> None:
        self._overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        super().__init__(*args, **kwargs)

    def before_instantiate_classes(self) -> None:
        super().before_instantiate_classes()
        trainer = self.config.trainer
        entries = trainer.get("callbacks") or []
        entries = entries if isinstance(entries, list) else [entries]
        kept = []
        for entry in entries:
            if isinstance(entry, Namespace):
                cls = _import(entry.class_path, "trainer.callbacks")
                if not is_metric_callback(cls):
                    continue
                settings = getattr(cls, "evaluation_settings", {})
                init_args = entry.get("init_args") or Namespace()
                for flag, value in self._overrides.items():
                    if flag in settings:
                        init_args[settings[flag]] = value
                entry["init_args"] = init_args
            elif not is_metric_callback(entry):
                continue
            kept.append(entry)
        classes = [import_class(e.class_path) if isinstance(e, Namespace) else type(e) for e in kept]
        taken = {flag for cls in classes for flag in getattr(cls, "evaluation_settings", {})}
        unused = [f"--{flag}" for flag in self._overrides if flag not in taken]
        if unused and kept:  # a flag that changes nothing is a mistake the user should hear of
            names = ", ".join(sorted({cls.__name__ for cls in classes}))
            raise ValueError(f"{', '.join(unused)}: no metric callback of the config takes it (the config has {names})")
        if not kept:
            raise ValueError(
                "the config has no metric callback in trainer.callbacks (FIDCallback, DiversityMonitor, "
                "ConditionalAccuracy, ClassificationAccuracyScore): nothing to evaluate"
            )
        trainer["callbacks"] = kept


def _import(class_path: str, what: str) -> Any:
    try:
        return import_class(class_path)
    except (ImportError, AttributeError, ValueError):
        raise ValueError(f"{what}: cannot import {class_path!r}") from None


def build_cli(
    configs: list[str], args: list[str] = (), overrides: Optional[dict[str, Any]] = None, model_class: str = "lit_gans.GAN"
) -> EvaluationCLI:
    """Parse and instantiate ``configs`` (and extra command-line ``args``) as ``lit-gans fit`` does, for an
    evaluation (:data:`EVALUATION_ARGS`), without running anything; ``model_class`` stands in for a config
    without a model (the checkpoint's class: the CLI links the data into a model). A parse error is a ValueError."""
    command = ["--model", model_class] + [arg for config in configs for arg in ("--config", str(config))]
    command += [*EVALUATION_ARGS, *args]
    try:
        with warnings.catch_warnings():  # `lit-gans evaluate`'s own command line is not this parser's
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
            return _evaluation_cli(command, overrides)
    except ArgumentError as err:
        raise ValueError(f"--config {' '.join(map(str, configs))}: {err}") from None
    except MisconfigurationException as err:  # e.g. a GPU accelerator on a machine without one
        message = str(err).strip().splitlines()[0]
        raise ValueError(f"the config's trainer: {message} (--accelerator chooses the device)") from None


def _evaluation_cli(command: list[str], overrides: Optional[dict[str, Any]]) -> EvaluationCLI:
    # as lit_gans.cli's fit, without the config-saving callback and the W&B logger
    return EvaluationCLI(
        GAN,
        ImageDataModule,
        **CLI_OPTIONS,
        save_config_callback=None,
        trainer_defaults={"max_epochs": -1},
        parser_kwargs={"exit_on_error": False},
        args=command,
        run=False,
        overrides=overrides,
    )


def check_compatible(model: Any, datamodule: Any, ckpt_path: Union[str, os.PathLike] = "the checkpoint") -> None:
    """A one-line ValueError when the model's ``image_shape`` or (for a class-conditional model) ``num_classes``
    disagree with the datamodule's."""
    model_shape, data_shape = getattr(model, "image_shape", None), getattr(datamodule, "image_shape", None)
    if model_shape is not None and data_shape is not None and tuple(model_shape) != tuple(data_shape):
        raise ValueError(
            f"{ckpt_path} holds a model of image_shape={tuple(model_shape)}, the config's data has image_shape="
            f"{tuple(data_shape)}: evaluate on data like the model's training data"
        )
    model_classes = int(getattr(model, "num_classes", 0) or 0)
    data_classes = getattr(datamodule, "num_classes", None)
    if model_classes and data_classes != model_classes:
        raise ValueError(
            f"{ckpt_path} holds a class-conditional model of num_classes={model_classes}, the config's data has "
            f"num_classes={data_classes}: evaluate on data like the model's training data"
        )


def evaluate(
    ckpt_path: str,
    config: Union[str, os.PathLike, list[Union[str, os.PathLike]]],
    num_fake: Optional[int] = None,
    num_real: Optional[int] = None,
    num_per_class: Optional[int] = None,
    batch_size: Optional[int] = None,
    seed: Optional[int] = None,
    ema: Optional[bool] = None,
    accelerator: Optional[str] = None,
    data_dir: Optional[str] = None,
    output_json: Optional[str] = None,
) -> dict[str, float]:
    """Compute the metrics of a trained checkpoint as the config's metric callbacks compute them during training.

    The checkpoint gives the model (any class; no config needed for it), the config the data and the metrics: the
    metric callbacks of ``trainer.callbacks`` (``FIDCallback``, ``DiversityMonitor``, ``ConditionalAccuracy``,
    ``ClassificationAccuracyScore``), with their settings. Each is set up and evaluated once, in this process, on
    one device: its fixed latents and the same real statistics (the training split's, cached as in training) make
    the value the one it logged at the checkpoint's step. Nothing is logged and no checkpoint is written; caches
    (FID real statistics, trained classifiers) are used and filled as in training.

    Example::

        lit-gans evaluate --ckpt_path runs/best-fid-generator_step=3000.ckpt --config configs/dcgan_mnist.yaml --num_fake 10000

    Args:
        ckpt_path: the checkpoint file to evaluate, or a run's checkpoint folder (its best checkpoint by the metric
            each file stores, else its newest).
        config: the yaml config(s) of ``lit-gans fit``, later ones overriding earlier ones: the data and the metric
            callbacks (the model is the checkpoint's).
        num_fake: generated images of every metric that has such a setting (``FIDCallback.num_fake``,
            ``DiversityMonitor.num_samples``).
        num_real: real images of the FID statistics (``FIDCallback.num_real``).
        num_per_class: generated images per class (``ConditionalAccuracy``, ``ClassificationAccuracyScore``).
        batch_size: images per forward (``FIDCallback``, ``ConditionalAccuracy``); changes no value.
        seed: the seed of every metric's fixed latents (each callback's ``seed``), and of the global random state
            each metric starts from (default 0; KID's and the Inception Score's random subsets draw from it).
        ema: use the weight-averaged generator (true) or the raw one (false); default: the average whenever the
            model keeps one, as in training.
        accelerator: ``cpu``, ``gpu``, ``mps``, ``auto``, ... (default: the config's ``trainer.accelerator``).
        data_dir: the data's folder, overriding the config's ``data.init_args.data_dir``.
        output_json: also write the metrics to this file, as one JSON object (metric name -> number, ``null`` for
            a non-finite value), atomically; a path that cannot be written is refused before anything is computed
            (``lit-gans evaluate`` prints the metrics before writing the file).

    Returns:
        metric name -> value, in the order of the config's callbacks.
    """
    configs = [config] if isinstance(config, (str, os.PathLike)) else list(config)
    if not configs:
        raise ValueError("evaluate needs a config (--config): the data and the metric callbacks")
    for path in configs:
        if not Path(path).is_file():
            raise FileNotFoundError(f"--config={path}: no such file")
    if output_json is not None:  # before computing: a path that cannot be written fails now, not after the metrics
        check_writable(output_json, "output_json")
    args = [f"--trainer.accelerator={accelerator}"] if accelerator is not None else []
    if data_dir is not None:
        args.append(f"--data.init_args.data_dir={data_dir}")
    overrides = dict(num_fake=num_fake, num_real=num_real, num_per_class=num_per_class, batch_size=batch_size,
                     seed=seed, ema=ema)  # fmt: skip
    with isolate_rng():  # the caller's random state is left as it was
        model = load_model(ckpt_path)  # first: a missing or unreadable checkpoint fails before parsing
        if ema and getattr(model, "generator_ema", None) is None:
            raise ValueError(f"ema=True: {ckpt_path} holds no weight-averaged generator (generator_ema_decay)")
        cli = build_cli(configs, args, overrides, f"{type(model).__module__}.{type(model).__qualname__}")
        trainer, datamodule = cli.trainer, cli.datamodule
        check_compatible(model, datamodule, ckpt_path)
        callbacks = [c for c in trainer.callbacks if is_metric_callback(c)]
        results = run_metrics(trainer, model, datamodule, callbacks, seed=0 if seed is None else seed)
    if output_json is not None:
        write_metrics_json(output_json, results)
    return results


def run_metrics(
    trainer: Any, model: LightningModule, datamodule: Any, callbacks: list, seed: int = 0
) -> dict[str, float]:
    """Set up ``datamodule`` (``prepare_data``, ``setup("fit")``: the training split, which the FID's real
    statistics use, as in training) and each metric callback (``setup(trainer, model, "fit")``) on ``trainer``
    (single device), then ``evaluate`` each on ``model``, from the global random state ``seed``.

    The trainer is the config's own Lightning ``Trainer`` (one device, no logger): its strategy gives the device,
    ``reduce``/``broadcast``/``barrier`` (identities for one process), ``global_rank``, ``world_size`` and
    ``is_global_zero``; the datamodule and the model are attached to it as Lightning attaches them in ``fit``
    (``trainer.datamodule``, ``datamodule.trainer``, ``model.trainer``), without running a loop."""
    device = trainer.strategy.root_device
    model = trainer.precision_plugin.convert_module(model).to(device)  # "16-true"/"bf16-true": the trained dtype
    trainer.datamodule, datamodule.trainer, model.trainer = datamodule, trainer, trainer
    datamodule.prepare_data()
    datamodule.setup("fit")
    results: dict[str, float] = {}
    for callback in callbacks:
        callback.setup(trainer, model, "fit")
        try:
            with isolate_rng():
                torch.manual_seed(seed)
                values = callback.evaluate(trainer, model)
        finally:
            callback.teardown(trainer, model, "fit")
        for key, value in values.items():
            if key in results:
                raise ValueError(f"two metric callbacks of the config both report {key!r}")
            results[key] = float(torch.as_tensor(value).detach().float().cpu())
    return results


def write_metrics_json(path: Union[str, os.PathLike], results: dict[str, float]) -> None:
    """``results`` as one JSON object (``null`` for a non-finite value), written atomically."""
    plain = {k: (float(v) if math.isfinite(v) else None) for k, v in results.items()}
    atomic_write_bytes(Path(path), (json.dumps(plain, indent=2) + "\n").encode())


def format_metrics(results: dict[str, float]) -> str:
    """A two-column table of ``results``: names left-aligned, values (6 significant digits) right-aligned.

    Example::

        >>> print(format_metrics({"fid": 12.34567891, "diversity/modes_covered": 10.0}))
        metric                     value
        fid                      12.3457
        diversity/modes_covered       10
    """
    rows = [("metric", "value")] + [(name, f"{value:.6g}") for name, value in results.items()]
    name_width = max(len(name) for name, _ in rows)
    value_width = max(len(value) for _, value in rows)
    return "\n".join(f"{name:<{name_width}}  {value:>{value_width}}" for name, value in rows)


__all__ = [
    "EvaluationCLI", "build_cli", "check_compatible", "evaluate", "format_metrics", "is_metric_callback",
    "run_metrics", "write_metrics_json",
]
