"""Pictures that show alignment quality.

:func:`checkerboard` interleaves tiles of two aligned images; misalignment shows as broken edges at tile
borders. :func:`color_blend` puts one image in magenta and the other in green; aligned structure turns gray.
Both take (1, C, H, W) tensors in [0, 1] of the same size and return (1, 3, H, W).
:func:`draw_matches` puts two images side by side with a line per keypoint match (inliers green).
"""

from __future__ import annotations

from typing import Any

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


def draw_matches(a: torch.Tensor, b: torch.Tensor, res: Any, max_lines: int = 2000) -> torch.Tensor:
    """Matches of ``a`` (1, C, Ha, Wa) and ``b`` (1, C', Hb, Wb) side by side, (1, 3, max(Ha, Hb), Wa + Wb).

    ``res`` holds the matches as a :class:`gdvision.features.match.MatchResult` does: ``pts_a``, ``pts_b`` (K, 2)
    pixel coordinates and ``inliers`` (K,) bool. Inliers are drawn green (last, on top), outliers red; at most
    ``max_lines`` lines. The photos are dimmed to 80% so the lines stand out; colour images stay in colour.

    Example:
        >>> import torch
        >>> from types import SimpleNamespace
        >>> m = SimpleNamespace(pts_a=torch.tensor([[1.0, 1.0]]), pts_b=torch.tensor([[1.0, 1.0]]),
        ...                     inliers=torch.tensor([True]))
        >>> pic = draw_matches(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), m)
        >>> tuple(pic.shape), pic[0, :, 1, 3].tolist()
        ((1, 3, 4, 8), [0.10000000149011612, 1.0, 0.20000000298023224])
    """
    ha, wa = a.shape[-2:]
    hb, wb = b.shape[-2:]
    canvas = torch.zeros(3, max(ha, hb), wa + wb)
    canvas[:, :ha, :wa] = _rgb(a.detach().cpu().float())[0]
    canvas[:, :hb, wa:] = _rgb(b.detach().cpu().float())[0]
    canvas *= 0.8  # dim the photos so the lines stand out
    pa = res.pts_a.detach().cpu().to(torch.float32)
    pb = res.pts_b.detach().cpu().to(torch.float32) + torch.tensor([float(wa), 0.0])
    inl = res.inliers.detach().cpu()
    order = torch.cat([torch.nonzero(~inl)[:, 0], torch.nonzero(inl)[:, 0]])[-max_lines:]  # inliers drawn last
    h, w = canvas.shape[-2:]
    for sel, colour in ((order[~inl[order]], (1.0, 0.15, 0.1)), (order[inl[order]], (0.1, 1.0, 0.2))):
        if sel.numel() == 0:
            continue
        p0, p1 = pa[sel], pb[sel]
        steps = int(torch.ceil((p1 - p0).norm(dim=1).max()).item()) + 1
        t = torch.linspace(0, 1, steps).view(1, -1, 1)
        pts = torch.round(p0.unsqueeze(1) + t * (p1 - p0).unsqueeze(1)).long().reshape(-1, 2)
        ok = (pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
        pts = pts[ok]
        for c in range(3):
            canvas[c, pts[:, 1], pts[:, 0]] = colour[c]
    return canvas.clamp(0, 1).unsqueeze(0)
