"""The depth range of a ``gdvision depth`` item: the given bounds, the missing ones found from the views.

:func:`resolve_depth_range` matches each source view to the reference with the project's features (SIFT-like
keypoints, :func:`gdvision.features.detect_and_describe`; Lowe's ratio test,
:func:`gdvision.features.match_descriptors`) on grey images of at most :data:`MAX_PIXELS` pixels, and turns the
matches the known cameras confirm into a range (:func:`gdvision.depth.depth_range_from_matches`). With fewer than
:data:`~gdvision.depth.auto_range.MIN_POINTS` confirmed points it falls back to the camera-baseline rule
(:func:`gdvision.depth.auto_depth_range`) and says so in a one-line warning naming ``--min-depth/--max-depth``.
The warning is in the record; the command line prints it (``gdvision.cli.depth``).

The record (``summary.json``'s ``depth_range``): ``min``, ``max``, ``source`` (``given``: both bounds given;
``matches`` or ``baselines``: both found by that rule; ``mixed``: one given, the other found), ``points`` (the
confirmed matches), ``seconds``, and ``estimate`` (what the automatic rule found, when one ran) and ``warning``
(after a fallback).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch

from gdvision.color import to_gray
from gdvision.depth import DepthConfig, View, auto_depth_range
from gdvision.depth.auto_range import MIN_POINTS, SourceMatches, combine_bounds, depth_range_from_matches
from gdvision.depth.cameras import check_views
from gdvision.errors import GdvisionError, UsageError

MAX_PIXELS = 250_000  # feature matching runs on grey images of at most this many pixels
MAX_FEATURES = 1500  # keypoints per image
# two scales per octave and one orientation per keypoint: ~3x faster than the match command's defaults, and
# a range needs tens of points, not thousands
FEATURES = {"max_features": MAX_FEATURES, "double_first": False, "scales_per_octave": 2, "max_orientations": 1}
RATIO = 0.8  # Lowe's ratio test


def _gray_small(v: View) -> tuple[torch.Tensor, float]:
    """(1, 1, h, w) grey image of at most MAX_PIXELS pixels and its scale to the view's pixels (<= 1)."""
    g = to_gray(v.image.float())
    h, w = g.shape[-2:]
    s = min(1.0, (MAX_PIXELS / (h * w)) ** 0.5)
    if s < 1.0:
        size = (max(16, round(h * s)), max(16, round(w * s)))
        g = torch.nn.functional.interpolate(g, size=size, mode="area")
    return g.clamp(0, 1), s


def _to_view_pixels(p: torch.Tensor, v: View, small: torch.Tensor) -> torch.Tensor:
    """Pixels of the small image -> the view's pixels (pixel centres at integers, each axis its own scale)."""
    sx = v.image.shape[-1] / small.shape[-1]
    sy = v.image.shape[-2] / small.shape[-2]
    return torch.stack([(p[:, 0] + 0.5) * sx - 0.5, (p[:, 1] + 0.5) * sy - 0.5], 1).to(torch.float64)


def _in_mask(v: View, p: torch.Tensor) -> torch.Tensor:
    """(N,) bool: pixels ``p`` of view ``v`` inside its mask (all True without a mask)."""
    if v.mask is None:
        return torch.ones(p.shape[0], dtype=torch.bool)
    h, w = v.mask.shape[-2:]
    x = p[:, 0].round().long().clamp(0, w - 1)
    y = p[:, 1].round().long().clamp(0, h - 1)
    return v.mask[0, 0].cpu()[y, x] > 0.5


def match_sources(ref: View, sources: list[View]) -> list[SourceMatches]:
    """Feature matches of every source view with the reference, in each view's own pixels."""
    from gdvision.features import FeatureConfig, detect_and_describe, match_descriptors

    fcfg = FeatureConfig(**FEATURES)
    small = [_gray_small(v)[0] for v in [ref, *sources]]
    with torch.no_grad():
        if len({tuple(s.shape) for s in small}) == 1:
            f = detect_and_describe(torch.cat(small), fcfg)
            feats = [f.image(i) for i in range(len(small))]
        else:
            feats = [detect_and_describe(s, fcfg) for s in small]
    out = []
    for v, s, fs in zip(sources, small[1:], feats[1:], strict=True):
        idx, _ = match_descriptors(feats[0].desc, fs.desc, "ratio", RATIO)
        pr = _to_view_pixels(feats[0].xy[idx[:, 0]].cpu(), ref, small[0])
        ps = _to_view_pixels(fs.xy[idx[:, 1]].cpu(), v, s)
        keep = _in_mask(ref, pr) & _in_mask(v, ps)
        out.append(SourceMatches(v.K, v.world_to_cam, pr[keep], ps[keep]))
    return out


def resolve_depth_range(ref: View, sources: list[View], cfg: DepthConfig) -> tuple[DepthConfig, dict[str, Any]]:
    """``cfg`` with both depth bounds set, and the record of how they were found (see the module docstring)."""
    t0 = time.perf_counter()
    given = (cfg.min_depth, cfg.max_depth)
    if None not in given:
        return cfg, {"min": cfg.min_depth, "max": cfg.max_depth, "source": "given", "points": 0, "seconds": 0.0}
    check_views(ref, sources)  # the solver's errors (no source, zero baseline...) before any matching
    try:
        lo, hi, est = depth_range_from_matches(ref.K, ref.world_to_cam, match_sources(ref, sources))
    except GdvisionError as exc:  # e.g. a view too small for the feature detector: the baseline rule then
        lo, hi, est = None, None, {"points": 0, "error": str(exc)}
    method = "matches"
    warning = None
    if lo is None or hi is None:
        method = "baselines"
        lo, hi = auto_depth_range(ref, sources)
        warning = (
            f"only {est['points']} feature matches confirmed by the cameras (need {MIN_POINTS}): the depth range "
            f"{lo:.4g}..{hi:.4g} comes from the camera baselines and may be loose; give --min-depth/--max-depth"
        )
    lo, hi = combine_bounds(*given, lo, hi)
    if not (0 < lo < hi < float("inf")):
        raise UsageError(f"invalid depth range [{lo}, {hi}]: give min_depth and max_depth")
    info: dict[str, Any] = {
        "min": lo,
        "max": hi,
        "source": method if given == (None, None) else "mixed",
        "points": est["points"],
        "seconds": time.perf_counter() - t0,
        "estimate": {"method": method, **est},
    }
    if warning is not None:
        info["warning"] = warning
    return dataclasses.replace(cfg, min_depth=lo, max_depth=hi), info


__all__ = ["MAX_PIXELS", "match_sources", "resolve_depth_range"]
