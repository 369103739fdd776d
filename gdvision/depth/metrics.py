"""Depth and disparity error metrics (numpy; arrays (H, W), NaN = unknown).

Depth metrics (as in Eigen et al. 2014 and the KITTI/Monodepth literature), over pixels where both the
ground truth and the estimate are known and > 0: ``abs_rel = mean |d - g| / g``,
``sq_rel = mean (d - g)^2 / g``, ``rmse = sqrt(mean (d - g)^2)``, ``delta_k`` = fraction with
``max(d / g, g / d) < 1.25^k`` (k = 1, 2, 3); ``coverage`` = fraction of known-GT pixels with an estimate.

Disparity metrics (Middlebury style), over **all** pixels with known ground truth: ``bad_t`` = fraction
with ``|d - g| > t`` pixels, where a pixel **without an estimate counts as bad**; ``epe`` = mean absolute
error over pixels with both; ``holes`` = fraction of known-GT pixels without an estimate.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _known(x: np.ndarray) -> np.ndarray:
    return np.isfinite(x) & (x > 0)


def depth_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """AbsRel, SqRel, RMSE, delta < 1.25^k and coverage of a depth map ``pred`` against ``gt`` (same units).

    Example:
        >>> g = np.full((4, 4), 2.0); d = g * 1.1
        >>> round(depth_metrics(d, g)["abs_rel"], 3), depth_metrics(d, g)["delta_1"]
        (0.1, 1.0)
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    kg = _known(gt)
    both = kg & _known(pred)
    out: dict[str, float] = {"coverage": float(both.sum() / max(kg.sum(), 1)), "pixels": float(both.sum())}
    if not both.any():
        out.update({k: float("nan") for k in ("abs_rel", "sq_rel", "rmse", "delta_1", "delta_2", "delta_3")})
        return out
    d, g = pred[both], gt[both]
    diff = d - g
    ratio = np.maximum(d / g, g / d)
    out["abs_rel"] = float(np.mean(np.abs(diff) / g))
    out["sq_rel"] = float(np.mean(diff * diff / g))
    out["rmse"] = float(np.sqrt(np.mean(diff * diff)))
    for k in (1, 2, 3):
        out[f"delta_{k}"] = float(np.mean(ratio < 1.25**k))
    return out


def disparity_metrics(
    pred: np.ndarray, gt: np.ndarray, thresholds: Sequence[float] = (1.0, 2.0, 4.0)
) -> dict[str, float]:
    """Middlebury bad-t (fractions; no estimate = bad), end-point error and holes of a disparity map.

    Example:
        >>> g = np.full((2, 2), 10.0); d = np.array([[10.5, 13.0], [np.nan, 10.0]])
        >>> disparity_metrics(d, g)["bad_2.0"]    # 13.0 is off by 3, NaN counts as bad
        0.5
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    kg = np.isfinite(gt)
    n = max(int(kg.sum()), 1)
    has = kg & np.isfinite(pred)
    err = np.full(gt.shape, np.inf)
    err[has] = np.abs(pred[has] - gt[has])
    out = {f"bad_{t:.1f}": float((err[kg] > t).sum() / n) for t in thresholds}
    out["epe"] = float(err[has].mean()) if has.any() else float("nan")
    out["holes"] = float((kg & ~has).sum() / n)
    return out


def depth_to_disparity(depth: np.ndarray, focal: float, baseline: float, doffs: float = 0.0) -> np.ndarray:
    """Disparity (px) of a rectified pair: ``f * B / Z - doffs`` (NaN stays NaN; ``doffs = cx1 - cx0``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return focal * baseline / np.asarray(depth, dtype=np.float64) - doffs


def disparity_to_depth(disp: np.ndarray, focal: float, baseline: float, doffs: float = 0.0) -> np.ndarray:
    """Depth ``f * B / (d + doffs)`` of a rectified pair's disparity (NaN where ``d + doffs <= 0``)."""
    d = np.asarray(disp, dtype=np.float64) + doffs
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d > 0, focal * baseline / d, np.nan)
