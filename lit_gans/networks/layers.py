"""Building blocks shared by the network families: normalization and activation by name, and weight inits."""

from __future__ import annotations

import math

from torch import nn

from lit_gans.validation import check_choice

NORMS = ("batch", "layer", "instance", "none")
ACTIVATIONS = ("relu", "leaky_relu", "selu", "tanh")


def norm_2d(kind: str, channels: int) -> nn.Module:
    """A normalization layer for ``(N, C, H, W)`` activations.

    ``layer`` normalizes each sample over (C, H, W) (``GroupNorm`` with one group), so per-sample gradient
    penalties stay per-sample, unlike BatchNorm.
    """
    check_choice("norm", kind, NORMS)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


def norm_1d(kind: str, features: int) -> nn.Module:
    check_choice("norm", kind, NORMS)
    if kind == "batch":
        return nn.BatchNorm1d(features)
    if kind in ("layer", "instance"):
        return nn.LayerNorm(features)
    return nn.Identity()


def activation(kind: str, negative_slope: float = 0.2) -> nn.Module:
    check_choice("activation", kind, ACTIVATIONS)
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "leaky_relu":
        return nn.LeakyReLU(negative_slope, inplace=True)
    if kind == "selu":
        return nn.SELU(inplace=True)
    return nn.Tanh()


def dcgan_init_(module: nn.Module) -> None:
    """Radford et al. 2016, sec. 4: weights from N(0, 0.02); BatchNorm scale from N(1, 0.02), biases zero."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm, nn.InstanceNorm2d, nn.LayerNorm)):
            if m.weight is not None:
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)


def lecun_normal_init_(module: nn.Module) -> None:
    """The initialization SELU needs for self-normalization (Klambauer et al. 2017): N(0, 1/fan_in)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
            if isinstance(m, nn.ConvTranspose2d):  # its weight is (in, out, k, k): torch's "fan_out" is the fan-in
                fan_in = fan_out
            nn.init.normal_(m.weight, 0.0, 1.0 / math.sqrt(fan_in))
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def init_weights_(module: nn.Module, activation_kind: str) -> None:
    """SELU networks get LeCun-normal weights; everything else the DCGAN initialization."""
    (lecun_normal_init_ if activation_kind == "selu" else dcgan_init_)(module)


def has_batchnorm(module: nn.Module) -> bool:
    """Whether any layer of ``module`` is a BatchNorm (which mixes the samples of a batch)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def spectral_norm_(module: nn.Module) -> nn.Module:
    """Spectral normalization (Miyato et al. 2018, "Spectral Normalization for Generative Adversarial Networks")
    of every convolution and linear layer of ``module``, in place: each weight is divided by an estimate of its
    largest singular value (one power iteration per training forward), which bounds the layer's Lipschitz constant
    by 1. Uses ``torch.nn.utils.spectral_norm`` (state-dict keys ``weight_orig``, ``weight_u``, ``weight_v``)
    rather than its parametrization successor, which cannot be pickled and so breaks ``ddp_spawn``.

    Example::

        >>> d = spectral_norm_(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(16, 1)))
        >>> sorted(d[0].state_dict())
        ['bias', 'weight_orig', 'weight_u', 'weight_v']
    """
    for layer in list(module.modules()):
        if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)):
            if not hasattr(layer, "weight_orig"):  # not normalized already
                nn.utils.spectral_norm(layer)
    return module
