"""Argument checks that fail at construction with the parameter's name, its value and what is allowed."""

from __future__ import annotations

import importlib
import math
from typing import Any


def check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> Any:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {', '.join(map(repr, choices))}")
    return value


def check_int(name: str, value: Any, minimum: int = 1, optional: bool = False) -> Any:
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r} is out of range: it must be an integer >= {minimum}")
    return value


def check_float(name: str, value: Any, minimum: float = 0.0, inclusive: bool = False, optional: bool = False) -> Any:
    if optional and value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= minimum if inclusive else value > minimum)
    if not ok:
        bound = f">= {minimum}" if inclusive else f"> {minimum}"
        raise ValueError(f"{name}={value!r} is out of range: it must be a finite number {bound}")
    return float(value)


def build_from_config(config: Any, base: type, option: str) -> Any:
    """``config`` itself when it is a ``base``, else the ``base`` subclass its ``{"class_path", "init_args"}``
    dictionary names (what a checkpoint stores: plain values only), built with those arguments. Nothing else is
    imported and called, so a crafted hyperparameter cannot run another callable."""
    if isinstance(config, base):
        return config
    module, _, name = str(config["class_path"]).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name, None)
    except ImportError:
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ValueError(f"{option}: {config['class_path']!r} does not name a {base.__module__}.{base.__qualname__} class")
    return cls(**(config.get("init_args") or {}))
