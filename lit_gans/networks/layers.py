"""Building blocks shared by the network families: normalization and activation by name, and weight inits."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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


def taps_per_output(layer: nn.Module, input_size: Optional[Sequence[int]] = None) -> float:
    """Mean number of kernel taps that reach one output pixel of a 2-d (transposed) convolution: its effective
    fan-in is ``in_channels / groups`` times this.

    A convolution's kernel taps that fall on zero padding add nothing, and a transposed convolution of stride
    ``s`` feeds each output pixel only about ``(k / s)**2`` of its ``k * k`` taps (4 of 16 for the 4x4 stride-2
    up-sampling layers), or a single one when its input is 1x1 (DCGAN's projection of z). With ``input_size``
    (the layer's input height and width as used), the count is exact, averaged over the output pixels (border
    pixels get fewer taps); without it, the interior value (``k * k`` for a convolution, ``k * k / s**2`` for a
    transposed one).

    Example::

        >>> taps_per_output(nn.ConvTranspose2d(100, 8, 4, 1, 0), (1, 1))
        1.0
        >>> taps_per_output(nn.ConvTranspose2d(8, 4, 4, 2, 1))
        4.0
    """
    kh, kw = layer.kernel_size
    transposed = isinstance(layer, nn.ConvTranspose2d)
    if input_size is None or (not transposed and layer.padding_mode != "zeros"):  # non-zero padding: every tap counts
        if transposed:
            return kh * kw / (layer.stride[0] * layer.stride[1])
        return float(kh * kw)
    ones = torch.ones(1, 1, *input_size)
    kernel = torch.ones(1, 1, kh, kw)
    if transposed:
        counts = F.conv_transpose2d(
            ones, kernel, stride=layer.stride, padding=layer.padding, output_padding=layer.output_padding,
            dilation=layer.dilation,
        )
    else:
        padding = layer.padding if isinstance(layer.padding, str) else tuple(layer.padding)
        counts = F.conv2d(ones, kernel, stride=layer.stride, padding=padding, dilation=layer.dilation)
    return float(counts.mean())


def effective_fan_in(layer: nn.Module, input_size: Optional[Sequence[int]] = None) -> float:
    """Inputs that one output unit of ``layer`` sums: ``in_features`` of a linear layer, and
    ``in_channels / groups * taps_per_output`` of a convolution (see :func:`taps_per_output`). Torch's own
    ``_calculate_fan_in_and_fan_out`` counts ``in * k * k`` for both convolution kinds, four times (stride 2,
    4x4 kernel) to sixteen times (the 1x1 -> 4x4 projection) too many for transposed ones."""
    if isinstance(layer, nn.Linear):
        return float(layer.in_features)
    return layer.in_channels / layer.groups * taps_per_output(layer, input_size)


def layer_input_sizes(module: nn.Module, example_input: Union[Tensor, tuple]) -> dict[nn.Module, tuple[int, ...]]:
    """The spatial size of the input of every 2-d (transposed) convolution of ``module`` in a forward pass of
    ``example_input`` (one tensor, or a tuple of the forward's arguments: a conditional network's labels); run on
    the meta device (shapes only, no arithmetic), or on the real one when a layer has no meta implementation."""
    args = example_input if isinstance(example_input, tuple) else (example_input,)
    sizes: dict[nn.Module, tuple[int, ...]] = {}

    def record(layer: nn.Module, args: tuple) -> None:
        sizes.setdefault(layer, tuple(args[0].shape[2:]))

    convs = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    hooks = [m.register_forward_pre_hook(record) for m in convs]
    try:
        with torch.no_grad():
            try:
                state = {n: torch.empty_like(t, device="meta") for n, t in (*module.named_parameters(), *module.named_buffers())}
                torch.func.functional_call(module, state, tuple(a.to("meta") for a in args))
            except (NotImplementedError, RuntimeError):
                sizes.clear()
                module(*args)
    finally:
        for hook in hooks:
            hook.remove()
    return sizes


def lecun_normal_init_(module: nn.Module, example_input: Optional[Union[Tensor, tuple]] = None) -> None:
    """The initialization SELU needs for self-normalization (Klambauer et al. 2017): weights from
    N(0, 1/fan_in), biases zero, so that a unit-variance input gives unit-variance pre-activations.

    ``fan_in`` is the *effective* fan-in, :func:`effective_fan_in`: the inputs one output unit actually sums,
    which for a transposed convolution depends on its stride and on its input size (1x1 for DCGAN's
    projection of z). ``example_input`` (one batch of what ``module`` takes) gives every convolution's input
    size; without it, the size-independent interior count is used.
    """
    sizes = layer_input_sizes(module, example_input) if example_input is not None else {}
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            fan_in = effective_fan_in(m, sizes.get(m))
            nn.init.normal_(m.weight, 0.0, 1.0 / math.sqrt(fan_in))
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def init_weights_(module: nn.Module, activation_kind: str, example_input: Optional[Union[Tensor, tuple]] = None) -> None:
    """SELU networks get LeCun-normal weights (``example_input``: see :func:`lecun_normal_init_`); everything
    else the DCGAN initialization."""
    if activation_kind == "selu":
        lecun_normal_init_(module, example_input)
    else:
        dcgan_init_(module)


def has_batchnorm(module: nn.Module) -> bool:
    """Whether any layer of ``module`` is a BatchNorm (which mixes the samples of a batch)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def spectral_norm_(module: nn.Module) -> nn.Module:
    """Spectral normalization (Miyato et al. 2018, "Spectral Normalization for Generative Adversarial Networks")
    of every convolution and linear layer of ``module``, and of a projection discriminator's class embedding
    (:class:`~lit_gans.networks.conditional.ProjectionEmbedding`, SNGAN's ``SNEmbedID``), in place: each weight
    is divided by an estimate of its largest singular value (one power iteration per training forward), which
    bounds the layer's Lipschitz constant by 1. Uses ``torch.nn.utils.spectral_norm`` (state-dict keys ``weight_orig``, ``weight_u``, ``weight_v``)
    rather than its parametrization successor, which cannot be pickled and so breaks ``ddp_spawn``.

    Example::

        >>> d = spectral_norm_(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(16, 1)))
        >>> sorted(d[0].state_dict())
        ['bias', 'weight_orig', 'weight_u', 'weight_v']
    """
    for layer in list(module.modules()):
        if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)) or getattr(
            layer, "spectrally_normalized_with_discriminator", False
        ):
            if not hasattr(layer, "weight_orig"):  # not normalized already
                nn.utils.spectral_norm(layer)
    return module
