"""How an attack is judged: match counts near H, seeded RANSAC checks, the success rule, and the full report.

Every figure of :func:`evaluate_attack` is measured on the quantised 8-bit images (the pixels that are saved):
per-image L-inf / L2 / PSNR, and before/after records of gdvision's matcher (white-box: the attacked features,
ratio test 0.8, RANSAC ``ransac_threshold`` px, :func:`match_config_for`) and, when OpenCV is importable, of OpenCV
SIFT + ratio 0.8 + ``cv2.findHomography`` RANSAC (transfer).

The success rule (:func:`success`), on one such record:

- ``match`` (targeted): at least :data:`MIN_INLIERS` (30) RANSAC inliers and a mean corner error below
  :data:`MAX_ERROR_PX` (5 px) against the target H (a usable homography, not 4-8 folded "inliers");
- ``unmatch`` (untargeted): no RANSAC model, or a mean corner error above :data:`FAIL_ERROR_PX` (20 px) against
  the true H.

Example:
    >>> success({"inliers": 30, "corner_error_px": 4.9}, "match"), success({"corner_error_px": 20.0}, "unmatch")
    (True, False)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from gdvision.attack.budget import perturbation_stats
from gdvision.attack.config import AttackConfig
from gdvision.coords import apply_homography, mean_corner_error
from gdvision.errors import SolverError
from gdvision.features import Features, MatchConfig, detect_and_describe, match_descriptors, match_features

MIN_INLIERS = 30
MAX_ERROR_PX = 5.0
FAIL_ERROR_PX = 20.0


def match_config_for(config: AttackConfig, seed: int = 0) -> MatchConfig:
    """The white-box evaluation matcher of an attack's first target: its features, ratio test 0.8, RANSAC (seeded).
    For the ``gdvision`` target this is ``MatchConfig()`` itself: ``gdvision match`` with its defaults.

    >>> match_config_for(AttackConfig(), seed=3).seed
    3
    """
    return match_configs_for(config, seed)[0][1]


def match_counts(
    fa: Features, fb: Features, H: torch.Tensor, radii: tuple[float, ...], ratio: float = 0.8
) -> list[int]:
    """For each radius, the ratio-test matches A -> B whose B point lies within it (px) of ``H(p)``."""
    if len(fa) == 0 or len(fb) == 0:
        return [0] * len(radii)
    idx, _ = match_descriptors(fa.desc.detach(), fb.desc.detach(), "ratio", ratio)
    if idx.shape[0] == 0:
        return [0] * len(radii)
    pa = apply_homography(H.to(fa.xy.dtype), fa.xy.detach()[idx[:, 0]])
    d = (pa - fb.xy.detach()[idx[:, 1]]).norm(dim=1)
    return [int((d < r).sum()) for r in radii]


def consistent_matches(fa: Features, fb: Features, H: torch.Tensor, threshold: float, ratio: float = 0.8) -> int:
    """Ratio-test matches A -> B whose B point lies within ``threshold`` px of ``H(p)`` (a cheap inlier proxy)."""
    return match_counts(fa, fb, H, (threshold,), ratio)[0]


def ransac_failures(
    fa: Features,
    fb: Features,
    H: torch.Tensor,
    config: MatchConfig,
    image_size_a: tuple[int, int],
    seeds: tuple[int, ...] = (1, 2, 3),
    fail_error: float = FAIL_ERROR_PX,
) -> int:
    """How many RANSAC runs (one per seed) fail to recover ``H``: no model, or a mean corner error above
    ``fail_error`` px (the ``unmatch`` success test of :func:`success`). Seeds other than the evaluation's (0), so
    an attack scored by this does not hinge on one random draw. ``image_size_a`` = (W, H) of A."""
    fails = 0
    for sd in seeds:
        try:
            res = match_features(fa, fb, replace(config, seed=sd), image_size_a)
        except SolverError:
            fails += 1
            continue
        M = res.model.detach().cpu().to(torch.float64)
        ce = float(mean_corner_error(M, H.detach().cpu().to(torch.float64), image_size_a[1], image_size_a[0]))
        fails += int(not ce <= fail_error)
    return fails


def success(
    rec: dict[str, Any] | None,
    mode: str,
    min_inliers: int = MIN_INLIERS,
    max_error: float = MAX_ERROR_PX,
    fail_error: float = FAIL_ERROR_PX,
) -> bool | None:
    """Whether a match record counts as an attack success (the rule of the module docstring).

    ``match``: at least ``min_inliers`` RANSAC inliers and a corner error strictly below ``max_error`` px against
    the target. ``unmatch``: no RANSAC model (``corner_error_px`` None), or a corner error strictly above
    ``fail_error`` px against the true H. None when ``rec`` is None (the check did not run).

    >>> success({"inliers": 29, "corner_error_px": 1.0}, "match"), success({"corner_error_px": None}, "unmatch")
    (False, True)
    """
    if rec is None:
        return None
    ce = rec.get("corner_error_px")
    if mode == "match":
        return ce is not None and ce < max_error and rec.get("inliers", 0) >= min_inliers
    return ce is None or ce > fail_error


def evaluate_gdvision(
    a: torch.Tensor, b: torch.Tensor, H: torch.Tensor, config: MatchConfig
) -> tuple[dict[str, Any], Any]:
    """Match ``a`` to ``b`` as :func:`gdvision.features.match_images` does (no refinement): ``(record, result)``.

    ``result`` is the :class:`~gdvision.features.MatchResult`, or None when RANSAC found no model.

    The record holds ``matches``, ``inliers`` (0 when RANSAC finds nothing), ``corner_error_px`` of the RANSAC
    homography against ``H`` (None when there is none), ``consistent_inliers`` (RANSAC inliers within the threshold
    of ``H`` too) and ``error`` (the reason, when no model was found).
    """
    with torch.no_grad():
        if a.shape == b.shape:
            f = detect_and_describe(torch.cat([a, b]), config.features)
            fa, fb = f.image(0), f.image(1)
        else:
            fa, fb = detect_and_describe(a, config.features), detect_and_describe(b, config.features)
    n_matches = int(match_descriptors(fa.desc, fb.desc, config.matcher, config.ratio)[0].shape[0])
    try:
        res = match_features(fa, fb, config, (a.shape[-1], a.shape[-2]))
    except SolverError as exc:
        rec = {"matches": n_matches, "inliers": 0, "consistent_inliers": 0, "corner_error_px": None}
        rec["error"] = str(exc)
        return rec, None
    M = res.model.detach().cpu().to(torch.float64)
    Hc = H.detach().cpu().to(torch.float64)
    ce = float(mean_corner_error(M, Hc, a.shape[-2], a.shape[-1]))
    inl = res.inliers.cpu()
    pa, pb = res.pts_a.cpu()[inl], res.pts_b.cpu()[inl]
    cons = int(((apply_homography(Hc, pa) - pb).norm(dim=1) < config.ransac_threshold).sum()) if pa.numel() else 0
    rec = {
        "matches": int(res.idx.shape[0]),
        "inliers": int(inl.sum()),
        "consistent_inliers": cons,
        "corner_error_px": ce,
        "error": None,
    }
    return rec, res


def evaluate_opencv(a: torch.Tensor, b: torch.Tensor, H: torch.Tensor, threshold: float = 3.0) -> dict[str, Any] | None:
    """Transfer check with OpenCV SIFT + ratio test 0.8 + ``cv2.findHomography`` RANSAC; None without OpenCV.

    Images are converted to 8-bit gray (1, C, H, W) -> (H, W) uint8; the record is shaped like
    :func:`evaluate_gdvision`'s (plus ``keypoints_a``/``keypoints_b``).
    """
    try:
        import cv2  # optional: only for the transfer figures
    except ImportError:
        return None
    import numpy as np

    from gdvision.color import to_gray

    def u8(x: torch.Tensor) -> np.ndarray:
        g = to_gray(x.detach().cpu().float())[0, 0].numpy()
        return np.clip(np.rint(g * 255.0), 0, 255).astype(np.uint8)

    sift = cv2.SIFT_create()
    ka, da = sift.detectAndCompute(u8(a), None)
    kb, db = sift.detectAndCompute(u8(b), None)
    rec: dict[str, Any] = {"keypoints_a": len(ka), "keypoints_b": len(kb), "matches": 0, "inliers": 0}
    rec.update({"consistent_inliers": 0, "corner_error_px": None, "error": None})
    if da is None or db is None or len(kb) < 2:
        rec["error"] = "too few keypoints"
        return rec
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(da, db, k=2)
    good = [m[0] for m in pairs if len(m) == 2 and m[0].distance <= 0.8 * m[1].distance]
    rec["matches"] = len(good)
    if len(good) < 4:
        rec["error"] = f"only {len(good)} matches"
        return rec
    pa = np.float64([ka[m.queryIdx].pt for m in good])
    pb = np.float64([kb[m.trainIdx].pt for m in good])
    M, inl = cv2.findHomography(pa, pb, cv2.RANSAC, threshold)
    if M is None or inl is None:
        rec["error"] = "RANSAC found no homography"
        return rec
    inl = inl.ravel().astype(bool)
    Hc = H.detach().cpu().to(torch.float64)
    Mt = torch.from_numpy(M).to(torch.float64)
    rec["inliers"] = int(inl.sum())
    rec["corner_error_px"] = float(mean_corner_error(Mt, Hc, a.shape[-2], a.shape[-1]))
    mapped = apply_homography(Hc, torch.from_numpy(pa[inl]))
    rec["consistent_inliers"] = int(((mapped - torch.from_numpy(pb[inl])).norm(dim=1) < threshold).sum())
    return rec


def judge_members(
    xa: torch.Tensor, xb: torch.Tensor, H: torch.Tensor, config: AttackConfig, seed: int = 0
) -> tuple[bool, dict[str, dict[str, Any]]]:
    """Whether 8-bit pixels ``xa``, ``xb`` fool every attacked target (the success rule, RANSAC seeded ``seed``),
    and each target's record (:func:`evaluate_gdvision` plus ``success``). ``H``: (3, 3) A -> B."""
    recs = {}
    for name, mc in match_configs_for(config, seed):
        rec, _ = evaluate_gdvision(xa, xb, H, mc)
        rec["success"] = success(rec, config.mode)
        recs[name] = rec
    return all(r["success"] for r in recs.values()), recs


def match_configs_for(config: AttackConfig, seed: int = 0) -> list[tuple[str, MatchConfig]]:
    """The white-box matcher of each attacked target, ``(name, MatchConfig)`` (see :func:`match_config_for`).

    >>> [n for n, _ in match_configs_for(AttackConfig(target="gdvision,hessian"))]
    ['gdvision', 'hessian']
    """
    return [
        (name, MatchConfig(features=f, ransac_threshold=config.ransac_threshold, seed=seed))
        for name, f in config.members()
    ]


def _features_record(config: AttackConfig) -> dict[str, Any]:
    return {
        name: {
            "detector": f.detector,
            "max_features": f.max_features,
            "upsample": f.double_first,
            "contrast_threshold": f.contrast_threshold,
        }
        for name, f in config.members()
    }


def evaluate_attack(
    a0: torch.Tensor,
    b0: torch.Tensor,
    result: Any,
    H: torch.Tensor | None,
    config: AttackConfig,
    opencv: bool = True,
    seed: int = 0,
) -> tuple[dict[str, Any], list[Any]]:
    """The report of an attack, and the first target's match results before and after (for the match picture).

    Everything is measured on the quantised images ``result.adv_a`` / ``adv_b`` (an
    :class:`~gdvision.attack.solver.AttackResult`) against the originals ``a0``, ``b0`` (1, C, H, W): per-image
    L-inf / L2 / PSNR, and before/after records (each with its ``success`` flag, see :func:`success`) of every
    target of :data:`gdvision.attack.targets.TARGETS` (``targets``: the attacked ones white-box, the others as
    transfer) and, when ``opencv`` and OpenCV is importable, of OpenCV SIFT + ratio 0.8 + RANSAC (transfer).
    ``gdvision_before`` / ``gdvision_after`` are the first attacked target's records; ``success``: every attacked
    target succeeded. ``H``: the target (``match``, None = identity) or true homography.

    Returns ``(report, [before, after])``: the :class:`~gdvision.features.MatchResult` of the first target's
    matcher on the clean and on the perturbed pair (None where RANSAC found no model); see
    :func:`gdvision.viz.before_after_matches` for the picture.
    """
    from gdvision.attack.targets import TARGETS, target_features

    cfg = config.resolved()
    Ht = torch.eye(3, dtype=torch.float64) if H is None else torch.as_tensor(H, dtype=torch.float64)
    attacked = match_configs_for(cfg, seed)
    names = [n for n, _ in attacked]
    others = [
        (n, MatchConfig(features=target_features(n), ransac_threshold=cfg.ransac_threshold, seed=seed))
        for n in TARGETS
        if n not in names
    ]
    report: dict[str, Any] = {
        "mode": cfg.mode,
        "target": names,
        "eps": cfg.eps,
        "eps_255": cfg.eps * 255.0,
        "steps": result.iterations,
        "lr": cfg.lr,
        "perturb": cfg.perturb,
        "alpha": cfg.alpha,
        "beta": cfg.beta,
        "init": cfg.init,
        "homography": Ht.tolist(),
        "homography_role": "target A -> B" if cfg.mode == "match" else "true A -> B",
        "features": _features_record(cfg),
        "seconds": result.seconds,
        "loss_first": result.losses[0] if result.losses else None,
        "loss_last": result.losses[-1] if result.losses else None,
        "perturbation": {
            "a": perturbation_stats(result.adv_a, a0),
            "b": perturbation_stats(result.adv_b, b0),
        },
        "evaluated_on": "8-bit quantised images (the saved PNGs)",
        "targets": {},
    }
    matches = []
    for name, mc in attacked + others:
        entry: dict[str, Any] = {"attacked": name in names}
        for when, (xa, xb) in (("before", (a0, b0)), ("after", (result.adv_a, result.adv_b))):
            rec, res = evaluate_gdvision(xa, xb, Ht, mc)
            rec["success"] = success(rec, cfg.mode)
            entry[when] = rec
            if name == names[0]:
                report[f"gdvision_{when}"] = rec
                matches.append(res)
        report["targets"][name] = entry
    report["success"] = all(report["targets"][n]["after"]["success"] for n in names)
    if opencv:
        for when, (xa, xb) in (("before", (a0, b0)), ("after", (result.adv_a, result.adv_b))):
            cv = evaluate_opencv(xa, xb, Ht, cfg.ransac_threshold)
            if cv is not None:
                cv["success"] = success(cv, cfg.mode)
                report[f"opencv_{when}"] = cv
    if opencv and "opencv_before" not in report:
        report["opencv"] = "not installed: transfer figures skipped"
    return report, matches


__all__ = [
    "FAIL_ERROR_PX",
    "MAX_ERROR_PX",
    "MIN_INLIERS",
    "consistent_matches",
    "evaluate_attack",
    "evaluate_gdvision",
    "evaluate_opencv",
    "judge_members",
    "match_config_for",
    "match_configs_for",
    "match_counts",
    "ransac_failures",
    "success",
]
