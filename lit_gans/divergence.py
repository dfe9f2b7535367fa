"""The divergence guard of the engine: a non-finite loss skips its optimizer step without a trace, and after
``max_nonfinite_steps`` in a row the run stops with a clear error or rolls back to the newest valid checkpoint at
lower learning rates. A mixin of :class:`~lit_gans.GAN`, whose attributes it uses (``check_finite``,
``max_nonfinite_steps``, ``on_nonfinite``, ``rollback_lr_factor``, ``max_rollbacks``, the ``nonfinite_steps`` and
``rollbacks`` buffers)."""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor


class NonFiniteLossError(RuntimeError):
    """Training diverged: a loss stayed NaN or infinite for ``max_nonfinite_steps`` consecutive steps."""


class DivergenceGuard:
    """The engine's checks of each loss before its optimizer step (see the module docstring)."""

    def _network_buffers(self) -> Optional[tuple[list[Tensor], list[Tensor]]]:
        """``(buffers, copies)`` of every buffer of G and D (BatchNorm statistics, spectral norm's vectors), which
        the forwards of a step update, so that a skipped step can put them back; ``None`` without ``check_finite``
        or buffers. The copies are kept between steps and refreshed in one fused copy."""
        if not self.check_finite:
            return None
        buffers = [b for net in (self.generator, self.discriminator) for b in net.buffers()]
        if not buffers:
            return None
        copies = getattr(self, "_buffer_copies", None)
        try:
            torch._foreach_copy_(copies, buffers)
        except (RuntimeError, TypeError):  # first step, or buffers that changed shape, dtype or device
            copies = self._buffer_copies = [b.detach().clone() for b in buffers]
        return buffers, copies

    def _step_is_finite(
        self, loss: Tensor, network: str, optimizer: Any, buffers: Optional[tuple[list[Tensor], list[Tensor]]] = None
    ) -> bool:
        """Whether ``loss`` is finite on every rank; if not, drop this step's gradients, restore ``buffers`` (the
        step leaves no trace in the model), count it, and stop or roll back after ``max_nonfinite_steps``
        consecutive ones."""
        if not self.check_finite:
            return True
        value = float(loss.detach())  # the one host synchronization per optimizer step
        finite = math.isfinite(value)
        if self._trainer is not None and self.trainer.world_size > 1:  # every rank must take the same decision
            flag = torch.tensor(float(finite), device=self.device)
            finite = bool(self.trainer.strategy.reduce(flag, reduce_op="min") > 0)
        if finite:
            self._last_finite[network] = value
            self._nonfinite_consecutive[network] = 0
            return True
        optimizer.zero_grad(set_to_none=True)
        if buffers is not None:
            with torch.no_grad():
                torch._foreach_copy_(*buffers)
        self.nonfinite_steps.add_(1)
        self._nonfinite_consecutive[network] += 1
        self.log("train/nonfinite_steps", self.nonfinite_steps.float(), on_step=True, on_epoch=False)
        if self._nonfinite_consecutive[network] >= self.max_nonfinite_steps:
            if self.on_nonfinite == "rollback" and self._rollbacks < self.max_rollbacks:
                self._rollback(network, value)
            else:
                raise NonFiniteLossError(self._divergence_message(network, value))
        return False

    def _divergence_message(self, network: str, value: float) -> str:
        last = ", ".join(f"{k} {v:.6g}" if v is not None else f"{k} none yet" for k, v in self._last_finite.items())
        return (
            f"The {network} loss was {value} for {self._nonfinite_consecutive[network]} consecutive steps at generator step "
            f"{self._generator_step} (last finite losses: {last}); stopping. Lower the learning rates, check the "
            "data for NaNs, or pass on_nonfinite='rollback' to resume from the last good checkpoint at a lower rate."
        )

    def _rollback(self, network: str, value: float) -> None:
        from lit_gans.checkpoints import load_checkpoint_file, resolve_checkpoint

        callback = self.trainer.checkpoint_callback
        folder = getattr(callback, "dirpath", None)
        try:
            path = resolve_checkpoint(folder) if folder else None
        except FileNotFoundError:
            path = None
        if path is None:
            raise NonFiniteLossError(self._divergence_message(network, value) + " No checkpoint to roll back to.")
        checkpoint = load_checkpoint_file(path, map_location=self.device)
        diverged = self._divergence_message(network, value).split("; stopping")[0]  # before the restore
        done = self._rollbacks + 1
        self.load_state_dict(checkpoint["state_dict"])
        self._ema_statistics_stale = True
        # the checkpoint may date from after an earlier rollback, its rates already lowered that many times
        scale = self.rollback_lr_factor ** (done - int(self.rollbacks))
        for opt, state in zip(self.optimizers(), checkpoint["optimizer_states"]):
            raw = opt.optimizer  # load_state_dict replaces param_groups; the LightningOptimizer wrapper keeps a copy
            raw.load_state_dict(state)
            for group in raw.param_groups:
                group["lr"] *= scale
        for scheduler, state in zip(self._lr_scheduler_list(), checkpoint.get("lr_schedulers", [])):
            scheduler.load_state_dict(state)
            # schedulers that recompute the rate from base_lrs (LambdaLR, cosine) would drop the factor at their next
            # step
            scheduler.base_lrs = [lr * scale for lr in scheduler.base_lrs]
        self._rollbacks = done
        self.rollbacks.fill_(done)
        self._nonfinite_consecutive = {"discriminator": 0, "generator": 0}
        rank_zero_warn(
            f"{diverged}; rolled back to {path} "
            f"(saved at generator step {self._generator_step}) with learning rates x{self.rollback_lr_factor**done:g} "
            f"of the original (rollback {done} of at most {self.max_rollbacks})"
        )


__all__ = ["DivergenceGuard", "NonFiniteLossError"]
