"""Two-view geometry from point correspondences: homography (normalised DLT), fundamental matrix (8-point),
RANSAC with batched hypotheses, and, for known cameras, midpoint triangulation and the cameras' fundamental matrix.

Conventions: points are pixel coordinates ``(x, y)`` ((0, 0) = centre of the top-left pixel). A homography
``H`` maps points of A to points of B, ``[xB, yB, 1]^T ~ H [xA, yA, 1]^T``; a fundamental matrix ``F``
satisfies ``[xB, yB, 1] F [xA, yA, 1]^T = 0``. Computation is in float64 on the points' device.

RANSAC (:func:`ransac`) draws minimal samples in batches and evaluates all hypotheses of a batch at once
(one tensor op), rejects degenerate samples (collinear points, triangles whose orientation flips between
A and B) and degenerate models (a homography that folds the image: the mapped corner quadrilateral is not
convex with the original orientation, or a corner goes to infinity), scores with MSAC (truncated squared
error), runs a local optimisation (least-squares refit on the inliers) whenever the best model improves,
stops adaptively at the requested confidence, and finishes with a least-squares refit on all inliers
followed by Levenberg-Marquardt on the transfer error (homography) or a Sampson-weighted refit (fundamental).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from gdvision import homography_np as hnp

MODELS = ("homography", "fundamental")


def hartley_normalize(pts: torch.Tensor, weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Similarity-normalise (B, N, 2) points (centroid 0, mean distance sqrt 2): ``(pts_n, T (B, 3, 3))``."""
    w = torch.ones_like(pts[..., 0]) if weights is None else weights
    ws = w.sum(-1, keepdim=True).clamp_min(1e-12)
    c = (pts * w.unsqueeze(-1)).sum(-2) / ws
    d = ((pts - c.unsqueeze(-2)).norm(dim=-1) * w).sum(-1, keepdim=True) / ws
    s = math.sqrt(2.0) / d.clamp_min(1e-12)
    T = torch.zeros(*pts.shape[:-2], 3, 3, dtype=pts.dtype, device=pts.device)
    T[..., 0, 0] = s[..., 0]
    T[..., 1, 1] = s[..., 0]
    T[..., 0, 2] = -s[..., 0] * c[..., 0]
    T[..., 1, 2] = -s[..., 0] * c[..., 1]
    T[..., 2, 2] = 1.0
    return (pts - c.unsqueeze(-2)) * s.unsqueeze(-1), T


def _null_vector(A: torch.Tensor) -> torch.Tensor:
    """Unit vector minimising ``|A v|`` for (B, R, 9) A: eigenvector of the smallest eigenvalue of A^T A."""
    M = A.transpose(-1, -2) @ A
    _, vecs = torch.linalg.eigh(M)
    return vecs[..., :, 0]


def homography_dlt(pa: torch.Tensor, pb: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Normalised DLT: (B, N, 2) points of A and B (N >= 4) -> (B, 3, 3) homographies A -> B (``H[2,2] = 1``).

    ``weights`` (B, N) >= 0 weight each correspondence (0 = ignore).

    Example:
        >>> import torch
        >>> H = torch.tensor([[1.1, 0.1, 5.0], [-0.05, 0.9, 2.0], [1e-4, 2e-4, 1.0]], dtype=torch.float64)
        >>> pa = torch.rand(1, 10, 2, dtype=torch.float64) * 100
        >>> from gdvision.coords import apply_homography
        >>> Hf = homography_dlt(pa, apply_homography(H, pa))
        >>> bool(torch.allclose(Hf[0], H, atol=1e-8))
        True
    """
    pa, pb = pa.to(torch.float64), pb.to(torch.float64)
    w = weights.to(torch.float64) if weights is not None else None
    na, Ta = hartley_normalize(pa, w)
    nb, Tb = hartley_normalize(pb, w)
    x, y = na[..., 0], na[..., 1]
    u, v = nb[..., 0], nb[..., 1]
    o, z = torch.ones_like(x), torch.zeros_like(x)
    r1 = torch.stack([-x, -y, -o, z, z, z, u * x, u * y, u], -1)
    r2 = torch.stack([z, z, z, -x, -y, -o, v * x, v * y, v], -1)
    A = torch.cat([r1, r2], -2)
    if w is not None:
        A = A * torch.cat([w, w], -1).sqrt().unsqueeze(-1)
    Hn = _null_vector(A).reshape(*pa.shape[:-2], 3, 3)
    H = torch.linalg.solve(Tb, Hn @ Ta)
    return H / _safe(H[..., 2:3, 2:3])


def _safe(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x.abs() < 1e-15, torch.full_like(x, 1e-15), x)


def fundamental_8point(pa: torch.Tensor, pb: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Normalised 8-point algorithm with rank-2 enforcement: (B, N, 2) x2 (N >= 8) -> (B, 3, 3), ``|F| = 1``.

    Example:
        >>> import torch
        >>> X = torch.rand(1, 20, 3, dtype=torch.float64) * 4 + torch.tensor([0.0, 0.0, 5.0], dtype=torch.float64)
        >>> pa = X[..., :2] / X[..., 2:] * 100
        >>> Xb = X + torch.tensor([1.0, 0.2, 0.0], dtype=torch.float64)
        >>> pb = Xb[..., :2] / Xb[..., 2:] * 100
        >>> F = fundamental_8point(pa, pb)
        >>> ha = torch.cat([pa, torch.ones_like(pa[..., :1])], -1)
        >>> hb = torch.cat([pb, torch.ones_like(pb[..., :1])], -1)
        >>> bool(sampson_distance(F, pa, pb).max() < 1e-6)
        True
    """
    pa, pb = pa.to(torch.float64), pb.to(torch.float64)
    w = weights.to(torch.float64) if weights is not None else None
    na, Ta = hartley_normalize(pa, w)
    nb, Tb = hartley_normalize(pb, w)
    x, y = na[..., 0], na[..., 1]
    u, v = nb[..., 0], nb[..., 1]
    A = torch.stack([u * x, u * y, u, v * x, v * y, v, x, y, torch.ones_like(x)], -1)
    if w is not None:
        A = A * w.sqrt().unsqueeze(-1)
    Fn = _null_vector(A).reshape(*pa.shape[:-2], 3, 3)
    U, S, Vh = torch.linalg.svd(Fn)
    S = S.clone()
    S[..., 2] = 0
    Fn = U @ torch.diag_embed(S) @ Vh
    F = Tb.transpose(-1, -2) @ Fn @ Ta
    return F / F.flatten(-2).norm(dim=-1).clamp_min(1e-300)[..., None, None]


def transfer_error(H: torch.Tensor, pa: torch.Tensor, pb: torch.Tensor) -> torch.Tensor:
    """(B, N) distances ``|H(pa) - pb|`` in B's pixels for H (B, 3, 3) and points (N, 2) or (B, N, 2)."""
    pa = pa.to(H.dtype)
    pb = pb.to(H.dtype)
    X = H[..., 0:1, 0] * pa[..., 0] + H[..., 0:1, 1] * pa[..., 1] + H[..., 0:1, 2]
    Y = H[..., 1:2, 0] * pa[..., 0] + H[..., 1:2, 1] * pa[..., 1] + H[..., 1:2, 2]
    Z = H[..., 2:3, 0] * pa[..., 0] + H[..., 2:3, 1] * pa[..., 1] + H[..., 2:3, 2]
    bad = Z <= 1e-12
    Z = torch.where(bad, torch.ones_like(Z), Z)
    e = torch.sqrt((X / Z - pb[..., 0]) ** 2 + (Y / Z - pb[..., 1]) ** 2)
    return torch.where(bad, torch.full_like(e, float("inf")), e)


def sampson_distance(F: torch.Tensor, pa: torch.Tensor, pb: torch.Tensor) -> torch.Tensor:
    """(B, N) Sampson distances (pixels, first-order geometric error) of correspondences under F (B, 3, 3)."""
    pa = pa.to(F.dtype)
    pb = pb.to(F.dtype)
    ha = torch.cat([pa, torch.ones_like(pa[..., :1])], -1)
    hb = torch.cat([pb, torch.ones_like(pb[..., :1])], -1)
    Fa = ha @ F.transpose(-1, -2)  # (B,N,3) = (F a)^T
    Ftb = hb @ F  # (B,N,3) = (F^T b)^T
    num = (hb * Fa).sum(-1)
    den = Fa[..., 0] ** 2 + Fa[..., 1] ** 2 + Ftb[..., 0] ** 2 + Ftb[..., 1] ** 2
    return num.abs() / den.clamp_min(1e-300).sqrt()


def triangulate_midpoint(
    K_a: torch.Tensor, T_a: torch.Tensor, K_b: torch.Tensor, T_b: torch.Tensor, pa: torch.Tensor, pb: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Midpoint triangulation of correspondences ``pa`` (N, 2) in camera A and ``pb`` (N, 2) in camera B.

    Cameras: intrinsics ``K`` (3, 3, pixels) and world-to-camera poses ``T`` (4, 4, ``X_cam = T @ [X_world, 1]``).
    Each pixel's ray is ``c + s * R^T K^-1 [x, y, 1]``, so its parameter ``s`` is the depth (z) in that camera;
    the two rays' closest points are found in closed form and their midpoint is the point.

    Returns ``(X (N, 3) world points, depth_a (N,), depth_b (N,))`` in float64: the depths along each ray of its
    closest point (negative = behind that camera); NaN for (nearly) parallel rays.

    Example:
        >>> import torch
        >>> K = torch.tensor([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]], dtype=torch.float64)
        >>> Tb = torch.eye(4, dtype=torch.float64); Tb[0, 3] = -1.0       # camera B one unit to the right
        >>> X = torch.tensor([[0.5, -0.2, 4.0], [-1.0, 0.3, 9.0]], dtype=torch.float64)
        >>> pa = X[:, :2] / X[:, 2:] * 100 + torch.tensor([50.0, 40.0], dtype=torch.float64)
        >>> pb = (X[:, :2] + torch.tensor([-1.0, 0.0], dtype=torch.float64)) / X[:, 2:] * 100 + pa.new_tensor([50, 40])
        >>> Xt, za, zb = triangulate_midpoint(K, torch.eye(4), K, Tb, pa, pb)
        >>> bool(torch.allclose(Xt, X)), [round(z, 9) for z in za.tolist()]
        (True, [4.0, 9.0])
    """
    f64 = torch.float64
    pa, pb = pa.to(f64), pb.to(f64)

    def rays(K: torch.Tensor, T: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        T = T.to(f64).to(p.device)
        R, t = T[:3, :3], T[:3, 3]
        h = torch.cat([p, torch.ones_like(p[:, :1])], 1)
        d = torch.linalg.solve(K.to(f64).to(p.device), h.T).T @ R  # R^T K^-1 [x, y, 1], camera z = 1
        return -R.T @ t, d

    ca, da = rays(K_a, T_a, pa)
    cb, db = rays(K_b, T_b, pb)
    w = ca - cb  # closest points: minimise |w + s da - u db| over s, u
    a, b, c = (da * da).sum(1), (da * db).sum(1), (db * db).sum(1)
    d, e = da @ w, db @ w
    den = a * c - b * b
    bad = den.abs() <= 1e-12 * a * c
    den = torch.where(bad, torch.ones_like(den), den)
    s = (b * e - c * d) / den
    u = (a * e - b * d) / den
    nan = torch.full_like(s, float("nan"))
    s, u = torch.where(bad, nan, s), torch.where(bad, nan, u)
    X = 0.5 * ((ca + s[:, None] * da) + (cb + u[:, None] * db))
    return X, s, u


def fundamental_from_cameras(
    K_a: torch.Tensor, T_a: torch.Tensor, K_b: torch.Tensor, T_b: torch.Tensor
) -> torch.Tensor:
    """The fundamental matrix (3, 3) float64 of two known cameras: ``[xB, yB, 1] F [xA, yA, 1]^T = 0``.

    With the relative pose ``R, t`` of B from A (``T_b @ T_a^-1``): ``F = K_b^-T [t]_x R K_a^-1``, scaled to unit
    Frobenius norm. Cameras as in :func:`triangulate_midpoint`.

    Example:
        >>> import torch
        >>> K = torch.tensor([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]], dtype=torch.float64)
        >>> Tb = torch.eye(4, dtype=torch.float64); Tb[0, 3] = -1.0
        >>> F = fundamental_from_cameras(K, torch.eye(4), K, Tb)
        >>> pa, pb = torch.tensor([[60.0, 30.0]]), torch.tensor([[35.0, 30.0]])   # same row: on the epipolar line
        >>> float(sampson_distance(F[None], pa, pb)[0, 0])
        0.0
    """
    f64 = torch.float64
    rel = T_b.to(f64) @ torch.linalg.inv(T_a.to(f64))
    R, t = rel[:3, :3], rel[:3, 3]
    z = torch.zeros((), dtype=f64)
    tx = torch.stack([torch.stack([z, -t[2], t[1]]), torch.stack([t[2], z, -t[0]]), torch.stack([-t[1], t[0], z])])
    F = torch.linalg.inv(K_b.to(f64)).T @ tx @ R @ torch.linalg.inv(K_a.to(f64))
    return F / F.norm().clamp_min(1e-300)


def _cross(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0])


def _basis(p: torch.Tensor) -> torch.Tensor:
    """(K, 3, 3) matrices mapping e1, e2, e3, (1, 1, 1) to the 4 points (K, 4, 2) (a projective basis)."""
    x, y = p[..., 0], p[..., 1]
    # solve [p1 p2 p3] lam = p4 (homogeneous columns) by Cramer's rule
    a = torch.stack([x[:, :3], y[:, :3], torch.ones_like(x[:, :3])], 1)  # (K, 3, 3), columns p1..p3
    c1, c2, c3 = a[:, :, 0], a[:, :, 1], a[:, :, 2]
    b = torch.stack([x[:, 3], y[:, 3], torch.ones_like(x[:, 3])], 1)
    l1 = torch.linalg.cross(c2, c3).mul_(b).sum(1)
    l2 = torch.linalg.cross(c3, c1).mul_(b).sum(1)
    l3 = torch.linalg.cross(c1, c2).mul_(b).sum(1)
    return a * torch.stack([l1, l2, l3], 1).unsqueeze(1)


def homography_4pt(sa: torch.Tensor, sb: torch.Tensor) -> torch.Tensor:
    """Exact homographies (K, 3, 3) through 4-point samples ``sa`` -> ``sb`` (K, 4, 2), in closed form.

    ``H = B adj(A)`` with ``A``, ``B`` the projective bases of the samples (:func:`_basis`), scaled to
    ``H[2, 2] = 1``; the same model as :func:`homography_dlt` on 4 points (up to rounding) without an
    eigendecomposition. Degenerate samples (3 collinear points) give non-finite or zero matrices.

    Example:
        >>> import torch
        >>> H = torch.tensor([[1.1, 0.1, 5.0], [-0.05, 0.9, 2.0], [1e-4, 2e-4, 1.0]], dtype=torch.float64)
        >>> pa = torch.tensor([[[0.0, 0.0], [100.0, 10.0], [90.0, 80.0], [5.0, 70.0]]], dtype=torch.float64)
        >>> from gdvision.coords import apply_homography
        >>> bool(torch.allclose(homography_4pt(pa, apply_homography(H, pa))[0], H, atol=1e-10))
        True
    """
    A, B = _basis(sa), _basis(sb)
    r0, r1, r2 = A[:, 0], A[:, 1], A[:, 2]
    adj = torch.stack([torch.linalg.cross(r1, r2), torch.linalg.cross(r2, r0), torch.linalg.cross(r0, r1)], 2)
    H = B @ adj
    return H / _safe(H[:, 2:3, 2:3])


def _score_homographies(H: torch.Tensor, ph: torch.Tensor, pb: torch.Tensor, thr2: float) -> torch.Tensor:
    """(K,) MSAC costs ``sum min(|H(pa) - pb|^2, thr2)`` of homographies H (K, 3, 3); ``ph`` (3, N) homogeneous pa."""
    m = H @ ph  # (K, 3, N)
    z = m[:, 2]
    bad = z <= 1e-12
    iz = torch.where(bad, torch.ones_like(z), z).reciprocal_()
    dx = m[:, 0].mul_(iz).sub_(pb[:, 0])
    dy = m[:, 1].mul_(iz).sub_(pb[:, 1])
    d2 = dx.mul_(dx).addcmul_(dy, dy)
    return d2.masked_fill_(bad, thr2).clamp_(max=thr2).sum(1)


def good_homography_samples(sa: torch.Tensor, sb: torch.Tensor, min_area: float = 1e-3) -> torch.Tensor:
    """(K,) bool for 4-point samples (K, 4, 2) in A and B (normalised coordinates).

    False when any 3 points are (nearly) collinear in either image, or when a triangle's orientation
    differs between A and B (no homography that keeps the sample in front of the camera does that).
    """
    i, j, k = [0, 0, 0, 1], [1, 1, 2, 2], [2, 3, 3, 3]  # the four triangles (0,1,2) (0,1,3) (0,2,3) (1,2,3) at once
    ca = _cross(sa[:, i], sa[:, j], sa[:, k])  # (K, 4)
    cb = _cross(sb[:, i], sb[:, j], sb[:, k])
    return ((ca.abs() > min_area) & (cb.abs() > min_area) & ((ca > 0) == (cb > 0))).all(1)


def homography_folds(H: torch.Tensor, width: float, height: float) -> torch.Tensor:
    """(B,) bool: True where H (B, 3, 3) folds the rectangle [0, w-1] x [0, h-1] of A.

    A valid homography keeps the mapped corners in front (``w > 0``) and the corner quadrilateral convex
    with its original orientation.

    Example:
        >>> import torch
        >>> flip = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))[None]
        >>> homography_folds(torch.cat([torch.eye(3, dtype=torch.float64)[None], flip]), 100, 80).tolist()
        [False, True]
    """
    c = torch.tensor(
        [[0, 0, 1], [width - 1, 0, 1], [width - 1, height - 1, 1], [0, height - 1, 1]], dtype=H.dtype, device=H.device
    )
    m = c @ H.transpose(-1, -2)  # (B,4,3)
    wz = m[..., 2]
    front = (wz > 1e-12).all(-1)
    p = m[..., :2] / torch.where(wz.abs() < 1e-12, torch.ones_like(wz), wz).unsqueeze(-1)
    convex = (_cross(p, p[:, [1, 2, 3, 0]], p[:, [2, 3, 0, 1]]) > 0).all(1)  # each corner's turn, all at once
    return ~(front & convex)


@dataclass
class RansacResult:
    """Outcome of :func:`ransac`.

    Attributes:
        model: (3, 3) float64 homography A -> B or fundamental matrix (None when nothing was found).
        inliers: (N,) bool.
        iterations: hypotheses drawn.
        errors: (N,) residuals under the final model (transfer error or Sampson distance, pixels).
    """

    model: torch.Tensor | None
    inliers: torch.Tensor
    iterations: int
    errors: torch.Tensor


def _fit(model: str, pa: torch.Tensor, pb: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
    return homography_dlt(pa, pb, w) if model == "homography" else fundamental_8point(pa, pb, w)


def _err(model: str, M: torch.Tensor, pa: torch.Tensor, pb: torch.Tensor) -> torch.Tensor:
    return transfer_error(M, pa, pb) if model == "homography" else sampson_distance(M, pa, pb)


def _local_opt(model: str, M: torch.Tensor, pa: torch.Tensor, pb: torch.Tensor, thr: float, rounds: int = 4):
    """Least-squares refits on the inliers until the inlier set stops growing; returns (model, errors)."""
    e = _err(model, M[None], pa, pb)[0]
    best_M, best_e, best_n = M, e, int((e < thr).sum())
    need = 4 if model == "homography" else 8
    for _ in range(rounds):
        inl = best_e < thr
        if int(inl.sum()) < need:
            break
        M2 = _fit(model, pa[inl][None], pb[inl][None])[0]
        if not bool(torch.isfinite(M2).all()):
            break
        e2 = _err(model, M2[None], pa, pb)[0]
        n2 = int((e2 < thr).sum())
        if n2 < best_n or (n2 == best_n and float(e2[e2 < thr].sum()) >= float(best_e[best_e < thr].sum())):
            break
        best_M, best_e, best_n = M2, e2, n2
    return best_M, best_e


def refine_homography(H: torch.Tensor, pa: torch.Tensor, pb: torch.Tensor, iters: int = 20) -> torch.Tensor:
    """Levenberg-Marquardt on the squared transfer error ``|H(pa) - pb|^2`` over (N, 2) correspondences.

    Returns the refined (3, 3) H (``H[2, 2] = 1``, float64, on H's device); the input is returned when fewer than
    5 points are given. The steps of :func:`gdvision.optim.minimize_lm` (no gradients; computed in NumPy).
    """
    if pa.shape[0] < 5:
        return H
    f64 = torch.float64
    Hn = hnp.refine_lm(*(t.detach().to(f64).cpu().numpy() for t in (H, pa, pb)), iters=iters)
    return torch.from_numpy(Hn).to(H.device)


def ransac(
    pa: torch.Tensor,
    pb: torch.Tensor,
    model: str = "homography",
    threshold: float = 3.0,
    confidence: float = 0.999,
    max_iters: int = 10000,
    batch_size: int = 512,
    seed: int | None = 0,
    image_size: tuple[float, float] | None = None,
    refine: bool = True,
) -> RansacResult:
    """Robustly fit a homography or fundamental matrix to correspondences ``pa`` (N, 2) -> ``pb`` (N, 2).

    Args:
        model: ``"homography"`` (A -> B, 4-point samples) or ``"fundamental"`` (8-point samples).
        threshold: inlier threshold in pixels (transfer error in B, or Sampson distance).
        confidence: stop once an all-inlier sample has been drawn with this probability.
        max_iters: cap on hypotheses; batch_size: hypotheses evaluated per batch.
        seed: seed of the sampler (reproducible); None: nondeterministic.
        image_size: (width, height) of A, for the folding test (default: the bounding box of ``pa``).
        refine: final least-squares refit and (homography) Levenberg-Marquardt on the inliers.

    Example:
        >>> import torch
        >>> from gdvision.coords import apply_homography
        >>> g = torch.Generator().manual_seed(0)
        >>> H = torch.tensor([[0.9, 0.1, 10.0], [-0.1, 1.0, 5.0], [1e-4, 0.0, 1.0]], dtype=torch.float64)
        >>> pa = torch.rand(100, 2, generator=g, dtype=torch.float64) * 200
        >>> pb = apply_homography(H, pa)
        >>> pb[:40] = torch.rand(40, 2, generator=g, dtype=torch.float64) * 200
        >>> res = ransac(pa, pb, threshold=1.0)
        >>> int(res.inliers[40:].sum()), bool(torch.allclose(res.model, H, atol=1e-6))
        (60, True)
    """
    if model not in MODELS:
        raise ValueError(f"unknown model '{model}': use one of {', '.join(MODELS)}")
    dev = pa.device
    pa = pa.to(torch.float64)
    pb = pb.to(torch.float64)
    n = pa.shape[0]
    s = 4 if model == "homography" else 8
    if n < s:
        return RansacResult(None, torch.zeros(n, dtype=torch.bool, device=dev), 0, pa.new_full((n,), float("inf")))
    if image_size is None:
        image_size = (float(pa[:, 0].max()) + 1, float(pa[:, 1].max()) + 1)
    hom = model == "homography"
    pa_np, pb_np = pa.cpu().numpy(), pb.cpu().numpy()
    # normalised coordinates for the degeneracy tests of the samples
    na, nb = (torch.from_numpy(hnp.normalize(q)[0]).to(dev) for q in (pa_np, pb_np))
    gen = torch.Generator(device="cpu")
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    thr2 = threshold * threshold
    ph = torch.cat([pa, torch.ones_like(pa[:, :1])], 1).T.contiguous()  # (3, n) homogeneous points of A
    best_cost = float("inf")
    best_M: torch.Tensor | None = None
    best_e = None
    drawn = 0
    needed = max_iters
    log1c = math.log(max(1.0 - confidence, 1e-300))
    while drawn < min(needed, max_iters):
        k = min(batch_size, max_iters - drawn)
        idx = torch.randint(0, n, (k, s), generator=gen).to(dev)
        drawn += k
        srt = torch.sort(idx, 1).values
        ok = (srt[:, 1:] != srt[:, :-1]).all(1)
        if hom:
            ok &= good_homography_samples(na[idx], nb[idx])
        idx = idx[ok]
        if idx.shape[0] == 0:
            continue
        # homography: the exact 4-point model in closed form (no eigendecomposition per sample)
        M = homography_4pt(pa[idx], pb[idx]) if hom else _fit(model, pa[idx], pb[idx])
        fin = torch.isfinite(M).flatten(1).all(1)
        if hom:
            fin &= ~homography_folds(
                torch.where(fin[:, None, None], M, torch.eye(3, dtype=M.dtype, device=dev)), *image_size
            )
        M = M[fin]
        if M.shape[0] == 0:
            continue
        if hom:  # squared errors only, one (k, 3, n) product; the winner's errors afterwards
            cost = _score_homographies(M, ph, pb, thr2)
        else:
            e = _err(model, M, pa, pb)  # (k, n)
            cost = torch.clamp(e * e, max=thr2).sum(1)
        j = int(torch.argmin(cost))
        if float(cost[j]) < best_cost:
            if hom:
                Mj, ej = hnp.local_opt(M[j].cpu().numpy(), pa_np, pb_np, threshold)
                cj = float(np.minimum(ej * ej, thr2).sum())
            else:
                Mj, ej = _local_opt(model, M[j], pa, pb, threshold)
                cj = float(torch.clamp(ej * ej, max=thr2).sum())
            if cj > float(cost[j]):
                Mj, cj = M[j], float(cost[j])
                if hom:
                    Mj = Mj.cpu().numpy()
                    ej = hnp.transfer_errors(Mj, pa_np, pb_np)
                else:
                    ej = e[j]
            best_cost, best_M, best_e = cj, Mj, ej
            w = float((best_e < threshold).sum()) / n
            p = w**s
            if p >= 1.0:
                needed = drawn
            elif p > 0:
                needed = int(math.ceil(log1c / math.log1p(-p)))
    if best_M is None:
        return RansacResult(None, torch.zeros(n, dtype=torch.bool, device=dev), drawn, pa.new_full((n,), float("inf")))
    if hom:
        M = best_M
        inl = best_e < threshold
        if refine and int(inl.sum()) >= s + 1:
            M2 = hnp.refine_lm(hnp.dlt(pa_np[inl], pb_np[inl]), pa_np[inl], pb_np[inl])
            if np.isfinite(M2).all() and not bool(homography_folds(torch.from_numpy(M2)[None], *image_size)[0]):
                e2 = hnp.transfer_errors(M2, pa_np, pb_np)
                if int((e2 < threshold).sum()) >= int(inl.sum()) * 0.98:
                    M, best_e = M2, e2
        best_e = torch.from_numpy(best_e).to(dev)
        return RansacResult(torch.from_numpy(M).to(dev), best_e < threshold, drawn, best_e)
    M = best_M
    inl = best_e < threshold
    if refine and int(inl.sum()) >= s + 1:
        M2 = _fit(model, pa[inl][None], pb[inl][None])[0]
        # Sampson-weighted refits (iteratively reweighted 8-point)
        for _ in range(3):
            ha = torch.cat([pa[inl], torch.ones_like(pa[inl][:, :1])], 1)
            hb = torch.cat([pb[inl], torch.ones_like(pb[inl][:, :1])], 1)
            Fa = ha @ M2.T
            Ftb = hb @ M2
            den = Fa[:, 0] ** 2 + Fa[:, 1] ** 2 + Ftb[:, 0] ** 2 + Ftb[:, 1] ** 2
            wts = 1.0 / den.clamp_min(1e-300)
            M2 = fundamental_8point(pa[inl][None], pb[inl][None], (wts / wts.max())[None])[0]
        if bool(torch.isfinite(M2).all()):
            e2 = _err(model, M2[None], pa, pb)[0]
            if int((e2 < threshold).sum()) >= int(inl.sum()) * 0.98:
                M, best_e = M2, e2
    return RansacResult(M, best_e < threshold, drawn, best_e)
