"""``gdvision match`` as a task: features, matching and RANSAC per pair, one JSON record per pair.

Single-item mode (:func:`run_match`) and manifest mode (:class:`MatchJob`) both match a loaded pair with
:func:`match_loaded`, which also builds the pair's JSON record (:func:`match_record`), so ``--out`` and a manifest's
``<id>.json`` hold the same fields. Outputs of one pair: ``--out`` (the record), ``--out-matches``
(:func:`matches_record`) and ``--out-viz`` (:func:`gdvision.viz.draw_matches`), all claimed through one
:class:`~gdvision.tasks.outputs.OutputPolicy` before anything is read or solved.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gdvision.device import resolve_device, seed_everything
from gdvision.errors import GdvisionError
from gdvision.features.config import MatchConfig
from gdvision.features.match import MatchResult, match_images
from gdvision.io.images import LoadedImage, read_homography, read_image, write_json, write_png
from gdvision.tasks.outputs import OutputPolicy
from gdvision.tasks.pairs import PairJob
from gdvision.tasks.protocol import Item, Outcome

_CONVENTION = {
    "homography": "pixel coordinates, (0,0) = centre of the top-left pixel; [xB, yB, 1]^T ~ H [xA, yA, 1]^T",
    "fundamental": "pixel coordinates, (0,0) = centre of the top-left pixel; [xB, yB, 1] F [xA, yA, 1]^T = 0",
}


def match_record(
    res: MatchResult,
    cfg: MatchConfig,
    size_a: tuple[int, int],
    size_b: tuple[int, int],
    device: torch.device | str,
    H_gt: torch.Tensor | None = None,
    paths: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The JSON record of a match (what ``--out``, ``--json`` and a manifest's ``<id>.json`` hold); sizes are (W, H).

    For a homography, ``H`` follows ``register``'s convention (pixels, A -> B); for a fundamental matrix the key is
    ``F`` (``xB^T F xA = 0``). With ``H_gt`` (A -> B, pixels) the mean corner error (px) is added.

    Example:
        >>> import torch
        >>> from gdvision.warp import warp_perspective
        >>> a = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 120, 120), 5, 1, 2)
        >>> b, _ = warp_perspective(a, torch.eye(3), (120, 120))
        >>> cfg = MatchConfig()
        >>> rec = match_record(match_images(a, b, cfg), cfg, (120, 120), (120, 120), "cpu", torch.eye(3))
        >>> rec["model"], rec["corner_error_px"] < 0.1, rec["inliers"] <= rec["matches"]
        ('homography', True, True)
    """
    M = res.model.detach().cpu().to(torch.float64)
    rec: dict[str, Any] = {"H" if res.model_type == "homography" else "F": M.tolist()}
    rec["convention"] = _CONVENTION[res.model_type]
    if paths is not None:
        rec["a"], rec["b"] = paths
    rec.update(
        {
            "size_a": list(size_a),
            "size_b": list(size_b),
            "model": res.model_type,
            "detector": cfg.features.detector,
            "matcher": cfg.matcher,
            "keypoints_a": len(res.features_a),
            "keypoints_b": len(res.features_b),
            "matches": int(res.idx.shape[0]),
            "inliers": int(res.inliers.sum()),
            "ransac_iterations": res.iterations,
            "refined": res.refined,
            "seconds": res.seconds,
            "device": str(device),
        }
    )
    if H_gt is not None and res.model_type == "homography":
        from gdvision.coords import mean_corner_error

        rec["corner_error_px"] = float(mean_corner_error(M, H_gt.to(torch.float64), size_a[1], size_a[0]))
    return rec


def matches_record(res: MatchResult) -> dict[str, Any]:
    """JSON-able list of the matches: coordinates in A and B (pixels), matcher score, inlier flag, residual (px)."""
    pa = res.pts_a.detach().cpu().tolist()
    pb = res.pts_b.detach().cpu().tolist()
    sc = res.scores.detach().cpu().tolist()
    inl = res.inliers.detach().cpu().tolist()
    err = res.errors.detach().cpu().tolist()
    return {
        "count": len(pa),
        "inliers": int(sum(inl)),
        "fields": "xa, ya, xb, yb: pixel coordinates; score: matcher score (lower is better); inlier; error: px",
        "matches": [
            {
                "xa": a[0],
                "ya": a[1],
                "xb": b[0],
                "yb": b[1],
                "score": s,
                "inlier": bool(i),
                "error": e if e == e and e != float("inf") else None,
            }
            for a, b, s, i, e in zip(pa, pb, sc, inl, err, strict=True)
        ],
    }


def match_loaded(
    img_a: LoadedImage, img_b: LoadedImage, gt: np.ndarray | None, cfg: MatchConfig, device: torch.device | str
) -> tuple[MatchResult, dict[str, Any], tuple[torch.Tensor, torch.Tensor]]:
    """Match a loaded pair: ``(result, record, (tensor_a, tensor_b))``; ``gt``: the true H or None.

    SolverError when no model fits. The one step single-item and manifest mode share.
    """
    ta, tb = img_a.tensor(device), img_b.tensor(device)
    res = match_images(ta, tb, cfg)
    rec = match_record(
        res,
        cfg,
        (img_a.width, img_a.height),
        (img_b.width, img_b.height),
        device,
        None if gt is None else torch.from_numpy(gt),
        (str(img_a.path), str(img_b.path)),
    )
    return res, rec, (ta, tb)


def run_match(
    a: Path,
    b: Path,
    cfg: MatchConfig,
    device: torch.device | str = "cpu",
    out: Path | None = None,
    out_matches: Path | None = None,
    out_viz: Path | None = None,
    gt: Path | None = None,
    overwrite: bool = False,
    seed: int | None = None,
    viz_max: int = 200,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """``gdvision match A B``: match one pair, write the outputs that are given, return the JSON record.

    Every output is claimed before the images are read (inputs ``a``, ``b``, ``gt`` are never replaced; existing
    outputs only with ``overwrite``). ``gt``: JSON with the true H (adds ``corner_error_px``). ``device``: a
    device or its name (``auto``, ``cpu``, ``cuda:1``...); ``seed``: seeds every RNG (None: left as they are).
    ``viz_max``: the most match lines ``out_viz`` draws, inliers first (:func:`gdvision.viz.pick_matches`).
    ``progress(stage)``: called as each stage starts (``"reading images"``, ``"features, matching, RANSAC"``,
    ``"writing outputs"``).
    """
    report = progress or (lambda stage: None)
    policy = OutputPolicy(None, inputs=[a, b, gt], overwrite=overwrite)
    paths = policy.claim_all({"--out": out, "--out-matches": out_matches, "--out-viz": out_viz})
    device = resolve_device(str(device))
    seed_everything(seed)
    report("reading images")
    img_a, img_b = read_image(a), read_image(b)
    report("features, matching, RANSAC")
    res, rec, (ta, tb) = match_loaded(img_a, img_b, read_homography(gt) if gt is not None else None, cfg, device)
    if paths:
        report("writing outputs")
    if "--out" in paths:
        write_json(paths["--out"], rec)
    if "--out-matches" in paths:
        write_json(paths["--out-matches"], matches_record(res))
    if "--out-viz" in paths:
        from gdvision.viz import draw_matches

        write_png(paths["--out-viz"], draw_matches(ta, tb, res, max_lines=viz_max))
    return rec


class MatchJob(PairJob):
    """``gdvision match --manifest``: features, matching and RANSAC, pair by pair (columns ``a``, ``b``, ``gt``)."""

    name = "match"
    metric_keys = ("corner_error_px", "inliers", "matches", "keypoints_a", "keypoints_b")

    def solve(self, group: list[tuple[Item, Any]]) -> list[Outcome]:
        outcomes = []
        for item, (img_a, img_b, gt) in group:
            try:
                outcomes.append(Outcome(item, match_loaded(img_a, img_b, gt, self.cfg, self.device)[1]))
            except GdvisionError as exc:
                outcomes.append(Outcome(item, error=str(exc)))
        return self.finish(outcomes)


__all__ = ["MatchJob", "match_loaded", "match_record", "matches_record", "run_match"]
