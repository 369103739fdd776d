"""The plane sweep that starts the solver: a cost volume over fronto-parallel planes, aggregated, its winners.

At the coarsest level the combined photometric cost (:meth:`DepthProblem.cost`) is evaluated at ``P`` inverse
depths uniform in ``[w_min, w_max]``; the volume is aggregated semi-globally along 4 scanlines
(:func:`gdvision.depth.aggregate.sgm_aggregate`); the winner gets a parabolic sub-plane fit; badly matched
winners are filled from the farthest reliable neighbour (:func:`gdvision.depth.fill.fill_background`); the map is
median-filtered.

Example:
    >>> import torch
    >>> median3x3(torch.tensor([[[[1.0, 1, 1], [1, 9, 1], [1, 1, 1]]]]))[0, 0, 1, 1].item()
    1.0
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from gdvision.depth.aggregate import sgm_aggregate
from gdvision.depth.fill import fill_background
from gdvision.depth.problem import UNSEEN, DepthProblem


def neutral_unseen(vol: torch.Tensor) -> torch.Tensor:
    """Cost volume (P, H, W) with the hypotheses no view sees (cost ``UNSEEN``) set to a neutral value.

    The neutral value is the pixel's mean cost over its seen hypotheses (the median seen cost of the whole
    volume where a pixel sees none), so aggregation neither prefers nor avoids the out-of-frame hypotheses
    and the neighbours decide there.
    """
    seen = vol < UNSEEN
    n = seen.sum(0, keepdim=True)
    mean = torch.where(seen, vol, torch.zeros_like(vol)).sum(0, keepdim=True) / n.clamp_min(1)
    fallback = vol[seen].median() if bool(seen.any()) else torch.tensor(1.0, dtype=vol.dtype)
    mean = torch.where(n > 0, mean, fallback.to(vol.dtype))
    return torch.where(seen, vol, mean.expand_as(vol))


def plane_sweep(
    problem: DepthProblem,
    level: int,
    planes: int,
    fill_factor: float | None = None,
    sgm_p1: float | None = None,
    sgm_p2: float = 0.3,
    progress: Callable[[str, int, int | None], None] | None = None,
) -> torch.Tensor:
    """Winner-take-all inverse depth (1, 1, H, W) over ``planes`` fronto-parallel planes at ``level``.

    The planes are uniform in inverse depth over ``[w_min, w_max]``; the winner is refined by fitting a
    parabola through its cost and its two neighbours', and the map is median-filtered (3x3). Pixels that
    no view sees at any plane get the median inverse depth of the seen ones; with ``fill_factor``, winners
    costing more than ``fill_factor`` x the median winning cost are filled from the background
    (:func:`fill_background`). ``progress(stage, done, total)``, if given, is called after every chunk of planes
    (``"plane sweep"``, planes done, ``planes``), before the aggregation (``"aggregation"``, 0, None) and before
    the winners' fit and fill (``"winners and fill"``, 0, None).
    """
    h, w = problem.lv[level].ref.shape[-2:]
    ws = torch.linspace(problem.w_min, problem.w_max, planes, dtype=problem.lv[level].ref.dtype)
    costs = []
    with torch.no_grad():
        for chunk in torch.split(ws, 16):
            wmap = chunk.view(-1, 1, 1, 1).expand(-1, 1, h, w).to(problem.lv[level].ref.device)
            c, _ = problem.cost(level, wmap)
            costs.append(c[:, 0])
            if progress is not None:
                progress("plane sweep", sum(len(x) for x in costs), planes)
        vol = torch.cat(costs, 0)  # (P,H,W)
        agg = vol
        if sgm_p1 is not None:
            if progress is not None:
                progress("aggregation", 0, None)
            agg = sgm_aggregate(neutral_unseen(vol), problem.lv[level].ref, sgm_p1, sgm_p2, problem.cfg.edge_gamma)
        if progress is not None:
            progress("winners and fill", 0, None)
        idx = agg.argmin(0)
        best = vol.gather(0, idx[None])[0]
        lo = agg.gather(0, (idx - 1).clamp(min=0)[None])[0]
        hi = agg.gather(0, (idx + 1).clamp(max=planes - 1)[None])[0]
        mid = agg.gather(0, idx[None])[0]
        denom = lo - 2 * mid + hi
        inner = (idx > 0) & (idx < planes - 1) & (denom > 1e-9) & (lo < UNSEEN) & (hi < UNSEEN)
        off = torch.where(inner, 0.5 * (lo - hi) / denom.clamp_min(1e-9), torch.zeros_like(best)).clamp(-0.5, 0.5)
        step = (problem.w_max - problem.w_min) / (planes - 1)
        wmap = problem.w_min + (idx.to(best.dtype) + off) * step
        seen = best < UNSEEN
        if bool(seen.any()):
            wmap = torch.where(seen, wmap, wmap[seen].median())
            if fill_factor is not None:
                bad = best > fill_factor * best[seen].median()
                wmap = fill_background(wmap[None, None], ~bad[None, None])[0, 0]
        wmap = median3x3(wmap[None, None])
    return wmap


def median3x3(x: torch.Tensor) -> torch.Tensor:
    """3x3 median filter of (B, C, H, W) with replicated borders."""
    b, c, h, w = x.shape
    p = F.pad(x.reshape(b * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
    patches = F.unfold(p, 3)  # (BC, 9, HW)
    return patches.median(1).values.reshape(b, c, h, w)


__all__ = ["median3x3", "neutral_unseen", "plane_sweep"]
