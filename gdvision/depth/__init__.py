"""Dense depth from calibrated views: plane sweep, aggregation, gradient refinement, occlusion fill.

The public API, loaded on first use (so ``from gdvision.depth.config import DepthConfig`` stays torch-free):

- :class:`View`, :class:`DepthConfig`, :class:`DepthResult` (:mod:`~gdvision.depth.config`);
- :func:`estimate_depth` (:mod:`~gdvision.depth.solver`);
- camera math: :func:`auto_depth_range`, :func:`rectified_pair`, :func:`camera_center`, :func:`world_points`
  (:mod:`~gdvision.depth.cameras`);
- metrics: :func:`depth_metrics`, :func:`disparity_metrics`, :func:`depth_to_disparity`,
  :func:`disparity_to_depth` (:mod:`~gdvision.depth.metrics`).

Modules: ``config`` (settings), ``cameras`` (camera math), ``warp`` (projection and sampling), ``problem``
(cost and loss), ``aggregate`` (SGM), ``sweep`` (plane sweep), ``fill`` (visibility and fills), ``solver``
(the coarse-to-fine solve), ``metrics``.

Example:
    >>> from gdvision.depth import DepthConfig, estimate_depth
    >>> DepthConfig().init, callable(estimate_depth)
    ('sweep', True)
"""

from __future__ import annotations

from gdvision._lazy import lazy_exports

_WHERE = {
    "View": "config",
    "DepthConfig": "config",
    "DepthResult": "config",
    "estimate_depth": "solver",
    "auto_depth_range": "cameras",
    "rectified_pair": "cameras",
    "camera_center": "cameras",
    "world_points": "cameras",
    "depth_metrics": "metrics",
    "disparity_metrics": "metrics",
    "depth_to_disparity": "metrics",
    "disparity_to_depth": "metrics",
}

__all__ = sorted(_WHERE)


__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
