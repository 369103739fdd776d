"""Semi-global aggregation of a plane-sweep cost volume (Hirschmueller's SGM recursion, 4 scanline paths).

The plane sweep of :func:`gdvision.depth.solver.plane_sweep` gives, for every reference pixel, the photometric cost
of ``P`` inverse-depth planes. A winner-take-all on that volume is noisy where the texture is weak and
fattens foreground objects where the window straddles a depth edge. Semi-global matching adds, along a
scanline path ``r``, a smoothness prior without solving a 2-D problem:

    L_r(p, k) = C(p, k) + min( L_r(p - r, k),
                               L_r(p - r, k +- 1) + P1,
                               min_j L_r(p - r, j) + P2(p) ) - min_j L_r(p - r, j)

and the aggregated cost is ``S(p, k) = sum_r L_r(p, k)`` over the four horizontal and vertical paths.
``P1`` charges a one-plane step (slanted surfaces), ``P2`` any jump (depth edges); ``P2`` is lowered
across image edges, ``P2(p) = max(P1, P2 exp(-gamma |I(p) - I(p - r)|))`` (channel mean), so depth jumps
are cheap where the image has an edge, the same weighting as the solver's edge-aware smoothness.

Costs are in the units of the photometric cost (0 = identical, ~1 = unrelated), so ``P1``/``P2`` are too.
"""

from __future__ import annotations

import torch


def _paths(cost: torch.Tensor, base: torch.Tensor, p2: torch.Tensor, p1: float) -> torch.Tensor:
    """The SGM path costs ``L_r`` along the first axis of ``cost`` (N, K, M) (N steps, K hypotheses, M scanlines).

    ``base`` (N, M): absolute index of hypothesis 0 at every step (hypothesis ``k`` of step ``n`` is the same
    depth as hypothesis ``k + base[n] - base[n - 1]`` of step ``n - 1``; outside the previous band only a jump
    reaches it). ``p2`` (N, M): jump penalty between steps ``n - 1`` and ``n`` (row 0 unused). Returns (N, K, M).
    """
    n_steps, k, m = cost.shape
    out = torch.empty_like(cost)
    out[0] = cost[0]
    prev = cost[0]
    padded = torch.full((k + 2, m), float("inf"), dtype=cost.dtype, device=cost.device)  # row i + 1: hypothesis i
    ks = torch.arange(k, device=cost.device).view(k, 1)
    same_band = bool((base == base[:1]).all())
    for n in range(1, n_steps):
        low = prev.min(0, keepdim=True).values  # (1, M)
        padded[1:-1] = prev
        if same_band:
            same, up, down = prev, padded[2:], padded[:-2]
        else:
            raw = ks + (base[n] - base[n - 1]).view(1, m)  # index in the previous band (outside: the inf rows)
            same = padded.gather(0, raw.clamp(-1, k) + 1)
            up = padded.gather(0, (raw + 1).clamp(-1, k) + 1)
            down = padded.gather(0, (raw - 1).clamp(-1, k) + 1)
        best = torch.minimum(torch.minimum(same, torch.minimum(up, down) + p1), low + p2[n].unsqueeze(0))
        prev = cost[n] + best - low
        out[n] = prev
    return out


def _both_ways(cost: torch.Tensor, base: torch.Tensor, p2: torch.Tensor, p1: float) -> torch.Tensor:
    """Sum of the forward and backward paths along the first axis of ``cost`` (N, K, M), in one loop.

    The reversed volume is stacked beside the forward one along the scanline axis, so one Python loop of N steps
    runs both directions. ``p2[n]`` is the penalty between steps ``n - 1`` and ``n``; walking backwards the step
    from ``n + 1`` to ``n`` crosses the same edge as ``p2[n + 1]``.
    """
    m = cost.shape[2]
    p2_back = torch.cat([p2[:1], p2[1:].flip(0)], 0)  # backwards step j crosses the edge of forward step N - j
    stacked = _paths(
        torch.cat([cost, cost.flip(0)], 2), torch.cat([base, base.flip(0)], 1), torch.cat([p2, p2_back], 1), p1
    )
    return stacked[:, :, :m] + stacked[:, :, m:].flip(0)


def edge_penalties(
    guide: torch.Tensor | None, h: int, w: int, p1: float, p2: float, gamma: float, like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Jump penalties (H, W) between each pixel and its left (``p2x``) and upper (``p2y``) neighbour.

    ``max(p1, p2 exp(-gamma |dI|))`` on the channel mean of ``guide`` (1, C, H, W), or ``max(p1, p2)`` without one.
    """
    if guide is None:
        p2x = torch.full((h, w), max(p1, p2), dtype=like.dtype, device=like.device)
        return p2x, p2x
    g = guide[0].mean(0).to(like.dtype)
    dx = torch.zeros(h, w, dtype=like.dtype, device=like.device)
    dy = torch.zeros_like(dx)
    dx[:, 1:] = (g[:, 1:] - g[:, :-1]).abs()
    dy[1:] = (g[1:] - g[:-1]).abs()
    return (p2 * torch.exp(-gamma * dx)).clamp_min(p1), (p2 * torch.exp(-gamma * dy)).clamp_min(p1)


def sgm_aggregate(
    cost: torch.Tensor,
    guide: torch.Tensor | None = None,
    p1: float = 0.03,
    p2: float = 0.3,
    gamma: float = 10.0,
    base: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sum over 4 scanline paths (left/right/up/down) of the SGM recursion on a cost volume.

    Args:
        cost: (K, H, W) cost of ``K`` ordered depth hypotheses per pixel (finite; neighbouring indices are
            neighbouring depths).
        guide: optional (1, C, H, W) image in [0, 1] of the same size: the jump penalty drops across its edges.
        p1: penalty of a one-hypothesis step between neighbouring pixels.
        p2: penalty of a larger jump (>= ``p1``); lowered to ``max(p1, p2 exp(-gamma |dI|))`` with a guide.
        gamma: edge sensitivity of the guide weighting.
        base: optional (H, W) integer index, on one global grid of hypotheses, of every pixel's hypothesis 0
            (a per-pixel band of ``K`` hypotheses, as in a coarse-to-fine sweep); ``None``: the same ``K``
            hypotheses everywhere.

    Returns:
        (K, H, W) aggregated cost; its per-pixel argmin is the SGM winner.

    Example:
        >>> import torch
        >>> c = torch.rand(8, 5, 6); c[3] -= 1.0           # hypothesis 3 is best everywhere
        >>> bool((sgm_aggregate(c).argmin(0) == 3).all())
        True
        >>> base = torch.zeros(5, 6, dtype=torch.long); base[:, 3:] = 2   # right half: its band starts 2 higher
        >>> c2 = c.clone(); c2[:, :, 3:] = torch.roll(c[:, :, 3:], -2, 0)  # the same depths, shifted bands
        >>> bool((sgm_aggregate(c2, base=base).argmin(0)[:, 3:] == 1).all())
        True
    """
    if cost.dim() != 3:
        raise ValueError(f"cost must be (K, H, W), got {tuple(cost.shape)}")
    _, h, w = cost.shape
    if base is None:
        base = torch.zeros(h, w, dtype=torch.long, device=cost.device)
    p2x, p2y = edge_penalties(guide, h, w, p1, p2, gamma, cost)
    # horizontal paths: steps along x, scanlines = rows
    total = _both_ways(cost.permute(2, 0, 1), base.T, p2x.T, p1).permute(1, 2, 0)
    # vertical paths: steps along y, scanlines = columns
    total += _both_ways(cost.permute(1, 0, 2), base, p2y, p1).permute(1, 0, 2)
    return total
