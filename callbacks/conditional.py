"""Monitoring of class-conditional generators: does a sample requested as class ``c`` look like class ``c``
(:class:`ConditionalAccuracy`), and does a classifier trained on samples alone recognise real images
(:class:`ClassificationAccuracyScore`)?"""

from __future__ import annotations

import os
import re
from typing import Any, Optional, Union

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from lit_gans.callbacks.base import MetricCallback, keeps_global_rng
from lit_gans.callbacks.classifier import (
    CLASSIFIER_CHOICES,
    _train_set,
    classification_accuracy_score,
    classifier_accuracy,
    datamodule_num_classes,
    generate_labelled,
    labelled_tensors,
    predict,
    real_accuracy_of,
    real_test_set,
    shared_data_classifier,
)
from lit_gans.validation import check_int

#: images used to measure a user classifier's accuracy on real data when it carries none
REAL_ACCURACY_IMAGES = 2000
#: the arguments of classification_accuracy_score that ClassificationAccuracyScore(options=...) may set
CAS_OPTIONS = ("batch_size", "lr", "width", "num_features", "augment", "sample_batch_size")


def model_num_classes(pl_module: Any) -> int:
    return int(getattr(pl_module, "num_classes", 0) or 0)


def require_conditional(pl_module: Any, who: str) -> int:
    """The model's ``num_classes``, or a one-line ValueError when it is unconditional."""
    num_classes = model_num_classes(pl_module)
    if num_classes < 2:
        raise ValueError(
            f"{who} needs a class-conditional model, and {type(pl_module).__name__} has num_classes={num_classes}"
        )
    return num_classes


def class_names(datamodule: Any, num_classes: int) -> list[str]:
    """The datamodule's ``class_names`` (or ``classes``) when it has one name per class, else ``"0"``, ``"1"``, ..."""
    for attribute in ("class_names", "classes"):
        names = getattr(datamodule, attribute, None)
        if names is not None and len(names) == num_classes:
            return [str(n) for n in names]
    return [str(i) for i in range(num_classes)]


def metric_keys(names: list[str]) -> list[str]:
    """Logger-safe, distinct key parts for class names: every run of characters other than letters (any script),
    digits, ``_``, ``.`` and ``-`` becomes ``_`` (what TensorBoard does to tags; ``/`` would nest the key); an empty
    result is the class index, and a repeated one gets ``_<index>`` appended."""
    keys, seen = [], set()
    for i, name in enumerate(names):
        key = re.sub(r"[^\w.-]+", "_", name).strip("_") or str(i)
        if key in seen:
            key = f"{key}_{i}"
        seen.add(key)
        keys.append(key)
    return keys


def check_metric_name(name: Any, argument: str = "metric_name") -> str:
    if not isinstance(name, str) or not re.fullmatch(r"[\w.-]+", name):
        raise ValueError(f"{argument}={name!r} must be a non-empty key part (letters, digits, '_', '.', '-'; no '/')")
    return name


class ConditionalAccuracy(MetricCallback):
    """How often a class-conditional generator's sample for class ``c`` is classified as ``c`` by a classifier of
    real data (the "accuracy" of conditional GANs, e.g. Odena et al. 2017 for AC-GAN; *legibility* for characters).

    Every ``every_n_generator_steps`` generator steps, ``num_per_class`` images of every class are generated from
    fixed latents (seed ``seed``, so successive values are comparable) with ``pl_module.sample(z=..., labels=...)``
    and classified:

    * ``<metric_name>/accuracy`` = ``mean_i [argmax classifier.logits(G(z_i, y_i)) == y_i]`` over all samples;
    * ``<metric_name>/accuracy_<class name>``: the same over class ``c``'s samples, for every class when there are
      at most ``max_logged_classes`` (names from the datamodule's ``class_names``, sanitized for loggers by
      :func:`metric_keys`; the class index without names); with more classes only ``<metric_name>/accuracy_worst``
      and ``<metric_name>/accuracy_best`` (the lowest and highest per-class accuracy);
    * ``<metric_name>/classifier_real_accuracy``: the classifier's accuracy on real images it was not trained on
      (its held-out or test accuracy), so that the first number can be trusted: a sample scored like a real image
      is as recognisable as a real one.

    Under DDP every rank generates and classifies its share ``[rank::world_size]`` of the fixed samples and the
    per-class counts are summed over ranks, so the value equals the single-process one (all ranks log it, rank 0
    sends it to the loggers). A trained classifier is trained by rank 0 while the others wait, then loaded by them
    from the cache.

    Example::

        ConditionalAccuracy(classifier="auto", num_per_class=100, every_n_generator_steps=1000)

    Args:
        classifier: ``"auto"`` (the shipped digit classifier for MNIST digits, known by the data's identity, an
            ``MNISTDataModule`` of ``dataset="mnist"``, never by the images' shape; else ``"train"``), ``"mnist"``
            (:class:`~lit_gans.callbacks.features.MNISTClassifier`), ``"train"`` (a
            :class:`~lit_gans.callbacks.classifier.DataClassifier` trained once on the datamodule's labelled
            training images and cached, :func:`~lit_gans.callbacks.classifier.data_classifier`), or a module with
            a ``logits(images) -> (N, classes)`` method (its ``held_out_accuracy`` or ``test_accuracy`` attribute
            is logged as the real accuracy; without one it is measured on up to 2000 real images, the
            datamodule's ``val_set`` if it has one, else its training images).
        num_per_class: generated images per class and evaluation.
        every_n_generator_steps, every_n_epochs, at_train_end: when to evaluate
            (:class:`~lit_gans.callbacks.base.PeriodicCallback`).
        metric_name: the key prefix (``"legibility"`` logs ``legibility/accuracy`` etc.).
        max_logged_classes: log per-class accuracies up to this many classes.
        cache_dir: where a trained classifier is cached (default ``<lit_gans cache>/classifier``).
        classifier_options: arguments of :func:`~lit_gans.callbacks.classifier.data_classifier` (``epochs``,
            ``width``, ...).
        batch_size: images per generator and classifier forward.
        seed: seed of the fixed latents.
        ema: passed to ``sample`` (``None``: the weight-averaged generator whenever the model has one).
    """

    evaluation_settings = {"num_per_class": "num_per_class", "batch_size": "batch_size", "seed": "seed", "ema": "ema"}

    def __init__(
        self,
        classifier: Union[str, nn.Module] = "auto",
        num_per_class: int = 100,
        every_n_generator_steps: Optional[int] = 1000,
        every_n_epochs: Optional[int] = None,
        at_train_end: bool = False,
        metric_name: str = "conditional",
        max_logged_classes: int = 20,
        cache_dir: Optional[Union[str, os.PathLike]] = None,
        classifier_options: Optional[dict[str, Any]] = None,
        batch_size: int = 250,
        seed: int = 2468,
        ema: Optional[bool] = None,
    ) -> None:
        super().__init__(every_n_generator_steps, every_n_epochs, at_train_end)
        if isinstance(classifier, str) and classifier not in ("auto", "mnist", "train"):
            raise ValueError(f"classifier={classifier!r} is not supported; {CLASSIFIER_CHOICES}")
        if isinstance(classifier, nn.Module) and not callable(getattr(classifier, "logits", None)):
            raise ValueError(f"classifier {type(classifier).__name__} has no `logits(images) -> (N, classes)` method")
        if not isinstance(classifier, (str, nn.Module)):
            raise ValueError(f"classifier={classifier!r} is not supported; {CLASSIFIER_CHOICES}")
        self.classifier_spec = classifier
        self.num_per_class = check_int("num_per_class", num_per_class)
        self.metric_name = check_metric_name(metric_name)
        self.max_logged_classes = check_int("max_logged_classes", max_logged_classes, minimum=0)
        self.cache_dir = cache_dir
        self.classifier_options = dict(classifier_options or {})
        self.batch_size = check_int("batch_size", batch_size)
        self.seed, self.ema = seed, ema
        self.classifier: Optional[nn.Module] = None
        self.real_accuracy: Optional[float] = None

    @keeps_global_rng
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.num_classes = require_conditional(pl_module, "ConditionalAccuracy")
        datamodule = getattr(trainer, "datamodule", None)
        data_classes = getattr(datamodule, "num_classes", None)
        if data_classes is not None and data_classes != self.num_classes:
            raise ValueError(
                f"ConditionalAccuracy: the model has num_classes={self.num_classes}, the data {data_classes} classes"
            )
        self.classifier, self.classifier_name = shared_data_classifier(
            trainer, "ConditionalAccuracy", self.classifier_spec, self.cache_dir, self.classifier_options
        )
        classes = getattr(self.classifier, "num_classes", None)
        if classes is not None and classes != self.num_classes:
            raise ValueError(
                f"ConditionalAccuracy: the classifier knows {classes} classes, the model has "
                f"num_classes={self.num_classes}"
            )
        self.real_accuracy = real_accuracy_of(self.classifier)
        if self.real_accuracy is None:
            self.real_accuracy = self._measure_real_accuracy(datamodule)
        self.class_keys = metric_keys(class_names(datamodule, self.num_classes))
        rank_zero_info(
            f"ConditionalAccuracy: {self.metric_name}/accuracy by the {self.classifier_name} classifier "
            f"(accuracy on held-out real images {self.real_accuracy:.4f}), {self.num_per_class} samples per class"
        )

    def _measure_real_accuracy(self, datamodule: Any) -> float:
        val_set = getattr(datamodule, "val_set", None)
        dataset = val_set if val_set is not None and len(val_set) > 0 else _train_set(datamodule, "ConditionalAccuracy")
        images, labels = labelled_tensors(dataset, "the datamodule's data")
        index = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.seed))[:REAL_ACCURACY_IMAGES]
        return classifier_accuracy(self.classifier, images[index], labels[index])

    @torch.no_grad()
    def evaluate(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Tensor]:
        """The metrics now (a collective call under DDP: every rank must call it)."""
        rank, world = int(getattr(trainer, "global_rank", 0)), int(getattr(trainer, "world_size", 1) or 1)
        device = pl_module.device
        self.classifier.to(device)
        images, labels = generate_labelled(
            pl_module, self.num_classes, self.num_per_class, self.seed, self.batch_size, self.ema, rank, world
        )
        correct = predict(self.classifier, images, self.batch_size, device) == labels
        counts = torch.zeros(self.num_classes, dtype=torch.float64)
        counts.index_add_(0, labels, correct.double())
        if world > 1:
            counts = trainer.strategy.reduce(counts.to(device), reduce_op="sum").cpu()
        per_class = counts / self.num_per_class
        prefix = self.metric_name
        metrics = {
            f"{prefix}/accuracy": per_class.mean(),
            f"{prefix}/classifier_real_accuracy": torch.tensor(self.real_accuracy),
        }
        if self.num_classes <= self.max_logged_classes:
            for key, value in zip(self.class_keys, per_class):
                metrics[f"{prefix}/accuracy_{key}"] = value
        else:
            metrics[f"{prefix}/accuracy_worst"], metrics[f"{prefix}/accuracy_best"] = per_class.min(), per_class.max()
        return {k: torch.as_tensor(v).float() for k, v in metrics.items()}

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.classifier is not None:
            self.classifier.cpu()


class ClassificationAccuracyScore(MetricCallback):
    """The Classification Accuracy Score (Ravuri & Vinyals 2019) of a class-conditional generator, now and then:
    a classifier trained only on ``num_per_class`` samples per class, tested on real images
    (:func:`~lit_gans.callbacks.classifier.classification_accuracy_score`). Logs ``<metric_name>/accuracy`` (the
    CAS) and ``<metric_name>/real_data_accuracy`` (the same classifier recipe trained on as many real images; its
    ceiling), ``metric_name`` defaulting to ``cas``.

    The real test images are ones the generator never trained on: the data's own test split (MNIST's 10k test
    digits), else its ``val_set``; data with neither is refused at setup, in one line
    (:func:`~lit_gans.callbacks.classifier.real_test_set`).

    It trains a classifier per evaluation, so by default it runs once, at the end of training
    (``at_train_end=True``); set ``every_n_generator_steps`` (large) for a curve. The real-data accuracy does not
    depend on the generator: it is computed once per run and kept (not checkpointed). Under DDP rank 0 computes the
    score while the others wait, and broadcasts it, so every rank logs the same value.

    Example::

        ClassificationAccuracyScore(num_per_class=500, epochs=10)

    Args:
        num_per_class: generated (and real) training images per class.
        epochs: training epochs of each classifier.
        every_n_generator_steps, every_n_epochs, at_train_end: when to evaluate.
        metric_name: the key prefix.
        seed: seed of the latents, the held-out split and the classifiers' training.
        options: more arguments of :func:`~lit_gans.callbacks.classifier.classification_accuracy_score`
            (:data:`CAS_OPTIONS`: ``width``, ``batch_size``, ``lr``, ...).
        ema: passed to ``sample`` (``None``: the weight-averaged generator whenever the model has one).
    """

    evaluation_settings = {"num_per_class": "num_per_class", "seed": "seed", "ema": "ema"}

    def __init__(
        self,
        num_per_class: int = 500,
        epochs: int = 10,
        every_n_generator_steps: Optional[int] = None,
        every_n_epochs: Optional[int] = None,
        at_train_end: bool = True,
        metric_name: str = "cas",
        seed: int = 0,
        options: Optional[dict[str, Any]] = None,
        ema: Optional[bool] = None,
    ) -> None:
        super().__init__(every_n_generator_steps, every_n_epochs, at_train_end)
        self.num_per_class = check_int("num_per_class", num_per_class)
        self.ema = ema
        self.epochs = check_int("epochs", epochs)
        self.metric_name = check_metric_name(metric_name)
        self.seed = seed
        self.options = dict(options or {})
        unknown = sorted(set(self.options) - set(CAS_OPTIONS))
        if unknown:
            raise ValueError(
                f"ClassificationAccuracyScore: options {unknown} are not understood; it takes {list(CAS_OPTIONS)} "
                "(the test images are the data's test split or val_set)"
            )
        self.real_data_accuracy: Optional[float] = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        num_classes = require_conditional(pl_module, "ClassificationAccuracyScore")
        datamodule = getattr(trainer, "datamodule", None)
        data_classes = datamodule_num_classes(datamodule, "ClassificationAccuracyScore")
        if data_classes != num_classes:
            raise ValueError(
                f"ClassificationAccuracyScore: the model has num_classes={num_classes}, the data {data_classes} classes"
            )
        _, _, test_images = real_test_set(datamodule, "ClassificationAccuracyScore")  # refused now, not at the end
        rank_zero_info(f"ClassificationAccuracyScore: {self.metric_name}/accuracy on {test_images}")

    def evaluate(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Tensor]:
        result = None
        if getattr(trainer, "is_global_zero", True):
            result = classification_accuracy_score(
                pl_module, trainer.datamodule, num_per_class=self.num_per_class, epochs=self.epochs, seed=self.seed,
                device=pl_module.device, real_data_accuracy=self.real_data_accuracy, ema=self.ema, **self.options,
            )
        if int(getattr(trainer, "world_size", 1) or 1) > 1:
            result = trainer.strategy.broadcast(result, src=0)
        self.real_data_accuracy = result["real_data_accuracy"]
        prefix = self.metric_name
        return {
            f"{prefix}/accuracy": torch.tensor(result["cas"]),
            f"{prefix}/real_data_accuracy": torch.tensor(result["real_data_accuracy"]),
        }


__all__ = ["ClassificationAccuracyScore", "ConditionalAccuracy", "class_names", "metric_keys"]
