"""What the engine arranges with the Trainer, beside the training loop: DDP's ``find_unused_parameters``, the
process group's cleanup in ``ddp_spawn`` workers, atomic checkpoint writes, and the stop on SIGTERM (one decision
for all ranks, with a checkpoint; see :mod:`lit_gans.preemption`)."""

from __future__ import annotations

import os
from typing import Any

import torch
from lightning.pytorch import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_debug

from lit_gans import preemption


def prepare_trainer(trainer: Any) -> None:
    """At setup: make DDP work with G and D in one module, clean up ``ddp_spawn`` workers' process group, and
    write checkpoints atomically, and record SIGTERM without Lightning's handler."""
    from lit_gans.checkpoints import AtomicCheckpointIO

    _require_ddp_unused_parameters(trainer.strategy)
    _destroy_process_group_at_worker_exit()
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # never leave a half-written checkpoint
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
    _record_sigterm_only(trainer)


def _record_sigterm_only(trainer: Any) -> None:
    """Lightning's SIGTERM handler broadcasts from inside the signal handler, wherever each rank happens to be (and
    rank 0 forwards the signal, so a rank sent SIGTERM by the cluster as well runs it twice): with SIGTERM on every
    rank, the ranks' collectives no longer pair up and the run hangs. The engine's handler only records the signal;
    :func:`sigterm_stops_fit` turns it into one decision for all ranks. Lightning registers the handler when the
    fit starts, after this (the model's ``setup``), and restores the previous one at its end."""
    trainer._signal_connector._sigterm_notifier_fn = preemption.on_sigterm
    preemption.fit_setup()


def sigterm_stops_fit(trainer: Any) -> bool:
    """Whether SIGTERM arrived on any rank: under DDP one all-reduce, which every rank runs at the same batch end,
    so that all ranks save and stop together (the signal reaches each rank at another moment)."""
    received = preemption.sigterm_received()
    if trainer.world_size > 1:
        flag = torch.tensor(float(received), device=trainer.strategy.root_device)
        received = bool(trainer.strategy.reduce(flag, reduce_op="max") > 0)
    return received


def save_preemption_checkpoint(trainer: Any, generator_step: int) -> None:
    """Save :func:`preemption_checkpoint_path` now, on every rank together (rank 0 writes), unless the divergence
    guard rejects the state, and make Lightning stop after this batch (``SIGTERMException``, exit status 75 in the
    ``lit-gans`` command)."""
    from lit_gans.checkpoints import _guard_allows

    path = preemption_checkpoint_path(trainer)
    trainer._signal_connector.received_sigterm = True  # what Lightning's handler set; every rank checks it next
    if _guard_allows(trainer, path):  # not a state that the divergence guard rejects (it says so)
        trainer.save_checkpoint(path, weights_only=False)  # explicit: Lightning logs a line when it is left unset
        rank_zero_info(f"lit_gans: SIGTERM received, saved {path} at generator step {generator_step}")


class SaveOnSigterm(Callback):
    """The preemption checkpoint when Lightning stops a fit for SIGTERM at a point the engine's per-batch check
    has already passed: after the last hook of a batch, or at an epoch's end. (Lightning checks the signal there
    and stops with ``SIGTERMException``; the state is that of a completed batch.)"""

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and not getattr(pl_module, "_preemption_saved", True):
            pl_module._preemption_saved = True
            save_preemption_checkpoint(trainer, pl_module.generator_step)


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
        rank_zero_debug("lit_gans: enabled DDP find_unused_parameters=True (G and D share one module)")


__all__ = [
    "SaveOnSigterm", "preemption_checkpoint_path", "prepare_trainer", "save_preemption_checkpoint", "sigterm_stops_fit",
]  # fmt: skip
