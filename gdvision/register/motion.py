"""Motion models for registration and their parameterisation.

A motion is a 3x3 matrix acting on *normalized* coordinates ``u = (x - c) / s`` where ``c`` is the centre of
image A (pixels) and ``s = max(W, H) / 2`` (so the image spans about [-1, 1]). A parameter vector ``q`` of a
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

MODELS: dict[str, int] = {"translation": 2, "euclidean": 3, "similarity": 4, "affine": 6, "homography": 8}

#: Models fitted in turn at the coarsest level before the requested one (each is a subset of the next).
LADDER: dict[str, list[str]] = {
    "translation": ["translation"],
    "euclidean": ["translation", "euclidean"],
    "similarity": ["translation", "similarity"],
    "affine": ["translation", "affine"],
    "homography": ["translation", "affine", "homography"],
}


def check_model(model: str) -> int:
    """Number of parameters of ``model``; ValueError for an unknown name."""
    if model not in MODELS:
        raise ValueError(f"unknown motion model '{model}': use one of {', '.join(MODELS)}")
    return MODELS[model]


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


def normalizer(h: int, w: int, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """3x3 ``T`` with ``u = T x``: pixel coordinates of an h x w image A -> normalized motion coordinates."""
    s = max(h, w) / 2.0
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    return torch.tensor([[1 / s, 0, -cx / s], [0, 1 / s, -cy / s], [0, 0, 1]], dtype=dtype, device=device)


def pixel_to_motion(H: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Pixel homography(ies) A -> B (..., 3, 3) to normalized motion ``T H T^-1`` (T from A's size h x w)."""
    T = normalizer(h, w, H.dtype, H.device)
    return T @ H @ torch.linalg.inv(T)


def motion_to_pixel(Hn: torch.Tensor, h: int, w: int, level: int = 0) -> torch.Tensor:
    """Normalized motion (..., 3, 3) to the pixel homography A -> B at pyramid ``level`` (0 = full size).

    Level-``l`` pixels relate to full-size pixels by ``x_l = x_0 / 2^l`` (see :mod:`gdvision.pyramid`).
    The result is normalised so that ``H[2, 2] = 1``.
    """
    T = normalizer(h, w, Hn.dtype, Hn.device)
    H = torch.linalg.inv(T) @ Hn @ T
    if level:
        f = 2.0**level
        S = torch.diag(torch.tensor([1 / f, 1 / f, 1.0], dtype=Hn.dtype, device=Hn.device))
        Si = torch.diag(torch.tensor([f, f, 1.0], dtype=Hn.dtype, device=Hn.device))
        H = S @ H @ Si
    return H / H[..., 2:3, 2:3]
