"""Separable linear filters on (B, C, H, W) tensors with OpenCV-compatible borders and numerics.

All filters are cross-correlations, as in OpenCV (``cv2.filter2D``, ``cv2.Sobel``): the x-derivative at
pixel ``i`` is ``I[i+1] - I[i-1]`` for the 3-tap kernel. x is the column (width) axis, y the row axis.
Derivatives are unnormalised, exactly like OpenCV's (a unit ramp ``I = x`` gives Sobel ``dx = 8`` for ksize 3);
pass ``scale=`` to rescale.

Border modes (``border=``): ``"reflect101"`` (OpenCV's default ``BORDER_REFLECT_101``: ``gfedcb|abcdefgh|gfedcba``),
``"replicate"`` (``aaaaaa|abcdefgh|hhhhhhh``), ``"constant"`` (zeros), and ``"valid"`` (no padding: the
output shrinks by the kernel size minus one).

How it is computed. A separable filter is a horizontal 1-D pass followed by a vertical one, each written as a
few shifted adds / fused multiply-adds on views of one padded tensor (no convolution, no im2col). The adds are
done in the same order, with the same fused multiply-adds, as OpenCV's float32 row/column filters, so float32
results for Sobel (ksize 1/3/5), Scharr and Laplacian (ksize 1/3) equal ``cv2.Sobel/Scharr/Laplacian``
to the last bit on typical inputs. Channels are folded into the batch (any C: 1, 3 or multispectral).
On the CPU, when no gradient is needed, the work runs in blocks of about 2 MiB (several channel-images, or row
bands of a big image) written into one preallocated output, so a block's intermediates stay in cache and
:func:`gradient_magnitude` writes only the magnitude. With autograd or on an accelerator the same arithmetic
runs on the whole tensor at once, so gradients flow through every filter (float64 ``gradcheck`` passes).
No Python loop runs per image, only per block.

float16 / bfloat16 inputs are computed in float32 and returned in their own dtype; float32 and float64 are
computed in their own precision; integer inputs are converted to float32.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

BORDERS = ("reflect101", "replicate", "constant", "valid")
GRADIENT_OPS = ("sobel", "scharr")
NORMS = ("l1", "l2")

# Padded pixels of one work block on the CPU fast path (2 MiB of float32: the block's intermediates stay in
# L2/L3). Measured on the 2-core EPYC: 2**19 beat 2**15 .. 2**18 (per-op overhead) and 2**20 .. 2**21 (cache).
# A thread pool over small single-threaded blocks was measured too and was slower.
_BLOCK_ELEMS = 1 << 19

Kernel = tuple[float, ...]


class _Dest(threading.local):
    """What the block loop tells the filter functions about the block they are computing.

    ``view``: where the CPU block loop wants the block's (single) result written, if the fn can.
    ``channels`` / ``first``: the image's channel count C and the flat index (b * C + c) of the block's first
    channel-image, so that OpenCV's per-row scalar tail (which depends on W * C) can be reproduced.
    """

    view: torch.Tensor | None = None
    channels: int = 1
    first: int = 0


_DEST = _Dest()


class _Scratch(threading.local):
    """Per-thread scratch tensors reused by the CPU fast path from block to block and call to call.

    Reusing them avoids a fresh multi-megabyte allocation per block: when other code frees large buffers,
    the C allocator hands such allocations back to the OS, and every block would then pay page faults.
    """

    def __init__(self) -> None:
        self.bufs: dict[tuple[int, tuple[int, ...], torch.dtype], torch.Tensor] = {}

    def get(self, slot: int, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
        key = (slot, tuple(shape), dtype)
        buf = self.bufs.get(key)
        if buf is None:
            if len(self.bufs) > 16:
                self.bufs.clear()
            buf = self.bufs[key] = torch.empty(shape, dtype=dtype)
        return buf


_SCRATCH = _Scratch()


def _check_border(border: str) -> None:
    if border not in BORDERS:
        raise ValueError(f"unknown border '{border}': use one of {', '.join(BORDERS)}")


def pad(x: torch.Tensor, left: int, right: int, top: int, bottom: int, border: str) -> torch.Tensor:
    """Pad the last two dims of a (B, C, H, W) tensor with an OpenCV-style border mode.

    ``reflect101`` falls back to ``replicate`` for images too small to reflect (side of 1 pixel).

    Example:
        >>> pad(torch.arange(4.0).view(1, 1, 1, 4), 2, 0, 0, 0, "reflect101")[0, 0, 0].tolist()
        [2.0, 1.0, 0.0, 1.0, 2.0, 3.0]
    """
    _check_border(border)
    if border == "valid" or (left == right == top == bottom == 0):
        return x
    if border == "constant":
        return F.pad(x, (left, right, top, bottom), mode="constant", value=0.0)
    if border == "reflect101":
        h, w = x.shape[-2:]
        if max(left, right) < w and max(top, bottom) < h:
            return F.pad(x, (left, right, top, bottom), mode="reflect")
        if h == 1 or w == 1:
            return F.pad(x, (left, right, top, bottom), mode="replicate")
        # Large pads: reflect repeatedly (OpenCV reflects periodically).
        idx_x = _reflect101_index(w, left, right, x.device)
        idx_y = _reflect101_index(h, top, bottom, x.device)
        return x.index_select(-1, idx_x).index_select(-2, idx_y)
    return F.pad(x, (left, right, top, bottom), mode="replicate")


def _reflect101_index(n: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    i = torch.arange(-before, n + after, device=device)
    period = 2 * (n - 1)
    i = torch.remainder(i, period)
    return torch.where(i >= n, period - i, i)


# ------------------------------------------------------------------------------------------- kernels


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

    Example:
        >>> deriv_kernel1d(1, 5), deriv_kernel1d(0, 5)
        ((-1.0, -2.0, 0.0, 2.0, 1.0), (1.0, 4.0, 6.0, 4.0, 1.0))
    """
    if ksize == -1:
        if order == 0:
            return (3.0, 10.0, 3.0)
        if order == 1:
            return (-1.0, 0.0, 1.0)
        raise ValueError(f"Scharr supports derivative orders 0 and 1, got {order}")
    if ksize not in (1, 3, 5, 7):
        raise ValueError(f"Sobel ksize must be 1, 3, 5 or 7 (or -1 for Scharr), got {ksize}")
    if order < 0:
        raise ValueError(f"derivative order must be >= 0, got {order}")
    n = 3 if (ksize == 1 and order > 0) else ksize
    if order >= n:
        raise ValueError(f"derivative order {order} needs ksize > {order}")
    if n == 1:
        return (1.0,)
    k = _binomial(n - order)
    for _ in range(order):
        k = _conv1d_int(k, [-1, 1])
    return tuple(float(v) for v in k)


def _kernel_tuple(k: torch.Tensor | Sequence[float]) -> Kernel:
    vals = k.detach().cpu().double().flatten().tolist() if isinstance(k, torch.Tensor) else list(k)
    if len(vals) % 2 != 1:
        raise ValueError(f"kernel length must be odd, got {len(vals)}")
    return tuple(float(v) for v in vals)


# -------------------------------------------------------------------------- the 1-D passes (OpenCV order)


def _shift(t: torch.Tensor, axis: int, r: int, n: int) -> Callable[[int], torch.Tensor]:
    return lambda j: t.narrow(axis, r + j, n)


def _row_pass(t: torch.Tensor, k: Kernel, out: torch.Tensor | None = None) -> torch.Tensor:
    """Correlate the last axis of ``t`` (padded by ``len(k)//2`` each side) with ``k``, OpenCV's tail included."""
    return _opencv_tail(t, k, "row", _row_vec(t, k, out))


def _col_pass(t: torch.Tensor, k: Kernel, out: torch.Tensor | None = None) -> torch.Tensor:
    """Correlate axis -2 of ``t`` (padded by ``len(k)//2``) with ``k``, OpenCV's float32 tail included."""
    return _opencv_tail(t, k, "col", _col_vec(t, k, out))


def _row_vec(t: torch.Tensor, k: Kernel, out: torch.Tensor | None = None) -> torch.Tensor:
    """Correlate the last axis of ``t`` (already padded by ``len(k)//2`` each side) with ``k``.

    Mirrors OpenCV's float32 row filters (SymmRowSmallVec_32f for 3/5 taps, RowVec_32f otherwise).
    ``out`` (used by the 3-tap kernels) receives the result instead of a new tensor.
    """
    r = len(k) // 2
    n = t.shape[-1] - 2 * r
    s = _shift(t, -1, r, n)
    c = k[r:]
    sym = all(k[r + j] == k[r - j] for j in range(1, r + 1))
    anti = c[0] == 0 and all(k[r + j] == -k[r - j] for j in range(1, r + 1))
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
    out = s(-r) * k[0]
    for i in range(1, len(k)):
        if k[i] != 0:
            out.add_(s(i - r), alpha=k[i])
    return out


def _col_vec(t: torch.Tensor, k: Kernel, out: torch.Tensor | None = None) -> torch.Tensor:
    """Correlate axis -2 of ``t`` (padded by ``len(k)//2``) with ``k``, in OpenCV's SIMD column-filter order.

    ``out`` (used by the 3-tap kernels) receives the result instead of a new tensor.
    """
    r = len(k) // 2
    n = t.shape[-2] - 2 * r
    s = _shift(t, -2, r, n)
    c = k[r:]
    sym = all(k[r + j] == k[r - j] for j in range(1, r + 1))
    anti = c[0] == 0 and all(k[r + j] == -k[r - j] for j in range(1, r + 1))
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
    out = s(-r) * k[0]
    for i in range(1, len(k)):
        if k[i] != 0:
            out.add_(s(i - r), alpha=k[i])
    return out


# OpenCV's float32 row and column filters run over a row of W * C interleaved values (x * C + c) in 8-lane
# SIMD steps (AVX2) and finish the last (W * C) % 8 values with scalar code that adds in another order.
# Measured against cv2 5.0 (tests/test_filters.py): the column filter [1, 2, 1] computes its tail as
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
    ch, first = _DEST.channels, _DEST.first
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


def _opencv_tail(t: torch.Tensor, k: Kernel, axis: str, out: torch.Tensor) -> torch.Tensor:
    """Redo the values of ``out`` that OpenCV's float32 scalar tail adds in another order (see ``_TAIL_RULES``)."""
    rule = _TAIL_RULES.get((axis, k))
    if rule is None or out.dtype != torch.float32:
        return out
    w = out.shape[-1]
    n = w * _DEST.channels
    if n % _SIMD_LANES == 0:
        return out
    x0 = (n - n % _SIMD_LANES) // _DEST.channels
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


def _separable(p: torch.Tensor, kx: Kernel, ky: Kernel) -> torch.Tensor:
    """Row pass then column pass on a padded (..., H + 2ry, W + 2rx) tensor -> (..., H, W)."""
    return _col_pass(_row_pass(p, kx), ky)


def _laplacian_padded(p: torch.Tensor, ksize: int) -> torch.Tensor:
    """OpenCV's 3x3 Laplacians (ksize 1 and 3), with OpenCV's float32 order of additions."""
    h, w = p.shape[-2] - 2, p.shape[-1] - 2

    def at(dy: int, dx: int) -> torch.Tensor:
        return p[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    if ksize == 1:  # [[0,1,0],[1,-4,1],[0,1,0]]
        out = at(-1, 0) + at(0, -1)
        out.add_(at(0, 0), alpha=-4.0)
        return out.add_(at(0, 1)).add_(at(1, 0))
    if _DEST.channels > 1:  # [[2,0,2],[0,-8,0],[2,0,2]] as OpenCV sums it for C > 1: in kernel order
        out = at(-1, -1).mul(2.0).add_(at(-1, 1), alpha=2.0).add_(at(0, 0), alpha=-8.0)
        return out.add_(at(1, -1), alpha=2.0).add_(at(1, 1), alpha=2.0)
    out = at(-1, -1) + at(-1, 1)  # ... and for C = 1: 2 (tl + tr + (bl + br)) - 8 c
    out.add_(at(1, -1) + at(1, 1)).mul_(2.0)
    return out.add_(at(0, 0), alpha=-8.0)


# ----------------------------------------------------------------------------------- the block engine


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    if x.dtype in (torch.float32, torch.float64):
        return x.dtype
    return torch.float32


def _run(
    x: torch.Tensor,
    rx: int,
    ry: int,
    border: str,
    fn: Callable[[torch.Tensor], tuple[torch.Tensor, ...]],
    n_out: int = 1,
) -> tuple[torch.Tensor, ...]:
    """Apply ``fn`` to every channel-image of ``x`` (B, C, H, W); returns a tuple of (B, C, H', W') tensors.

    ``fn`` maps a padded block (m, 1, h + 2ry, w + 2rx) to a tuple of (m, 1, h, w) results; H' = H (or
    H - 2ry for ``valid``). Outputs have ``x``'s floating dtype (float32 for integer inputs).
    """
    _check_border(border)
    if x.dim() != 4:
        raise ValueError(f"expected a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    cdt = _compute_dtype(x)
    odt = x.dtype if x.is_floating_point() else torch.float32
    valid = border == "valid"
    ho, wo = (h - 2 * ry, w - 2 * rx) if valid else (h, w)
    if ho <= 0 or wo <= 0:
        raise ValueError(f"image {h}x{w} is too small for a 'valid' filter of size {2 * ry + 1}x{2 * rx + 1}")
    n = b * c
    xf = x.reshape(n, 1, h, w)
    fast = x.device.type == "cpu" and not (torch.is_grad_enabled() and x.requires_grad)
    _DEST.channels, _DEST.first = c, 0
    try:
        if not fast or n * (h + 2 * ry) * (w + 2 * rx) <= 2 * _BLOCK_ELEMS:
            ys = fn(pad(xf.to(cdt), rx, rx, ry, ry, border))
            return tuple(y.to(odt).reshape(b, c, ho, wo) for y in ys)
        outs = [torch.empty((n, 1, ho, wo), dtype=odt) for _ in range(n_out)]
        jobs = _blocks(n, h, w, ho, rx, ry)

        def work(job: tuple[int, int, int, int]) -> None:
            i0, i1, r0, r1 = job
            _DEST.view = outs[0][i0:i1, :, r0:r1] if n_out == 1 and odt == cdt else None
            _DEST.first = i0
            try:
                ys = fn(_padded_block(xf, i0, i1, r0, r1, h, rx, ry, border).to(cdt))
            finally:
                _DEST.view = None
            for o, y in zip(outs, ys, strict=True):
                dst = o[i0:i1, :, r0:r1]
                if y.data_ptr() != dst.data_ptr():  # the fused magnitude writes straight into the output
                    dst.copy_(y)

        for job in jobs:
            work(job)
        return tuple(o.reshape(b, c, ho, wo) for o in outs)
    finally:
        _DEST.channels, _DEST.first = 1, 0


def _blocks(n: int, h: int, w: int, ho: int, rx: int, ry: int) -> list[tuple[int, int, int, int]]:
    """Work blocks (image from, image to, output row from, output row to) of about ``_BLOCK_ELEMS`` padded pixels."""
    padded = (h + 2 * ry) * (w + 2 * rx)
    if padded <= _BLOCK_ELEMS:
        m = max(1, _BLOCK_ELEMS // padded)
        return [(i, min(n, i + m), 0, ho) for i in range(0, n, m)]
    band = max(2 * ry + 1, _BLOCK_ELEMS // (w + 2 * rx) - 2 * ry)  # output rows per band
    return [(i, i + 1, r0, min(ho, r0 + band)) for i in range(n) for r0 in range(0, ho, band)]


def _padded_block(
    xf: torch.Tensor, i0: int, i1: int, r0: int, r1: int, h: int, rx: int, ry: int, border: str
) -> torch.Tensor:
    """Input rows of output rows [r0, r1) of images [i0, i1) of ``xf`` (n, 1, h, w), padded for the filter."""
    if border == "valid":
        return xf[i0:i1, :, r0 : r1 + 2 * ry]
    lo, hi = max(0, r0 - ry), min(h, r1 + ry)
    top, bottom = ry - (r0 - lo), ry - (hi - r1)
    if hi - lo <= max(top, bottom):  # band too thin to reflect inside itself: pad the whole image first
        return pad(pad(xf[i0:i1], 0, 0, ry, ry, border)[:, :, r0 : r1 + 2 * ry], rx, rx, 0, 0, border)
    return pad(xf[i0:i1, :, lo:hi], rx, rx, top, bottom, border)


# ------------------------------------------------------------------------------------------- public API


def separable_filter(
    x: torch.Tensor,
    kx: torch.Tensor | Sequence[float],
    ky: torch.Tensor | Sequence[float],
    border: str = "reflect101",
) -> torch.Tensor:
    """Correlate each channel of ``x`` (B, C, H, W) with the outer product ``ky[:, None] * kx[None, :]``.

    ``kx`` (length kw, odd) runs along x (width), ``ky`` (length kh, odd) along y (height); tensors or
    sequences of floats. Returns (B, C, H, W), or (B, C, H-kh+1, W-kw+1) for ``border="valid"``.
    Same result as ``cv2.sepFilter2D(x, -1, kx, ky, borderType=...)``. Kernels that require a gradient are
    applied with ``conv2d`` so that gradients flow into them.

    Example:
        >>> separable_filter(torch.rand(2, 3, 16, 16), [1.0, 2.0, 1.0], [0.25, 0.5, 0.25]).shape
        torch.Size([2, 3, 16, 16])
    """
    _check_border(border)
    if (isinstance(kx, torch.Tensor) and kx.requires_grad) or (isinstance(ky, torch.Tensor) and ky.requires_grad):
        return _conv_separable(x, kx, ky, border)  # type: ignore[arg-type]
    tx, ty = _kernel_tuple(kx), _kernel_tuple(ky)
    return _run(x, len(tx) // 2, len(ty) // 2, border, lambda p: (_separable(p, tx, ty),))[0]


def _conv_separable(x: torch.Tensor, kx: torch.Tensor, ky: torch.Tensor, border: str) -> torch.Tensor:
    b, c, h, w = x.shape
    kx = torch.as_tensor(kx).to(device=x.device, dtype=x.dtype)
    ky = torch.as_tensor(ky).to(device=x.device, dtype=x.dtype)
    rx, ry = kx.numel() // 2, ky.numel() // 2
    y = pad(x.reshape(b * c, 1, h, w), rx, rx, ry, ry, border)
    y = F.conv2d(y, kx.view(1, 1, 1, -1))
    y = F.conv2d(y, ky.view(1, 1, -1, 1))
    return y.reshape(b, c, y.shape[-2], y.shape[-1])


def gaussian_kernel1d(sigma: float, ksize: int | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normalised 1-D Gaussian taps; ``ksize`` defaults to ``2*ceil(3*sigma)+1``.

    Example:
        >>> gaussian_kernel1d(1.0).shape
        torch.Size([7])
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if ksize is None:
        ksize = 2 * math.ceil(3.0 * sigma) + 1
    if ksize % 2 != 1 or ksize < 1:
        raise ValueError(f"ksize must be odd and positive, got {ksize}")
    r = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    k = torch.exp(-0.5 * (r / sigma) ** 2)
    return (k / k.sum()).to(dtype)


def gaussian_blur(
    x: torch.Tensor, sigma: float | tuple[float, float], ksize: int | None = None, border: str = "reflect101"
) -> torch.Tensor:
    """Gaussian blur of a (B, C, H, W) tensor; ``sigma`` is one value or ``(sigma_x, sigma_y)`` in pixels.

    Example:
        >>> gaussian_blur(torch.rand(2, 3, 32, 32), 1.5).shape
        torch.Size([2, 3, 32, 32])
    """
    sx, sy = (sigma, sigma) if isinstance(sigma, (int, float)) else sigma
    kx = gaussian_kernel1d(sx, ksize, torch.float64)
    ky = gaussian_kernel1d(sy, ksize, torch.float64)
    return separable_filter(x, kx, ky, border)


def _gradient_kernels(op: str, ksize: int) -> tuple[Kernel, Kernel]:
    """(derivative, smoothing) 1-D kernels for ``op`` 'sobel' (ksize 1/3/5/7) or 'scharr'."""
    if op not in GRADIENT_OPS:
        raise ValueError(f"unknown gradient operator '{op}': use one of {', '.join(GRADIENT_OPS)}")
    size = -1 if op == "scharr" else ksize
    return deriv_kernel1d(1, size), deriv_kernel1d(0, size)


def derivative(
    x: torch.Tensor, dx: int, dy: int, ksize: int = 3, border: str = "reflect101", scale: float = 1.0
) -> torch.Tensor:
    """One Sobel derivative of order (``dx``, ``dy``) of a (B, C, H, W) tensor, as ``cv2.Sobel(x, -1, dx, dy, ksize)``.

    ``ksize`` 1, 3, 5, 7, or -1 for Scharr (as ``cv2.Scharr``). Returns the same shape (smaller for ``valid``).

    Example:
        >>> ramp = torch.arange(8.0).expand(1, 1, 8, 8)
        >>> derivative(ramp, 1, 0)[0, 0, 3, 3].item()
        8.0
    """
    if dx + dy < 1:
        raise ValueError("need dx + dy >= 1")
    kx, ky = deriv_kernel1d(dx, ksize), deriv_kernel1d(dy, ksize)
    if scale != 1:
        ky = tuple(v * scale for v in ky)
    return _run(x, len(kx) // 2, len(ky) // 2, border, lambda p: (_separable(p, kx, ky),))[0]


def sobel(
    x: torch.Tensor, border: str = "reflect101", ksize: int = 3, scale: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sobel derivatives (dx, dy) of a (B, C, H, W) tensor, unnormalised as ``cv2.Sobel(ksize=ksize)``.

    ``ksize`` in 1, 3, 5, 7. For ksize 3, ``dx = [1, 2, 1]^T (x) [-1, 0, 1]``: a unit ramp ``I = x`` gives
    ``dx = 8``. Differentiable; see :func:`gradient` for the fused single-pass version.

    Example:
        >>> gx, gy = sobel(torch.rand(2, 3, 32, 32))
        >>> gx.shape
        torch.Size([2, 3, 32, 32])
    """
    gx, gy = gradient(x, "sobel", ksize, border, scale)
    return gx, gy


def scharr(x: torch.Tensor, border: str = "reflect101", scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Scharr derivatives (dx, dy) of a (B, C, H, W) tensor, as ``cv2.Scharr`` (``[3,10,3]^T (x) [-1,0,1]``).

    Example:
        >>> gx, gy = scharr(torch.rand(1, 1, 16, 16))
        >>> gy.shape
        torch.Size([1, 1, 16, 16])
    """
    return gradient(x, "scharr", 3, border, scale)


def gradient(
    x: torch.Tensor, op: str = "sobel", ksize: int = 3, border: str = "reflect101", scale: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(dx, dy) of a (B, C, H, W) tensor with ``op`` 'sobel' (``ksize`` 1/3/5/7) or 'scharr', computed together.

    Returns two tensors shaped like ``x`` (smaller for ``border='valid'``), OpenCV's scale times ``scale``.

    Example:
        >>> gx, gy = gradient(torch.rand(1, 3, 16, 16), "scharr")
        >>> gx.shape
        torch.Size([1, 3, 16, 16])
    """
    d, s = _gradient_kernels(op, ksize)
    if scale != 1:
        s = tuple(v * scale for v in s)
    gx, gy = _run(x, len(d) // 2, len(d) // 2, border, lambda p: _both(p, d, s), n_out=2)
    return gx, gy


def _both(p: torch.Tensor, d: Kernel, s: Kernel) -> tuple[torch.Tensor, torch.Tensor]:
    """(dx, dy) of one padded block, padded by ``len(d) // 2`` on every side (for :func:`gradient`)."""
    rs, r = len(s) // 2, len(d) // 2
    pd = p if rs == r else p[..., r - rs : p.shape[-2] - (r - rs), :]  # ksize 1: smoothing is 1 tap
    gx = _col_pass(_row_pass(pd, d), s)
    ps = p if rs == r else p[..., r - rs : p.shape[-1] - (r - rs)]
    gy = _col_pass(_row_pass(ps, s), d)
    return gx, gy


def magnitude(dx: torch.Tensor, dy: torch.Tensor, norm: str = "l2") -> torch.Tensor:
    """Gradient magnitude ``sqrt(dx^2 + dy^2)`` (``norm='l2'``) or ``|dx| + |dy|`` (``'l1'``), elementwise.

    The L2 form has a gradient of 0 (not NaN) where ``dx = dy = 0``.

    Example:
        >>> magnitude(torch.tensor([3.0]), torch.tensor([4.0])).item()
        5.0
    """
    if norm == "l1":
        return dx.abs() + dy.abs()
    if norm != "l2":
        raise ValueError(f"unknown norm '{norm}': use l1 or l2")
    if torch.is_grad_enabled() and (dx.requires_grad or dy.requires_grad):
        sq = dx * dx + dy * dy
        safe = torch.where(sq > 0, sq, torch.ones_like(sq))
        return torch.where(sq > 0, safe.sqrt(), torch.zeros_like(sq))
    return (dx * dx).addcmul_(dy, dy).sqrt_()


def orientation(dx: torch.Tensor, dy: torch.Tensor, degrees: bool = False) -> torch.Tensor:
    """Gradient direction ``atan2(dy, dx)`` mapped to [0, 2*pi) (or [0, 360) degrees), as ``cv2.phase``.

    y points down (rows), so 90 degrees is a gradient pointing to the bottom of the image.

    Example:
        >>> orientation(torch.tensor([0.0]), torch.tensor([1.0]), degrees=True).item()
        90.0
    """
    a = torch.atan2(dy, dx)
    full = 360.0 if degrees else 2.0 * math.pi
    if degrees:
        a = torch.rad2deg(a)
    return torch.where(a < 0, a + full, a)


def gradient_magnitude(
    x: torch.Tensor, op: str = "sobel", ksize: int = 3, border: str = "reflect101", norm: str = "l2"
) -> torch.Tensor:
    """Edge strength of a (B, C, H, W) tensor: ``magnitude(*gradient(x, op, ksize, border), norm)``, fused.

    Each channel is filtered separately (output has C channels). On the CPU without autograd, dx, dy and
    the magnitude of one block are computed while it sits in cache and only the magnitude is written out.

    Example:
        >>> gradient_magnitude(torch.rand(8, 3, 64, 64)).shape
        torch.Size([8, 3, 64, 64])
    """
    if norm not in NORMS:
        raise ValueError(f"unknown norm '{norm}': use l1 or l2")
    d, s = _gradient_kernels(op, ksize)
    r = len(d) // 2

    def fn(p: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (magnitude(*_both(p, d, s), norm),)

    if len(s) == len(d) and not (torch.is_grad_enabled() and x.requires_grad):
        fn = _fused_magnitude(d, s, norm)
    return _run(x, r, r, border, fn)[0]


def _fused_magnitude(d: Kernel, s: Kernel, norm: str) -> Callable[[torch.Tensor], tuple[torch.Tensor, ...]]:
    def fn(p: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # 3x3 Sobel/Scharr inside the blocked CPU path (whose results are always copied into the output):
        # reuse scratch buffers; the arithmetic is the same as below.
        if len(d) == 3 and _DEST.view is not None:
            m, one, hp, wp = p.shape
            row_shape = torch.Size((m, one, hp, wp - 2))
            col_shape = torch.Size((m, one, hp - 2, wp - 2))
            rd = _row_pass(p, d, _SCRATCH.get(0, row_shape, p.dtype))
            rs = _row_pass(p, s, _SCRATCH.get(1, row_shape, p.dtype))
            gx = _col_pass(rd, s, _SCRATCH.get(2, col_shape, p.dtype))
            gy = _col_pass(rs, d, _SCRATCH.get(3, col_shape, p.dtype))
        else:
            gx = _col_pass(_row_pass(p, d), s)
            gy = _col_pass(_row_pass(p, s), d)
        if norm == "l1":
            return (gx.abs_().add_(gy.abs_()),)
        sq = gx.mul_(gx).addcmul_(gy, gy)
        dest = _DEST.view
        if dest is not None and dest.shape == sq.shape:
            return (torch.sqrt(sq, out=dest),)  # straight into the output: one pass fewer
        return (sq.sqrt_(),)

    return fn


def laplacian(x: torch.Tensor, ksize: int = 1, border: str = "reflect101", scale: float = 1.0) -> torch.Tensor:
    """Laplacian of a (B, C, H, W) tensor as ``cv2.Laplacian(x, -1, ksize)``.

    ``ksize=1``: ``[[0,1,0],[1,-4,1],[0,1,0]]``; ``ksize=3``: ``[[2,0,2],[0,-8,0],[2,0,2]]`` (OpenCV's kernels);
    ``ksize`` 5 or 7: ``d2/dx2 + d2/dy2`` from Sobel kernels of that size.

    Example:
        >>> yy, xx = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
        >>> laplacian((xx**2)[None, None])[0, 0, 4, 4].item()
        2.0
    """
    if ksize in (1, 3):
        y = _run(x, 1, 1, border, lambda p: (_laplacian_padded(p, ksize),))[0]
    elif ksize in (5, 7):
        d2, s = deriv_kernel1d(2, ksize), deriv_kernel1d(0, ksize)
        r = ksize // 2
        y = _run(x, r, r, border, lambda p: (_separable(p, d2, s) + _separable(p, s, d2),))[0]
    else:
        raise ValueError(f"Laplacian ksize must be 1, 3, 5 or 7, got {ksize}")
    return y * scale if scale != 1 else y


def central_gradient(x: torch.Tensor, border: str = "replicate") -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences ``(I[i+1] - I[i-1]) / 2`` along x and y: derivatives in intensity per pixel.

    Example:
        >>> gx, gy = central_gradient(torch.arange(4.0).expand(1, 1, 4, 4))
        >>> gx[0, 0, 1].tolist()
        [0.5, 1.0, 1.0, 0.5]
    """
    return separable_filter(x, (-0.5, 0.0, 0.5), (1.0,), border), separable_filter(x, (1.0,), (-0.5, 0.0, 0.5), border)
