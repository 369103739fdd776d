"""Gaussian image pyramids.

Each level halves the previous one after a 5-tap binomial blur ``[1, 4, 6, 4, 1] / 16`` (OpenCV's
``pyrDown`` kernel) and keeps every second pixel, so the level-``l`` pixel ``(x, y)`` sits exactly at the
level-0 pixel ``(2^l x, 2^l y)`` (pixel centres at integers), and level sizes are ``ceil(size / 2)``.
"""

from __future__ import annotations

import torch

from gdvision.filters.blocks import pad, run_blocks
from gdvision.filters.kernels import kernel_tuple
from gdvision.filters.passes import opencv_tail_applies, separable_passes_even
from gdvision.filters.separable import separable_filter

_BINOMIAL5 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def num_levels(h: int, w: int, min_size: int = 32, max_levels: int = 8) -> int:
    """Number of pyramid levels so that the coarsest level's shorter side is still >= ``min_size``."""
    n = 1
    s = min(h, w)
    while n < max_levels and (s + 1) // 2 >= min_size:
        s = (s + 1) // 2
        n += 1
    return n


def pyr_down(x: torch.Tensor, border: str = "reflect101") -> torch.Tensor:
    """Blur (B, C, H, W) with the binomial 5-tap kernel and keep even pixels -> (B, C, ceil(H/2), ceil(W/2)).

    The values are those of ``separable_filter(x, k, k, border)[..., ::2, ::2]`` bit for bit, but only the kept
    pixels are computed (half the row pass, a quarter of the column pass, as OpenCV's ``pyrDown``), in the same
    cache-sized blocks as the filters.

    Example:
        >>> x = torch.rand(1, 3, 9, 14)
        >>> k = [1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16]
        >>> torch.equal(pyr_down(x), separable_filter(x, k, k, "reflect101")[..., ::2, ::2])
        True
    """
    k = kernel_tuple(_BINOMIAL5)
    b, c, h, w = x.shape
    if x.dtype not in (torch.float32, torch.float64) or border == "valid" or opencv_tail_applies(k, k, w, c, x.dtype):
        return separable_filter(x, k, k, border)[..., ::2, ::2]
    if b * c * (h + 4) * (w + 4) <= _ONE_PASS_MAX:  # one padded copy (F.pad's kernel) beats the blocks' border copies
        y = separable_passes_even(pad(x.reshape(b * c, 1, h, w), 2, 2, 2, 2, border), k, k)
        return y.reshape(b, c, y.shape[-2], y.shape[-1])
    return run_blocks(x, 2, 2, border, lambda p: (separable_passes_even(p, k, k),), step=2)[0]


_ONE_PASS_MAX = 1 << 19  # padded values up to which pyr_down pads and filters the whole batch at once (one block)


def gaussian_pyramid(x: torch.Tensor, levels: int | None = None, min_size: int = 32) -> list[torch.Tensor]:
    """Gaussian pyramid of (B, C, H, W), finest first; ``levels=None`` picks :func:`num_levels`.

    Example:
        >>> import torch
        >>> [p.shape[-1] for p in gaussian_pyramid(torch.rand(1, 1, 100, 130), levels=3)]
        [130, 65, 33]
    """
    if levels is None:
        levels = num_levels(x.shape[-2], x.shape[-1], min_size)
    out = [x]
    for _ in range(levels - 1):
        out.append(pyr_down(out[-1]))
    return out


def downsample_mask(mask: torch.Tensor) -> torch.Tensor:
    """Halve a (B, 1, H, W) 0/1 validity mask: a coarse pixel is valid only if its 3x3 parents all are."""
    return -torch.nn.functional.max_pool2d(-mask, 3, stride=2, padding=1)  # the 3x3 minima at even pixels only
