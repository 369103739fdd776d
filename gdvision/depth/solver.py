"""Dense depth of a reference view from N >= 1 calibrated source views by coarse-to-fine gradient descent.

The model and its loss are in :mod:`gdvision.depth.problem`. Solving: a Gaussian pyramid (finest first) of
every image, whose coarsest level is the finest one with at most ``sweep_max_pixels`` pixels (fine structures
only show at fine levels); there a **plane sweep** (``init="sweep"``, :mod:`gdvision.depth.sweep`) or
``init="random"`` (uniform noise in ``theta``, as in Kornia's depth example) gives the start; then Adam
(:func:`gdvision.optim.coarse_to_fine`) refines ``theta`` level by level, upsampling bilinearly between
levels. Finally pixels that every source misses at their depth (out of frame, or occluded according to a
z-buffer of the map itself), and badly matched pixels of the border band that some depth of the range puts
out of frame, take the farther of their nearest reliable row neighbours (``final_fill``,
:mod:`gdvision.depth.fill`).

Output: depth (H, W) float32 in the cameras' length unit, NaN where unknown (masked reference pixels,
pixels that no source view can see at any depth in the range); a confidence in [0, 1] from the final
photometric cost, ``exp(-cost / confidence_scale)``, 0 where no view sees the pixel at the found depth.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from gdvision.depth.cameras import auto_depth_range, check_views
from gdvision.depth.config import DepthConfig, DepthResult, View
from gdvision.depth.fill import fill_rows_background, fully_visible_mask, occluded_mask, visible_mask
from gdvision.depth.problem import DepthProblem, build_levels
from gdvision.depth.sweep import plane_sweep
from gdvision.errors import UsageError
from gdvision.optim import Progress, StepConfig, coarse_to_fine
from gdvision.pyramid import num_levels


@dataclass
class StageProgress:
    """What the progress callback of :func:`estimate_depth` receives before the refinement starts.

    ``stage``: ``"plane sweep"`` (``done`` of ``total`` planes costed), then ``"aggregation"`` and ``"winners and
    fill"`` (``total`` None).
    """

    stage: str
    done: int
    total: int | None


def depth_bounds(cfg: DepthConfig, ref: View, sources: Sequence[View]) -> tuple[float, float]:
    """``(min_depth, max_depth)``: the config's bounds, the missing ones from :func:`auto_depth_range`.

    A single given bound that leaves the automatic other one on its wrong side is paired with 100x (or 1/100x)
    itself.
    """
    lo, hi = auto_depth_range(ref, sources)
    min_d = cfg.min_depth if cfg.min_depth is not None else lo
    max_d = cfg.max_depth if cfg.max_depth is not None else hi
    if cfg.min_depth is not None and cfg.max_depth is None and max_d <= min_d:
        max_d = min_d * 100.0
    if cfg.max_depth is not None and cfg.min_depth is None and min_d >= max_d:
        min_d = max_d / 100.0
    if not (0 < min_d < max_d and math.isfinite(max_d)):
        raise UsageError(f"invalid depth range [{min_d}, {max_d}]: give min_depth and max_depth")
    return min_d, max_d


def pyramid_levels(cfg: DepthConfig, h: int, w: int) -> int:
    """Number of pyramid levels for an ``h`` x ``w`` reference (see ``levels``, ``min_size``, ``sweep_max_pixels``)."""
    if cfg.levels is not None:
        return cfg.levels
    n_levels = num_levels(h, w, cfg.min_size)
    if cfg.init == "sweep" and cfg.sweep_max_pixels is not None:
        while n_levels > 1 and math.ceil(h / 2 ** (n_levels - 2)) * math.ceil(w / 2 ** (n_levels - 2)) <= (
            cfg.sweep_max_pixels
        ):
            n_levels -= 1
    return n_levels


def level_iterations(cfg: DepthConfig, n_levels: int) -> list[int]:
    """Adam iterations of every level, finest first (``iters``, ``finest_iters``; the last entry repeats)."""
    if isinstance(cfg.iters, int):
        iters = [cfg.iters] * n_levels
        if cfg.finest_iters is not None:
            iters[0] = cfg.finest_iters
    else:
        iters = list(cfg.iters)
    if len(iters) < n_levels:
        iters = iters + [iters[-1]] * (n_levels - len(iters))
    return iters


def _start(
    problem: DepthProblem, cfg: DepthConfig, device: torch.device, progress: Callable[[StageProgress], None] | None
) -> torch.Tensor:
    """``theta`` (1, 1, h, w) at the coarsest level: the plane sweep's, random, or mid-range."""
    top = problem.num_levels - 1
    th, tw = problem.lv[top].ref.shape[-2:]
    if cfg.init == "sweep":
        planes = cfg.sweep_planes
        if planes is None:
            planes = int(min(max(math.ceil(2.0 * problem.parallax(top)) + 1, 16), 256))
        report = None if progress is None else lambda stage, done, total: progress(StageProgress(stage, done, total))
        wmap = plane_sweep(problem, top, planes, cfg.sweep_fill, cfg.sgm_p1, cfg.sgm_p2, report)
        return problem.theta_of(wmap)
    if cfg.init == "random":
        return torch.randn(1, 1, th, tw, device=device) * 1.0
    return torch.zeros(1, 1, th, tw, device=device)


def _finish(problem: DepthProblem, cfg: DepthConfig, theta: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(depth, inv_depth, confidence, cost), each (1, 1, H, W), after the final fill."""
    with torch.no_grad():
        wfin = problem.inv_depth(theta)
        cost, seen_now = problem.cost(0, wfin)
        if cfg.final_fill is not None:
            good = ~occluded_mask(problem, 0, wfin) & (seen_now > 0)
            if bool(good.any()):
                thr = max(cfg.final_fill * float(cost[good].median()), cfg.final_fill_floor)
                good &= (cost <= thr) | fully_visible_mask(problem, 0)
            wfin = fill_rows_background(wfin, good)
            cost, seen_now = problem.cost(0, wfin)
        known = visible_mask(problem, 0)
        depth = torch.where(known, 1.0 / wfin, torch.full_like(wfin, float("nan")))
        conf = torch.where(seen_now > 0, torch.exp(-cost / cfg.confidence_scale), torch.zeros_like(cost))
        cost = torch.where(seen_now > 0, cost, torch.full_like(cost, float("nan")))
        inv = torch.where(known, wfin, torch.zeros_like(wfin))
    return depth, inv, conf, cost


def estimate_depth(
    ref: View,
    sources: Sequence[View],
    config: DepthConfig | None = None,
    progress: Callable[[Progress | StageProgress], None] | None = None,
    device: str | torch.device = "cpu",
) -> DepthResult:
    """Dense depth of ``ref`` from calibrated ``sources`` (see the module docstring for the model).

    Args:
        ref: the reference view; its pixels get a depth.
        sources: N >= 1 source views (any sizes; same channel count as the reference).
        config: :class:`DepthConfig` (defaults if None).
        progress: called during the plane sweep with a :class:`StageProgress`, then after every Adam iteration
            with a :class:`~gdvision.optim.Progress`.
        device: where to compute.

    Returns:
        :class:`DepthResult` (CPU tensors): depth (H, W) NaN where unknown, confidence, cost.

    Raises:
        UsageError: bad settings or no source view. InputError: non-finite cameras or images, zero baseline.
        SolverError: the optimisation diverged.

    Example:
        >>> import torch
        >>> K = torch.tensor([[60.0, 0, 31.5], [0, 60, 23.5], [0, 0, 1]]); T = torch.eye(4); T[0, 3] = -0.1
        >>> img = torch.rand(1, 1, 48, 64)
        >>> res = estimate_depth(View(img, K, torch.eye(4)), [View(img.roll(-3, -1), K, T)],
        ...                      DepthConfig(min_depth=1.0, max_depth=10.0, iters=5))
        >>> res.depth.shape
        torch.Size([48, 64])
    """
    cfg = config or DepthConfig()
    cfg.validate()
    check_views(ref, sources)
    dev = torch.device(device)
    t0 = time.perf_counter()
    min_d, max_d = depth_bounds(cfg, ref, sources)
    n_levels = pyramid_levels(cfg, *ref.image.shape[-2:])
    problem = DepthProblem(build_levels(ref, sources, n_levels, dev), 1.0 / max_d, 1.0 / min_d, cfg)
    theta0 = _start(problem, cfg, dev, progress)
    iters = level_iterations(cfg, n_levels)
    configs = [
        StepConfig(
            method="adam",
            lr=cfg.lr * 4.0 / problem.parallax(lvl),
            iters=iters[lvl],
            tol=cfg.tol,
            patience=cfg.patience,
        )
        for lvl in range(n_levels)
    ]
    res = coarse_to_fine(problem, theta0, configs, progress)
    level_info = [{"level": r.level, "iterations": r.iterations, "loss": r.loss[0]} for r in res.levels]
    depth, inv, conf, cost = _finish(problem, cfg, res.params)
    return DepthResult(
        depth=depth[0, 0].float().cpu(),
        inv_depth=inv[0, 0].float().cpu(),
        confidence=conf[0, 0].float().cpu(),
        cost=cost[0, 0].float().cpu(),
        min_depth=float(min_d),
        max_depth=float(max_d),
        levels=level_info,
        seconds=time.perf_counter() - t0,
    )


__all__ = ["StageProgress", "depth_bounds", "estimate_depth", "level_iterations", "pyramid_levels"]
