"""The attacked pipelines (``--target``): which detector/descriptor settings each named matcher uses.

- ``gdvision`` (the default): exactly ``gdvision match`` with its defaults (:class:`~gdvision.features.FeatureConfig`
  defaults: DoG, the native-resolution fine first octave, contrast threshold 0.04, edge threshold 10, top 4000;
  ratio test 0.8, RANSAC 3 px, seed 0): whatever ``match`` does by default is what ``attack`` fools by default.
- ``hessian``: the Kornia paper's configuration (top 2500 Hessian responses, no doubled first octave, no contrast
  threshold): ``gdvision match --detector hessian --max-features 2500 --no-upsample --contrast-threshold 0``.

A comma-separated list (``gdvision,hessian``) is an ensemble: each member's loss is summed. OpenCV SIFT is not a
white-box target (no differentiable replica yet); it is the transfer check of every report.

This module does not import torch.

Example:
    >>> parse_targets("gdvision, hessian")
    ('gdvision', 'hessian')
    >>> target_features("hessian").detector, target_features("gdvision").max_features
    ('hessian', 4000)
"""

from __future__ import annotations

from gdvision.errors import UsageError
from gdvision.features.config import FeatureConfig

TARGETS = ("gdvision", "hessian")


def target_features(name: str) -> FeatureConfig:
    """The :class:`~gdvision.features.FeatureConfig` of target ``name`` (a new object each call).

    >>> target_features("gdvision") == FeatureConfig()
    True
    """
    if name == "hessian":
        return FeatureConfig(detector="hessian", max_features=2500, double_first=False, contrast_threshold=0.0)
    if name == "gdvision":
        return FeatureConfig()
    raise UsageError(f"unknown target '{name}': use one of {', '.join(TARGETS)} (or a comma-separated list)")


def parse_targets(text: str) -> tuple[str, ...]:
    """``"gdvision,hessian"`` -> the member names, in order, without repeats; UsageError for an unknown or empty one.

    >>> parse_targets("hessian")
    ('hessian',)
    >>> parse_targets("gdvision,sift")
    Traceback (most recent call last):
    ...
    gdvision.errors.UsageError: unknown target 'sift': use one of gdvision, hessian (or a comma-separated list)
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
