"""SIGTERM, the signal of preemption (SLURM, Kubernetes, spot instances), means "save and stop; resume me later"
in a lit-gans process, from the command's first second to its last, and once:

- before a fit's training loop runs (imports, parsing, data preparation, metric statistics), the ``lit-gans``
  command stops at once: one line on stderr and exit status :data:`PREEMPTED_EXIT_STATUS` (75); there is
  nothing to save yet;
- while the loop runs, the signal is only recorded; the engine stops every rank at the end of the current batch,
  after saving ``last.ckpt`` (:func:`lit_gans.trainer_plumbing.stop_requested`), and the command exits with 75;
- a second SIGTERM changes nothing: the first one's exit is under way.

The ``lit-gans`` command installs the handler before it imports torch (``lit_gans/__init__.py``), so this module
uses only the standard library. A Python program that imports lit-gans keeps its own signal handling; during its
fits the engine records SIGTERM in place of Lightning's handler, whose collective in the signal handler hung
multi-process runs.

Ctrl-C (SIGINT) means "save and stop" too, during a fit of the command or of a Python program alike
(:func:`ctrl_c_stops_fit`: from the fit's first hook to its end, where Ctrl-C has Python's default meaning):

- in the training loop, the first Ctrl-C is recorded as SIGTERM is: every rank stops at the end of the current
  batch, after saving the same checkpoint, and the fit raises :class:`FitInterrupted`, exit status
  :data:`INTERRUPTED_EXIT_STATUS` (130, what a shell reports for a process Ctrl-C ended); the fit's summary names
  the checkpoint and how to resume. Stopping at a batch's end rather than where the signal lands is what makes the
  saved state one that training continues from: a ``KeyboardInterrupt`` can land between the D and G updates of a
  batch, or between two tensors of an optimizer step. (Lightning's own handling saved nothing and exited with 1.)
- before the loop (data preparation, metric statistics), or pressed a second time, Ctrl-C stops at once, saving
  nothing (the newest checkpoint stays the one to resume from), with exit status 130.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any, Optional

#: exit status of a command stopped by SIGTERM: sysexits.h's EX_TEMPFAIL, "a temporary failure; the user is invited
#: to retry" (a retry wrapper resumes on it, and stops on 0)
PREEMPTED_EXIT_STATUS = 75
#: exit status of a fit stopped by Ctrl-C: 128 + SIGINT, what a shell reports for a process that Ctrl-C ended
INTERRUPTED_EXIT_STATUS = 130


class FitInterrupted(SystemExit):
    """Ctrl-C stopped a fit (see the module docstring). A ``SystemExit`` of status 130, so that the program ends
    without a traceback unless it catches it, as Lightning ends one on ``KeyboardInterrupt`` (``sys.exit(1)``)."""

    def __init__(self) -> None:
        super().__init__(INTERRUPTED_EXIT_STATUS)


class _State:
    received = False  # a SIGTERM arrived (since the current fit's setup)
    interrupted = False  # Ctrl-C arrived (since the current fit's first hook)
    training = False  # a fit's training loop is running: the engine stops it at a batch end
    command = False  # this process is the lit-gans command: SIGTERM outside the training loop exits at once
    sigint_before: Any = None  # the SIGINT handler that the current fit replaced (None: none replaced)


def running_as_command() -> bool:
    """Whether this process is the ``lit-gans`` command: the console script, or ``python -m lit_gans`` (also each
    DDP rank that Lightning starts with the same command line)."""
    if Path(sys.argv[0]).name in ("lit-gans", "lit-gans.exe"):
        return True
    argv = getattr(sys, "orig_argv", [])
    return any(a == "-m" and b == "lit_gans" for a, b in zip(argv, argv[1:])) or "-mlit_gans" in argv


def exit_on_sigterm() -> None:
    """Make SIGTERM stop this process with exit status 75 (see the module docstring). The command calls it first
    thing; idempotent."""
    if not _State.command:
        _State.command = True
        # Python puts the default action (death by signal, -15) back while it shuts down, after atexit's functions:
        # an exiting command has nothing left to stop
        atexit.register(signal.signal, signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, on_sigterm)


def on_sigterm(signum: int, frame: Optional[FrameType]) -> None:
    """The SIGTERM handler of a lit-gans process: record the signal; outside a fit's training loop of the command,
    also stop now. Never a collective, never a second exit.

    Stopping outside the loop is ``os._exit``, not an exception: the signal may arrive in the middle of an import
    (torch takes seconds), where an exception left half-imported modules and ended in a RecursionError traceback.
    Nothing is lost: the package writes its files atomically, and the checkpoint folder's lock dies with the
    process."""
    if _State.received:  # a second SIGTERM: the first one's exit is under way
        return
    _State.received = True
    if not _State.command or _State.training:
        return
    _say(f"lit-gans: stopped by SIGTERM outside training, nothing to save; run the same command again "
         f"(exit status {PREEMPTED_EXIT_STATUS})")  # fmt: skip
    os._exit(PREEMPTED_EXIT_STATUS)


def on_sigint(signum: int, frame: Optional[FrameType]) -> None:
    """The Ctrl-C handler of a fit (:func:`ctrl_c_stops_fit`): in the training loop, the first Ctrl-C is only
    recorded (the engine saves and stops at the batch end); before the loop, or a second time, stop now."""
    if _State.training and not _State.interrupted:
        _State.interrupted = True
        _say("lit-gans: Ctrl-C: saving a checkpoint at the end of this batch, then stopping (Ctrl-C again stops at "
             "once, without saving)")  # fmt: skip
        return
    _State.interrupted = True
    raise FitInterrupted()


def _say(line: str) -> None:
    """Print ``line`` on stderr from a signal handler, on a line of its own, once for all ranks (by rank 0)."""
    if os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0":
        return
    for stream in (sys.stdout, sys.stderr):  # what was printed before, then the line
        try:
            stream.flush()
        except (RuntimeError, ValueError, OSError):  # interrupted in the middle of its own write, or closed
            pass
    # os.write, not print: the signal may arrive while sys.stderr is in the middle of a write
    os.write(2, f"\n{line}\n".encode())


def ctrl_c_stops_fit() -> None:
    """From now until :func:`restore_ctrl_c`, Ctrl-C is :func:`on_sigint` (see the module docstring): only where
    it has Python's default meaning (``KeyboardInterrupt``) and only in the main thread, so that a program's own
    SIGINT handler is kept. The engine calls it in a fit's first hook (``configure_callbacks``)."""
    _State.interrupted = _State.training = False  # an earlier fit of this process may have left its loop's flag
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        _State.sigint_before = signal.default_int_handler
        signal.signal(signal.SIGINT, on_sigint)


def restore_ctrl_c() -> Any:
    """Put back the SIGINT handler that :func:`ctrl_c_stops_fit` replaced, and return it (``None``: it replaced
    none). The engine calls it when the fit ends, however it ends."""
    before, _State.sigint_before = _State.sigint_before, None
    if before is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, before)
    return before


def ctrl_c_received() -> bool:
    """Whether Ctrl-C arrived in this process since the current fit's first hook."""
    return _State.interrupted


def sigterm_received() -> bool:
    """Whether SIGTERM arrived in this process since the current fit's setup."""
    return _State.received


def fit_setup() -> None:
    """A fit is being set up: forget a SIGTERM that an earlier fit of this process handled."""
    if not _State.command:  # the command runs one fit; a SIGTERM before it has already stopped it
        _State.received = False
    _State.training = False


def training_loop_started() -> None:
    """From here on the engine stops the fit at a batch end with a checkpoint: SIGTERM and Ctrl-C are recorded."""
    _State.training = True


__all__ = [
    "INTERRUPTED_EXIT_STATUS", "PREEMPTED_EXIT_STATUS", "FitInterrupted", "ctrl_c_received", "ctrl_c_stops_fit",
    "exit_on_sigterm", "fit_setup", "on_sigint", "on_sigterm", "restore_ctrl_c", "running_as_command",
    "sigterm_received", "training_loop_started",
]  # fmt: skip
