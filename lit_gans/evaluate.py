"""``lit-gans evaluate``: the metrics of a trained checkpoint, computed as the config's monitoring callbacks compute
them during training (same fixed latents, same real statistics, same generator), in one process, writing no logs
or checkpoints.

The checkpoint gives the model (its class is stored in it); the config, the same yaml(s) that ``lit-gans fit``
takes, gives the data and the metrics: the ``trainer.callbacks`` entries that measure something
(:class:`~lit_gans.callbacks.base.MetricCallback`: ``FIDCallback``, ``DiversityMonitor``, ``ConditionalAccuracy``,
``ClassificationAccuracyScore``; the others are left out). Each is set up on a single-device Trainer built from the
config and asked for :meth:`~lit_gans.callbacks.base.MetricCallback.evaluate`.

``--images DIR`` scores a folder of images instead (another library's samples, or ``lit-gans generate``'s), with
the same metrics and real statistics: :class:`FolderImages` stands in for the model.

Example::

    lit-gans evaluate --ckpt_path lightning_logs/lit-gans/<run id>/checkpoints/last.ckpt \\
        --config configs/dcgan_mnist.yaml --num_fake 10000 --output_json metrics.json
    lit-gans evaluate --images other_library_samples/ --config configs/dcgan_mnist.yaml --num_fake 10000

    from lit_gans.evaluate import evaluate, format_metrics
    print(format_metrics(evaluate("last.ckpt", "configs/dcgan_mnist.yaml", data_dir="data")))
"""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from jsonargparse import ArgumentError, Namespace
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities.seed import isolate_rng
from PIL import Image
from torch import Tensor, nn

from lit_gans.callbacks.base import MetricCallback
from lit_gans.fit_cli import CLI_OPTIONS, GANCLI
from lit_gans.datamodules import ImageDataModule
from lit_gans.datamodules.base import uint8_to_unit_range
from lit_gans.datamodules.image_folder import load_square_image
from lit_gans.datamodules.preprocessing import Skipped, open_image, scan_folder, to_chw_uint8
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
    ckpt_path: Optional[str] = None,
    config: Optional[Union[str, os.PathLike, list[Union[str, os.PathLike]]]] = None,
    num_fake: Optional[int] = None,
    num_real: Optional[int] = None,
    num_per_class: Optional[int] = None,
    batch_size: Optional[int] = None,
    seed: Optional[int] = None,
    ema: Optional[bool] = None,
    accelerator: Optional[str] = None,
    data_dir: Optional[str] = None,
    output_json: Optional[str] = None,
    images: Optional[str] = None,
) -> dict[str, float]:
    """Compute the metrics of a trained checkpoint (or of a folder of images) as the config's metric callbacks
    compute them during training.

    The checkpoint gives the model (any class; no config needed for it), the config the data and the metrics: the
    metric callbacks of ``trainer.callbacks`` (``FIDCallback``, ``DiversityMonitor``, ``ConditionalAccuracy``,
    ``ClassificationAccuracyScore``), with their settings. Each is set up and evaluated once, in this process, on
    one device: its fixed latents and the same real statistics (the training split's, cached as in training) make
    the value the one it logged at the checkpoint's step. Nothing is logged and no checkpoint is written; caches
    (FID real statistics, trained classifiers) are used and filled as in training.

    Example::

        lit-gans evaluate --ckpt_path runs/best-fid-generator_step=3000.ckpt --config configs/dcgan_mnist.yaml --num_fake 10000
        lit-gans evaluate --images other_samples/ --config configs/dcgan_mnist.yaml --num_fake 10000

    With ``images`` instead of a checkpoint, a folder of PNG/JPG files from anywhere is scored with the same metrics
    and the same real statistics, so its values compare with the checkpoints': each metric takes the folder's
    images in file-name order (:class:`FolderImages`), as many as it would generate (``--num_fake``, ...; a folder
    with fewer is refused); images of another size are cropped and resized as the data's module prepares its own
    (:func:`read_image_folder`, one line says so). A folder that ``lit-gans generate --num_images N --seed S``
    wrote gives a metric whose count is ``N`` and seed ``S`` (``FIDCallback``'s default seed is generate's) the
    values that ``--ckpt_path`` gives, up to the PNGs' 8-bit rounding (at most half a grey level per pixel); class
    subfolders (as generate writes them) serve the conditional metrics.

    Args:
        ckpt_path: the checkpoint file to evaluate, or a run's checkpoint folder (its best checkpoint by the metric
            each file stores, else its newest); or leave it out and give ``images``.
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
        images: a folder of images to score instead of a checkpoint (PNG, JPG, ...; class subfolders for the
            conditional metrics).

    Returns:
        metric name -> value, in the order of the config's callbacks.
    """
    if (ckpt_path is None) == (images is None):
        raise ValueError(
            "evaluate scores a checkpoint (--ckpt_path) or a folder of images (--images)"
            + (", not both" if images is not None else ": give one")
        )
    if images is not None and ema is not None:
        raise ValueError("ema: --images scores the files as they are; ema chooses a checkpoint's generator")
    configs = [] if config is None else [config] if isinstance(config, (str, os.PathLike)) else list(config)
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
        if images is not None:
            cli = build_cli(configs, args, overrides, STAND_IN_MODEL)
            trainer, datamodule = cli.trainer, cli.datamodule
            model = FolderImages(*read_image_folder(images, datamodule)[:2], images, datamodule)
        else:
            model = load_model(ckpt_path)  # first: a missing or unreadable checkpoint fails before parsing
            if ema and getattr(model, "generator_ema", None) is None:
                raise ValueError(f"ema=True: {ckpt_path} holds no weight-averaged generator (generator_ema_decay)")
            cli = build_cli(configs, args, overrides, f"{type(model).__module__}.{type(model).__qualname__}")
            trainer, datamodule = cli.trainer, cli.datamodule
            check_compatible(model, datamodule, ckpt_path)
        callbacks = [c for c in trainer.callbacks if is_metric_callback(c)]
        try:
            results = run_metrics(trainer, model, datamodule, callbacks, seed=0 if seed is None else seed)
        except ValueError as err:
            if images is None or model.num_classes or "class-conditional" not in str(err):
                raise
            raise ValueError(
                f"{err}: images={images} has no class folders (one subfolder per class, as generate writes them)"
            ) from None
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


# ---------------------------------------------------------------------------------------------- a folder of images
#: the model class that stands in, for the CLI's links, when ``--images`` comes with a config without a model
STAND_IN_MODEL = "lit_gans.DCGAN"


def read_image_folder(
    folder: Union[str, os.PathLike], datamodule: Any
) -> tuple[Tensor, Optional[Tensor], list[str]]:
    """The images of ``folder`` (recursively, sorted by file name, then path: ``generate``'s order) as uint8
    ``(N, C, H, W)`` of the datamodule's ``image_shape``, their labels and the class folders.

    Images of another size are made square and resized as the folder datamodules prepare theirs
    (:func:`~lit_gans.datamodules.image_folder.load_square_image`: the central square, or with ``resize="pad"``
    padding on the border colour, then Lanczos), and converted to the data's channels (grey or RGB); one line on
    stderr says how many. First-level subfolders are classes, in sorted order (``generate``'s ``0_cat``,
    ``1_dog``, ... sort in label order), when the data has that many classes; otherwise the folder is scored as
    unlabelled images. Non-image files (``generate.json``, ``.txt``, hidden files) are left out.

    Raises:
        FileNotFoundError: no such folder.
        ValueError: no images, a file that does not decode, images both at the top and in subfolders, or class
            folders that do not match the data's classes; one line naming the folder.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"images={root}: no such folder")
    channels, height, width = (int(v) for v in datamodule.image_shape)
    listing = scan_folder(root)
    if listing.skipped:
        path, _, detail = listing.skipped[0]
        raise ValueError(f"images={root}: {detail or path} (every image must be read, or the scores would silently differ)")
    files = sorted(listing.files, key=lambda f: (f.name, str(f)))
    if not files:
        raise ValueError(f"images={root} holds no image files")
    top = [Path(f.member if f.member is not None else os.path.relpath(f.path, root)).parts for f in files]
    folders = [parts[0] if len(parts) > 1 else "" for parts in top]
    if "" in folders and set(folders) != {""}:
        raise ValueError(
            f"images={root} holds images both at its top (e.g. {files[folders.index('')].name}) and in subfolders: "
            "one folder of images, or one subfolder per class"
        )
    classes = sorted(set(folders) - {""})
    data_classes = int(getattr(datamodule, "num_classes", 0) or 0)
    if classes and data_classes and len(classes) != data_classes:
        raise ValueError(
            f"images={root} has {len(classes)} class folders ({', '.join(classes[:4])}{', ...' if len(classes) > 4 else ''}), "
            f"the config's data {data_classes} classes: one subfolder per class, sorted in label order (as generate "
            "writes them), or all images in one folder"
        )
    mode, resize = ("L" if channels == 1 else "RGB"), getattr(datamodule, "resize", "crop")
    arrays, resized = [], []
    for source in files:
        try:
            image = open_image(source, mode)
            if image.size == (width, height):
                arrays.append(to_chw_uint8(image))
                continue
            resized.append(f"{source.name}: {image.size[0]}x{image.size[1]}")
            arrays.append(load_square_image(source, height, channels, resize) if height == width else
                          to_chw_uint8(image.resize((width, height), Image.LANCZOS)))  # fmt: skip
        except Skipped as skip:
            raise ValueError(f"images={root}: {skip.detail or skip.reason} (not an image: remove it)") from None
    if resized:
        how = "padded to a square" if resize == "pad" else "cropped to their central square"
        print(
            f"lit-gans: note: {len(resized)} of the {len(files)} images of {root} are not {width}x{height} like the "
            f"config's data (e.g. {resized[0]}): {how} and resized (Lanczos), as {type(datamodule).__name__} would",
            file=sys.stderr,
        )
    labels = None
    if classes and data_classes:
        index = {name: i for i, name in enumerate(classes)}
        labels = torch.tensor([index[name] for name in folders])
    return torch.from_numpy(np.stack(arrays)), labels, classes


class FolderImages(nn.Module):
    """A folder's images standing in for a model in the metric callbacks, which call ``sample_latent(n)`` and then
    ``sample(z=chunk, labels=...)`` chunk by chunk: each metric (from its ``sample_latent``) takes the folder's
    images in order, the first ``n`` it asks for; for a class ``c`` (a conditional metric, or a conditional
    FID's fixed labels), the next image of class ``c``. Folders written by ``lit-gans generate --seed S
    --num_images N`` so give a metric exactly the fakes it would generate itself with seed ``S`` and ``N``
    images (its labels are drawn, as the model's, from the data's class frequencies).

    A metric that asks for more images (of a class) than the folder holds stops with a one-line error."""

    def __init__(self, images: Tensor, labels: Optional[Tensor], folder: Union[str, os.PathLike], datamodule: Any) -> None:
        super().__init__()
        self.register_buffer("images", images, persistent=False)  # uint8: moves with .to(device), never cast
        self.folder, self._datamodule = Path(folder), datamodule
        self.num_classes = int(datamodule.num_classes) if labels is not None else 0
        self.latent_dim, self.generator_step = 1, 0
        self._pools = {None: torch.arange(len(images))}
        if labels is not None:
            self._pools.update({c: torch.nonzero(labels == c).flatten() for c in range(self.num_classes)})
        self._taken: dict[Optional[int], int] = {}

    @property
    def device(self) -> torch.device:
        return self.images.device

    def sample_latent(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """A metric starts its request: the images are taken from the first again. The "latents" are positions."""
        self._taken = {}
        return torch.arange(n, dtype=torch.float32, device=self.device)[:, None]

    def draw_labels(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """``n`` classes drawn from the data's class frequencies, as ``GAN.draw_labels`` draws them with the
        frequencies a fit stores (the training data's)."""
        counts = self._datamodule.class_counts()
        weights = torch.as_tensor(counts, dtype=torch.float32)
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        return torch.multinomial(weights / weights.sum(), n, replacement=True, generator=gen).to(self.device)

    @torch.no_grad()
    def sample(
        self, n: Optional[int] = None, z: Optional[Tensor] = None, ema: Optional[bool] = None, labels: Any = None
    ) -> Tensor:
        """The next images of the folder (of each image's class in ``labels``), float32 in [-1, 1]."""
        count = len(z) if z is not None else int(n)
        keys: list[Optional[int]] = [None] * count
        if labels is not None and self.num_classes:
            keys = torch.as_tensor(labels).long().cpu().expand(count).tolist()
        picks = []
        for key in keys:
            pool, taken = self._pools[key], self._taken.get(key, 0)
            if taken >= len(pool):
                which = f"{len(pool)} images of class {key}" if key is not None else f"{len(pool)} images"
                raise ValueError(
                    f"images={self.folder} holds {which}, and a metric of the config asks for more: lower its count "
                    "(--num_fake, --num_per_class) or add images"
                )
            picks.append(int(pool[taken]))
            self._taken[key] = taken + 1
        return uint8_to_unit_range(self.images[torch.tensor(picks, device=self.device)])


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
    "EvaluationCLI", "FolderImages", "build_cli", "check_compatible", "evaluate", "format_metrics",
    "is_metric_callback", "read_image_folder", "run_metrics", "write_metrics_json",
]
