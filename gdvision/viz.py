"""Pictures that show alignment quality.

:func:`checkerboard` interleaves tiles of two aligned images; misalignment shows as broken edges at tile
borders. :func:`color_blend` puts one image in magenta and the other in green; aligned structure turns gray.
Both take (1, C, H, W) tensors in [0, 1] of the same size and return (1, 3, H, W).
"""

from __future__ import annotations

import torch


def _rgb(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 3:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1)
    return x.mean(1, keepdim=True).expand(-1, 3, -1, -1)


def checkerboard(a: torch.Tensor, b: torch.Tensor, tiles: int = 8, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Checkerboard of ``a`` and ``b`` with ``tiles`` tiles along the longer side.

    Where ``mask`` (1, 1, H, W) is 0 (e.g. outside a warped image), ``b`` is shown.

    Example:
        >>> import torch
        >>> checkerboard(torch.zeros(1, 1, 8, 8), torch.ones(1, 1, 8, 8), tiles=2)[0, 0, :, 0].tolist()
        [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    """
    h, w = a.shape[-2:]
    size = max(1, max(h, w) // tiles)
    ys = torch.arange(h, device=a.device) // size
    xs = torch.arange(w, device=a.device) // size
    pick = ((ys[:, None] + xs[None, :]) % 2 == 0).to(a.dtype)[None, None]
    if mask is not None:
        pick = pick * mask
    return _rgb(a) * pick + _rgb(b) * (1 - pick)


def color_blend(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Magenta/green blend: ``a`` in red and blue, ``b`` in green (luminance of each)."""
    ga = _rgb(a).mean(1, keepdim=True)
    gb = _rgb(b).mean(1, keepdim=True)
    return torch.cat([ga, gb, ga], dim=1)
