"""Differentiable image losses on (B, C, H, W) tensors.

Every loss returns one value per batch element, shape (B,), averaged over the valid pixels (and channels).
``mask`` arguments are (B, 1, H, W) or (B, C, H, W) weights in [0, 1] (1 = valid); ``None`` means all valid.
Images are expected in [0, 1] (the SSIM constants assume that dynamic range).
"""

from __future__ import annotations

import torch

from gdvision.filters.separable import gaussian_kernel1d, separable_filter, sobel


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """Mean of (B, C, H, W) ``x`` per batch element over pixels where ``mask`` > 0 -> (B,)."""
    if mask is None:
        return x.flatten(1).mean(1)
    m = mask.expand_as(x).to(x.dtype)
    return (x * m).flatten(1).sum(1) / (m.flatten(1).sum(1) + eps)


def l1_loss(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Masked mean absolute difference ``|a - b|`` -> (B,)."""
    return masked_mean((a - b).abs(), mask)


def charbonnier_loss(
    a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-3
) -> torch.Tensor:
    """Masked mean of ``sqrt((a - b)^2 + eps^2) - eps``: a smooth L1 (differentiable at 0) -> (B,)."""
    return masked_mean(torch.sqrt((a - b) ** 2 + eps * eps) - eps, mask)


def ssim_map(
    a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5, c1: float = 0.01**2, c2: float = 0.03**2
) -> torch.Tensor:
    """Per-pixel SSIM (B, C, H, W) with a Gaussian ``window`` x ``window`` window (std ``sigma``).

    Borders use reflect-101 padding so the map keeps the input size. Values lie in [-1, 1], 1 = identical.
    """
    k = gaussian_kernel1d(sigma, window, a.dtype)
    x = torch.cat([a, b, a * a, b * b, a * b], dim=1)
    f = separable_filter(x, k, k, "reflect101")
    mu_a, mu_b, aa, bb, ab = torch.split(f, a.shape[1], dim=1)
    var_a = aa - mu_a * mu_a
    var_b = bb - mu_b * mu_b
    cov = ab - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)
    return num / den


def ssim_loss(
    a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None, window: int = 11, sigma: float = 1.5
) -> torch.Tensor:
    """Masked mean of ``(1 - SSIM) / 2`` (0 = identical, 1 = anti-correlated) -> (B,)."""
    return masked_mean((1.0 - ssim_map(a, b, window, sigma)) * 0.5, mask)


def gradient_loss(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Masked mean ``|Sobel(a) - Sobel(b)|`` over dx and dy (Sobel scaled by 1/8: intensity per pixel) -> (B,).

    Insensitive to a constant intensity offset between ``a`` and ``b``.
    """
    ax, ay = sobel(a)
    bx, by = sobel(b)
    return 0.125 * 0.5 * (masked_mean((ax - bx).abs(), mask) + masked_mean((ay - by).abs(), mask))


def ncc(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """Global normalized cross-correlation of ``a`` and ``b`` over the masked pixels -> (B,) in [-1, 1].

    Invariant to a positive gain and an offset on either image.
    """
    m = torch.ones_like(a[:, :1]) if mask is None else mask.to(a.dtype)
    m = m.expand_as(a)
    n = m.flatten(1).sum(1).clamp_min(eps)
    ma = (a * m).flatten(1).sum(1) / n
    mb = (b * m).flatten(1).sum(1) / n
    da = (a - ma.view(-1, 1, 1, 1)) * m
    db = (b - mb.view(-1, 1, 1, 1)) * m
    num = (da * db).flatten(1).sum(1)
    den = torch.sqrt((da * da).flatten(1).sum(1) * (db * db).flatten(1).sum(1) + eps)
    return num / den


def ncc_loss(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``1 - ncc(a, b)`` -> (B,), 0 for images equal up to gain and offset."""
    return 1.0 - ncc(a, b, mask)


def mutual_information(
    a: torch.Tensor,
    b: torch.Tensor,
    mask: torch.Tensor | None = None,
    bins: int = 32,
    sigma: float | None = None,
    normalized: bool = False,
) -> torch.Tensor:
    """Mutual information (nats) of the intensities of ``a`` and ``b`` -> (B,), by Parzen windowing.

    With ``normalized=True`` returns Studholme's normalized MI ``(H(a) + H(b)) / H(a, b)`` in [1, 2]
    instead, which does not reward shrinking the overlap (better for registration).

    Intensities (first channel, assumed in [0, 1]) are soft-assigned to ``bins`` Gaussian bins of width
    ``sigma`` (default: half a bin), so the estimate is differentiable. High MI = well aligned, also across
    modalities (e.g. T1 vs proton-density MRI).
    """
    sigma = sigma or 0.5 / bins
    centers = torch.linspace(0.0, 1.0, bins, device=a.device, dtype=a.dtype)
    va = a[:, :1].flatten(1).clamp(0, 1)
    vb = b[:, :1].flatten(1).clamp(0, 1)
    w = torch.ones_like(va) if mask is None else mask[:, :1].flatten(1).to(a.dtype)
    pa = torch.exp(-0.5 * ((va.unsqueeze(-1) - centers) / sigma) ** 2)  # (B,N,K)
    pb = torch.exp(-0.5 * ((vb.unsqueeze(-1) - centers) / sigma) ** 2)
    pa = pa / (pa.sum(-1, keepdim=True) + 1e-12) * w.unsqueeze(-1)
    pb = pb / (pb.sum(-1, keepdim=True) + 1e-12)
    joint = torch.einsum("bnk,bnl->bkl", pa, pb)
    joint = joint / (joint.sum((1, 2), keepdim=True) + 1e-12)
    ma = joint.sum(2)
    mb = joint.sum(1)
    h_ab = -(joint * torch.log(joint + 1e-12)).sum((1, 2))
    h_a = -(ma * torch.log(ma + 1e-12)).sum(1)
    h_b = -(mb * torch.log(mb + 1e-12)).sum(1)
    if normalized:
        return (h_a + h_b) / h_ab.clamp_min(1e-12)
    return h_a + h_b - h_ab


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation: mean ``|dx| + |dy|`` of forward differences -> (B,)."""
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
    return dx + dy


def edge_aware_smoothness(d: torch.Tensor, image: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Edge-aware smoothness of a map ``d`` (B, 1, H, W) guided by ``image`` (B, C, H, W) -> (B,).

    ``mean |dx d| exp(-|dx I|) + mean |dy d| exp(-|dy I|)`` with forward differences, ``|dx I|`` averaged
    over channels. With ``normalize=True`` (the usual choice for inverse depth) ``d`` is first divided by
    its per-image mean, so the loss does not favour shrinking ``d``.
    """
    if normalize:
        d = d / (d.flatten(1).mean(1).view(-1, 1, 1, 1) + 1e-7)
    ddx = (d[..., :, 1:] - d[..., :, :-1]).abs()
    ddy = (d[..., 1:, :] - d[..., :-1, :]).abs()
    idx = (image[..., :, 1:] - image[..., :, :-1]).abs().mean(1, keepdim=True)
    idy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(1, keepdim=True)
    return (ddx * torch.exp(-idx)).flatten(1).mean(1) + (ddy * torch.exp(-idy)).flatten(1).mean(1)


def _gaussian_blur_depthwise(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Separable correlation of every channel of (B, C, H, W) with ``k`` (odd length), reflect-101 borders.

    Same result as :func:`gdvision.filters.separable.separable_filter` with ``kx = ky = k``, computed as one depthwise
    (grouped) convolution per axis, which is several times faster on CPU for many channels.
    """
    from gdvision.filters.separable import pad

    b, c, h, w = x.shape
    r = k.numel() // 2
    kk = k.to(device=x.device, dtype=x.dtype)
    y = pad(x.reshape(1, b * c, h, w), r, r, r, r, "reflect101")
    y = torch.nn.functional.conv2d(y, kk.view(1, 1, 1, -1).expand(b * c, 1, 1, -1), groups=b * c)
    y = torch.nn.functional.conv2d(y, kk.view(1, 1, -1, 1).expand(b * c, 1, -1, 1), groups=b * c)
    return y.reshape(b, c, h, w)


def ssim_reference_stats(
    a: torch.Tensor, window: int = 11, sigma: float = 1.5
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Local statistics of a fixed image for :func:`ssim_map_to_reference`: ``(a, mu_a, var_a)``, each (B, C, H, W).

    Compute them once when one reference is compared with many images (a plane sweep, a depth
    optimisation); the window is the same Gaussian as :func:`ssim_map`.

    Example:
        >>> import torch
        >>> a = torch.rand(1, 1, 16, 16)
        >>> s = ssim_reference_stats(a, 7, 1.5)
        >>> bool(torch.allclose(ssim_map_to_reference(s, a, 7, 1.5), torch.ones_like(a), atol=1e-4))
        True
    """
    k = gaussian_kernel1d(sigma, window, a.dtype)
    f = _gaussian_blur_depthwise(torch.cat([a, a * a], dim=1), k)
    mu, aa = torch.split(f, a.shape[1], dim=1)
    return a, mu, aa - mu * mu


def ssim_map_to_reference(
    ref_stats: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    b: torch.Tensor,
    window: int = 11,
    sigma: float = 1.5,
    c1: float = 0.01**2,
    c2: float = 0.03**2,
) -> torch.Tensor:
    """Per-pixel SSIM (B, C, H, W) of a fixed reference (stats from :func:`ssim_reference_stats`) and ``b``.

    Equals ``ssim_map(a, b, window, sigma, c1, c2)`` (up to float round-off) but filters only the three
    maps that depend on ``b`` and uses depthwise convolutions. The reference's batch may be 1 and is
    broadcast over ``b``'s batch (e.g. B plane hypotheses against one image).
    """
    a, mu_a, var_a = ref_stats
    n = b.shape[0]
    if a.shape[0] != n:
        a, mu_a, var_a = (t.expand(n, -1, -1, -1) for t in (a, mu_a, var_a))
    k = gaussian_kernel1d(sigma, window, b.dtype)
    f = _gaussian_blur_depthwise(torch.cat([b, b * b, a * b], dim=1), k)
    mu_b, bb, ab = torch.split(f, b.shape[1], dim=1)
    var_b = bb - mu_b * mu_b
    cov = ab - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)
    return num / den
