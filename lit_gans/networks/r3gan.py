"""R3GAN's networks (Huang et al. 2024, "The GAN is dead; long live the GAN! A Modern GAN Baseline";
brownvc/R3GAN ``R3GAN/Networks.py``): a normalization-free modern ResNet, one file for every resolution.

* Residual block (:class:`R3GANBlock`): ``x + conv1x1(act(conv3x3_grouped(act(conv1x1(x)))))``, an inverted
  bottleneck (the inner convolutions have ``expansion`` times the channels, the 3x3 one in groups of
  ``channels_per_group``), leaky ReLU (0.2) with a learned bias per channel, **no normalization layer**.
* Initialization (the paper's "fix-up" scaling): every convolution ``N(0, gain^2 / fan_in)`` with the leaky
  ReLU's gain ``sqrt(2 / (1 + 0.2^2))`` times ``L^(-1/4)`` for the first two convolutions of a block (``L`` the
  number of blocks in the network), and the **last convolution of each block zero**, so every block starts as the
  identity.
* Resampling: bilinear 2x up-sampling in G, and 2x down-sampling with the matching anti-aliasing filter (R3GAN's
  ``[1, 2, 1]`` interpolative resamplers) in D; a 1x1 convolution changes the channels at a transition.
* G starts from a learned ``base x base`` basis modulated per channel by a linear map of z (its
  ``GenerativeBasis``) and ends with a 1x1 convolution to the image, no tanh; D starts with a 1x1 convolution of
  the image and ends with a depthwise ``base x base`` convolution and a linear map (its ``DiscriminativeBasis``).
* Class conditioning by projection: G takes a label embedding beside z; D's final linear map gives an embedding
  of the features that is multiplied with a label embedding and summed (R3GAN's conditional D).

The resolution is a parameter (``S = base * 2**n``, ``base`` 4 or 7, :func:`~lit_gans.networks.resolution_stages`):
``n + 1`` stages, one per resolution, each with ``blocks_per_stage`` blocks, all of ``width`` channels (R3GAN's
CIFAR-10 preset: width 768, 2 blocks, cardinality 96, i.e. 16 channels per group, expansion 2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import torch  # noqa: F401  (the doctests use it)
import torch.nn.functional as F
from torch import Tensor, nn

from lit_gans.networks.conditional import check_labels
from lit_gans.networks.dcgan import _square_shape, resolution_stages
from lit_gans.validation import check_int

LEAKY_SLOPE = 0.2
ACTIVATION_GAIN = math.sqrt(2 / (1 + LEAKY_SLOPE**2))


def _msr_init_(layer: nn.Module, gain: float = 1.0) -> nn.Module:
    """``N(0, gain^2 / fan_in)`` (R3GAN's ``MSRInitializer``); zero when ``gain`` is 0."""
    fan_in = layer.weight[0].numel()
    nn.init.normal_(layer.weight, 0.0, gain / math.sqrt(fan_in))
    return layer


def _conv(c_in: int, c_out: int, kernel: int = 1, groups: int = 1, gain: float = 1.0) -> nn.Conv2d:
    return _msr_init_(nn.Conv2d(c_in, c_out, kernel, padding=(kernel - 1) // 2, groups=groups, bias=False), gain)


class BiasedLeakyReLU(nn.Module):
    """``leaky_relu(x + b, 0.2)`` with a learned bias per channel (the only biases of the networks)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x + self.bias.view(1, -1, *([1] * (x.dim() - 2))).to(x.dtype), LEAKY_SLOPE)


class R3GANBlock(nn.Module):
    """``x + conv1x1(act(grouped conv3x3(act(conv1x1(x)))))`` with ``expansion * channels`` inner channels; the
    last convolution starts at zero. ``num_blocks`` (of the whole network) sets the variance scaling."""

    def __init__(self, channels: int, num_blocks: int, expansion: int = 2, channels_per_group: int = 16) -> None:
        super().__init__()
        inner = channels * expansion
        if inner % channels_per_group:
            raise ValueError(
                f"channels_per_group={channels_per_group} must divide the block's {inner} inner channels "
                f"(width {channels} x expansion {expansion})"
            )
        gain = ACTIVATION_GAIN * num_blocks ** (-1 / 4)  # L^(-1 / (2 * 3 - 2)) for three convolutions
        self.expand = _conv(channels, inner, 1, gain=gain)
        self.act1 = BiasedLeakyReLU(inner)
        self.spatial = _conv(inner, inner, 3, groups=inner // channels_per_group, gain=gain)
        self.act2 = BiasedLeakyReLU(inner)
        self.project = _conv(inner, channels, 1, gain=0.0)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.project(self.act2(self.spatial(self.act1(self.expand(x)))))


_DOWNSAMPLE_TAPS = (1 / 8, 3 / 8, 3 / 8, 1 / 8)


def _antialiased_downsample(x: Tensor) -> Tensor:
    """2x down-sampling with the separable ``[1, 3, 3, 1] / 8`` filter (bilinear's, widened for the factor 2) and
    zero padding: R3GAN's interpolative down-sampler (upfirdn2d's ``downsample2d``). A depthwise convolution, so
    that it runs in every dtype (torch's antialiased interpolation has no bfloat16 kernel on CPUs)."""
    taps = torch.tensor(_DOWNSAMPLE_TAPS, dtype=x.dtype, device=x.device)
    kernel = torch.outer(taps, taps).expand(x.shape[1], 1, 4, 4)
    return F.conv2d(x, kernel, stride=2, padding=1, groups=x.shape[1])


def _check_block_settings(width: int, blocks_per_stage: int, expansion: int, channels_per_group: int) -> None:
    for name, value in (("width", width), ("blocks_per_stage", blocks_per_stage), ("expansion", expansion),
                        ("channels_per_group", channels_per_group)):  # fmt: skip
        check_int(name, value)


class R3GANGenerator(nn.Module):
    """R3GAN's generator (module docstring).

    Args:
        latent_dim: size of z (64 in R3GAN's presets).
        image_shape: ``(C, S, S)``; ``S = 4 * 2**n`` or ``7 * 2**n``.
        width: channels of every stage.
        blocks_per_stage: residual blocks per resolution.
        expansion: inner channels of a block, as a multiple of ``width``.
        channels_per_group: channels per group of the grouped 3x3 convolutions.
        num_classes: classes of a conditional generator (``forward(z, labels)``); 0: unconditional.
        label_embedding_dim: size of the label embedding joined to z (``latent_dim`` by default, as R3GAN).

    Example::

        >>> g = R3GANGenerator(16, (3, 32, 32), width=32, blocks_per_stage=1)
        >>> g(torch.randn(2, 16)).shape
        torch.Size([2, 3, 32, 32])
    """

    def __init__(
        self,
        latent_dim: int = 64,
        image_shape: Sequence[int] = (3, 32, 32),
        width: int = 256,
        blocks_per_stage: int = 2,
        expansion: int = 2,
        channels_per_group: int = 16,
        num_classes: int = 0,
        label_embedding_dim: Optional[int] = None,
    ) -> None:
        super().__init__()
        channels, size = _square_shape(image_shape)
        self.base, n = resolution_stages(size)
        check_int("latent_dim", latent_dim)
        _check_block_settings(width, blocks_per_stage, expansion, channels_per_group)
        self.latent_dim, self.image_shape, self.num_classes = latent_dim, (channels, size, size), num_classes
        self.label_embedding = None
        in_dim = latent_dim
        if num_classes:
            dim = label_embedding_dim or latent_dim
            self.label_embedding = nn.Embedding(num_classes, dim)
            # a linear map of the one-hot label, MSR-initialized: fan-in num_classes
            nn.init.normal_(self.label_embedding.weight, 0.0, 1 / math.sqrt(num_classes))
            in_dim += dim
        num_blocks = blocks_per_stage * (n + 1)
        self.basis = nn.Parameter(torch.randn(width, self.base, self.base))
        self.basis_scale = _msr_init_(nn.Linear(in_dim, width, bias=False))
        self.stages = nn.ModuleList(
            nn.Sequential(*[R3GANBlock(width, num_blocks, expansion, channels_per_group) for _ in range(blocks_per_stage)])
            for _ in range(n + 1)
        )
        self.to_image = _conv(width, channels, 1)

    def forward(self, z: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        z = z.flatten(1)
        if self.label_embedding is not None:
            labels = check_labels(labels, self.num_classes, "the generator")
            z = torch.cat([z, self.label_embedding(labels).to(z.dtype)], dim=1)
        x = self.basis.unsqueeze(0).to(z.dtype) * self.basis_scale(z).view(z.shape[0], -1, 1, 1)
        for i, stage in enumerate(self.stages):
            if i:
                x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = stage(x)
        return self.to_image(x)


class R3GANDiscriminator(nn.Module):
    """R3GAN's discriminator (module docstring); returns raw outputs ``(N,)``.

    Args:
        image_shape: ``(C, S, S)`` of the input.
        width, blocks_per_stage, expansion, channels_per_group: as :class:`R3GANGenerator`.
        num_classes: classes of a conditional discriminator (``forward(x, labels)``): the output is
            ``embed(y) . psi(x)`` with ``psi`` the final linear map to ``width`` features; 0: unconditional.

    Example::

        >>> d = R3GANDiscriminator((1, 28, 28), width=32, blocks_per_stage=1, num_classes=10)
        >>> d(torch.randn(2, 1, 28, 28), torch.tensor([3, 7])).shape
        torch.Size([2])
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (3, 32, 32),
        width: int = 256,
        blocks_per_stage: int = 2,
        expansion: int = 2,
        channels_per_group: int = 16,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        channels, size = _square_shape(image_shape)
        self.base, n = resolution_stages(size)
        _check_block_settings(width, blocks_per_stage, expansion, channels_per_group)
        self.image_shape, self.num_classes = (channels, size, size), num_classes
        num_blocks = blocks_per_stage * (n + 1)
        self.from_image = _conv(channels, width, 1)
        self.stages = nn.ModuleList(
            nn.Sequential(*[R3GANBlock(width, num_blocks, expansion, channels_per_group) for _ in range(blocks_per_stage)])
            for _ in range(n + 1)
        )
        self.basis = _msr_init_(nn.Conv2d(width, width, self.base, groups=width, bias=False))
        out_dim = width if num_classes else 1
        self.head = _msr_init_(nn.Linear(width, out_dim, bias=False))
        self.label_embedding = None
        if num_classes:
            self.label_embedding = nn.Embedding(num_classes, width)
            # MSR with gain 1/sqrt(width) on the one-hot label (fan-in num_classes), as R3GAN's
            nn.init.normal_(self.label_embedding.weight, 0.0, 1 / math.sqrt(width * num_classes))

    def forward(self, x: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        x = self.from_image(x)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i < len(self.stages) - 1:
                x = _antialiased_downsample(x)
        out = self.head(self.basis(x).flatten(1))
        if self.label_embedding is None:
            return out.flatten()
        labels = check_labels(labels, self.num_classes, "the discriminator")
        return (out * self.label_embedding(labels).to(out.dtype)).sum(dim=1)


__all__ = ["BiasedLeakyReLU", "R3GANBlock", "R3GANDiscriminator", "R3GANGenerator"]
