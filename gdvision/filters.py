"""Separable linear filters on (B, C, H, W) tensors with OpenCV-compatible borders.

All filters are cross-correlations, as in OpenCV (``cv2.filter2D``, ``cv2.Sobel``): the x-derivative at
pixel ``i`` is ``I[i+1] - I[i-1]`` for the 3-tap kernel. x is the column (width) axis, y the row axis.

Border modes (``border=``): ``"reflect101"`` (OpenCV's default ``BORDER_REFLECT_101``: ``gfedcb|abcdefgh|gfedcba``),
``"replicate"`` (``aaaaaa|abcdefgh|hhhhhhh``), ``"constant"`` (zeros), and ``"valid"`` (no padding: the
output shrinks by the kernel size minus one).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

BORDERS = ("reflect101", "replicate", "constant", "valid")


def _check_border(border: str) -> None:
    if border not in BORDERS:
        raise ValueError(f"unknown border '{border}': use one of {', '.join(BORDERS)}")


def pad(x: torch.Tensor, left: int, right: int, top: int, bottom: int, border: str) -> torch.Tensor:
    """Pad the last two dims of a (B, C, H, W) tensor with an OpenCV-style border mode.

    ``reflect101`` falls back to ``replicate`` for images too small to reflect (side of 1 pixel).
    """
    _check_border(border)
    if border == "valid" or (left == right == top == bottom == 0):
        return x
    if border == "constant":
        return F.pad(x, (left, right, top, bottom), mode="constant", value=0.0)
    if border == "reflect101":
        h, w = x.shape[-2:]
        if max(left, right) < w and max(top, bottom) < h:
            return F.pad(x, (left, right, top, bottom), mode="reflect")
        if h == 1 or w == 1:
            return F.pad(x, (left, right, top, bottom), mode="replicate")
        # Large pads: reflect repeatedly (OpenCV reflects periodically).
        idx_x = _reflect101_index(w, left, right, x.device)
        idx_y = _reflect101_index(h, top, bottom, x.device)
        return x.index_select(-1, idx_x).index_select(-2, idx_y)
    return F.pad(x, (left, right, top, bottom), mode="replicate")


def _reflect101_index(n: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    i = torch.arange(-before, n + after, device=device)
    period = 2 * (n - 1)
    i = torch.remainder(i, period)
    return torch.where(i >= n, period - i, i)


def separable_filter(x: torch.Tensor, kx: torch.Tensor, ky: torch.Tensor, border: str = "reflect101") -> torch.Tensor:
    """Correlate each channel of ``x`` (B, C, H, W) with the outer product ``ky[:, None] * kx[None, :]``.

    ``kx`` (length kw, odd) runs along x (width), ``ky`` (length kh, odd) along y (height). Returns
    (B, C, H, W), or (B, C, H-kh+1, W-kw+1) for ``border="valid"``.
    """
    _check_border(border)
    b, c, h, w = x.shape
    kx = kx.to(device=x.device, dtype=x.dtype)
    ky = ky.to(device=x.device, dtype=x.dtype)
    rx, ry = kx.numel() // 2, ky.numel() // 2
    y = pad(x.reshape(b * c, 1, h, w), rx, rx, ry, ry, border)
    y = F.conv2d(y, kx.view(1, 1, 1, -1))
    y = F.conv2d(y, ky.view(1, 1, -1, 1))
    return y.reshape(b, c, y.shape[-2], y.shape[-1])


def gaussian_kernel1d(sigma: float, ksize: int | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normalised 1-D Gaussian taps; ``ksize`` defaults to ``2*ceil(3*sigma)+1``."""
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if ksize is None:
        ksize = 2 * math.ceil(3.0 * sigma) + 1
    if ksize % 2 != 1 or ksize < 1:
        raise ValueError(f"ksize must be odd and positive, got {ksize}")
    r = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    k = torch.exp(-0.5 * (r / sigma) ** 2)
    return (k / k.sum()).to(dtype)


def gaussian_blur(
    x: torch.Tensor, sigma: float | tuple[float, float], ksize: int | None = None, border: str = "reflect101"
) -> torch.Tensor:
    """Gaussian blur of a (B, C, H, W) tensor; ``sigma`` is one value or ``(sigma_x, sigma_y)`` in pixels.

    Example:
        >>> import torch
        >>> gaussian_blur(torch.rand(2, 3, 32, 32), 1.5).shape
        torch.Size([2, 3, 32, 32])
    """
    sx, sy = (sigma, sigma) if isinstance(sigma, (int, float)) else sigma
    return separable_filter(x, gaussian_kernel1d(sx, ksize, x.dtype), gaussian_kernel1d(sy, ksize, x.dtype), border)


def sobel(x: torch.Tensor, border: str = "reflect101") -> tuple[torch.Tensor, torch.Tensor]:
    """3x3 Sobel derivatives (dx, dy) of a (B, C, H, W) tensor, unnormalised as ``cv2.Sobel(ksize=3)``.

    ``dx = [1, 2, 1]^T (x) [-1, 0, 1]``: a unit ramp ``I = x`` gives ``dx = 8``.
    """
    d = torch.tensor([-1.0, 0.0, 1.0])
    s = torch.tensor([1.0, 2.0, 1.0])
    return separable_filter(x, d, s, border), separable_filter(x, s, d, border)


def central_gradient(x: torch.Tensor, border: str = "replicate") -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences ``(I[i+1] - I[i-1]) / 2`` along x and y: derivatives in intensity per pixel."""
    d = torch.tensor([-0.5, 0.0, 0.5])
    one = torch.tensor([1.0])
    return separable_filter(x, d, one, border), separable_filter(x, one, d, border)
