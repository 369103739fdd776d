"""Dominant gradient orientations of keypoints (Lowe 2004, section 5).

A 36-bin histogram of gradient directions around each keypoint, weighted by gradient magnitude and a
Gaussian window of ``1.5 sigma`` (radius ``4.5 sigma``), smoothed with ``[1, 4, 6, 4, 1] / 16``; every local
peak of at least ``peak_ratio`` (0.8) x the highest gives an orientation, interpolated by a parabola. A
keypoint with several peaks is duplicated, one copy per orientation.

Angle convention: radians in [0, 2 pi), the direction ``(cos a, sin a)`` of the dominant gradient in pixel
coordinates (x right, y down), i.e. clockwise on screen from +x. This equals OpenCV's ``KeyPoint.angle`` in
radians; Lowe's reference keys use ``-a``.
"""

from __future__ import annotations

import math

import torch

from gdvision.features.detectors import Keypoints
from gdvision.features.scale_space import (
    ScaleSpace,
    fold_bins,
    gradient_votes,
    sample_affine_patches_grouped,
    to_keypoint_order,
)

NUM_BINS = 36


def _grid(n: int, extent: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(n*n, 2) points (x, y) on a regular grid over [-extent, extent]^2, row-major (y outer)."""
    t = torch.linspace(-extent, extent, n, dtype=dtype, device=device)
    gy, gx = torch.meshgrid(t, t, indexing="ij")
    return torch.stack([gx, gy], -1).reshape(-1, 2)


def orientation_histograms(
    ss: ScaleSpace, kp: Keypoints, samples: int = 19, window: float = 1.5, radius: float = 3.0
) -> torch.Tensor:
    """(K, 36) smoothed gradient orientation histograms.

    ``samples`` x ``samples`` gradient samples cover the disc of radius ``radius * window * sigma``. The values are
    differentiable with respect to the scale space (each sample votes linearly into its two nearest bins), so the
    interpolated peak angle of :func:`assign_orientations` carries gradients back to the pixels; the keypoint
    positions and scales used to place the samples are taken as constants, and which bin peaks is a discrete choice.
    """
    k = len(kp)
    dev, dt = kp.xy.device, kp.xy.dtype
    if k == 0:
        return torch.zeros(0, NUM_BINS, device=dev, dtype=dt)
    step = torch.pow(2.0, kp.octave.to(dt) + ss.first_octave)
    c = kp.xy.detach() / step.unsqueeze(1)
    sig = kp.scale.detach() / step
    ext = radius * window  # in units of sigma
    n = samples + 2
    h = 2.0 * ext / (samples - 1)  # spacing in sigma units
    g = _grid(n, ext + h, dt, dev)  # (n*n, 2): the samples at c + g * sigma
    axes = sig.view(-1, 1, 1) * torch.eye(2, dtype=dt, device=dev)
    # the samples in sampling order (no reordering copy of K x n^2 values); the histograms are reordered at the end
    vals, order = sample_affine_patches_grouped(ss, kp.batch, kp.octave, kp.level, c, axes, g)
    vals = vals.view(k, n, n)
    inner = _grid(samples, ext, dt, dev)
    r2 = (inner**2).sum(-1)
    wgt = torch.exp(-r2 / (2 * window * window)) * (r2 <= ext * ext)
    mag, b0, fr = gradient_votes(vals, NUM_BINS)
    mag, b0, fr = mag.reshape(k, -1) * wgt, b0.reshape(k, -1), fr.reshape(k, -1)
    nb = NUM_BINS + 2  # votes into b0, b0 + 1 without wrap-around, folded afterwards
    # one row per keypoint: scatter_add_ along the bins runs the rows in parallel and adds each row's votes in
    # order (the same sums as index_add_ over one flat histogram, which runs on one thread: 0.97 -> 0.27 ms)
    hist = torch.zeros(k, nb, device=dev, dtype=vals.dtype)
    hist = hist.scatter_add_(1, b0, mag * (1 - fr))
    hist.narrow(1, 1, nb - 1).scatter_add_(1, b0, mag * fr)  # into b0 + 1: the view one bin on
    return to_keypoint_order(smooth_circular(fold_bins(hist, NUM_BINS)), order)


def smooth_circular(hist: torch.Tensor) -> torch.Tensor:
    """(K, n) circular histograms smoothed by ``[1, 4, 6, 4, 1] / 16``: one multiply-add per tap in ``conv1d``'s
    order (the same values as ``conv1d`` with circular padding, without its per-call set-up).

    Example:
        >>> import torch
        >>> smooth_circular(torch.tensor([[16.0, 0.0, 0.0, 0.0, 0.0, 0.0]])).tolist()
        [[6.0, 4.0, 1.0, 0.0, 1.0, 4.0]]
    """
    n = hist.shape[1]
    hp = torch.cat([hist[:, n - 2 :], hist, hist[:, :2]], 1)
    taps = [1.0 / 16.0, 4.0 / 16.0, 6.0 / 16.0, 4.0 / 16.0, 1.0 / 16.0]
    out = hp[:, 0:n] * taps[0]
    for i in range(1, 5):
        out = out.add_(hp[:, i : i + n], alpha=taps[i])
    return out


def assign_orientations(
    ss: ScaleSpace, kp: Keypoints, peak_ratio: float = 0.8, max_orientations: int = 2
) -> tuple[Keypoints, torch.Tensor]:
    """Orientations of keypoints ``kp``: returns ``(kp_expanded, angle (M,))`` with one row per orientation.

    At most ``max_orientations`` peaks per keypoint (strongest first) are kept.

    Example:
        >>> import torch
        >>> from gdvision.features.scale_space import build_scale_space
        >>> from gdvision.features.detectors import detect
        >>> y, x = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
        >>> img = torch.exp(-((x - 32) ** 2 + (y - 32) ** 2) / 32.0) * (x > 32)
        >>> ss = build_scale_space(img[None, None], double_first=False)
        >>> kp2, ang = assign_orientations(ss, detect(ss, "hessian"))
        >>> ang.shape[0] == len(kp2)
        True
    """
    hist = orientation_histograms(ss, kp)
    if hist.shape[0] == 0:
        return kp, hist.new_zeros(0)
    left = torch.roll(hist, 1, dims=1)
    right = torch.roll(hist, -1, dims=1)
    mx = hist.amax(1, keepdim=True)
    peak = (hist > left) & (hist > right) & (hist >= peak_ratio * mx) & (mx > 0)
    # keep the strongest max_orientations peaks
    score = torch.where(peak, hist, torch.full_like(hist, -1.0))
    top = torch.topk(score, min(max_orientations, NUM_BINS), dim=1)
    valid = top.values >= 0
    ki, slot = torch.nonzero(valid, as_tuple=True)
    bins = top.indices[ki, slot]
    l, c, r = left[ki, bins], hist[ki, bins], right[ki, bins]
    den = l - 2 * c + r
    off = torch.where(den.abs() > 1e-12, 0.5 * (l - r) / den, torch.zeros_like(den))
    ang = torch.remainder((bins.to(hist.dtype) + off) * (2 * math.pi / NUM_BINS), 2 * math.pi)
    # keypoints without any peak (flat patch) keep angle 0
    none = torch.nonzero(~valid.any(1))[:, 0]
    idx = torch.cat([ki, none])
    ang = torch.cat([ang, hist.new_zeros(none.numel())])
    order = torch.argsort(idx, stable=True)
    return kp.index(idx[order]), ang[order]
