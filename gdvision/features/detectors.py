"""Scale-space blob detectors: difference of Gaussians (DoG) and determinant of Hessian (DoH).

Pipeline: a response stack per octave -> 3x3x3 non-maximum suppression -> quadratic sub-pixel / sub-scale
refinement (up to 5 moves of the integer sample, as in Lowe 2004; in a native-resolution fine octave a second fit
on a bicubically interpolated half-pixel grid, see :func:`refine_half_pixel`) -> contrast and edge (principal
curvature ratio) rejection -> the strongest ``max_features`` spread over the image.

Responses, both in octave pixels and for images in [0, 1]:

- DoG: ``D_s = L_{s+1} - L_s`` (approximately ``(2^(1/S) - 1) sigma^2 Laplacian``); extrema of either sign.
- DoH: ``sigma^4 (Lxx Lyy - Lxy^2)`` with all second derivatives from the same 3-tap stencils, in intensity per
  pixel^2 (``Lxx = L[x+1] - 2 L[x] + L[x-1]``, ``Lxy = (L[x+1,y+1] - L[x+1,y-1] - L[x-1,y+1] + L[x-1,y-1]) / 4``),
  so the response of a Gaussian blob of std ``t`` peaks at ``sigma = t``; maxima only (blobs, det > 0).

Keypoint locations and scales are differentiable functions of the image (the discrete search runs without
gradients; the final quadratic step is re-evaluated with them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gdvision._checks import check_choice
from gdvision.features import refine_np
from gdvision.features.config import DETECTORS
from gdvision.features.scale_space import ScaleSpace, image_groups


@dataclass
class Keypoints:
    """Detected keypoints of a batch (K keypoints in all).

    Attributes:
        batch: (K,) long, image index in the batch.
        octave: (K,) long, octave index (0 = finest stored octave).
        level: (K,) long, nearest Gaussian level (for sampling patches).
        xy: (K, 2) input pixel coordinates (x, y), differentiable.
        scale: (K,) sigma in input pixels, differentiable.
        response: (K,) absolute response after refinement, differentiable.
    """

    batch: torch.Tensor
    octave: torch.Tensor
    level: torch.Tensor
    xy: torch.Tensor
    scale: torch.Tensor
    response: torch.Tensor

    def __len__(self) -> int:
        return int(self.batch.numel())

    def index(self, idx: torch.Tensor) -> Keypoints:
        """The keypoints selected by ``idx`` (a long index or a bool mask)."""
        return Keypoints(*(getattr(self, f)[idx] for f in ("batch", "octave", "level", "xy", "scale", "response")))

    @staticmethod
    def cat(items: list[Keypoints]) -> Keypoints:
        """Concatenate keypoint sets."""
        fields = ("batch", "octave", "level", "xy", "scale", "response")
        return Keypoints(*(torch.cat([getattr(k, f) for k in items]) for f in fields))


_STENCILS = torch.tensor(
    [
        [[0.0, 0.0, 0.0], [1.0, -2.0, 1.0], [0.0, 0.0, 0.0]],  # xx
        [[0.0, 1.0, 0.0], [0.0, -2.0, 0.0], [0.0, 1.0, 0.0]],  # yy
        [[0.25, 0.0, -0.25], [0.0, 0.0, 0.0], [-0.25, 0.0, 0.25]],  # xy
    ]
).unsqueeze(1)


def hessian2d(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Second derivatives ``(Lxx, Lyy, Lxy)`` of every channel of (B, C, H, W), intensity per pixel^2.

    Same 3-tap central stencils in all three (replicate border), so they scale consistently.

    Example:
        >>> import torch
        >>> y, x = torch.meshgrid(torch.arange(9.0), torch.arange(9.0), indexing="ij")
        >>> lxx, lyy, lxy = hessian2d((x * y + x**2)[None, None])
        >>> float(lxx[0, 0, 4, 4]), float(lyy[0, 0, 4, 4]), float(lxy[0, 0, 4, 4])
        (2.0, 0.0, 1.0)
    """
    b, c, h, w = x.shape
    y = F.pad(x.reshape(b * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
    out = F.conv2d(y, _STENCILS.to(dtype=x.dtype, device=x.device)).reshape(b, c, 3, h, w)
    return out[:, :, 0], out[:, :, 1], out[:, :, 2]


def dog_response(ss: ScaleSpace, o: int) -> torch.Tensor:
    """The (B, S+2, H_o, W_o) difference-of-Gaussians stack of octave ``o``."""
    g = ss.octaves[o]
    return g[:, 1:] - g[:, :-1]


def hessian_response(ss: ScaleSpace, o: int) -> torch.Tensor:
    """The (B, S+3, H_o, W_o) stack of scale-normalised ``sigma^4 det(Hessian)`` of octave ``o`` (octave pixels)."""
    g = ss.octaves[o]
    sig = torch.tensor([ss.level_sigma(s, o) for s in range(g.shape[1])])
    lxx, lyy, lxy = hessian2d(g)
    s4 = (sig**4).to(g).view(1, -1, 1, 1)
    return s4 * (lxx * lyy - lxy * lxy)


def dog_responses(ss: ScaleSpace) -> list[torch.Tensor]:
    """Per octave a (B, S+2, H_o, W_o) difference-of-Gaussians stack."""
    return [dog_response(ss, o) for o in range(len(ss.octaves))]


def hessian_responses(ss: ScaleSpace) -> list[torch.Tensor]:
    """Per octave a (B, S+3, H_o, W_o) stack of scale-normalised ``sigma^4 det(Hessian)`` (octave pixels)."""
    return [hessian_response(ss, o) for o in range(len(ss.octaves))]


def default_threshold(detector: str, contrast_threshold: float, scales_per_octave: int) -> float:
    """The response threshold of a detector for Lowe's contrast threshold (0.04 for images in [0, 1]).

    DoG: ``contrast_threshold / S`` (OpenCV's rule). DoH: the response a Gaussian blob would have at the
    DoG threshold: a blob of amplitude ``a`` gives DoG ``(2^(1/S) - 1) a / 2`` and DoH ``a^2 / 16``.
    """
    t = contrast_threshold / scales_per_octave
    if detector == "dog":
        return t
    k1 = 2.0 ** (1.0 / scales_per_octave) - 1.0
    amp = 2.0 * t / k1
    return amp * amp / 16.0


def window3(x: torch.Tensor, op: Callable[..., torch.Tensor] = torch.maximum) -> torch.Tensor:
    """``op`` (``torch.maximum`` or ``torch.minimum``) over every 3x3x3 window of dims 1-3 of (B, L, H, W), separably:
    (B, L - 2, H - 2, W - 2), valid positions only. Without gradients (the second ``op`` of each dim writes in place).

    Example:
        >>> window3(torch.arange(27.0).view(1, 3, 3, 3)).flatten().tolist(), window3(torch.ones(1, 4, 3, 5)).shape
        ([26.0], torch.Size([1, 2, 1, 3]))
    """
    for dim in (1, 2, 3):
        n = x.shape[dim]
        m = op(x.narrow(dim, 0, n - 2), x.narrow(dim, 1, n - 2))
        x = op(m, x.narrow(dim, 2, n - 2), out=m)
    return x


def _nms(
    resp: torch.Tensor,
    threshold: float,
    border: int,
    lo: int,
    hi: int,
    signed: bool,
    rows_per_chunk: int = 1024,
) -> torch.Tensor:
    """(K, 4) long indices (b, s, y, x) of 3x3x3 extrema of ``resp`` (B, L, H, W) with lo <= s <= hi.

    Only samples at least ``max(border, 1)`` from the image edge are considered.
    """
    b, L, h, w = resp.shape
    bd = max(border, 1)
    lo, hi = max(lo, 1), min(hi, L - 2)
    if h <= 2 * bd or w <= 2 * bd or hi < lo:
        return torch.zeros(0, 4, dtype=torch.long, device=resp.device)
    # the slab needed: levels lo-1..hi+1, rows/cols bd-1..size-bd; in bands of rows to bound the temporaries
    band = max(16, rows_per_chunk)
    found = []
    for y0 in range(bd, h - bd, band):
        y1 = min(y0 + band, h - bd)
        x = resp[:, lo - 1 : hi + 2, y0 - 1 : y1 + 1, bd - 1 : w - bd + 1]
        if signed:
            # maxima of |D|: a sample larger in magnitude than all 26 neighbours is a maximum of D (D > 0) or
            # a minimum (D < 0); this misses only extrema next to a stronger one of the opposite sign
            x = x.abs()
        c = x[:, 1:-1, 1:-1, 1:-1]
        # c >= max(window) and c > threshold in one comparison: the window maximum raised to the next value above
        # the threshold (the threshold as the response's dtype compares it, so the same samples pass)
        t = torch.tensor(threshold, dtype=x.dtype)
        mx = window3(x).clamp_min_(float(torch.nextafter(t, t.new_tensor(float("inf")))))
        ok = torch.ge(c, mx, out=torch.empty(mx.shape, dtype=torch.bool, device=mx.device))
        idx = _nonzero4(ok)
        found.append(idx + idx.new_tensor([0, lo, y0, bd]))
    return torch.cat(found)


def _nonzero4(ok: torch.Tensor) -> torch.Tensor:
    """``torch.nonzero`` of a contiguous 4-d bool mask that is mostly False: (K, 4) long in the same order.

    On CPU the mask is first scanned as 8-byte words (one nonzero over 1/8 of the elements, then only the
    words that hold a True): several times faster than ``torch.nonzero`` at the sparsity of extrema.
    """
    flat = ok.reshape(-1)
    if ok.device.type != "cpu" or flat.numel() % 8 or not ok.is_contiguous():
        return torch.nonzero(ok)
    words = torch.nonzero(flat.view(torch.int64))[:, 0]
    sub = torch.nonzero(flat.view(-1, 8).index_select(0, words))
    lin = words.index_select(0, sub[:, 0]).mul_(8).add_(sub[:, 1])
    _, s, h, w = ok.shape
    return torch.stack([lin // (s * h * w), lin // (h * w) % s, lin // w % h, lin % w], 1)


_OFFSETS = [(ds, dy, dx) for ds in (-1, 0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


_DS, _DY, _DX = (torch.tensor(list(c)) for c in zip(*_OFFSETS, strict=True))


def quadratic_fit(
    resp: torch.Tensor, idx: torch.Tensor, geo: torch.Tensor | None = None, singular: float = 10.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quadratic fit of ``resp`` at integer samples ``idx`` (K, 4) (b, s, y, x) over their 3x3x3 neighbourhoods:
    offsets (K, 3) (dx, dy, ds) (``singular`` where the 3x3 system has no solution), value at the fitted
    extremum (K,), spatial Hessian (K, 2, 2), gradient (K, 3); differentiable with respect to ``resp``.

    ``resp`` is one (B, L, H, W) stack, or with ``geo`` (K, 4) long a flat concatenation of several: each sample's
    stack starts at ``geo[:, 0]`` and has the shape ``(B, geo[:, 1], geo[:, 2], geo[:, 3])``.

    Example:
        >>> import torch
        >>> z, y, x = torch.meshgrid(torch.arange(3.0), torch.arange(5.0), torch.arange(5.0), indexing="ij")
        >>> resp = (1 - (x - 2.2) ** 2 - (y - 1.9) ** 2 - (z - 1.3) ** 2)[None]  # peak 1 at (2.2, 1.9, 1.3)
        >>> off, val, hxy, g = quadratic_fit(resp, torch.tensor([[0, 1, 2, 2]]))
        >>> [round(v, 3) for v in off[0].tolist()], round(float(val[0]), 3)
        ([0.2, -0.1, 0.3], 1.0)
    """
    b, s, y, x = idx.unbind(1)
    if geo is None:
        _, L, h, w = resp.shape
        lin = ((b * L + s) * h + y) * w + x
        off = torch.tensor([(ds * h + dy) * w + dx for ds, dy, dx in _OFFSETS], device=resp.device).unsqueeze(0)
    else:
        start, L, h, w = geo.unbind(1)
        lin = start + ((b * L + s) * h + y) * w + x
        ds, dy, dx = (t.to(resp.device).unsqueeze(0) for t in (_DS, _DY, _DX))
        off = (ds * h.unsqueeze(1) + dy) * w.unsqueeze(1) + dx
    n = resp.reshape(-1).index_select(0, (lin.unsqueeze(1) + off).reshape(-1)).reshape(-1, 27)
    return _solve27(n, singular)


def _solve27(n: torch.Tensor, singular: float = 10.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quadratic fit of (K, 27) samples ordered (ds, dy, dx) in {-1, 0, 1}^3: offsets (K, 3) (dx, dy, ds) in
    sample steps (``singular`` where the system has no finite solution), value at the fitted extremum (K,),
    spatial Hessian (K, 2, 2), gradient (K, 3).
    """

    def v(ds: int, dy: int, dx: int) -> torch.Tensor:
        return n[:, (ds + 1) * 9 + (dy + 1) * 3 + (dx + 1)]

    c = v(0, 0, 0)
    gx = (v(0, 0, 1) - v(0, 0, -1)) * 0.5
    gy = (v(0, 1, 0) - v(0, -1, 0)) * 0.5
    gs = (v(1, 0, 0) - v(-1, 0, 0)) * 0.5
    dxx = v(0, 0, 1) + v(0, 0, -1) - 2 * c
    dyy = v(0, 1, 0) + v(0, -1, 0) - 2 * c
    dss = v(1, 0, 0) + v(-1, 0, 0) - 2 * c
    dxy = (v(0, 1, 1) - v(0, 1, -1) - v(0, -1, 1) + v(0, -1, -1)) * 0.25
    dxs = (v(1, 0, 1) - v(1, 0, -1) - v(-1, 0, 1) + v(-1, 0, -1)) * 0.25
    dys = (v(1, 1, 0) - v(1, -1, 0) - v(-1, 1, 0) + v(-1, -1, 0)) * 0.25
    Hm = torch.stack(
        [torch.stack([dxx, dxy, dxs], -1), torch.stack([dxy, dyy, dys], -1), torch.stack([dxs, dys, dss], -1)], -2
    )
    g = torch.stack([gx, gy, gs], -1)
    sol, info = torch.linalg.solve_ex(Hm.to(torch.float64), g.to(torch.float64).unsqueeze(-1))
    off = -sol[..., 0].to(n.dtype)
    off = torch.where((info != 0).unsqueeze(-1) | ~torch.isfinite(off), torch.full_like(off, singular), off)
    val = c + 0.5 * (g * off).sum(-1)
    return off, val, Hm[:, :2, :2], g


def refine_half_pixel(
    resp: torch.Tensor, idx: torch.Tensor, off: torch.Tensor, val: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-fit refined extrema on a half-pixel grid: ``(offset (K, 3) (dx, dy, ds), value (K,))``.

    The 3x3x3 quadratic fit of :func:`refine_extrema` on the integer grid of a fine octave (blurs below 1.6
    pixels) is biased toward the samples; here the response is interpolated bicubically (close to the
    band-limited upsampling of a doubled first octave) at ``±0.5`` pixel around the refined position, on the
    levels ``s - 1, s, s + 1``, and fitted again. ``idx`` (K, 4) (b, s, y, x) integer samples, ``off`` (K, 3) their
    offsets and ``val`` (K,) their fitted values; returns the new offsets from ``idx`` (pixels, levels) and values
    (the integer-grid fit is kept where the half-pixel fit is unstable), differentiable with respect to ``resp``.
    """
    h, w = resp.shape[-2:]
    k = idx.shape[0]
    if k == 0:
        return off, val
    centre = idx[:, [3, 2]].to(resp.dtype) + off[:, :2].detach().to(resp.dtype)  # (K, 2) x, y
    d = torch.tensor([-0.5, 0.0, 0.5], dtype=resp.dtype, device=resp.device)
    gy, gx = torch.meshgrid(d, d, indexing="ij")
    pts = centre[:, None, :] + torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)[None]  # (K, 9, 2)
    scale = pts.new_tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)])
    n = resp.new_zeros(k, 27)
    # one bicubic sampling per level, of the levels s - 1, s, s + 1 only; the keypoints of one (level, image) are
    # a range of one sort. Without a gradient the images of a level share one call as its batch items (the same
    # samples; on the CPU the items run on separate threads), short ones padded with zeros (results unused).
    nb = resp.shape[0]
    order, levels = image_groups(idx[:, 1], idx[:, 0], nb)
    grid = (pts.index_select(0, order) * scale).sub_(1.0)
    batched = not (torch.is_grad_enabled() and resp.requires_grad)
    for lv, parts in levels:
        if len(parts) > 1 and batched:
            m = max(cnt for _, _, cnt in parts)
            g = grid.new_zeros(nb, m, 9, 2)
            for bi, start, cnt in parts:
                g[bi, :cnt] = grid[start : start + cnt]
            calls = [(resp[:, lv - 1 : lv + 2], g, parts)]
        else:
            calls = [(resp[bi : bi + 1, lv - 1 : lv + 2], grid[None, st : st + c], [(0, st, c)]) for bi, st, c in parts]
        for src, g, items in calls:
            v = F.grid_sample(src, g, mode="bicubic", padding_mode="border", align_corners=True)  # (b, 3, m, 9)
            for bi, start, cnt in items:  # (cnt, 3 levels, 9) in (ds, dy, dx) order
                n = n.index_put((order[start : start + cnt],), v[bi, :, :cnt].permute(1, 0, 2).reshape(-1, 27))
    if n.requires_grad or n.device.type != "cpu":
        o2, v2, _, _ = _solve27(n)
    else:
        o2, v2 = (torch.from_numpy(t) for t in refine_np.solve27(n.numpy())[:2])
    ok = (o2[:, :2].abs() <= 1.0).all(-1) & (o2[:, 2].abs() <= 0.6)
    new = torch.cat([centre - idx[:, [3, 2]].to(resp.dtype) + 0.5 * o2[:, :2], o2[:, 2:]], -1)
    return torch.where(ok.unsqueeze(-1), new, off), torch.where(ok, v2, val)


def refine_extrema(
    resp: torch.Tensor,
    idx: torch.Tensor,
    border: int,
    lo: int,
    hi: int | torch.Tensor,
    max_moves: int = 5,
    geo: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sub-pixel/sub-scale refinement of extrema ``idx`` (K, 4) of ``resp`` (B, L, H, W).

    The integer sample moves toward the fitted extremum while an offset exceeds 0.5 (at most ``max_moves``
    times); samples that leave ``[border, size - border)`` or the levels ``[lo, hi]``, or do not converge,
    are dropped. Returns ``(idx (M,4), offset (M,3) (dx,dy,ds), value (M,), hess_xy (M,2,2), kept (M,))``
    (``kept``: the indices of the surviving rows of ``idx``); offset, value and Hessian are differentiable with
    respect to ``resp``. With ``geo`` (K, 4), ``resp`` is a flat concatenation of several stacks (see
    :func:`quadratic_fit`; one pass for all the small octaves) and ``hi`` may be a (K,) tensor.
    """
    if geo is None:
        h, w = resp.shape[-2:]
    # without gradients the fit of each converged sample is kept from its last move (no final refit)
    keep_fit = not (torch.is_grad_enabled() and resp.requires_grad)
    if keep_fit and resp.device.type == "cpu" and resp.dtype == torch.float32:
        return refine_np.refine(resp, idx, border, lo, hi, max_moves, geo)
    with torch.no_grad():
        cur = idx.clone()
        done = torch.zeros(len(cur), dtype=torch.bool, device=resp.device)
        ok = torch.ones_like(done)
        if keep_fit:
            f_off = resp.new_zeros(len(cur), 3)
            f_val = resp.new_zeros(len(cur))
            f_h = resp.new_zeros(len(cur), 2, 2)
        for _ in range(max_moves):
            act = ok & ~done
            if not bool(act.any()):
                break
            g_act = None if geo is None else geo[act]
            if g_act is not None:
                h, w = g_act[:, 2], g_act[:, 3]
            off, val, hxy, _ = quadratic_fit(resp, cur[act], g_act)
            conv = (off.abs() < 0.6).all(-1)
            step = torch.round(off.clamp(-5, 5)).long()
            nxt = cur[act].clone()
            nxt[:, 3] += step[:, 0]
            nxt[:, 2] += step[:, 1]
            nxt[:, 1] += step[:, 2]
            inside = (
                (nxt[:, 3] >= border)
                & (nxt[:, 3] < w - border)
                & (nxt[:, 2] >= border)
                & (nxt[:, 2] < h - border)
                & (nxt[:, 1] >= lo)
                & (nxt[:, 1] <= (hi if isinstance(hi, int) else hi[act]))
            )
            ai = torch.nonzero(act)[:, 0]
            done[ai[conv]] = True
            if keep_fit:
                f_off[ai[conv]], f_val[ai[conv]], f_h[ai[conv]] = off[conv], val[conv], hxy[conv]
            moving = ~conv
            cur[ai[moving & inside]] = nxt[moving & inside]
            ok[ai[moving & ~inside]] = False
        keep = torch.nonzero(ok & done)[:, 0]
        cur = cur[keep]
    if keep_fit:
        return cur, f_off[keep], f_val[keep], f_h[keep], keep
    off, val, hxy, _ = quadratic_fit(resp, cur, None if geo is None else geo[keep])
    return cur, off, val, hxy, keep


def spread_select(
    xy: torch.Tensor, score: torch.Tensor, n: int, width: int, height: int, cells: int = 8
) -> torch.Tensor:
    """Indices of ``n`` keypoints, strongest first, spread over a ``cells`` x ``cells`` grid of the image.

    Each cell first contributes its strongest ``2 n / cells^2`` keypoints (all rounds strongest-first), so
    textured regions cannot take the whole budget; the remaining slots go to the strongest left over.
    """
    k = xy.shape[0]
    if k <= n:
        return torch.argsort(score, descending=True)
    order = torch.argsort(score, descending=True)
    cx = (xy[order, 0].detach() / max(width, 1) * cells).long().clamp(0, cells - 1)
    cy = (xy[order, 1].detach() / max(height, 1) * cells).long().clamp(0, cells - 1)
    cell = cy * cells + cx
    # rank within cell, in strength order
    sorted_cell, perm = torch.sort(cell, stable=True)
    counts = torch.bincount(sorted_cell, minlength=cells * cells)
    starts = torch.cumsum(counts, 0) - counts
    rank_sorted = torch.arange(k, device=xy.device) - starts[sorted_cell]
    rank = torch.empty_like(rank_sorted)
    rank[perm] = rank_sorted
    quota = max(1, (2 * n) // (cells * cells))
    tier = (rank >= quota).long()
    key = tier * (k + 1) + torch.arange(k, device=xy.device)
    pick = torch.argsort(key)[:n]
    return order[pick]


def _keypoints(
    ss: ScaleSpace,
    items: list[tuple[int, torch.Tensor, torch.Tensor]],
    detector: str,
    thr: float,
    r_edge: float,
    border: int,
) -> list[Keypoints]:
    """Refined, tested keypoints of the candidates of one or several octaves: ``items`` = (octave, response,
    candidates (K, 4) (b, s, y, x)); one refinement pass for all (their responses concatenated flat)."""
    S = ss.scales_per_octave
    dev = items[0][1].device
    if len(items) == 1:
        o, resp, cand = items[0]
        flat, geo, hi = resp, None, S + ss.offset(o)
        octave = torch.full((cand.shape[0],), o, dtype=torch.long, device=dev)
    else:
        flat = torch.cat([r.reshape(-1) for _, r, _ in items])
        starts = [0]
        for _, r, _ in items[:-1]:
            starts.append(starts[-1] + r.numel())
        geo = torch.cat(
            [
                c.new_tensor([[st, r.shape[1], r.shape[2], r.shape[3]]]).expand(c.shape[0], 4)
                for st, (_, r, c) in zip(starts, items, strict=True)
            ]
        )
        octave = torch.cat([torch.full((c.shape[0],), o, dtype=torch.long, device=dev) for o, _, c in items])
        cand = torch.cat([c for _, _, c in items])
        hi = S + torch.tensor([ss.offset(o) for o in range(len(ss.octaves))], device=dev)[octave]
    idx, off, val, hxy, kept = refine_extrema(flat, cand, border, 1, hi, geo=geo)
    octave = octave[kept]
    if idx.numel() == 0:
        return []
    if detector == "hessian":
        tr = val.new_zeros(idx.shape[0])
        det = val.new_zeros(idx.shape[0])
        for o in torch.unique(octave).tolist():
            sel = torch.nonzero(octave == o)[:, 0]
            lxx, lyy, lxy = hessian2d(ss.octaves[o])
            b, s, y, x = idx[sel].unbind(1)
            tr = tr.index_put((sel,), lxx[b, s, y, x] + lyy[b, s, y, x])
            det = det.index_put((sel,), lxx[b, s, y, x] * lyy[b, s, y, x] - lxy[b, s, y, x] ** 2)
        good = val > thr
    else:
        tr = hxy[:, 0, 0] + hxy[:, 1, 1]
        det = hxy[:, 0, 0] * hxy[:, 1, 1] - hxy[:, 0, 1] ** 2
        good = val.abs() > thr
    good = torch.nonzero(good & (det > 0) & (tr * tr < r_edge * det) & (off.abs() <= 0.6).all(-1))[:, 0]
    idx, off, val, octave = idx[good], off[good], val[good], octave[good]
    if idx.numel() == 0:
        return []
    if len(items) == 1 and ss.offset(items[0][0]) > 0:  # native-resolution fine octave: half-pixel re-fit
        off, val = refine_half_pixel(items[0][1], idx, off, val)
    table = torch.tensor(
        [[ss.octave_step(o), ss.offset(o), ss.octaves[o].shape[1] - 1] for o in range(len(ss.octaves))],
        dtype=off.dtype,
        device=dev,
    )[octave]
    step = table[:, 0]
    xy = (idx[:, [3, 2]].to(off.dtype) + off[:, :2]) * step.unsqueeze(1)
    sl = idx[:, 1].to(off.dtype) + off[:, 2]
    scale = ss.sigma0 * torch.pow(2.0, (sl - table[:, 1]) / S) * step
    level = torch.minimum(torch.round(sl.detach()).clamp_min(0), table[:, 2]).long()
    return [Keypoints(idx[:, 0], octave, level, xy, scale, val.abs())]


def detect(
    ss: ScaleSpace,
    detector: str = "dog",
    contrast_threshold: float = 0.04,
    threshold: float | None = None,
    edge_threshold: float = 10.0,
    max_features: int | None = 4000,
    border: int = 5,
    image_size: tuple[int, int] | None = None,
) -> Keypoints:
    """Detect keypoints in a scale space.

    Args:
        ss: from :func:`gdvision.features.scale_space.build_scale_space`.
        detector: ``"dog"`` or ``"hessian"``.
        contrast_threshold: Lowe's threshold for images in [0, 1] (0.04, OpenCV's default); ignored if ``threshold``.
        threshold: the response threshold itself (see :func:`default_threshold`).
        edge_threshold: reject when the principal curvature ratio exceeds this (``tr^2/det >= (r+1)^2/r``).
        max_features: keep at most this many per image, strongest first and spread over the image; None = all.
        border: ignore extrema this close (octave pixels) to the image edge.
        image_size: (W, H) of the input (for spreading); defaults to the first octave's size mapped back.

    Returns:
        :class:`Keypoints` (positions in input pixels, (0, 0) = centre of the top-left pixel).

    Example:
        >>> import torch
        >>> from gdvision.features.scale_space import build_scale_space
        >>> y, x = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
        >>> blob = torch.exp(-((x - 30) ** 2 + (y - 33) ** 2) / (2 * 4.0**2))[None, None]
        >>> kp = detect(build_scale_space(blob, double_first=False), "hessian")
        >>> [round(v) for v in kp.xy[0].tolist()], round(float(kp.scale[0]))
        ([30, 33], 4)
    """
    check_choice(detector, "detector", DETECTORS)
    S = ss.scales_per_octave
    thr = threshold if threshold is not None else default_threshold(detector, contrast_threshold, S)
    response = dog_response if detector == "dog" else hessian_response
    r_edge = (edge_threshold + 1.0) ** 2 / edge_threshold
    found: list[Keypoints] = []
    rest: list[tuple[int, torch.Tensor, torch.Tensor]] = []
    for o in range(len(ss.octaves)):
        resp = response(ss, o)
        # interior levels; level S + offset of octave o == level 0 of octave o+1
        with torch.no_grad():
            cand = _nms(resp.detach(), 0.5 * thr, border, 1, S + ss.offset(o), signed=(detector == "dog"))
        if cand.numel() == 0:
            continue
        if o == 0:  # the largest octave alone, its response freed before the next is computed
            found += _keypoints(ss, [(o, resp, cand)], detector, thr, r_edge, border)
        else:
            rest.append((o, resp, cand))
    if rest:  # the small octaves refined together (the per-call overhead dominates there)
        found += _keypoints(ss, rest, detector, thr, r_edge, border)
    dev = ss.octaves[0].device
    if not found:
        z = torch.zeros(0, dtype=torch.long, device=dev)
        f = ss.octaves[0].new_zeros(0)
        return Keypoints(z, z, z, ss.octaves[0].new_zeros(0, 2), f, f)
    kp = Keypoints.cat(found)
    if max_features is not None:
        if image_size is None:
            h0, w0 = ss.octaves[0].shape[-2:]
            st = ss.octave_step(0)
            image_size = (int(round((w0 - 1) * st + 1)), int(round((h0 - 1) * st + 1)))
        keep = []
        for bi in torch.unique(kp.batch).tolist():
            sel = torch.nonzero(kp.batch == bi)[:, 0]
            pick = spread_select(kp.xy[sel], kp.response[sel].detach(), max_features, *image_size)
            keep.append(sel[pick])
        kp = kp.index(torch.cat(keep))
    return kp
