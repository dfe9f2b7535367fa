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
map that a linear layer makes of z, then BatchNorm -> ReLU -> conv3x3 -> tanh. D is the optimized block and more
blocks, a ReLU and global **sum** pooling (SNGAN) to the features ``phi(x)`` of a linear output.

Layouts (``layout``): ``"sngan"`` (default) has the shapes of SNGAN's networks (pfnet-research/sngan_projection),
``width`` playing SNGAN's ``ch``:

* ``n <= 3`` (28 and 32 px; SNGAN's ``resnet_32`` / ``snresnet_32``, its CIFAR-10 networks): one width
  everywhere. G ``z -> width x base x base`` and ``n`` blocks of ``width``; D down-samples twice (``32 -> 16 ->
  8``, ``28 -> 14 -> 7``) and adds two blocks at that resolution. SNGAN's CIFAR-10 sizes are
  ``generator_width=256, discriminator_width=128``.
* ``n >= 4`` (64 px and up; ``resnet_64`` / ``snresnet_64``, ``resnet`` / ``snresnet_128``, ``snresnet_256``): G
  starts at ``16 * width`` on ``base x base`` and halves to ``width`` at the image (never more than
  ``16 * width``: at 128 px the first block keeps 1024 channels for ``width=64``). At 64 px D doubles from
  ``width`` through five down-sampling blocks to ``16 * width`` on 2x2; from 128 px it down-samples to
  ``base x base`` with ``width * (1, 2, 4, 8, 8, ..., 16)`` channels and adds one block of ``16 * width``.

Walks for ``width=64``:

* 32x32: G ``z -> 64x4x4 -> 64x8x8 -> 64x16x16 -> 64x32x32 -> 3x32x32``; D ``3x32x32 -> 64x16x16 -> 64x8x8 ->
  64x8x8 -> 64x8x8 -> phi 64 -> 1``.
* 64x64: G ``z -> 1024x4x4 -> 512x8x8 -> 256x16x16 -> 128x32x32 -> 64x64x64 -> 3x64x64``; D ``3x64x64 ->
  64x32x32 -> 128x16x16 -> 256x8x8 -> 512x4x4 -> 1024x2x2 -> phi 1024 -> 1``.
* 128x128: G ``z -> 1024x4x4 -> 1024x8x8 -> 512x16x16 -> 256x32x32 -> 128x64x64 -> 64x128x128 -> 3x128x128``;
  D ``3x128x128 -> 64x64x64 -> 128x32x32 -> 256x16x16 -> 512x8x8 -> 1024x4x4 -> 1024x4x4 -> phi 1024 -> 1``.

``"compact"`` is lit-gans 0.1's narrower family (and loads its checkpoints): D doubles from ``width`` to
``base x base`` and adds one block there (``width * 2**(n-1)`` features); G has at every side the channels D has
there, never fewer than ``width`` (``width * 2**(n-1)`` at ``base x base``); its output BatchNorm is
class-conditional for a conditional G. At 128 px its D is SNGAN's and its G has half SNGAN's channels from 8x8 to
64x64; at 64 px it ends at 512 channels on 4x4 (one block fewer than SNGAN's 2x2 down-sampling), at 32 px on 4x4.

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
* ``num_classes``, ``conditioning``: class-conditional networks (:mod:`lit_gans.networks.conditional`): the
  BatchNorms of G's blocks become :class:`~lit_gans.networks.conditional.ConditionalBatchNorm` (projection, auxiliary) or a
  label embedding joins z (concat, or ``norm="none"``); the BatchNorm before G's output convolution stays plain,
  as SNGAN's. D's input or output is conditioned by
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
LAYOUTS = ("sngan", "compact")
RESIDUAL_GAIN = math.sqrt(2.0)


def _stages(image_size: int) -> tuple[int, int]:
    try:
        return resolution_stages(image_size)
    except ValueError:
        raise ValueError(
            f"image_size={image_size} is not supported by the ResNet family: it needs 4 * 2**n or 7 * 2**n with "
            "n >= 1 (e.g. 28, 32, 64, 128, 256)"
        ) from None


def generator_widths(image_size: int, width: int, layout: str = "sngan") -> list[int]:
    """G's channels at ``base x base`` and after each up-sampling block (the module docstring's layouts).

    Example::

        >>> generator_widths(64, 64), generator_widths(128, 64)[:3], generator_widths(32, 256)
        ([1024, 512, 256, 128, 64], [1024, 1024, 512], [256, 256, 256, 256])
    """
    check_choice("layout", layout, LAYOUTS)
    _, n = _stages(image_size)
    if layout == "compact":
        return [width * 2 ** (n - 1)] + [width * 2 ** max(n - 2 - i, 0) for i in range(n)]
    if n <= 3:
        return [width] * (n + 1)
    return [width * min(16, 2 ** (n - i)) for i in range(n + 1)]


def discriminator_blocks(image_size: int, width: int, layout: str = "sngan") -> list[tuple[int, bool]]:
    """``(output channels, down-samples)`` of each of D's blocks, the optimized first block included (the module
    docstring's layouts).

    Example::

        >>> discriminator_blocks(32, 128)
        [(128, True), (128, True), (128, False), (128, False)]
        >>> [c for c, _ in discriminator_blocks(64, 64)], discriminator_blocks(128, 64)[-2:]
        ([64, 128, 256, 512, 1024], [(1024, True), (1024, False)])
    """
    check_choice("layout", layout, LAYOUTS)
    base, n = _stages(image_size)
    if layout == "compact":
        return [(width * 2**i, True) for i in range(n)] + [(width * 2 ** (n - 1), False)]
    if n <= 3:
        return [(width, True)] * min(2, n) + [(width, False)] * 2
    if n == 4 and base == 4:  # snresnet_64: five down-sampling blocks to 2x2
        return [(width * 2**i, True) for i in range(5)]
    multiples = [min(2**i, 8) for i in range(n - 1)]
    multiples.append(min(2 * multiples[-1], 16))
    return [(width * m, True) for m in multiples] + [(width * multiples[-1], False)]


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
        width: SNGAN's ``ch``: G's channels at the image's resolution (:func:`generator_widths`).
        norm: ``batch`` (the papers) or ``none``.
        num_classes: classes of a conditional generator (``forward(z, labels)``); 0: unconditional.
        conditioning: ``projection`` or ``auxiliary``: every BatchNorm is class-conditional
            (:class:`~lit_gans.networks.conditional.ConditionalBatchNorm`, SNGAN's conditional generator);
            ``concat``, or ``norm="none"``: a label embedding joins z before the linear layer.
        label_embedding_dim: size of that embedding (``num_classes`` by default).
        layout: ``sngan`` (SNGAN's shapes) or ``compact`` (lit-gans 0.1's); see the module docstring.

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
        layout: str = "sngan",
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

        self.widths = generator_widths(size, width, layout)
        self.base = base
        in_dim = input_dim(latent_dim, self.label_embedding)
        self.linear = _xavier_(nn.Linear(in_dim, self.widths[0] * base * base), 1.0)
        self.blocks = LabelledSequential(
            *[ResNetGeneratorBlock(c_in, c_out, make_norm) for c_in, c_out in zip(self.widths[:-1], self.widths[1:])]
        )
        # SNGAN's output BatchNorm is plain; lit-gans 0.1's (compact) was class-conditional
        out_norm = make_norm(width) if layout == "compact" or norm == "none" else nn.BatchNorm2d(width)
        out_layers = [out_norm, nn.ReLU(), _xavier_(nn.Conv2d(width, channels, 3, 1, 1), 1.0), nn.Tanh()]
        self.output = LabelledSequential(*[layer for layer in out_layers if layer is not None])

    def forward(self, z: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        z = z.flatten(1)
        if self.label_embedding is not None:
            z = self.label_embedding(z, labels)
        labels = labels if self.num_classes else None
        h = self.linear(z).view(z.shape[0], self.widths[0], self.base, self.base)
        return self.output(self.blocks(h, labels), labels)


class ResNetDiscriminator(nn.Module):
    """ResNet discriminator: the optimized block and the blocks of :func:`discriminator_blocks`, then a ReLU
    (``trunk``, output ``(N, feature_dim, feature_size, feature_size)``), global sum pooling to ``phi(x)`` and a
    linear layer to one output (``head``). Returns raw outputs ``(N,)`` (no sigmoid: objectives work on logits).

    Args:
        image_shape: ``(C, S, S)`` of the input; ``S = 4 * 2**n`` or ``7 * 2**n``.
        width: SNGAN's ``ch``: the channels of the first block (:func:`discriminator_blocks`).
        norm: ``none`` (SNGAN with spectral norm, WGAN-GP with its penalty) or ``layer`` (``GroupNorm(1, C)``
            before every activation inside the blocks: WGAN-GP's critic).
        num_classes: classes of a conditional discriminator (``forward(x, labels)``); 0: unconditional.
        conditioning: ``concat`` (the label as one more input channel), ``projection`` (``+ embed(y) . phi(x)``,
            SNGAN's conditional discriminator) or ``auxiliary`` (``forward`` returns ``(output, class_logits)``);
            see :class:`~lit_gans.networks.conditional.DiscriminatorConditioning`.
        layout: ``sngan`` (SNGAN's shapes) or ``compact`` (lit-gans 0.1's); see the module docstring.

    Example::

        >>> d = ResNetDiscriminator((3, 32, 32), width=8)
        >>> d(torch.randn(2, 3, 32, 32)).shape, d.feature_dim, d.feature_size
        (torch.Size([2]), 8, 8)
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (3, 32, 32),
        width: int = 64,
        norm: str = "none",
        num_classes: int = 0,
        conditioning: str = "projection",
        layout: str = "sngan",
    ) -> None:
        super().__init__()
        channels, size = _square_shape(image_shape)
        check_int("width", width)
        check_choice("norm", norm, DISCRIMINATOR_NORMS)
        check_conditioning(num_classes, conditioning)
        self.image_shape = (channels, size, size)
        plan = discriminator_blocks(size, width, layout)
        self.widths = [c for c, _ in plan]
        self.feature_dim = self.widths[-1]
        self.feature_size = size >> sum(down for _, down in plan)
        self.conditioning = (
            DiscriminatorConditioning(num_classes, conditioning, self.feature_dim, self.image_shape)
            if num_classes
            else None
        )
        c_in = self.conditioning.input_channels(channels) if self.conditioning is not None else channels
        blocks: list[nn.Module] = [ResNetOptimizedBlock(c_in, self.widths[0], norm)]
        blocks += [
            ResNetDiscriminatorBlock(c_prev, c, down, norm) for c_prev, (c, down) in zip(self.widths, plan[1:])
        ]
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
    "LAYOUTS",
    "GlobalSumPool2d",
    "ResNetDiscriminator",
    "ResNetDiscriminatorBlock",
    "ResNetGenerator",
    "ResNetGeneratorBlock",
    "ResNetOptimizedBlock",
    "discriminator_blocks",
    "generator_widths",
]
