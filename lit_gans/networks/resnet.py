"""The ResNet network family of WGAN-GP (Gulrajani et al. 2017, "Improved Training of Wasserstein GANs") and
SNGAN (Miyato et al. 2018, "Spectral Normalization for Generative Adversarial Networks"; Miyato & Koyama 2018,
"cGANs with Projection Discriminator"), one file for every resolution.

Both networks are stacks of **pre-activation** residual blocks (He et al. 2016, "Identity Mappings in Deep
Residual Networks"): the normalization and the activation come *before* each convolution, and a block adds its
residual path to a shortcut.

* Generator block (:class:`ResNetGeneratorBlock`): ``BN -> ReLU -> nearest 2x up-sampling -> conv3x3 -> BN ->
  ReLU -> conv3x3``, shortcut ``up-sampling -> conv1x1``.
* Discriminator block (:class:`ResNetDiscriminatorBlock`): ``ReLU -> conv3x3 -> ReLU -> conv3x3 -> 2x2 average
  pooling``, shortcut ``conv1x1 -> average pooling`` (the identity in the one block that keeps the resolution
  and the channels).
* The discriminator's first block is SNGAN's "optimized" block (:class:`ResNetOptimizedBlock`): ``conv3x3 ->
  ReLU -> conv3x3 -> average pooling``, shortcut ``average pooling -> conv1x1``; no activation on the raw image.

The resolution is a parameter, as in the DCGAN family: an image of side ``S = base * 2**n`` (``base`` 4 or 7,
:func:`~lit_gans.networks.dcgan.resolution_stages`) takes ``n`` up-sampling blocks in G, from a ``base x base``
map that a linear layer makes of z, and ``n`` down-sampling blocks in D (the optimized one first), then one block
at ``base x base``, a ReLU and global **sum** pooling (SNGAN) to the features ``phi(x)`` of a linear output.

Channels: D has ``width * 2**i`` channels after its ``i``-th down-sampling block, and G has at every side the
channels D has there, but never fewer than ``width``: ``c0 = width * 2**(n-1)`` at ``base x base``, halved by
every block down to ``width``, which the last block keeps. Walks for ``width=64``:

* 32x32 (``n = 3``): G ``z -> 256x4x4 -> 128x8x8 -> 64x16x16 -> 64x32x32 -> 3x32x32``; D ``3x32x32 ->
  64x16x16 -> 128x8x8 -> 256x4x4 -> 256x4x4 -> phi 256 -> 1``.
* 128x128 (``n = 5``): G ``z -> 1024x4x4 -> 512x8x8 -> 256x16x16 -> 128x32x32 -> 64x64x64 -> 64x128x128 ->
  3x128x128``; D ``3x128x128 -> 64x64x64 -> 128x32x32 -> 256x16x16 -> 512x8x8 -> 1024x4x4 -> 1024x4x4 ->
  phi 1024 -> 1``.

The 128x128 discriminator is exactly SNGAN's (``ch=64``); SNGAN's 128x128 generator has the same ends (1024
channels at 4x4, 64 at 128x128) but keeps 1024 channels through its first block, so twice these channels from
8x8 to 64x64. The CIFAR-10 networks of both papers keep one width at every stage (128 in WGAN-GP; 256 in G and
128 in D in SNGAN) instead of doubling it.

Inside a block, G's first convolution maps to the block's output channels and D's keeps its input channels
(SNGAN's ``hidden_channels``). G's first convolution has no bias when a BatchNorm follows it (it would be
redundant); every other layer has one.

Initialization (as SNGAN's code and Mimicry): the 3x3 convolutions of the residual paths are
``xavier_uniform_`` with gain ``sqrt(2)`` (they follow ReLUs); the 1x1 shortcut convolutions, G's linear input
layer and output convolution and D's linear output layer (and an auxiliary classifier) ``xavier_uniform_`` with
gain 1; every bias zero; (conditional) BatchNorm gains 1 and biases 0.

Options:

* generator ``norm="none"``, no BatchNorm (it is ``"batch"`` otherwise); discriminator ``norm="layer"``:
  ``GroupNorm(1, C)`` before every activation inside its blocks (WGAN-GP's critic, whose per-sample penalty
  BatchNorm would break); ``"none"`` (default) for spectral normalization
  (:func:`~lit_gans.networks.layers.spectral_norm_`) or a gradient penalty.
* ``num_classes``, ``conditioning``: class-conditional networks (:mod:`lit_gans.networks.conditional`): G's
  BatchNorms become :class:`~lit_gans.networks.conditional.ConditionalBatchNorm` (projection, auxiliary) or a
  label embedding joins z (concat, or ``norm="none"``); D's input or output is conditioned by
  :class:`~lit_gans.networks.conditional.DiscriminatorConditioning` with ``phi`` the sum-pooled features.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional, Union

import torch  # noqa: F401  (the doctests use it)
from torch import Tensor, nn

from lit_gans.networks.conditional import (
    ConditionalBatchNorm,
    DiscriminatorConditioning,
    LabelledSequential,
    check_conditioning,
    input_dim,
    input_label_embedding,
)
from lit_gans.networks.dcgan import _square_shape, resolution_stages
from lit_gans.networks.layers import norm_2d
from lit_gans.validation import check_choice, check_int

GENERATOR_NORMS = ("batch", "none")
DISCRIMINATOR_NORMS = ("none", "layer")
RESIDUAL_GAIN = math.sqrt(2.0)


def _stages(image_size: int) -> tuple[int, int]:
    try:
        return resolution_stages(image_size)
    except ValueError:
        raise ValueError(
            f"image_size={image_size} is not supported by the ResNet family: it needs 4 * 2**n or 7 * 2**n with "
            "n >= 1 (e.g. 28, 32, 64, 128, 256)"
        ) from None


def _xavier_(layer: nn.Module, gain: float) -> nn.Module:
    nn.init.xavier_uniform_(layer.weight, gain)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def _conv3(c_in: int, c_out: int, bias: bool = True) -> nn.Conv2d:
    return _xavier_(nn.Conv2d(c_in, c_out, 3, 1, 1, bias=bias), RESIDUAL_GAIN)


def _conv1(c_in: int, c_out: int) -> nn.Conv2d:
    return _xavier_(nn.Conv2d(c_in, c_out, 1, 1, 0), 1.0)


class ResNetGeneratorBlock(nn.Module):
    """``x + F(x)`` up-sampled 2x: ``residual`` is ``norm -> ReLU -> nearest 2x -> conv3x3 -> norm -> ReLU ->
    conv3x3`` and ``shortcut`` ``nearest 2x -> conv1x1``.

    ``norm(channels)`` makes the normalization layers (``None``: none); a
    :class:`~lit_gans.networks.conditional.ConditionalBatchNorm` gets the labels of ``forward(x, labels)``.
    """

    takes_labels = True

    def __init__(self, in_channels: int, out_channels: int, norm=None) -> None:
        super().__init__()
        norm = norm or (lambda channels: None)
        first, second = norm(in_channels), norm(out_channels)
        layers: list[Optional[nn.Module]] = [
            first,
            nn.ReLU(),  # not in place: without a norm its input is the block's, which the shortcut reads
            nn.Upsample(scale_factor=2, mode="nearest"),
            _conv3(in_channels, out_channels, bias=second is None),  # a bias before a BatchNorm is redundant
            second,
            nn.ReLU(inplace=True),
            _conv3(out_channels, out_channels),
        ]
        self.residual = LabelledSequential(*[layer for layer in layers if layer is not None])
        self.shortcut = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), _conv1(in_channels, out_channels))

    def forward(self, x: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        return self.shortcut(x) + self.residual(x, labels)


class ResNetDiscriminatorBlock(nn.Module):
    """``x + F(x)``, optionally down-sampled 2x: ``residual`` is ``norm -> ReLU -> conv3x3 -> norm -> ReLU ->
    conv3x3 [-> avgpool 2x2]`` (``norm`` only for ``"layer"``) and ``shortcut`` ``conv1x1 [-> avgpool 2x2]``,
    or the identity when neither the channels nor the resolution change."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool = True, norm: str = "none") -> None:
        super().__init__()
        check_choice("norm", norm, DISCRIMINATOR_NORMS)
        layers: list[nn.Module] = []
        if norm != "none":
            layers.append(norm_2d(norm, in_channels))
        layers += [nn.ReLU(), _conv3(in_channels, in_channels)]  # not in place: the shortcut reads the input
        if norm != "none":
            layers.append(norm_2d(norm, in_channels))
        layers += [nn.ReLU(inplace=True), _conv3(in_channels, out_channels)]
        if downsample:
            layers.append(nn.AvgPool2d(2))
        self.residual = nn.Sequential(*layers)
        if downsample or in_channels != out_channels:
            shortcut = [_conv1(in_channels, out_channels)] + ([nn.AvgPool2d(2)] if downsample else [])
            self.shortcut: nn.Module = nn.Sequential(*shortcut)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.residual(x)


class ResNetOptimizedBlock(nn.Module):
    """SNGAN's first discriminator block, on the raw image: ``residual`` is ``conv3x3 -> norm -> ReLU ->
    conv3x3 -> avgpool 2x2`` (``norm`` only for ``"layer"``), ``shortcut`` ``avgpool 2x2 -> conv1x1``."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "none") -> None:
        super().__init__()
        check_choice("norm", norm, DISCRIMINATOR_NORMS)
        layers: list[nn.Module] = [_conv3(in_channels, out_channels)]
        if norm != "none":
            layers.append(norm_2d(norm, out_channels))
        layers += [nn.ReLU(inplace=True), _conv3(out_channels, out_channels), nn.AvgPool2d(2)]
        self.residual = nn.Sequential(*layers)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2), _conv1(in_channels, out_channels))

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.residual(x)


class GlobalSumPool2d(nn.Module):
    """``(N, C, H, W) -> (N, C)``, the sum over the positions (SNGAN's discriminators sum, not average)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.sum(dim=(2, 3))


class ResNetGenerator(nn.Module):
    """ResNet generator: a linear layer maps z to ``c0 x base x base``, ``n`` up-sampling residual blocks follow
    (``blocks``), then ``output``: BN -> ReLU -> conv3x3 to the image channels -> tanh (output in [-1, 1]).

    Args:
        latent_dim: size of z (128 in SNGAN and WGAN-GP).
        image_shape: ``(C, S, S)`` of the output; ``S = 4 * 2**n`` or ``7 * 2**n``.
        width: channels of the last blocks; ``c0 = width * 2**(n-1)``, halved by each block down to ``width``.
        norm: ``batch`` (the papers) or ``none``.
        num_classes: classes of a conditional generator (``forward(z, labels)``); 0: unconditional.
        conditioning: ``projection`` or ``auxiliary``: every BatchNorm is class-conditional
            (:class:`~lit_gans.networks.conditional.ConditionalBatchNorm`, SNGAN's conditional generator);
            ``concat``, or ``norm="none"``: a label embedding joins z before the linear layer.
        label_embedding_dim: size of that embedding (``num_classes`` by default).

    Example::

        >>> g = ResNetGenerator(16, (3, 32, 32), width=8)
        >>> g(torch.randn(2, 16)).shape
        torch.Size([2, 3, 32, 32])
        >>> ResNetGenerator(16, (1, 28, 28), width=8, num_classes=10)(torch.randn(2, 16), torch.tensor([3, 7])).shape
        torch.Size([2, 1, 28, 28])
    """

    def __init__(
        self,
        latent_dim: int = 128,
        image_shape: Sequence[int] = (3, 32, 32),
        width: int = 64,
        norm: str = "batch",
        num_classes: int = 0,
        conditioning: str = "projection",
        label_embedding_dim: Optional[int] = None,
    ) -> None:
        super().__init__()
        channels, size = _square_shape(image_shape)
        base, n = _stages(size)
        check_int("latent_dim", latent_dim)
        check_int("width", width)
        check_choice("norm", norm, GENERATOR_NORMS)
        check_conditioning(num_classes, conditioning)
        self.latent_dim, self.image_shape, self.num_classes = latent_dim, (channels, size, size), num_classes
        self.label_embedding = input_label_embedding(num_classes, conditioning, norm == "batch", label_embedding_dim)
        conditional_bn = bool(num_classes) and self.label_embedding is None

        def make_norm(c: int) -> Optional[nn.Module]:
            if norm == "none":
                return None
            return ConditionalBatchNorm(c, num_classes) if conditional_bn else nn.BatchNorm2d(c)

        self.widths = [width * 2 ** (n - 1)] + [width * 2 ** max(n - 2 - i, 0) for i in range(n)]
        self.base = base
        in_dim = input_dim(latent_dim, self.label_embedding)
        self.linear = _xavier_(nn.Linear(in_dim, self.widths[0] * base * base), 1.0)
        self.blocks = LabelledSequential(
            *[ResNetGeneratorBlock(c_in, c_out, make_norm) for c_in, c_out in zip(self.widths[:-1], self.widths[1:])]
        )
        out_layers = [make_norm(width), nn.ReLU(), _xavier_(nn.Conv2d(width, channels, 3, 1, 1), 1.0), nn.Tanh()]
        self.output = LabelledSequential(*[layer for layer in out_layers if layer is not None])

    def forward(self, z: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        z = z.flatten(1)
        if self.label_embedding is not None:
            z = self.label_embedding(z, labels)
        labels = labels if self.num_classes else None
        h = self.linear(z).view(z.shape[0], self.widths[0], self.base, self.base)
        return self.output(self.blocks(h, labels), labels)


class ResNetDiscriminator(nn.Module):
    """ResNet discriminator: the optimized block, ``n - 1`` more down-sampling blocks to ``base x base``, one
    block at that resolution and a ReLU (``trunk``, output ``(N, feature_dim, base, base)``), then global sum
    pooling to ``phi(x)`` of ``feature_dim = width * 2**(n-1)`` and a linear layer to one output (``head``).
    Returns raw outputs ``(N,)`` (no sigmoid: objectives work on logits).

    Args:
        image_shape: ``(C, S, S)`` of the input; ``S = 4 * 2**n`` or ``7 * 2**n``.
        width: channels of the first block; each down-sampling block doubles them.
        norm: ``none`` (SNGAN with spectral norm, WGAN-GP with its penalty) or ``layer`` (``GroupNorm(1, C)``
            before every activation inside the blocks: WGAN-GP's critic).
        num_classes: classes of a conditional discriminator (``forward(x, labels)``); 0: unconditional.
        conditioning: ``concat`` (the label as one more input channel), ``projection`` (``+ embed(y) . phi(x)``,
            SNGAN's conditional discriminator) or ``auxiliary`` (``forward`` returns ``(output, class_logits)``);
            see :class:`~lit_gans.networks.conditional.DiscriminatorConditioning`.

    Example::

        >>> d = ResNetDiscriminator((3, 32, 32), width=8)
        >>> d(torch.randn(2, 3, 32, 32)).shape, d.feature_dim
        (torch.Size([2]), 32)
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (3, 32, 32),
        width: int = 64,
        norm: str = "none",
        num_classes: int = 0,
        conditioning: str = "projection",
    ) -> None:
        super().__init__()
        channels, size = _square_shape(image_shape)
        base, n = _stages(size)
        check_int("width", width)
        check_choice("norm", norm, DISCRIMINATOR_NORMS)
        check_conditioning(num_classes, conditioning)
        self.image_shape = (channels, size, size)
        self.widths = [width * 2**i for i in range(n)]
        self.feature_dim, self.feature_size = self.widths[-1], base
        self.conditioning = (
            DiscriminatorConditioning(num_classes, conditioning, self.feature_dim, self.image_shape)
            if num_classes
            else None
        )
        c_in = self.conditioning.input_channels(channels) if self.conditioning is not None else channels
        blocks: list[nn.Module] = [ResNetOptimizedBlock(c_in, self.widths[0], norm)]
        blocks += [ResNetDiscriminatorBlock(a, b, True, norm) for a, b in zip(self.widths[:-1], self.widths[1:])]
        blocks.append(ResNetDiscriminatorBlock(self.feature_dim, self.feature_dim, False, norm))
        self.trunk = nn.Sequential(*blocks, nn.ReLU())
        self.head = nn.Sequential(GlobalSumPool2d(), _xavier_(nn.Linear(self.feature_dim, 1), 1.0))
        if self.conditioning is not None and conditioning == "auxiliary":
            _xavier_(self.conditioning.classifier, 1.0)

    def features(self, x: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        """``phi(x)``, ``(N, feature_dim)``: the sum-pooled output of the trunk."""
        if self.conditioning is not None:
            x = self.conditioning.join_input(x, labels)
        return self.head[0](self.trunk(x))

    def forward(self, x: Tensor, labels: Optional[Tensor] = None) -> Union[Tensor, tuple[Tensor, Tensor]]:
        phi = self.features(x, labels)
        out = self.head[1](phi).flatten()
        if self.conditioning is None:
            return out
        return self.conditioning.output(out, phi, labels)


__all__ = [
    "DISCRIMINATOR_NORMS",
    "GENERATOR_NORMS",
    "GlobalSumPool2d",
    "ResNetDiscriminator",
    "ResNetDiscriminatorBlock",
    "ResNetGenerator",
    "ResNetGeneratorBlock",
    "ResNetOptimizedBlock",
]
