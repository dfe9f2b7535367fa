"""Fully connected networks of the original GAN (Goodfellow et al. 2014): the references' 100-128-784 MLP."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch  # noqa: F401  (the doctests use it)
from torch import Tensor, nn

from lit_gans.networks.layers import activation, init_weights_, norm_1d
from lit_gans.validation import check_choice


def _mlp(dims: Sequence[int], act: str, norm: str, dropout: float) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(d_in, d_out))
        if i > 0:  # like DCGAN: no normalization on the input layer
            layers.append(norm_1d(norm, d_out))
        layers.append(activation(act))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return layers


class MLPGenerator(nn.Module):
    """``z -> hidden_dims -> prod(image_shape)``, tanh output in [-1, 1].

    Args:
        latent_dim: size of z (100 in the references).
        image_shape: ``(C, H, W)`` of the images to produce.
        hidden_dims: widths of the hidden layers (``(128,)`` in the references).
        activation: hidden activation (``relu`` in the references).
        norm: normalization of hidden layers after the first (``none`` or ``batch``).

    Example::

        >>> g = MLPGenerator(100, (1, 28, 28))
        >>> g(torch.randn(4, 100)).shape
        torch.Size([4, 1, 28, 28])
    """

    def __init__(
        self,
        latent_dim: int = 100,
        image_shape: Sequence[int] = (1, 28, 28),
        hidden_dims: Sequence[int] = (128,),
        activation: str = "relu",
        norm: str = "none",
    ) -> None:
        super().__init__()
        check_choice("activation", activation, ("relu", "leaky_relu", "selu"))
        self.image_shape = tuple(image_shape)
        dims = [latent_dim, *hidden_dims]
        self.net = nn.Sequential(
            *_mlp(dims, activation, norm, 0.0), nn.Linear(dims[-1], math.prod(self.image_shape)), nn.Tanh()
        )
        if activation == "selu":
            init_weights_(self, activation)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z.flatten(1)).view(z.shape[0], *self.image_shape)


class MLPDiscriminator(nn.Module):
    """``prod(image_shape) -> hidden_dims -> 1``; returns logits / critic scores of shape ``(N,)``.

    ``trunk`` holds everything up to the last hidden activation, ``head`` the final linear layer, so that heads
    such as InfoGAN's Q can share the trunk.

    Example::

        >>> d = MLPDiscriminator((1, 28, 28))
        >>> d(torch.randn(4, 1, 28, 28)).shape
        torch.Size([4])
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        hidden_dims: Sequence[int] = (128,),
        activation: str = "relu",
        norm: str = "none",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_choice("activation", activation, ("relu", "leaky_relu", "selu"))
        dims = [math.prod(image_shape), *hidden_dims]
        self.trunk = nn.Sequential(nn.Flatten(), *_mlp(dims, activation, norm, dropout))
        self.head = nn.Linear(dims[-1], 1)
        self.feature_dim = dims[-1]
        if activation == "selu":
            init_weights_(self, activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.trunk(x)).flatten()
