"""Scale space, detectors, orientation, SIFT descriptors, matching and the match pipeline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gdvision.coords import apply_homography, mean_corner_error
from gdvision.features.descriptors import sift_descriptors
from gdvision.features.detectors import detect, hessian2d, hessian_responses
from gdvision.features.match import FeatureConfig, MatchConfig, detect_and_describe, match_images
from gdvision.features.matching import match_descriptors
from gdvision.features.scale_space import build_scale_space
from gdvision.warp import warp_perspective


def _blob(size: int, cx: float, cy: float, s1: float, s2: float | None = None, theta: float = 0.0) -> torch.Tensor:
    s2 = s1 if s2 is None else s2
    y, x = torch.meshgrid(
        torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64), indexing="ij"
    )
    c, s = math.cos(theta), math.sin(theta)
    u = c * (x - cx) + s * (y - cy)
    v = -s * (x - cx) + c * (y - cy)
    return torch.exp(-(u**2) / (2 * s1**2) - v**2 / (2 * s2**2))[None, None]


@pytest.mark.parametrize("sigma", [2.5, 4.0, 6.0])
def test_doh_scale_matches_analytic_blob(sigma):
    """sigma^4 det(H) of a Gaussian blob of std t peaks at sigma = t with value amplitude^2 / 16."""
    img = _blob(112, 55.3, 57.6, sigma)
    ss = build_scale_space(img, double_first=True, assumed_blur=0.0)
    kp = detect(ss, "hessian")
    assert len(kp) == 1
    assert abs(float(kp.scale[0]) / sigma - 1) < 0.06
    assert float((kp.xy[0] - torch.tensor([55.3, 57.6], dtype=kp.xy.dtype)).norm()) < 0.15
    assert abs(float(kp.response[0]) / (1 / 16) - 1) < 0.15


def test_doh_cross_derivative_scaled_consistently():
    """An elongated blob gives the same determinant at 0, 30 and 45 degrees (Lxy scaled like Lxx, Lyy)."""
    vals = []
    for th in (0.0, math.pi / 6, math.pi / 4):
        img = _blob(96, 48, 48, 5.0, 2.5, th)
        ss = build_scale_space(img, double_first=False, assumed_blur=0.0)
        r = hessian_responses(ss)[0]
        vals.append(float(r[0, 2, 48, 48]))
    # analytic: at sigma = level-2 blur, det = 1/((s1^2+sg^2)(s2^2+sg^2)) * amplitude factor; all equal by isotropy
    assert max(vals) / min(vals) < 1.03, vals
    # and the stencils themselves: exact on a quadratic with a cross term
    y, x = torch.meshgrid(torch.arange(7.0), torch.arange(7.0), indexing="ij")
    lxx, lyy, lxy = hessian2d((0.5 * x**2 + 1.5 * y**2 + 0.7 * x * y)[None, None])
    assert [round(float(t[0, 0, 3, 3]), 5) for t in (lxx, lyy, lxy)] == [1.0, 3.0, 0.7]


def test_dog_detects_blob_location():
    img = _blob(96, 40.4, 51.2, 4.0)
    kp = detect(build_scale_space(img, assumed_blur=0.0), "dog")
    assert len(kp) >= 1
    best = int(torch.argmax(kp.response))
    assert float((kp.xy[best] - torch.tensor([40.4, 51.2], dtype=kp.xy.dtype)).norm()) < 0.3


def _texture(natural_gray: np.ndarray, size: int = 160) -> torch.Tensor:
    return torch.from_numpy(natural_gray[150 : 150 + size, 180 : 180 + size].copy())[None, None]


def _similarity(angle_deg: float, scale: float, c: float, shift=(0.0, 0.0)) -> torch.Tensor:
    a = math.radians(angle_deg)
    ca, sa = math.cos(a) * scale, math.sin(a) * scale
    return torch.tensor(
        [[ca, -sa, c - ca * c + sa * c + shift[0]], [sa, ca, c - sa * c - ca * c + shift[1]], [0, 0, 1]],
        dtype=torch.float64,
    )


@pytest.mark.parametrize("angle,scale", [(35.0, 1.0), (0.0, 1.5), (-60.0, 0.8)])
def test_descriptor_invariance_on_warped_keypoints(natural_gray, angle, scale):
    """The descriptor of a keypoint equals the descriptor of its warped twin (position, scale, angle mapped)."""
    a = _texture(natural_gray, 200)
    Hm = _similarity(angle, scale, 99.5)
    b, _ = warp_perspective(a, Hm, (200, 200))
    ssa = build_scale_space(a)
    ssb = build_scale_space(b)
    fa = detect_and_describe(a, FeatureConfig(max_features=60))
    # keep keypoints well inside both images and of moderate scale
    xyb = apply_homography(Hm, fa.xy.double())
    inside = ((xyb - 99.5).abs() < 60).all(1) & ((fa.xy - 99.5).abs() < 60).all(1) & (fa.scale < 4)
    sel = torch.nonzero(inside)[:, 0][:20]
    assert sel.numel() >= 8
    da = sift_descriptors(ssa, fa.batch[sel], fa.octave[sel], fa.level[sel], fa.xy[sel], fa.scale[sel], fa.angle[sel])
    # the same keypoint in B: level chosen from the mapped scale
    sb = fa.scale[sel] * scale
    s_rel = torch.log2(sb / ssb.sigma0) * ssb.scales_per_octave - ssb.first_octave * ssb.scales_per_octave
    octv = torch.clamp(torch.floor(s_rel / ssb.scales_per_octave), 0, len(ssb.octaves) - 1).long()
    lvl = torch.round(s_rel - octv * ssb.scales_per_octave).long().clamp(0, ssb.scales_per_octave + 2)
    db = sift_descriptors(ssb, fa.batch[sel], octv, lvl, xyb[sel].float(), sb, fa.angle[sel] + math.radians(angle))
    same = (da * db).sum(1)
    other = (da * db.roll(1, 0)).sum(1)
    assert float(same.median()) > 0.9, same
    assert float(same.median()) > float(other.median()) + 0.2


def test_matching_invariant_to_rotation_and_scale(natural_gray):
    """Detected and described independently, 40 degree rotation + 1.3 scale: most ratio matches are correct."""
    a = _texture(natural_gray, 200)
    Hm = _similarity(40.0, 1.3, 99.5)
    b, _ = warp_perspective(a, Hm, (200, 200))
    f = detect_and_describe(torch.cat([a, b]), FeatureConfig(max_features=800))
    fa, fb = f.image(0), f.image(1)
    idx, _ = match_descriptors(fa.desc, fb.desc, "ratio", 0.8)
    pa = fa.xy[idx[:, 0]].double()
    pb = fb.xy[idx[:, 1]].double()
    err = (apply_homography(Hm, pa) - pb).norm(dim=1)
    assert idx.shape[0] >= 30
    assert float((err < 3).double().mean()) > 0.8


def test_matchers_on_known_permutation(rng):
    da = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(50, 128))).float(), dim=1)
    perm = torch.from_numpy(rng.permutation(50))
    db = da[perm] + 0.05 * torch.from_numpy(rng.normal(size=(50, 128))).float()
    inv = torch.argsort(perm)
    for method in ("ratio", "mnn", "smnn"):
        idx, score = match_descriptors(da, db, method)
        assert idx.shape[0] >= 48, method
        assert bool((inv[idx[:, 0]] == idx[:, 1]).all()), method
        assert bool((score[1:] >= score[:-1]).all())
    # ratio test rejects ambiguous matches: a duplicated row in B makes its partner ambiguous
    db2 = torch.cat([db, db[:1]])
    idx, _ = match_descriptors(da, db2, "ratio", 0.8)
    assert int(perm[0]) not in idx[:, 0].tolist()
    assert match_descriptors(da[:0], db, "mnn")[0].shape == (0, 2)


def test_gradients_flow_from_descriptors_and_locations_to_pixels(natural_gray):
    img = _texture(natural_gray, 96).clone().requires_grad_(True)
    f = detect_and_describe(img, FeatureConfig(max_features=40))
    assert len(f) > 5
    (f.desc[:, ::3].sum() + f.xy.sum() + f.scale.sum()).backward()
    g = img.grad
    assert g is not None and bool(torch.isfinite(g).all()) and float(g.abs().sum()) > 0
    # descriptor derivative agrees with a finite difference (float64, fixed keypoints)
    x = _texture(natural_gray, 64).double()
    kp_xy = torch.tensor([[30.3, 28.7], [35.2, 33.1]], dtype=torch.float64)
    args = (torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.long), torch.tensor([1, 2]))
    direction = torch.from_numpy(np.random.default_rng(1).normal(size=x.shape))

    def fn(im: torch.Tensor) -> torch.Tensor:
        ss = build_scale_space(im, double_first=False)
        d = sift_descriptors(
            ss, *args, kp_xy, torch.tensor([3.5, 4.5], dtype=torch.float64), torch.tensor([0.3, 1.0]).double()
        )
        return (d * torch.linspace(0, 1, 128, dtype=torch.float64)).sum()

    xr = x.clone().requires_grad_(True)
    fn(xr).backward()
    analytic = float((xr.grad * direction).sum())
    eps = 1e-6
    numeric = (float(fn(x + eps * direction)) - float(fn(x - eps * direction))) / (2 * eps)
    assert abs(analytic - numeric) < 1e-3 * max(1.0, abs(numeric)), (analytic, numeric)


def test_orientation_angle_is_differentiable_within_its_peak(natural_gray):
    """The interpolated peak angle carries gradients to the pixels, and they agree with a finite difference
    (float64, fixed keypoints; the step is small enough that no peak changes bin)."""
    from gdvision.features.detectors import Keypoints
    from gdvision.features.orientation import assign_orientations

    x = _texture(natural_gray, 64).double()
    kp = Keypoints(
        torch.zeros(3, dtype=torch.long),
        torch.zeros(3, dtype=torch.long),
        torch.tensor([1, 2, 2]),
        torch.tensor([[30.3, 28.7], [35.2, 33.1], [24.0, 40.5]], dtype=torch.float64),
        torch.tensor([2.5, 3.5, 3.0], dtype=torch.float64),
        torch.ones(3, dtype=torch.float64),
    )
    direction = torch.from_numpy(np.random.default_rng(2).normal(size=x.shape))

    def angles(im: torch.Tensor) -> torch.Tensor:
        return assign_orientations(build_scale_space(im, double_first=False), kp, max_orientations=1)[1]

    xr = x.clone().requires_grad_(True)
    a0 = angles(xr)
    assert a0.shape == (3,)
    a0.sum().backward()
    assert xr.grad is not None and bool(torch.isfinite(xr.grad).all()) and float(xr.grad.abs().sum()) > 0
    analytic = float((xr.grad * direction).sum())
    eps = 1e-7
    numeric = float((angles(x + eps * direction) - angles(x - eps * direction)).sum()) / (2 * eps)
    assert abs(analytic - numeric) < 1e-3 * max(1.0, abs(numeric)), (analytic, numeric)


def test_orientation_follows_rotation(natural_gray):
    a = _texture(natural_gray, 160)
    Hm = _similarity(70.0, 1.0, 79.5)
    b, _ = warp_perspective(a, Hm, (160, 160))
    f = detect_and_describe(torch.cat([a, b]), FeatureConfig(max_features=300))
    fa, fb = f.image(0), f.image(1)
    pa = apply_homography(Hm, fa.xy.double())
    d = torch.cdist(pa, fb.xy.double())
    near = d.min(1)
    ok = near.values < 1.0
    assert int(ok.sum()) >= 15
    diff = (
        torch.remainder(fb.angle[near.indices[ok]] - fa.angle[ok] - math.radians(70) + math.pi, 2 * math.pi) - math.pi
    )
    assert float((diff.abs() < math.radians(10)).double().mean()) > 0.6


def test_match_images_synthetic_homography(natural_gray):
    import cv2

    a = torch.from_numpy(natural_gray[100:280, 100:340].copy())[None, None]
    src = np.float32([[0, 0], [239, 0], [239, 179], [0, 179]])
    dst = src + np.float32([[12, -8], [-10, 6], [8, 14], [-6, -9]])
    Hm = torch.from_numpy(cv2.getPerspectiveTransform(src, dst)).double()
    b, _ = warp_perspective(a, Hm, (240, 180))
    b = (b * 1.1 + 0.02).clamp(0, 1)
    res = match_images(a, b, MatchConfig(features=FeatureConfig(max_features=1500)))
    assert int(res.inliers.sum()) >= 30
    assert float(mean_corner_error(res.model, Hm, 180, 240)) < 1.0
    res2 = match_images(a, b, MatchConfig(matcher="smnn", features=FeatureConfig(detector="hessian")))
    assert float(mean_corner_error(res2.model, Hm, 180, 240)) < 1.5


def test_match_refine_with_register(natural_gray):
    a = torch.from_numpy(natural_gray[100:260, 120:320].copy())[None, None]
    Hm = _similarity(5.0, 1.05, 90.0, (3.0, -2.0))
    b, _ = warp_perspective(a, Hm, (200, 160))
    res = match_images(a, b, MatchConfig(refine=True))
    assert res.refined
    assert float(mean_corner_error(res.model, Hm, 160, 200)) < 0.5


def test_repeatability_vs_lowe_keys(sample_dir):
    import imageio.v3 as iio

    from gdvision.io.keypoints import read_lowe

    ref = read_lowe(sample_dir / "box" / "box.sift")
    assert len(ref) == 638
    img = iio.imread(sample_dir / "box" / "box.png").astype(np.float32) / 255.0
    f = detect_and_describe(torch.from_numpy(img)[None, None], FeatureConfig(max_features=0))
    d = torch.cdist(torch.from_numpy(ref.xy).float(), f.xy.float())
    r = f.scale.float()[None] / torch.from_numpy(ref.scale).float()[:, None]
    ok = ((d <= 2) & (r <= 1.5) & (r >= 1 / 1.5)).any(1)
    assert float(ok.float().mean()) >= 0.7


@pytest.mark.parametrize("sigma", [1.2, 1.6, 2.4])
@pytest.mark.parametrize("detector", ["hessian", "dog"])
def test_fine_first_octave_localises_small_blobs(sigma, detector):
    """The native-resolution fine octave (levels below sigma0, half-pixel re-fit) finds blobs of 1-2.5 px."""
    img = _blob(64, 30.3, 33.7, sigma)
    ss = build_scale_space(img, double_first=False, fine_first=True, assumed_blur=0.0)
    assert ss.octaves[0].shape[1] == 2 * ss.scales_per_octave + 3 and ss.level_sigma(0, 0) == 0.8
    kp = detect(ss, detector)
    best = int(torch.argmax(kp.response))
    assert float((kp.xy[best] - torch.tensor([30.3, 33.7], dtype=kp.xy.dtype)).norm()) < 0.15
    assert abs(float(kp.scale[best]) / sigma - 1) < 0.25
