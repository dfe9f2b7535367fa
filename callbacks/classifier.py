"""A small classifier trained once on a datamodule's labelled images (cached on disk), and the Classification
Accuracy Score of a class-conditional generator (Ravuri & Vinyals 2019).

The classifier scores class-conditional generators (:class:`~lit_gans.callbacks.conditional.ConditionalAccuracy`:
does a sample requested as class ``c`` look like class ``c``?) and gives data-specific features for FID
(``FIDCallback(feature_extractor="classifier")``). Its accuracy on held-out *real* images is kept with it, so that a
score can be read against what the classifier achieves on real data.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lit_gans.callbacks.features import MNISTClassifier
from lit_gans.datamodules.base import ImageTensorDataset, dataset_labels, float_images, uint8_to_unit_range
from lit_gans.datamodules.image_folder import default_cache_dir
from lit_gans.datamodules.mnist import MNISTDataModule
from lit_gans.files import atomic_write_bytes
from lit_gans.validation import check_float, check_int

#: bumped when the architecture or the training recipe changes: older cached classifiers are then retrained
CLASSIFIER_VERSION = 1
CLASSIFIER_CHOICES = "use 'auto', 'mnist', 'train' or an nn.Module with a logits method"


class DataClassifier(nn.Module):
    """A small CNN for images ``(C, S, S)`` in [-1, 1] and ``num_classes`` classes: stages of 3x3 convolution,
    BatchNorm, ReLU and 2x2 max-pooling (``width``, ``2 width``, ``4 width``, ... channels, at most ``8 width``) until
    the side is at most 8 px, then a ``num_features``-d fully connected layer (ReLU) and a linear classifier. 28 px
    digits with the defaults: two stages, about 207k parameters, ~1M multiply-adds per image; 64 px: three stages,
    549k parameters.

    ``forward`` returns the ``num_features``-d penultimate features (FID in the classifier's feature space),
    ``logits`` the class scores. Images of another side are resized (antialiased bilinear) to ``image_shape``.
    ``held_out_accuracy`` is its accuracy on real images it was not trained on (set by :func:`train_classifier`).

    Example::

        DataClassifier(num_classes=10, image_shape=(1, 28, 28))
    """

    def __init__(
        self, num_classes: int, image_shape: tuple[int, int, int], width: int = 16, num_features: int = 128
    ) -> None:
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        if len(image_shape) != 3 or image_shape[1] != image_shape[2] or image_shape[0] < 1 or image_shape[1] < 2:
            raise ValueError(f"image_shape={tuple(image_shape)!r} must be (channels, size, size) with size >= 2")
        self.image_shape = tuple(int(s) for s in image_shape)
        self.width = check_int("width", width)
        self.num_features = check_int("num_features", num_features)
        channels, side, layers = self.image_shape[0], self.image_shape[1], []
        stage = 0
        while side > 8 or stage == 0:
            out = width * 2 ** min(stage, 3)
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(), nn.MaxPool2d(2)]
            channels, side, stage = out, side // 2, stage + 1
        self.body = nn.Sequential(
            *layers, nn.Flatten(), nn.Linear(channels * side * side, num_features), nn.ReLU()
        )
        self.classifier = nn.Linear(num_features, num_classes)
        self.held_out_accuracy: Optional[float] = None

    def prepare(self, images: Tensor) -> Tensor:
        x = images.float()
        if x.shape[1] != self.image_shape[0]:
            if x.shape[1] == 3 and self.image_shape[0] == 1:
                x = x.mean(dim=1, keepdim=True)
            elif x.shape[1] == 1:
                x = x.expand(-1, self.image_shape[0], -1, -1)
            else:
                raise ValueError(
                    f"DataClassifier for {self.image_shape[0]}-channel images got images of {x.shape[1]} channels"
                )
        if tuple(x.shape[-2:]) != self.image_shape[1:]:
            x = F.interpolate(x, size=self.image_shape[1:], mode="bilinear", antialias=True, align_corners=False)
        return x

    def forward(self, images: Tensor) -> Tensor:
        return self.body(self.prepare(images))

    def logits(self, images: Tensor) -> Tensor:
        return self.classifier(self.forward(images))

    def hparams(self) -> dict[str, Any]:
        """The constructor arguments (what :func:`data_classifier` stores to rebuild it)."""
        return {
            "num_classes": self.num_classes, "image_shape": list(self.image_shape), "width": self.width,
            "num_features": self.num_features,
        }


# ---------------------------------------------------------------------------------------------------- training
def _shift(batch: Tensor, generator: torch.Generator) -> Tensor:
    """A random translation of the whole batch by up to 1/14 of the side (2 px at 28 px), with wrap-around."""
    limit = max(1, batch.shape[-1] // 14)
    dy, dx = (int(v) for v in torch.randint(-limit, limit + 1, (2,), generator=generator))
    return torch.roll(batch, shifts=(dy, dx), dims=(2, 3))


def fit_classifier(
    images: Tensor,
    labels: Tensor,
    num_classes: int,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 2e-3,
    width: int = 16,
    num_features: int = 128,
    augment: bool = True,
    seed: int = 0,
    device: Optional[Union[str, torch.device]] = None,
) -> DataClassifier:
    """Train a :class:`DataClassifier` on all of ``images`` (``(N, C, S, S)`` in [-1, 1]) and ``labels``
    (``(N,)`` class indices): Adam (``lr``, cosine schedule to 0) on the cross-entropy for ``epochs`` epochs, with
    random shifts (``augment``). Deterministic for a ``seed`` on one device type (initialisation and order come from
    it; the global RNG is left as it was). Returns it in eval mode, without gradients, on the CPU."""
    check_int("epochs", epochs)
    check_int("batch_size", batch_size)
    check_float("lr", lr)
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(
            f"fit_classifier needs as many labels as images, got {len(images)} images and {len(labels)} labels"
        )
    labels = labels.long()
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{int(labels.min())}, {int(labels.max())}]")
    device = torch.device(device) if device is not None else torch.device("cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DataClassifier(num_classes, tuple(images.shape[1:]), width=width, num_features=num_features)
    model.to(device).train()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = math.ceil(len(images) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    with torch.enable_grad(), torch.autocast(device_type=device.type, enabled=False):
        for _ in range(epochs):
            for index in torch.randperm(len(images), generator=generator).split(batch_size):
                batch = images[index].to(device).float()
                if augment:
                    batch = _shift(batch, generator)
                loss = F.cross_entropy(model.logits(batch), labels[index].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
    return model.cpu().eval().requires_grad_(False)


@torch.no_grad()
def predict(
    classifier: nn.Module, images: Tensor, batch_size: int = 500, device: Optional[torch.device] = None
) -> Tensor:
    """``argmax`` of ``classifier.logits`` (or of its output, without a ``logits`` method) over ``images``, on the
    CPU; computed in float32 on ``device`` (default: the classifier's)."""
    if device is None:
        parameter = next(iter(classifier.parameters()), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
    fn = getattr(classifier, "logits", classifier)
    out = []
    with torch.autocast(device_type=torch.device(device).type, enabled=False):
        for chunk in images.split(batch_size):
            out.append(fn(chunk.to(device).float()).argmax(1).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def classifier_accuracy(classifier: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 500) -> float:
    """The share of ``images`` whose predicted class is their label."""
    if len(images) == 0:
        raise ValueError("classifier_accuracy needs at least one image")
    return float((predict(classifier, images, batch_size) == labels.long().cpu()).float().mean())


def held_out_split(n: int, held_out: float, seed: int) -> tuple[Tensor, Tensor]:
    """``(train indices, held-out indices)``: a fixed fraction ``held_out`` of ``n``, drawn with ``seed``."""
    if not 0 < held_out < 1:
        raise ValueError(f"held_out={held_out!r} must be a fraction in (0, 1)")
    n_held = max(1, int(round(n * held_out)))
    if n_held >= n:
        raise ValueError(f"held_out={held_out!r} leaves no training images out of {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_held:], perm[:n_held]


def train_classifier(
    images: Tensor, labels: Tensor, num_classes: int, held_out: float = 0.1, seed: int = 0, **recipe: Any
) -> tuple[DataClassifier, float]:
    """Train a :class:`DataClassifier` on real labelled images and measure it on images it never saw.

    A fixed fraction ``held_out`` of ``images`` (drawn with ``seed``) is kept out of training; the classifier is
    trained on the rest (:func:`fit_classifier`, with ``seed`` and its other arguments, ``recipe``: ``epochs``,
    ``batch_size``, ``lr``, ``width``, ``num_features``, ``augment``, ``device``) and ``(classifier, accuracy on the
    held-out images)`` is returned (the accuracy also as ``classifier.held_out_accuracy``).

    Example::

        classifier, accuracy = train_classifier(images, labels, num_classes=10, epochs=5, seed=0)
    """
    train_idx, held_idx = held_out_split(len(images), held_out, seed)
    classifier = fit_classifier(images[train_idx], labels[train_idx], num_classes, seed=seed, **recipe)
    accuracy = classifier_accuracy(classifier, images[held_idx], labels[held_idx])
    classifier.held_out_accuracy = accuracy
    return classifier, accuracy


# ---------------------------------------------------------------------------------------------------- data access
def labelled_tensors(dataset: Dataset, what: str = "the data") -> tuple[Tensor, Tensor]:
    """``(images, labels)`` of a dataset of ``(image, label)`` pairs, the images float32 in [-1, 1] as the model
    receives them (uint8 images, as the datamodules hold them, are converted)."""
    if isinstance(dataset, (TensorDataset, ImageTensorDataset)):  # in memory: images as held (uint8) to [-1, 1]
        labels = dataset_labels(dataset)
        if labels is None:
            raise ValueError(f"{what} has no labels: a class classifier needs (image, label) pairs")
        return float_images(dataset), labels.long()
    images, labels = [], []
    for batch in DataLoader(dataset, batch_size=256):
        if not isinstance(batch, (list, tuple)) or len(batch) < 2:
            raise ValueError(f"{what} has no labels: a class classifier needs (image, label) pairs")
        images.append(uint8_to_unit_range(batch[0]))
        labels.append(torch.as_tensor(batch[1]).long())
    if not images:
        raise ValueError(f"{what} is empty")
    return torch.cat(images), torch.cat(labels)


def datamodule_num_classes(datamodule: Any, who: str) -> int:
    """``datamodule.num_classes`` (at least 2), or a one-line ValueError naming ``who``."""
    num_classes = getattr(datamodule, "num_classes", None)
    if not num_classes or num_classes < 2:
        raise ValueError(
            f"{who} needs labelled data with at least 2 classes; the datamodule has num_classes={num_classes}"
        )
    return int(num_classes)


def _train_set(datamodule: Any, who: str) -> Dataset:
    if getattr(datamodule, "train_set", None) is None and callable(getattr(datamodule, "setup", None)):
        datamodule.setup("fit")
    train_set = getattr(datamodule, "train_set", None)
    if train_set is None:
        raise ValueError(f"{who} needs a datamodule with a train_set of (image, label) pairs")
    return train_set


def real_test_set(datamodule: Any, who: str) -> tuple[Tensor, Tensor, str]:
    """``(images, labels, what they are)``: labelled real images that the generator never trained on, on which the
    Classification Accuracy Score is measured (Ravuri & Vinyals 2019 test on the real test set). The data's own
    test split (``datamodule.test_split()``: MNIST's 10k test digits), else its ``val_set`` (``val_split`` images
    held out of training). Never the training images, nor a part of them: the generator was fit to those.

    Raises:
        ValueError: in one line, naming ``who``, when the data has neither.
    """
    test_split = getattr(datamodule, "test_split", None)
    val_set = getattr(datamodule, "val_set", None)
    has_val = val_set is not None and len(val_set) > 0
    try:
        test_set = test_split() if callable(test_split) else None
    except FileNotFoundError:
        if not has_val:
            raise
        test_set = None  # the test split's files are missing; the held-out validation images serve
    if test_set is not None and len(test_set) > 0:
        images, labels = labelled_tensors(test_set, "the test split")
        return images, labels, f"the {len(images)} images of the data's test split"
    if has_val:
        images, labels = labelled_tensors(val_set, "the val_set")
        return images, labels, f"the {len(images)} validation images (val_split)"
    raise ValueError(
        f"{who} tests on real images the generator never trained on, and {type(datamodule).__name__} has no test "
        "split and no validation split: set the data's val_split (e.g. 0.1) to hold some out of training"
    )


def is_mnist_digits(datamodule: Any) -> bool:
    """Whether the data *is* MNIST's digits, so that the shipped digit classifier fits it: by the data's identity
    (``data_identity()``: an :class:`~lit_gans.datamodules.MNISTDataModule` with ``dataset="mnist"``, at any size),
    never by its shape. Ten classes of 1x28x28 images may be clothing (Fashion-MNIST), letters or any folders."""
    identity = getattr(datamodule, "data_identity", None)
    if not callable(identity):
        return False
    identity = identity()
    mnist = f"{MNISTDataModule.__module__}.{MNISTDataModule.__qualname__}"
    return identity.get("class") == mnist and identity.get("dataset") == "mnist"


def real_accuracy_of(classifier: nn.Module) -> Optional[float]:
    """The accuracy on real images a classifier carries: ``held_out_accuracy`` (:class:`DataClassifier`) or
    ``test_accuracy`` (:class:`~lit_gans.callbacks.features.MNISTClassifier`); ``None`` if it has neither."""
    for name in ("held_out_accuracy", "test_accuracy"):
        value = getattr(classifier, name, None)
        if value is not None:
            return float(value)
    return None


# ---------------------------------------------------------------------------------------------------- the cache
def classifier_cache_path(
    datamodule: Any, cache_dir: Optional[Union[str, os.PathLike]] = None, **options: Any
) -> Optional[Path]:
    """Where :func:`data_classifier` caches the classifier of ``datamodule`` trained with ``options``: keyed on
    ``datamodule.data_identity()``, the options and :data:`CLASSIFIER_VERSION`; ``None`` (not cached) when the
    datamodule has no ``data_identity``."""
    data_identity = getattr(datamodule, "data_identity", None)
    if not callable(data_identity):
        return None
    identity = {"data": data_identity(), "split": "train", "options": options, "version": CLASSIFIER_VERSION}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "classifier"
    return folder / f"classifier-{key}.pt"


def load_cached_classifier(path: Path) -> Optional[DataClassifier]:
    """The classifier cached at ``path``, or ``None`` if there is none (or it is unreadable or of another version)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("version") != CLASSIFIER_VERSION:
            return None
        hp = state["hparams"]
        model = DataClassifier(hp["num_classes"], tuple(hp["image_shape"]), hp["width"], hp["num_features"])
        model.load_state_dict(state["state_dict"])
    except Exception:
        return None
    model.held_out_accuracy = float(state["held_out_accuracy"])
    return model.eval().requires_grad_(False)


def data_classifier(
    datamodule: Any,
    cache_dir: Optional[Union[str, os.PathLike]] = None,
    held_out: float = 0.1,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 2e-3,
    width: int = 16,
    num_features: int = 128,
    augment: bool = True,
    max_images: Optional[int] = None,
    seed: int = 0,
    device: Optional[Union[str, torch.device]] = None,
) -> DataClassifier:
    """The :class:`DataClassifier` of a datamodule's labelled training images, trained once and cached.

    Trained by :func:`train_classifier` on ``datamodule.train_set`` (its first ``max_images`` images, if given),
    holding out a fixed fraction ``held_out`` (seeded) whose accuracy is kept as ``held_out_accuracy``. The weights
    and that accuracy are written (atomically: a temporary file renamed over the target) to
    ``<cache_dir>/classifier-<key>.pt``, the key a digest of ``datamodule.data_identity()`` and every argument
    that changes the classifier; the next call with the same data and arguments loads it instead of training.
    A datamodule without ``data_identity`` is not cached. The default ``cache_dir`` is
    ``<lit_gans cache>/classifier`` (``$LIT_GANS_CACHE``, else ``~/.cache/lit_gans``). The device it trains on
    (``device``, default CPU) is not part of the key.

    Example::

        classifier = data_classifier(CalligraphyDataModule("data/calligraphy/train"), epochs=10)
    """
    num_classes = datamodule_num_classes(datamodule, "data_classifier")
    max_images = check_int("max_images", max_images, minimum=2, optional=True)
    options = dict(
        held_out=held_out, epochs=epochs, batch_size=batch_size, lr=lr, width=width, num_features=num_features,
        augment=augment, max_images=max_images, seed=seed, num_classes=num_classes,
    )
    path = classifier_cache_path(datamodule, cache_dir, **options)
    if path is not None:
        cached = load_cached_classifier(path)
        if cached is not None:
            return cached
    images, labels = labelled_tensors(_train_set(datamodule, "data_classifier"), "the datamodule's train_set")
    if max_images is not None:
        images, labels = images[:max_images], labels[:max_images]
    rank_zero_info(
        f"data_classifier: training a {num_classes}-class classifier on {len(images)} real images "
        f"({held_out:.0%} held out){'' if path is None else f', cached as {path}'}"
    )
    classifier, accuracy = train_classifier(
        images, labels, num_classes, held_out=held_out, epochs=epochs, batch_size=batch_size, lr=lr, width=width,
        num_features=num_features, augment=augment, seed=seed, device=device,
    )
    if path is not None:
        buffer = io.BytesIO()
        torch.save(
            {
                "version": CLASSIFIER_VERSION, "state_dict": classifier.state_dict(), "hparams": classifier.hparams(),
                "held_out_accuracy": accuracy, "options": {k: v for k, v in options.items()},
                "train_images": len(images),
            },
            buffer,
        )
        atomic_write_bytes(path, buffer.getvalue())
    return classifier


def resolve_classifier(
    spec: Union[str, nn.Module], datamodule: Any, who: str, cache_dir: Optional[Union[str, os.PathLike]] = None,
    device: Optional[Union[str, torch.device]] = None, **options: Any,
) -> tuple[nn.Module, str]:
    """``(classifier, name)`` for ``spec``: ``"mnist"`` (the shipped digit classifier), ``"train"`` (the cached
    :func:`data_classifier` of ``datamodule``), ``"auto"`` (``"mnist"`` for MNIST digits, :func:`is_mnist_digits`,
    else ``"train"``) or a module with a ``logits`` method (used as it is)."""
    if isinstance(spec, nn.Module):
        if not callable(getattr(spec, "logits", None)):
            raise ValueError(f"{who}: classifier {type(spec).__name__} has no `logits(images) -> (N, classes)` method")
        return spec.eval().requires_grad_(False), type(spec).__name__
    if spec not in ("auto", "mnist", "train"):
        raise ValueError(f"{who}: classifier={spec!r} is not supported; {CLASSIFIER_CHOICES}")
    if spec == "auto":
        spec = "mnist" if is_mnist_digits(datamodule) else "train"
    if spec == "mnist":
        return MNISTClassifier.pretrained(), "mnist"
    if datamodule is None:
        raise ValueError(f"{who}: classifier='train' needs the trainer's datamodule (labelled training images)")
    return data_classifier(datamodule, cache_dir, device=device, **options), "train"


def shared_data_classifier(
    trainer: Any, who: str, spec: Union[str, nn.Module], cache_dir: Any, options: dict
) -> tuple[nn.Module, str]:
    """:func:`resolve_classifier` for ``trainer.datamodule`` under any number of processes: under DDP rank 0 trains
    (and caches) the data classifier first while the others wait, then they load it from the cache (or, for
    uncached data, train the same one from the same seed)."""
    datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
    world_size = int(getattr(trainer, "world_size", 1) or 1)
    strategy = getattr(trainer, "strategy", None)
    device = getattr(strategy, "root_device", None)
    if world_size > 1 and strategy is not None:
        result = None
        if trainer.is_global_zero:
            result = resolve_classifier(spec, datamodule, who, cache_dir, device=device, **options)
        strategy.barrier(f"{who}-classifier")
        if result is None:
            result = resolve_classifier(spec, datamodule, who, cache_dir, device=device, **options)
        return result
    return resolve_classifier(spec, datamodule, who, cache_dir, device=device, **options)


# ---------------------------------------------------------------------------------------------------- CAS
@torch.no_grad()
def generate_labelled(
    model: Any, num_classes: int, num_per_class: int, seed: int, batch_size: int = 250,
    ema: Optional[bool] = None, rank: int = 0, world_size: int = 1,
) -> tuple[Tensor, Tensor]:
    """``num_per_class`` samples of every class from a conditional ``model`` (``model.sample(z=..., labels=...)``)
    from fixed latents (``seed``): ``(images on the CPU, labels)``, labels ``0, 0, ..., 1, 1, ...``. With
    ``world_size > 1``, only this ``rank``'s share ``[rank::world_size]`` of that fixed set."""
    labels = torch.arange(num_classes).repeat_interleave(num_per_class)
    z = model.sample_latent(len(labels), generator=torch.Generator().manual_seed(seed))
    z, labels = z[rank::world_size], labels[rank::world_size]
    images = []
    for z_chunk, y_chunk in zip(z.split(batch_size), labels.split(batch_size)):
        kwargs = {} if ema is None else {"ema": ema}
        images.append(model.sample(z=z_chunk, labels=y_chunk.to(model.device), **kwargs).float().cpu())
    return (torch.cat(images) if images else torch.zeros(0)), labels


def balanced_subset(labels: Tensor, num_classes: int, num_per_class: int) -> Tensor:
    """Indices of the first ``num_per_class`` images of each class (all of a class that has fewer)."""
    picked = [torch.nonzero(labels == c).flatten()[:num_per_class] for c in range(num_classes)]
    return torch.cat(picked).sort().values


def classification_accuracy_score(
    model: Any,
    datamodule: Any,
    num_per_class: int = 500,
    epochs: int = 10,
    seed: int = 0,
    batch_size: int = 64,
    lr: float = 2e-3,
    width: int = 16,
    num_features: int = 128,
    augment: bool = True,
    sample_batch_size: int = 250,
    device: Optional[Union[str, torch.device]] = None,
    real_data_accuracy: Optional[float] = None,
    ema: Optional[bool] = None,
) -> dict[str, float]:
    """Classification Accuracy Score (Ravuri & Vinyals 2019, "Classification Accuracy Score for Conditional
    Generative Models"): train a classifier **only on the conditional generator's samples** (``num_per_class`` per
    class, labelled with the class they were requested as) and report its accuracy on **real** test images.
    A generator whose samples match their labels and cover each class's variety scores close to a classifier
    trained on as many real images; one that ignores labels scores at chance, one that collapses within classes
    scores low even when its samples look right (which FID and Inception Score miss).

    ``cas = mean_i [argmax f_fake(x_i) == y_i]`` over the real test images ``(x_i, y_i)``, with ``f_fake`` a
    :class:`DataClassifier` trained by :func:`fit_classifier` (``epochs``, ``seed``, ...) on the samples.
    ``real_data_accuracy`` is the same recipe trained on real training images (the first ``num_per_class`` of each
    class: as many as the generator gave) and tested on the same test images: the score's ceiling.

    The test images are real images the generator never trained on (:func:`real_test_set`): the data's own test
    split (MNIST's 10k test digits), else its ``val_set``; data with neither is refused. The samples come from
    fixed latents (``seed``), so successive values are comparable.

    Returns ``{"cas": ..., "real_data_accuracy": ...}``; pass a previous ``real_data_accuracy`` to skip its
    training (it does not depend on the generator). ``ema`` goes to ``model.sample`` (``None``: the
    weight-averaged generator whenever the model has one).

    Example::

        classification_accuracy_score(model, MNISTDataModule("data"), num_per_class=500, epochs=10, seed=0)
    """
    check_int("num_per_class", num_per_class)
    num_classes = datamodule_num_classes(datamodule, "classification_accuracy_score")
    model_classes = int(getattr(model, "num_classes", 0) or 0)
    if model_classes != num_classes:
        raise ValueError(
            f"classification_accuracy_score needs a conditional model of the data's {num_classes} classes; "
            f"{type(model).__name__} has num_classes={model_classes}"
        )
    images, labels = labelled_tensors(_train_set(datamodule, "classification_accuracy_score"), "the train_set")
    test_images, test_labels, _ = real_test_set(datamodule, "classification_accuracy_score")
    recipe = dict(
        epochs=epochs, batch_size=batch_size, lr=lr, width=width, num_features=num_features, augment=augment,
        seed=seed, device=device,
    )
    fake, fake_labels = generate_labelled(model, num_classes, num_per_class, seed, sample_batch_size, ema)
    fake = fake.clamp(-1, 1)
    on_fakes = fit_classifier(fake, fake_labels, num_classes, **recipe)
    cas = classifier_accuracy(on_fakes, test_images, test_labels)
    if real_data_accuracy is None:
        subset = balanced_subset(labels, num_classes, num_per_class)
        on_real = fit_classifier(images[subset], labels[subset], num_classes, **recipe)
        real_data_accuracy = classifier_accuracy(on_real, test_images, test_labels)
    return {"cas": cas, "real_data_accuracy": float(real_data_accuracy)}


__all__ = [
    "CLASSIFIER_VERSION",
    "DataClassifier",
    "classification_accuracy_score",
    "classifier_accuracy",
    "classifier_cache_path",
    "data_classifier",
    "fit_classifier",
    "held_out_split",
    "is_mnist_digits",
    "labelled_tensors",
    "predict",
    "real_accuracy_of",
    "real_test_set",
    "resolve_classifier",
    "train_classifier",
]
