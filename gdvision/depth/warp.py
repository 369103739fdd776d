"""Reprojecting source views into a reference view through a depth map.

Conventions: pinhole cameras with intrinsics ``K`` (3x3, pixels, pixel centres at integers as in
:mod:`gdvision.coords`) and world-to-camera poses ``T`` (4x4, ``X_cam = T @ [X_world, 1]``), camera frame
x right, y down, z forward. A reference pixel ``p = (x, y, 1)`` at depth ``d`` (along the reference optical
axis) lands in source view ``i`` at

    p_i ~ K_i T_i T_ref^-1 (d K_ref^-1 p)

With ``T_i T_ref^-1 = [R | t]`` and inverse depth ``w = 1 / d`` this is linear in ``w``:
``p_i ~ A p + b w`` with ``A = K_i R K_ref^-1`` and ``b = K_i t`` (the same homogeneous point scaled by
``w``). :func:`relative_projection` computes ``(A, b)``; :func:`reproject` samples a source image at the
resulting positions for a whole inverse-depth map.

Pyramid levels: the level-``l`` pixel ``(x, y)`` is the level-0 pixel ``(2^l x, 2^l y)``
(:mod:`gdvision.pyramid`), so level-``l`` intrinsics are ``diag(2^-l, 2^-l, 1) K`` (:func:`scale_intrinsics`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gdvision.coords import pixel_grid, pixel_to_grid


def scale_intrinsics(K: torch.Tensor, level: int) -> torch.Tensor:
    """Intrinsics (..., 3, 3) of pyramid level ``level`` (level-``l`` pixel ``x`` = level-0 pixel ``2^l x``).

    Example:
        >>> import torch
        >>> scale_intrinsics(torch.tensor([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]]), 1)[0].tolist()
        [50.0, 0.0, 25.0]
    """
    s = 0.5**level
    S = torch.tensor([[s, 0.0, 0.0], [0.0, s, 0.0], [0.0, 0.0, 1.0]], dtype=K.dtype, device=K.device)
    return S @ K


def relative_projection(
    K_ref: torch.Tensor, T_ref: torch.Tensor, K_src: torch.Tensor, T_src: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, b)`` with ``p_src ~ A p_ref + b / depth`` for reference pixel ``p_ref = (x, y, 1)``.

    Args:
        K_ref, K_src: (..., 3, 3) intrinsics in pixels.
        T_ref, T_src: (..., 4, 4) world-to-camera poses.

    Returns:
        ``A`` (..., 3, 3) = ``K_src R K_ref^-1`` and ``b`` (..., 3) = ``K_src t`` where
        ``[R | t] = T_src T_ref^-1`` (reference camera -> source camera).

    Example:
        >>> import torch
        >>> K = torch.tensor([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]])
        >>> T1 = torch.eye(4); T1[0, 3] = -0.1          # source camera 0.1 units to the right
        >>> A, b = relative_projection(K, torch.eye(4), K, T1)
        >>> b.tolist()                                  # disparity = f * baseline / depth, leftwards
        [-10.0, 0.0, 0.0]
    """
    rel = T_src @ torch.linalg.inv(T_ref)
    R = rel[..., :3, :3]
    t = rel[..., :3, 3]
    A = K_src @ R @ torch.linalg.inv(K_ref)
    b = (K_src @ t.unsqueeze(-1)).squeeze(-1)
    return A, b


def project_points(
    A: torch.Tensor, b: torch.Tensor, inv_depth: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """Source pixel coordinates of every reference pixel for an inverse-depth map.

    Args:
        A: (B, 3, 3), b: (B, 3) from :func:`relative_projection` (at the map's pyramid level).
        inv_depth: (B, 1, H, W) inverse depth ``1 / d`` (> 0) of the reference pixels.

    Returns:
        ``(pts, front)``: pts (B, H, W, 2) source pixel ``(x, y)``; front (B, 1, H, W) bool, True where the
        point lies in front of the source camera (homogeneous ``z > eps``).
    """
    bsz, _, h, w = inv_depth.shape
    grid = pixel_grid(h, w, device=inv_depth.device, dtype=inv_depth.dtype)
    ph = torch.cat([grid, torch.ones_like(grid[..., :1])], dim=-1)  # (H,W,3)
    Ap = torch.einsum("bij,hwj->bhwi", A.to(inv_depth.dtype), ph)  # (B,H,W,3)
    q = Ap + b.to(inv_depth.dtype).view(bsz, 1, 1, 3) * inv_depth.permute(0, 2, 3, 1)
    z = q[..., 2:3]
    front = z > eps
    pts = q[..., :2] / torch.where(front, z, torch.full_like(z, eps))
    return pts, front.permute(0, 3, 1, 2)


def sample_image(img: torch.Tensor, pts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinearly sample ``img`` (B, C, h, w) at pixel coordinates ``pts`` (B, H, W, 2).

    Outside the image the border value is repeated (so windowed losses near the frame edge do not see an
    artificial black edge); the returned mask (B, 1, H, W) is 1 where the position lies inside the
    pixel-centre box ``[0, w-1] x [0, h-1]``, else 0.
    """
    h, w = img.shape[-2:]
    x, y = pts[..., 0], pts[..., 1]
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    norm = pixel_to_grid(pts, h, w).to(img.dtype)
    out = F.grid_sample(img, norm, mode="bilinear", padding_mode="border", align_corners=True)
    return out, inside.unsqueeze(1).to(img.dtype)


def reproject(
    src: torch.Tensor, inv_depth: torch.Tensor, A: torch.Tensor, b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample the source image ``src`` (B, C, h, w) at the reference pixels through ``inv_depth``.

    Args:
        src: source image (B, C, h, w) (any size; its intrinsics are inside ``A`` and ``b``).
        inv_depth: (B, 1, H, W) inverse depth of the reference pixels (the output has the reference size).
        A, b: (B, 3, 3) and (B, 3) from :func:`relative_projection` for this pyramid level.

    Returns:
        ``(warped, mask)``: warped (B, C, H, W) approximates the reference image where the depth is right;
        mask (B, 1, H, W) is 1 where the sample lies inside ``src`` and in front of the source camera.
        Differentiable with respect to ``inv_depth``.

    Example:
        >>> import torch
        >>> K = torch.tensor([[32.0, 0, 15.5], [0, 32, 11.5], [0, 0, 1]])
        >>> A, b = relative_projection(K, torch.eye(4), K, torch.eye(4))  # same camera: identity warp
        >>> img = torch.rand(1, 3, 24, 32)
        >>> out, m = reproject(img, torch.full((1, 1, 24, 32), 0.5), A[None], b[None])
        >>> bool(torch.allclose(out, img, atol=1e-5)), bool(m.all())
        (True, True)
    """
    pts, front = project_points(A, b, inv_depth)
    warped, inside = sample_image(src, pts)
    return warped, inside * front.to(inside.dtype)


def backproject(depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Camera-frame 3-D points (H, W, 3) of a depth map (H, W) (z along the optical axis) with intrinsics K.

    Example:
        >>> import torch
        >>> K = torch.tensor([[10.0, 0, 1], [0, 10, 1], [0, 0, 1]])
        >>> backproject(torch.full((3, 3), 2.0), K)[1, 1].tolist()
        [0.0, 0.0, 2.0]
    """
    h, w = depth.shape
    grid = pixel_grid(h, w, device=depth.device, dtype=depth.dtype)
    ph = torch.cat([grid, torch.ones_like(grid[..., :1])], dim=-1)
    rays = ph @ torch.linalg.inv(K.to(depth.dtype)).T
    return rays * depth.unsqueeze(-1)
