"""SIGTERM, the signal of preemption (SLURM, Kubernetes, spot instances), means "save and stop; resume me later"
in a lit-gans process, from the command's first second to its last, and once:

- before a fit's training loop runs (imports, parsing, data preparation, metric statistics), the ``lit-gans``
  command stops at once: one line on stderr and exit status :data:`PREEMPTED_EXIT_STATUS` (75); there is
  nothing to save yet;
- while the loop runs, the signal is only recorded; the engine stops every rank at the end of the current batch,
  after saving ``last.ckpt`` (:func:`lit_gans.trainer_plumbing.sigterm_stops_fit`), and the command exits with 75;
- a second SIGTERM changes nothing: the first one's exit is under way.

The ``lit-gans`` command installs the handler before it imports torch (``lit_gans/__init__.py``), so this module
uses only the standard library. A Python program that imports lit-gans keeps its own signal handling; during its
fits the engine records SIGTERM in place of Lightning's handler, whose collective in the signal handler hung
multi-process runs.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Optional

#: exit status of a command stopped by SIGTERM: sysexits.h's EX_TEMPFAIL, "a temporary failure; the user is invited
#: to retry" (a retry wrapper resumes on it, and stops on 0)
PREEMPTED_EXIT_STATUS = 75


class _State:
    received = False  # a SIGTERM arrived (since the current fit's setup)
    training = False  # a fit's training loop is running: the engine stops it at a batch end
    command = False  # this process is the lit-gans command: SIGTERM outside the training loop exits at once


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
    if os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0":
        for stream in (sys.stdout, sys.stderr):  # what was printed before, then the line
            try:
                stream.flush()
            except (RuntimeError, ValueError, OSError):  # interrupted in the middle of its own write, or closed
                pass
        # os.write, not print: the signal may arrive while sys.stderr is in the middle of a write
        os.write(2, f"\nlit-gans: stopped by SIGTERM outside training, nothing to save; run the same command again "
                    f"(exit status {PREEMPTED_EXIT_STATUS})\n".encode())  # fmt: skip
    os._exit(PREEMPTED_EXIT_STATUS)


def sigterm_received() -> bool:
    """Whether SIGTERM arrived in this process since the current fit's setup."""
    return _State.received


def fit_setup() -> None:
    """A fit is being set up: forget a SIGTERM that an earlier fit of this process handled."""
    if not _State.command:  # the command runs one fit; a SIGTERM before it has already stopped it
        _State.received = False
    _State.training = False


def training_loop_started() -> None:
    """From here on the engine stops the fit at a batch end with a checkpoint: SIGTERM is only recorded."""
    _State.training = True


__all__ = [
    "PREEMPTED_EXIT_STATUS", "exit_on_sigterm", "fit_setup", "on_sigterm", "running_as_command",
    "sigterm_received", "training_loop_started",
]  # fmt: skip
