"""DCGAN (Radford et al. 2016) at any supported resolution, and the references' variants of it (README Sources 1, 2) as
options."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import torch
from torch import nn

from lit_gans.gan import GAN
from lit_gans.networks import (
    DCGANDiscriminator,
    DCGANGenerator,
    R3GANDiscriminator,
    R3GANGenerator,
    ResNetDiscriminator,
    ResNetGenerator,
)
from lit_gans.networks.conditional import resolve_conditioning
from lit_gans.networks.resnet import LAYOUTS as RESNET_LAYOUTS
from lit_gans.validation import check_choice

ARCHITECTURES = ("dcgan", "resnet", "r3gan")


class DCGAN(GAN):
    """Deep convolutional GAN: strided (transposed) convolutions, no pooling, BatchNorm except at G's output and
    D's input, ReLU in G, LeakyReLU(0.2) in D, tanh output; Adam lr 2e-4, beta1 0.5; non-saturating BCE loss.

    The resolution comes from ``image_shape`` (28, 32, 64, 128, ...; see
    :func:`~lit_gans.networks.resolution_stages`), channels 1 or 3. The references' variants are options:

    * the reference Keras MNIST DCGAN: ``upsample="nearest"``, ``generator_dropout=0.4``,
      ``discriminator_dropout=0.4``, ``latent_distribution="uniform"``, RMSprop (D 8e-4, G 4e-4) and
      ``gradient_clip_val=1.0, gradient_clip_algorithm="value"`` (``configs/dcgan_keras_mnist.yaml``);
    * the reference cat-face TTUR: ``discriminator_optimizer`` Adam lr 5e-5, ``generator_optimizer`` lr 2e-4.

    All engine arguments of :class:`~lit_gans.GAN` are accepted as keywords.

    Args:
        image_shape: ``(C, S, S)`` of the data (linked from the datamodule by the CLI).
        latent_dim: size of z.
        generator_width: channels of G's last hidden stage (``ngf``).
        discriminator_width: channels of D's first stage (``ndf``).
        generator_norm: ``batch`` (paper), ``layer``, ``instance`` or ``none``.
        discriminator_norm: the same for D (``batch`` for DCGAN networks by default, ``none`` for ResNet ones,
            which take ``none`` or ``layer``).
        generator_activation: ``relu`` (paper) or ``selu``.
        discriminator_activation: ``leaky_relu`` (paper) or ``selu``.
        upsample: ``transposed`` (paper), ``nearest`` or ``bilinear``.
        generator_dropout: dropout after G's projection.
        discriminator_dropout: dropout after every D stage.
        generator_extra_layers: 3x3 stride-1 convolution layers added to G before its output layer.
        discriminator_extra_layers: the same for D at its last resolution (the Keras reference: 2).
        num_classes: classes of a class-conditional GAN; 0: unconditional (see :class:`~lit_gans.GAN`).
        conditioning: ``concat``, ``projection`` (default when conditional) or ``auxiliary``: how both networks
            use the labels (:mod:`lit_gans.networks.conditional`).
        architecture: ``dcgan`` (default) or ``resnet``: the pre-activation residual networks of WGAN-GP and SNGAN
            (:class:`~lit_gans.networks.ResNetGenerator`, :class:`~lit_gans.networks.ResNetDiscriminator`) with the
            same width arguments; the DCGAN-only options (activations, ``upsample``, dropout, extra layers) are
            refused with them. ResNets cost more per step (see ``benchmarks/``).
            ``r3gan``: R3GAN's normalization-free networks (:mod:`lit_gans.networks.r3gan`; G has no tanh, as
            there), ``*_width`` channels at every stage, class conditioning by projection only; the DCGAN-only options
            and the norms are refused with them.
        resnet_layout: ``sngan`` (default: the shapes of SNGAN's networks at 32, 64 and 128 px, ``*_width`` being
            SNGAN's ``ch``) or ``compact`` (lit-gans 0.1's narrower ResNets, which its checkpoints need); see
            :mod:`lit_gans.networks.resnet`.

    Example::

        >>> from lit_gans import DCGAN
        >>> DCGAN(image_shape=(3, 64, 64), generator_width=8, discriminator_width=8).sample(2).shape
        torch.Size([2, 3, 64, 64])
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        latent_dim: int = 100,
        generator_width: int = 64,
        discriminator_width: int = 64,
        generator_norm: str = "batch",
        discriminator_norm: Optional[str] = None,
        generator_activation: str = "relu",
        discriminator_activation: str = "leaky_relu",
        upsample: str = "transposed",
        generator_dropout: float = 0.0,
        discriminator_dropout: float = 0.0,
        generator_extra_layers: int = 0,
        discriminator_extra_layers: int = 0,
        num_classes: int = 0,
        conditioning: Optional[str] = None,
        architecture: str = "dcgan",
        resnet_layout: str = "sngan",
        **kwargs: Any,
    ) -> None:
        k, cond = resolve_conditioning(num_classes, conditioning)
        labels = {"num_classes": k, "conditioning": cond or "projection"}
        self.architecture = check_choice("architecture", architecture, ARCHITECTURES)
        self.resnet_layout = check_choice("resnet_layout", resnet_layout, RESNET_LAYOUTS)
        if architecture != "resnet" and resnet_layout != "sngan":
            raise ValueError(f"resnet_layout={resnet_layout!r} needs architecture='resnet'")
        if architecture != "dcgan":
            dcgan_only = {
                "generator_activation": (generator_activation, "relu"),
                "discriminator_activation": (discriminator_activation, "leaky_relu"),
                "upsample": (upsample, "transposed"),
                "generator_dropout": (generator_dropout, 0.0),
                "discriminator_dropout": (discriminator_dropout, 0.0),
                "generator_extra_layers": (generator_extra_layers, 0),
                "discriminator_extra_layers": (discriminator_extra_layers, 0),
            }
            for name, (value, default) in dcgan_only.items():
                if value != default:
                    raise ValueError(f"{name}={value!r} is a DCGAN-network option: architecture={architecture!r} does not take it")
        if architecture == "r3gan":
            if generator_norm not in ("batch", "none") or discriminator_norm not in (None, "none"):
                raise ValueError(
                    "architecture='r3gan' has no normalization layers: leave generator_norm and discriminator_norm "
                    "unset (or 'none')"
                )
            if k and labels["conditioning"] != "projection":
                raise ValueError(f"conditioning={cond!r}: architecture='r3gan' conditions by projection only")
            generator = R3GANGenerator(latent_dim, image_shape, generator_width, num_classes=k)
        elif architecture == "resnet":
            generator = ResNetGenerator(
                latent_dim, image_shape, generator_width, generator_norm, layout=resnet_layout, **labels
            )
        else:
            generator = DCGANGenerator(
                latent_dim, image_shape, generator_width, generator_norm, generator_activation, upsample,
                generator_dropout, generator_extra_layers, **labels,
            )
        d_norm = discriminator_norm or ("none" if architecture == "resnet" else "batch")
        super().__init__(
            generator=generator,
            discriminator=self.build_discriminator(
                image_shape, discriminator_width, d_norm, discriminator_activation, discriminator_dropout,
                discriminator_extra_layers, **labels,
            ),
            latent_dim=latent_dim,
            image_shape=image_shape,
            num_classes=num_classes,
            conditioning=conditioning,
            **kwargs,
        )

    def build_discriminator(
        self, image_shape: Sequence[int], width: int, norm: str, activation: str, dropout: float, extra_layers: int,
        **labels: Any,
    ) -> nn.Module:
        """The discriminator network from the D arguments (InfoGAN adds its Q head here)."""
        if self.architecture == "r3gan":
            return R3GANDiscriminator(image_shape, width, num_classes=labels["num_classes"])
        if self.architecture == "resnet":
            return ResNetDiscriminator(image_shape, width, norm, layout=self.resnet_layout, **labels)
        return DCGANDiscriminator(image_shape, width, norm, activation, dropout, extra_layers, **labels)


class DCGANSELU(DCGAN):
    """The references' 128x128 cat DCGAN with SELU (Klambauer et al. 2017) in place of BatchNorm + ReLU/LeakyReLU
    in both networks, and the reference's TTUR: Adam D lr 5e-5, G lr 2e-4 (beta1 0.5).

    Initialization: LeCun-normal, N(0, 1/fan_in) with each layer's *effective* fan-in (a stride-2 4x4
    transposed convolution sums ``in * 4`` inputs per output pixel, the 1x1 -> 4x4 projection ``in``), so that
    pre-activations start at unit variance through both networks, as SELU's self-normalization assumes. This
    departs from the reference (AlexiaJM/Deep-learning-with-cats), which kept DCGAN's N(0, 0.02) for every
    convolution with SELU too.

    A preset of :class:`DCGAN` (``*_norm="none"``, ``*_activation="selu"``); the resolution is still a parameter.

    Example::

        >>> from lit_gans import DCGANSELU
        >>> m = DCGANSELU(generator_width=4, discriminator_width=4)
        >>> m.sample(1).shape, [o.defaults["lr"] for o in m.configure_optimizers()]
        (torch.Size([1, 3, 128, 128]), [0.0002, 5e-05])
    """

    default_discriminator_optimizer = (torch.optim.Adam, {"lr": 5e-5, "betas": (0.5, 0.999)})

    FIXED = ("generator_norm", "discriminator_norm", "generator_activation", "discriminator_activation")
    # fixed, so not hyperparameters: load_from_checkpoint would pass them back and be refused
    _hparams_ignore = [*DCGAN._hparams_ignore, *FIXED]

    def __init__(self, image_shape: Sequence[int] = (3, 128, 128), **kwargs: Any) -> None:
        for key in self.FIXED:
            if key in kwargs:
                raise ValueError(f"{key} is fixed by DCGANSELU (SELU, no normalization); use DCGAN to change it")
        super().__init__(
            image_shape=image_shape,
            generator_norm="none",
            discriminator_norm="none",
            generator_activation="selu",
            discriminator_activation="selu",
            **kwargs,
        )
