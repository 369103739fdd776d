"""1-D filter taps: Sobel/Scharr derivative and smoothing kernels as ``cv2.getDerivKernels``, Gaussian taps.

A kernel is a tuple of floats of odd length, applied as a cross-correlation (index ``len // 2`` is the centre).

Example:
    >>> deriv_kernel1d(1, 3), deriv_kernel1d(0, 3)
    ((-1.0, 0.0, 1.0), (1.0, 2.0, 1.0))
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch

from gdvision._checks import check_number
from gdvision.errors import UsageError

Kernel = tuple[float, ...]


def _binomial(n: int) -> list[int]:
    row = [1]
    for _ in range(n - 1):
        row = [a + b for a, b in zip([0] + row, row + [0], strict=True)]
    return row


def _conv1d_int(a: list[int], b: list[int]) -> list[int]:
    out = [0] * (len(a) + len(b) - 1)
    for i, u in enumerate(a):
        for j, v in enumerate(b):
            out[i + j] += u * v
    return out


def deriv_kernel1d(order: int, ksize: int) -> Kernel:
    """1-D Sobel kernel of derivative ``order`` and length ``ksize`` (odd), as ``cv2.getDerivKernels``.

    ``ksize=1`` means a 3-tap derivative (``[-1, 0, 1]`` or ``[1, -2, 1]``) and a 1-tap smoothing ``[1]``.
    ``ksize=-1`` gives Scharr's 3-tap kernels (``[-1, 0, 1]`` / ``[3, 10, 3]``); only orders 0 and 1.
    UsageError for any other ``ksize`` or an order the size cannot hold.

    Example:
        >>> deriv_kernel1d(1, 5), deriv_kernel1d(0, 5)
        ((-1.0, -2.0, 0.0, 2.0, 1.0), (1.0, 4.0, 6.0, 4.0, 1.0))
    """
    if ksize == -1:
        if order == 0:
            return (3.0, 10.0, 3.0)
        if order == 1:
            return (-1.0, 0.0, 1.0)
        raise UsageError(f"Scharr supports derivative orders 0 and 1, got {order}")
    if ksize not in (1, 3, 5, 7):
        raise UsageError(f"Sobel ksize must be 1, 3, 5 or 7 (or -1 for Scharr), got {ksize}")
    if order < 0:
        raise UsageError(f"derivative order must be >= 0, got {order}")
    n = 3 if (ksize == 1 and order > 0) else ksize
    if order >= n:
        raise UsageError(f"derivative order {order} needs ksize > {order}")
    if n == 1:
        return (1.0,)
    k = _binomial(n - order)
    for _ in range(order):
        k = _conv1d_int(k, [-1, 1])
    return tuple(float(v) for v in k)


def kernel_tuple(k: torch.Tensor | Sequence[float]) -> Kernel:
    """``k`` (a tensor or a sequence of numbers) as a :data:`Kernel`; UsageError unless its length is odd.

    Example:
        >>> kernel_tuple(torch.tensor([0.25, 0.5, 0.25]))
        (0.25, 0.5, 0.25)
    """
    vals = k.detach().cpu().double().flatten().tolist() if isinstance(k, torch.Tensor) else list(k)
    if len(vals) % 2 != 1:
        raise UsageError(f"kernel length must be odd, got {len(vals)}")
    return tuple(float(v) for v in vals)


def gaussian_kernel1d(sigma: float, ksize: int | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normalised 1-D Gaussian taps; ``ksize`` defaults to ``2*ceil(3*sigma)+1``.

    Example:
        >>> gaussian_kernel1d(1.0).shape
        torch.Size([7])
    """
    check_number(float(sigma), "sigma", low=0.0, low_open=True)
    if ksize is None:
        ksize = 2 * math.ceil(3.0 * sigma) + 1
    if ksize % 2 != 1 or ksize < 1:
        raise UsageError(f"ksize must be odd and positive, got {ksize}")
    r = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    k = torch.exp(-0.5 * (r / sigma) ** 2)
    return (k / k.sum()).to(dtype)


@functools.lru_cache(maxsize=512)
def gaussian_taps(sigma: float, ksize: int | None = None) -> tuple[float, ...]:
    """:func:`gaussian_kernel1d` in float64 as a tuple of floats, built once per ``(sigma, ksize)`` (cached).

    For the filters that take their taps as Python floats (one multiply-add per tap): a scale space asks for the
    same few sigmas call after call, and building the kernel costs several torch operations each time.

    Example:
        >>> gaussian_taps(1.0) == tuple(gaussian_kernel1d(1.0, dtype=torch.float64).tolist())
        True
    """
    return tuple(gaussian_kernel1d(sigma, ksize, torch.float64).tolist())


__all__ = ["Kernel", "deriv_kernel1d", "gaussian_kernel1d", "gaussian_taps", "kernel_tuple"]
