"""The one input checker: shapes, dtypes, finiteness, choices and ranges, raising the project's error types.

Parameters (a config field, an option) that are wrong raise :class:`~gdvision.errors.UsageError` (exit 2) naming
the field; data (an image, a matrix) that is wrong raises :class:`~gdvision.errors.InputError` (exit 1). Configs
call these in their ``validate()``, solvers on their tensors; the CLI maps config field names to its flags.

Example:
    >>> import torch
    >>> check_image(torch.zeros(1, 3, 8, 8), "a").shape
    torch.Size([1, 3, 8, 8])
    >>> check_choice("ncc", "loss", ("ncc", "l1"))
    'ncc'
    >>> check_number(0.0, "lr", low=0.0, low_open=True)
    Traceback (most recent call last):
    ...
    gdvision.errors.UsageError: lr must be > 0, got 0.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from gdvision.errors import InputError, UsageError


def check_choice(value: str, name: str, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``; UsageError naming ``name`` and the choices otherwise."""
    if value not in choices:
        raise UsageError(f"unknown {name} '{value}': use one of {', '.join(choices)}")
    return value


def check_number(
    value: float | int | None,
    name: str,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> Any:
    """``value`` if it is a finite number within the bounds (None passes); UsageError naming ``name`` otherwise.

    >>> check_number(3, "iters", low=1, integer=True)
    3
    """
    if value is None:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()):
        raise UsageError(f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if not math.isfinite(value):
        raise UsageError(f"{name} must be finite, got {value}")
    if low is not None and (value <= low if low_open else value < low):
        raise UsageError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {value}")
    if high is not None and (value >= high if high_open else value > high):
        raise UsageError(f"{name} must be {'<' if high_open else '<='} {high:g}, got {value}")
    return value


def check_image(
    x: Any,
    name: str,
    channels: Sequence[int] | None = None,
    batch: int | None = None,
    min_size: int = 1,
    finite: bool = True,
) -> Any:
    """``x`` if it is a floating (B,C,H,W) tensor as required; InputError naming ``name`` otherwise.

    ``channels``: allowed channel counts; ``batch``: required batch size; ``min_size``: smallest height/width;
    ``finite``: refuse NaN and infinity.
    """
    import torch

    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} must be a tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise InputError(f"{name} must be shaped (B,C,H,W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"{name} must be a floating-point tensor, got {x.dtype}")
    b, c, h, w = x.shape
    if channels is not None and c not in channels:
        raise InputError(f"{name} has {c} channels; expected {' or '.join(str(n) for n in channels)}")
    if batch is not None and b != batch:
        raise InputError(f"{name} has batch size {b}; expected {batch}")
    if min(h, w) < min_size:
        raise InputError(f"{name} is {w}x{h}; it must be at least {min_size}x{min_size}")
    if finite and x.numel() and not bool(torch.isfinite(x).all()):
        raise InputError(f"{name} contains NaN or infinite values")
    return x


def check_matrix(m: Any, name: str, shape: tuple[int, ...] = (3, 3), invertible: bool = False) -> Any:
    """``m`` (array or tensor) if it has ``shape``, finite entries and, if asked, is invertible; InputError else."""
    import numpy as np

    a = np.asarray(m.detach().cpu() if hasattr(m, "detach") else m, dtype=np.float64)
    if a.shape[-len(shape) :] != shape:
        raise InputError(f"{name} must be {'x'.join(map(str, shape))}, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise InputError(f"{name} contains NaN or infinite values")
    if invertible:
        with np.errstate(all="ignore"):
            cond = np.linalg.cond(a)
        if not np.all(np.isfinite(cond)) or np.any(cond > 1e12):
            raise InputError(f"{name} is singular or nearly so (condition number {float(np.max(cond)):.3g})")
    return m


__all__ = ["check_choice", "check_image", "check_matrix", "check_number"]
