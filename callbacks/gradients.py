"""Gradient norms of G and D per optimizer step, in manual optimization, after any gradient unscaling."""

from __future__ import annotations

from typing import Any, Optional

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor, nn
from torch.optim import Optimizer

from lit_gans.callbacks.base import generator_step, log_scalars
from lit_gans.regularizers import fraction_at_clip_bound
from lit_gans.validation import check_float, check_int


def total_grad_norm(module: nn.Module, norm_type: float = 2.0) -> Optional[Tensor]:
    """The norm of all of ``module``'s gradients taken together (``None`` when no parameter has one)."""
    grads = [p.grad.detach() for p in module.parameters() if p.grad is not None]
    if not grads:
        return None
    norms = torch.stack([torch.linalg.vector_norm(g.float(), norm_type) for g in grads])
    return torch.linalg.vector_norm(norms, norm_type)


class GradientNormMonitor(Callback):
    """Logs ``grad_norm/generator`` and ``grad_norm/discriminator``: the total gradient norm of the network an
    optimizer is about to update, at every optimizer step of every ``every_n_generator_steps``-th generator step
    (throttled: it costs one small reduction per parameter tensor). Optionally per layer
    (``grad_norm/discriminator/<parameter>``).

    It runs in ``on_before_optimizer_step``, which Lightning calls once per ``optimizer.step()`` also in manual
    optimization, after the fp16 GradScaler has unscaled the gradients and after DDP has averaged them, and
    before the model clips them (so the value is the pre-clipping norm). For WGAN it also logs
    ``wgan/clipped_fraction``, the share of critic weights at the clipping bound (near 1: the critic is
    capacity-starved); WGAN-GP logs the mean and spread of ``||grad D(x_hat)||`` itself (``train/gradient_norm``,
    ``train/gradient_norm_std``).

    Example::

        GradientNormMonitor(every_n_generator_steps=25, per_layer=True)
    """

    def __init__(self, every_n_generator_steps: int = 25, norm_type: float = 2.0, per_layer: bool = False) -> None:
        self.every_n_generator_steps = check_int("every_n_generator_steps", every_n_generator_steps)
        self.norm_type = check_float("norm_type", norm_type)
        self.per_layer = per_layer

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Optimizer) -> None:
        if generator_step(pl_module) % self.every_n_generator_steps:
            return
        g_opt, d_opt = (o.optimizer for o in pl_module.optimizers())
        name, net = ("generator", pl_module.generator) if optimizer is g_opt else ("discriminator", pl_module.discriminator)
        total = total_grad_norm(net, self.norm_type)
        if total is None:
            return
        metrics: dict[str, Any] = {f"grad_norm/{name}": total}
        if self.per_layer:
            for pname, p in net.named_parameters():
                if p.grad is not None:
                    metrics[f"grad_norm/{name}/{pname}"] = torch.linalg.vector_norm(p.grad.detach().float(), self.norm_type)
        clip = getattr(pl_module, "clip_value", None)
        if name == "discriminator" and clip is not None:
            metrics["wgan/clipped_fraction"] = fraction_at_clip_bound(pl_module.discriminator, clip)
        log_scalars(trainer, pl_module, metrics)


__all__ = ["GradientNormMonitor", "total_grad_norm"]
