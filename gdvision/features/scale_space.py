"""Gaussian scale space in octaves (Lowe's SIFT layout).

An octave ``o`` holds ``S + 3`` Gaussian levels (``S`` = scales per octave, default 3) of one resolution;
level ``s`` is blurred to ``sigma0 * 2^((s - offset)/S)`` in the octave's own pixels (``sigma0`` = 1.6, ``offset``
= ``level_offsets[o]``, 0 but for a fine first octave). The next octave starts from level ``S + offset`` of the
previous one, subsampled by 2 (every second pixel), so its level 0
has the same blur as level ``S + offset`` of the previous octave.

Coordinates: octave pixel ``(x, y)`` is input pixel ``(x, y) * 2^(o + first_octave)`` (pixel centres at
integers, (0, 0) = centre of the top-left pixel). With ``double_first=True`` the input is upsampled to
``(2H-1, 2W-1)`` by bilinear interpolation through the pixel centres, so ``first_octave = -1`` and the
mapping above stays exact. With ``fine_first=True`` (and no doubling) octave 0 instead holds ``2S + 3`` levels
at native resolution, from ``sigma0 / 2`` up (``level_offsets[0] = S``): the doubled octave's scales without
its 4x pixels. A feature of octave-relative scale ``sigma`` has scale ``sigma * 2^(o + first)``
in input pixels.

Everything is differentiable with respect to the input image.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gdvision.errors import InputError
from gdvision.filters.kernels import gaussian_taps
from gdvision.filters.separable import gaussian_kernel1d, pad


@dataclass
class ScaleSpace:
    """A Gaussian scale space.

    Attributes:
        octaves: per octave a (B, S+3, H_o, W_o) tensor of Gaussian levels (finest octave first).
        sigma0: blur of level 0, in octave pixels.
        scales_per_octave: ``S``.
        first_octave: -1 when the first octave is the doubled input, else 0.
        level_offsets: per octave the number of levels below ``sigma0`` (None: all 0). A native-resolution
            fine first octave (``fine_first=True``) holds ``2S + 3`` levels from ``sigma0 / 2`` up, offset ``S``.
    """

    octaves: list[torch.Tensor]
    sigma0: float
    scales_per_octave: int
    first_octave: int
    level_offsets: list[int] | None = None

    def offset(self, o: int) -> int:
        """Levels below ``sigma0`` that octave ``o`` holds (``S`` for a native-resolution fine octave, else 0)."""
        return self.level_offsets[o] if self.level_offsets is not None else 0

    def level_sigma(self, s: float, o: int = 0) -> float:
        """Blur of level ``s`` of octave ``o`` in octave pixels: ``sigma0 * 2^((s - offset(o)) / S)``."""
        return self.sigma0 * 2.0 ** ((s - self.offset(o)) / self.scales_per_octave)

    def octave_step(self, o: int) -> float:
        """Size of one pixel of octave ``o`` in input pixels: ``2^(o + first_octave)``."""
        return 2.0 ** (o + self.first_octave)


MATRIX_BLUR_MAX = 128  # levels up to this side are blurred by matrix products (see blur)


@functools.lru_cache(maxsize=256)
def _blur_matrix(n: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(n, n) matrix ``M`` with ``x @ M`` = the Gaussian blur of rows ``x`` (length n, reflect-101 border, r < n)."""
    k = gaussian_kernel1d(sigma, dtype=torch.float64)
    r = k.numel() // 2
    i = torch.arange(n).view(1, -1)
    j = i + torch.arange(-r, r + 1).view(-1, 1)  # (taps, n) source of output i
    j = torch.where(j < 0, -j, j)
    j = torch.where(j > n - 1, 2 * (n - 1) - j, j)
    m = torch.zeros(n, n, dtype=torch.float64)
    m.index_put_((j.reshape(-1), i.expand_as(j).reshape(-1)), k.view(-1, 1).expand_as(j).reshape(-1), accumulate=True)
    return m.to(dtype=dtype, device=device)


def blur(x: torch.Tensor, sigma: float, out: torch.Tensor | None = None) -> torch.Tensor:
    """Isotropic Gaussian blur of (B, C, H, W) (reflect-101 border, taps to 3 sigma), differentiable.

    Same result as :func:`gdvision.filters.separable.gaussian_blur`, computed as sums of shifted slices (one
    multiply-add per tap and axis), which is several times faster on CPU than ``conv2d`` with one channel.
    ``out``: a tensor of ``x``'s shape (a view is fine) to write the result into (no gradients), else a new one.

    Example:
        >>> import torch
        >>> from gdvision.filters.separable import gaussian_blur
        >>> x = torch.rand(1, 1, 20, 30)
        >>> bool(torch.allclose(blur(x, 1.5), gaussian_blur(x, 1.5), atol=1e-6))
        True
    """
    k = gaussian_taps(sigma)
    r = len(k) // 2
    h, w = x.shape[-2:]
    if max(h, w) <= MATRIX_BLUR_MAX and r < min(h, w):
        # small levels: the per-tap operations cost more in call overhead than in arithmetic; two products with
        # the banded blur matrices (border included) do the same sums in another order (float rounding)
        z = _blur_matrix(h, sigma, x.dtype, x.device).t() @ (x @ _blur_matrix(w, sigma, x.dtype, x.device))
        return z if out is None else out.copy_(z)
    xp = pad(x, r, r, r, r, "reflect101")
    y = xp[..., :, 0:w] * k[0]
    for i in range(1, 2 * r + 1):
        y = y.add_(xp[..., :, i : i + w], alpha=k[i])
    z = y[..., 0:h, :] * k[0] if out is None else torch.mul(y[..., 0:h, :], k[0], out=out)
    for i in range(1, 2 * r + 1):
        z = z.add_(y[..., i : i + h, :], alpha=k[i])
    return z


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """Double (B, C, H, W) to (B, C, 2H-1, 2W-1) bilinearly so that output pixel ``2x`` is input pixel ``x``."""
    h, w = x.shape[-2:]
    return F.interpolate(x, size=(2 * h - 1, 2 * w - 1), mode="bilinear", align_corners=True)


def build_scale_space(
    img: torch.Tensor,
    sigma0: float = 1.6,
    scales_per_octave: int = 3,
    double_first: bool = True,
    assumed_blur: float = 0.5,
    num_octaves: int | None = None,
    min_size: int = 12,
    fine_first: bool = False,
) -> ScaleSpace:
    """Gaussian octaves of a gray image batch ``img`` (B, 1, H, W) in [0, 1].

    Args:
        img: (B, 1, H, W) float tensor.
        sigma0: blur of each octave's level 0 (octave pixels).
        scales_per_octave: ``S``; each octave stores ``S + 3`` levels (for ``S + 2`` DoG levels).
        double_first: upsample the input by 2 first (more small-scale features, 4x the work of octave 0).
        assumed_blur: the blur the input is assumed to have already (0.5 px, as in Lowe's paper).
        num_octaves: octave count; None: until the shorter side would drop below ``min_size``.
        min_size: the smallest side an octave may have when ``num_octaves`` is None.
        fine_first: without ``double_first``, give octave 0 ``S`` extra levels below ``sigma0`` (blurs
            ``sigma0 / 2 * 2^(s/S)``, ``2S + 3`` levels, ``level_offsets[0] = S``) at native resolution: the
            small scales of the doubled octave at about a third of its cost.

    Example:
        >>> import torch
        >>> ss = build_scale_space(torch.rand(1, 1, 64, 80), double_first=False)
        >>> [tuple(o.shape) for o in ss.octaves][:2]
        [(1, 6, 64, 80), (1, 6, 32, 40)]
        >>> ss = build_scale_space(torch.rand(1, 1, 64, 80), double_first=False, fine_first=True)
        >>> tuple(ss.octaves[0].shape), ss.level_sigma(0, 0), ss.level_sigma(3, 0)
        ((1, 9, 64, 80), 0.8, 1.6)
    """
    if img.dim() != 4 or img.shape[1] != 1:
        raise InputError(f"expected a (B, 1, H, W) gray image, got {tuple(img.shape)}")
    S = scales_per_octave
    x = img
    have = assumed_blur
    if double_first:
        x = upsample2(x)
        have = 2.0 * assumed_blur
    fine = fine_first and not double_first
    first = -1 if double_first else 0
    if num_octaves is None:
        side = min(x.shape[-2:])
        num_octaves = 1
        while (side + 1) // 2 >= min_size:
            side = (side + 1) // 2
            num_octaves += 1
    num_octaves = max(1, num_octaves)
    offsets = [S if (fine and o == 0) else 0 for o in range(num_octaves)]
    track = torch.is_grad_enabled() and img.requires_grad  # in-place filling would break autograd
    octaves: list[torch.Tensor] = []
    base = x
    for o in range(num_octaves):
        off = offsets[o]
        n = S + 3 + off
        sig = [sigma0 * 2.0 ** ((s - off) / S) for s in range(n)]
        inc = [math.sqrt(max(sig[s] ** 2 - sig[s - 1] ** 2, 1e-6)) for s in range(1, n)]
        if o == 0:
            base = blur(x, math.sqrt(max(sig[0] ** 2 - have**2, 1e-4)))
        else:
            prev = octaves[-1]
            base = prev[:, S + offsets[o - 1] : S + offsets[o - 1] + 1, ::2, ::2]
        if track:
            levels = [base]
            for s in range(1, n):
                levels.append(blur(levels[-1], inc[s - 1]))
            octaves.append(torch.cat(levels, dim=1))
        else:
            b_, _, h, w = base.shape
            oct_ = base.new_empty(b_, n, h, w)  # filled level by level: no second copy of the octave
            oct_[:, 0:1] = base
            for s in range(1, n):
                blur(oct_[:, s - 1 : s], inc[s - 1], out=oct_[:, s : s + 1])
            octaves.append(oct_)
    return ScaleSpace(octaves, sigma0, S, first, offsets if fine else None)


def image_groups(
    major: torch.Tensor, image: torch.Tensor, n_images: int
) -> tuple[torch.Tensor, list[tuple[int, list[tuple[int, int, int]]]]]:
    """Rows grouped by a ``major`` key (K,) long and then by ``image`` (K,) long in ``[0, n_images)``:
    ``(order, [(major, parts), ...])`` in increasing ``major``.

    ``order`` sorts the rows by (major, image); ``parts`` lists ``(image, start, count)``: the rows of one image in
    that group are the contiguous range ``order[start : start + count]`` (one sort, no per-group search).

    Example:
        >>> order, groups = image_groups(torch.tensor([2, 0, 2, 2]), torch.tensor([1, 0, 0, 1]), 2)
        >>> order[0].item(), order[1].item(), groups
        (1, 2, [(0, [(0, 0, 1)]), (2, [(0, 1, 1), (1, 2, 2)])])
    """
    key = major * n_images + image
    order = torch.argsort(key)
    keys, counts = torch.unique_consecutive(key[order], return_counts=True)
    groups: list[tuple[int, list[tuple[int, int, int]]]] = []
    start = 0
    for kv, cnt in zip(keys.tolist(), counts.tolist(), strict=True):
        mj, bi = divmod(kv, n_images)
        if groups and groups[-1][0] == mj:
            groups[-1][1].append((bi, start, cnt))
        else:
            groups.append((mj, [(bi, start, cnt)]))
        start += cnt
    return order, groups


def to_keypoint_order(rows: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Rows given in sampling order (row ``i`` belongs to keypoint ``order[i]``) back in keypoint order.

    Example:
        >>> to_keypoint_order(torch.tensor([[5.0], [7.0]]), torch.tensor([1, 0])).flatten().tolist()
        [7.0, 5.0]
    """
    return rows.new_empty(rows.shape).index_copy_(0, order, rows)


_OUTSIDE = -4.0  # a normalised coordinate whose bilinear neighbours all lie outside the image: it samples 0


def sample_affine_patches(
    ss: ScaleSpace,
    batch: torch.Tensor,
    octave: torch.Tensor,
    level: torch.Tensor,
    centre: torch.Tensor,
    axes: torch.Tensor,
    grid: torch.Tensor,
) -> torch.Tensor:
    """Bilinear samples of each keypoint's Gaussian level (``grid_sample``, zeros outside) at the octave-pixel
    positions ``centre[k] + grid[p, 0] * axes[k, 0] + grid[p, 1] * axes[k, 1]``: one affine image of a common grid.

    Args:
        ss: the scale space; batch, octave, level: (K,) long: image, octave and level each keypoint samples.
        centre: (K, 2) ``(x, y)`` in the pixels of each keypoint's octave.
        axes: (K, 2, 2): rows = the displacement ``(x, y)`` per unit of grid coordinate 0 and 1.
        grid: (P, 2) the common sample grid.

    Returns:
        (K, P) values (0 outside the image), differentiable with respect to the image, ``centre`` and ``axes``.
        :func:`sample_affine_patches_grouped` gives the same rows in the order it samples them, without the
        reordering copy.

    Example (a horizontal ramp: the value is the x position):
        >>> import torch
        >>> y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
        >>> ss = build_scale_space(x[None, None], double_first=False)
        >>> z = torch.zeros(1, dtype=torch.long)
        >>> g = torch.tensor([[0.0, 0.0], [2.0, 1.0], [-1.5, 3.0]])
        >>> v = sample_affine_patches(ss, z, z, z, torch.tensor([[10.0, 10.0]]), torch.eye(2)[None], g)
        >>> [round(t, 4) for t in v[0].tolist()]
        [10.0, 12.0, 8.5]
    """
    return to_keypoint_order(*sample_affine_patches_grouped(ss, batch, octave, level, centre, axes, grid))


def sample_affine_patches_grouped(
    ss: ScaleSpace,
    batch: torch.Tensor,
    octave: torch.Tensor,
    level: torch.Tensor,
    centre: torch.Tensor,
    axes: torch.Tensor,
    grid: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`sample_affine_patches` in sampling order: ``(vals (K, P), order (K,))``, row ``i`` of ``vals`` being
    keypoint ``order[i]`` (keypoints grouped by octave, level and image).

    For callers that reduce each row on its own (histograms, descriptors): they reorder their small results instead
    of the samples (``index_copy_`` of the rows cost 5x a contiguous copy).

    The positions are produced per group of keypoints of one (image, octave, level), already in ``grid_sample``'s
    normalised coordinates, by one small matrix product (no (K, P, 2) pass to build, sort, scale and shift them).
    Without a gradient, the groups of one (octave, level) in several images are sampled by one call, the images as
    its batch items (the same samples at the same positions; on the CPU the items run on separate threads).

    Example:
        >>> import torch
        >>> y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
        >>> ss = build_scale_space(x[None, None], double_first=False)
        >>> lv = torch.tensor([1, 0])
        >>> v, order = sample_affine_patches_grouped(
        ...     ss, lv * 0, lv * 0, lv, torch.tensor([[10.0, 10.0], [5.0, 5.0]]), torch.eye(2).expand(2, 2, 2),
        ...     torch.zeros(1, 2))
        >>> order.tolist(), [round(t, 4) for t in v[:, 0].tolist()]
        ([1, 0], [5.0, 10.0])
    """
    k, p = centre.shape[0], grid.shape[0]
    dt = ss.octaves[0].dtype
    if k == 0:
        return centre.new_zeros(0, p, dtype=dt), torch.zeros(0, dtype=torch.long, device=centre.device)
    nl = max(o.shape[1] for o in ss.octaves)  # groups of one (octave, level): major key octave * nl + level
    order, groups = image_groups(octave * nl + level, batch, ss.octaves[0].shape[0])
    size = torch.tensor([[o.shape[-1], o.shape[-2]] for o in ss.octaves], dtype=torch.float64)
    norm = (2.0 / (size - 1).clamp_min(1)).to(dtype=dt, device=centre.device)[octave].unsqueeze(1)  # (K, 1, 2)
    # per keypoint the (3, 2) map [grid_0, grid_1, 1] -> normalised (x, y), gathered in group order
    coef = torch.cat([axes.to(dt) * norm, centre.to(dt).unsqueeze(1) * norm - 1.0], 1).index_select(0, order)
    # (6, P * 2): row (i, j) holds [grid_0, grid_1, 1][:, i] in the columns (p, j), so that (cnt, 6) coefficients
    # @ it gives the positions (cnt, P, 2) in grid_sample's layout in one product (the zeros add nothing)
    g1 = torch.cat([grid.to(dt), grid.new_ones(p, 1, dtype=dt)], 1).t()  # (3, P)
    kron = g1.new_zeros(3, 2, p, 2)
    kron[:, 0, :, 0] = g1
    kron[:, 1, :, 1] = g1
    kron = kron.view(6, 2 * p)
    grad = torch.is_grad_enabled() and (coef.requires_grad or any(o.requires_grad for o in ss.octaves))
    # without gradients each group's samples are copied into their rows of ``out``; with them, concatenated at the end
    out = None if grad else centre.new_empty(k, p, dtype=dt)
    rows: list[torch.Tensor] = []

    def positions(start: int, cnt: int) -> torch.Tensor:  # (cnt, P, 2) of the keypoints order[start : start + cnt]
        return (coef[start : start + cnt].reshape(cnt, 6) @ kron).view(cnt, p, 2)

    def put(start: int, v: torch.Tensor) -> None:
        if out is None:
            rows.append(v)
        else:
            out[start : start + v.shape[0]] = v

    for ol, parts in groups:
        o, lv = divmod(ol, nl)
        levels = ss.octaves[o][:, lv : lv + 1]  # (B, 1, H, W)
        if len(parts) == 1 or grad:
            for bi, start, cnt in parts:
                pos = positions(start, cnt)[None]
                v = F.grid_sample(levels[bi : bi + 1], pos, mode="bilinear", padding_mode="zeros", align_corners=True)
                put(start, v[0, 0])
            continue
        # several images at this level: one call with the images as batch items (grid_sample runs batch items in
        # parallel on the CPU, one item on one thread), short ones padded with positions that sample 0
        m = max(cnt for _, _, cnt in parts)
        pos = coef.new_full((levels.shape[0], m, p, 2), _OUTSIDE)
        for bi, start, cnt in parts:
            pos[bi, :cnt] = positions(start, cnt)
        v = F.grid_sample(levels, pos, mode="bilinear", padding_mode="zeros", align_corners=True)  # (B, 1, m, P)
        for bi, start, cnt in parts:
            put(start, v[bi, 0, :cnt])
    return (torch.cat(rows) if out is None else out), order


def patch_gradients(vals: torch.Tensor, tiny: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Central-difference gradient magnitude and direction of sampled patches, with finite derivatives everywhere.

    Args:
        vals: (K, n, n) samples on a regular grid (rows = +y, columns = +x of the grid).
        tiny: squared magnitudes at or below this count as zero gradient (magnitude 0, angle 0).

    Returns:
        ``(magnitude, angle)``, each (K, n - 2, n - 2) for the interior samples; angle ``atan2(dy, dx)`` in radians,
        in grid coordinates. Differentiable with respect to ``vals`` (no NaN where the gradient vanishes). Where
        the magnitude is zero the angle is arbitrary (0 when ``vals`` requires gradients).

    Example:
        >>> import torch
        >>> ramp = torch.arange(4.0).repeat(4, 1)[None]  # rises along +x
        >>> mag, ang = patch_gradients(ramp)
        >>> mag.tolist(), ang.tolist()
        ([[[2.0, 2.0], [2.0, 2.0]]], [[[0.0, 0.0], [0.0, 0.0]]])
    """
    gx = vals[:, 1:-1, 2:] - vals[:, 1:-1, :-2]
    gy = vals[:, 2:, 1:-1] - vals[:, :-2, 1:-1]
    m2 = gx * gx + gy * gy
    nz = m2 > tiny
    if not (torch.is_grad_enabled() and vals.requires_grad):
        # the same magnitudes; the angle of a zeroed magnitude may differ, but it carries no weight
        return torch.sqrt(m2).masked_fill_(~nz, 0.0), torch.atan2(gy, gx)
    mag = torch.sqrt(torch.where(nz, m2, torch.ones_like(m2))) * nz
    ang = torch.atan2(torch.where(nz, gy, torch.zeros_like(gy)), torch.where(nz, gx, torch.ones_like(gx)))
    return mag, ang


def orientation_bins(f: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear-vote bins of angles ``f`` given in bin units within ``[-n, n)`` (e.g. ``atan2 * n / (2 pi)``).

    Returns ``(b0, frac)``: the lower bin ``floor(f mod n)`` as long in ``[0, n]`` and the weight ``frac`` of the
    next bin ``b0 + 1`` (``1 - frac`` goes to ``b0``), differentiable in ``f``. No wrap-around is applied: vote
    into ``n + 2`` bins and fold bins ``n, n + 1`` onto ``0, 1`` afterwards (:func:`fold_bins`); ``b0 = n`` only
    where ``f + n`` rounds to ``n``. Same bins as ``torch.remainder``, which divides and is several times slower
    on CPU.

    Example:
        >>> import torch
        >>> b0, fr = orientation_bins(torch.tensor([-0.25, 3.5, 7.75]), 8)
        >>> b0.tolist(), fr.tolist()
        ([7, 3, 7], [0.75, 0.5, 0.75])
    """
    f = torch.where(f < 0, f + n, f)
    fl = torch.floor(f.detach())
    return fl.long(), f - fl


def gradient_votes(vals: torch.Tensor, bins: int, tiny: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradient magnitudes of patches and their linear votes into ``bins`` orientation bins.

    ``vals`` (K, n, n) as for :func:`patch_gradients`; returns ``(magnitude, b0, frac)``, each (K, n - 2, n - 2):
    the magnitude, the lower bin (long in ``[0, bins]``, see :func:`orientation_bins`; vote into ``bins + 2`` bins
    and :func:`fold_bins`) and the share of ``b0 + 1``. With gradients: :func:`patch_gradients` and
    :func:`orientation_bins`. Without: one fused path, the negated differences give ``atan2 + pi`` in
    ``[0, 2 pi]`` directly (the same bins up to float rounding, four passes fewer).

    Example:
        >>> import torch
        >>> ramp = torch.arange(4.0).repeat(4, 1)[None]  # rises along +x: angle 0
        >>> mag, b0, fr = gradient_votes(ramp, 8)
        >>> mag[0, 0, 0].item(), b0[0, 0, 0].item() % 8, fr[0, 0, 0].item()
        (2.0, 0, 0.0)
    """
    if torch.is_grad_enabled() and vals.requires_grad:
        mag, ang = patch_gradients(vals, tiny)
        b0, fr = orientation_bins(ang * (bins / (2 * math.pi)), bins)
        return mag, b0, fr
    ngx = vals[:, 1:-1, :-2] - vals[:, 1:-1, 2:]
    ngy = vals[:, :-2, 1:-1] - vals[:, 2:, 1:-1]
    mag = torch.hypot(ngx, ngy)
    if tiny > 0:  # magnitudes <= sqrt(tiny) become 0: one pass (masked_fill_ with its mask: 10x the time)
        mag = torch.threshold_(mag, math.sqrt(tiny), 0.0)
    f = torch.atan2(ngy, ngx).add_(math.pi).mul_(bins / (2 * math.pi))
    b0 = f.long()  # f >= 0: truncation is the floor (no separate floor pass)
    return mag, b0, f.sub_(b0)


def fold_bins(hist: torch.Tensor, n: int, dim: int = -1) -> torch.Tensor:
    """Circular histograms of ``n`` bins from ``n + 2`` along ``dim``: bins ``n, n + 1`` are added to ``0, 1``.

    Example:
        >>> import torch
        >>> fold_bins(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), 4).tolist()
        [6.0, 8.0, 3.0, 4.0]
    """
    low = hist.narrow(dim, 0, n)
    return torch.cat([low.narrow(dim, 0, 2) + hist.narrow(dim, n, 2), low.narrow(dim, 2, n - 2)], dim)
