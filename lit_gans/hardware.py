"""What the CPU does natively: bf16 autocast pays only where the CPU computes in bf16 (Intel AVX512-BF16 or AMX,
AMD Zen 4 and later, Arm cores with the BF16 extension). Elsewhere oneDNN emulates bf16 with float32 arithmetic
and conversions: on a 2-core AVX-512 Xeon without bf16 instructions, a bf16 matmul ran at a quarter of float32's
speed and the fast path (bf16-mixed + channels-last + reuse) at 0.39x plain float32.

Example::

    >>> from lit_gans.hardware import cpu_description
    >>> isinstance(cpu_description(), str)
    True
"""

from __future__ import annotations

import functools
import platform
from typing import Any, Optional

from lightning.pytorch.utilities import rank_zero_warn

#: /proc/cpuinfo flags of native bf16 arithmetic: x86 (AVX512-BF16, AMX-BF16) and Arm (FEAT_BF16)
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def _cpuinfo() -> Optional[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


@functools.lru_cache(maxsize=None)
def cpu_has_native_bf16() -> Optional[bool]:
    """Whether the CPU has bf16 instructions: from the flags of ``/proc/cpuinfo`` (``None`` where there is no such
    file, e.g. macOS, whose Apple cores have them from M2 on: undecided rather than guessed)."""
    info = _cpuinfo()
    if info is None:
        return None
    flags: set[str] = set()
    for line in info.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return bool(flags & NATIVE_BF16_FLAGS)


@functools.lru_cache(maxsize=None)
def cpu_description() -> str:
    """The CPU's model name and whether it has native bf16, to record beside a measured number."""
    name = None
    for line in (_cpuinfo() or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model"):
            name = value.strip()
            break
    bf16 = {True: "native bf16", False: "no native bf16", None: "bf16 support unknown"}[cpu_has_native_bf16()]
    return f"{name or platform.processor() or platform.machine()} ({bf16})"


def warn_if_bf16_is_emulated(trainer: Any) -> None:
    """One warning line when a fit asks for bf16 autocast on a CPU that would emulate it."""
    precision = str(getattr(trainer, "precision", ""))
    if not precision.startswith("bf16") or trainer.strategy.root_device.type != "cpu":
        return
    if cpu_has_native_bf16() is False:
        rank_zero_warn(
            f"precision={precision} on a CPU without bf16 instructions ({cpu_description()}): bf16 is emulated and "
            "runs slower than float32 here (measured 0.39x on the fast path); use --trainer.precision=32-true"
        )


__all__ = ["cpu_description", "cpu_has_native_bf16", "warn_if_bf16_is_emulated"]
