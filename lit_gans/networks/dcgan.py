"""The DCGAN network family (Radford et al. 2016), one file for every resolution.

The resolution is a parameter: an image of side ``S = base * 2**n`` (``base`` 4 or 7) is built by ``n``
up-sampling stages from a ``base x base`` map, channels halving at each stage from ``width * 2**(n-1)``.
So 28x28 MNIST is ``100 -> 128x7x7 -> 64x14x14 -> 1x28x28`` (width 64), 64x64 the paper's
``512x4x4 -> ... -> 3x64x64`` and 128x128 adds one stage (``1024x4x4``), as in the reference cat models
(README Sources 1).

Options reach the references' variants without new classes:

* ``activation="selu", norm="none"``: the reference 128x128 DCGAN-SELU (BatchNorm + ReLU replaced by SELU).
  Its weights here are LeCun-normal, N(0, 1/fan_in) with the effective fan-in of each (transposed) convolution,
  the initialization SELU's self-normalization assumes (Klambauer et al. 2017); the reference itself
  (AlexiaJM/Deep-learning-with-cats) kept DCGAN's N(0, 0.02) for every convolution.
* ``upsample="nearest"``, ``dropout``: the reference Keras MNIST DCGAN (README Sources 2: upsampling + convolution).
* discriminator ``norm="layer"`` or ``"none"``: WGAN-GP critics, whose per-sample penalty BatchNorm would break.
* ``num_classes``, ``conditioning``: class-conditional networks (:mod:`lit_gans.networks.conditional`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional, Union

import torch
from torch import Tensor, nn

from lit_gans.networks.conditional import (
    DiscriminatorConditioning,
    LabelledSequential,
    check_conditioning,
    conditional_batchnorm_,
    input_dim,
    input_label_embedding,
)
from lit_gans.networks.layers import activation as make_activation
from lit_gans.networks.layers import init_weights_, norm_2d
from lit_gans.validation import check_choice

UPSAMPLE_MODES = ("transposed", "nearest", "bilinear")


def resolution_stages(image_size: int) -> tuple[int, int]:
    """``(base, n)`` with ``image_size == base * 2**n``, ``base`` in (4, 7) and ``n >= 1``.

    Raises:
        ValueError: naming the size and the supported ones.
    """
    for base in (4, 7):
        n = image_size // base
        if image_size % base == 0 and n >= 2 and n & (n - 1) == 0:
            return base, int(math.log2(n))
    raise ValueError(
        f"image_size={image_size} is not supported by the DCGAN family: it needs 4 * 2**n or 7 * 2**n with n >= 1 "
        "(e.g. 28, 32, 64, 128, 256)"
    )


def _square_shape(image_shape: Sequence[int]) -> tuple[int, int]:
    if len(image_shape) != 3 or image_shape[1] != image_shape[2]:
        raise ValueError(f"image_shape={tuple(image_shape)} must be (channels, size, size) with square images")
    return int(image_shape[0]), int(image_shape[1])


def _extra_layer(channels: int, norm: str, activation: str, dropout: float) -> list[nn.Module]:
    layers = [nn.Conv2d(channels, channels, 3, 1, 1, bias=norm == "none"), norm_2d(norm, channels)]
    layers.append(make_activation(activation))
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return layers


class DCGANGenerator(nn.Module):
    """DCGAN generator: project z to ``base x base``, then ``n`` stride-2 up-sampling stages; tanh output.

    Args:
        latent_dim: size of the generator input.
        image_shape: ``(C, S, S)`` of the output.
        width: channels of the last hidden stage (``ngf``); earlier stages double it.
        norm: normalization after every hidden layer (``batch`` in the paper, ``none`` for SELU).
        activation: ``relu`` (paper) or ``selu`` (reference 128x128 cat model) or ``leaky_relu``.
        upsample: ``transposed`` (4x4 stride-2 transposed convolutions, paper) or ``nearest``/``bilinear``
            (up-sampling followed by a 5x5 convolution, as the reference Keras MNIST model).
        dropout: dropout after the projection (the Keras reference used 0.4).
        extra_layers: 3x3 stride-1 convolutions added before the output layer (``n_extra_layers`` of the WGAN
            authors' DCGAN code).
        num_classes: classes of a conditional generator (``forward(z, labels)``); 0: unconditional.
        conditioning: ``projection`` or ``auxiliary``: every BatchNorm becomes class-conditional
            (:class:`~lit_gans.networks.conditional.ConditionalBatchNorm`); ``concat``, or a generator without
            BatchNorm: a label embedding joins z.
        label_embedding_dim: size of that embedding (``num_classes`` by default).

    Example::

        >>> g = DCGANGenerator(100, (3, 64, 64))
        >>> g(torch.randn(2, 100)).shape
        torch.Size([2, 3, 64, 64])
        >>> DCGANGenerator(16, (1, 28, 28), width=8, num_classes=10)(torch.randn(2, 16), torch.tensor([3, 7])).shape
        torch.Size([2, 1, 28, 28])
    """

    def __init__(
        self,
        latent_dim: int = 100,
        image_shape: Sequence[int] = (1, 28, 28),
        width: int = 64,
        norm: str = "batch",
        activation: str = "relu",
        upsample: str = "transposed",
        dropout: float = 0.0,
        extra_layers: int = 0,
        num_classes: int = 0,
        conditioning: str = "projection",
        label_embedding_dim: Optional[int] = None,
    ) -> None:
        super().__init__()
        channels, size = _square_shape(image_shape)
        base, n = resolution_stages(size)
        check_conditioning(num_classes, conditioning)
        check_choice("upsample", upsample, UPSAMPLE_MODES)
        check_choice("activation", activation, ("relu", "leaky_relu", "selu"))
        self.latent_dim, self.image_shape = latent_dim, (channels, size, size)
        widths = [width * 2 ** (n - 1 - i) for i in range(n)]
        bias = norm == "none"  # a bias before a normalization layer is redundant
        self.label_embedding = input_label_embedding(num_classes, conditioning, norm == "batch", label_embedding_dim)
        in_dim = input_dim(latent_dim, self.label_embedding)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(in_dim, widths[0], base, 1, 0, bias=bias),
            norm_2d(norm, widths[0]),
            make_activation(activation),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [self._up(c_in, c_out, upsample, bias), norm_2d(norm, c_out), make_activation(activation)]
        for _ in range(extra_layers):
            layers += _extra_layer(widths[-1], norm, activation, 0.0)
        layers += [self._up(widths[-1], channels, upsample, True), nn.Tanh()]
        self.net = LabelledSequential(*layers)
        init_weights_(self.net, activation, example_input=torch.zeros(1, in_dim, 1, 1))
        self.num_classes = num_classes
        if num_classes and self.label_embedding is None:
            conditional_batchnorm_(self.net, num_classes)

    @staticmethod
    def _up(c_in: int, c_out: int, mode: str, bias: bool) -> nn.Module:
        if mode == "transposed":
            return nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=bias)
        return nn.Sequential(nn.Upsample(scale_factor=2, mode=mode), nn.Conv2d(c_in, c_out, 5, 1, 2, bias=bias))

    def forward(self, z: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        if self.label_embedding is not None:
            z = self.label_embedding(z, labels)
        return self.net(z.reshape(z.shape[0], -1, 1, 1), labels if self.num_classes else None)


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator: ``n`` stride-2 4x4 convolutions down to ``base x base``, then one ``base x base``
    convolution to a single logit (no sigmoid: objectives work on logits). Returns shape ``(N,)``.

    ``trunk`` holds the convolutional stages (output ``(N, feature_dim, base, base)``) and ``head`` the final
    convolution, so that heads such as InfoGAN's Q can share the trunk.

    Args:
        image_shape: ``(C, S, S)`` of the input.
        width: channels of the first stage (``ndf``); later stages double it.
        norm: normalization after every stage but the first (``batch`` in the paper; ``layer`` or ``none``
            for WGAN-GP critics; ``none`` for SELU).
        activation: ``leaky_relu`` (slope 0.2, paper) or ``selu``.
        dropout: dropout after every stage (the Keras reference used 0.4).
        extra_layers: 3x3 stride-1 convolutions at the last resolution (the Keras reference's 4-layer
            discriminator is 2 strided stages + 2 of these at 28x28).
        num_classes: classes of a conditional discriminator (``forward(x, labels)``); 0: unconditional.
        conditioning: ``concat`` (the label as one more input channel), ``projection`` (``+ embed(y) . phi(x)``
            with ``phi`` the flattened trunk output, the head's input) or ``auxiliary`` (``forward`` returns
            ``(output, class_logits)``); see :class:`~lit_gans.networks.conditional.DiscriminatorConditioning`.

    Example::

        >>> d = DCGANDiscriminator((1, 28, 28))
        >>> d(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2])
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        width: int = 64,
        norm: str = "batch",
        activation: str = "leaky_relu",
        dropout: float = 0.0,
        extra_layers: int = 0,
        num_classes: int = 0,
        conditioning: str = "projection",
    ) -> None:
        super().__init__()
        channels, size = _square_shape(image_shape)
        base, n = resolution_stages(size)
        check_choice("activation", activation, ("relu", "leaky_relu", "selu"))
        check_choice("norm", norm, ("batch", "layer", "instance", "none"))
        widths = [width * 2**i for i in range(n)]
        self.conditioning = (
            DiscriminatorConditioning(num_classes, conditioning, widths[-1] * base * base, (channels, size, size))
            if num_classes
            else None
        )
        layers: list[nn.Module] = []
        c_in = self.conditioning.input_channels(channels) if self.conditioning is not None else channels
        for i, c_out in enumerate(widths):
            layers.append(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=i == 0 or norm == "none"))
            if i > 0:  # paper: no normalization on the discriminator's input layer
                layers.append(norm_2d(norm, c_out))
            layers.append(make_activation(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            c_in = c_out
        for _ in range(extra_layers):
            layers += _extra_layer(widths[-1], norm, activation, dropout)
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Conv2d(widths[-1], 1, base, 1, 0)
        self.feature_dim, self.feature_size = widths[-1], base
        example = torch.zeros(1, channels, size, size)
        init_weights_(self, activation, example_input=(example, torch.zeros(1, dtype=torch.long)) if num_classes else example)

    def forward(self, x: Tensor, labels: Optional[Tensor] = None) -> Union[Tensor, tuple[Tensor, Tensor]]:
        if self.conditioning is None:
            return self.head(self.trunk(x)).flatten()
        features = self.trunk(self.conditioning.join_input(x, labels))
        return self.conditioning.output(self.head(features).flatten(), features, labels)


__all__ = ["DCGANGenerator", "DCGANDiscriminator", "resolution_stages", "UPSAMPLE_MODES"]
