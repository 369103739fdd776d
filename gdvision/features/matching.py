"""Descriptor matching: mutual nearest neighbours (MNN), Lowe's ratio test, and SMNN.

All matchers take descriptors ``da`` (N, D) and ``db`` (M, D) (L2 distance) and return ``(idx (K, 2), score (K,))``:
``idx[:, 0]`` indexes ``da``, ``idx[:, 1]`` indexes ``db``; ``score`` is the match's quality, lower is better
(the distance for MNN, the distance ratio for ratio and SMNN). Distances are computed in chunks of rows so
memory stays bounded.

- ``mnn``: a is b's nearest neighbour and b is a's.
- ``ratio``: ``d1 / d2 <= ratio`` for a's two nearest neighbours in B (Lowe 2004; 0.8 is his value).
- ``smnn``: mutual nearest neighbours whose ratio passes in both directions; score = the larger ratio.
"""

from __future__ import annotations

import torch

from gdvision._checks import check_choice
from gdvision.features.config import MATCHERS


def _two_nn(da: torch.Tensor, db: torch.Tensor, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row of ``da``: (N, 2) distances and (N, 2) indices of its two nearest rows of ``db``.

    In chunks of ``chunk`` rows: each chunk's scores (bias copy, product, top-2) stay in cache (3000 x 3100
    descriptors: 52 -> 35 ms on one CPU thread; the same values, the rows are independent).
    """
    n, m = da.shape[0], db.shape[0]
    k = min(2, m)
    dists, idxs = [], []
    nb = (db * db).sum(1)
    for s in range(0, n, chunk):
        a = da[s : s + chunk]
        # |a - b|^2 = |a|^2 - 2 (a.b - |b|^2 / 2): rank by the bracket (one fused matrix product, no other pass
        # over the N x M matrix), add |a|^2 to the two winners only
        v, i = torch.topk(torch.addmm(nb, a, db.T, beta=-0.5), k, dim=1)
        dists.append(((a * a).sum(1, keepdim=True) - 2.0 * v).clamp_min(0).sqrt())
        idxs.append(i)
    d = torch.cat(dists) if dists else da.new_zeros(0, k)
    i = torch.cat(idxs) if idxs else torch.zeros(0, k, dtype=torch.long, device=da.device)
    if k == 1:
        d = torch.cat([d, torch.full_like(d, float("inf"))], 1)
        i = torch.cat([i, i], 1)
    return d, i


def match_descriptors(
    da: torch.Tensor, db: torch.Tensor, method: str = "ratio", ratio: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Match descriptors ``da`` (N, D) to ``db`` (M, D).

    Args:
        method: ``"ratio"``, ``"mnn"`` or ``"smnn"``.
        ratio: the ratio threshold (defaults: 0.8 for ``ratio``, 0.9 for ``smnn``; unused by ``mnn``).

    Returns:
        ``(idx (K, 2) long, score (K,))``, sorted by score (best first).

    Example:
        >>> import torch
        >>> a = torch.eye(4)
        >>> idx, _ = match_descriptors(a, a[[2, 0, 3, 1]], "mnn")
        >>> sorted(idx.tolist())
        [[0, 1], [1, 3], [2, 0], [3, 2]]
    """
    check_choice(method, "matcher", MATCHERS)
    dev = da.device
    empty = (torch.zeros(0, 2, dtype=torch.long, device=dev), da.new_zeros(0))
    if da.shape[0] == 0 or db.shape[0] == 0:
        return empty
    with torch.no_grad():
        dab, iab = _two_nn(da.detach(), db.detach())
        ia = torch.arange(da.shape[0], device=dev)
        r_ab = dab[:, 0] / dab[:, 1].clamp_min(1e-12)
        if method == "ratio":
            th = 0.8 if ratio is None else ratio
            keep = r_ab <= th
            idx = torch.stack([ia[keep], iab[keep, 0]], 1)
            score = r_ab[keep]
        else:
            dba, iba = _two_nn(db.detach(), da.detach())
            mutual = iba[iab[:, 0], 0] == ia
            if method == "mnn":
                keep = mutual
                score = dab[keep, 0]
            else:
                th = 0.9 if ratio is None else ratio
                r_ba = dba[:, 0] / dba[:, 1].clamp_min(1e-12)
                r = torch.maximum(r_ab, r_ba[iab[:, 0]])
                keep = mutual & (r <= th)
                score = r[keep]
            idx = torch.stack([ia[keep], iab[keep, 0]], 1)
        order = torch.argsort(score, stable=True)
        return idx[order], score[order]
