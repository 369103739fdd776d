"""Dense depth of a reference view from N >= 1 calibrated source views: a coarse-to-fine sweep, refinement, fill.

The model and its loss are in :mod:`gdvision.depth.problem`. Solving, on a Gaussian pyramid (finest first) of
every image:

1. ``init="sweep"`` (default): the **coarse-to-fine sweep** of :mod:`gdvision.depth.sweep`: a full-range plane
   sweep with semi-global aggregation at the coarsest level (the finest with at most ``sweep_max_pixels``
   pixels), then at every finer level a narrow band of inverse depths per pixel, aggregated the same way; then
   ``finest_iters`` Adam steps on the photometric loss at full size (:func:`gdvision.optim.coarse_to_fine`).
   ``init="random"``/``"constant"``: Adam level by level from noise (as in Kornia's depth example) or mid-range.
2. The **final fill**: pixels that every source misses at their depth (out of frame, or occluded according to a
   z-buffer of the map itself), and badly matched pixels that some depth of the range puts out of frame, take
   the farther of their nearest reliable neighbours (``final_fill``, :mod:`gdvision.depth.fill`).

Output: depth (H, W) float32 in the cameras' length unit, NaN where unknown (masked reference pixels,
pixels that no source view can see at any depth in the range); a confidence in [0, 1] from the final
matching cost, ``exp(-cost / confidence_scale)``, 0 where no view sees the pixel at the found depth; the wall
seconds of every stage.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from gdvision.depth.cameras import auto_depth_range, check_views
from gdvision.depth.config import DepthConfig, DepthResult, View
from gdvision.depth.fill import fill_occluded, occluded_mask, uniqueness_losers, visible_mask
from gdvision.depth.problem import UNSEEN, DepthProblem, Level, build_levels, row_strips
from gdvision.depth.sweep import band_sweep, plane_sweep
from gdvision.errors import UsageError
from gdvision.optim import Progress, StepConfig, coarse_to_fine
from gdvision.pyramid import num_levels


@dataclass
class StageProgress:
    """What the progress callback of :func:`estimate_depth` receives outside the Adam iterations.

    ``stage``: ``"sweep"`` (``done`` of ``total`` planes costed), ``"aggregation"``, ``"band level k/n"``
    (hypotheses costed over all strips), ``"fill"``; ``total`` None when there is nothing to count.
    """

    stage: str
    done: int
    total: int | None


class _Clock:
    """Wall seconds per stage; ``report`` forwards stage progress to the user's callback."""

    def __init__(self, progress: Callable[[StageProgress], None] | None) -> None:
        self.progress = progress
        self.seconds: dict[str, float] = {}
        self.stage: str | None = None
        self.t = time.perf_counter()

    def start(self, stage: str) -> None:
        now = time.perf_counter()
        if self.stage is not None:
            key = self.stage.split(" level")[0]
            self.seconds[key] = self.seconds.get(key, 0.0) + now - self.t
        self.stage, self.t = stage, now

    def report(self, stage: str, done: int, total: int | None) -> None:
        if stage != self.stage:
            self.start(stage)
        if self.progress is not None:
            self.progress(StageProgress(stage, done, total))


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
    """Number of pyramid levels for an ``h`` x ``w`` reference (see ``levels``, ``min_size``, ``sweep_max_pixels``).

    With the sweep, the coarsest level is the finest one with at most ``sweep_max_pixels`` pixels (its shorter
    side kept >= 16); otherwise levels halve while the shorter side stays >= ``min_size``.

    Example:
        >>> pyramid_levels(DepthConfig(), 500, 741)     # the full-range sweep at 371 x 250
        2
    """
    if cfg.levels is not None:
        return cfg.levels
    if cfg.init != "sweep" or cfg.sweep_max_pixels is None:
        return num_levels(h, w, cfg.min_size)
    n = 1
    while math.ceil(h / 2 ** (n - 1)) * math.ceil(w / 2 ** (n - 1)) > cfg.sweep_max_pixels and min(h, w) >> n >= 16:
        n += 1
    return n


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


def _sweep(problem: DepthProblem, cfg: DepthConfig, clock: _Clock) -> torch.Tensor:
    """Inverse depth (1, 1, H, W) at level 0 from the coarse-to-fine sweep (:mod:`gdvision.depth.sweep`)."""
    top = problem.num_levels - 1
    planes = cfg.sweep_planes
    if planes is None:
        planes = int(min(max(math.ceil(2.0 * problem.parallax(top)) + 1, 16), 256))
    clock.start("sweep")
    w = plane_sweep(problem.lv[top], problem.w_min, problem.w_max, planes, cfg, clock.report)
    for lvl in range(top - 1, -1, -1):
        step = cfg.band_step * (problem.w_max - problem.w_min) / problem.parallax(lvl)
        stage = f"band level {top - lvl}/{top}"
        clock.report(stage, 0, None)
        w = band_sweep(problem.lv[lvl], w, problem.w_min, problem.w_max, step, cfg, clock.report, stage)
    return w[None, None]


def _adam(problem: DepthProblem, cfg: DepthConfig, theta0: torch.Tensor, first: int, progress) -> tuple:
    """Adam from ``theta0`` at level ``first`` down to level 0 (:func:`gdvision.optim.coarse_to_fine`)."""
    iters = level_iterations(cfg, problem.num_levels)
    configs = [
        StepConfig(
            method="adam",
            lr=cfg.lr * 4.0 / problem.parallax(lvl),
            iters=iters[lvl] if lvl <= first else 0,
            tol=cfg.tol,
            patience=cfg.patience,
        )  # fmt: skip
        for lvl in range(problem.num_levels)
    ]
    res = coarse_to_fine(problem, theta0, configs, progress, start_level=first)
    return res.params, [{"level": r.level, "iterations": r.iterations, "loss": r.loss[0]} for r in res.levels]


def _cost_by_rows(problem: DepthProblem, cfg: DepthConfig, w: torch.Tensor, view: int | None = None) -> torch.Tensor:
    """(1, 1, H, W) photometric cost (:meth:`DepthProblem.cost`: colour SSIM + absolute difference, minimum over
    the seeing views, or of source ``view`` alone; :data:`UNSEEN` where no view sees the pixel) of the level-0
    map ``w`` (1, 1, H, W), computed in strips of ``band_max_pixels`` so the memory stays bounded.

    The fill's test of a good match uses this cost, not the sweeps' grey box SSIM: measured on the converging
    scene of ``tests/depth/test_converging.py``, AbsRel 0.19 with it vs 0.28 with the sweep cost.
    """
    L = problem.lv[0]
    if view is not None:
        L = Level(L.ref, L.ref_mask, [L.srcs[view]], [L.src_masks[view]], [L.A[view]], [L.b[view]])
    h, wd = w.shape[-2:]
    out = []
    for a, b, y0, y1 in row_strips(h, cfg.band_max_pixels // wd, cfg.ssim_window // 2):  # margin: the SSIM window
        strip = DepthProblem([L.rows(a, b)], problem.w_min, problem.w_max, cfg)
        c, seen = strip.cost(0, w[..., a:b, :])
        c = torch.where(seen > 0, c, torch.full_like(c, UNSEEN))
        out.append(c[..., y0 - a : y1 - a, :])
    return torch.cat(out, -2)


def _finish(problem: DepthProblem, cfg: DepthConfig, theta: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(depth, inv_depth, confidence, cost), each (1, 1, H, W), after the final fill."""
    with torch.no_grad():
        wfin = problem.inv_depth(theta)
        # one cost per source view (the uniqueness test needs them); the pixel's cost is their minimum, as in
        # DepthProblem.cost (each view's cost is UNSEEN where it does not see the pixel)
        per_view = [_cost_by_rows(problem, cfg, wfin, i) for i in range(len(problem.lv[0].srcs))]
        cost = torch.stack(per_view).amin(0)
        if cfg.final_fill is not None:
            occluded = occluded_mask(problem, 0, wfin)
            visible = ~occluded & (cost < UNSEEN)
            matched = cost < UNSEEN
            if bool(visible.any()):
                thr = max(cfg.final_fill * float(cost[visible].median()), cfg.final_fill_floor)
                matched &= cost <= thr
            # a pixel that hides a better-matched one in a source breaks uniqueness: fattening, filled like a hidden one
            losers = uniqueness_losers(problem, 0, wfin, per_view)
            wfin = fill_occluded(problem, 0, wfin, matched & ~losers, occluded | losers)
            cost = _cost_by_rows(problem, cfg, wfin)
        seen_now = (cost < UNSEEN).to(cost.dtype)
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
    clock = _Clock(progress)
    clock.start("pyramid")
    min_d, max_d = depth_bounds(cfg, ref, sources)
    n_levels = pyramid_levels(cfg, *ref.image.shape[-2:])
    problem = DepthProblem(build_levels(ref, sources, n_levels, dev), 1.0 / max_d, 1.0 / min_d, cfg)
    level_info: list[dict[str, float]] = []
    if cfg.init == "sweep":
        theta = problem.theta_of(_sweep(problem, cfg, clock))
        if (cfg.finest_iters or 0) > 0:
            clock.start("refinement")
            theta, level_info = _adam(problem, cfg, theta, 0, progress)
    else:
        clock.start("refinement")
        top = problem.num_levels - 1
        th, tw = problem.lv[top].ref.shape[-2:]
        theta = torch.zeros(1, 1, th, tw, device=dev)
        if cfg.init == "random":
            theta = torch.randn(1, 1, th, tw, device=dev)
        # Adam is the whole solve here: the finest level gets the coarser levels' count unless given
        steps = cfg if cfg.finest_iters else dataclasses.replace(cfg, finest_iters=None)
        theta, level_info = _adam(problem, steps, theta, top, progress)
    clock.report("fill", 0, None)
    depth, inv, conf, cost = _finish(problem, cfg, theta)
    clock.start("done")
    return DepthResult(
        depth=depth[0, 0].float().cpu(),
        inv_depth=inv[0, 0].float().cpu(),
        confidence=conf[0, 0].float().cpu(),
        cost=cost[0, 0].float().cpu(),
        min_depth=float(min_d),
        max_depth=float(max_d),
        levels=level_info,
        seconds=time.perf_counter() - t0,
        stages={k: round(v, 4) for k, v in clock.seconds.items()},
    )


__all__ = ["StageProgress", "depth_bounds", "estimate_depth", "level_iterations", "pyramid_levels"]
