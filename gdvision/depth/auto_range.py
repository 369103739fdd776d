"""The depth range of a reference view from sparse correspondences with its source views and the known cameras.

:func:`depth_range_from_matches` triangulates each source's matches with the reference (midpoint method,
:func:`gdvision.geometry.triangulate_midpoint`, float64), keeps only the matches the known cameras confirm, and
returns robust percentiles of the reference-camera depths, widened by a margin:

- a match must lie within ``max_epipolar`` pixels of its epipolar line in both images (the line from the given
  cameras' fundamental matrix, :func:`gdvision.geometry.fundamental_from_cameras`; nothing is estimated), its
  point must be in front of both cameras and reproject within ``max_reprojection`` pixels in both images;
- the points of all sources are pooled; with ``w = 1 / depth`` and ``w_lo``, ``w_hi`` the ``percentiles`` of
  ``w``, the range is ``[1 / (w_hi + e), 1 / max(w_lo - e, w_lo / 10)]`` with the margin
  ``e = max(margin * (w_hi - w_lo), min_margin * w_hi)``. Inverse depth is proportional to parallax, so the
  margin is ``margin`` (0.15) of the scene's parallax span on each side, and at least ``min_margin`` (2 %) of
  the largest parallax (a scene at one depth still gets a band); the far bound stays finite (at most 10x the
  far percentile's depth). Both are fractions: the rule does not depend on the scene's scale or unit;
- fewer than ``min_points`` surviving points give no range (``None, None``): the caller falls back to another rule.

Tensors in, numbers out: no image, file or feature detector here (matching is the caller's job).
Conventions as in :mod:`gdvision.depth.warp`: ``K`` (3, 3) pixels, pixel centres at integers; ``world_to_cam``
(4, 4), ``X_cam = T @ [X_world, 1]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

from gdvision.geometry import fundamental_from_cameras, triangulate_midpoint

PERCENTILES = (2.0, 98.0)
MARGIN = 0.15  # of the inverse-depth span, on each side
MIN_MARGIN = 0.02  # of the largest inverse depth
MAX_REPROJECTION = 2.0  # pixels
MAX_EPIPOLAR = 2.0  # pixels
MIN_POINTS = 20


class SourceMatches(NamedTuple):
    """Matches between the reference and one source view: the source's camera and the matched pixels.

    ``pts_ref`` (N, 2) in the reference image, ``pts_src`` (N, 2) in the source image, (x, y) pixels.
    """

    K: torch.Tensor
    world_to_cam: torch.Tensor
    pts_ref: torch.Tensor
    pts_src: torch.Tensor


def _project(K: torch.Tensor, T: torch.Tensor, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels (N, 2) and depths (N,) of world points X (N, 3) in a camera (float64)."""
    Xc = X @ T[:3, :3].T + T[:3, 3]
    z = Xc[:, 2]
    p = Xc @ K.T
    return p[:, :2] / torch.where(z.abs() < 1e-300, torch.full_like(z, 1e-300), z)[:, None], z


def _epipolar_distance(F: torch.Tensor, pa: torch.Tensor, pb: torch.Tensor) -> torch.Tensor:
    """(N,) the larger of the distances of ``pb`` to its epipolar line ``F pa`` and of ``pa`` to ``F^T pb`` (px)."""
    ha = torch.cat([pa, torch.ones_like(pa[:, :1])], 1)
    hb = torch.cat([pb, torch.ones_like(pb[:, :1])], 1)
    la, lb = ha @ F.T, hb @ F  # line in B of each a, line in A of each b
    r = (hb * la).sum(1).abs()
    db = r / la[:, :2].norm(dim=1).clamp_min(1e-300)
    da = r / lb[:, :2].norm(dim=1).clamp_min(1e-300)
    return torch.maximum(da, db)


def confirmed_depths(
    K_ref: torch.Tensor,
    T_ref: torch.Tensor,
    m: SourceMatches,
    max_reprojection: float = MAX_REPROJECTION,
    max_epipolar: float = MAX_EPIPOLAR,
) -> torch.Tensor:
    """Reference-camera depths (M,) float64 of the matches of ``m`` that the known cameras confirm.

    Kept: finite points in front of both cameras, within ``max_epipolar`` px of the epipolar lines and
    reprojecting within ``max_reprojection`` px in both images.

    Example:
        >>> K = torch.tensor([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]], dtype=torch.float64)
        >>> Ts = torch.eye(4, dtype=torch.float64); Ts[0, 3] = -1.0
        >>> pr = torch.tensor([[60.0, 30.0], [20.0, 50.0], [40.0, 40.0]])
        >>> ps = torch.tensor([[35.0, 30.0], [10.0, 50.0], [45.0, 48.0]])   # depth 4, depth 10, off its line
        >>> [round(z, 6) for z in confirmed_depths(K, torch.eye(4), SourceMatches(K, Ts, pr, ps)).tolist()]
        [4.0, 10.0]
    """
    f64 = torch.float64
    Kr, Tr = K_ref.to(f64).cpu(), T_ref.to(f64).cpu()
    Ks, Ts = m.K.to(f64).cpu(), m.world_to_cam.to(f64).cpu()
    pa, pb = m.pts_ref.to(f64).cpu().reshape(-1, 2), m.pts_src.to(f64).cpu().reshape(-1, 2)
    if pa.shape[0] == 0:
        return pa.new_zeros(0)
    epi = _epipolar_distance(fundamental_from_cameras(Kr, Tr, Ks, Ts), pa, pb)
    X, _, _ = triangulate_midpoint(Kr, Tr, Ks, Ts, pa, pb)
    qa, za = _project(Kr, Tr, X)
    qb, zb = _project(Ks, Ts, X)
    err = torch.maximum((qa - pa).norm(dim=1), (qb - pb).norm(dim=1))
    ok = torch.isfinite(X).all(1) & (za > 0) & (zb > 0) & (err <= max_reprojection) & (epi <= max_epipolar)
    return za[ok]


def depth_range_from_matches(
    K_ref: torch.Tensor,
    T_ref: torch.Tensor,
    sources: Sequence[SourceMatches],
    percentiles: tuple[float, float] = PERCENTILES,
    margin: float = MARGIN,
    min_margin: float = MIN_MARGIN,
    max_reprojection: float = MAX_REPROJECTION,
    max_epipolar: float = MAX_EPIPOLAR,
    min_points: int = MIN_POINTS,
) -> tuple[float | None, float | None, dict[str, Any]]:
    """``(min_depth, max_depth, info)`` of the reference camera from its matches with each source view.

    See the module docstring for the rule. ``info`` (JSON-able): ``points`` (surviving points, all sources),
    ``matches`` (given), ``per_source`` (surviving points of each), ``depth_percentiles`` (the two percentiles
    of depth before the margin, or None), ``percentiles``, ``margin``, ``min_margin``. ``min_depth`` and
    ``max_depth`` are None when fewer than ``min_points`` points survive.

    Example:
        >>> K = torch.tensor([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]], dtype=torch.float64)
        >>> Ts = torch.eye(4, dtype=torch.float64); Ts[0, 3] = -1.0      # source one unit to the right
        >>> g = torch.Generator().manual_seed(0)
        >>> X = torch.rand(200, 3, generator=g, dtype=torch.float64) * torch.tensor([4, 3, 6.0])
        >>> X += torch.tensor([-2, -1.5, 4.0])                              # depths 4..10
        >>> pr = X[:, :2] / X[:, 2:] * 100 + torch.tensor([50.0, 40])
        >>> ps = (X[:, :2] - torch.tensor([1.0, 0])) / X[:, 2:] * 100 + torch.tensor([50.0, 40])
        >>> lo, hi, info = depth_range_from_matches(K, torch.eye(4), [SourceMatches(K, Ts, pr, ps)])
        >>> info["points"], lo < 4.1 and hi > 9.9, lo > 3.0 and hi < 14.0
        (200, True, True)
    """
    depths = [confirmed_depths(K_ref, T_ref, m, max_reprojection, max_epipolar) for m in sources]
    z = torch.cat(depths) if depths else torch.zeros(0, dtype=torch.float64)
    info: dict[str, Any] = {
        "points": int(z.numel()),
        "matches": int(sum(int(m.pts_ref.shape[0]) for m in sources)),
        "per_source": [int(d.numel()) for d in depths],
        "percentiles": list(percentiles),
        "margin": margin,
        "min_margin": min_margin,
        "depth_percentiles": None,
    }
    if z.numel() < max(min_points, 1):
        return None, None, info
    w = 1.0 / z
    q = torch.tensor([percentiles[0] / 100.0, percentiles[1] / 100.0], dtype=w.dtype)
    w_lo, w_hi = torch.quantile(w, q).tolist()
    info["depth_percentiles"] = [1.0 / w_hi, 1.0 / w_lo]
    e = max(margin * (w_hi - w_lo), min_margin * w_hi)
    lo = 1.0 / (w_hi + e)
    hi = 1.0 / max(w_lo - e, w_lo / 10.0)
    return lo, hi, info


def combine_bounds(
    given_min: float | None, given_max: float | None, auto_min: float, auto_max: float
) -> tuple[float, float]:
    """The given bounds, the missing ones from the automatic range; a single given bound that leaves the automatic
    other one on its wrong side is paired with 100x (or 1/100x) itself (the rule of
    :func:`gdvision.depth.solver.depth_bounds`).

    Example:
        >>> combine_bounds(None, None, 2.0, 8.0), combine_bounds(10.0, None, 2.0, 8.0)
        ((2.0, 8.0), (10.0, 1000.0))
        >>> combine_bounds(None, 5.0, 2.0, 8.0), combine_bounds(None, 1.0, 2.0, 8.0)
        ((2.0, 5.0), (0.01, 1.0))
    """
    lo = given_min if given_min is not None else auto_min
    hi = given_max if given_max is not None else auto_max
    if given_min is not None and given_max is None and hi <= lo:
        hi = lo * 100.0
    if given_max is not None and given_min is None and lo >= hi:
        lo = hi / 100.0
    return lo, hi


__all__ = [
    "MARGIN",
    "MIN_MARGIN",
    "MIN_POINTS",
    "PERCENTILES",
    "SourceMatches",
    "combine_bounds",
    "confirmed_depths",
    "depth_range_from_matches",
]
