"""What the engine arranges with the Trainer, beside the training loop: DDP's ``find_unused_parameters``, the
process group's cleanup in ``ddp_spawn`` workers, atomic checkpoint writes, the W&B x-axis, and the stop on
SIGTERM or Ctrl-C (one decision for all ranks, with a checkpoint; see :mod:`lit_gans.preemption`)."""

from __future__ import annotations

import os
import signal
from typing import Any, Optional

import torch
from lightning.pytorch import Callback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_debug

from lit_gans import preemption

#: what stops a fit at a batch end (:func:`stop_requested`), by precedence: a preemption beats a Ctrl-C
SIGTERM, CTRL_C = "SIGTERM", "Ctrl-C"
_STOP_CODES = {0: None, 1: CTRL_C, 2: SIGTERM}

#: the name of the x-axis of everything the engine and its callbacks log: generator updates
GENERATOR_STEP = "generator_step"


def use_generator_step_axis(run: Any) -> None:
    """Make a W&B run plot every metric against :data:`GENERATOR_STEP`, which the engine logs with its losses and
    the callbacks with their metrics (W&B's ``define_metric``; ``step_sync`` puts the latest generator step into
    a log call without one, such as an image's), and hide Lightning's ``trainer/global_step``: Lightning's
    WandbLogger makes it the axis, under a name that says it counts Lightning's optimizer steps, D's and G's,
    while it is given the generator step."""
    define = getattr(run, "define_metric", None)
    if define is None:  # a disabled run
        return
    define(GENERATOR_STEP)
    define("*", step_metric=GENERATOR_STEP, step_sync=True)
    define("trainer/global_step", hidden=True)


def prepare_trainer(trainer: Any) -> None:
    """At setup: make DDP work with G and D in one module, clean up ``ddp_spawn`` workers' process group, write
    checkpoints atomically, record SIGTERM without Lightning's handler, and plot W&B metrics against the generator
    step."""
    from lit_gans.checkpoints import AtomicCheckpointIO

    _require_ddp_unused_parameters(trainer.strategy)
    _destroy_process_group_at_worker_exit()
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # never leave a half-written checkpoint
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
    _record_sigterm_only(trainer)
    if trainer.is_global_zero:  # the loggers' experiments exist by now (Lightning creates them before setup)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                use_generator_step_axis(logger.experiment)


def _record_sigterm_only(trainer: Any) -> None:
    """Lightning's SIGTERM handler broadcasts from inside the signal handler, wherever each rank happens to be (and
    rank 0 forwards the signal, so a rank sent SIGTERM by the cluster as well runs it twice): with SIGTERM on every
    rank, the ranks' collectives no longer pair up and the run hangs. The engine's handler only records the signal;
    :func:`stop_requested` turns it into one decision for all ranks. Lightning registers the handler when the
    fit starts, after this (the model's ``setup``), and restores the previous one at its end."""
    trainer._signal_connector._sigterm_notifier_fn = preemption.on_sigterm
    preemption.fit_setup()


def stop_requested(trainer: Any) -> Optional[str]:
    """:data:`SIGTERM` or :data:`CTRL_C` when that arrived on any rank (``None``: neither): under DDP one all-reduce,
    which every rank runs at the same batch end, so that all ranks save and stop together (a signal reaches each
    rank at another moment)."""
    code = 2 if preemption.sigterm_received() else 1 if preemption.ctrl_c_received() else 0
    if trainer.world_size > 1:
        flag = torch.tensor(float(code), device=trainer.strategy.root_device)
        code = int(trainer.strategy.reduce(flag, reduce_op="max"))
    return _STOP_CODES[code]


def save_and_stop(trainer: Any, generator_step: int, reason: str) -> None:
    """Save :func:`preemption_checkpoint_path` now, on every rank together (rank 0 writes), unless the divergence
    guard rejects the state, and stop: for SIGTERM, Lightning stops after this batch (``SIGTERMException``, exit
    status 75 in the ``lit-gans`` command); for Ctrl-C, :class:`~lit_gans.preemption.FitInterrupted` now (exit
    status 130), after which the fit's summary says how to resume."""
    from lit_gans.checkpoints import _guard_allows

    path = preemption_checkpoint_path(trainer)
    if reason == SIGTERM:
        trainer._signal_connector.received_sigterm = True  # what Lightning's handler set; every rank checks it next
    if _guard_allows(trainer, path):  # not a state that the divergence guard rejects (it says so)
        trainer.save_checkpoint(path, weights_only=False)  # explicit: Lightning logs a line when it is left unset
        rank_zero_info(f"lit-gans: {reason} received, saved {path} at generator step {generator_step}")
    if reason == CTRL_C:
        raise preemption.FitInterrupted()


class StopOnSignal(Callback):
    """The engine's side of SIGTERM and Ctrl-C in a fit (:mod:`lit_gans.preemption`; the per-batch check and save
    are the engine's ``on_train_batch_end``). Created by :meth:`for_fit`, which hands Ctrl-C to the fit until it
    ends, however it ends. Also writes the preemption checkpoint when Lightning stops a fit for SIGTERM at a point
    the engine's per-batch check has already passed: after the last hook of a batch, or at an epoch's end
    (Lightning checks the signal there and stops with ``SIGTERMException``; the state is that of a completed
    batch)."""

    @classmethod
    def for_fit(cls) -> StopOnSignal:
        """Ctrl-C from now on saves and stops the fit (:func:`~lit_gans.preemption.ctrl_c_stops_fit`); the returned
        callback gives Ctrl-C back when the fit ends."""
        preemption.ctrl_c_stops_fit()
        return cls()

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if hasattr(pl_module, "_preemption_saved"):  # a model fitted again after a stop saves again
            pl_module._preemption_saved = False

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        try:
            if isinstance(exception, SIGTERMException) and not getattr(pl_module, "_preemption_saved", True):
                pl_module._preemption_saved = True
                save_and_stop(trainer, pl_module.generator_step, SIGTERM)
        finally:
            self._give_back_ctrl_c(trainer)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._give_back_ctrl_c(trainer)

    @staticmethod
    def _give_back_ctrl_c(trainer: Any) -> None:
        before = preemption.restore_ctrl_c()
        # Lightning restores the handlers it found when the training started (ours) after on_exception: its
        # record must name the one ours replaced
        saved = getattr(trainer._signal_connector, "_original_handlers", {})
        if before is not None and signal.SIGINT in saved:
            saved[signal.SIGINT] = before


def preemption_checkpoint_path(trainer: Any) -> str:
    """``last.ckpt`` of the :class:`~lit_gans.checkpoints.LastCheckpoint` callback, else in the checkpoint
    callback's folder (``default_root_dir/checkpoints`` without one)."""
    from lit_gans.checkpoints import LastCheckpoint

    last = [c for c in trainer.callbacks if isinstance(c, LastCheckpoint)]
    if last:
        return last[0].path
    callback = trainer.checkpoint_callback
    folder = getattr(callback, "dirpath", None) or os.path.join(trainer.default_root_dir, "checkpoints")
    return os.path.join(folder, "last.ckpt")


def _destroy_process_group_at_worker_exit() -> None:
    """Processes started by ``ddp_spawn`` leave through ``os._exit``, which skips the ``atexit`` handler where
    Lightning destroys the process group; gloo's threads then sometimes abort the worker at exit ("terminate called
    without an active exception"). Multiprocessing's own finalizers do run there, so register the cleanup with them."""
    import multiprocessing
    from multiprocessing import util

    if (
        torch.distributed.is_available()
        and torch.distributed.is_initialized()
        and multiprocessing.current_process().name != "MainProcess"
    ):
        util.Finalize(None, _destroy_process_group, exitpriority=10)


def _destroy_process_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _require_ddp_unused_parameters(strategy: Any) -> None:
    """G and D live in one DDP module, and each backward uses only one of them, so DDP must look for unused
    parameters (Lightning-AI/pytorch-lightning#20328). Turn it on rather than fail mid-run; refuse static graphs."""
    if not isinstance(strategy, DDPStrategy):
        return
    kwargs = getattr(strategy, "_ddp_kwargs", None)
    if kwargs is None:
        return
    if kwargs.get("static_graph"):
        raise ValueError(
            "DDP with static_graph=True cannot train a GAN: the D and G backwards use different parameters. "
            "Use strategy='ddp_find_unused_parameters_true'."
        )
    if not kwargs.get("find_unused_parameters"):  # what strategy="auto" gives on several devices: nothing to report
        kwargs["find_unused_parameters"] = True
        rank_zero_debug("lit-gans: enabled DDP find_unused_parameters=True (G and D share one module)")


__all__ = [
    "CTRL_C", "GENERATOR_STEP", "SIGTERM", "StopOnSignal", "preemption_checkpoint_path", "prepare_trainer", "save_and_stop",
    "stop_requested", "use_generator_step_axis",
]  # fmt: skip
