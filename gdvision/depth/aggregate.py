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


def _path(cost: torch.Tensor, p2: torch.Tensor, p1: float, total: torch.Tensor, reverse: bool = False) -> None:
    """Add one SGM path along the first axis of ``cost`` (N, P, M) (N steps, P planes, M scanlines) to ``total``.

    ``p2``: (N, M), ``p2[n]`` = jump penalty between steps ``n - 1`` and ``n`` (row 0 unused). ``total``:
    (N, P, M) (may be a strided view), updated in place. ``reverse`` walks from the last step to the first.
    """
    order = range(cost.shape[0] - 1, -1, -1) if reverse else range(cost.shape[0])
    prev: torch.Tensor | None = None
    big = torch.full_like(cost[0, :1], float("inf"))
    last = 0
    for n in order:
        if prev is None:
            prev = cost[n].clone()
        else:
            m = prev.min(0, keepdim=True).values  # (1, M)
            up = torch.cat([prev[1:], big], 0)
            down = torch.cat([big, prev[:-1]], 0)
            pen = p2[last if reverse else n].unsqueeze(0)  # the edge between the two steps
            best = torch.minimum(torch.minimum(prev, torch.minimum(up, down) + p1), m + pen)
            prev = cost[n] + best - m
        total[n] += prev
        last = n


def sgm_aggregate(
    cost: torch.Tensor, guide: torch.Tensor | None = None, p1: float = 0.03, p2: float = 0.3, gamma: float = 10.0
) -> torch.Tensor:
    """Sum over 4 scanline paths (left/right/up/down) of the SGM recursion on a cost volume.

    Args:
        cost: (P, H, W) cost of ``P`` ordered depth hypotheses per pixel (finite; neighbouring indices are
            neighbouring depths).
        guide: optional (1, C, H, W) image in [0, 1] of the same size: the jump penalty drops across its edges.
        p1: penalty of a one-hypothesis step between neighbouring pixels.
        p2: penalty of a larger jump (>= ``p1``); lowered to ``max(p1, p2 exp(-gamma |dI|))`` with a guide.
        gamma: edge sensitivity of the guide weighting.

    Returns:
        (P, H, W) aggregated cost; its per-pixel argmin is the SGM winner.

    Example:
        >>> import torch
        >>> c = torch.rand(8, 5, 6); c[3] -= 1.0           # hypothesis 3 is best everywhere
        >>> bool((sgm_aggregate(c).argmin(0) == 3).all())
        True
    """
    if cost.dim() != 3:
        raise ValueError(f"cost must be (P, H, W), got {tuple(cost.shape)}")
    n_p, h, w = cost.shape
    if guide is not None:
        g = guide[0].mean(0)  # (H, W)
        dx = torch.zeros(h, w, dtype=cost.dtype, device=cost.device)
        dy = torch.zeros(h, w, dtype=cost.dtype, device=cost.device)
        dx[:, 1:] = (g[:, 1:] - g[:, :-1]).abs()
        dy[1:] = (g[1:] - g[:-1]).abs()
        p2x = (p2 * torch.exp(-gamma * dx)).clamp_min(p1)
        p2y = (p2 * torch.exp(-gamma * dy)).clamp_min(p1)
    else:
        p2x = torch.full((h, w), max(p1, p2), dtype=cost.dtype, device=cost.device)
        p2y = p2x
    total = torch.zeros_like(cost)
    # horizontal paths: steps along x, scanlines = rows
    cx = cost.permute(2, 0, 1).contiguous()  # (W, P, H)
    px = p2x.T.contiguous()  # (W, H): penalty between x-1 and x
    tx = total.permute(2, 0, 1)
    _path(cx, px, p1, tx)
    _path(cx, px, p1, tx, reverse=True)
    del cx
    # vertical paths: steps along y, scanlines = columns
    cy = cost.permute(1, 0, 2).contiguous()  # (H, P, W)
    ty = total.permute(1, 0, 2)
    _path(cy, p2y, p1, ty)
    _path(cy, p2y, p1, ty, reverse=True)
    return total
