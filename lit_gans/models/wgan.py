"""Wasserstein GANs: weight clipping (Arjovsky et al. 2017) and gradient penalty (Gulrajani et al. 2017)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from lit_gans.models.dcgan import DCGAN
from lit_gans.objectives import WassersteinLoss
from lit_gans.regularizers import GradientPenalty, clip_weights_
from lit_gans.step import TrainingStep
from lit_gans.validation import check_float


class _WassersteinDCGAN(DCGAN):
    """DCGAN networks with an unbounded critic and the Wasserstein objective; logs the Wasserstein estimate."""

    default_objective = WassersteinLoss

    def discriminator_loss(self, step: TrainingStep) -> tuple[Tensor, dict[str, Tensor]]:
        loss, logs = self.adversarial_discriminator_loss(*self.discriminate(step))
        # E[D(x)] - E[D(G(z))]: the critic's estimate of the Wasserstein-1 distance (up to the Lipschitz constant)
        logs["wasserstein_estimate"] = -loss.detach()
        return loss, logs


class WGAN(_WassersteinDCGAN):
    """WGAN with weight clipping (Arjovsky et al. 2017, algorithm 1).

    Critic loss ``E[D(G(z))] - E[D(x)]``, generator loss ``-E[D(G(z))]``, no sigmoid; after every critic update
    every critic parameter is clipped to ``[-clip_value, clip_value]``; RMSprop lr 5e-5 for both networks;
    ``n_critic = 5``. DCGAN networks as in the paper (BatchNorm in the critic is allowed here: no per-sample
    penalty). Logs ``train/wasserstein_estimate``.

    Args:
        clip_value: the clipping bound c (0.01 in the paper).
        paper_schedule: the paper's schedule of 100 critic updates before each of the first 25 generator updates
            and before every 500th one (``n_critic`` otherwise), also used by the reference cat WGAN (README Sources 1).
        **kwargs: any :class:`DCGAN` / :class:`~lit_gans.GAN` argument.

    Example::

        >>> from lit_gans import WGAN
        >>> WGAN().n_critic, WGAN().clip_value
        (5, 0.01)
    """

    default_generator_optimizer = (torch.optim.RMSprop, {"lr": 5e-5})
    default_discriminator_optimizer = (torch.optim.RMSprop, {"lr": 5e-5})

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        clip_value: float = 0.01,
        paper_schedule: bool = False,
        n_critic: int = 5,
        **kwargs: Any,
    ) -> None:
        super().__init__(image_shape=image_shape, n_critic=n_critic, **kwargs)
        self.clip_value = check_float("clip_value", clip_value)
        self.paper_schedule = paper_schedule
        clip_weights_(self.discriminator, self.clip_value)  # the paper's critic starts inside the box too

    def after_discriminator_step(self) -> None:
        clip_weights_(self.discriminator, self.clip_value)

    def critic_steps_for(self, generator_step: int) -> int:
        if self.paper_schedule and (generator_step < 25 or generator_step % 500 == 0):
            return 100
        return self.n_critic


class WGANGP(_WassersteinDCGAN):
    """WGAN with gradient penalty (Gulrajani et al. 2017, algorithm 1).

    Critic loss ``E[D(G(z))] - E[D(x)] + lambda * E[(||grad D(x_hat)||_2 - 1)^2]`` on
    ``x_hat = e * x + (1 - e) * G(z)``, ``e ~ U[0, 1]`` per sample; ``lambda = 10``, ``n_critic = 5``, Adam lr 1e-4
    with betas ``(0, 0.9)`` (the paper; the references' ``(0.5, 0.9)`` with ``betas=(0.5, 0.9)``). The critic has
    no BatchNorm (``discriminator_norm="layer"`` by default, or ``"none"``, ``"instance"``): the penalty is per
    sample. The penalty is :class:`~lit_gans.regularizers.GradientPenalty` among the model's ``regularizers``; it
    is built with ``autograd.grad(create_graph=True)`` inside the one critic backward, which is what makes it
    correct under DDP. Logs ``train/gradient_penalty``, ``train/gradient_norm`` (mean
    ``||grad D(x_hat)||``) and ``train/wasserstein_estimate``. Float16 precision (``16-mixed``, ``16-true``) is
    refused when a fit starts: that input gradient is taken on the unscaled critic output and can underflow;
    ``bf16-mixed`` is supported.

    Args:
        gradient_penalty_weight: lambda.
        learning_rate: Adam learning rate of both networks when no optimizer is given.
        betas: Adam betas of both networks when no optimizer is given.
        discriminator_norm: ``layer`` (default), ``instance`` or ``none``; ``batch`` is refused.
        **kwargs: any :class:`DCGAN` / :class:`~lit_gans.GAN` argument.

    Example::

        >>> from lit_gans import WGANGP
        >>> m = WGANGP()
        >>> m.n_critic, m.gradient_penalty_weight, m.configure_optimizers()[1].defaults["betas"]
        (5, 10.0, (0.0, 0.9))
    """

    compile_unsupported = "its gradient penalty needs a double backward, which torch.compile does not support"

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        gradient_penalty_weight: float = 10.0,
        learning_rate: float = 1e-4,
        betas: tuple[float, float] = (0.0, 0.9),
        discriminator_norm: str = "layer",
        n_critic: int = 5,
        **kwargs: Any,
    ) -> None:
        if discriminator_norm == "batch":
            raise ValueError(
                "discriminator_norm='batch' is not allowed for WGAN-GP: the gradient penalty is per sample and "
                "BatchNorm mixes samples; use 'layer', 'instance' or 'none'"
            )
        super().__init__(image_shape=image_shape, discriminator_norm=discriminator_norm, n_critic=n_critic, **kwargs)
        self.gradient_penalty_weight = check_float("gradient_penalty_weight", gradient_penalty_weight, inclusive=True)
        if gradient_penalty_weight:
            option = f"WGAN-GP's gradient penalty (gradient_penalty_weight={gradient_penalty_weight})"
            self.add_regularizer(GradientPenalty(gradient_penalty_weight), option)
        check_float("learning_rate", learning_rate)
        adam = (torch.optim.Adam, {"lr": learning_rate, "betas": tuple(betas)})
        self.default_generator_optimizer = self.default_discriminator_optimizer = adam

__all__ = ["WGAN", "WGANGP"]
