"""Feature extractors for FID/KID/IS: the standard Inception (torch-fidelity's weights, local path honoured, a clear
error offline), a small MNIST classifier shipped with the package, or any ``nn.Module``."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"
MNIST_WEIGHTS = Path(__file__).parent / "weights" / "mnist_classifier.pt"


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


def inception_weights_path(weights_path: Optional[Union[str, os.PathLike]] = None, download: bool = True) -> Path:
    """The torch-fidelity Inception weights: ``weights_path`` if given, else torch hub's cache
    (``$TORCH_HOME/hub/checkpoints``); downloaded there if missing and ``download``.

    Raises:
        FileNotFoundError: naming the file and where to put it, when it is missing and cannot be downloaded (no
            network: it fails within seconds rather than hanging).
    """
    if weights_path is not None:
        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(f"Inception weights not found at weights_path={str(path)!r}")
        return path
    path = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    if path.is_file():
        return path
    hint = (
        f"The Inception weights for FID/KID/IS are missing: put {INCEPTION_FILE} (from {INCEPTION_URL}) at {path} "
        f"(torch hub's cache, set by $TORCH_HOME), or pass weights_path=/path/to/{INCEPTION_FILE}; "
        "or use feature_extractor='mnist' or your own nn.Module."
    )
    if not download:
        raise FileNotFoundError(hint)
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(15)  # a closed network must fail fast, not hang the run
    try:
        torch.hub.download_url_to_file(INCEPTION_URL, str(path), progress=False)
    except Exception as err:
        raise FileNotFoundError(f"{hint} (download failed: {err})") from err
    finally:
        socket.setdefaulttimeout(previous)
    return path


__all__ = ["MNISTClassifier", "inception_weights_path", "INCEPTION_FILE", "INCEPTION_URL"]
