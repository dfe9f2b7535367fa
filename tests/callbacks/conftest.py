"""Random-weights files of the real architectures for the callbacks' Inception and VGG-16 paths (the real files
cannot be downloaded here)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from lit_gans.callbacks.features import INCEPTION_FILE, VGG16_FILE


@pytest.fixture(scope="session")
def calibrated_inception_home(inception_home, mnist_dir, tmp_path_factory) -> Path:
    """A ``TORCH_HOME`` with ``inception_home``'s random Inception whose BatchNorm statistics are set from a batch of
    digits (the last ones of the split, which the tests do not score). Uncalibrated, the activations shrink to ~1e-8
    over the 94 layers and every image gets the same uniform class posterior (an Inception Score of 1 from any
    layer); calibrated (and the classifier scaled up), digits get distinct, fairly confident logits, so a score
    over the logits and one over the pool features tell apart."""
    from torchmetrics.image.fid import NoTrainInceptionV3

    from lit_gans.datamodules import MNISTDataModule

    dm = MNISTDataModule(mnist_dir, download=False)
    dm.setup()
    calibration = dm.train_set.images[-16:].repeat(1, 3, 1, 1)  # uint8 digits, as held

    source = inception_home / "hub" / "checkpoints" / INCEPTION_FILE
    net = NoTrainInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(source))
    for bn in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.reset_running_stats()
        bn.momentum = None  # the running statistics become the batch's
    torch.nn.Module.train(net, True)  # NoTrainInceptionV3.train() refuses
    with torch.no_grad():
        net(calibration)
        net.fc.weight.mul_(20)  # logits of std ~5 instead of ~0.3: a confident posterior, a score well above 1
    home = tmp_path_factory.mktemp("torch_home_calibrated")
    target = home / "hub" / "checkpoints" / INCEPTION_FILE
    target.parent.mkdir(parents=True)
    torch.save(net.state_dict(), target)
    return home


@pytest.fixture(scope="session")
def vgg16_home(tmp_path_factory) -> Path:
    """A ``TORCH_HOME`` holding torchvision's VGG-16 weights file (``vgg16-397923af.pth``, the state dict that
    torch-fidelity's ``FeatureExtractorVGG16`` loads) with *random* weights of the right shapes, scaled like
    torchvision's initialisation. Each tensor is a strided view of a short random vector (``w[i, j, ...] =
    v[i + j + ...]``), which ``torch.save`` stores as the vector: 260 kB instead of 528 MB."""
    import torchvision

    with torch.device("meta"):
        shapes = {k: v.shape for k, v in torchvision.models.vgg16().state_dict().items()}
    g = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in shapes.items():
        if len(shape) == 1:
            state[key] = torch.randn(shape, generator=g) * 0.01
            continue
        std = math.sqrt(2 / (shape[0] * math.prod(shape[2:]))) if len(shape) == 4 else 0.01  # torchvision's init
        vector = torch.randn(sum(s - 1 for s in shape) + 1, generator=g) * std
        state[key] = vector.as_strided(shape, (1,) * len(shape))
    home = tmp_path_factory.mktemp("torch_home_vgg")
    target = home / "hub" / "checkpoints" / VGG16_FILE
    target.parent.mkdir(parents=True)
    torch.save(state, target)
    return home
