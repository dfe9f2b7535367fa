"""The original GAN (Goodfellow et al. 2014) with the references' MLP (README Sources 3, 4): z 100 -> 128 -> 784,
D 784 -> 128 -> 1."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

from lit_gans.gan import GAN
from lit_gans.networks import MLPDiscriminator, MLPGenerator
from lit_gans.networks.conditional import resolve_conditioning


class VanillaGAN(GAN):
    """MLP generator and discriminator with ReLU hidden layers and a tanh output in [-1, 1].

    Defaults follow the paper (non-saturating generator loss, k = 1); ``objective=MinimaxLoss()`` gives the
    saturating game, ``n_critic=3`` the k = 3 of the references' overview. All engine arguments of
    :class:`~lit_gans.GAN` (optimizers, ``n_critic``, ``max_generator_steps``, ...) are accepted as keywords.

    Args:
        image_shape: ``(C, H, W)`` of the data (linked from the datamodule by the CLI).
        latent_dim: size of z.
        hidden_dims: widths of the generator's hidden layers (depth = number of entries).
        discriminator_hidden_dims: widths of the discriminator's hidden layers (default: ``hidden_dims``).
        activation: hidden activation of both networks.
        discriminator_dropout: dropout after each discriminator hidden layer.
        num_classes: classes of a conditional GAN (Mirza & Osindero 2014 conditioned this MLP); 0: unconditional.
        conditioning: ``concat``, ``projection`` or ``auxiliary`` (:class:`~lit_gans.GAN`).

    Example::

        >>> from lit_gans import VanillaGAN
        >>> VanillaGAN(latent_dim=100).sample(2).shape
        torch.Size([2, 1, 28, 28])
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        latent_dim: int = 100,
        hidden_dims: Sequence[int] = (128,),
        discriminator_hidden_dims: Optional[Sequence[int]] = None,
        activation: str = "relu",
        discriminator_dropout: float = 0.0,
        num_classes: int = 0,
        conditioning: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        d_dims = hidden_dims if discriminator_hidden_dims is None else discriminator_hidden_dims
        k, cond = resolve_conditioning(num_classes, conditioning)
        labels = {"num_classes": k, "conditioning": cond or "projection"}
        super().__init__(
            generator=MLPGenerator(latent_dim, image_shape, hidden_dims, activation, **labels),
            discriminator=MLPDiscriminator(image_shape, d_dims, activation, dropout=discriminator_dropout, **labels),
            latent_dim=latent_dim,
            image_shape=image_shape,
            num_classes=num_classes,
            conditioning=conditioning,
            **kwargs,
        )
