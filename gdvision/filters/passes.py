"""The 1-D passes of the separable filters, in OpenCV's float32 order of additions, and its scalar tail.

A separable filter is a horizontal 1-D pass followed by a vertical one, each written as a few shifted adds /
fused multiply-adds on views of one padded tensor (no convolution, no im2col). The adds are done in the same
order, with the same fused multiply-adds, as OpenCV's float32 row/column filters (SymmRowSmallVec_32f,
RowVec_32f and the SIMD column filters), so float32 results equal OpenCV's to the last bit on typical inputs.
OpenCV finishes each row of ``W * C`` values that is not a multiple of 8 with scalar code that adds in another
order: :func:`opencv_tail` redoes those values (it reads the block's channel count from
:data:`gdvision.filters.blocks.DEST`).

Example:
    >>> p = torch.arange(6.0).view(1, 1, 1, 6)
    >>> row_pass(p, (-1.0, 0.0, 1.0))[0, 0, 0].tolist()
    [2.0, 2.0, 2.0, 2.0]
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from gdvision.filters.blocks import DEST
from gdvision.filters.kernels import Kernel


def _shift(t: torch.Tensor, axis: int, r: int, n: int, step: int = 1) -> Callable[[int], torch.Tensor]:
    """``s(j)``: the ``n`` values of ``t`` along ``axis`` from ``r + j`` on, every ``step``-th (views)."""
    if step == 1:
        return lambda j: t.narrow(axis, r + j, n)
    lead = (slice(None),) * (axis % t.dim())
    return lambda j: t[(*lead, slice(r + j, r + j + (n - 1) * step + 1, step))]


def _taps(
    t: torch.Tensor, k: Kernel, axis: int, step: int = 1
) -> tuple[int, Callable[[int], torch.Tensor], Kernel, bool, bool]:
    """Radius ``r``, shifted views ``s(j)`` of ``t`` (padded by ``r`` on ``axis``; every ``step``-th output only), the
    taps ``c = k[r:]`` from the centre out, and whether ``k`` is symmetric / antisymmetric."""
    r = len(k) // 2
    s = _shift(t, axis, r, -(-(t.shape[axis] - 2 * r) // step), step)
    c = k[r:]
    sym = all(k[r + j] == k[r - j] for j in range(1, r + 1))
    anti = c[0] == 0 and all(k[r + j] == -k[r - j] for j in range(1, r + 1))
    return r, s, c, sym, anti


def _in_kernel_order(s: Callable[[int], torch.Tensor], k: Kernel) -> torch.Tensor:
    """Any kernel: its non-zero taps added left to right (OpenCV's generic float32 loops)."""
    r = len(k) // 2
    out = s(-r) * k[0]
    for i in range(1, len(k)):
        if k[i] != 0:
            out.add_(s(i - r), alpha=k[i])
    return out


def row_pass(t: torch.Tensor, k: Kernel, out: torch.Tensor | None = None) -> torch.Tensor:
    """Correlate the last axis of ``t`` (padded by ``len(k)//2`` each side) with ``k``, OpenCV's tail included."""
    return opencv_tail(t, k, "row", _row_vec(t, k, out))


def col_pass(t: torch.Tensor, k: Kernel, out: torch.Tensor | None = None) -> torch.Tensor:
    """Correlate axis -2 of ``t`` (padded by ``len(k)//2``) with ``k``, OpenCV's float32 tail included."""
    return opencv_tail(t, k, "col", _col_vec(t, k, out))


def _row_vec(t: torch.Tensor, k: Kernel, out: torch.Tensor | None = None, step: int = 1) -> torch.Tensor:
    """Correlate the last axis of ``t`` (already padded by ``len(k)//2`` each side) with ``k``.

    Mirrors OpenCV's float32 row filters (SymmRowSmallVec_32f for 3/5 taps, RowVec_32f otherwise).
    ``out`` (used by the 3-tap kernels) receives the result instead of a new tensor. ``step``: only every
    ``step``-th output (from the first), each computed as in the full result.
    """
    r, s, c, sym, anti = _taps(t, k, -1, step)
    if r == 0:
        return s(0) * c[0]
    if sym and r == 1:
        out = torch.add(s(-1), s(1), out=out)
        if c[1] != 1:
            out.mul_(c[1])
        return out.add_(s(0), alpha=c[0])
    if sym and r == 2:
        if c == (-2.0, 0.0, 1.0):
            return (s(-2) + s(2)).add_(s(0), alpha=-2.0)
        out = s(-1) + s(1)
        if c[1] != 1:
            out.mul_(c[1])
        out.add_(s(0), alpha=c[0])
        return out.add_(s(2) + s(-2), alpha=c[2])
    if anti and r == 1:
        out = torch.sub(s(1), s(-1), out=out)
        return out.mul_(c[1]) if c[1] != 1 else out
    if anti and r == 2:
        out = s(1) - s(-1)
        if c[1] != 1:
            out.mul_(c[1])
        return out.add_(s(2) - s(-2), alpha=c[2])
    return _in_kernel_order(s, k)


def _col_vec(t: torch.Tensor, k: Kernel, out: torch.Tensor | None = None, step: int = 1) -> torch.Tensor:
    """Correlate axis -2 of ``t`` (padded by ``len(k)//2``) with ``k``, in OpenCV's SIMD column-filter order.

    ``out`` (used by the 3-tap kernels) receives the result instead of a new tensor. ``step``: only every
    ``step``-th output row (from the first), each computed as in the full result.
    """
    r, s, c, sym, anti = _taps(t, k, -2, step)
    if r == 0:
        return s(0) * c[0]
    if sym and r == 1:
        if abs(c[0]) == 2 and c[1] == 1:
            return torch.add(s(-1), s(1), out=out).add_(s(0), alpha=c[0])
        return torch.mul(s(0), c[0], out=out).add_(s(-1) + s(1), alpha=c[1])
    if anti and r == 1:
        if abs(c[1]) == 1:
            return torch.sub(s(1), s(-1), out=out) if c[1] > 0 else torch.sub(s(-1), s(1), out=out)
        return torch.sub(s(1), s(-1), out=out).mul_(c[1])
    if sym:
        out = s(0) * c[0]
        for j in range(1, r + 1):
            out.add_(s(j) + s(-j), alpha=c[j])
        return out
    if anti:
        out = (s(1) - s(-1)).mul_(c[1])
        for j in range(2, r + 1):
            out.add_(s(j) - s(-j), alpha=c[j])
        return out
    return _in_kernel_order(s, k)


# OpenCV's float32 row and column filters run over a row of W * C interleaved values (x * C + c) in 8-lane
# SIMD steps (AVX2) and finish the last (W * C) % 8 values with scalar code that adds in another order.
# Measured against cv2 5.0 (tests/filters/test_separable.py): the column filter [1, 2, 1] computes its tail as
# (a + 2b) + c; the row filter [1, 2, 1] does the same for its tail in pairs, and the row filters [3, 10, 3] and
# [1, 4, 6, 4, 1] compute an odd last value centre first: fma(a + c, 3, 10b), 6c + 4(b + d) + (a + e).
_SIMD_LANES = 8
_121 = (1.0, 2.0, 1.0)
_TAIL_RULES: dict[tuple[str, Kernel], str] = {
    ("col", _121): "all",
    ("row", _121): "pairs",
    ("row", (3.0, 10.0, 3.0)): "odd_last",
    ("row", (1.0, 4.0, 6.0, 4.0, 1.0)): "odd_last",
}


def _tail_mask(m: int, w: int, x0: int, rule: str, device: torch.device) -> torch.Tensor | None:
    """(m, 1, 1, w - x0) mask of the values of columns [x0, w) that OpenCV computes in its scalar tail."""
    ch, first = DEST.channels, DEST.first
    n = w * ch
    n8 = n - n % _SIMD_LANES
    cols = torch.arange(x0, w, device=device)
    chan = (torch.arange(first, first + m, device=device) % ch).view(m, 1, 1, 1)
    flat = cols * ch + chan
    odd_last = (flat == n - 1) if (n - n8) % 2 else torch.zeros_like(flat, dtype=torch.bool)
    if rule == "all":
        mask = flat >= n8
    elif rule == "pairs":
        mask = (flat >= n8) & ~odd_last
    else:
        mask = odd_last
    return mask if bool(mask.any()) else None


def opencv_tail(t: torch.Tensor, k: Kernel, axis: str, out: torch.Tensor) -> torch.Tensor:
    """Redo the values of ``out`` that OpenCV's float32 scalar tail adds in another order (see ``_TAIL_RULES``)."""
    rule = _TAIL_RULES.get((axis, k))
    if rule is None or out.dtype != torch.float32:
        return out
    w = out.shape[-1]
    n = w * DEST.channels
    if n % _SIMD_LANES == 0:
        return out
    x0 = (n - n % _SIMD_LANES) // DEST.channels
    mask = _tail_mask(out.shape[0], w, x0, rule, out.device)
    if mask is None:
        return out
    r = len(k) // 2
    if axis == "row":
        s = _shift(t[..., x0:], -1, r, w - x0)
    else:
        s = _shift(t[..., x0:], -2, r, out.shape[-2])
    if k == _121:
        alt = (s(-1) + 2.0 * s(0)) + s(1)
    elif r == 1:
        alt = ((s(-1) + s(1)).double() * k[0] + (s(0) * k[1]).double()).float()  # one fused multiply-add
    else:
        alt = (s(0) * k[2]).add_(s(-1) + s(1), alpha=k[1]).add_(s(-2) + s(2), alpha=k[0])
    fixed = torch.where(mask, alt, out[..., x0:])
    if out.requires_grad:
        return torch.cat([out[..., :x0], fixed], dim=-1)
    out[..., x0:] = fixed
    return out


def separable_passes(p: torch.Tensor, kx: Kernel, ky: Kernel) -> torch.Tensor:
    """Row pass then column pass on a padded (..., H + 2ry, W + 2rx) tensor -> (..., H, W)."""
    return col_pass(row_pass(p, kx), ky)


def opencv_tail_applies(kx: Kernel, ky: Kernel, w: int, channels: int, dtype: torch.dtype) -> bool:
    """Whether OpenCV's scalar tail changes some values of a separable float filter ``kx``, ``ky`` over rows of ``w``
    pixels of ``channels`` channels (a kernel of ``_TAIL_RULES``, float32, ``w * channels`` not a multiple of 8).

    Example:
        >>> opencv_tail_applies((1.0, 2.0, 1.0), (1.0, 2.0, 1.0), 13, 1, torch.float32)
        True
    """
    if dtype != torch.float32 or (w * channels) % _SIMD_LANES == 0:
        return False
    return ("row", kx) in _TAIL_RULES or ("col", ky) in _TAIL_RULES


def separable_passes_even(p: torch.Tensor, kx: Kernel, ky: Kernel) -> torch.Tensor:
    """The even rows and columns of :func:`separable_passes`, computing only those: (..., ceil(H / 2), ceil(W / 2)),
    bit for bit the same values with half the row pass and a quarter of the column pass. Without OpenCV's scalar
    tail: for filters where :func:`opencv_tail_applies` is false.

    Example:
        >>> p = torch.rand(1, 1, 7, 10)  # 5 x 8 outputs before subsampling
        >>> torch.equal(separable_passes_even(p, (1.0, 2.0, 1.0), (1.0, 0.0, -1.0)),
        ...             separable_passes(p, (1.0, 2.0, 1.0), (1.0, 0.0, -1.0))[..., ::2, ::2])
        True
    """
    return _col_vec(_row_vec(p, kx, step=2), ky, step=2)


def laplacian3x3(p: torch.Tensor, ksize: int) -> torch.Tensor:
    """OpenCV's 3x3 Laplacians (ksize 1 and 3), with OpenCV's float32 order of additions."""
    h, w = p.shape[-2] - 2, p.shape[-1] - 2

    def at(dy: int, dx: int) -> torch.Tensor:
        return p[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    if ksize == 1:  # [[0,1,0],[1,-4,1],[0,1,0]]
        out = at(-1, 0) + at(0, -1)
        out.add_(at(0, 0), alpha=-4.0)
        return out.add_(at(0, 1)).add_(at(1, 0))
    if DEST.channels > 1:  # [[2,0,2],[0,-8,0],[2,0,2]] as OpenCV sums it for C > 1: in kernel order
        out = at(-1, -1).mul(2.0).add_(at(-1, 1), alpha=2.0).add_(at(0, 0), alpha=-8.0)
        return out.add_(at(1, -1), alpha=2.0).add_(at(1, 1), alpha=2.0)
    out = at(-1, -1) + at(-1, 1)  # ... and for C = 1: 2 (tl + tr + (bl + br)) - 8 c
    out.add_(at(1, -1) + at(1, 1)).mul_(2.0)
    return out.add_(at(0, 0), alpha=-8.0)


__all__ = [
    "col_pass",
    "laplacian3x3",
    "opencv_tail",
    "opencv_tail_applies",
    "row_pass",
    "separable_passes",
    "separable_passes_even",
]
