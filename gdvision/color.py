"""Colour conversions on (B, C, H, W) tensors: a building block for the solvers (no I/O).

Example:
    >>> import torch
    >>> to_gray(torch.ones(1, 3, 2, 2)).shape
    torch.Size([1, 1, 2, 2])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def to_gray(x: torch.Tensor) -> torch.Tensor:
    """Luminance of a (B, C, H, W) tensor as (B, 1, H, W).

    RGB uses the Rec. 601 weights (0.299, 0.587, 0.114), as OpenCV's ``COLOR_RGB2GRAY``;
    any other channel count is averaged.
    """
    if x.shape[1] == 1:
        return x
    if x.shape[1] == 3:
        w = x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (x * w).sum(1, keepdim=True)
    return x.mean(1, keepdim=True)


__all__ = ["to_gray"]
