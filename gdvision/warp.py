"""Warping images by homographies, with validity masks.

Conventions: pixel coordinates as in :mod:`gdvision.coords` (pixel centres at integers, OpenCV's).
:func:`warp_perspective` follows ``cv2.warpPerspective``: with ``H`` mapping source pixels to destination
pixels, ``dst(x) = src(H^-1 x)``; ``inverse_map=True`` (OpenCV's ``WARP_INVERSE_MAP``) means ``H`` maps
destination pixels to source pixels, ``dst(x) = src(H x)``. Bilinear interpolation; outside the source the
value is 0 and the mask is 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gdvision.coords import pixel_to_grid


def sample_points(img: torch.Tensor, pts: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Sample ``img`` (B, C, H, W) at pixel coordinates ``pts`` (B, N, 2) -> (B, C, N); zeros outside."""
    h, w = img.shape[-2:]
    grid = pixel_to_grid(pts.to(img.dtype), h, w).unsqueeze(1)  # (B,1,N,2)
    return F.grid_sample(img, grid, mode=mode, padding_mode="zeros", align_corners=True)[:, :, 0]


def stack_rows(img: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (1, C, B*H, W): the batch stacked vertically.

    One ``grid_sample`` call can then sample any subset of the items without copying images: a point
    ``(x, y)`` of item ``i`` is ``(x, y + i*H)`` in the stacked image. Points within half a pixel outside an
    item blend in a row of its neighbour, so callers must ignore points outside ``[0, W-1] x [0, H-1]``;
    float32 grid coordinates give about ``B*H * 6e-8`` pixels of precision.
    """
    b, c, h, w = img.shape
    return img.permute(1, 0, 2, 3).reshape(1, c, b * h, w)


def inside_mask(pts: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, N) float mask: 1 where pixel coordinates lie within the pixel-centre box [0, w-1] x [0, h-1]."""
    return _inside(pts[..., 0], pts[..., 1], h, w).to(pts.dtype)


def _inside(x: torch.Tensor, y: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Bool: pixel coordinates ``x``, ``y`` (same shape) within [0, w-1] x [0, h-1]; NaN is outside."""
    return (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)


def warp_perspective(
    src: torch.Tensor,
    H: torch.Tensor,
    dsize: tuple[int, int],
    inverse_map: bool = False,
    mode: str = "bilinear",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp ``src`` (B, C, h, w) by homographies ``H`` (B, 3, 3) or (3, 3) into an image of ``dsize=(W, H)``.

    Returns ``(dst, mask)``: dst (B, C, H, W) and mask (B, 1, H, W) = 1 where the sample position falls
    inside ``src``. Agrees with ``cv2.warpPerspective(src, H, dsize)`` (bilinear, constant-0 border) up to
    interpolation round-off away from the border.

    Example:
        >>> import torch
        >>> img = torch.rand(1, 3, 48, 64)
        >>> out, mask = warp_perspective(img, torch.eye(3), (64, 48))
        >>> bool(torch.allclose(out, img, atol=1e-5))
        True
    """
    b = src.shape[0]
    Wd, Hd = dsize
    Hm = H.to(torch.float64)
    if Hm.dim() == 2:
        Hm = Hm.expand(b, 3, 3)
    if not inverse_map:
        Hm = torch.linalg.inv(Hm)
    # the source position of every destination pixel: each homogeneous coordinate plane is an outer sum of a row and
    # a column, in float64 with apply_homography's order of operations (the same values, no pixel grid built)
    xs = torch.arange(Wd, dtype=torch.float64, device=src.device).view(1, 1, Wd)
    ys = torch.arange(Hd, dtype=torch.float64, device=src.device).view(1, Hd, 1)

    def plane(r: int) -> torch.Tensor:
        return (Hm[:, r, 0].view(-1, 1, 1) * xs + Hm[:, r, 1].view(-1, 1, 1) * ys) + Hm[:, r, 2].view(-1, 1, 1)

    z = plane(2)
    z = torch.where(z.abs() < 1e-12, 1e-12, z)  # apply_homography's clamp of points at infinity
    u, v = plane(0) / z, plane(1) / z
    h, w = src.shape[-2:]
    mask = _inside(u, v, h, w).to(src.dtype).unsqueeze(1)
    norm = torch.empty(*u.shape, 2, dtype=src.dtype, device=src.device)  # pixel_to_grid, rounded once from float64
    norm[..., 0] = u.mul_(2.0 / max(w - 1, 1)).sub_(1.0)
    norm[..., 1] = v.mul_(2.0 / max(h - 1, 1)).sub_(1.0)
    if norm.shape[0] != b:
        src = src.expand(norm.shape[0], -1, -1, -1)
    dst = F.grid_sample(src, norm, mode=mode, padding_mode="zeros", align_corners=True)
    return dst, mask
