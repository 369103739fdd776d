"""Every coordinate convention of gdvision, and the conversions between them.

**Pixel coordinates** (everywhere in gdvision's public API, JSON files and CLI): ``x`` = column, ``y`` = row,
0-based, ``(0, 0)`` is the **centre** of the top-left pixel, so an image spans ``[-0.5, W-0.5]``; this is
OpenCV's convention. Pyramid level ``l`` has pixel coordinates ``x_l = x_0 / 2^l`` (see :mod:`gdvision.pyramid`).

**Direction of the matrices** (also written into result files, see the constants below):

- a homography ``H`` is 3x3, acts on homogeneous column vectors and maps points of image A to points of image B,
  ``[xB, yB, 1]^T ~ H [xA, yA, 1]^T`` (:data:`H_DIRECTION`, :data:`H_CONVENTION`), so
  ``cv2.warpPerspective(A, H, (wB, hB))`` approximates B;
- a fundamental matrix ``F`` satisfies ``xB^T F xA = 0`` (:data:`F_CONVENTION`).

Two other coordinate systems exist inside the solvers; they are never written to files:

**Grid coordinates** (:func:`pixel_to_grid`, :func:`grid_to_pixel`, :func:`grid_matrix`): those of
:func:`torch.nn.functional.grid_sample` with ``align_corners=True``, ``u = 2 x / (W - 1) - 1``, so -1 and +1
are the centres of the first and last pixels of the image being *sampled*.

**Centred coordinates** (:func:`centring_matrix`, :func:`homography_to_centred`,
:func:`homography_from_centred`): the frame in which registration's motion models are parameterised
(:mod:`gdvision.register.motion`), ``u = (x - c) / s`` with ``c = ((W-1)/2, (H-1)/2)`` the centre of image A and
``s = max(W, H) / 2``, so A spans about [-1, 1] on its longer side and keeps its aspect ratio. A motion ``Hc``
in centred coordinates is the pixel homography ``T^-1 Hc T`` (``T`` the centring matrix of A); its parameters
are dimensionless and of the same size at every pyramid level, which keeps the solver's normal equations
well-conditioned.

Example:
    >>> import torch
    >>> pixel_to_grid(torch.tensor([[0.0, 0.0], [64.0, 48.0]]), 49, 65).tolist()
    [[-1.0, -1.0], [1.0, 1.0]]
    >>> H = torch.tensor([[1.0, 0.0, 8.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    >>> homography_to_centred(H, 48, 64)[0, 2].item()  # 8 px on a 64 px wide image: a quarter of s = 32
    0.25
"""

from __future__ import annotations

import torch

#: Which way a homography maps (record field ``"direction"``).
H_DIRECTION = "A -> B"
#: The pixel convention of a homography, as written into result files (field ``"convention"``).
H_CONVENTION = "pixel coordinates, (0,0) = centre of the top-left pixel; [xB, yB, 1]^T ~ H [xA, yA, 1]^T"
#: The epipolar convention of a fundamental matrix.
F_CONVENTION = "pixel coordinates, (0,0) = centre of the top-left pixel; xB^T F xA = 0"


def grid_matrix(h: int, w: int, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """3x3 matrix N with ``[u, v, 1]^T = N [x, y, 1]^T`` (pixel -> grid coordinates of an h x w image)."""
    sx = 2.0 / max(w - 1, 1)
    sy = 2.0 / max(h - 1, 1)
    return torch.tensor([[sx, 0.0, -1.0], [0.0, sy, -1.0], [0.0, 0.0, 1.0]], dtype=dtype, device=device)


def pixel_to_grid(pts: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(..., 2) pixel ``(x, y)`` -> (..., 2) grid coordinates ``(u, v)`` in [-1, 1] over pixel centres."""
    scale = pts.new_tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)])
    return pts * scale - 1.0


def grid_to_pixel(uv: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`pixel_to_grid`."""
    scale = uv.new_tensor([(w - 1) / 2.0, (h - 1) / 2.0])
    return (uv + 1.0) * scale


def centring_matrix(h: int, w: int, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """3x3 ``T`` with ``u = T x``: pixel coordinates of an h x w image A -> centred coordinates (module doc)."""
    s = max(h, w) / 2.0
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    return torch.tensor([[1 / s, 0, -cx / s], [0, 1 / s, -cy / s], [0, 0, 1]], dtype=dtype, device=device)


def homography_to_centred(H: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Pixel homography(ies) A -> B (..., 3, 3) to centred coordinates, ``T H T^-1`` (T from A's size h x w)."""
    T = centring_matrix(h, w, H.dtype, H.device)
    return T @ H @ torch.linalg.inv(T)


def homography_from_centred(Hc: torch.Tensor, h: int, w: int, level: int = 0) -> torch.Tensor:
    """Centred motion (..., 3, 3) to the pixel homography A -> B at pyramid ``level`` (0 = full size).

    The result is scaled so that ``H[2, 2] = 1``.
    """
    T = centring_matrix(h, w, Hc.dtype, Hc.device)
    H = torch.linalg.inv(T) @ Hc @ T
    if level:
        f = 2.0**level
        S = torch.diag(torch.tensor([1 / f, 1 / f, 1.0], dtype=Hc.dtype, device=Hc.device))
        Si = torch.diag(torch.tensor([f, f, 1.0], dtype=Hc.dtype, device=Hc.device))
        H = S @ H @ Si
    return H / H[..., 2:3, 2:3]


def pixel_grid(h: int, w: int, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(H, W, 2) tensor of pixel coordinates ``(x, y)`` of every pixel centre."""
    ys = torch.arange(h, device=device, dtype=dtype)
    xs = torch.arange(w, device=device, dtype=dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1)


def apply_homography(H: torch.Tensor, pts: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Map points by homographies: ``H`` (B, 3, 3) or (3, 3), ``pts`` (B, N, 2) or (N, 2) -> same shape as pts.

    Points mapped to infinity (w ~ 0) come out huge but finite (the denominator is clamped away from 0).
    """
    Hm = H.to(pts.dtype)
    x, y = pts[..., 0:1], pts[..., 1:2]
    if Hm.dim() == 2:
        Hm = Hm.unsqueeze(0)
        squeeze = pts.dim() == 2
        if squeeze:
            x, y = x.unsqueeze(0), y.unsqueeze(0)
    else:
        squeeze = False
    h = Hm.unsqueeze(1)  # (B,1,3,3)
    X = h[..., 0, 0] * x[..., 0] + h[..., 0, 1] * y[..., 0] + h[..., 0, 2]
    Y = h[..., 1, 0] * x[..., 0] + h[..., 1, 1] * y[..., 0] + h[..., 1, 2]
    Z = h[..., 2, 0] * x[..., 0] + h[..., 2, 1] * y[..., 0] + h[..., 2, 2]
    Z = torch.where(Z.abs() < eps, torch.full_like(Z, eps), Z)
    out = torch.stack([X / Z, Y / Z], dim=-1)
    return out[0] if squeeze else out


def image_corners(h: int, w: int, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """(4, 2) pixel coordinates of the corner pixel centres (0,0), (w-1,0), (w-1,h-1), (0,h-1)."""
    return torch.tensor([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=dtype, device=device)


def mean_corner_error(H: torch.Tensor, H_true: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Mean distance (pixels, in B's frame) between A's 4 corners mapped by ``H`` and by ``H_true``.

    ``H``, ``H_true``: (B, 3, 3) or (3, 3) pixel homographies A -> B. Returns (B,) or a scalar.
    """
    c = image_corners(h, w, dtype=torch.float64, device=H.device)
    a = apply_homography(H.to(torch.float64), c if H.dim() == 2 else c.expand(H.shape[0], 4, 2))
    b = apply_homography(H_true.to(torch.float64), c if H_true.dim() == 2 else c.expand(H_true.shape[0], 4, 2))
    return (a - b).norm(dim=-1).mean(-1)


__all__ = [
    "F_CONVENTION",
    "H_CONVENTION",
    "H_DIRECTION",
    "apply_homography",
    "centring_matrix",
    "grid_matrix",
    "grid_to_pixel",
    "homography_from_centred",
    "homography_to_centred",
    "image_corners",
    "mean_corner_error",
    "pixel_grid",
    "pixel_to_grid",
]
