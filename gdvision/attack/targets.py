"""The attacked pipelines (``--target``): which detector/descriptor settings each named matcher uses.

- ``gdvision`` (the default): exactly ``gdvision match`` with its defaults (:class:`~gdvision.features.FeatureConfig`
  defaults: DoG, the native-resolution fine first octave, contrast threshold 0.04, edge threshold 10, top 4000;
  ratio test 0.8, RANSAC 3 px, seed 0): whatever ``match`` does by default is what ``attack`` fools by default.
- ``hessian``: the Kornia paper's configuration (top 2500 Hessian responses, no doubled first octave, no contrast
  threshold): ``gdvision match --detector hessian --max-features 2500 --no-upsample --contrast-threshold 0``.
- ``opencv-sift``: a differentiable replica of OpenCV's SIFT with its defaults (``cv2.SIFT_create()``: doubled
  first octave, contrast threshold 0.04, edge threshold 10, no feature cap, its orientation histogram and
  descriptor layout; :mod:`gdvision.features.opencv_layout`), ``FeatureConfig(layout="opencv", max_features=0)``.
  Real OpenCV SIFT stays the transfer check of every report.

A comma-separated list (``gdvision,opencv-sift``) is an ensemble: each member's loss is summed.

This module does not import torch.

Example:
    >>> parse_targets("gdvision, hessian")
    ('gdvision', 'hessian')
    >>> parse_targets("gdvision,opencv-sift")
    ('gdvision', 'opencv-sift')
    >>> target_features("hessian").detector, target_features("gdvision").max_features
    ('hessian', 4000)
"""

from __future__ import annotations

from gdvision.errors import UsageError
from gdvision.features.config import FeatureConfig

TARGETS = ("gdvision", "hessian", "opencv-sift")


def target_features(name: str) -> FeatureConfig:
    """The :class:`~gdvision.features.FeatureConfig` of target ``name`` (a new object each call).

    >>> target_features("gdvision") == FeatureConfig()
    True
    """
    if name == "hessian":
        return FeatureConfig(detector="hessian", max_features=2500, double_first=False, contrast_threshold=0.0)
    if name == "gdvision":
        return FeatureConfig()
    if name == "opencv-sift":
        return FeatureConfig(layout="opencv", max_features=0, double_first=True)
    raise UsageError(f"unknown target '{name}': use one of {', '.join(TARGETS)} (or a comma-separated list)")


def parse_targets(text: str) -> tuple[str, ...]:
    """``"gdvision,hessian"`` -> the member names, in order, without repeats; UsageError for an unknown or empty one.

    >>> parse_targets("hessian")
    ('hessian',)
    >>> parse_targets("gdvision,sift")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    gdvision.errors.UsageError: unknown target 'sift': use one of gdvision, hessian, opencv-sift (or ...)
    """
    if not isinstance(text, str):
        raise UsageError(f"target must be a string like 'gdvision' or 'gdvision,hessian', got {text!r}")
    names: list[str] = []
    for part in text.split(","):
        name = part.strip()
        if not name:
            raise UsageError(f"target '{text}' has an empty member: use names like 'gdvision,hessian'")
        target_features(name)  # raises for an unknown name
        if name not in names:
            names.append(name)
    return tuple(names)


__all__ = ["TARGETS", "parse_targets", "target_features"]
