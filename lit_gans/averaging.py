"""The weight-averaged generator (``generator_ema_decay``): an exponential moving average of G's weights outside
every optimizer and DDP, with BatchNorm statistics re-estimated for the averaged weights. A mixin of
:class:`~lit_gans.GAN`, whose ``generator``, ``generator_ema``, ``generator_ema_start`` and latent sampling it uses."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torch.optim.swa_utils import get_ema_multi_avg_fn

from lit_gans.networks.layers import has_batchnorm

#: batches of 64 latents from which the averaged generator's BatchNorm statistics are re-estimated
EMA_STATISTICS_BATCHES = 8


class AveragedGenerator:
    """Updating and using the average (see the module docstring)."""

    @torch.no_grad()
    def update_generator_ema(self) -> None:
        """Average G's current weights into ``generator_ema`` (a plain copy for the first ``generator_ema_start``
        generator steps); G's buffers are copied."""
        if self._generator_step <= self.generator_ema_start:
            self.generator_ema.n_averaged.zero_()  # AveragedModel copies when nothing was averaged yet
        self.generator_ema.update_parameters(self.generator)
        self._ema_statistics_stale = True

    @torch.no_grad()
    def averaged_generator(self) -> nn.Module:
        """The averaged generator, its BatchNorm statistics (if any) re-estimated for its current weights from
        ``EMA_STATISTICS_BATCHES`` batches of fixed noise (the same on every DDP rank) when they have changed."""
        net = self.generator_ema.module
        if self._ema_statistics_stale and has_batchnorm(net):
            self._reestimate_batchnorm(net)
        self._ema_statistics_stale = False
        return net

    def _reestimate_batchnorm(self, net: nn.Module) -> None:
        """torch's ``update_bn`` (reset, cumulative averages over the batches, modes restored), but through
        :meth:`generate`, so that a class-conditional generator gets labels (drawn from the data's frequencies)."""
        norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        was_training = net.training
        net.train()
        noise = torch.Generator(device=self.device).manual_seed(0)
        for _ in range(EMA_STATISTICS_BATCHES):
            z = self.sample_latent(64, generator=noise)
            self.generate(z, self.draw_labels(64, generator=noise) if self.num_classes else None, net)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        net.train(was_training)


class EMAUpdate:
    """torch's ``get_ema_multi_avg_fn(decay)`` as a picklable object (``ddp_spawn`` pickles the model; torch's
    function is a closure)."""

    def __init__(self, decay: float) -> None:
        self.decay = decay

    def __call__(self, averaged: list[Tensor], current: list[Tensor], n_averaged: Tensor) -> None:
        get_ema_multi_avg_fn(self.decay)(averaged, current, n_averaged)


def match_generator_ema(module: Any, state_dict: dict[str, Any]) -> None:
    """Let a checkpoint and a model disagree on ``generator_ema_decay``: a run resumed with averaging turned on
    starts ``G_ema`` from the checkpoint's G; one resumed with it turned off drops the saved average."""
    prefix = "generator_ema."
    saved = [key for key in state_dict if key.startswith(prefix)]
    if module.generator_ema is None:
        for key in saved:
            del state_dict[key]
    elif not saved:
        for key, value in list(state_dict.items()):
            if key.startswith("generator."):
                state_dict[prefix + "module." + key[len("generator."):]] = value.clone()
        state_dict[prefix + "n_averaged"] = torch.zeros_like(module.generator_ema.n_averaged)
        rank_zero_info("lit-gans: the checkpoint has no generator average; it starts from the checkpoint's generator")


__all__ = ["AveragedGenerator", "EMAUpdate", "EMA_STATISTICS_BATCHES", "match_generator_ema"]
