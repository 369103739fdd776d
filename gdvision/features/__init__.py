"""SIFT-like features on tensors: scale space, detectors, orientations, descriptors, matching, RANSAC.

The public API. Tensors in, tensors out: no file is read or written here (``gdvision.tasks.features`` and
``gdvision.tasks.match`` do that; ``gdvision.viz.draw_matches`` draws a match picture).

- :class:`FeatureConfig`, :class:`MatchConfig`: settings with their validation (no torch import).
- :func:`detect_and_describe`: (B, C, H, W) images -> :class:`Features` (keypoints + 128-d SIFT descriptors).
- :func:`match_images`: two images -> :class:`MatchResult` (homography or fundamental matrix, matches, inliers).
- :func:`match_features`, :func:`match_descriptors`: the matching steps on their own.

The solver names are loaded on first use, so ``from gdvision.features import MatchConfig`` does not import torch.

Example:
    >>> from gdvision.features import MatchConfig
    >>> MatchConfig(matcher="mnn").matcher
    'mnn'
"""

from __future__ import annotations

from gdvision._lazy import lazy_exports
from gdvision.features import config as _config
from gdvision.features.config import *  # noqa: F403 (the settings: every name in config.__all__)

__getattr__, __dir__, _LAZY = lazy_exports(
    __name__,
    {
        "match": ("Features", "MatchResult", "detect_and_describe", "keypoints_of", "match_features", "match_images"),
        "matching": ("match_descriptors",),
        "detectors": ("Keypoints",),
    },
)

__all__ = [*_config.__all__, *_LAZY]
