"""The no-gradient fast paths of the feature pipeline agree with the differentiable ones (issue 18)."""

from __future__ import annotations

import math

import pytest
import torch

from gdvision.features import scale_space
from gdvision.features.descriptors import sift_descriptors
from gdvision.features.detectors import _nms, _nonzero4, dog_response, refine_extrema, refine_half_pixel
from gdvision.features.match import detect_and_describe
from gdvision.features.orientation import orientation_histograms, smooth_circular
from gdvision.features.scale_space import (
    blur,
    build_scale_space,
    fold_bins,
    gradient_votes,
    orientation_bins,
    patch_gradients,
    sample_affine_patches,
    sample_affine_patches_grouped,
)


def _texture(size: int = 96, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.avg_pool2d(torch.rand(1, 1, size, size, generator=g), 5, 1, 2)


def test_orientation_bins_match_remainder_and_fold_wraps():
    f = torch.linspace(-8.0, 7.999, 1001)
    b0, fr = orientation_bins(f, 8)
    ref = torch.remainder(f, 8)
    assert bool(((b0 % 8).float() + fr - ref).abs().max() < 1e-5)
    assert int(b0.min()) >= 0 and int(b0.max()) <= 8
    # a vote into bin 8 / 9 (past the end) lands in bins 0 / 1
    h = torch.zeros(10)
    h[8], h[9], h[3] = 1.0, 2.0, 5.0
    assert fold_bins(h, 8).tolist() == [1.0, 2.0, 0.0, 5.0, 0.0, 0.0, 0.0, 0.0]


def test_gradient_votes_fast_path_equals_differentiable_path():
    vals = torch.rand(50, 12, 12, generator=torch.Generator().manual_seed(1))
    vals[0] = 0.3  # a flat patch: zero magnitude everywhere
    with torch.no_grad():
        mag_f, b0_f, fr_f = gradient_votes(vals, 36, tiny=1e-20)
    mag, ang = patch_gradients(vals, tiny=1e-20)
    b0, fr = orientation_bins(ang * (36 / (2 * math.pi)), 36)
    assert bool((mag_f - mag).abs().max() < 1e-6)
    assert float(mag_f[0].abs().max()) == 0.0
    # the same position on the circle of bins (up to float rounding, also across the wrap-around)
    pos_f = (b0_f.double() + fr_f.double()) % 36
    pos = (b0.double() + fr.double()) % 36
    d = (pos_f - pos).abs()
    d = torch.minimum(d, 36 - d)
    assert bool(d[mag > 0].max() < 1e-3)


def test_histograms_and_descriptors_agree_with_and_without_gradients():
    img = _texture()
    ss = build_scale_space(img, double_first=False, fine_first=True)
    f = detect_and_describe(img)
    from gdvision.features.match import keypoints_of

    kp = keypoints_of(f)
    with torch.no_grad():
        h_fast = orientation_histograms(ss, kp)
        d_fast = sift_descriptors(ss, kp.batch, kp.octave, kp.level, kp.xy, kp.scale, f.angle)
    ss_g = build_scale_space(img.clone().requires_grad_(True), double_first=False, fine_first=True)
    h_grad = orientation_histograms(ss_g, kp)
    d_grad = sift_descriptors(ss_g, kp.batch, kp.octave, kp.level, kp.xy, kp.scale, f.angle)
    assert len(kp) > 20
    assert bool((h_fast - h_grad.detach()).abs().max() < 1e-4 * float(h_grad.detach().abs().max()))
    assert bool((d_fast - d_grad.detach()).abs().max() < 1e-4)


def test_refinement_of_stacks_concatenated_flat_equals_one_stack_at_a_time():
    ss = build_scale_space(_texture(160, seed=2), double_first=False)
    thr = 0.5 * 0.04 / 3
    items = []
    for o in (0, 1):
        r = dog_response(ss, o)
        items.append((r, _nms(r, thr, 5, 1, 3, True)))
    flat = torch.cat([r.reshape(-1) for r, _ in items])
    start = [0, items[0][0].numel()]
    geo = torch.cat(
        [c.new_tensor([[st, *r.shape[1:]]]).expand(c.shape[0], 4) for st, (r, c) in zip(start, items, strict=True)]
    )
    idx, off, val, hxy, kept = refine_extrema(flat, torch.cat([c for _, c in items]), 5, 1, 3, geo=geo)
    one = [refine_extrema(r, c, 5, 1, 3) for r, c in items]
    assert all(len(o[0]) > 0 for o in one)
    assert torch.equal(idx, torch.cat([o[0] for o in one]))
    assert torch.equal(off, torch.cat([o[1] for o in one]))
    assert torch.equal(val, torch.cat([o[2] for o in one]))
    assert torch.equal(hxy, torch.cat([o[3] for o in one]))
    n0 = items[0][1].shape[0]
    assert torch.equal(kept, torch.cat([one[0][4], one[1][4] + n0]))


def test_refinement_numpy_path_equals_torch_path():
    """No gradients on the CPU: the NumPy refinement (adjugate 3x3 solves) takes the torch loop's moves and fits."""
    img = ((_texture(160, seed=4) - 0.5) * 8).clamp(-0.5, 0.5) + 0.5  # contrast: ~600 + ~10 candidates
    ss = build_scale_space(img, double_first=False, fine_first=True)
    for o, lo_hi in ((0, 6), (1, 3)):
        r = dog_response(ss, o)
        cand = _nms(r, 0.5 * 0.04 / 3, 5, 1, lo_hi, True)
        fast = refine_extrema(r, cand, 5, 1, lo_hi)  # no gradients: the NumPy path
        slow = refine_extrema(r.clone().requires_grad_(True), cand, 5, 1, lo_hi)  # the torch loop and a final refit
        assert len(fast[0]) > 5
        assert torch.equal(fast[0], slow[0]) and torch.equal(fast[4], slow[4])
        for a, b in zip(fast[1:4], slow[1:4], strict=True):
            assert a.dtype == b.dtype and bool((a - b.detach()).abs().max() < 1e-5)
        if o == 0:  # the half-pixel re-fit of the fine octave: NumPy solve without gradients, torch's with them
            idx, off, val = fast[0], fast[1], fast[2]
            o_fast, v_fast = refine_half_pixel(r, idx, off, val)
            o_slow, v_slow = refine_half_pixel(r.clone().requires_grad_(True), idx, off, val)
            assert bool((o_fast - off).abs().max() > 0.01)  # it moved them
            assert bool((o_fast - o_slow.detach()).abs().max() < 1e-5) and bool(
                (v_fast - v_slow.detach()).abs().max() < 1e-6
            )


@pytest.mark.parametrize("threads", [1, 2])
def test_half_pixel_refit_of_two_images_sampled_together_equals_one_image_at_a_time(threads: int):
    """Without a gradient the keypoints of one level in two images share one bicubic grid_sample call (the images
    as batch items, the shorter group padded): the same offsets and values, bit for bit, as one image at a time."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        img = ((torch.cat([_texture(128, seed=5), _texture(128, seed=6)]) - 0.5) * 8).clamp(-0.5, 0.5) + 0.5
        ss = build_scale_space(img, double_first=False, fine_first=True)
        r = dog_response(ss, 0)
        idx, off, val, _, _ = refine_extrema(r, _nms(r, 0.5 * 0.04 / 3, 5, 1, 6, True), 5, 1, 6)
        both = refine_half_pixel(r, idx, off, val)
        one = [torch.zeros_like(off), torch.zeros_like(val)]
        for b in (0, 1):
            sel = torch.nonzero(idx[:, 0] == b)[:, 0]
            assert len(sel) > 20
            i = idx[sel].clone()
            i[:, 0] = 0
            o, v = refine_half_pixel(r[b : b + 1], i, off[sel], val[sel])
            one[0][sel], one[1][sel] = o, v
    finally:
        torch.set_num_threads(before)
    assert bool((both[0] - off).abs().max() > 0.01)  # the re-fit moved them
    assert torch.equal(both[0], one[0]) and torch.equal(both[1], one[1])


def test_gradient_votes_zero_exactly_the_magnitudes_up_to_sqrt_tiny():
    x = torch.arange(6.0)
    slopes = torch.tensor([0.0, 2e-11, 5e-11, 5.1e-11, 1e-9, 0.5])  # central differences 2 * slope; sqrt(tiny) = 1e-10
    vals = slopes.view(-1, 1, 1) * x.view(1, 1, 6).expand(6, 6, 6)
    with torch.no_grad():
        mag, _, _ = gradient_votes(vals, 8, tiny=1e-20)
        raw, _, _ = gradient_votes(vals, 8)
    per_patch = mag.amax((1, 2))
    assert per_patch[:3].tolist() == [0.0, 0.0, 0.0]  # 0, 4e-11 and 1e-10 (at the bound) are zeroed ...
    assert torch.equal(per_patch[3:], raw.amax((1, 2))[3:]) and bool((per_patch[3:] > 0).all())  # ... the rest kept
    assert bool((raw.amax((1, 2))[1:3] > 0).all())


def test_nms_mask_scan_by_words_equals_nonzero():
    g = torch.Generator().manual_seed(3)
    for density in (0.0, 0.001, 0.05, 0.6):
        ok = torch.rand(2, 3, 17, 40, generator=g) < density  # 4080 elements: a multiple of 8
        assert torch.equal(_nonzero4(ok), torch.nonzero(ok))
    odd = torch.rand(1, 1, 5, 7, generator=g) < 0.3  # 35 elements: falls back to torch.nonzero
    assert torch.equal(_nonzero4(odd), torch.nonzero(odd))


def test_nms_threshold_is_strict():
    """A sample exactly at the threshold is no extremum (``> threshold``), the next float above it is."""
    resp = torch.zeros(1, 3, 11, 11)
    thr = 0.01
    resp[0, 1, 5, 5] = thr
    assert _nms(resp, thr, 1, 1, 1, True).shape[0] == 0
    resp[0, 1, 5, 5] = float(torch.nextafter(torch.tensor(thr), torch.tensor(1.0)))
    assert _nms(resp, thr, 1, 1, 1, True).tolist() == [[0, 1, 5, 5]]


def _sample_each(ss, batch, octave, level, pts):
    """Reference sampler: for each keypoint alone, grid_sample of its level at its (P, 2) octave-pixel positions."""
    rows = []
    for b, o, lv, p in zip(batch.tolist(), octave.tolist(), level.tolist(), pts, strict=True):
        img = ss.octaves[o][b : b + 1, lv : lv + 1]
        h, w = img.shape[-2:]
        grid = p * p.new_tensor([2.0 / (w - 1), 2.0 / (h - 1)]) - 1.0
        rows.append(torch.nn.functional.grid_sample(img, grid[None, None], align_corners=True)[0, 0, 0])
    return torch.stack(rows)


def test_affine_patches_equal_per_keypoint_sampling_with_gradients():
    """The descriptors' and orientations' sampler (positions by one product per group) = grid_sample of each
    keypoint alone at the same positions, values and gradients (to the image, the centres and the axes) within
    float rounding."""
    img = _texture(80, seed=4).requires_grad_(True)
    ss = build_scale_space(img, double_first=False)
    k = 12
    g = torch.Generator().manual_seed(5)
    batch = torch.zeros(k, dtype=torch.long)
    octave = torch.randint(0, 2, (k,), generator=g)
    level = torch.randint(0, 5, (k,), generator=g)
    centre = (torch.rand(k, 2, generator=g) * 30 + 5).requires_grad_(True)
    ang = torch.rand(k, generator=g) * 6.28
    rot = torch.stack([torch.stack([ang.cos(), ang.sin()], -1), torch.stack([-ang.sin(), ang.cos()], -1)], 1)
    axes = (rot * (torch.rand(k, 1, 1, generator=g) * 2 + 0.5)).requires_grad_(True)
    grid = torch.rand(30, 2, generator=g) * 8 - 4
    pts = centre[:, None] + grid[None, :, 0:1] * axes[:, None, 0] + grid[None, :, 1:2] * axes[:, None, 1]
    ref = _sample_each(ss, batch, octave, level, pts)
    out = sample_affine_patches(ss, batch, octave, level, centre, axes, grid)
    assert torch.allclose(out, ref, atol=1e-5)
    w = torch.rand(k, 30, generator=g)
    g_ref = torch.autograd.grad((ref * w).sum(), (img, centre, axes), retain_graph=True)
    g_out = torch.autograd.grad((out * w).sum(), (img, centre, axes))
    for a, b in zip(g_out, g_ref, strict=True):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("threads", [1, 2])
def test_affine_patches_of_several_images_sampled_together_equal_one_image_at_a_time(threads: int):
    """Without a gradient the groups of one level in two images are one grid_sample call (the images as batch
    items, short groups padded): the same samples, bit for bit, as the per-image calls of the gradient path."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(8)
        ss = build_scale_space(torch.rand(2, 1, 90, 120, generator=g), double_first=False)
        k = 301
        batch = torch.randint(0, 2, (k,), generator=g)
        octave = torch.randint(0, 2, (k,), generator=g)
        level = torch.randint(0, 5, (k,), generator=g)
        batch[:5] = 1  # a level that only image 1 samples: its own call
        octave[:5], level[:5] = 1, 4
        level[5:] = torch.where(level[5:] == 4, 3, level[5:])
        centre = torch.rand(k, 2, generator=g) * 40 + 3
        ang = torch.rand(k, generator=g) * 6.28
        rot = torch.stack([torch.stack([ang.cos(), ang.sin()], -1), torch.stack([-ang.sin(), ang.cos()], -1)], 1)
        grid = torch.rand(324, 2, generator=g) * 10 - 5
        with torch.no_grad():
            together = sample_affine_patches(ss, batch, octave, level, centre, rot * 1.7, grid)
        alone = sample_affine_patches(ss, batch, octave, level, centre.requires_grad_(True), rot * 1.7, grid)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(together, alone.detach())


@pytest.mark.parametrize("grad", [False, True])
def test_grouped_patches_are_the_keypoint_rows_in_sampling_order(grad: bool):
    """sample_affine_patches_grouped returns the rows of sample_affine_patches permuted by ``order``, which sorts the
    keypoints by (octave, level, image), with and without gradients."""
    g = torch.Generator().manual_seed(9)
    ss = build_scale_space(torch.rand(2, 1, 64, 80, generator=g), double_first=False)
    k = 97
    batch, octave = torch.randint(0, 2, (k,), generator=g), torch.randint(0, 2, (k,), generator=g)
    level = torch.randint(0, 5, (k,), generator=g)
    centre = (torch.rand(k, 2, generator=g) * 25 + 3).requires_grad_(grad)
    axes = torch.eye(2).expand(k, 2, 2) * 1.3
    grid = torch.rand(50, 2, generator=g) * 6 - 3
    with torch.set_grad_enabled(grad):
        vals, order = sample_affine_patches_grouped(ss, batch, octave, level, centre, axes, grid)
        full = sample_affine_patches(ss, batch, octave, level, centre, axes, grid)
    assert sorted(order.tolist()) == list(range(k))
    key = (octave * 10 + level) * 2 + batch
    assert bool((key[order][1:] >= key[order][:-1]).all())
    assert torch.equal(vals.detach(), full.detach()[order]) and vals.requires_grad == grad


def test_small_levels_blurred_by_matrices_equal_the_taps(monkeypatch):
    """Levels up to MATRIX_BLUR_MAX are blurred by two banded-matrix products: the per-tap sums (reflect-101
    border) within float rounding, gradients included; the radius may come close to the side."""
    g = torch.Generator().manual_seed(6)
    for shape, sigma in (((2, 1, 23, 30), 3.1), ((1, 2, 40, 17), 1.2), ((1, 1, 12, 64), 0.7)):
        x = torch.rand(*shape, generator=g).requires_grad_(True)
        w = torch.rand(*shape, generator=g)
        fast = blur(x, sigma)
        (g_fast,) = torch.autograd.grad((fast * w).sum(), x)
        monkeypatch.setattr(scale_space, "MATRIX_BLUR_MAX", 0)
        taps = blur(x, sigma)
        (g_taps,) = torch.autograd.grad((taps * w).sum(), x)
        monkeypatch.setattr(scale_space, "MATRIX_BLUR_MAX", 128)
        assert torch.allclose(fast, taps, atol=1e-6)
        assert torch.allclose(g_fast, g_taps, atol=1e-5)
        out = torch.empty(shape)
        with torch.no_grad():
            blur(x, sigma, out=out)
        assert torch.allclose(out, taps, atol=1e-6)


def test_orientation_smoothing_equals_circular_conv1d():
    g = torch.Generator().manual_seed(5)
    hist = torch.rand(300, 36, generator=g) * torch.rand(300, 1, generator=g) * 50
    ker = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]).view(1, 1, 5) / 16.0
    ref = torch.nn.functional.conv1d(torch.nn.functional.pad(hist[:, None], (2, 2), mode="circular"), ker)[:, 0]
    out = smooth_circular(hist)
    assert out.shape == (300, 36) and bool(torch.allclose(out, ref, rtol=1e-6, atol=0))
    h = hist.clone().requires_grad_(True)
    smooth_circular(h)[:, 0].sum().backward()  # bin 0 reads bins 34, 35, 0, 1, 2
    assert torch.allclose(h.grad[0, [34, 35, 0, 1, 2]], ker.view(-1)) and float(h.grad[0, 3:34].abs().sum()) == 0.0


def test_match_input_check_by_sum_still_rejects_non_finite_and_accepts_overflowing_finite():
    import pytest

    from gdvision.errors import InputError, SolverError
    from gdvision.features.match import match_images

    a = _texture(64)
    for bad in (float("nan"), float("inf"), -float("inf")):
        b = a.clone()
        b[0, 0, 3, 4] = bad
        with pytest.raises(InputError, match="image B contains NaN"):
            match_images(a, b)
    big = torch.full((1, 1, 64, 64), 3e38)  # finite, but its sum overflows: the exact test lets it through
    with pytest.raises(SolverError, match="0 keypoints"):  # past the input check: a flat image has no features
        match_images(big, big)


def test_two_nn_in_row_chunks_equals_one_product():
    from gdvision.features.matching import _two_nn

    g = torch.Generator().manual_seed(6)
    a = torch.nn.functional.normalize(torch.rand(300, 128, generator=g) ** 3, dim=1)
    b = torch.nn.functional.normalize(torch.rand(280, 128, generator=g) ** 3, dim=1)
    d_ref, i_ref = _two_nn(a, b, chunk=4096)
    d, i = _two_nn(a, b, chunk=7)  # 43 chunks, the last one short
    assert torch.equal(i, i_ref) and torch.allclose(d, d_ref, rtol=0, atol=1e-6)
    best = torch.cdist(a.double(), b.double()).topk(2, largest=False)
    assert torch.equal(i, best.indices) and torch.allclose(d.double(), best.values, atol=1e-5)
