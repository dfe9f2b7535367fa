"""The label parts of class-conditional networks, shared by every network family.

Three ways for a GAN to use class labels (``conditioning``):

* ``"concat"`` (Mirza & Osindero 2014, "Conditional Generative Adversarial Nets"): a learned label embedding
  joins z at G's input, and the label joins D's input as one more channel (a learned ``H x W`` map per class,
  :class:`DiscriminatorConditioning`), so D's first layer sees image and label together.
* ``"projection"`` (Miyato & Koyama 2018, "cGANs with Projection Discriminator", eq. 3): D's output gains
  ``embed(y) . phi(x)``, the inner product of a class embedding with D's penultimate features; G uses
  class-conditional BatchNorm (:class:`ConditionalBatchNorm`, de Vries et al. 2017) wherever it has BatchNorm.
* ``"auxiliary"`` (Odena et al. 2017, "Conditional Image Synthesis with Auxiliary Classifier GANs"): D also
  predicts the class from ``phi(x)`` (a linear classifier), and returns ``(adversarial output, class logits)``;
  G is conditioned as for projection.

A generator whose conditioning would be BatchNorm but that has none (SELU networks, ``norm="none"``) takes the
label embedding at its input instead, so that it is conditional at all.

A conditional network's ``forward`` takes ``(inputs, labels)``; labels are class indices ``(N,)`` (long).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Optional, Union

import torch
from torch import Tensor, nn

from lit_gans.validation import check_choice, check_int

CONDITIONINGS = ("concat", "projection", "auxiliary")


def check_conditioning(num_classes: int, conditioning: str) -> None:
    """Validate the pair of arguments every conditional network and model takes."""
    check_int("num_classes", num_classes, minimum=0)
    check_choice("conditioning", conditioning, CONDITIONINGS)
    if num_classes == 1:
        raise ValueError("num_classes=1 is not conditional: use num_classes=0 (unconditional) or at least 2 classes")


def resolve_conditioning(num_classes: int, conditioning: Optional[str]) -> tuple[int, Optional[str]]:
    """A model's ``(num_classes, conditioning)``: ``conditioning=None`` means ``projection`` for a conditional
    model; an unconditional one (``num_classes=0``) has ``None`` and refuses a named conditioning."""
    check_int("num_classes", num_classes, minimum=0)
    if not num_classes:
        if conditioning is not None:
            raise ValueError(
                f"conditioning={conditioning!r} needs num_classes > 0 (the CLI takes it from a labelled datamodule)"
            )
        return 0, None
    conditioning = "projection" if conditioning is None else conditioning
    check_conditioning(num_classes, conditioning)
    return num_classes, conditioning


def check_labels(labels: Optional[Tensor], num_classes: int, who: str) -> Tensor:
    """``labels`` as long class indices in ``[0, num_classes)``, or a ValueError naming ``who`` needs them."""
    if labels is None:
        raise ValueError(f"{who} is conditional (num_classes={num_classes}) and needs labels")
    return labels.long()


class ConditionalBatchNorm(nn.Module):
    """Class-conditional BatchNorm (de Vries et al. 2017, "Modulating early visual processing by language";
    the generator normalization of Miyato & Koyama 2018 and BigGAN): BatchNorm without affine parameters, then a
    gain and a bias **per class**, ``y = gain(label) * BN(x) + bias(label)``.

    As de Vries et al. (and BigGAN) do, the gain and bias are predicted from a learned class embedding ``e_y``
    (``embedding_dim``, N(0, 1)): ``gain = 1 + W_g e_y``, ``bias = W_b e_y`` with ``W`` starting at zero, so a new
    layer is plain BatchNorm. A table of per-class gains would move by at most about the learning rate per Adam
    step (0.0002: 0.3 after 1,500 steps), too slowly for a label to matter in a short run; through a dense
    embedding each gain moves about ``embedding_dim`` times faster. Works on ``(N, C)`` and ``(N, C, H, W)``
    inputs (``dims`` 1 or 2).

    Example::

        >>> bn = ConditionalBatchNorm(4, num_classes=3)
        >>> bn(torch.randn(5, 4, 2, 2), torch.tensor([0, 1, 2, 0, 1])).shape
        torch.Size([5, 4, 2, 2])
    """

    takes_labels = True

    def __init__(
        self, num_features: int, num_classes: int, dims: int = 2, eps: float = 1e-5, momentum: float = 0.1,
        embedding_dim: int = 128,
    ) -> None:
        super().__init__()
        check_choice("dims", dims, (1, 2))
        norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
        self.bn = norm(num_features, eps=eps, momentum=momentum, affine=False)
        self.embedding = nn.Embedding(num_classes, embedding_dim)
        self.gain = nn.Linear(embedding_dim, num_features, bias=False)
        self.bias = nn.Linear(embedding_dim, num_features, bias=False)
        nn.init.zeros_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)
        self.num_features, self.num_classes = num_features, num_classes

    def gains_and_biases(self, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The ``(N, C)`` gains and biases of ``labels``."""
        e = self.embedding(labels)
        return 1 + self.gain(e), self.bias(e)

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:
        labels = check_labels(labels, self.num_classes, "ConditionalBatchNorm")
        shape = (x.shape[0], self.num_features) + (1,) * (x.dim() - 2)
        gain, bias = self.gains_and_biases(labels)
        return self.bn(x) * gain.view(shape).to(x.dtype) + bias.view(shape).to(x.dtype)


def takes_labels(module: nn.Module) -> bool:
    return bool(getattr(module, "takes_labels", False))


class LabelledSequential(nn.Sequential):
    """``nn.Sequential`` that hands ``labels`` to the layers that take them (``takes_labels = True``:
    :class:`ConditionalBatchNorm`, residual blocks with one), and only the activations to the others. Its
    state-dict keys are those of the plain ``nn.Sequential``."""

    takes_labels = True

    def forward(self, x: Tensor, labels: Optional[Tensor] = None) -> Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, labels) if takes_labels(layer) else layer(x)
        return x


def conditional_batchnorm_(module: nn.Module, num_classes: int) -> int:
    """Replace every ``BatchNorm1d``/``BatchNorm2d`` inside ``module`` by a :class:`ConditionalBatchNorm` of the
    same size, in place; returns how many were replaced. The containers must route labels to them
    (:class:`LabelledSequential`)."""
    replaced = 0
    for name, child in list(module.named_children()):
        if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)):
            dims = 2 if isinstance(child, nn.BatchNorm2d) else 1
            setattr(module, name, ConditionalBatchNorm(child.num_features, num_classes, dims, child.eps, child.momentum or 0.1))
            replaced += 1
        else:
            replaced += conditional_batchnorm_(child, num_classes)
    return replaced


def generator_uses_batchnorm(conditioning: str) -> bool:
    """Whether a generator of this ``conditioning`` is conditioned by class-conditional BatchNorm (projection,
    auxiliary) rather than by a label embedding joined to z (concat)."""
    return conditioning != "concat"


class LabelEmbedding(nn.Module):
    """``[z | embed(y)]``: the generator-input conditioning of Mirza & Osindero 2014 (a learned embedding of
    ``dim`` per class in place of their one-hot vector; ``dim = num_classes`` by default)."""

    def __init__(self, num_classes: int, dim: Optional[int] = None) -> None:
        super().__init__()
        self.dim = num_classes if dim is None else check_int("label_embedding_dim", dim)
        self.embedding = nn.Embedding(num_classes, self.dim)
        self.num_classes = num_classes

    def forward(self, z: Tensor, labels: Optional[Tensor]) -> Tensor:
        labels = check_labels(labels, self.num_classes, "the generator")
        return torch.cat([z.flatten(1), self.embedding(labels).to(z.dtype)], dim=1)


def input_label_embedding(
    num_classes: int, conditioning: str, has_batchnorm: bool, dim: Optional[int] = None
) -> Optional[LabelEmbedding]:
    """The label embedding a generator joins to z: for ``concat`` conditioning, and for the others when the
    generator has no BatchNorm to condition; else ``None`` (unconditional, or class-conditional BatchNorm)."""
    if not num_classes or (generator_uses_batchnorm(conditioning) and has_batchnorm):
        return None
    return LabelEmbedding(num_classes, dim)


def input_dim(latent_dim: int, embedding: Optional[LabelEmbedding]) -> int:
    """The size of a generator's input: z and, if any, its label embedding."""
    return latent_dim + (embedding.dim if embedding is not None else 0)


class ProjectionEmbedding(nn.Embedding):
    """The class embedding ``embed(y)`` of a projection discriminator. It is part of D's linear map from features
    to output, so :func:`~lit_gans.networks.spectral_norm_` normalizes it with D's layers, as SNGAN's projection
    discriminator does (``SNEmbedID`` in pfnet-research/sngan_projection); without that, scaling the embedding
    scales D's outputs without bound."""

    spectrally_normalized_with_discriminator = True


def _normalize_unnormalized_embedding(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any
) -> None:
    """Load a state dict saved before the projection embedding was spectrally normalized into one whose embedding
    is: the saved weight becomes ``weight_orig`` and its singular vectors are estimated (torch's spectral norm
    otherwise reports the missing keys). D's projection term then uses the normalized weight, so D differs from
    the saved one; G is unchanged."""
    embed = getattr(module, "embed", None)
    key = prefix + "embed.weight"
    if embed is None or not hasattr(embed, "weight_orig") or key not in state_dict or key + "_orig" in state_dict:
        return
    weight = state_dict.pop(key)
    generator = torch.Generator().manual_seed(0)
    v = nn.functional.normalize(torch.randn(weight.shape[1], generator=generator, dtype=weight.dtype), dim=0)
    for _ in range(100):  # power iteration to the largest singular value's vectors
        u = nn.functional.normalize(weight @ v, dim=0)
        v = nn.functional.normalize(weight.t() @ u, dim=0)
    state_dict.update({key + "_orig": weight, key + "_u": u, key + "_v": v})
    warnings.warn(
        "this checkpoint's projection class embedding was saved without spectral normalization (lit-gans 0.1); "
        "it is normalized from now on, as SNGAN's, which changes the discriminator's projection term"
    )


class DiscriminatorConditioning(nn.Module):
    """The label parts of a conditional discriminator, around its features ``phi(x)`` (the input of its last
    linear layer ``psi``, flattened to ``(N, F)``):

    * ``concat``: :meth:`join_input` appends one channel, a learned ``H x W`` map of the label, to the input
      (the network's first layer takes ``C + 1`` channels: :meth:`input_channels`);
    * ``projection``: :meth:`output` returns ``psi(phi) + embed(y) . phi`` (Miyato & Koyama 2018, eq. 3);
    * ``auxiliary``: :meth:`output` returns ``(psi(phi), W phi + b)``, the adversarial output and class logits.

    Example::

        >>> cond = DiscriminatorConditioning(10, "projection", feature_dim=8, image_shape=(1, 4, 4))
        >>> phi, out = torch.randn(2, 8), torch.zeros(2)
        >>> y = torch.tensor([3, 7])
        >>> torch.allclose(cond.output(out, phi, y), (cond.embed(y) * phi).sum(1))
        True
    """

    def __init__(self, num_classes: int, conditioning: str, feature_dim: int, image_shape: Sequence[int]) -> None:
        super().__init__()
        check_conditioning(num_classes, conditioning)
        self.num_classes, self.conditioning = num_classes, conditioning
        self.image_shape = tuple(image_shape)
        if conditioning == "concat":
            self.label_map = nn.Embedding(num_classes, self.image_shape[1] * self.image_shape[2])
        elif conditioning == "projection":
            self.embed = ProjectionEmbedding(num_classes, feature_dim)
            nn.init.xavier_uniform_(self.embed.weight)  # as Mimicry's and SNGAN's projection discriminators
            self._register_load_state_dict_pre_hook(_normalize_unnormalized_embedding, with_module=True)
        else:
            self.classifier = nn.Linear(feature_dim, num_classes)

    def input_channels(self, channels: int) -> int:
        return channels + 1 if self.conditioning == "concat" else channels

    def join_input(self, x: Tensor, labels: Optional[Tensor]) -> Tensor:
        if self.conditioning != "concat":
            return x
        labels = check_labels(labels, self.num_classes, "the discriminator")
        _, h, w = self.image_shape
        label_map = self.label_map(labels).view(x.shape[0], 1, h, w).to(x.dtype)
        return torch.cat([x, label_map], dim=1)

    def output(self, out: Tensor, features: Tensor, labels: Optional[Tensor]) -> Union[Tensor, tuple[Tensor, Tensor]]:
        if self.conditioning == "concat":
            return out
        phi = features.flatten(1)
        if self.conditioning == "projection":
            labels = check_labels(labels, self.num_classes, "the projection discriminator")
            return out + (self.embed(labels).to(phi.dtype) * phi).sum(dim=1)
        return out, self.classifier(phi)


__all__ = [
    "CONDITIONINGS",
    "ConditionalBatchNorm",
    "DiscriminatorConditioning",
    "LabelEmbedding",
    "LabelledSequential",
    "ProjectionEmbedding",
    "check_conditioning",
    "resolve_conditioning",
    "conditional_batchnorm_",
    "generator_uses_batchnorm",
    "input_dim",
    "input_label_embedding",
]
