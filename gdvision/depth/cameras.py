"""Camera math of the depth solver: camera centres, the automatic depth range, rectified pairs, views' checks,
and the world points of a depth map.

Conventions (as in :mod:`gdvision.depth.warp`): intrinsics ``K`` (3x3, pixels, pixel centres at integers),
world-to-camera poses ``T`` (4x4, ``X_cam = T @ [X_world, 1]``), camera frame x right, y down, z forward.
Everything takes and returns tensors; computations are in float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from gdvision.depth.config import View
from gdvision.depth.warp import backproject
from gdvision.errors import InputError, UsageError


def camera_center(world_to_cam: torch.Tensor) -> torch.Tensor:
    """World position (3,) of a camera's centre: ``-R^T t`` (float64).

    Example:
        >>> T = torch.eye(4, dtype=torch.float64); T[0, 3] = -2.0
        >>> camera_center(T).tolist()
        [2.0, 0.0, 0.0]
    """
    T = world_to_cam.to(torch.float64)
    return -T[:3, :3].T @ T[:3, 3]


def auto_depth_range(ref: View, sources: Sequence[View]) -> tuple[float, float]:
    """Depth bounds from the camera geometry alone (no scene points).

    With ``f`` the reference focal length, ``W`` its width and ``B`` the baselines to the sources:
    ``min_depth = f * max(B) / (W / 3)`` (at most a third of the image width of parallax) and
    ``max_depth = f * min(B) / 0.25`` (a quarter pixel of parallax), so the range spans everything the
    views can triangulate. Give explicit bounds when the scene extent is known: a tight range helps.

    Example:
        >>> K = torch.tensor([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]]); T = torch.eye(4); T[0, 3] = -1.0
        >>> auto_depth_range(View(torch.rand(1, 1, 80, 100), K, torch.eye(4)), [View(torch.rand(1, 1, 80, 100), K, T)])
        (3.0, 400.0)
    """
    c0 = camera_center(ref.world_to_cam)
    baselines = [float((camera_center(s.world_to_cam) - c0).norm()) for s in sources]
    f = float(ref.K[0, 0] + ref.K[1, 1]) / 2.0
    w = ref.image.shape[-1]
    return f * max(baselines) / (w / 3.0), f * min(baselines) / 0.25


def rectified_pair(ref: View, src: View, tol: float = 1e-6) -> tuple[float, float, float] | None:
    """``(f, baseline, doffs)`` when ``src`` is ``ref``'s rectified partner, else None.

    Rectified means: no relative rotation, a translation along the reference x axis only, equal focal
    lengths and equal ``cy``. Then the reference pixel ``(x, y)`` at depth ``Z`` matches the source pixel
    ``(x - d, y)`` with disparity ``d = f * baseline / Z - doffs`` and ``doffs = cx_src - cx_ref``
    (``baseline`` > 0 when the source camera sits to the right, as in a left-right pair).

    Example:
        >>> K = torch.tensor([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]]); T = torch.eye(4); T[0, 3] = -0.5
        >>> img = torch.rand(1, 1, 80, 100)
        >>> rectified_pair(View(img, K, torch.eye(4)), View(img, K, T))
        (100.0, 0.5, 0.0)
    """
    rel = src.world_to_cam.to(torch.float64) @ torch.linalg.inv(ref.world_to_cam.to(torch.float64))
    R, t = rel[:3, :3], rel[:3, 3]
    Kr, Ks = ref.K.to(torch.float64), src.K.to(torch.float64)
    base = float(-t[0])
    if float((R - torch.eye(3, dtype=R.dtype)).abs().max()) > tol or abs(base) < 1e-12:
        return None
    if float(t[1:].abs().max()) > tol * abs(base):
        return None
    f = float(Kr[0, 0])
    if max(abs(float(Ks[0, 0]) - f), abs(float(Kr[1, 1]) - f), abs(float(Ks[1, 1]) - f)) > 1e-6 * f:
        return None
    if abs(float(Ks[1, 2] - Kr[1, 2])) > 1e-6 * f or abs(float(Kr[0, 1])) > 1e-9 or abs(float(Ks[0, 1])) > 1e-9:
        return None
    return f, base, float(Ks[0, 2] - Kr[0, 2])


def check_views(ref: View, sources: Sequence[View]) -> None:
    """UsageError without a source view; InputError (naming the view and field) for unusable views.

    Checked: (1, C, H, W) images with the reference's channel count, finite ``K`` and ``world_to_cam``, and
    a non-zero baseline between every source and the reference (depth is unobservable otherwise).
    """
    if not sources:
        raise UsageError("depth needs at least one source view besides the reference")
    c0 = camera_center(ref.world_to_cam)
    for v in [ref, *sources]:
        if v.image.dim() != 4 or v.image.shape[0] != 1:
            raise InputError(f"view '{v.name}': expected a (1, C, H, W) image, got {tuple(v.image.shape)}")
        if v.image.shape[1] != ref.image.shape[1]:
            raise InputError(
                f"view '{v.name}' has {v.image.shape[1]} channels but the reference has {ref.image.shape[1]}"
            )
        for what, m in (("K", v.K), ("world_to_cam", v.world_to_cam)):
            if not bool(torch.isfinite(m).all()):
                raise InputError(f"view '{v.name}': field '{what}' contains non-finite numbers")
    scale = max(float((camera_center(s.world_to_cam) - c0).norm()) for s in sources) + 1e-12
    for s in sources:
        if float((camera_center(s.world_to_cam) - c0).norm()) <= 1e-9 * max(scale, 1.0):
            raise InputError(
                f"view '{s.name}' has the same camera centre as the reference '{ref.name}' "
                "(zero baseline): depth is unobservable"
            )


def world_points(
    depth: torch.Tensor, K: torch.Tensor, world_to_cam: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """3-D points (N, 3) float64 of the known pixels (finite, > 0) of ``depth`` (H, W), and their flat indices (N,).

    Points are in world coordinates when ``world_to_cam`` is given (``R^T (X_cam - t)``), else in the camera
    frame; pixels are taken in row-major order.

    Example:
        >>> K = torch.tensor([[10.0, 0, 1], [0, 10, 1], [0, 0, 1]]); T = torch.eye(4); T[0, 3] = -1.0
        >>> d = torch.full((3, 3), 2.0); d[0, 0] = float("nan")
        >>> pts, idx = world_points(d, K, T)
        >>> pts.shape, idx[:2].tolist(), pts[3].tolist()     # pixel (1, 1) = index 4, on the axis 2 units away
        (torch.Size([8, 3]), [1, 2], [1.0, 0.0, 2.0])
    """
    d = depth.to(torch.float64)
    idx = torch.nonzero((torch.isfinite(d) & (d > 0)).flatten()).flatten()
    pts = backproject(d, K.to(torch.float64)).reshape(-1, 3)[idx]
    if world_to_cam is not None:
        T = world_to_cam.to(torch.float64)
        pts = (pts - T[:3, 3]) @ T[:3, :3]  # R^T (X - t)
    return pts, idx


__all__ = ["auto_depth_range", "camera_center", "check_views", "rectified_pair", "world_points"]
