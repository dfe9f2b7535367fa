"""Fully connected networks of the original GAN (Goodfellow et al. 2014): the references' 100-128-784 MLP
(README Sources 3 and 4)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional, Union

import torch  # noqa: F401  (the doctests use it)
from torch import Tensor, nn

from lit_gans.networks.conditional import (
    DiscriminatorConditioning,
    LabelledSequential,
    check_conditioning,
    conditional_batchnorm_,
    input_dim,
    input_label_embedding,
)
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
        num_classes: classes of a conditional generator (``forward(z, labels)``; Mirza & Osindero 2014 was
            this MLP); 0: unconditional.
        conditioning: ``concat`` (a label embedding joins z), or ``projection``/``auxiliary``: class-conditional
            BatchNorm where ``norm="batch"``, else the embedding too.
        label_embedding_dim: size of the label embedding (``num_classes`` by default).

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
        num_classes: int = 0,
        conditioning: str = "projection",
        label_embedding_dim: Optional[int] = None,
    ) -> None:
        super().__init__()
        check_choice("activation", activation, ("relu", "leaky_relu", "selu"))
        check_conditioning(num_classes, conditioning)
        self.image_shape = tuple(image_shape)
        batchnorm = norm == "batch" and len(hidden_dims) > 1  # the first hidden layer is never normalized
        self.label_embedding = input_label_embedding(num_classes, conditioning, batchnorm, label_embedding_dim)
        dims = [input_dim(latent_dim, self.label_embedding), *hidden_dims]
        self.net = LabelledSequential(
            *_mlp(dims, activation, norm, 0.0), nn.Linear(dims[-1], math.prod(self.image_shape)), nn.Tanh()
        )
        if activation == "selu":
            init_weights_(self.net, activation)
        self.num_classes = num_classes
        if num_classes and self.label_embedding is None:
            conditional_batchnorm_(self.net, num_classes)

    def forward(self, z: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        z = z.flatten(1)
        if self.label_embedding is not None:
            z = self.label_embedding(z, labels)
        return self.net(z, labels if self.num_classes else None).view(z.shape[0], *self.image_shape)


class MLPDiscriminator(nn.Module):
    """``prod(image_shape) -> hidden_dims -> 1``; returns logits / critic scores of shape ``(N,)``.

    ``trunk`` holds everything up to the last hidden activation, ``head`` the final linear layer, so that heads
    such as InfoGAN's Q can share the trunk. ``num_classes``/``conditioning`` make it conditional as
    :class:`~lit_gans.networks.conditional.DiscriminatorConditioning` says (``phi`` = the last hidden layer;
    ``concat`` adds one ``H x W`` label map to the flattened input).

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
        num_classes: int = 0,
        conditioning: str = "projection",
    ) -> None:
        super().__init__()
        check_choice("activation", activation, ("relu", "leaky_relu", "selu"))
        self.conditioning = (
            DiscriminatorConditioning(num_classes, conditioning, hidden_dims[-1], image_shape) if num_classes else None
        )
        channels = self.conditioning.input_channels(image_shape[0]) if self.conditioning is not None else image_shape[0]
        dims = [channels * math.prod(image_shape[1:]), *hidden_dims]
        self.trunk = nn.Sequential(nn.Flatten(), *_mlp(dims, activation, norm, dropout))
        self.head = nn.Linear(dims[-1], 1)
        self.feature_dim = dims[-1]
        if activation == "selu":
            init_weights_(self, activation)

    def forward(self, x: Tensor, labels: Optional[Tensor] = None) -> Union[Tensor, tuple[Tensor, Tensor]]:
        if self.conditioning is None:
            return self.head(self.trunk(x)).flatten()
        features = self.trunk(self.conditioning.join_input(x, labels))
        return self.conditioning.output(self.head(features).flatten(), features, labels)
