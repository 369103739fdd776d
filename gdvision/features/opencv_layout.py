"""A differentiable replica of OpenCV's SIFT (``cv2.SIFT_create()`` with its defaults), on gdvision's pipeline.

``FeatureConfig(layout="opencv")`` routes :func:`gdvision.features.detect_and_describe` here. What follows OpenCV
(``modules/features2d/src/sift.dispatch.cpp`` and ``sift.simd.hpp``), and how:

- Scale space: the input is doubled to (2H, 2W) by bilinear interpolation with half-pixel centres (``resize``
  ``INTER_LINEAR``), assumed blurred by 0.5 before doubling (so 1.0 after), blurred to ``sigma0`` = 1.6; ``S + 3``
  levels per octave by incremental blurs with OpenCV's kernel size (``round(8 sigma + 1) | 1`` taps, reflect-101
  border); the next octave is level ``S`` of the previous one, every second pixel, ``floor(size / 2)``;
  ``round(log2(min(2H, 2W)) - 2) + 1`` octaves.
- Detection: :func:`gdvision.features.detectors.detect` on that scale space with no feature cap: 3x3x3 extrema of
  the DoG with ``|D| > 0.5 * contrast_threshold / S`` (OpenCV's prefilter), at least 5 octave pixels from the
  border, levels ``1..S``, up to 5 quadratic moves, kept when the interpolated ``|D| >= contrast_threshold / S``
  and ``tr^2 / det < (r + 1)^2 / r`` (``r`` = ``edge_threshold``). Exact duplicates are removed
  (``KeyPointsFilter::removeDuplicatedSorted``). ``max_features > 0`` keeps the strongest responses
  (``retainBest``); 0 keeps all (OpenCV's ``nfeatures=0``).
- Orientation (:func:`opencv_orientations`): on the integer sample and Gaussian level of the extremum, a 36-bin
  histogram of the pixels of the square of radius ``round(4.5 sigma)`` (octave pixels), weighted by magnitude
  times ``exp(-(i^2 + j^2) / (2 (1.5 sigma)^2))``, each pixel voting into its nearest bin, smoothed by
  ``[1, 4, 6, 4, 1] / 16``; every local peak ``>= 0.8`` x the highest gives a keypoint (no cap), its angle
  parabolically interpolated. A keypoint without a peak (flat patch) is dropped, as in OpenCV.
- Descriptor (:func:`opencv_descriptors`): the pixels within ``round(3 sigma sqrt(2) (d + 1) / 2)`` of the rounded
  keypoint position, rotated into the keypoint frame, cells ``3 sigma`` wide, weighted by ``exp(-(u^2 + v^2) / 8)``
  (``u, v`` in cells), trilinear votes into 4 x 4 x 8 bins (OpenCV's orientation direction and ``(row * 4 + col)
  * 8 + o`` layout), L2-normalised, clamped at 0.2, renormalised.

What differs: OpenCV computes in 8-bit-derived fixed point (values x 256) and rounds its descriptors to integers
(0..255, norm 512); the replica computes in float on [0, 1] images and returns unit-norm descriptors (compare with
OpenCV's divided by their norm). A refined extremum counts as converged at offsets below 0.6 (OpenCV: 0.5, then one
more move), and the 3x3x3 test compares ``|D|`` (OpenCV compares signed values: an extremum next to a stronger one
of the opposite sign is missed here). OpenCV uses a polynomial ``atan2``; the replica uses ``torch.atan2``.

Coordinates: OpenCV's doubled pixel ``c`` is input position ``c / 2 - 0.25``, and it reports ``c / 2``;
the replica returns gdvision's convention (the true position, pixel centres at integers), i.e. OpenCV's
``KeyPoint.pt - 0.25`` (:data:`OPENCV_SHIFT`). ``scale`` is sigma in input pixels (``KeyPoint.size / 2``);
``angle`` is OpenCV's ``KeyPoint.angle`` in radians.

Differentiable: positions, scales and responses (through the quadratic fit), the interpolated angle (through the
histogram's magnitudes) and the descriptors carry gradients to the pixels; which extrema, bins and peaks is a
discrete choice, as in OpenCV.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gdvision.features.descriptors import normalize_sift
from gdvision.features.detectors import Keypoints, quadratic_fit, window3
from gdvision.features.orientation import smooth_circular
from gdvision.features.scale_space import ScaleSpace, patch_gradients
from gdvision.filters.kernels import gaussian_taps
from gdvision.filters.separable import pad

OPENCV_SHIFT = 0.25  # OpenCV's KeyPoint.pt minus the true position of a keypoint (half-pixel doubling)
ORI_BINS = 36


def opencv_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of (B, C, H, W) as OpenCV's ``GaussianBlur`` of a non-8-bit image: ``round(8 sigma + 1) | 1``
    taps, reflect-101 border, separable; differentiable.

    Example:
        >>> import torch
        >>> y = opencv_blur(torch.ones(1, 1, 9, 9), 1.2)
        >>> round(float(y.min()), 6), round(float(y.max()), 6)
        (1.0, 1.0)
    """
    ksize = int(round(8 * sigma + 1)) | 1
    k = gaussian_taps(sigma, ksize)
    r = ksize // 2
    h, w = x.shape[-2:]
    xp = pad(x, r, r, r, r, "reflect101")
    for dim, n in ((-1, w), (-2, h)):  # symmetric taps: one multiply-add per pair (in place: autograd keeps none)
        y = xp.narrow(dim, r, n) * k[r]
        for i in range(1, r + 1):
            y = y.add_(xp.narrow(dim, r - i, n) + xp.narrow(dim, r + i, n), alpha=k[r + i])
        xp = y
    return xp


def opencv_scale_space(gray: torch.Tensor, sigma0: float = 1.6, scales_per_octave: int = 3) -> ScaleSpace:
    """OpenCV's SIFT Gaussian pyramid of (B, 1, H, W) images in [0, 1], as a :class:`ScaleSpace`.

    ``first_octave`` is -1 (the doubled image); octave pixel ``x`` of octave ``o`` is input position
    ``x * 2^(o - 1) - 0.25`` (OpenCV reports ``x * 2^(o - 1)``).

    Example:
        >>> import torch
        >>> ss = opencv_scale_space(torch.rand(1, 1, 40, 64))
        >>> [tuple(o.shape[-2:]) for o in ss.octaves], ss.octaves[0].shape[1]
        ([(80, 128), (40, 64), (20, 32), (10, 16), (5, 8)], 6)
    """
    S = scales_per_octave
    h, w = gray.shape[-2:]
    x = F.interpolate(gray, size=(2 * h, 2 * w), mode="bilinear", align_corners=False)
    x = opencv_blur(x, math.sqrt(max(sigma0 * sigma0 - 4 * 0.25, 0.01)))
    n_oct = int(round(math.log2(min(2 * h, 2 * w)) - 2)) + 1
    kf = 2.0 ** (1.0 / S)
    inc = [math.sqrt((sigma0 * kf**i) ** 2 - (sigma0 * kf ** (i - 1)) ** 2) for i in range(1, S + 3)]
    octaves = []
    for o in range(n_oct):
        if o > 0:
            prev = octaves[-1][:, S : S + 1]
            hh, ww = prev.shape[-2] // 2, prev.shape[-1] // 2
            x = prev[..., : 2 * hh : 2, : 2 * ww : 2]
        levels = [x]
        for s in inc:
            levels.append(opencv_blur(levels[-1], s))
        octaves.append(torch.cat(levels, dim=1))
    return ScaleSpace(octaves, sigma0, S, -1)


def _extrema(dog: torch.Tensor, threshold: float, border: int, S: int) -> torch.Tensor:
    """(K, 4) long samples (b, s, y, x): OpenCV's 3x3x3 extrema of ``dog`` (B, S + 2, H, W) (signed: a maximum of
    a positive or a minimum of a negative value, ``>=`` / ``<=`` all 26 neighbours), ``|D| > threshold``, levels
    ``1..S``, rows and columns in ``[border, size - border)``."""
    _, _, h, w = dog.shape
    if h <= 2 * border or w <= 2 * border:
        return torch.zeros(0, 4, dtype=torch.long, device=dog.device)
    x = dog[:, :, border - 1 : h - border + 1, border - 1 : w - border + 1]

    mx, mn = window3(x, torch.maximum), window3(x, torch.minimum)
    c = x[:, 1:-1, 1:-1, 1:-1]
    ok = ((c > threshold) & (c >= mx)) | ((c < -threshold) & (c <= mn))
    return torch.nonzero(ok) + torch.tensor([0, 1, border, border], device=dog.device)


def opencv_detect(
    ss: ScaleSpace, contrast_threshold: float = 0.04, edge_threshold: float = 10.0, border: int = 5
) -> Keypoints:
    """OpenCV's ``findScaleSpaceExtrema`` (without the orientations) on a :func:`opencv_scale_space`.

    Candidates of :func:`_extrema` with the prefilter ``0.5 * contrast_threshold / S``; up to 5 quadratic fits,
    the sample moving by the rounded offset until every offset is below 0.5 (dropped when it leaves levels
    ``1..S`` or the border, or does not converge); kept when ``|contrast| * S >= contrast_threshold``, ``det > 0``
    and ``tr^2 r < (r + 1)^2 det``. Positions in gdvision's convention (OpenCV's ``pt - 0.25``), ``level`` = the
    integer level, ``response`` = ``|contrast|``; differentiable through the final fit.

    Example:
        >>> import torch
        >>> y, x = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
        >>> blob = torch.exp(-((x - 30) ** 2 + (y - 33) ** 2) / (2 * 4.0**2))[None, None]
        >>> kp = opencv_detect(opencv_scale_space(blob))
        >>> [round(v, 2) for v in kp.xy[0].tolist()], round(float(kp.scale[0]), 2)  # cv2: pt 30.23, 33.23; size/2 3.55
        ([29.98, 32.98], 3.55)
    """
    S = ss.scales_per_octave
    r = edge_threshold
    found = []
    for o, g in enumerate(ss.octaves):
        dog = g[:, 1:] - g[:, :-1]
        _, _, h, w = dog.shape
        with torch.no_grad():
            cur = _extrema(dog.detach(), 0.5 * contrast_threshold / S, border, S)
            done = torch.zeros(len(cur), dtype=torch.bool, device=cur.device)
            ok = torch.ones_like(done)
            for _ in range(5):
                act = torch.nonzero(ok & ~done)[:, 0]
                if act.numel() == 0:
                    break
                off = quadratic_fit(dog, cur[act], singular=math.nan)[0]
                conv = (off.abs() < 0.5).all(-1)
                done[act[conv]] = True
                mv = act[~conv]
                step = off[~conv]
                fin = torch.isfinite(step).all(-1) & (step.abs() < 1e6).all(-1)
                nxt = cur[mv] + torch.round(torch.nan_to_num(step)).long()[:, [2, 2, 1, 0]] * cur.new_tensor(
                    [0, 1, 1, 1]
                )
                inside = fin & (nxt[:, 1] >= 1) & (nxt[:, 1] <= S)
                inside &= (
                    (nxt[:, 2] >= border) & (nxt[:, 2] < h - border) & (nxt[:, 3] >= border) & (nxt[:, 3] < w - border)
                )
                cur[mv[inside]] = nxt[inside]
                ok[mv[~inside]] = False
            cur = cur[ok & done]
        if cur.numel() == 0:
            continue
        off, contrast, hxy, _ = quadratic_fit(dog, cur, singular=math.nan)  # OpenCV's adjustLocalExtrema step
        tr = hxy[:, 0, 0] + hxy[:, 1, 1]
        det = hxy[:, 0, 0] * hxy[:, 1, 1] - hxy[:, 0, 1] * hxy[:, 0, 1]
        keep = (contrast.abs() * S >= contrast_threshold) & (det > 0) & (tr * tr * r < (r + 1) ** 2 * det)
        keep = torch.nonzero(keep.detach())[:, 0]
        cur, off, contrast = cur[keep], off[keep], contrast[keep]
        step = ss.octave_step(o)
        xy = (cur[:, [3, 2]].to(off.dtype) + off[:, :2]) * step - OPENCV_SHIFT
        scale = ss.sigma0 * torch.pow(2.0, (cur[:, 1].to(off.dtype) + off[:, 2]) / S) * step
        octave = torch.full_like(cur[:, 0], o)
        found.append(Keypoints(cur[:, 0], octave, cur[:, 1], xy, scale, contrast.abs()))
    if not found:
        z = torch.zeros(0, dtype=torch.long, device=ss.octaves[0].device)
        f = ss.octaves[0].new_zeros(0)
        return Keypoints(z, z, z, ss.octaves[0].new_zeros(0, 2), f, f)
    return Keypoints.cat(found)


def _octave_frame(ss: ScaleSpace, kp: Keypoints) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per keypoint: its position in octave pixels (K, 2) (OpenCV's frame), sigma in octave pixels (K,) and the
    octave's (W, H) (K, 2)."""
    step = torch.pow(2.0, kp.octave.to(kp.xy.dtype) + ss.first_octave)
    c = (kp.xy + OPENCV_SHIFT) / step.unsqueeze(1)
    w0, h0 = ss.octaves[0].shape[-1], ss.octaves[0].shape[-2]
    sizes = torch.stack([w0 // 2**kp.octave, h0 // 2**kp.octave], -1)  # each octave floor-halves the previous
    return c, kp.scale / step, sizes


def _pixel_patches(
    ss: ScaleSpace, kp: Keypoints, centre: torch.Tensor, groups: list[tuple[int, torch.Tensor]]
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Gradients of the pixels within a square of integer octave positions ``centre`` (K, 2), on each keypoint's
    Gaussian level, for ``groups`` ``[(radius, keypoint indices), ...]`` (:func:`_by_radius`).

    Per group ``(magnitude, angle, offsets, inside)``: (k, P) magnitude and y-down angle (radians) of the central
    differences, (P, 2) integer offsets (j, i) and (k, P) bool: the pixel has both neighbours in the image
    (OpenCV's ``0 < x < cols - 1``, same in y; the others get arbitrary values). All the pixels are read in one
    gather from the levels (so the backward pass writes one gradient of the scale space, not one per group).
    """
    dev = centre.device
    starts = [0]
    for o in ss.octaves[:-1]:
        starts.append(starts[-1] + o.numel())
    geo = torch.tensor([[st, *o.shape[1:]] for st, o in zip(starts, ss.octaves, strict=True)], device=dev)
    start, nl, h, w = geo[kp.octave].unbind(1)
    base = start + (kp.batch * nl + kp.level) * h * w
    lins, sizes = [], []
    for r, idx in groups:
        t = torch.arange(-r - 1, r + 2, device=dev)
        hi, wi = h[idx].unsqueeze(1), w[idx].unsqueeze(1)
        xs = (centre[idx, 0].long().unsqueeze(1) + t).clamp(torch.zeros_like(wi), wi - 1)  # (k, n)
        ys = (centre[idx, 1].long().unsqueeze(1) + t).clamp(torch.zeros_like(hi), hi - 1)
        lin = (base[idx].unsqueeze(1) + ys * wi).unsqueeze(2) + xs.unsqueeze(1)  # (k, n, n)
        lins.append(lin.reshape(-1))
        sizes.append(lin.numel())
    flat = torch.cat([o.reshape(-1) for o in ss.octaves])
    allv = flat[torch.cat(lins)] if lins else flat[:0]
    out = []
    for (r, idx), vals in zip(groups, torch.split(allv, sizes), strict=True):
        k, n = len(idx), 2 * r + 3
        mag, ang = patch_gradients(vals.view(k, n, n), tiny=1e-20)  # no gradient from vanishing differences
        tt = torch.arange(-r, r + 1, dtype=centre.dtype, device=dev)
        gy, gx = torch.meshgrid(tt, tt, indexing="ij")
        off = torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)
        p = centre[idx].unsqueeze(1) + off.unsqueeze(0)  # (k, P, 2)
        lim = torch.stack([w[idx], h[idx]], -1).to(p.dtype).sub(1).unsqueeze(1)
        inside = ((p > 0) & (p < lim)).all(-1)
        out.append((mag.reshape(k, -1), ang.reshape(k, -1), off, inside))
    return out


def _by_radius(radius: torch.Tensor, chunk: int) -> list[tuple[int, torch.Tensor]]:
    """Groups of keypoint indices with the same radius, at most ``chunk`` each: ``[(radius, idx), ...]``."""
    out = []
    for r in torch.unique(radius).tolist():
        idx = torch.nonzero(radius == r)[:, 0]
        out += [(int(r), idx[i : i + chunk]) for i in range(0, idx.numel(), chunk)]
    return out


def orientation_histograms_cv(ss: ScaleSpace, kp: Keypoints, chunk: int = 256) -> torch.Tensor:
    """(K, 36) smoothed orientation histograms the OpenCV way (bins of the y-down angle, bin ``b`` = ``10 b``
    degrees; differentiable with respect to the magnitudes)."""
    k = len(kp)
    c, sig, _ = _octave_frame(ss, kp)
    centre = torch.round(c.detach())
    sig = sig.detach()
    radius = torch.round(4.5 * sig).long()
    hist = kp.xy.new_zeros(k, ORI_BINS)
    groups = _by_radius(radius, chunk)
    for (_, idx), (mag, ang, off, inside) in zip(groups, _pixel_patches(ss, kp, centre, groups), strict=True):
        s = 1.5 * sig[idx]
        w = torch.exp(-(off * off).sum(-1).unsqueeze(0) / (2 * s * s).unsqueeze(1)) * inside
        b = torch.remainder(torch.round(ang.detach() * (ORI_BINS / (2 * math.pi))), ORI_BINS).long()
        hist = hist.index_put((idx,), torch.zeros_like(hist[idx]).scatter_add(1, b, mag * w))
    return smooth_circular(hist)


def opencv_orientations(ss: ScaleSpace, kp: Keypoints, peak_ratio: float = 0.8) -> tuple[Keypoints, torch.Tensor]:
    """One row per histogram peak ``>= peak_ratio`` x the highest (all of them, as OpenCV): ``(keypoints, angle)``,
    angle in radians, y-down (OpenCV's ``KeyPoint.angle``); keypoints without a peak are dropped."""
    if len(kp) == 0:
        return kp, kp.xy.new_zeros(0)
    hist = orientation_histograms_cv(ss, kp)
    left, right = torch.roll(hist, 1, 1), torch.roll(hist, -1, 1)
    mx = hist.amax(1, keepdim=True)
    ki, j = torch.nonzero((hist > left) & (hist > right) & (hist >= peak_ratio * mx), as_tuple=True)
    lv, cv, rv = left[ki, j], hist[ki, j], right[ki, j]
    b = j.to(hist.dtype) + 0.5 * (lv - rv) / (lv - 2 * cv + rv)
    ang = torch.remainder(b, ORI_BINS) * (2 * math.pi / ORI_BINS)
    ang = torch.where(ang >= 2 * math.pi - 1e-6, torch.zeros_like(ang), ang)
    return kp.index(ki), ang


def opencv_descriptors(
    ss: ScaleSpace, kp: Keypoints, angle: torch.Tensor, chunk: int = 64, d: int = 4, n: int = 8
) -> torch.Tensor:
    """(K, 128) unit descriptors in OpenCV's layout (see the module docstring), differentiable."""
    k = len(kp)
    if k == 0:
        return kp.xy.new_zeros(0, d * d * n)
    c, sig, sizes = _octave_frame(ss, kp)
    centre = torch.round(c.detach())
    hw = 3.0 * sig
    diag = torch.sqrt((sizes.to(sig.dtype) ** 2).sum(-1)).floor()
    radius = torch.minimum(torch.round(hw.detach() * math.sqrt(2.0) * (d + 1) * 0.5), diag).long()
    out = kp.xy.new_zeros(k, d * d * n)
    corner = torch.tensor(
        [(dr * (d + 2) + dc) * n for dr in (0, 1) for dc in (0, 1) for _ in (0, 1)], device=kp.xy.device
    )
    groups = _by_radius(radius, chunk)
    for (_, idx), (mag, phi, off, inside) in zip(groups, _pixel_patches(ss, kp, centre, groups), strict=True):
        kk = len(idx)
        th = angle[idx].unsqueeze(1)
        ct, st = torch.cos(th) / hw[idx].unsqueeze(1), torch.sin(th) / hw[idx].unsqueeze(1)
        u = off[:, 0] * ct + off[:, 1] * st  # (kk, P): along the keypoint direction, in cells
        v = off[:, 1] * ct - off[:, 0] * st
        rb, cb = v + (d / 2 - 0.5), u + (d / 2 - 0.5)
        ok = inside & (rb > -1) & (rb < d) & (cb > -1) & (cb < d)
        m = mag * torch.exp(-(u * u + v * v) / (d * d * 0.5)) * ok
        f = torch.remainder((th - phi) * (n / (2 * math.pi)), n)
        r0, c0, o0 = (torch.floor(z.detach()) for z in (rb, cb, f))
        fr, fc, fo = rb - r0, cb - c0, f - o0
        # trilinear votes into (d + 2) x (d + 2) x n bins (rows and columns -1 and d dropped afterwards), as OpenCV
        wr = torch.stack([m - m * fr, m * fr], -1)  # (kk, P, 2)
        wrc = torch.stack([wr - wr * fc.unsqueeze(-1), wr * fc.unsqueeze(-1)], -1)  # (kk, P, 2, 2)
        fo = fo.unsqueeze(-1).unsqueeze(-1)
        vals = torch.stack([wrc - wrc * fo, wrc * fo], -1)  # (kk, P, 2 rows, 2 cols, 2 orientations)
        cell = ((r0.long() + 1).clamp(0, d) * (d + 2) + (c0.long() + 1).clamp(0, d)) * n
        o0 = o0.long() % n
        orient = torch.stack([o0, (o0 + 1) % n], -1).repeat(1, 1, 4)  # (kk, P, 8) in (row, col, o) order
        bins = (cell.unsqueeze(-1) + corner) + orient
        hist = kp.xy.new_zeros(kk, (d + 2) * (d + 2) * n).scatter_add(1, bins.view(kk, -1), vals.reshape(kk, -1))
        hist = hist.view(kk, d + 2, d + 2, n)[:, 1 : d + 1, 1 : d + 1].reshape(kk, -1)
        out = out.index_put((idx,), hist)
    return normalize_sift(out)


def _unique_rows(kp: Keypoints, angle: torch.Tensor) -> torch.Tensor:
    """Indices of the first of each group of identical keypoints (image, position, scale, angle)."""
    key = torch.stack([kp.batch.to(kp.xy.dtype), kp.xy[:, 0], kp.xy[:, 1], kp.scale, angle], 1).detach()
    _, inv = torch.unique(key, dim=0, return_inverse=True)
    first = torch.full((int(inv.max()) + 1,), len(inv), dtype=torch.long, device=inv.device)
    first = first.scatter_reduce(0, inv, torch.arange(len(inv), device=inv.device), reduce="amin")
    return torch.sort(first).values


def opencv_features(gray: torch.Tensor, config) -> tuple[Keypoints, torch.Tensor, torch.Tensor]:
    """Keypoints, angles and descriptors of (B, 1, H, W) gray images in [0, 1] with OpenCV's SIFT layout.

    ``config``: a :class:`~gdvision.features.config.FeatureConfig` (``contrast_threshold``, ``edge_threshold``,
    ``sigma0``, ``scales_per_octave``, ``max_features``: 0 = all). Returns ``(keypoints, angle (K,), desc (K, 128))``.

    Example:
        >>> import torch
        >>> from gdvision.features.config import FeatureConfig
        >>> img = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 64, 64), 5, 1, 2)
        >>> kp, ang, desc = opencv_features(img, FeatureConfig(layout="opencv", max_features=0))
        >>> desc.shape[1], len(kp) == ang.shape[0] == desc.shape[0]
        (128, True)
    """
    ss = opencv_scale_space(gray, config.sigma0, config.scales_per_octave)
    kp = opencv_detect(ss, config.contrast_threshold, config.edge_threshold)
    kp, ang = opencv_orientations(ss, kp)
    if len(kp):
        keep = _unique_rows(kp, ang)
        kp, ang = kp.index(keep), ang[keep]
    if config.max_features and len(kp):
        keep = []
        for bi in torch.unique(kp.batch).tolist():
            sel = torch.nonzero(kp.batch == bi)[:, 0]
            keep.append(sel[torch.argsort(kp.response[sel].detach(), descending=True)[: config.max_features]])
        k = torch.cat(keep)
        kp, ang = kp.index(k), ang[k]
    return kp, ang, opencv_descriptors(ss, kp, ang)


__all__ = [
    "OPENCV_SHIFT",
    "opencv_blur",
    "opencv_descriptors",
    "opencv_detect",
    "opencv_features",
    "opencv_orientations",
    "opencv_scale_space",
    "orientation_histograms_cv",
]
