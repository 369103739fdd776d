"""Which reference pixels the sources see, and the fills that give occluded or unmatched pixels a depth.

- :func:`visible_mask`: pixels some source sees at some depth of the range (the others stay unknown, NaN).
- :func:`fully_visible_mask`: pixels some source sees at every depth of the range (outside: the border band).
- :func:`occluded_mask`: pixels every source misses at their depth (out of frame, or hidden per a z-buffer).
- :func:`fill_background` (2-D, growing neighbourhood) and :func:`fill_rows_background` (along rows): bad
  pixels take the farthest (smallest inverse depth) good neighbour, since occluded pixels usually belong to
  the background.

Example:
    >>> import torch
    >>> w = torch.tensor([[[[0.5, 9.0, 0.25]]]])
    >>> fill_background(w, w < 1)[0, 0, 0].tolist()
    [0.5, 0.25, 0.25]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gdvision.coords import pixel_grid
from gdvision.depth.problem import DepthProblem
from gdvision.depth.warp import project_points


def fill_background(w: torch.Tensor, good: torch.Tensor, max_steps: int = 200) -> torch.Tensor:
    """Replace the inverse depths (B, 1, H, W) where ``good`` is False by the smallest good inverse depth
    (the farthest surface) in a growing 3x3 neighbourhood: occluded pixels usually belong to the background.
    """
    big = torch.finfo(w.dtype).max
    cur = torch.where(good, w, torch.full_like(w, big))
    known = good.clone()
    for _ in range(max_steps):
        if bool(known.all()):
            break
        nb = -F.max_pool2d(-cur, 3, stride=1, padding=1)
        cur = torch.where(known, cur, nb)
        known = cur < big
    return torch.where(known, cur, w)


def fill_rows_background(w: torch.Tensor, good: torch.Tensor) -> torch.Tensor:
    """Fill the inverse depths (B, 1, H, W) where ``good`` is False along image rows, Middlebury style.

    Each bad pixel takes the smaller (farther) of the nearest good inverse depths to its left and to its
    right on the same row (only the one that exists at a row end); rows with no good pixel are kept.
    Occluded pixels and the band whose matches leave the source frame usually belong to the background.

    Example:
        >>> import torch
        >>> w = torch.tensor([[[[0.5, 9.0, 9.0, 0.25, 0.75]]]]); good = w < 1
        >>> fill_rows_background(w, good)[0, 0, 0].tolist()
        [0.5, 0.25, 0.25, 0.25, 0.75]
    """
    n = w.shape[-1]
    pos = torch.arange(n, device=w.device).expand_as(w)
    left = torch.where(good, pos, torch.full_like(pos, -1)).cummax(-1).values
    right = torch.where(good, pos, torch.full_like(pos, n)).flip(-1).cummin(-1).values.flip(-1)
    inf = torch.full_like(w, float("inf"))
    lv = torch.where(left >= 0, w.gather(-1, left.clamp(min=0)), inf)
    rv = torch.where(right < n, w.gather(-1, right.clamp(max=n - 1)), inf)
    fill = torch.minimum(lv, rv)
    return torch.where(good | torch.isinf(fill), w, fill)


def occluded_mask(problem: DepthProblem, level: int, w: torch.Tensor, margin_px: float = 1.0) -> torch.Tensor:
    """(B, 1, H, W) bool: reference pixels that every source view misses at inverse depth ``w`` (B, 1, H, W).

    A view misses a pixel when its sample falls outside the source frame or behind the camera, or when
    the pixel is **occluded** there: a z-buffer splats every reference pixel's inverse depth into the
    source's pixel grid (nearest pixel, the largest inverse depth wins) and a pixel is occluded when the
    buffer at its own sample holds an inverse depth larger than its own by more than the change that moves
    a match by ``margin_px`` pixels (from :meth:`DepthProblem.parallax`).
    """
    L = problem.lv[level]
    bsz = w.shape[0]
    tol = margin_px * (problem.w_max - problem.w_min) / problem.parallax(level)
    seen = torch.zeros_like(w, dtype=torch.bool)
    for src, A, b in zip(L.srcs, L.A, L.b, strict=True):
        hs, ws = src.shape[-2:]
        pts, front = project_points(A.expand(bsz, 3, 3), b.expand(bsz, 3), w)
        xi, yi = pts[..., 0].round(), pts[..., 1].round()
        inside = (xi >= 0) & (xi <= ws - 1) & (yi >= 0) & (yi <= hs - 1) & front[:, 0]
        flat = (yi.clamp(0, hs - 1) * ws + xi.clamp(0, ws - 1)).long().reshape(bsz, -1)
        vals = torch.where(inside, w[:, 0], torch.full_like(w[:, 0], -1.0)).reshape(bsz, -1)
        buf = torch.full((bsz, hs * ws), -1.0, dtype=w.dtype, device=w.device)
        buf = buf.scatter_reduce(1, flat, vals, reduce="amax")
        front_most = buf.gather(1, flat).reshape_as(w[:, 0]) <= w[:, 0] + tol
        seen |= (inside & front_most).unsqueeze(1)
    return ~seen


def fully_visible_mask(problem: DepthProblem, level: int = 0) -> torch.Tensor:
    """(1, 1, H, W) bool: reference pixels that some source sees at **every** depth of the range.

    The pixel's epipolar segment (its images at ``w_min`` and ``w_max``) is straight and the frame convex,
    so the whole segment lies inside the source's pixel-centre box iff both ends do (in front of the
    camera). Pixels outside this mask (e.g. the left band of a left-right pair) can be matched at a wrong
    depth simply because the right one leaves the frame.
    """
    L = problem.lv[level]
    h, w = L.ref.shape[-2:]
    full = torch.zeros(1, 1, h, w, dtype=torch.bool, device=L.ref.device)
    for src, A, b in zip(L.srcs, L.A, L.b, strict=True):
        hs, ws = src.shape[-2:]
        ok = torch.ones_like(full)
        for wv in (problem.w_min, problem.w_max):
            pts, front = project_points(A, b, torch.full((1, 1, h, w), wv, dtype=torch.float64, device=full.device))
            x, y = pts[..., 0], pts[..., 1]
            ok &= front & ((x >= 0) & (x <= ws - 1) & (y >= 0) & (y <= hs - 1)).unsqueeze(1)
        full |= ok
    return full & (L.ref_mask > 0)


def visible_mask(problem: DepthProblem, level: int = 0) -> torch.Tensor:
    """(1, 1, H, W) bool: reference pixels that some source view sees at some depth in the range.

    As the inverse depth runs over ``[w_min, w_max]`` a reference pixel's image in a source view runs
    along a segment of its epipolar line; the pixel is visible when that segment (clipped to the part in
    front of the camera) meets the source's image area ``[-0.5, w - 0.5] x [-0.5, h - 0.5]`` (Liang-Barsky).
    """
    L = problem.lv[level]
    h, w = L.ref.shape[-2:]
    seen = torch.zeros(1, 1, h, w, dtype=torch.bool, device=L.ref.device)
    grid = pixel_grid(h, w, device=L.ref.device, dtype=torch.float64)
    ph = torch.cat([grid, torch.ones_like(grid[..., :1])], dim=-1)
    for src, A, b in zip(L.srcs, L.A, L.b, strict=True):
        hs, ws = src.shape[-2:]
        q0 = ph @ A[0].to(torch.float64).T + problem.w_min * b[0].to(torch.float64)  # (H,W,3) at w_min
        q1 = ph @ A[0].to(torch.float64).T + problem.w_max * b[0].to(torch.float64)
        # keep the part with z > eps: z is linear in w
        eps = 1e-9
        z0, z1 = q0[..., 2], q1[..., 2]
        ok = (z0 > eps) | (z1 > eps)
        s_cut = ((eps - z0) / (z1 - z0 + 1e-30)).clamp(0, 1)
        qa = torch.where((z0 > eps).unsqueeze(-1), q0, q0 + s_cut.unsqueeze(-1) * (q1 - q0))
        qb = torch.where((z1 > eps).unsqueeze(-1), q1, q0 + s_cut.unsqueeze(-1) * (q1 - q0))
        pa = qa[..., :2] / qa[..., 2:].clamp_min(eps)
        pb = qb[..., :2] / qb[..., 2:].clamp_min(eps)
        d = pb - pa
        t0 = torch.zeros_like(d[..., 0])
        t1 = torch.ones_like(d[..., 0])
        for axis, hi in ((0, ws - 0.5), (1, hs - 0.5)):  # the image area spans [-0.5, size - 0.5]
            for pp, qq in ((-d[..., axis], pa[..., axis] + 0.5), (d[..., axis], hi - pa[..., axis])):
                par = pp.abs() < 1e-12
                ok = ok & ~(par & (qq < 0))
                r = qq / torch.where(par, torch.ones_like(pp), pp)
                t0 = torch.where(~par & (pp < 0), torch.maximum(t0, r), t0)
                t1 = torch.where(~par & (pp > 0), torch.minimum(t1, r), t1)
        seen |= (ok & (t0 <= t1 + 1e-9))[None, None]
    return seen & (L.ref_mask > 0)


__all__ = ["fill_background", "fill_rows_background", "fully_visible_mask", "occluded_mask", "visible_mask"]
