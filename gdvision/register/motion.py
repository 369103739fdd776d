"""Motion models for registration and their parameterisation.

A motion is a 3x3 matrix acting on *centred* coordinates ``u = (x - c) / s`` where ``c`` is the centre of
image A (pixels) and ``s = max(W, H) / 2`` (so the image spans about [-1, 1]; see :mod:`gdvision.coords`, which
also converts between centred motions and pixel homographies). A parameter vector ``q`` of a
model describes a small update ``M(q)`` around the identity (``M(0) = I``), composed on the left of the
current estimate: ``Hn <- M(q) @ Hn``. Parameters are therefore dimensionless and of the same size at
every pyramid level, which keeps Gauss-Newton systems well-conditioned from coarse to fine.

=============  ==  ==========================================================
model          P   M(q)
=============  ==  ==========================================================
translation    2   [[1, 0, tx], [0, 1, ty], [0, 0, 1]]
euclidean      3   [[cos t, -sin t, tx], [sin t, cos t, ty], [0, 0, 1]]
similarity     4   [[1 + a, -b, tx], [b, 1 + a, ty], [0, 0, 1]]
affine         6   [[1 + q0, q1, q2], [q3, 1 + q4, q5], [0, 0, 1]]
homography     8   [[1 + q0, q1, q2], [q3, 1 + q4, q5], [q6, q7, 1]]
=============  ==  ==========================================================
"""

from __future__ import annotations

import torch

from gdvision._checks import check_choice
from gdvision.register.config import MODELS

#: Models fitted in turn at the coarsest level before the requested one (each is a subset of the next).
LADDER: dict[str, list[str]] = {
    "translation": ["translation"],
    "euclidean": ["translation", "euclidean"],
    "similarity": ["translation", "similarity"],
    "affine": ["translation", "affine"],
    "homography": ["translation", "affine", "homography"],
}


def check_model(model: str) -> int:
    """Number of parameters of ``model``; UsageError for an unknown name.

    >>> check_model("affine")
    6
    """
    return MODELS[check_choice(model, "model", tuple(MODELS))]


def model_matrix(q: torch.Tensor, model: str) -> torch.Tensor:
    """Update matrices ``M(q)`` (B, 3, 3) for parameters ``q`` (B, P) of ``model``; ``M(0) = I``.

    Example:
        >>> import torch
        >>> model_matrix(torch.tensor([[0.1, -0.2]]), "translation")[0, :2, 2]
        tensor([ 0.1000, -0.2000])
    """
    check_model(model)
    b = q.shape[0]
    one = torch.ones(b, dtype=q.dtype, device=q.device)
    zero = torch.zeros_like(one)
    if model == "translation":
        rows = [one, zero, q[:, 0], zero, one, q[:, 1], zero, zero, one]
    elif model == "euclidean":
        c, s = torch.cos(q[:, 0]), torch.sin(q[:, 0])
        rows = [c, -s, q[:, 1], s, c, q[:, 2], zero, zero, one]
    elif model == "similarity":
        rows = [1 + q[:, 0], -q[:, 1], q[:, 2], q[:, 1], 1 + q[:, 0], q[:, 3], zero, zero, one]
    elif model == "affine":
        rows = [1 + q[:, 0], q[:, 1], q[:, 2], q[:, 3], 1 + q[:, 4], q[:, 5], zero, zero, one]
    else:
        rows = [1 + q[:, 0], q[:, 1], q[:, 2], q[:, 3], 1 + q[:, 4], q[:, 5], q[:, 6], q[:, 7], one]
    return torch.stack(rows, dim=1).view(b, 3, 3)


def model_matrix_jacobian(q: torch.Tensor, model: str) -> torch.Tensor:
    """``dM(q) / dq`` at ``q`` (B, P) as (B, P, 3, 3), computed by autograd.

    Items are independent (``M_b`` depends on ``q_b`` only), so the Jacobian of ``sum_b M_b`` with respect to
    ``q`` holds every item's own Jacobian.
    """
    check_model(model)
    jac = torch.autograd.functional.jacobian(lambda v: model_matrix(v, model).sum(0), q)  # (3, 3, B, P)
    return jac.permute(2, 3, 0, 1)


def fit_motion(pa: torch.Tensor, pb: torch.Tensor, model: str) -> torch.Tensor:
    """Least-squares pixel matrix (3, 3) float64 of ``model`` mapping points ``pa`` (N, 2) onto ``pb`` (N, 2).

    translation: the mean displacement; euclidean: rotation + translation (Procrustes); similarity and affine:
    linear least squares; homography: the normalised DLT (:func:`gdvision.geometry.homography_dlt`).
    Used to turn feature matches (e.g. the inliers of a RANSAC homography) into a start of that model.

    Example:
        >>> import torch
        >>> pa = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
        >>> pb = pa @ torch.tensor([[0.0, 1.0], [-1.0, 0.0]]) + 5  # rotated by 90 degrees, shifted by (5, 5)
        >>> [round(v, 6) + 0.0 for v in fit_motion(pa, pb, "euclidean")[0].tolist()]
        [0.0, -1.0, 5.0]
    """
    check_model(model)
    pa, pb = pa.to(torch.float64), pb.to(torch.float64)
    M = torch.eye(3, dtype=torch.float64, device=pa.device)
    if model == "homography":
        from gdvision.geometry import homography_dlt

        H = homography_dlt(pa[None], pb[None])[0]
        return H / H[2, 2]
    ca, cb = pa.mean(0), pb.mean(0)
    da, db = pa - ca, pb - cb
    if model == "translation":
        A = torch.eye(2, dtype=torch.float64, device=pa.device)
    elif model == "euclidean":
        u, _, vt = torch.linalg.svd(db.T @ da)
        d = torch.sign(torch.linalg.det(u @ vt))
        A = u @ torch.diag(torch.stack([torch.ones_like(d), d])) @ vt
    elif model == "similarity":
        n = da.shape[0]
        x, y = da[:, 0], da[:, 1]
        rows = torch.stack([torch.stack([x, -y], 1), torch.stack([y, x], 1)], 1).reshape(2 * n, 2)
        ab = torch.linalg.lstsq(rows, db.reshape(2 * n, 1)).solution[:, 0]
        A = torch.stack([torch.stack([ab[0], -ab[1]]), torch.stack([ab[1], ab[0]])])
    else:
        A = torch.linalg.lstsq(da, db).solution.T
    M[:2, :2] = A
    M[:2, 2] = cb - A @ ca
    return M


__all__ = ["LADDER", "MODELS", "check_model", "fit_motion", "model_matrix", "model_matrix_jacobian"]
