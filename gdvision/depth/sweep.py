"""The coarse-to-fine sweep that gives the solver its depth map: a full-range plane sweep, then narrow bands.

1. **Plane sweep** (:func:`plane_sweep`) at the coarsest level: the matching cost
   (:class:`gdvision.depth.matching_cost.SweepCost`) of ``P`` fronto-parallel planes uniform in inverse depth
   over ``[w_min, w_max]``, aggregated semi-globally (:func:`gdvision.depth.aggregate.sgm_aggregate`).
2. **Band sweeps** (:func:`band_sweep`) at every finer level: each pixel tests only a band of ``2 r + 1``
   inverse depths, ``step`` pixels of image motion apart, on one global grid, centred on the best of three
   candidates from the coarser map (its bilinear upsampling and the nearest and farthest depth of its 3x3
   neighbourhood, so thin structures the upsampling blurs away keep a chance); the band volume is aggregated by
   the same SGM (per-pixel bands). Large levels are processed in horizontal strips so the memory stays bounded.
3. At every level (:func:`winners`, :func:`clean`): the SGM winner with a parabolic sub-step fit; winners that
   cost more than ``fill_factor`` x the median winning cost take the farthest reliable neighbour
   (:func:`gdvision.depth.fill.fill_background`); a 3x3 median.

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
from gdvision.depth.config import DepthConfig
from gdvision.depth.fill import fill_background
from gdvision.depth.matching_cost import SweepCost
from gdvision.depth.problem import UNSEEN, Level, row_strips, upsample_to

Report = Callable[[str, int, int | None], None]
CHUNK = 8  # hypotheses costed at once


def neutral_unseen(vol: torch.Tensor) -> torch.Tensor:
    """Cost volume (P, H, W) with the hypotheses no view sees (cost ``UNSEEN``) set to a neutral value.

    The neutral value is the pixel's mean cost over its seen hypotheses (the median seen cost of the whole
    volume where a pixel sees none), so aggregation neither prefers nor avoids the out-of-frame hypotheses
    and the neighbours decide there.
    """
    seen = vol < UNSEEN
    n = seen.sum(0, keepdim=True)
    mean = torch.where(seen, vol, torch.zeros_like(vol)).sum(0, keepdim=True) / n.clamp_min(1)
    if bool((n == 0).any()):  # pixels that see no hypothesis: the median seen cost (a costly sort, so only then)
        fallback = vol[seen].median() if bool(seen.any()) else torch.tensor(1.0, dtype=vol.dtype)
        mean = torch.where(n > 0, mean, fallback.to(vol.dtype))
    return torch.where(seen, vol, mean.expand_as(vol))


def median3x3(x: torch.Tensor) -> torch.Tensor:
    """3x3 median filter of (B, C, H, W) with replicated borders."""
    b, c, h, w = x.shape
    p = F.pad(x.reshape(b * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
    patches = F.unfold(p, 3)  # (BC, 9, HW)
    return patches.median(1).values.reshape(b, c, h, w)


def winners(agg: torch.Tensor, vol: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel winner of an aggregated volume (K, H, W): ``(index + sub-step offset, raw cost at the winner)``.

    The offset in [-0.5, 0.5] comes from a parabola through the winner's aggregated cost and its neighbours'.

    Example:
        >>> import torch
        >>> agg = torch.tensor([4.0, 1.0, 2.0]).view(3, 1, 1)
        >>> winners(agg, agg)[0].flatten().tolist()          # hypothesis 1, a quarter step towards 2
        [1.25]
    """
    k = agg.shape[0]
    idx = agg.argmin(0)
    lo = agg.gather(0, (idx - 1).clamp(min=0)[None])[0]
    hi = agg.gather(0, (idx + 1).clamp(max=k - 1)[None])[0]
    mid = agg.gather(0, idx[None])[0]
    denom = lo - 2 * mid + hi
    inner = (idx > 0) & (idx < k - 1) & (denom > 1e-9)
    off = torch.where(inner, 0.5 * (lo - hi) / denom.clamp_min(1e-9), torch.zeros_like(mid)).clamp(-0.5, 0.5)
    return idx.to(agg.dtype) + off, vol.gather(0, idx[None])[0]


def clean(wmap: torch.Tensor, best: torch.Tensor, fill_factor: float | None) -> torch.Tensor:
    """Winners (H, W) after the unseen/badly-matched fill and a 3x3 median (see the module docstring)."""
    seen = best < UNSEEN
    if bool(seen.any()):
        wmap = torch.where(seen, wmap, wmap[seen].median())
        if fill_factor is not None:
            bad = best > fill_factor * best[seen].median()
            wmap = fill_background(wmap[None, None], ~bad[None, None])[0, 0]
    return median3x3(wmap[None, None])[0, 0]


def _cost_volume(
    cost: SweepCost,
    maps: Callable[[int], torch.Tensor],
    k: int,
    report: Report | None,
    stage: str,
    done0: int = 0,
    total: int | None = None,
) -> torch.Tensor:
    """(K, H, W) costs of the hypotheses ``maps(j)`` (each (H, W)), CHUNK at a time, reporting progress."""
    out = []
    for j0 in range(0, k, CHUNK):
        w = torch.stack([maps(j) for j in range(j0, min(k, j0 + CHUNK))])[:, None]
        out.append(cost(w))
        if report is not None:
            report(stage, done0 + min(k, j0 + CHUNK), total if total is not None else k)
    return torch.cat(out, 0)


def plane_sweep(
    level: Level, w_min: float, w_max: float, planes: int, cfg: DepthConfig, report: Report | None = None
) -> torch.Tensor:
    """Inverse depth (H, W) of the level's reference from ``planes`` fronto-parallel planes over the whole range.

    ``cfg``: the :class:`~gdvision.depth.config.DepthConfig` (``cost_radius``, ``sgm_p1``, ``sgm_p2``,
    ``edge_gamma``, ``sweep_fill``). ``report(stage, done, total)``, if given, is called after every chunk of
    planes (``"sweep"``) and before the aggregation (``"aggregation"``, 0, 1).
    """
    h, w = level.ref.shape[-2:]
    dev, dt = level.ref.device, level.ref.dtype
    ws = torch.linspace(w_min, w_max, planes, dtype=dt, device=dev)
    with torch.no_grad():
        cost = SweepCost(level, cfg.cost_radius)
        vol = _cost_volume(cost, lambda j: ws[j].expand(h, w), planes, report, "sweep")
        agg = vol
        if cfg.sgm_p1 is not None:
            if report is not None:
                report("aggregation", 0, 1)
            agg = sgm_aggregate(neutral_unseen(vol), level.ref, cfg.sgm_p1, cfg.sgm_p2, cfg.edge_gamma)
        pos, best = winners(agg, vol)
        wmap = w_min + pos * (w_max - w_min) / (planes - 1)
        return clean(wmap, best, cfg.sweep_fill)


def band_candidates(coarse: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(5, H, W) candidate centres of a level's band from the coarser map ``coarse`` (h', w') (pyramid relation:
    fine pixel ``(x, y)`` sits at coarse ``(x / 2, y / 2)``): the bilinear upsampling, and the largest and the
    smallest inverse depth of the 3x3 and of the 5x5 coarse neighbourhood (at the nearest coarse pixel).

    Example:
        >>> import torch
        >>> band_candidates(torch.tensor([[1.0, 3.0]]), 1, 4)[:3, 0].tolist()
        [[1.0, 2.0, 3.0, 3.0], [3.0, 3.0, 3.0, 3.0], [1.0, 1.0, 1.0, 1.0]]
    """
    c = coarse[None, None]
    iy = (torch.arange(h, device=c.device) / 2).round().long().clamp(max=coarse.shape[0] - 1)
    ix = (torch.arange(w, device=c.device) / 2).round().long().clamp(max=coarse.shape[1] - 1)
    out = [upsample_to(c, h, w)[0, 0]]
    for k in (3, 5):
        for m in (F.max_pool2d(c, k, 1, k // 2), -F.max_pool2d(-c, k, 1, k // 2)):
            out.append(m[0, 0][iy][:, ix])
    return torch.stack(out)


def pick_candidate(cost: SweepCost, cands: torch.Tensor) -> torch.Tensor:
    """(H, W): per pixel the candidate of ``cands`` (N, H, W) with the lowest matching cost summed over 3x3."""
    score = F.avg_pool2d(F.pad(cost(cands[:, None])[None], (1, 1, 1, 1), mode="replicate"), 3, 1)[0]
    return cands.gather(0, score.argmin(0)[None])[0]


def band_sweep(
    level: Level,
    coarse: torch.Tensor,
    w_min: float,
    w_max: float,
    step: float,
    cfg: DepthConfig,
    report: Report | None = None,
    stage: str = "band",
) -> torch.Tensor:
    """Inverse depth (H, W) at ``level`` from the coarser level's map ``coarse`` (h', w') by a band sweep.

    ``step``: the band's spacing in inverse depth; ``cfg.band_radius`` hypotheses on each side of the centre.
    Strips of at most ``cfg.band_max_pixels`` pixels (with 16 rows of overlap, so SGM's vertical paths see
    context) bound the memory. Other settings as in :func:`plane_sweep`.
    """
    h, w = level.ref.shape[-2:]
    radius = cfg.band_radius
    k = 2 * radius + 1
    rows = max(32, min(h, cfg.band_max_pixels // max(w, 1)))
    overlap = 16 if rows < h else 0
    strips = row_strips(h, rows - 2 * overlap, overlap)
    out = torch.empty(h, w, dtype=level.ref.dtype, device=level.ref.device)
    total = len(strips) * k
    with torch.no_grad():
        cands = band_candidates(coarse, h, w)
        for s_i, (a, b, y0, y1) in enumerate(strips):
            strip = level.rows(a, b)
            cost = SweepCost(strip, cfg.cost_radius)
            centre = pick_candidate(cost, cands[:, a:b])
            base = torch.round((centre - w_min) / step).long() - radius
            vol = _cost_volume(
                cost, lambda j, base=base: w_min + (base + j).to(out.dtype) * step, k, report, stage, s_i * k, total
            )
            agg = vol
            if cfg.sgm_p1 is not None:
                agg = sgm_aggregate(neutral_unseen(vol), strip.ref, cfg.sgm_p1, cfg.sgm_p2, cfg.edge_gamma, base=base)
            pos, best = winners(agg, vol)
            wmap = (w_min + (base.to(pos.dtype) + pos) * step).clamp(w_min, w_max)
            out[y0:y1] = clean(wmap, best, cfg.sweep_fill)[y0 - a : y1 - a]
    return out


__all__ = [
    "band_candidates",
    "band_sweep",
    "clean",
    "median3x3",
    "neutral_unseen",
    "pick_candidate",
    "plane_sweep",
    "winners",
]
