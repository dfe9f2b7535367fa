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

from collections.abc import Callable
from typing import Any, Optional

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


#: the critic of a penalty: any callable ``images -> (N,) scores`` (a discriminator, or one bound to labels with
#: ``functools.partial`` for a conditional critic)
Critic = Callable[[Tensor], Tensor]

FLOAT16_REFUSAL = (
    "{what} is not supported under float16 precision ({where}): it differentiates D's *unscaled* output with "
    "autograd.grad, and that float16 input gradient can underflow to zero (the loss scaler of '16-mixed' only "
    "scales the final backward; '16-true' has none). Use precision='bf16-mixed' (bfloat16 has float32's range), "
    "or '32-true'."
)


def check_penalty_precision(trainer: Any, option: str) -> None:
    """Refuse a Trainer whose precision is float16 (``16-mixed``, ``16-true``, or any precision plugin with a
    loss scaler) for an input-gradient penalty, naming ``option`` (e.g. ``"gradient_penalty_weight=10.0"``).

    Raises:
        ValueError: naming the option and the precision, and suggesting ``bf16-mixed``.
    """
    precision = str(getattr(trainer, "precision", ""))
    scaler = getattr(getattr(trainer, "precision_plugin", None), "scaler", None)
    if precision.startswith("16") or scaler is not None:
        raise ValueError(FLOAT16_REFUSAL.format(what=option, where=f"Trainer precision={precision!r}"))


def _refuse_float16(critic: Critic, x: Tensor, option: str) -> None:
    """The same refusal where the penalty is computed: under float16 autocast, or on float16 inputs or weights."""
    device = x.device.type
    autocast_fp16 = torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.float16
    parameters = getattr(critic, "parameters", None)  # a plain callable has none to check
    weight = next(parameters(), None) if callable(parameters) else None
    if autocast_fp16 or x.dtype == torch.float16 or (weight is not None and weight.dtype == torch.float16):
        where = "float16 autocast" if autocast_fp16 else "float16 tensors"
        raise ValueError(FLOAT16_REFUSAL.format(what=option, where=f"{where}: Trainer precision='16-mixed' or '16-true'"))


def input_gradient_squared_norms(critic: Critic, x: Tensor, option: str = "an input-gradient penalty") -> Tensor:
    """Per-sample ``||grad_x D(x)||^2`` (float32), with the graph kept (``create_graph=True``) so that a penalty on
    it trains D inside the caller's one ordinary backward, the form DDP supports.

    Raises:
        ValueError: under float16 precision (autocast or float16 tensors), naming ``option``: the unscaled
            float16 gradient can underflow. bfloat16 autocast is fine.
    """
    _refuse_float16(critic, x, option)
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return grad.float().flatten(1).pow(2).sum(1)


def gradient_penalty(
    critic: Critic,
    real: Tensor,
    fake: Tensor,
    target_norm: float = 1.0,
    generator: Optional[torch.Generator] = None,
    x_hat: Optional[Tensor] = None,
    option: str = "WGAN-GP's gradient penalty (gradient_penalty_weight)",
) -> tuple[Tensor, Tensor]:
    r"""Two-sided gradient penalty of WGAN-GP (Gulrajani et al. 2017, algorithm 1):

    .. math:: \mathrm{GP} = \mathbb{E}_{\hat x}\big[(\lVert \nabla_{\hat x} D(\hat x) \rVert_2 - 1)^2\big]

    (without the weight :math:`\lambda`). The input gradient is taken with
    ``torch.autograd.grad(create_graph=True)`` on the *inputs only*, so the caller adds the penalty to the critic
    loss and runs **one** ordinary backward: that is the form DDP supports (pytorch/pytorch#63812); a second
    backward through DDP, or ``backward(create_graph=True)``, is not. The norm is computed in float32 with a
    small epsilon, so it is safe under bf16 autocast and differentiable where the gradient vanishes. Float16
    (``precision="16-mixed"`` or ``"16-true"``) is refused with a ``ValueError``: the input gradient of the
    unscaled output can underflow (see :func:`check_penalty_precision`).

    Args:
        critic: the discriminator; must treat samples independently (no BatchNorm).
        real, fake: batches of the same shape; neither needs to carry a graph.
        target_norm: the 1 of the formula.
        generator: RNG for the interpolation weights (the model's per-rank noise generator).
        x_hat: explicit interpolates (tests); drawn with :func:`interpolate_real_fake` when ``None``.
        option: what the float16 refusal names.

    Returns:
        The penalty (a scalar) and the per-sample gradient norms (detached), for logging.
    """
    if x_hat is None:
        x_hat = interpolate_real_fake(real, fake, generator)
    norms = torch.sqrt(input_gradient_squared_norms(critic, x_hat, option) + 1e-12)
    return (norms - target_norm).pow(2).mean(), norms.detach()


def r1_penalty(critic: Critic, real: Tensor, option: str = "the R1 penalty (r1_penalty_weight)") -> tuple[Tensor, Tensor]:
    r"""R1 penalty (Mescheder et al. 2018, "Which Training Methods for GANs do actually Converge?", eq. 9):

    .. math:: R_1 = \mathbb{E}_{x \sim p_{data}}\big[\lVert \nabla_x D(x) \rVert_2^2\big]

    (without the weight :math:`\gamma / 2`): the discriminator's input gradient on real data, pushed to zero.
    Built on :func:`input_gradient_squared_norms`, like :func:`gradient_penalty`, and like it refused under
    float16 precision (``option`` is what the refusal names).

    Returns:
        The penalty (a scalar) and the per-sample gradient norms (detached), for logging.
    """
    squared = input_gradient_squared_norms(critic, real, option)
    return squared.mean(), squared.detach().sqrt()


__all__ = [
    "clip_weights_",
    "fraction_at_clip_bound",
    "interpolate_real_fake",
    "input_gradient_squared_norms",
    "check_penalty_precision",
    "gradient_penalty",
    "r1_penalty",
]
