"""SIFT descriptors (Lowe 2004, section 6) computed from scale-space patches sampled with ``grid_sample``.

Each keypoint's patch is a ``(d+1) x (d+1)`` block of spatial bins (``d = 4``), each ``3 sigma`` wide (in the
pixels of the keypoint's octave), rotated by the keypoint angle; ``patch_size`` x ``patch_size`` samples
cover it. Gradients are central differences along the patch axes, so their directions are already relative
to the keypoint orientation. Each sample votes with its gradient magnitude times a Gaussian window
(``sigma = d/2`` bins) into a 4 x 4 x 8 histogram by trilinear interpolation (bilinear in space, linear in
orientation). The 128-vector is L2-normalised, clipped at 0.2 and renormalised; ``root=True`` then gives
RootSIFT (L1-normalise, square root). Keypoints are processed in chunks of ``chunk`` so memory stays bounded.

Layout of the 128 values: index ``(row * 4 + col) * 8 + o``, ``row``/``col`` the spatial bin along the
patch axes v/u (u = the keypoint direction ``(cos a, sin a)``, v = ``(-sin a, cos a)``, both in y-down pixel
coordinates) and ``o`` the orientation bin: gradients at angles ``[o, o + 1) * 45`` degrees from +u toward +v
(clockwise on screen), with linear interpolation between neighbouring bins.

Everything is differentiable with respect to the image and the keypoint positions and scales.
"""

from __future__ import annotations

import torch

from gdvision.features.scale_space import (
    ScaleSpace,
    fold_bins,
    gradient_votes,
    sample_affine_patches_grouped,
    to_keypoint_order,
)

DESCRIPTOR_SIZE = 128
VOTE_BLOCK = 128  # keypoints per block of the orientation votes (CPU cache)


def spatial_weights(patch_size: int, d: int = 4, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """(P*P, d*d) bilinear spatial-bin weights times the Gaussian window for the patch sample grid.

    Samples lie on a regular grid over ``[-(d+1)/2, (d+1)/2]`` bins (row-major, y outer); bin centres at
    ``j - (d-1)/2``.
    """
    ext = (d + 1) / 2.0
    t = torch.linspace(-ext, ext, patch_size, dtype=torch.float64)
    gv, gu = torch.meshgrid(t, t, indexing="ij")
    u, v = gu.reshape(-1), gv.reshape(-1)
    centres = torch.arange(d, dtype=torch.float64) - (d - 1) / 2.0
    wu = (1 - (u[:, None] - centres[None]).abs()).clamp_min(0)  # (P*P, d)
    wv = (1 - (v[:, None] - centres[None]).abs()).clamp_min(0)
    gauss = torch.exp(-(u * u + v * v) / (2 * (d / 2.0) ** 2))
    w = (wv[:, :, None] * wu[:, None, :]).reshape(-1, d * d) * gauss[:, None]
    return w.to(dtype=dtype, device=device)


def normalize_sift(desc: torch.Tensor, clip: float = 0.2, root: bool = False, eps: float = 1e-8) -> torch.Tensor:
    """L2-normalise, clip at ``clip`` and renormalise (N, D) histograms; ``root``: RootSIFT afterwards.

    Example:
        >>> import torch
        >>> v = normalize_sift(torch.tensor([[1.0, 0.0, 0.0, 0.01]]))
        >>> round(float(v.norm()), 4)
        1.0
    """
    desc = desc / desc.norm(dim=1, keepdim=True).clamp_min(eps)
    desc = desc.clamp(max=clip)
    desc = desc / desc.norm(dim=1, keepdim=True).clamp_min(eps)
    if root:
        desc = desc / desc.sum(dim=1, keepdim=True).clamp_min(eps)
        desc = torch.sqrt(desc.clamp_min(eps * eps))
    return desc


def sift_descriptors(
    ss: ScaleSpace,
    batch: torch.Tensor,
    octave: torch.Tensor,
    level: torch.Tensor,
    xy: torch.Tensor,
    scale: torch.Tensor,
    angle: torch.Tensor,
    patch_size: int = 16,
    d: int = 4,
    n_orient: int = 8,
    bin_factor: float = 3.0,
    root: bool = False,
    chunk: int = 2048,
) -> torch.Tensor:
    """(K, d*d*n_orient) SIFT descriptors of keypoints.

    Args:
        ss: the scale space the keypoints come from.
        batch, octave, level: (K,) long: image, octave and Gaussian level to sample.
        xy: (K, 2) input pixel positions; scale: (K,) sigma in input pixels; angle: (K,) radians (y-down).
        patch_size: samples per patch side (over ``d + 1`` bins).
        bin_factor: spatial bin width in units of sigma (3, Lowe's).
        root: RootSIFT instead of SIFT.
        chunk: keypoints per chunk (bounds memory: ~``chunk * patch_size^2 * 40`` bytes per step).

    Example:
        >>> import torch
        >>> from gdvision.features.scale_space import build_scale_space
        >>> ss = build_scale_space(torch.rand(1, 1, 48, 48), double_first=False)
        >>> z = torch.zeros(3, dtype=torch.long)
        >>> xy = torch.tensor([[20.0, 20.0], [24.0, 30.0], [30.0, 22.0]])
        >>> sift_descriptors(ss, z, z, z + 1, xy, torch.full((3,), 2.0), torch.zeros(3)).shape
        torch.Size([3, 128])
    """
    k = xy.shape[0]
    dt, dev = xy.dtype, xy.device
    if k == 0:
        return xy.new_zeros(0, d * d * n_orient)
    wsp = spatial_weights(patch_size, d, dt, dev)  # (P*P, d*d)
    ext = (d + 1) / 2.0
    h = 2 * ext / (patch_size - 1)
    n = patch_size + 2
    t = torch.linspace(-ext - h, ext + h, n, dtype=dt, device=dev)
    gv, gu = torch.meshgrid(t, t, indexing="ij")
    grid = torch.stack([gu.reshape(-1), gv.reshape(-1)], -1)  # (n*n, 2) in bin units
    outs = []
    for s0 in range(0, k, chunk):
        sl = slice(s0, min(k, s0 + chunk))
        kk = sl.stop - sl.start
        step = torch.pow(2.0, octave[sl].to(dt) + ss.first_octave)
        c = xy[sl] / step.unsqueeze(1)
        bw = bin_factor * scale[sl] / step  # bin width in octave pixels
        ca, sa = torch.cos(angle[sl]), torch.sin(angle[sl])
        # patch axis u = (cos a, sin a), v = (-sin a, cos a) in pixel coordinates, bw pixels per bin:
        # samples at c + grid_u * bw * u + grid_v * bw * v
        axes = torch.stack([torch.stack([ca, sa], -1), torch.stack([-sa, ca], -1)], 1) * bw.view(-1, 1, 1)
        # in sampling order (no reordering copy of the samples); the chunk's descriptors are reordered below
        vals, order = sample_affine_patches_grouped(ss, batch[sl], octave[sl], level[sl], c, axes, grid)
        vals = vals.view(kk, n, n)
        mag, b0, fr = gradient_votes(vals, n_orient, tiny=1e-20)
        b0, fr = b0.reshape(kk, 1, -1), fr.reshape(kk, 1, -1)
        m = mag.reshape(kk, 1, -1)
        pp = m.shape[-1]
        nb = n_orient + 2  # votes into bins b0, b0 + 1 without wrap-around, folded after the spatial sums
        # linear vote into the two nearest orientation bins: (kk, nb, P*P) with entry (k, o, p)
        mf = m * fr
        ml = m - mf
        # in blocks of VOTE_BLOCK keypoints (the (block, nb, P*P) votes stay in cache): each sample writes its two
        # bins b0, b0 + 1 (distinct places, so a plain scatter, 2-3x faster than index_add), then the bilinear
        # spatial vote and Gaussian window as one product: (block * nb, P*P) @ (P*P, d*d)
        sp = []
        for b in range(0, kk, VOTE_BLOCK):
            e = min(kk, b + VOTE_BLOCK)
            wo = torch.zeros(e - b, nb, pp, dtype=dt, device=dev)
            wo = wo.scatter_(1, b0[b:e], ml[b:e])
            wo.narrow(1, 1, nb - 1).scatter_(1, b0[b:e], mf[b:e])  # bins b0 + 1: the view one bin on
            sp.append(wo.view(-1, pp) @ wsp)
        # (kk, nb, d*d) -> fold -> (kk, d*d, n_orient)
        desc = fold_bins(torch.cat(sp).view(kk, nb, -1), n_orient, 1)
        desc = desc.transpose(1, 2).reshape(kk, -1)
        outs.append(to_keypoint_order(desc, order))
    return normalize_sift(torch.cat(outs), root=root)
