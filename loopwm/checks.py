"""One way to write the checks and flags every module repeats."""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

from loopwm.errors import ConfigError


def check_positive_int(name: str, value: Any) -> int:
    """``value`` if it is an int >= 1 (not a bool), else a :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive int, got {value!r}")
    return value


def check_nonnegative_int(name: str, value: Any) -> int:
    """``value`` if it is an int >= 0 (not a bool), else a :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name} must be an int >= 0, got {value!r}")
    return value


def check_positive(name: str, value: Any) -> float:
    """``value`` if it is a number > 0 (not a bool), else a :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
    return value


def check_nonnegative(name: str, value: Any) -> float:
    """``value`` if it is a finite number >= 0 (not a bool), else a :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def check_fraction(name: str, value: Any, *, low_open: bool = True) -> float:
    """``value`` if it lies in ``(0, 1]`` (``[0, 1]`` with ``low_open=False``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (0.0 < value <= 1.0 if low_open else 0.0 <= value <= 1.0)
    if not ok:
        interval = "(0, 1]" if low_open else "[0, 1]"
        raise ConfigError(f"{name} must be in {interval}, got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: Collection) -> Any:
    """``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}: {name} must be one of {tuple(choices)}")
    return value


def progress_disabled(progress: bool | None) -> bool | None:
    """tqdm's ``disable`` for a ``progress`` flag: ``None`` shows a bar only on a terminal."""
    return None if progress is None else not progress


def check_device(name: str) -> str:
    """``name`` if torch can use that device here, else a :class:`ConfigError` that says why
    (``cuda`` on a CPU-only build or without a GPU, a misspelt device)."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"unknown device {name!r} ({err})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {name!r}: this torch ({torch.__version__}) sees no CUDA GPU; use "
            f"--device cpu, or install a CUDA build of torch on a machine with a GPU"
        )
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {name!r}: loopwm runs on cpu or cuda")
    return name
