r"""Adversarial objectives: plain loss functions plus small objects that pair a D loss with a G loss.

Every function takes the raw discriminator outputs (logits or critic scores, shape ``(N,)``) and returns a
scalar. The objects let a model or a config choose an objective by name
(``objective: {class_path: lit_gans.objectives.LeastSquaresLoss, init_args: {a: -1, b: 1, c: 0}}``) without
touching the training loop.

The relativistic objectives (Jolicoeur-Martineau 2019) compare real and fake outputs with each other, so their
generator loss also takes D's output on the real batch; they say so with ``needs_real_output``, and only then does
the engine's G step run that extra discriminator forward.

Example::

    >>> import torch
    >>> from lit_gans.objectives import NonSaturatingLoss
    >>> loss = NonSaturatingLoss()
    >>> real, fake = torch.tensor([3.0, 2.0]), torch.tensor([-2.0, -1.0])
    >>> bool(loss.discriminator_loss(real, fake) < loss.discriminator_loss(fake, real))
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_gans.validation import build_from_config

__all__ = [
    "Objective",
    "MinimaxLoss",
    "NonSaturatingLoss",
    "WassersteinLoss",
    "LeastSquaresLoss",
    "HingeLoss",
    "RSGANLoss",
    "RaSGANLoss",
    "RaLSGANLoss",
    "RaHingeLoss",
    "bce_discriminator_loss",
    "minimax_generator_loss",
    "non_saturating_generator_loss",
    "wasserstein_critic_loss",
    "wasserstein_generator_loss",
    "least_squares_discriminator_loss",
    "least_squares_generator_loss",
    "hinge_discriminator_loss",
    "hinge_generator_loss",
    "rsgan_discriminator_loss",
    "rsgan_generator_loss",
    "rasgan_discriminator_loss",
    "rasgan_generator_loss",
    "ralsgan_discriminator_loss",
    "ralsgan_generator_loss",
    "rahinge_discriminator_loss",
    "rahinge_generator_loss",
]


def bce_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    r"""Discriminator loss of the original GAN (Goodfellow et al. 2014, eq. 1), on logits.

    .. math:: L_D = -\mathbb{E}[\log \sigma(D(x))] - \mathbb{E}[\log(1 - \sigma(D(G(z))))]
                  = \mathbb{E}[\mathrm{softplus}(-D(x))] + \mathbb{E}[\mathrm{softplus}(D(G(z)))]

    Computed from logits with ``softplus`` so it never takes ``log(0)`` (the reference TensorFlow MLP GAN, README Sources
    3, which applied ``log`` to sigmoid outputs, went NaN at iteration 9000).
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


# Relativistic objectives (Jolicoeur-Martineau, "The relativistic discriminator: a key element missing from standard
# GAN", ICLR 2019; reference code github.com/AlexiaJM/RelativisticGAN, ``code/GAN_losses_iter.py``). ``C`` is the
# raw discriminator output (before any sigmoid), ``E`` the batch mean. The generator functions take
# ``(fake_out, real_out)``, the order of :meth:`Objective.generator_loss`; ``real_out`` is a constant for G (it is
# computed from real images) but is not detached here: that is the caller's choice.


def rsgan_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    r"""Relativistic standard GAN (RSGAN) D loss on logits (Jolicoeur-Martineau 2019, sec. 4.1, algorithm 1).

    .. math:: L_D = -\mathbb{E}_{(x_r, x_f)}[\log \sigma(C(x_r) - C(x_f))]
                  = \mathbb{E}[\mathrm{softplus}(-(C(x_r) - C(x_f)))]

    i.e. ``BCE(C(x_r) - C(x_f), 1)``. Real and fake outputs are paired one to one (``real_logits[i]`` with
    ``fake_logits[i]``), so both must have the same shape. Computed with ``softplus``, never ``log(sigmoid)``.
    """
    _check_paired(real_logits, fake_logits)
    return F.softplus(-(real_logits - fake_logits)).mean()


def rsgan_generator_loss(fake_logits: Tensor, real_logits: Tensor) -> Tensor:
    r"""RSGAN generator loss (Jolicoeur-Martineau 2019, sec. 4.1, algorithm 1): the D loss with real and fake swapped.

    .. math:: L_G = -\mathbb{E}_{(x_r, x_f)}[\log \sigma(C(x_f) - C(x_r))]
                  = \mathbb{E}[\mathrm{softplus}(-(C(x_f) - C(x_r)))]

    i.e. ``BCE(C(x_f) - C(x_r), 1)``, with the same one-to-one pairing as :func:`rsgan_discriminator_loss`.
    """
    _check_paired(real_logits, fake_logits)
    return F.softplus(-(fake_logits - real_logits)).mean()


def rasgan_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    r"""Relativistic average standard GAN (RaSGAN) discriminator loss (Jolicoeur-Martineau 2019, sec. 4.3, algorithm 2).

    .. math:: L_D = \tfrac12 \big(-\mathbb{E}_{x_r}[\log \sigma(C(x_r) - \mathbb{E}\,C(x_f))]
                  - \mathbb{E}_{x_f}[\log(1 - \sigma(C(x_f) - \mathbb{E}\,C(x_r)))]\big)
                  = \tfrac12 \big(\mathbb{E}[\mathrm{softplus}(-(C(x_r) - \mathbb{E}\,C(x_f)))]
                  + \mathbb{E}[\mathrm{softplus}(C(x_f) - \mathbb{E}\,C(x_r))]\big)

    i.e. ``[BCE(C(x_r) - E C(x_f), 1) + BCE(C(x_f) - E C(x_r), 0)] / 2``. The paper's loss (the RaGAN loss of
    sec. 4.3 with the SGAN functions) has no factor 1/2; the halves follow the author's code. Each sample is
    compared with the *mean* of the other batch, so the two batches may differ in size. The second term is
    ``C(x_f) - E C(x_r)``, the corrected form (the first release of the code had ``E C(x_f) - C(x_r)`` there,
    AlexiaJM/RelativisticGAN#2).
    """
    return 0.5 * (
        F.softplus(-(real_logits - fake_logits.mean())).mean() + F.softplus(fake_logits - real_logits.mean()).mean()
    )


def rasgan_generator_loss(fake_logits: Tensor, real_logits: Tensor) -> Tensor:
    r"""RaSGAN generator loss (Jolicoeur-Martineau 2019, sec. 4.3, algorithm 2): the D loss with the targets swapped.

    .. math:: L_G = \tfrac12 \big(\mathbb{E}[\mathrm{softplus}(-(C(x_f) - \mathbb{E}\,C(x_r)))]
                  + \mathbb{E}[\mathrm{softplus}(C(x_r) - \mathbb{E}\,C(x_f))]\big)

    i.e. ``[BCE(C(x_r) - E C(x_f), 0) + BCE(C(x_f) - E C(x_r), 1)] / 2``: G also pushes the real outputs down
    relative to the fakes. The halves follow the author's code (the paper has none).
    """
    return 0.5 * (
        F.softplus(real_logits - fake_logits.mean()).mean() + F.softplus(-(fake_logits - real_logits.mean())).mean()
    )


def ralsgan_discriminator_loss(real_out: Tensor, fake_out: Tensor) -> Tensor:
    r"""Relativistic average LSGAN (RaLSGAN) discriminator loss (Jolicoeur-Martineau 2019, sec. 4.3, algorithm 2).

    .. math:: L_D = \tfrac12 \big(\mathbb{E}_{x_r}[(C(x_r) - \mathbb{E}\,C(x_f) - 1)^2]
                  + \mathbb{E}_{x_f}[(C(x_f) - \mathbb{E}\,C(x_r) + 1)^2]\big)

    Zero exactly when every real output is one above the mean fake output and every fake one below the mean
    real output. The halves follow the author's code (the paper has none).
    """
    return 0.5 * ((real_out - fake_out.mean() - 1.0).pow(2).mean() + (fake_out - real_out.mean() + 1.0).pow(2).mean())


def ralsgan_generator_loss(fake_out: Tensor, real_out: Tensor) -> Tensor:
    r"""RaLSGAN generator loss (Jolicoeur-Martineau 2019, sec. 4.3, algorithm 2): real and fake swapped.

    .. math:: L_G = \tfrac12 \big(\mathbb{E}_{x_f}[(C(x_f) - \mathbb{E}\,C(x_r) - 1)^2]
                  + \mathbb{E}_{x_r}[(C(x_r) - \mathbb{E}\,C(x_f) + 1)^2]\big)

    The halves follow the author's code (the paper has none).
    """
    return 0.5 * ((fake_out - real_out.mean() - 1.0).pow(2).mean() + (real_out - fake_out.mean() + 1.0).pow(2).mean())


def rahinge_discriminator_loss(real_out: Tensor, fake_out: Tensor) -> Tensor:
    r"""Relativistic average hinge (RaHinge) discriminator loss (Jolicoeur-Martineau 2019, sec. 4.3, algorithm 2).

    .. math:: L_D = \tfrac12 \big(\mathbb{E}_{x_r}[\max(0, 1 - (C(x_r) - \mathbb{E}\,C(x_f)))]
                  + \mathbb{E}_{x_f}[\max(0, 1 + (C(x_f) - \mathbb{E}\,C(x_r)))]\big)

    The halves follow the author's code (the paper has none).
    """
    return 0.5 * (F.relu(1.0 - (real_out - fake_out.mean())).mean() + F.relu(1.0 + (fake_out - real_out.mean())).mean())


def rahinge_generator_loss(fake_out: Tensor, real_out: Tensor) -> Tensor:
    r"""RaHinge generator loss (Jolicoeur-Martineau 2019, sec. 4.3, algorithm 2): the D loss, real and fake swapped.

    .. math:: L_G = \tfrac12 \big(\mathbb{E}_{x_f}[\max(0, 1 - (C(x_f) - \mathbb{E}\,C(x_r)))]
                  + \mathbb{E}_{x_r}[\max(0, 1 + (C(x_r) - \mathbb{E}\,C(x_f)))]\big)

    Unlike the plain hinge objective, G's loss is itself a hinge, not ``-E[C(x_f)]``. The halves follow the
    author's code (the paper has none).
    """
    return 0.5 * (F.relu(1.0 - (fake_out - real_out.mean())).mean() + F.relu(1.0 + (real_out - fake_out.mean())).mean())


def _check_paired(real_out: Tensor, fake_out: Tensor) -> None:
    if real_out.shape != fake_out.shape:
        raise ValueError(
            "RSGAN pairs real and fake outputs one to one, so they need the same shape; got "
            f"{tuple(real_out.shape)} (real) and {tuple(fake_out.shape)} (fake)"
        )


def _require_real_out(objective: Objective, real_out: Optional[Tensor]) -> Tensor:
    if real_out is None:
        raise ValueError(
            f"{type(objective).__name__} is relativistic: its generator loss compares D's output on the fakes with "
            "its output on a real batch, so generator_loss(fake_out, real_out) needs real_out (the engine passes it "
            "when the objective's needs_real_output is True)"
        )
    return real_out


class Objective:
    """An adversarial objective: a discriminator loss and a generator loss on raw discriminator outputs.

    Attributes:
        outputs_are_logits: whether ``sigmoid`` of the discriminator's output is the probability that the input is
            real. The engine then logs ``D(x)`` and ``D(G(z))`` as probabilities, otherwise as raw scores.
        needs_real_output: whether :meth:`generator_loss` needs D's output on the real batch (``real_out``); only
            then does the engine's G step run that extra D forward. True for the relativistic objectives.
    """

    outputs_are_logits: bool = False
    needs_real_output: ClassVar[bool] = False

    def discriminator_loss(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        raise NotImplementedError

    def generator_loss(self, fake_out: Tensor, real_out: Optional[Tensor] = None) -> Tensor:
        """G's loss from D's output on the fakes; ``real_out`` (D on a real batch) is used only by objectives whose
        :attr:`needs_real_output` is True, and ignored by the others."""
        raise NotImplementedError

    def to_config(self) -> Optional[dict[str, Any]]:
        """``{"class_path": ..., "init_args": {...}}`` of plain values, as a checkpoint stores it (hyperparameters
        load with ``weights_only=True``), or ``None`` when an attribute is not a plain value."""
        init_args = dict(vars(self))
        if not all(isinstance(v, (bool, int, float, str, type(None))) for v in init_args.values()):
            return None
        return {"class_path": f"{type(self).__module__}.{type(self).__qualname__}", "init_args": init_args}

    @staticmethod
    def from_config(config: Union["Objective", dict[str, Any]]) -> "Objective":
        """An objective from :meth:`to_config`'s dictionary (or the objective itself); only subclasses of
        :class:`Objective` are built."""
        return build_from_config(config, Objective, "objective")

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

    def generator_loss(self, fake_out: Tensor, real_out: Optional[Tensor] = None) -> Tensor:
        return minimax_generator_loss(fake_out)


class NonSaturatingLoss(MinimaxLoss):
    """BCE-with-logits for both networks: the non-saturating GAN of Goodfellow et al. 2014, used by DCGAN."""

    def generator_loss(self, fake_out: Tensor, real_out: Optional[Tensor] = None) -> Tensor:
        return non_saturating_generator_loss(fake_out)


class WassersteinLoss(Objective):
    """Wasserstein objective (Arjovsky et al. 2017); the critic's output is an unbounded score."""

    def discriminator_loss(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        return wasserstein_critic_loss(real_out, fake_out)

    def generator_loss(self, fake_out: Tensor, real_out: Optional[Tensor] = None) -> Tensor:
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

    def generator_loss(self, fake_out: Tensor, real_out: Optional[Tensor] = None) -> Tensor:
        return least_squares_generator_loss(fake_out, self.c)


class HingeLoss(Objective):
    """Hinge objective (Lim & Ye 2017), as used by SNGAN and BigGAN."""

    def discriminator_loss(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        return hinge_discriminator_loss(real_out, fake_out)

    def generator_loss(self, fake_out: Tensor, real_out: Optional[Tensor] = None) -> Tensor:
        return hinge_generator_loss(fake_out)


class _Relativistic(Objective):
    """A relativistic objective: its generator loss also needs D's output on the real batch (the engine passes
    it, ``needs_real_output``); subclasses name their two loss functions."""

    needs_real_output = True
    discriminator_fn: ClassVar[Callable[[Tensor, Tensor], Tensor]]
    generator_fn: ClassVar[Callable[[Tensor, Tensor], Tensor]]

    def discriminator_loss(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        return self.discriminator_fn(real_out, fake_out)

    def generator_loss(self, fake_out: Tensor, real_out: Optional[Tensor] = None) -> Tensor:
        return self.generator_fn(fake_out, _require_real_out(self, real_out))


class RSGANLoss(_Relativistic):
    """Relativistic standard GAN (Jolicoeur-Martineau 2019, sec. 4.1, algorithm 1).

    D scores how much more real a real sample is than the fake it is paired with, ``sigmoid(C(x_r) - C(x_f))``;
    G wants the reverse.

    Real and fake batches are paired one to one, so they must have the same size. ``sigmoid`` of the raw output is
    what ``interpret`` logs, as for the standard GAN.
    """

    outputs_are_logits = True
    discriminator_fn = staticmethod(rsgan_discriminator_loss)
    generator_fn = staticmethod(rsgan_generator_loss)


class RaSGANLoss(_Relativistic):
    """Relativistic average standard GAN (Jolicoeur-Martineau 2019, sec. 4.3, algorithm 2).

    Each sample is compared with the mean raw output on the other batch: ``sigmoid(C(x_r) - E C(x_f))`` and
    ``sigmoid(C(x_f) - E C(x_r))``.
    """

    outputs_are_logits = True
    discriminator_fn = staticmethod(rasgan_discriminator_loss)
    generator_fn = staticmethod(rasgan_generator_loss)


class RaLSGANLoss(_Relativistic):
    """Relativistic average least squares (Jolicoeur-Martineau 2019, sec. 4.3, algorithm 2).

    D wants ``C(x_r) - E C(x_f) = 1`` and ``C(x_f) - E C(x_r) = -1``, G the opposite. The output is an unbounded
    score.
    """

    discriminator_fn = staticmethod(ralsgan_discriminator_loss)
    generator_fn = staticmethod(ralsgan_generator_loss)


class RaHingeLoss(_Relativistic):
    """Relativistic average hinge (Jolicoeur-Martineau 2019, sec. 4.3, algorithm 2).

    Hinge losses on the relativistic outputs ``C(x_r) - E C(x_f)`` and ``C(x_f) - E C(x_r)``, for D and (swapped)
    for G. The output is an unbounded score.
    """

    discriminator_fn = staticmethod(rahinge_discriminator_loss)
    generator_fn = staticmethod(rahinge_generator_loss)
