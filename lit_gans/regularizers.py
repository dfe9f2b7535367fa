r"""Discriminator regularizers: the penalties as plain functions (weight clipping, WGAN-GP's gradient penalty,
R1, R2), and :class:`Regularizer`, a term of D's or G's loss that is a part of the model: an ``nn.Module`` whose
state lives in buffers (saved in checkpoints, equal on every DDP rank), computed from one step's
:class:`~lit_gans.step.TrainingStep`, applied lazily every ``interval`` steps with its weight times ``interval``
(StyleGAN2, appendix B). Any model takes a list of them, ``regularizers=[R1(10.0), LeCam(0.3)]``.

Example::

    >>> import torch
    >>> from torch import nn
    >>> critic = nn.Sequential(nn.Flatten(), nn.Linear(4, 1))
    >>> penalty, norms = gradient_penalty(critic, torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2))
    >>> penalty.shape, norms.shape
    (torch.Size([]), torch.Size([3]))
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar, Optional, Union

import torch
from torch import Tensor, nn

from lit_gans.validation import build_from_config, check_float, check_int


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


def r2_penalty(critic: Critic, fake: Tensor, option: str = "the R2 penalty") -> tuple[Tensor, Tensor]:
    r"""R2 penalty (Mescheder et al. 2018, sec. 4.1, beside R1; Huang et al. 2024, "The GAN is dead; long live the
    GAN! A Modern GAN Baseline", R3GAN):

    .. math:: R_2 = \mathbb{E}_{x \sim p_\theta}\big[\lVert \nabla_x D(x) \rVert_2^2\big]

    (without the weight :math:`\gamma / 2`): D's input gradient on *generated* images, pushed to zero. The
    contract of :func:`r1_penalty`, on the fakes.

    Returns:
        The penalty (a scalar) and the per-sample gradient norms (detached), for logging.
    """
    squared = input_gradient_squared_norms(critic, fake, option)
    return squared.mean(), squared.detach().sqrt()


# ---------------------------------------------------------------------------------------------- regularizers
Term = Optional[tuple[Tensor, dict[str, Tensor]]]


class Regularizer(nn.Module):
    """A term of the discriminator's and/or the generator's loss, a part of the model.

    A subclass overrides :meth:`discriminator_term` and/or :meth:`generator_term`: each computes its weighted term
    and the values to log from the step's record and the model (``model.critic_of(labels)`` is D as a function
    of the images; D's outputs on the step's real and fake images are ``step.real_output`` / ``step.fake_output``,
    with their graph). The engine adds a term every ``interval``-th D step (G step for a generator term) times
    ``interval``, and logs its values as ``train/<key>``. State goes into buffers; a value that must agree
    across DDP ranks is reduced with :meth:`mean_over_ranks`.

    Args:
        interval: lazy regularization: apply every ``interval`` steps with the weight multiplied by ``interval``
            (StyleGAN2 applies R1 every 16 D steps).

    Example::

        >>> class WeightDecay(Regularizer):
        ...     def __init__(self, weight: float = 1e-4, interval: int = 1):
        ...         super().__init__(interval)
        ...         self.weight = weight
        ...     def discriminator_term(self, model, step):
        ...         decay = sum(p.square().sum() for p in model.discriminator.parameters())
        ...         return self.weight * decay, {"weight_decay": decay.detach()}
        >>> WeightDecay(1e-3).to_config()
        {'class_path': 'lit_gans.regularizers.WeightDecay', 'init_args': {'weight': 0.001, 'interval': 1}}
    """

    #: whether the terms differentiate D with respect to its input (R1, R2, the gradient penalty): such a term
    #: needs float32 or bfloat16 input gradients and is refused under float16 precision, and D without BatchNorm.
    needs_input_gradients: ClassVar[bool] = False

    def __init__(self, interval: int = 1) -> None:
        super().__init__()
        self.interval = check_int("interval", interval)
        self.register_buffer("discriminator_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("generator_steps", torch.zeros((), dtype=torch.long))
        self._steps = {"discriminator": 0, "generator": 0}  # host copies: no device read on the hot path
        self.register_load_state_dict_post_hook(_sync_host_copies_after_load)

    def _sync_host_copies(self) -> None:
        self._steps = {"discriminator": int(self.discriminator_steps), "generator": int(self.generator_steps)}

    def discriminator_term(self, model: Any, step: Any) -> Term:
        """``(weighted term, logs)`` to add to D's loss, or ``None``."""
        return None

    def generator_term(self, model: Any, step: Any) -> Term:
        """``(weighted term, logs)`` to add to G's loss, or ``None``."""
        return None

    def due(self, network: str) -> bool:
        """Whether this ``discriminator`` / ``generator`` step gets the term (every ``interval``-th, from the first)."""
        return self._steps[network] % self.interval == 0

    def step_done(self, network: str) -> None:
        """Count one optimizer step of ``network`` (called by the engine after each)."""
        self._steps[network] += 1
        getattr(self, f"{network}_steps").fill_(self._steps[network])

    @staticmethod
    def mean_over_ranks(model: Any, value: Tensor) -> Tensor:
        """``value`` averaged over the DDP processes (itself in one process)."""
        trainer = getattr(model, "_trainer", None)
        if trainer is None or trainer.world_size == 1:
            return value
        return trainer.strategy.reduce(value, reduce_op="mean")

    def init_args(self) -> dict[str, Any]:
        """The constructor's arguments, read back from the attributes of the same names."""
        names = [n for n in inspect.signature(type(self).__init__).parameters if n != "self"]
        return {n: getattr(self, n) for n in names if hasattr(self, n)}

    def to_config(self) -> dict[str, Any]:
        """``{"class_path", "init_args"}`` of plain values, as a checkpoint stores it (``weights_only=True``)."""
        args = {k: list(v) if isinstance(v, tuple) else v for k, v in self.init_args().items()}
        return {"class_path": f"{type(self).__module__}.{type(self).__qualname__}", "init_args": args}

    @staticmethod
    def from_config(config: Union["Regularizer", dict[str, Any]]) -> "Regularizer":
        """A regularizer from :meth:`to_config`'s dictionary (or the regularizer itself); only subclasses of
        :class:`Regularizer` are built."""
        return build_from_config(config, Regularizer, "regularizers")

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.init_args().items())


def _sync_host_copies_after_load(module: Regularizer, incompatible_keys: Any) -> None:
    module._sync_host_copies()  # a module-level function, so that models pickle (ddp_spawn)


class _ZeroCentredPenalty(Regularizer):
    """``gamma / 2`` times a zero-centred penalty on D's input gradient, in D's loss: R1 on the real images, R2 on
    the generated ones (each scored with its own labels)."""

    needs_input_gradients = True
    #: the penalty function, the step's images and labels it takes, and its log key
    penalty: ClassVar[Callable[..., tuple[Tensor, Tensor]]]
    images: ClassVar[str]
    labels: ClassVar[str]

    def __init__(self, gamma: float, interval: int = 1) -> None:
        super().__init__(interval)
        self.gamma = check_float("gamma", gamma, inclusive=True)

    def discriminator_term(self, model: Any, step: Any) -> Term:
        name = type(self).__name__
        critic = model.critic_of(getattr(step, self.labels))
        penalty, _ = type(self).penalty(critic, getattr(step, self.images), option=f"{name}(gamma={self.gamma})")
        return self.gamma / 2 * penalty, {f"{name.lower()}_penalty": penalty.detach()}


class R1(_ZeroCentredPenalty):
    r"""``gamma / 2 * R1``, :func:`r1_penalty` on the real images, in D's loss (Mescheder et al. 2018); logs
    ``r1_penalty``. ``r1_penalty_weight=gamma`` is the shorthand ``regularizers=[R1(gamma)]``."""

    penalty, images, labels = staticmethod(r1_penalty), "real", "labels"


class R2(_ZeroCentredPenalty):
    r"""``gamma / 2 * R2``, :func:`r2_penalty` on the generated images (scored with the labels they were generated
    for), in D's loss; logs ``r2_penalty``. R3GAN pairs it with :class:`R1` of the same gamma."""

    penalty, images, labels = staticmethod(r2_penalty), "fake", "fake_labels"


class GradientPenalty(Regularizer):
    r"""WGAN-GP's ``weight * E[(||grad D(x_hat)||_2 - 1)^2]`` on random interpolates of the real and fake images
    (:func:`gradient_penalty`; the interpolation weights come from the model's per-rank noise generator, and the
    interpolates are scored with the real images' labels, StudioGAN's choice); logs ``gradient_penalty``,
    ``gradient_norm`` and ``gradient_norm_std``. :class:`~lit_gans.WGANGP` builds it from
    ``gradient_penalty_weight``."""

    needs_input_gradients = True

    def __init__(self, weight: float = 10.0, interval: int = 1) -> None:
        super().__init__(interval)
        self.weight = check_float("weight", weight, inclusive=True)

    def discriminator_term(self, model: Any, step: Any) -> Term:
        penalty, norms = gradient_penalty(
            model.critic_of(step.labels), step.real, step.fake, generator=model._noise_generator(),
            option=f"WGAN-GP's gradient penalty (weight={self.weight})",
        )  # fmt: skip
        logs = {"gradient_penalty": penalty.detach(), "gradient_norm": norms.mean(), "gradient_norm_std": norms.std(correction=0)}
        return self.weight * penalty, logs


class LeCam(Regularizer):
    r"""LeCam regularization (Tseng et al. 2021, "Regularizing Generative Adversarial Networks under Limited Data";
    google/lecam-gan ``lecam_loss.py``), in D's loss:

    .. math:: w \big(\mathbb{E}[\mathrm{relu}(D(x) - \alpha_F)^2] + \mathbb{E}[\mathrm{relu}(\alpha_R - D(G(z)))^2]\big)

    where :math:`\alpha_R, \alpha_F` are exponential moving averages (``decay``, zero-debiased, updated with this
    step's batch means before the term is computed, as there) of D's mean output on real and fake images. The
    batch means are averaged over DDP ranks, so the averages are equal on every rank. Logs ``lecam``,
    ``lecam_ema_real`` and ``lecam_ema_fake``.
    """

    def __init__(self, weight: float, decay: float = 0.99, interval: int = 1) -> None:
        super().__init__(interval)
        self.weight = check_float("weight", weight, inclusive=True)
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay={decay}: LeCam's moving-average decay must be in [0, 1)")
        self.decay = float(decay)
        self.register_buffer("biased_real", torch.zeros((), dtype=torch.float64))
        self.register_buffer("biased_fake", torch.zeros((), dtype=torch.float64))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def update(self, model: Any, real_output: Tensor, fake_output: Tensor) -> tuple[Tensor, Tensor]:
        """Fold this step's mean outputs into the averages; returns the debiased averages (real, fake)."""
        means = torch.stack([real_output.detach().float().mean(), fake_output.detach().float().mean()])
        means = self.mean_over_ranks(model, means).to(self.biased_real.dtype)
        self.biased_real.mul_(self.decay).add_((1 - self.decay) * means[0])
        self.biased_fake.mul_(self.decay).add_((1 - self.decay) * means[1])
        self.updates.add_(1)
        debias = 1 - self.decay ** self.updates.to(self.biased_real.dtype)
        return self.biased_real / debias, self.biased_fake / debias

    def discriminator_term(self, model: Any, step: Any) -> Term:
        if step.real_output is None or step.fake_output is None:
            raise RuntimeError("LeCam needs D's outputs on the step's images: score them through GAN.discriminate")
        ema_real, ema_fake = self.update(model, step.real_output, step.fake_output)
        real, fake = step.real_output.float(), step.fake_output.float()
        ema_real, ema_fake = ema_real.to(real.dtype), ema_fake.to(real.dtype)
        penalty = torch.relu(real - ema_fake).square().mean() + torch.relu(ema_real - fake).square().mean()
        return self.weight * penalty, {"lecam": penalty.detach(), "lecam_ema_real": ema_real, "lecam_ema_fake": ema_fake}


__all__ = [
    "GradientPenalty",
    "LeCam",
    "R1",
    "R2",
    "Regularizer",
    "r2_penalty",
    "clip_weights_",
    "fraction_at_clip_bound",
    "interpolate_real_fake",
    "input_gradient_squared_norms",
    "check_penalty_precision",
    "gradient_penalty",
    "r1_penalty",
]
