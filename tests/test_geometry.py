"""Two-view geometry: DLT, 8-point, RANSAC with outliers, degeneracy checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from synthetic import random_homography

from gdvision.coords import apply_homography, mean_corner_error
from gdvision.geometry import (
    _local_opt,
    _score_homographies,
    fundamental_8point,
    good_homography_samples,
    homography_4pt,
    homography_dlt,
    homography_folds,
    ransac,
    refine_homography,
    sampson_distance,
    transfer_error,
)
from gdvision.homography_np import local_opt

W, H = 320, 240


def _random_h(rng: np.random.Generator) -> torch.Tensor:
    return torch.from_numpy(random_homography(rng, W, H, shift_px=40))


def _correspondences(rng, Ht, n_in: int, n_out: int, noise: float):
    pa = torch.from_numpy(rng.uniform([0, 0], [W - 1, H - 1], (n_in + n_out, 2)))
    pb = apply_homography(Ht, pa)
    pb[:n_in] += torch.from_numpy(rng.normal(0, noise, (n_in, 2)))
    pb[n_in:] = torch.from_numpy(rng.uniform([0, 0], [W - 1, H - 1], (n_out, 2)))
    perm = torch.from_numpy(rng.permutation(n_in + n_out))
    is_in = torch.zeros(n_in + n_out, dtype=torch.bool)
    is_in[:n_in] = True
    return pa[perm], pb[perm], is_in[perm]


def test_dlt_exact_and_cv2_agreement(rng):
    import cv2

    Ht = _random_h(rng)
    pa = torch.from_numpy(rng.uniform(0, 300, (30, 2)))
    pb = apply_homography(Ht, pa) + torch.from_numpy(rng.normal(0, 0.5, (30, 2)))
    Hf = homography_dlt(pa[None], pb[None])[0]
    Hc, _ = cv2.findHomography(pa.numpy(), pb.numpy(), 0)
    # both are least-squares fits to the same noisy points: they agree to a fraction of a pixel
    assert float(mean_corner_error(Hf, torch.from_numpy(Hc), H, W)) < 0.3
    assert float(mean_corner_error(Hf, Ht, H, W)) < 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ransac_60_percent_outliers(seed):
    rng = np.random.default_rng(seed)
    Ht = _random_h(rng)
    pa, pb, is_in = _correspondences(rng, Ht, 120, 180, noise=0.3)
    res = ransac(pa, pb, "homography", threshold=2.0, seed=seed, image_size=(W, H))
    assert res.model is not None
    err = float(mean_corner_error(res.model, Ht, H, W))
    assert err < 0.5, err
    # almost all true inliers found, few outliers accepted (random outliers may fall within 2 px by chance)
    assert int((res.inliers & is_in).sum()) >= 115
    assert int((res.inliers & ~is_in).sum()) <= 3


def test_ransac_seed_reproducible():
    rng = np.random.default_rng(5)
    Ht = _random_h(rng)
    pa, pb, _ = _correspondences(rng, Ht, 60, 90, noise=0.5)
    r1 = ransac(pa, pb, seed=7, refine=False)
    r2 = ransac(pa, pb, seed=7, refine=False)
    assert torch.equal(r1.model, r2.model) and torch.equal(r1.inliers, r2.inliers)


def test_ransac_too_few_points():
    res = ransac(torch.rand(3, 2), torch.rand(3, 2))
    assert res.model is None and not bool(res.inliers.any())


def test_refine_homography_reduces_error(rng):
    Ht = _random_h(rng)
    pa = torch.from_numpy(rng.uniform(0, 300, (80, 2)))
    pb = apply_homography(Ht, pa) + torch.from_numpy(rng.normal(0, 0.2, (80, 2)))
    H0 = Ht.clone()
    H0[0, 2] += 3.0
    H0[1, 1] *= 1.01
    Hr = refine_homography(H0, pa, pb)
    assert float(transfer_error(Hr[None], pa, pb).mean()) < 0.35
    assert float(mean_corner_error(Hr, Ht, H, W)) < 0.3


def test_numpy_tail_equals_torch_steps(rng):
    """RANSAC's NumPy tail (local optimisation, LM) takes the same steps as the torch DLT and optim.minimize_lm."""
    from gdvision.optim import StepConfig, minimize_lm

    Ht = _random_h(rng)
    pa, pb, _ = _correspondences(rng, Ht, 70, 50, noise=0.7)
    H0 = Ht.clone()
    H0[0, 2] += 2.0
    H0[2, 0] += 2e-5
    M_np, e_np = local_opt(H0.numpy(), pa.numpy(), pb.numpy(), 3.0)
    M_t, e_t = _local_opt("homography", H0, pa, pb, 3.0)
    assert np.allclose(M_np, M_t.numpy(), rtol=0, atol=1e-9) and np.allclose(e_np, e_t.numpy(), rtol=0, atol=1e-9)
    inl = torch.from_numpy(e_np < 3.0)
    x, y = pa[inl, 0], pa[inl, 1]

    def residuals(p, index=None):  # the torch LM this replaced
        h = torch.cat([p, torch.ones_like(p[:, :1])], 1)
        Z = h[:, 6:7] * x + h[:, 7:8] * y + 1.0
        u, v = (h[:, 0:1] * x + h[:, 1:2] * y + h[:, 2:3]) / Z, (h[:, 3:4] * x + h[:, 4:5] * y + h[:, 5:6]) / Z
        z = torch.zeros_like(u)
        ju = torch.stack([x / Z, y / Z, 1 / Z, z, z, z, -u * x / Z, -u * y / Z], -1)
        jv = torch.stack([z, z, z, x / Z, y / Z, 1 / Z, -v * x / Z, -v * y / Z], -1)
        r = torch.cat([u - pb[inl, 0], v - pb[inl, 1]], 1)
        return r, torch.cat([ju, jv], 1), torch.ones_like(r)

    p, _, _ = minimize_lm(residuals, H0.reshape(-1)[:8][None], StepConfig("lm", iters=20, tol=1e-10), min_weight=8.0)
    Hr = refine_homography(H0, pa[inl], pb[inl])
    assert Hr.dtype == torch.float64 and float(Hr[2, 2]) == 1.0
    assert torch.allclose(Hr.reshape(-1)[:8], p[0], rtol=0, atol=1e-8)
    assert float(transfer_error(Hr[None], pa[inl], pb[inl]).mean()) < float(
        transfer_error(H0[None], pa[inl], pb[inl]).mean()
    )


def test_degenerate_samples_rejected():
    a = torch.tensor([[[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [0.0, 1.0]]])  # first three collinear
    b = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]])
    assert not bool(good_homography_samples(a, b)[0])
    sq = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]])
    mirrored = sq * torch.tensor([-1.0, 1.0])
    assert bool(good_homography_samples(sq, sq * 2)[0])
    assert not bool(good_homography_samples(sq, mirrored)[0])  # orientation flips: a fold


def test_folding_homography_detected():
    eye = torch.eye(3, dtype=torch.float64)
    # a strong perspective that sends the right part of the image behind the camera
    bad = eye.clone()
    bad[2, 0] = -1.0 / 100.0
    rot = torch.tensor(
        [[math.cos(0.3), -math.sin(0.3), 5], [math.sin(0.3), math.cos(0.3), 2], [0, 0, 1]], dtype=torch.float64
    )
    out = homography_folds(torch.stack([eye, bad, rot]), W, H)
    assert out.tolist() == [False, True, False]


def _stereo(rng, n):
    X = torch.from_numpy(np.c_[rng.uniform(-2, 2, (n, 2)), rng.uniform(4, 10, n)])
    K = torch.tensor([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]], dtype=torch.float64)
    a = ang = 0.1
    R = torch.tensor(
        [[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(ang), 0, math.cos(ang)]], dtype=torch.float64
    )
    t = torch.tensor([0.5, 0.1, 0.05], dtype=torch.float64)
    pa = (X @ K.T)[:, :2] / X[:, 2:]
    Xb = X @ R.T + t
    pb = (Xb @ K.T)[:, :2] / Xb[:, 2:]
    return pa, pb


def test_fundamental_ransac_with_outliers(rng):
    pa, pb = _stereo(rng, 150)
    pb = pb + torch.from_numpy(rng.normal(0, 0.3, pb.shape))
    n_out = 60
    pb_out = pb.clone()
    pb_out[:n_out] = torch.from_numpy(rng.uniform(0, 320, (n_out, 2)))
    res = ransac(pa, pb_out, "fundamental", threshold=1.0, seed=0)
    assert res.model is not None
    # the clean correspondences satisfy the recovered epipolar geometry
    d = sampson_distance(res.model[None], pa[n_out:], pb[n_out:])[0]
    assert float(d.median()) < 0.5
    assert int(res.inliers[n_out:].sum()) >= 80
    # exact 8-point on clean data
    pa0, pb0 = _stereo(rng, 20)
    F = fundamental_8point(pa0[None], pb0[None])[0]
    assert float(sampson_distance(F[None], pa0, pb0).max()) < 1e-6
    assert abs(float(torch.linalg.det(F))) < 1e-9


def test_homography_4pt_equals_dlt_on_minimal_samples(rng):
    """The closed-form minimal solver used by RANSAC gives the DLT's model (and the true one) on 4 points."""
    Hs = torch.stack([_random_h(rng) for _ in range(64)])
    pa = torch.from_numpy(rng.uniform(0, [W, H], size=(64, 4, 2)))
    pb = apply_homography(Hs, pa)
    ok = good_homography_samples(pa / 100, pb / 100)
    H4 = homography_4pt(pa[ok], pb[ok])
    Hd = homography_dlt(pa[ok], pb[ok])
    Ht = Hs[ok] / Hs[ok][:, 2:3, 2:3]
    assert ok.sum() > 40
    assert float(mean_corner_error(H4, Ht, H, W).max()) < 1e-6
    assert float(mean_corner_error(H4, Hd, H, W).max()) < 1e-3


def test_score_homographies_is_truncated_squared_transfer_error(rng):
    Hs = torch.stack([_random_h(rng) for _ in range(8)])
    pa = torch.from_numpy(rng.uniform(0, [W, H], size=(50, 2)))
    pb = apply_homography(Hs[0], pa) + torch.from_numpy(rng.normal(0, 2.0, size=(50, 2)))
    ph = torch.cat([pa, torch.ones(50, 1, dtype=pa.dtype)], 1).T.contiguous()
    e = transfer_error(Hs, pa, pb)
    ref = torch.clamp(e * e, max=9.0).sum(1)
    assert torch.allclose(_score_homographies(Hs, ph, pb, 9.0), ref, rtol=1e-9)


def test_sample_and_fold_tests_check_every_triangle_and_corner() -> None:
    """good_homography_samples and homography_folds against a per-triangle / per-corner loop written out."""

    def turn(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])

    g = torch.Generator().manual_seed(3)
    sa = torch.randn(3000, 4, 2, generator=g, dtype=torch.float64)
    sb = torch.randn(3000, 4, 2, generator=g, dtype=torch.float64)
    sa[:40, 2] = sa[:40, 0]  # collinear triples
    ok = torch.ones(3000, dtype=torch.bool)
    for i, j, k in ((0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3)):
        ca, cb = turn(sa[:, i], sa[:, j], sa[:, k]), turn(sb[:, i], sb[:, j], sb[:, k])
        ok &= (ca.abs() > 1e-3) & (cb.abs() > 1e-3) & ((ca > 0) == (cb > 0))
    assert torch.equal(good_homography_samples(sa, sb), ok) and 0 < int(ok.sum()) < 3000 and not bool(ok[:40].any())
    H = torch.eye(3, dtype=torch.float64) + 0.3 * torch.randn(3000, 3, 3, generator=g, dtype=torch.float64)
    c = torch.tensor([[0, 0, 1], [99, 0, 1], [99, 79, 1], [0, 79, 1]], dtype=torch.float64)
    m = c @ H.transpose(-1, -2)
    p = m[..., :2] / m[..., 2:]
    convex = torch.ones(3000, dtype=torch.bool)
    for i in range(4):
        convex &= turn(p[:, i], p[:, (i + 1) % 4], p[:, (i + 2) % 4]) > 0
    folds = ~((m[..., 2] > 1e-12).all(-1) & convex)
    assert torch.equal(homography_folds(H, 100, 80), folds) and 0 < int(folds.sum()) < 3000
