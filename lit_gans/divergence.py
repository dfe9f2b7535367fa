"""The divergence guard of the engine (``check_finite=True``, the default).

What it rejects:

- a loss that is NaN, infinite, or larger in magnitude than ``max_abs_value`` (default 1e6): its optimizer step
  is skipped without a trace (gradients dropped, BatchNorm statistics put back), counted in
  ``train/nonfinite_steps`` and said in a warning line (the first skip, then at most one line a minute with the
  count); after ``max_nonfinite_steps`` such steps in a row the run has diverged;
- blow-up before NaN: a parameter or floating buffer of G or D (BatchNorm running statistics included) whose
  magnitude exceeds ``max_abs_value``, checked every :data:`WEIGHT_CHECK_EVERY` generator steps (one reduction and
  one host synchronization) and before every checkpoint; the run has diverged at once. Healthy runs stay five
  orders of magnitude below the limit (weights near 1, BatchNorm statistics below 1, losses below 10 in the shipped
  MNIST DCGAN); ``lr=10`` took BatchNorm's running variance to 1e8 in 4 steps and on to 1e12 with finite losses.
  Saturated outputs are no criterion: MNIST's own pixels are nearly all -1 or 1.

A diverged run stops with :class:`NonFiniteLossError`, or with ``on_nonfinite="rollback"`` reloads the newest
valid checkpoint at lower learning rates. :attr:`DivergenceGuard.healthy` is False while the guard rejects the
state (in a streak of skipped steps, or blown up): ``LastCheckpoint``, ``BestCheckpoint`` and the SIGTERM save
then write nothing, so a rollback never lands inside the streak. ``max_abs_value=None`` turns the blow-up checks
off; ``check_finite=False`` the whole guard.

A mixin of :class:`~lit_gans.GAN`, whose attributes it uses (``check_finite``, ``max_nonfinite_steps``,
``on_nonfinite``, ``rollback_lr_factor``, ``max_rollbacks``, ``max_abs_value``, the ``nonfinite_steps`` and
``rollbacks`` buffers)."""

from __future__ import annotations

import math
import time
from typing import Any, Optional

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor


#: generator steps between two checks of the parameters and buffers against ``max_abs_value``
WEIGHT_CHECK_EVERY = 10
#: seconds between two warning lines about skipped steps (or skipped checkpoints)
REPORT_INTERVAL_S = 60.0


class NonFiniteLossError(RuntimeError):
    """Training diverged: a loss stayed NaN, infinite or beyond ``max_abs_value`` for ``max_nonfinite_steps``
    consecutive steps, or a parameter or buffer grew beyond ``max_abs_value``."""


class _RateLimitedWarning:
    """One warning line now, then at most one every :data:`REPORT_INTERVAL_S` seconds, with how many events the
    silent time held."""

    def __init__(self) -> None:
        self.last: Optional[float] = None
        self.unreported = 0

    def __call__(self, message: str) -> None:
        self.unreported += 1
        now = time.monotonic()
        if self.last is not None and now - self.last < REPORT_INTERVAL_S:
            return
        more = f" ({self.unreported - 1} more since the last report)" if self.unreported > 1 else ""
        rank_zero_warn(message + more)
        self.last, self.unreported = now, 0


class DivergenceGuard:
    """The engine's checks of each loss before its optimizer step, and of the weights (see the module docstring)."""

    @property
    def healthy(self) -> bool:
        """Whether the guard accepts the current state, so that it may be checkpointed: no streak of skipped steps
        under way, no parameter or buffer beyond ``max_abs_value``. Always True without ``check_finite``. Under DDP
        every rank must ask at once (it reduces across ranks), as checkpoint saves do."""
        if not self.check_finite:
            return True
        return not any(self._nonfinite_consecutive.values()) and self._largest_abs_value() <= self._abs_limit

    def checkpoint_allowed(self, what: str) -> bool:
        """:attr:`healthy`, saying (rate-limited) that ``what`` is not written when it is not."""
        if self.healthy:
            return True
        if not hasattr(self, "_checkpoint_skips"):
            self._checkpoint_skips = _RateLimitedWarning()
        self._checkpoint_skips(
            f"not writing {what} at generator step {self._generator_step}: the divergence guard rejects this state "
            "(skipped steps in a row, or weights beyond max_abs_value); the last checkpoint written stays"
        )
        return False

    @property
    def _abs_limit(self) -> float:
        return math.inf if self.max_abs_value is None else self.max_abs_value

    def _largest_abs_value(self) -> float:
        """The largest magnitude among G's and D's parameters and floating buffers (the max over ranks under DDP);
        0 when ``max_abs_value`` is None. One fused reduction and one host synchronization."""
        if self.max_abs_value is None:
            return 0.0
        tensors = [
            t.detach()
            for net in (self.generator, self.discriminator)
            for t in (*net.parameters(), *net.buffers())
            if t.is_floating_point() and t.numel()
        ]
        largest = torch.stack(torch._foreach_norm(tensors, ord=math.inf)).max().float()
        if self._trainer is not None and self.trainer.world_size > 1:
            largest = self.trainer.strategy.reduce(largest, reduce_op="max")
        value = float(largest)
        return math.inf if math.isnan(value) else value

    def _check_for_blowup(self) -> None:
        """Every :data:`WEIGHT_CHECK_EVERY` generator steps: stop or roll back when a parameter or buffer has grown
        beyond ``max_abs_value`` (divergence that is not NaN yet)."""
        if not self.check_finite or self.max_abs_value is None or self._generator_step % WEIGHT_CHECK_EVERY:
            return
        largest = self._largest_abs_value()
        if largest > self.max_abs_value:
            self._diverged(
                f"largest magnitude among the parameters and buffers of G and D was {largest:.3g} (beyond "
                f"max_abs_value={self.max_abs_value:g})"
            )

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
        finite = math.isfinite(value) and abs(value) <= self._abs_limit
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
        loss = f"loss was {value:.6g}" + (f" (beyond max_abs_value={self.max_abs_value:g})" if math.isfinite(value) else "")
        in_a_row = self._nonfinite_consecutive[network]
        if not hasattr(self, "_step_skips"):
            self._step_skips = _RateLimitedWarning()
        self._step_skips(
            f"skipped the {network} step at generator step {self._generator_step}: its {loss} ({in_a_row} in a row; "
            f"{self.max_nonfinite_steps} in a row end the run; train/nonfinite_steps counts them)"
        )
        if in_a_row >= self.max_nonfinite_steps:
            self._diverged(f"{network} {loss} for {in_a_row} consecutive steps")
        return False

    def _diverged(self, what: str) -> None:
        """Roll back (``on_nonfinite="rollback"``, rollbacks left) or stop with :class:`NonFiniteLossError`."""
        if self.on_nonfinite == "rollback" and self._rollbacks < self.max_rollbacks:
            self._rollback(what)
        else:
            raise NonFiniteLossError(self._divergence_message(what))

    def _divergence_message(self, what: str) -> str:
        last = ", ".join(f"{k} {v:.6g}" if v is not None else f"{k} none yet" for k, v in self._last_finite.items())
        return (
            f"The {what} at generator step {self._generator_step} (last finite losses: {last}); stopping. Lower the "
            "learning rates, check the data for NaNs, or pass on_nonfinite='rollback' to resume from the last good "
            "checkpoint at a lower rate."
        )

    def _rollback(self, what: str) -> None:
        from lit_gans.checkpoints import load_checkpoint_file, resolve_checkpoint

        callback = self.trainer.checkpoint_callback
        folder = getattr(callback, "dirpath", None)
        try:
            path = resolve_checkpoint(folder) if folder else None
        except FileNotFoundError:
            path = None
        if path is None:
            raise NonFiniteLossError(self._divergence_message(what) + " No checkpoint to roll back to.")
        checkpoint = load_checkpoint_file(path, map_location=self.device)
        diverged = self._divergence_message(what).split("; stopping")[0]  # before the restore
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
