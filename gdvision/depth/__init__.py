"""Dense depth from calibrated views: plane sweep, aggregation, gradient refinement, occlusion fill.

The public API, loaded on first use (so ``from gdvision.depth.config import DepthConfig`` stays torch-free):

- :class:`View`, :class:`DepthConfig`, :class:`DepthResult` (:mod:`~gdvision.depth.config`);
- :func:`estimate_depth` (:mod:`~gdvision.depth.solver`);
- camera math: :func:`auto_depth_range`, :func:`rectified_pair`, :func:`camera_center`, :func:`world_points`
  (:mod:`~gdvision.depth.cameras`);
- the range from sparse matches: :class:`SourceMatches`, :func:`depth_range_from_matches`
  (:mod:`~gdvision.depth.auto_range`);
- metrics: :func:`depth_metrics`, :func:`disparity_metrics`, :func:`depth_to_disparity`,
  :func:`disparity_to_depth` (:mod:`~gdvision.depth.metrics`).

Modules: ``config`` (settings), ``cameras`` (camera math), ``warp`` (projection and sampling), ``problem``
(cost and loss), ``aggregate`` (SGM), ``sweep`` (plane sweep), ``fill`` (visibility and fills), ``solver``
(the coarse-to-fine solve), ``auto_range`` (the depth range from matches), ``metrics``.

Example:
    >>> from gdvision.depth import DepthConfig, estimate_depth
    >>> DepthConfig().init, callable(estimate_depth)
    ('sweep', True)
"""

from __future__ import annotations

from gdvision._lazy import lazy_exports

__getattr__, __dir__, _WHERE = lazy_exports(
    __name__,
    {
        "config": ("View", "DepthConfig", "DepthResult"),
        "solver": ("estimate_depth",),
        "cameras": ("auto_depth_range", "rectified_pair", "camera_center", "world_points"),
        "metrics": ("depth_metrics", "disparity_metrics", "depth_to_disparity", "disparity_to_depth"),
        "auto_range": ("SourceMatches", "depth_range_from_matches"),
    },
)

__all__ = sorted(_WHERE)
