"""Coordinate conventions and conversions.

Pixel coordinates (everywhere in gdvision's public API, JSON files and CLI): ``x`` = column, ``y`` = row,
0-based, ``(0, 0)`` is the **centre** of the top-left pixel, so an image spans ``[-0.5, W-0.5]``; this is
OpenCV's convention. Homographies are 3x3, act on homogeneous column vectors ``[x, y, 1]^T`` and map
points of image A to points of image B: ``[xB, yB, 1]^T ~ H [xA, yA, 1]^T``.

Normalized coordinates are those of :func:`torch.nn.functional.grid_sample` with ``align_corners=True``:
``u = 2 x / (W - 1) - 1``, so -1 and +1 are the centres of the first and last pixels.
"""

from __future__ import annotations

import torch


def normalization_matrix(h: int, w: int, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """3x3 matrix N with ``[u, v, 1]^T = N [x, y, 1]^T`` (pixel -> grid_sample normalized coordinates)."""
    sx = 2.0 / max(w - 1, 1)
    sy = 2.0 / max(h - 1, 1)
    return torch.tensor([[sx, 0.0, -1.0], [0.0, sy, -1.0], [0.0, 0.0, 1.0]], dtype=dtype, device=device)


def pixel_to_normalized(pts: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(..., 2) pixel ``(x, y)`` -> (..., 2) normalized ``(u, v)`` in [-1, 1] over pixel centres."""
    scale = pts.new_tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)])
    return pts * scale - 1.0


def normalized_to_pixel(uv: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`pixel_to_normalized`."""
    scale = uv.new_tensor([(w - 1) / 2.0, (h - 1) / 2.0])
    return (uv + 1.0) * scale


def pixel_grid(h: int, w: int, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(H, W, 2) tensor of pixel coordinates ``(x, y)`` of every pixel centre."""
    ys = torch.arange(h, device=device, dtype=dtype)
    xs = torch.arange(w, device=device, dtype=dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1)


def apply_homography(H: torch.Tensor, pts: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Map points by homographies: ``H`` (B, 3, 3) or (3, 3), ``pts`` (B, N, 2) or (N, 2) -> same shape as pts.

    Points mapped to infinity (w ~ 0) come out huge but finite (the denominator is clamped away from 0).
    """
    Hm = H.to(pts.dtype)
    x, y = pts[..., 0:1], pts[..., 1:2]
    if Hm.dim() == 2:
        Hm = Hm.unsqueeze(0)
        squeeze = pts.dim() == 2
        if squeeze:
            x, y = x.unsqueeze(0), y.unsqueeze(0)
    else:
        squeeze = False
    h = Hm.unsqueeze(1)  # (B,1,3,3)
    X = h[..., 0, 0] * x[..., 0] + h[..., 0, 1] * y[..., 0] + h[..., 0, 2]
    Y = h[..., 1, 0] * x[..., 0] + h[..., 1, 1] * y[..., 0] + h[..., 1, 2]
    Z = h[..., 2, 0] * x[..., 0] + h[..., 2, 1] * y[..., 0] + h[..., 2, 2]
    Z = torch.where(Z.abs() < eps, torch.full_like(Z, eps), Z)
    out = torch.stack([X / Z, Y / Z], dim=-1)
    return out[0] if squeeze else out


def image_corners(h: int, w: int, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """(4, 2) pixel coordinates of the corner pixel centres (0,0), (w-1,0), (w-1,h-1), (0,h-1)."""
    return torch.tensor([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=dtype, device=device)


def mean_corner_error(H: torch.Tensor, H_true: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Mean distance (pixels, in B's frame) between A's 4 corners mapped by ``H`` and by ``H_true``.

    ``H``, ``H_true``: (B, 3, 3) or (3, 3) pixel homographies A -> B. Returns (B,) or a scalar.
    """
    c = image_corners(h, w, dtype=torch.float64, device=H.device)
    a = apply_homography(H.to(torch.float64), c if H.dim() == 2 else c.expand(H.shape[0], 4, 2))
    b = apply_homography(H_true.to(torch.float64), c if H_true.dim() == 2 else c.expand(H_true.shape[0], 4, 2))
    return (a - b).norm(dim=-1).mean(-1)
