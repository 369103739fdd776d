"""The extrema refinement of :mod:`gdvision.features.detectors` without gradients, in NumPy (CPU).

A few thousand candidates move up to 5 times; each move is a 27-sample gather, a 3x3 quadratic fit and a dozen tests,
so torch's per-call cost (several microseconds an operation) dominated. Here the same moves and tests with the
differences in float32 (as torch computes them) and the 3x3 solves by the adjugate in float64: on the bench pairs
the same keypoints bit for bit. The differentiable path (gradients, or another device) stays in torch.

Example:
    >>> import numpy as np
    >>> z, y, x = np.meshgrid([-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0], indexing="ij")
    >>> n = (-((x - 0.2) ** 2) - (y + 0.1) ** 2 - (z - 0.3) ** 2).reshape(1, 27).astype(np.float32)
    >>> off, val, hxy = solve27(n)
    >>> [round(float(v), 3) for v in off[0]], hxy.shape
    ([0.2, -0.1, 0.3], (1, 2, 2))
"""

from __future__ import annotations

import numpy as np
import torch

_OFFSETS = np.array([(ds, dy, dx) for ds in (-1, 0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)], dtype=np.int64)


def solve27(n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``gdvision.features.detectors._solve27`` without gradients, for (K, 27) float32 samples: ``(off, val,
    hess_xy)`` (float32 differences as torch computes them, the 3x3 solve by the adjugate in float64)."""

    def v(ds: int, dy: int, dx: int) -> np.ndarray:
        return n[:, (ds + 1) * 9 + (dy + 1) * 3 + (dx + 1)]

    c = v(0, 0, 0)
    g = np.stack([v(0, 0, 1) - v(0, 0, -1), v(0, 1, 0) - v(0, -1, 0), v(1, 0, 0) - v(-1, 0, 0)], 1) * np.float32(0.5)
    dxx = v(0, 0, 1) + v(0, 0, -1) - 2 * c
    dyy = v(0, 1, 0) + v(0, -1, 0) - 2 * c
    dss = v(1, 0, 0) + v(-1, 0, 0) - 2 * c
    dxy = (v(0, 1, 1) - v(0, 1, -1) - v(0, -1, 1) + v(0, -1, -1)) * np.float32(0.25)
    dxs = (v(1, 0, 1) - v(1, 0, -1) - v(-1, 0, 1) + v(-1, 0, -1)) * np.float32(0.25)
    dys = (v(1, 1, 0) - v(1, -1, 0) - v(-1, 1, 0) + v(-1, -1, 0)) * np.float32(0.25)
    a, b, f, d, e, i = (
        t.astype(np.float64) for t in (dxx, dxy, dxs, dyy, dys, dss)
    )  # symmetric [[a b f][b d e][f e i]]
    A, B, C = d * i - e * e, f * e - b * i, b * e - d * f  # first row of the adjugate (= first column)
    E, F, I_ = a * i - f * f, b * f - a * e, a * d - b * b
    det = a * A + b * B + f * C
    g64 = g.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        sol = (
            np.stack(
                [
                    A * g64[:, 0] + B * g64[:, 1] + C * g64[:, 2],
                    B * g64[:, 0] + E * g64[:, 1] + F * g64[:, 2],
                    C * g64[:, 0] + F * g64[:, 1] + I_ * g64[:, 2],
                ],
                1,
            )
            / det[:, None]
        )
    off = (-sol).astype(np.float32)
    off[(det == 0) | ~np.isfinite(off).all(1)] = 10.0
    val = c + np.float32(0.5) * (g * off).sum(1)
    return off, val, np.stack([dxx, dxy, dxy, dyy], 1).reshape(-1, 2, 2)


def refine(
    resp: torch.Tensor, idx: torch.Tensor, border: int, lo: int, hi: int | torch.Tensor, max_moves: int, geo
) -> tuple[torch.Tensor, ...]:
    """:func:`gdvision.features.detectors.refine_extrema` without gradients on the CPU, in NumPy (the same moves,
    border and level tests; returns the same five tensors)."""
    flat = resp.detach().reshape(-1).numpy()
    cur = idx.numpy().copy()
    k = cur.shape[0]
    his = np.asarray(hi.numpy() if isinstance(hi, torch.Tensor) else hi)
    dsy = _OFFSETS  # (27, 3) ds, dy, dx
    if geo is None:
        _, L, h, w = resp.shape
        g = np.array([[0, L, h, w]], dtype=np.int64).repeat(k, 0)
        rel = ((dsy[:, 0] * h + dsy[:, 1]) * w + dsy[:, 2])[None]  # (1, 27): the same flat offsets for all
    else:
        g = geo.numpy()
        rel = (dsy[:, 0] * g[:, 2:3] + dsy[:, 1]) * g[:, 3:4] + dsy[:, 2]  # (K, 27) per candidate's stack
    done, ok = np.zeros(k, dtype=bool), np.ones(k, dtype=bool)
    f_off, f_val, f_h = np.zeros((k, 3), np.float32), np.zeros(k, np.float32), np.zeros((k, 2, 2), np.float32)
    for _ in range(max_moves):
        ai = np.flatnonzero(ok & ~done)
        if ai.size == 0:
            break
        c, (st, L, h, w) = cur[ai], g[ai].T
        b, s, y, x = c.T
        lin = st + ((b * L + s) * h + y) * w + x
        nb = np.take(flat, lin[:, None] + (rel if rel.shape[0] == 1 else rel[ai]))  # take: faster than flat[...]
        off, val, hxy = solve27(nb)
        conv = (np.abs(off) < 0.6).all(1)
        step = np.round(np.clip(off, -5, 5)).astype(np.int64)
        nxt = c.copy()
        nxt[:, 3] += step[:, 0]
        nxt[:, 2] += step[:, 1]
        nxt[:, 1] += step[:, 2]
        hi_a = his if his.ndim == 0 else his[ai]
        inside = (nxt[:, 3] >= border) & (nxt[:, 3] < w - border) & (nxt[:, 2] >= border) & (nxt[:, 2] < h - border)
        inside &= (nxt[:, 1] >= lo) & (nxt[:, 1] <= hi_a)
        done[ai[conv]] = True
        f_off[ai[conv]], f_val[ai[conv]], f_h[ai[conv]] = off[conv], val[conv], hxy[conv]
        mv = ~conv
        cur[ai[mv & inside]] = nxt[mv & inside]
        ok[ai[mv & ~inside]] = False
    keep = np.flatnonzero(ok & done)
    return tuple(torch.from_numpy(np.ascontiguousarray(t[keep])) for t in (cur, f_off, f_val, f_h)) + (
        torch.from_numpy(keep),
    )


__all__ = ["refine", "solve27"]
