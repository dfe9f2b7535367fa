r"""Adversarial objectives: plain loss functions plus small objects that pair a D loss with a G loss.

Every function takes the raw discriminator outputs (logits or critic scores, shape ``(N,)``) and returns a
scalar. The objects let a model or a config choose an objective by name
(``objective: {class_path: lit_gans.objectives.LeastSquaresLoss, init_args: {a: -1, b: 1, c: 0}}``) without
touching the training loop.

Example::

    >>> import torch
    >>> from lit_gans.objectives import NonSaturatingLoss
    >>> loss = NonSaturatingLoss()
    >>> real, fake = torch.tensor([3.0, 2.0]), torch.tensor([-2.0, -1.0])
    >>> bool(loss.discriminator_loss(real, fake) < loss.discriminator_loss(fake, real))
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "Objective",
    "MinimaxLoss",
    "NonSaturatingLoss",
    "WassersteinLoss",
    "LeastSquaresLoss",
    "HingeLoss",
    "bce_discriminator_loss",
    "minimax_generator_loss",
    "non_saturating_generator_loss",
    "wasserstein_critic_loss",
    "wasserstein_generator_loss",
    "least_squares_discriminator_loss",
    "least_squares_generator_loss",
    "hinge_discriminator_loss",
    "hinge_generator_loss",
]


def bce_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    r"""Discriminator loss of the original GAN (Goodfellow et al. 2014, eq. 1), on logits.

    .. math:: L_D = -\mathbb{E}[\log \sigma(D(x))] - \mathbb{E}[\log(1 - \sigma(D(G(z))))]
                  = \mathbb{E}[\mathrm{softplus}(-D(x))] + \mathbb{E}[\mathrm{softplus}(D(G(z)))]

    Computed from logits with ``softplus`` so it never takes ``log(0)`` (the reference TensorFlow MLP GAN, which
    applied ``log`` to sigmoid outputs, went NaN at iteration 9000).
    """
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def minimax_generator_loss(fake_logits: Tensor) -> Tensor:
    r"""Saturating generator loss of the minimax game (Goodfellow et al. 2014, eq. 1).

    .. math:: L_G = \mathbb{E}[\log(1 - \sigma(D(G(z))))] = -\mathbb{E}[\mathrm{softplus}(D(G(z)))]

    Its gradient vanishes when D confidently rejects fakes, which is why the paper suggests the non-saturating form.
    """
    return -F.softplus(fake_logits).mean()


def non_saturating_generator_loss(fake_logits: Tensor) -> Tensor:
    r"""Non-saturating generator loss (Goodfellow et al. 2014, sec. 3): maximise :math:`\log D(G(z))`.

    .. math:: L_G = -\mathbb{E}[\log \sigma(D(G(z)))] = \mathbb{E}[\mathrm{softplus}(-D(G(z)))]
    """
    return F.softplus(-fake_logits).mean()


def wasserstein_critic_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    r"""Critic loss of the WGAN (Arjovsky et al. 2017, algorithm 1): the negated Wasserstein estimate.

    .. math:: L_D = \mathbb{E}[D(G(z))] - \mathbb{E}[D(x)]
    """
    return fake_scores.mean() - real_scores.mean()


def wasserstein_generator_loss(fake_scores: Tensor) -> Tensor:
    r"""Generator loss of the WGAN (Arjovsky et al. 2017): :math:`L_G = -\mathbb{E}[D(G(z))]`."""
    return -fake_scores.mean()


def least_squares_discriminator_loss(real_out: Tensor, fake_out: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    r"""LSGAN discriminator loss (Mao et al. 2017, eq. 2), fake label ``a``, real label ``b``.

    .. math:: L_D = \tfrac12 \mathbb{E}[(D(x) - b)^2] + \tfrac12 \mathbb{E}[(D(G(z)) - a)^2]
    """
    return 0.5 * (real_out - b).pow(2).mean() + 0.5 * (fake_out - a).pow(2).mean()


def least_squares_generator_loss(fake_out: Tensor, c: float = 1.0) -> Tensor:
    r"""LSGAN generator loss (Mao et al. 2017, eq. 2): :math:`L_G = \tfrac12 \mathbb{E}[(D(G(z)) - c)^2]`."""
    return 0.5 * (fake_out - c).pow(2).mean()


def hinge_discriminator_loss(real_out: Tensor, fake_out: Tensor) -> Tensor:
    r"""Hinge discriminator loss (Lim & Ye 2017; Miyato et al. 2018).

    .. math:: L_D = \mathbb{E}[\max(0, 1 - D(x))] + \mathbb{E}[\max(0, 1 + D(G(z)))]
    """
    return F.relu(1.0 - real_out).mean() + F.relu(1.0 + fake_out).mean()


def hinge_generator_loss(fake_out: Tensor) -> Tensor:
    r"""Hinge generator loss: :math:`L_G = -\mathbb{E}[D(G(z))]`."""
    return -fake_out.mean()


class Objective:
    """An adversarial objective: a discriminator loss and a generator loss on raw discriminator outputs.

    Attributes:
        outputs_are_logits: whether ``sigmoid`` of the discriminator's output is the probability that the input is
            real. The engine then logs ``D(x)`` and ``D(G(z))`` as probabilities, otherwise as raw scores.
    """

    outputs_are_logits: bool = False

    def discriminator_loss(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        raise NotImplementedError

    def generator_loss(self, fake_out: Tensor) -> Tensor:
        raise NotImplementedError

    def interpret(self, out: Tensor) -> Tensor:
        """What the engine logs as the mean D output: a probability for logit objectives, else the raw score."""
        return torch.sigmoid(out) if self.outputs_are_logits else out

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class MinimaxLoss(Objective):
    """The original saturating minimax game (Goodfellow et al. 2014): BCE for D, ``log(1 - D(G(z)))`` for G."""

    outputs_are_logits = True

    def discriminator_loss(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        return bce_discriminator_loss(real_out, fake_out)

    def generator_loss(self, fake_out: Tensor) -> Tensor:
        return minimax_generator_loss(fake_out)


class NonSaturatingLoss(MinimaxLoss):
    """BCE-with-logits for both networks: the non-saturating GAN of Goodfellow et al. 2014, used by DCGAN."""

    def generator_loss(self, fake_out: Tensor) -> Tensor:
        return non_saturating_generator_loss(fake_out)


class WassersteinLoss(Objective):
    """Wasserstein objective (Arjovsky et al. 2017); the critic's output is an unbounded score."""

    def discriminator_loss(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        return wasserstein_critic_loss(real_out, fake_out)

    def generator_loss(self, fake_out: Tensor) -> Tensor:
        return wasserstein_generator_loss(fake_out)


class LeastSquaresLoss(Objective):
    """Least-squares objective (Mao et al. 2017) with fake label ``a``, real label ``b`` and G target ``c``.

    The paper's two presets are ``(a, b, c) = (0, 1, 1)`` and ``(-1, 1, 0)`` (the latter minimises the Pearson
    chi-square divergence, section 3.2.2).

    Args:
        a: target of D on fake samples.
        b: target of D on real samples.
        c: the value G wants D to output on fakes.
    """

    def __init__(self, a: float = 0.0, b: float = 1.0, c: float = 1.0) -> None:
        self.a, self.b, self.c = float(a), float(b), float(c)

    def discriminator_loss(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        return least_squares_discriminator_loss(real_out, fake_out, self.a, self.b)

    def generator_loss(self, fake_out: Tensor) -> Tensor:
        return least_squares_generator_loss(fake_out, self.c)


class HingeLoss(Objective):
    """Hinge objective (Lim & Ye 2017), as used by SNGAN and BigGAN."""

    def discriminator_loss(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        return hinge_discriminator_loss(real_out, fake_out)

    def generator_loss(self, fake_out: Tensor) -> Tensor:
        return hinge_generator_loss(fake_out)
