r"""Discriminator regularizers: weight clipping (WGAN) and the gradient penalty (WGAN-GP), as plain functions.

Example::

    >>> import torch
    >>> from torch import nn
    >>> critic = nn.Sequential(nn.Flatten(), nn.Linear(4, 1))
    >>> penalty, norms = gradient_penalty(critic, torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2))
    >>> penalty.shape, norms.shape
    (torch.Size([]), torch.Size([3]))
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn


@torch.no_grad()
def clip_weights_(module: nn.Module, clip_value: float) -> None:
    r"""Clamp every parameter of ``module`` to :math:`[-c, c]` in place (Arjovsky et al. 2017, algorithm 1, line 7).

    The paper clips *all* critic parameters after each critic update, BatchNorm's included.
    """
    params = [p for p in module.parameters()]
    if params:
        torch._foreach_clamp_min_(params, -clip_value)
        torch._foreach_clamp_max_(params, clip_value)


@torch.no_grad()
def fraction_at_clip_bound(module: nn.Module, clip_value: float, rtol: float = 1e-3) -> Tensor:
    """Share of ``module``'s weights sitting at :math:`\\pm c`: near 1 means clipping dominates the critic."""
    params = [p.detach().flatten() for p in module.parameters()]
    w = torch.cat(params)
    return (w.abs() >= clip_value * (1 - rtol)).float().mean()


def interpolate_real_fake(real: Tensor, fake: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    r""":math:`\hat x = \epsilon x + (1 - \epsilon)\tilde x` with one :math:`\epsilon \sim U[0, 1]` per sample
    (broadcast over every other dimension, whatever the channel count)."""
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    gen_device = generator.device if generator is not None else real.device
    eps = torch.rand(shape, generator=generator, device=gen_device).to(device=real.device, dtype=real.dtype)
    return eps * real.detach() + (1 - eps) * fake.detach()


def input_gradient_squared_norms(critic: nn.Module, x: Tensor) -> Tensor:
    """Per-sample ``||grad_x D(x)||^2`` (float32), with the graph kept (``create_graph=True``) so that a penalty on
    it trains D inside the caller's one ordinary backward, the form DDP supports."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return grad.float().flatten(1).pow(2).sum(1)


def gradient_penalty(
    critic: nn.Module,
    real: Tensor,
    fake: Tensor,
    target_norm: float = 1.0,
    generator: Optional[torch.Generator] = None,
    x_hat: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor]:
    r"""Two-sided gradient penalty of WGAN-GP (Gulrajani et al. 2017, algorithm 1):

    .. math:: \mathrm{GP} = \mathbb{E}_{\hat x}\big[(\lVert \nabla_{\hat x} D(\hat x) \rVert_2 - 1)^2\big]

    (without the weight :math:`\lambda`). The input gradient is taken with
    ``torch.autograd.grad(create_graph=True)`` on the *inputs only*, so the caller adds the penalty to the critic
    loss and runs **one** ordinary backward: that is the form DDP supports (pytorch/pytorch#63812); a second
    backward through DDP, or ``backward(create_graph=True)``, is not. The norm is computed in float32 with a
    small epsilon, so it is safe under bf16 autocast and differentiable where the gradient vanishes.

    Args:
        critic: the discriminator; must treat samples independently (no BatchNorm).
        real, fake: batches of the same shape; neither needs to carry a graph.
        target_norm: the 1 of the formula.
        generator: RNG for the interpolation weights (the model's per-rank noise generator).
        x_hat: explicit interpolates (tests); drawn with :func:`interpolate_real_fake` when ``None``.

    Returns:
        The penalty (a scalar) and the per-sample gradient norms (detached), for logging.
    """
    if x_hat is None:
        x_hat = interpolate_real_fake(real, fake, generator)
    norms = torch.sqrt(input_gradient_squared_norms(critic, x_hat) + 1e-12)
    return (norms - target_norm).pow(2).mean(), norms.detach()


def r1_penalty(critic: nn.Module, real: Tensor) -> tuple[Tensor, Tensor]:
    r"""R1 penalty (Mescheder et al. 2018, "Which Training Methods for GANs do actually Converge?", eq. 9):

    .. math:: R_1 = \mathbb{E}_{x \sim p_{data}}\big[\lVert \nabla_x D(x) \rVert_2^2\big]

    (without the weight :math:`\gamma / 2`): the discriminator's input gradient on real data, pushed to zero.
    Built on :func:`input_gradient_squared_norms`, like :func:`gradient_penalty`.

    Returns:
        The penalty (a scalar) and the per-sample gradient norms (detached), for logging.
    """
    squared = input_gradient_squared_norms(critic, real)
    return squared.mean(), squared.detach().sqrt()


__all__ = [
    "clip_weights_",
    "fraction_at_clip_bound",
    "interpolate_real_fake",
    "input_gradient_squared_norms",
    "gradient_penalty",
    "r1_penalty",
]
