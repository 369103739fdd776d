"""Homography RANSAC's serial tail in NumPy: Hartley normalisation, the DLT, transfer errors, the local optimisation
and Levenberg-Marquardt of :mod:`gdvision.geometry` on one model and a few hundred points (float64).

At this size torch's per-operation cost (several microseconds) dominates; NumPy's is a few times lower. The same
arithmetic as the torch functions they stand for (:func:`gdvision.geometry.hartley_normalize`,
:func:`~gdvision.geometry.homography_dlt`, :func:`~gdvision.geometry.transfer_error`, ``_local_opt`` and
:func:`gdvision.optim.minimize_lm`), so the same models up to rounding.

Example:
    >>> import numpy as np
    >>> H = np.array([[1.1, 0.1, 5.0], [-0.05, 0.9, 2.0], [1e-4, 2e-4, 1.0]])
    >>> pa = np.random.default_rng(0).uniform(0, 100, (10, 2))
    >>> q = np.c_[pa, np.ones(10)] @ H.T
    >>> pb = q[:, :2] / q[:, 2:]
    >>> bool(np.allclose(dlt(pa, pb), H, atol=1e-8)), bool(transfer_errors(H, pa, pb).max() < 1e-9)
    (True, True)
"""

from __future__ import annotations

import math

import numpy as np


def normalize(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`gdvision.geometry.hartley_normalize` of (N, 2) points, unweighted: ``(pts_n, T (3, 3))``."""
    c = p.mean(0)
    q = p - c
    s = math.sqrt(2.0) / max(float(np.sqrt((q * q).sum(1)).mean()), 1e-12)
    return q * s, np.array([[s, 0.0, -s * c[0]], [0.0, s, -s * c[1]], [0.0, 0.0, 1.0]])


def dlt(pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    """:func:`gdvision.geometry.homography_dlt` of (N, 2) points (unweighted) -> (3, 3), ``H[2, 2] = 1``."""
    na, Ta = normalize(pa)
    nb, Tb = normalize(pb)
    n = na.shape[0]
    A = np.zeros((2 * n, 9))
    A[:n, 0:2] = -na
    A[:n, 2] = -1.0
    A[:n, 6:8] = nb[:, :1] * na
    A[:n, 8] = nb[:, 0]
    A[n:, 3:5] = -na
    A[n:, 5] = -1.0
    A[n:, 6:8] = nb[:, 1:] * na
    A[n:, 8] = nb[:, 1]
    H = np.linalg.solve(Tb, np.linalg.eigh(A.T @ A)[1][:, 0].reshape(3, 3) @ Ta)
    h22 = H[2, 2]
    return H / (1e-15 if abs(h22) < 1e-15 else h22)


def transfer_errors(H: np.ndarray, pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    """:func:`gdvision.geometry.transfer_error` of one (3, 3) H over (N, 2) points -> (N,) (inf behind the camera)."""
    x, y = pa[:, 0], pa[:, 1]
    Z = H[2, 0] * x + H[2, 1] * y + H[2, 2]
    bad = Z <= 1e-12
    iz = 1.0 / np.where(bad, 1.0, Z)
    dx = (H[0, 0] * x + H[0, 1] * y + H[0, 2]) * iz - pb[:, 0]
    dy = (H[1, 0] * x + H[1, 1] * y + H[1, 2]) * iz - pb[:, 1]
    e = np.sqrt(dx * dx + dy * dy)
    e[bad] = np.inf
    return e


def local_opt(M: np.ndarray, pa: np.ndarray, pb: np.ndarray, thr: float, rounds: int = 4):
    """``gdvision.geometry._local_opt`` for a homography (NumPy): ``(model, errors)``."""
    best_M, best_e = M, transfer_errors(M, pa, pb)
    best_in = best_e < thr
    for _ in range(rounds):
        if int(best_in.sum()) < 4:
            break
        M2 = dlt(pa[best_in], pb[best_in])
        if not np.isfinite(M2).all():
            break
        e2 = transfer_errors(M2, pa, pb)
        in2 = e2 < thr
        n2, n1 = int(in2.sum()), int(best_in.sum())
        if n2 < n1 or (n2 == n1 and float(e2[in2].sum()) >= float(best_e[best_in].sum())):
            break
        best_M, best_e, best_in = M2, e2, in2
    return best_M, best_e


def refine_lm(H: np.ndarray, pa: np.ndarray, pb: np.ndarray, iters: int = 20) -> np.ndarray:
    """:func:`gdvision.geometry.refine_homography` in NumPy: the steps of :func:`gdvision.optim.minimize_lm`
    (``StepConfig(method="lm", iters, tol=1e-10)``, unit weights, at least 8 residuals) on the 8 parameters of
    ``H / H[2, 2]``."""
    if pa.shape[0] < 5:
        return H
    x, y = pa[:, 0], pa[:, 1]
    n = x.shape[0]
    J = np.zeros((2 * n, 8))

    def residuals(h: np.ndarray) -> tuple[np.ndarray, float]:
        Z = h[6] * x + h[7] * y + 1.0
        Z = np.where(np.abs(Z) < 1e-12, 1e-12, Z)
        iz = 1.0 / Z
        u = (h[0] * x + h[1] * y + h[2]) * iz
        v = (h[3] * x + h[4] * y + h[5]) * iz
        r = np.concatenate([u - pb[:, 0], v - pb[:, 1]])
        xi, yi = x * iz, y * iz
        J[:n, 0], J[:n, 1], J[:n, 2] = xi, yi, iz
        J[n:, 3], J[n:, 4], J[n:, 5] = xi, yi, iz
        J[:n, 6], J[:n, 7] = -u * xi, -u * yi
        J[n:, 6], J[n:, 7] = -v * xi, -v * yi
        cost = float((r * r).sum()) / (2 * n)
        return r, (cost if math.isfinite(cost) and 2 * n >= 8 else math.inf)

    h22 = float(H[2, 2])
    Hn = H / (1e-15 if abs(h22) < 1e-15 else h22)
    p = Hn.reshape(-1)[:8].copy()
    r, cost = residuals(p)
    A, g = J.T @ J, J.T @ r
    lam = 1e-4
    active = math.isfinite(cost)
    tiny = 1e-12 * np.eye(8)
    for _ in range(iters):
        if not active:
            break
        M = A + lam * np.diag(np.maximum(np.diag(A), 1e-12)) + tiny
        try:
            delta = -np.linalg.solve(M, g)
        except np.linalg.LinAlgError:
            delta = np.zeros(8)
        delta = np.where(np.isfinite(delta), delta, 0.0)
        p_new = p + delta
        r2, cost2 = residuals(p_new)
        accept = cost2 <= cost
        rel = (cost - cost2) / max(cost, 1e-30)
        lam = max(lam * 0.25, 1e-9) if accept else lam * 8.0
        done = (accept and rel < 1e-10) or float(np.abs(delta).max()) < 1e-7 or lam > 1e8
        if accept:
            p, cost, A, g = p_new, cost2, J.T @ J, J.T @ r2
        active = not done
    if not math.isfinite(cost):
        return Hn
    return np.append(p, 1.0).reshape(3, 3)


__all__ = ["dlt", "local_opt", "normalize", "refine_lm", "transfer_errors"]
