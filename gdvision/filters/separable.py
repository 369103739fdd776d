"""Separable linear filters on (B, C, H, W) tensors with OpenCV-compatible borders and numerics.

All filters are cross-correlations, as in OpenCV (``cv2.filter2D``, ``cv2.Sobel``): the x-derivative at
pixel ``i`` is ``I[i+1] - I[i-1]`` for the 3-tap kernel. x is the column (width) axis, y the row axis.
Derivatives are unnormalised, exactly like OpenCV's (a unit ramp ``I = x`` gives Sobel ``dx = 8`` for ksize 3);
pass ``scale=`` to rescale.

Border modes (``border=``): ``"reflect101"`` (OpenCV's default ``BORDER_REFLECT_101``: ``gfedcb|abcdefgh|gfedcba``),
``"replicate"`` (``aaaaaa|abcdefgh|hhhhhhh``), ``"constant"`` (zeros), and ``"valid"`` (no padding: the
output shrinks by the kernel size minus one).

How it is computed. A separable filter is a horizontal 1-D pass followed by a vertical one
(:mod:`gdvision.filters.passes`), each a few shifted adds / fused multiply-adds in the same order as OpenCV's
float32 row/column filters, so float32 results for Sobel (ksize 1/3/5), Scharr and Laplacian (ksize 1/3) equal
``cv2.Sobel/Scharr/Laplacian`` to the last bit on typical inputs. Channels are folded into the batch (any C: 1, 3
or multispectral). On the CPU, when no gradient is needed, the work runs in blocks of about 2 MiB
(:mod:`gdvision.filters.blocks`: several channel-images, or row bands of a big image) written into one
preallocated output, so a block's intermediates stay in cache and :func:`gradient_magnitude` writes only the
magnitude. With autograd or on an accelerator the same arithmetic runs on the whole tensor at once, so gradients
flow through every filter (float64 ``gradcheck`` passes). No Python loop runs per image, only per block.

float16 / bfloat16 inputs are computed in float32 and returned in their own dtype; float32 and float64 are
computed in their own precision; integer inputs are converted to float32. Bad parameters (an unknown border,
operator or norm, an impossible ksize) raise :class:`~gdvision.errors.UsageError`; a tensor that is not
(B, C, H, W), or too small for a ``valid`` filter, raises :class:`~gdvision.errors.InputError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from gdvision._checks import check_choice
from gdvision.errors import UsageError
from gdvision.filters.blocks import DEST, SCRATCH, check_border, pad, run_blocks
from gdvision.filters.config import BORDERS, GRADIENT_OPS, NORMS
from gdvision.filters.kernels import Kernel, deriv_kernel1d, gaussian_kernel1d, gaussian_taps, kernel_tuple
from gdvision.filters.passes import col_pass, laplacian3x3, row_pass, separable_passes


def separable_filter(
    x: torch.Tensor,
    kx: torch.Tensor | Sequence[float],
    ky: torch.Tensor | Sequence[float],
    border: str = "reflect101",
) -> torch.Tensor:
    """Correlate each channel of ``x`` (B, C, H, W) with the outer product ``ky[:, None] * kx[None, :]``.

    ``kx`` (length kw, odd) runs along x (width), ``ky`` (length kh, odd) along y (height); tensors or
    sequences of floats. Returns (B, C, H, W), or (B, C, H-kh+1, W-kw+1) for ``border="valid"``.
    Same result as ``cv2.sepFilter2D(x, -1, kx, ky, borderType=...)``. Kernels that require a gradient are
    applied with ``conv2d`` so that gradients flow into them.

    Example:
        >>> separable_filter(torch.rand(2, 3, 16, 16), [1.0, 2.0, 1.0], [0.25, 0.5, 0.25]).shape
        torch.Size([2, 3, 16, 16])
    """
    check_border(border)
    if (isinstance(kx, torch.Tensor) and kx.requires_grad) or (isinstance(ky, torch.Tensor) and ky.requires_grad):
        return _conv_separable(x, kx, ky, border)  # type: ignore[arg-type]
    tx, ty = kernel_tuple(kx), kernel_tuple(ky)
    return run_blocks(x, len(tx) // 2, len(ty) // 2, border, lambda p: (separable_passes(p, tx, ty),))[0]


def _conv_separable(x: torch.Tensor, kx: torch.Tensor, ky: torch.Tensor, border: str) -> torch.Tensor:
    b, c, h, w = x.shape
    kx = torch.as_tensor(kx).to(device=x.device, dtype=x.dtype)
    ky = torch.as_tensor(ky).to(device=x.device, dtype=x.dtype)
    rx, ry = kx.numel() // 2, ky.numel() // 2
    y = pad(x.reshape(b * c, 1, h, w), rx, rx, ry, ry, border)
    y = F.conv2d(y, kx.view(1, 1, 1, -1))
    y = F.conv2d(y, ky.view(1, 1, -1, 1))
    return y.reshape(b, c, y.shape[-2], y.shape[-1])


def gaussian_blur(
    x: torch.Tensor, sigma: float | tuple[float, float], ksize: int | None = None, border: str = "reflect101"
) -> torch.Tensor:
    """Gaussian blur of a (B, C, H, W) tensor; ``sigma`` is one value or ``(sigma_x, sigma_y)`` in pixels.

    Example:
        >>> gaussian_blur(torch.rand(2, 3, 32, 32), 1.5).shape
        torch.Size([2, 3, 32, 32])
    """
    sx, sy = (sigma, sigma) if isinstance(sigma, (int, float)) else sigma
    return separable_filter(x, gaussian_taps(float(sx), ksize), gaussian_taps(float(sy), ksize), border)


def _gradient_kernels(op: str, ksize: int) -> tuple[Kernel, Kernel]:
    """(derivative, smoothing) 1-D kernels for ``op`` 'sobel' (ksize 1/3/5/7) or 'scharr'."""
    check_choice(op, "gradient operator", GRADIENT_OPS)
    size = -1 if op == "scharr" else ksize
    return deriv_kernel1d(1, size), deriv_kernel1d(0, size)


def derivative(
    x: torch.Tensor, dx: int, dy: int, ksize: int = 3, border: str = "reflect101", scale: float = 1.0
) -> torch.Tensor:
    """One Sobel derivative of order (``dx``, ``dy``) of a (B, C, H, W) tensor, as ``cv2.Sobel(x, -1, dx, dy, ksize)``.

    ``ksize`` 1, 3, 5, 7, or -1 for Scharr (as ``cv2.Scharr``). Returns the same shape (smaller for ``valid``).

    Example:
        >>> ramp = torch.arange(8.0).expand(1, 1, 8, 8)
        >>> derivative(ramp, 1, 0)[0, 0, 3, 3].item()
        8.0
    """
    if dx + dy < 1:
        raise UsageError(f"need dx + dy >= 1, got dx={dx}, dy={dy}")
    kx, ky = deriv_kernel1d(dx, ksize), deriv_kernel1d(dy, ksize)
    if scale != 1:
        ky = tuple(v * scale for v in ky)
    return run_blocks(x, len(kx) // 2, len(ky) // 2, border, lambda p: (separable_passes(p, kx, ky),))[0]


def sobel(
    x: torch.Tensor, border: str = "reflect101", ksize: int = 3, scale: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sobel derivatives (dx, dy) of a (B, C, H, W) tensor, unnormalised as ``cv2.Sobel(ksize=ksize)``.

    ``ksize`` in 1, 3, 5, 7. For ksize 3, ``dx = [1, 2, 1]^T (x) [-1, 0, 1]``: a unit ramp ``I = x`` gives
    ``dx = 8``. Differentiable; see :func:`gradient` for the fused single-pass version.

    Example:
        >>> gx, gy = sobel(torch.rand(2, 3, 32, 32))
        >>> gx.shape
        torch.Size([2, 3, 32, 32])
    """
    gx, gy = gradient(x, "sobel", ksize, border, scale)
    return gx, gy


def scharr(x: torch.Tensor, border: str = "reflect101", scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Scharr derivatives (dx, dy) of a (B, C, H, W) tensor, as ``cv2.Scharr`` (``[3,10,3]^T (x) [-1,0,1]``).

    Example:
        >>> gx, gy = scharr(torch.rand(1, 1, 16, 16))
        >>> gy.shape
        torch.Size([1, 1, 16, 16])
    """
    return gradient(x, "scharr", 3, border, scale)


def gradient(
    x: torch.Tensor, op: str = "sobel", ksize: int = 3, border: str = "reflect101", scale: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(dx, dy) of a (B, C, H, W) tensor with ``op`` 'sobel' (``ksize`` 1/3/5/7) or 'scharr', computed together.

    Returns two tensors shaped like ``x`` (smaller for ``border='valid'``), OpenCV's scale times ``scale``.

    Example:
        >>> gx, gy = gradient(torch.rand(1, 3, 16, 16), "scharr")
        >>> gx.shape
        torch.Size([1, 3, 16, 16])
    """
    d, s = _gradient_kernels(op, ksize)
    if scale != 1:
        s = tuple(v * scale for v in s)
    gx, gy = run_blocks(x, len(d) // 2, len(d) // 2, border, lambda p: _both(p, d, s), n_out=2)
    return gx, gy


def _both(p: torch.Tensor, d: Kernel, s: Kernel) -> tuple[torch.Tensor, torch.Tensor]:
    """(dx, dy) of one padded block, padded by ``len(d) // 2`` on every side (for :func:`gradient`)."""
    rs, r = len(s) // 2, len(d) // 2
    pd = p if rs == r else p[..., r - rs : p.shape[-2] - (r - rs), :]  # ksize 1: smoothing is 1 tap
    gx = col_pass(row_pass(pd, d), s)
    ps = p if rs == r else p[..., r - rs : p.shape[-1] - (r - rs)]
    gy = col_pass(row_pass(ps, s), d)
    return gx, gy


def magnitude(dx: torch.Tensor, dy: torch.Tensor, norm: str = "l2") -> torch.Tensor:
    """Gradient magnitude ``sqrt(dx^2 + dy^2)`` (``norm='l2'``) or ``|dx| + |dy|`` (``'l1'``), elementwise.

    The L2 form has a gradient of 0 (not NaN) where ``dx = dy = 0``.

    Example:
        >>> magnitude(torch.tensor([3.0]), torch.tensor([4.0])).item()
        5.0
    """
    if norm == "l1":
        return dx.abs() + dy.abs()
    check_choice(norm, "norm", NORMS)
    if torch.is_grad_enabled() and (dx.requires_grad or dy.requires_grad):
        sq = dx * dx + dy * dy
        safe = torch.where(sq > 0, sq, torch.ones_like(sq))
        return torch.where(sq > 0, safe.sqrt(), torch.zeros_like(sq))
    return (dx * dx).addcmul_(dy, dy).sqrt_()


def orientation(dx: torch.Tensor, dy: torch.Tensor, degrees: bool = False) -> torch.Tensor:
    """Gradient direction ``atan2(dy, dx)`` mapped to [0, 2*pi) (or [0, 360) degrees), as ``cv2.phase``.

    y points down (rows), so 90 degrees is a gradient pointing to the bottom of the image.

    Example:
        >>> orientation(torch.tensor([0.0]), torch.tensor([1.0]), degrees=True).item()
        90.0
    """
    a = torch.atan2(dy, dx)
    full = 360.0 if degrees else 2.0 * math.pi
    if degrees:
        a = torch.rad2deg(a)
    return torch.where(a < 0, a + full, a)


def gradient_magnitude(
    x: torch.Tensor, op: str = "sobel", ksize: int = 3, border: str = "reflect101", norm: str = "l2"
) -> torch.Tensor:
    """Edge strength of a (B, C, H, W) tensor: ``magnitude(*gradient(x, op, ksize, border), norm)``, fused.

    Each channel is filtered separately (output has C channels). On the CPU without autograd, dx, dy and
    the magnitude of one block are computed while it sits in cache and only the magnitude is written out.

    Example:
        >>> gradient_magnitude(torch.rand(8, 3, 64, 64)).shape
        torch.Size([8, 3, 64, 64])
    """
    check_choice(norm, "norm", NORMS)
    d, s = _gradient_kernels(op, ksize)
    r = len(d) // 2

    def fn(p: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (magnitude(*_both(p, d, s), norm),)

    if len(s) == len(d) and not (torch.is_grad_enabled() and x.requires_grad):
        fn = _fused_magnitude(d, s, norm)
    return run_blocks(x, r, r, border, fn)[0]


def _fused_magnitude(d: Kernel, s: Kernel, norm: str) -> Callable[[torch.Tensor], tuple[torch.Tensor, ...]]:
    def fn(p: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # 3x3 Sobel/Scharr inside the blocked CPU path (whose results are always copied into the output):
        # reuse scratch buffers; the arithmetic is the same as below.
        if len(d) == 3 and DEST.view is not None:
            m, one, hp, wp = p.shape
            row_shape = torch.Size((m, one, hp, wp - 2))
            col_shape = torch.Size((m, one, hp - 2, wp - 2))
            rd = row_pass(p, d, SCRATCH.get(0, row_shape, p.dtype))
            rs = row_pass(p, s, SCRATCH.get(1, row_shape, p.dtype))
            gx = col_pass(rd, s, SCRATCH.get(2, col_shape, p.dtype))
            gy = col_pass(rs, d, SCRATCH.get(3, col_shape, p.dtype))
        else:
            gx = col_pass(row_pass(p, d), s)
            gy = col_pass(row_pass(p, s), d)
        if norm == "l1":
            return (gx.abs_().add_(gy.abs_()),)
        sq = gx.mul_(gx).addcmul_(gy, gy)
        dest = DEST.view
        if dest is not None and dest.shape == sq.shape:
            return (torch.sqrt(sq, out=dest),)  # straight into the output: one pass fewer
        return (sq.sqrt_(),)

    return fn


def laplacian(x: torch.Tensor, ksize: int = 1, border: str = "reflect101", scale: float = 1.0) -> torch.Tensor:
    """Laplacian of a (B, C, H, W) tensor as ``cv2.Laplacian(x, -1, ksize)``.

    ``ksize=1``: ``[[0,1,0],[1,-4,1],[0,1,0]]``; ``ksize=3``: ``[[2,0,2],[0,-8,0],[2,0,2]]`` (OpenCV's kernels);
    ``ksize`` 5 or 7: ``d2/dx2 + d2/dy2`` from Sobel kernels of that size.

    Example:
        >>> yy, xx = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
        >>> laplacian((xx**2)[None, None])[0, 0, 4, 4].item()
        2.0
    """
    if ksize in (1, 3):
        y = run_blocks(x, 1, 1, border, lambda p: (laplacian3x3(p, ksize),))[0]
    elif ksize in (5, 7):
        d2, s = deriv_kernel1d(2, ksize), deriv_kernel1d(0, ksize)
        r = ksize // 2
        y = run_blocks(x, r, r, border, lambda p: (separable_passes(p, d2, s) + separable_passes(p, s, d2),))[0]
    else:
        raise UsageError(f"Laplacian ksize must be 1, 3, 5 or 7, got {ksize}")
    return y * scale if scale != 1 else y


def central_gradient(
    x: torch.Tensor, border: str = "replicate", out: tuple[torch.Tensor, torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences ``(I[i+1] - I[i-1]) / 2`` along x and y: derivatives in intensity per pixel.

    ``out``: two tensors of ``x``'s shape (views are fine) that receive dx and dy. With the ``replicate`` border, a
    float32/float64 ``x`` and no gradient needed, the differences are written straight into them (no padded copy;
    the same values as the separable filter bit for bit).

    Example:
        >>> gx, gy = central_gradient(torch.arange(4.0).expand(1, 1, 4, 4))
        >>> gx[0, 0, 1].tolist()
        [0.5, 1.0, 1.0, 0.5]
    """
    direct = border == "replicate" and x.dtype in (torch.float32, torch.float64)
    if direct and not (torch.is_grad_enabled() and x.requires_grad):
        gx, gy = out if out is not None else (torch.empty_like(x), torch.empty_like(x))
        return _central_difference(x, -1, gx), _central_difference(x, -2, gy)
    gx = separable_filter(x, (-0.5, 0.0, 0.5), (1.0,), border)
    gy = separable_filter(x, (1.0,), (-0.5, 0.0, 0.5), border)
    return (gx, gy) if out is None else (out[0].copy_(gx), out[1].copy_(gy))


def _central_difference(x: torch.Tensor, dim: int, out: torch.Tensor) -> torch.Tensor:
    """``(x[i+1] - x[i-1]) * 0.5`` along ``dim`` with a replicated border (0 along a side of 1), into ``out``."""
    n = x.shape[dim]
    if n == 1:
        return out.zero_()
    torch.sub(x.narrow(dim, 2, n - 2), x.narrow(dim, 0, n - 2), out=out.narrow(dim, 1, n - 2))
    out.narrow(dim, 0, 1).copy_(x.narrow(dim, 1, 1) - x.narrow(dim, 0, 1))
    out.narrow(dim, n - 1, 1).copy_(x.narrow(dim, n - 1, 1) - x.narrow(dim, n - 2, 1))
    return out.mul_(0.5)


__all__ = [
    "BORDERS",
    "GRADIENT_OPS",
    "NORMS",
    "central_gradient",
    "deriv_kernel1d",
    "derivative",
    "gaussian_blur",
    "gaussian_kernel1d",
    "gradient",
    "gradient_magnitude",
    "laplacian",
    "magnitude",
    "orientation",
    "pad",
    "scharr",
    "separable_filter",
    "sobel",
]
