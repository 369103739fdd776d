"""The block engine of the separable filters: borders, the CPU block loop, and what a block knows about itself.

:func:`run_blocks` applies a filter function to every channel-image of a (B, C, H, W) tensor. On the CPU, when
no gradient is needed, it works in blocks of about ``_BLOCK_ELEMS`` padded pixels (several channel-images, or row
bands of one big image) written into one preallocated output, so that a block's intermediates stay in cache;
with autograd or on an accelerator it pads the whole tensor once and calls the function on it.

Border modes: ``"reflect101"`` (OpenCV's default ``BORDER_REFLECT_101``: ``gfedcb|abcdefgh|gfedcba``),
``"replicate"`` (``aaaaaa|abcdefgh|hhhhhhh``), ``"constant"`` (zeros), and ``"valid"`` (no padding: the
output shrinks by the kernel size minus one).

Example:
    >>> x = torch.arange(12.0).view(1, 1, 3, 4)
    >>> run_blocks(x, 1, 0, "replicate", lambda p: (p[..., 2:] - p[..., :-2],))[0][0, 0, 0].tolist()
    [1.0, 2.0, 2.0, 1.0]
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch
import torch.nn.functional as F

from gdvision._checks import check_choice, check_image
from gdvision.errors import InputError
from gdvision.filters.config import BORDERS

# Padded pixels of one work block on the CPU fast path (2 MiB of float32: the block's intermediates stay in
# L2/L3). Measured on the 2-core EPYC: 2**19 beat 2**15 .. 2**18 (per-op overhead) and 2**20 .. 2**21 (cache).
# A thread pool over small single-threaded blocks was measured twice and was slower on a quiet machine (issue 18,
# 2 threads: 1.8-2.0x OpenCV's time at batch 8-128 against 1.0-1.2x with torch's own threads inside each op).
_BLOCK_ELEMS = 1 << 19


class BlockInfo(threading.local):
    """What the block loop tells the filter functions about the block they are computing.

    ``view``: where the CPU block loop wants the block's (single) result written, if the fn can.
    ``channels`` / ``first``: the image's channel count C and the flat index (b * C + c) of the block's first
    channel-image, so that OpenCV's per-row scalar tail (which depends on W * C) can be reproduced.
    """

    view: torch.Tensor | None = None
    channels: int = 1
    first: int = 0


DEST = BlockInfo()


class Scratch(threading.local):
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


SCRATCH = Scratch()


def check_border(border: str) -> str:
    """``border`` if it is one of :data:`BORDERS`; UsageError otherwise."""
    return check_choice(border, "border", BORDERS)


def check_batch(x: torch.Tensor) -> torch.Tensor:
    """``x`` if it is a (B, C, H, W) tensor (floating, or integer: converted by the filters); InputError otherwise."""
    if isinstance(x, torch.Tensor) and x.dim() == 4:  # the common case, checked in well under a microsecond
        return x
    return check_image(x, "image batch", min_size=0, finite=False)  # raises, naming what is wrong


def pad(x: torch.Tensor, left: int, right: int, top: int, bottom: int, border: str) -> torch.Tensor:
    """Pad the last two dims of a (B, C, H, W) tensor with an OpenCV-style border mode.

    ``reflect101`` repeats the pixel along a side of 1 pixel (nothing to reflect), as OpenCV does.

    Example:
        >>> pad(torch.arange(4.0).view(1, 1, 1, 4), 2, 0, 0, 0, "reflect101")[0, 0, 0].tolist()
        [2.0, 1.0, 0.0, 1.0, 2.0, 3.0]
    """
    check_border(border)
    if border == "valid" or (left == right == top == bottom == 0):
        return x
    if border == "constant":
        return F.pad(x, (left, right, top, bottom), mode="constant", value=0.0)
    if border == "reflect101":
        h, w = x.shape[-2:]
        if max(left, right) < w and max(top, bottom) < h:
            return F.pad(x, (left, right, top, bottom), mode="reflect")
        # Large pads: reflect repeatedly (OpenCV reflects periodically); a side of 1 pixel repeats that pixel.
        idx_x = _reflect101_index(w, left, right, x.device)
        idx_y = _reflect101_index(h, top, bottom, x.device)
        return x.index_select(-1, idx_x).index_select(-2, idx_y)
    return F.pad(x, (left, right, top, bottom), mode="replicate")


def _reflect101_index(n: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    i = torch.arange(-before, n + after, device=device)
    if n == 1:  # nothing to reflect: OpenCV's borderInterpolate gives index 0
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    i = torch.remainder(i, period)
    return torch.where(i >= n, period - i, i)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    if x.dtype in (torch.float32, torch.float64):
        return x.dtype
    return torch.float32


def run_blocks(
    x: torch.Tensor,
    rx: int,
    ry: int,
    border: str,
    fn: Callable[[torch.Tensor], tuple[torch.Tensor, ...]],
    n_out: int = 1,
    step: int = 1,
) -> tuple[torch.Tensor, ...]:
    """Apply ``fn`` to every channel-image of ``x`` (B, C, H, W); returns a tuple of (B, C, H', W') tensors.

    ``fn`` maps a padded block (m, 1, h + 2ry, w + 2rx) to a tuple of (m, 1, h, w) results; H' = H (or
    H - 2ry for ``valid``). With ``step`` > 1, ``fn`` returns only every ``step``-th row and column of them
    (m, 1, ceil(h / step), ceil(w / step)) and the outputs are (B, C, ceil(H' / step), ceil(W' / step)); blocks of
    rows then start at multiples of ``step``. Outputs have ``x``'s floating dtype (float32 for integer inputs).
    UsageError for an unknown ``border``; InputError when ``x`` is not (B, C, H, W) or is too small for a ``valid``
    filter.
    """
    check_border(border)
    check_batch(x)
    b, c, h, w = x.shape
    cdt = _compute_dtype(x)
    odt = x.dtype if x.is_floating_point() else torch.float32
    valid = border == "valid"
    ho, wo = (h - 2 * ry, w - 2 * rx) if valid else (h, w)
    if ho <= 0 or wo <= 0:
        raise InputError(f"image {h}x{w} is too small for a 'valid' filter of size {2 * ry + 1}x{2 * rx + 1}")
    hs, ws = -(-ho // step), -(-wo // step)
    n = b * c
    xf = x.reshape(n, 1, h, w)
    fast = x.device.type == "cpu" and not (torch.is_grad_enabled() and x.requires_grad)
    DEST.channels, DEST.first = c, 0
    try:
        if not fast:
            ys = fn(pad(xf.to(cdt), rx, rx, ry, ry, border))
            return tuple(y.to(odt).reshape(b, c, hs, ws) for y in ys)
        outs = [_huge_pages(torch.empty((n, 1, hs, ws), dtype=odt)) for _ in range(n_out)]
        jobs = _blocks(n, h, w, ho, rx, ry, step)

        def work(job: tuple[int, int, int, int]) -> None:
            i0, i1, r0, r1 = job
            rows = slice(r0 // step, -(-r1 // step))
            DEST.view = outs[0][i0:i1, :, rows] if n_out == 1 and odt == cdt else None
            DEST.channels, DEST.first = c, i0  # per thread: the block may run in a pool thread
            try:
                ys = fn(_padded_block(xf, i0, i1, r0, r1, h, rx, ry, border).to(cdt))
            finally:
                DEST.view = None
            for o, y in zip(outs, ys, strict=True):
                dst = o[i0:i1, :, rows]
                if y.data_ptr() != dst.data_ptr():  # the fused magnitude writes straight into the output
                    dst.copy_(y)

        for job in jobs:
            work(job)
        return tuple(o.reshape(b, c, hs, ws) for o in outs)
    finally:
        DEST.channels, DEST.first = 1, 0


_HUGE_PAGE = 2 << 20
_MADVISE: list[object] = []  # [libc.madvise] once looked up, [None] where there is none


def _huge_pages(t: torch.Tensor) -> torch.Tensor:
    """Ask Linux for transparent huge pages under a fresh output of 4 MiB or more, before it is first written.

    A large CPU tensor is freshly ``mmap``-ed by the C allocator on every call, and writing it faults in and zeroes
    one 4 KiB page at a time: 68 ms of a 100 MB output (batch 128 of RGB 256x256) against 11-15 ms with 2 MiB
    pages (``madvise(MADV_HUGEPAGE)``, honoured when THP is in ``madvise`` or ``always`` mode). Only the
    tensor's own whole 2 MiB pages are advised. A no-op elsewhere; returns ``t``.
    """
    size = t.numel() * t.element_size()
    if size < 2 * _HUGE_PAGE:
        return t
    if not _MADVISE:
        try:
            import ctypes

            fn = ctypes.CDLL(None, use_errno=True).madvise
            fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            _MADVISE.append(fn)
        except (OSError, AttributeError):
            _MADVISE.append(None)
    madvise = _MADVISE[0]
    if madvise is None:
        return t
    start = (t.data_ptr() + _HUGE_PAGE - 1) // _HUGE_PAGE * _HUGE_PAGE
    end = (t.data_ptr() + size) // _HUGE_PAGE * _HUGE_PAGE
    if end > start:
        madvise(start, end - start, 14)  # MADV_HUGEPAGE; an error (no THP) changes nothing
    return t


def _blocks(n: int, h: int, w: int, ho: int, rx: int, ry: int, step: int = 1) -> list[tuple[int, int, int, int]]:
    """Work blocks (image from, image to, output row from, output row to) of about ``_BLOCK_ELEMS`` padded pixels;
    bands of rows start at multiples of ``step``."""
    padded = (h + 2 * ry) * (w + 2 * rx)
    if padded <= _BLOCK_ELEMS:
        m = max(1, _BLOCK_ELEMS // padded)
        return [(i, min(n, i + m), 0, ho) for i in range(0, n, m)]
    band = max(2 * ry + 1, _BLOCK_ELEMS // (w + 2 * rx) - 2 * ry)  # output rows per band
    band += -band % step
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
    return _pad_into_scratch(xf[i0:i1, :, lo:hi], rx, top, bottom, border)


def _pad_into_scratch(x: torch.Tensor, rx: int, top: int, bottom: int, border: str) -> torch.Tensor:
    """``pad(x, rx, rx, top, bottom, border)`` written into a reused scratch buffer of the compute dtype.

    The same values as :func:`pad` (and ``F.pad``): the interior is one copy (converting integer or half inputs on
    the way), then the border columns and rows are copied from it, so corners reflect in both directions. About
    4x cheaper than ``F.pad``'s reflection kernel and no fresh allocation per block. Falls back to :func:`pad` when
    the image is too small to reflect inside itself.
    """
    m, one, h, w = x.shape
    if max(top, bottom) >= h or rx >= w or (border == "reflect101" and min(h, w) == 1):
        return pad(x, rx, rx, top, bottom, border).to(_compute_dtype(x))
    shape = torch.Size((m, one, h + top + bottom, w + 2 * rx))
    out = SCRATCH.get(4, shape, _compute_dtype(x))
    out[:, :, top : top + h, rx : rx + w].copy_(x)
    for side, count in (("left", rx), ("right", rx), ("top", top), ("bottom", bottom)):
        _fill_border(out, side, count, border, (top, top + h, rx, rx + w))
    return out


def _fill_border(out: torch.Tensor, side: str, count: int, border: str, box: tuple[int, int, int, int]) -> None:
    """Fill ``count`` border columns (left/right: rows of ``box`` only) or rows (top/bottom: full width) of ``out``.

    ``box`` = (row0, row1, col0, col1): where the image lies in ``out``; columns are filled before rows.
    """
    if count == 0:
        return
    r0, r1, c0, c1 = box
    axis = -1 if side in ("left", "right") else -2
    rows = slice(r0, r1) if axis == -1 else slice(None)
    first, last = (c0, c1 - 1) if axis == -1 else (r0, r1 - 1)
    for k in range(count):
        if side in ("left", "top"):
            dst, src = first - 1 - k, (first + 1 + k if border == "reflect101" else first)
        else:
            dst, src = last + 1 + k, (last - 1 - k if border == "reflect101" else last)
        d = out[:, :, rows, dst] if axis == -1 else out[:, :, dst, :]
        if border == "constant":
            d.zero_()
        else:
            d.copy_(out[:, :, rows, src] if axis == -1 else out[:, :, src, :])


__all__ = ["BORDERS", "DEST", "SCRATCH", "check_batch", "check_border", "pad", "run_blocks"]
