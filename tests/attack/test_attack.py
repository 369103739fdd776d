"""Tests of gdvision.attack: the budget, the quantisation, the loss going down, the report's measurements."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gdvision.attack import (
    AttackConfig,
    apply_perturbation,
    attack_pair,
    bounded_perturbation,
    consistent_matches,
    evaluate_attack,
    perturbation_stats,
    quantize_within_budget,
    ransac_failures,
    ratio_targeted_loss,
    ratio_untargeted_loss,
)
from gdvision.errors import InputError, UsageError
from gdvision.features.match import FeatureConfig, Features, MatchConfig, detect_and_describe
from gdvision.io.images import read_image, write_png
from gdvision.viz import before_after_matches


def _crop(img: np.ndarray, x: int, y: int, w: int, h: int) -> torch.Tensor:
    """(1, 1, h, w) 8-bit-exact crop of a gray float image."""
    t = torch.from_numpy(img[y : y + h, x : x + w].copy())[None, None]
    return torch.round(t * 255) / 255


SMALL = FeatureConfig(detector="hessian", max_features=300, double_first=False, contrast_threshold=0.01)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    eps_levels=st.floats(1.0, 40.0),
    scale=st.floats(0.001, 100.0),
    use_mask=st.booleans(),
)
def test_budget_never_exceeded(seed: int, eps_levels: float, scale: float, use_mask: bool) -> None:
    """Whatever the parameters, the quantised image stays within eps, in [0, 1], on 8-bit levels, 0 off the mask."""
    g = torch.Generator().manual_seed(seed)
    eps = eps_levels / 255.0
    x0 = torch.randint(0, 256, (1, 3, 9, 11), generator=g).float() / 255.0
    x0[..., 0, :] = 0.0  # pixels at the bounds
    x0[..., 1, :] = 1.0
    z = torch.randn(1, 3, 9, 11, generator=g) * scale
    mask = (torch.rand(1, 1, 9, 11, generator=g) > 0.5).float() if use_mask else None
    x = apply_perturbation(x0, bounded_perturbation(z, eps, mask))
    q = quantize_within_budget(x, x0, eps)
    d = (q - x0).abs()
    assert float(d.max()) <= eps + 1e-6
    assert float(q.min()) >= 0.0 and float(q.max()) <= 1.0
    assert torch.equal(torch.round(q * 255) / 255, q)
    if mask is not None:
        assert float((d * (1 - mask)).max()) == 0.0


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 1000), eps_levels=st.integers(1, 12), perturb=st.sampled_from(["a", "b", "both"]))
def test_attack_output_within_budget(seed: int, eps_levels: int, perturb: str) -> None:
    """The images returned by the solver itself respect the budget (and the untouched image is unchanged)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.round(torch.nn.functional.avg_pool2d(torch.rand(1, 1, 48, 48, generator=g), 3, 1, 1) * 255) / 255
    b = torch.round(torch.nn.functional.avg_pool2d(torch.rand(1, 1, 48, 48, generator=g), 3, 1, 1) * 255) / 255
    cfg = AttackConfig(eps=eps_levels / 255, steps=2, lr=0.05, perturb=perturb, features=SMALL, init="texture")
    r = attack_pair(a, b, None, cfg)
    assert float((r.adv_a - a).abs().max()) <= cfg.eps + 1e-6
    assert float((r.adv_b - b).abs().max()) <= cfg.eps + 1e-6
    if perturb == "a":
        assert torch.equal(r.adv_b, b)
    if perturb == "b":
        assert torch.equal(r.adv_a, a)


def test_quantize_examples() -> None:
    x0 = torch.tensor([0.0, 10 / 255, 250 / 255])
    q = quantize_within_budget(torch.tensor([-1.0, 10.6 / 255, 2.0]), x0, 3 / 255)
    assert (q * 255).round().tolist() == [0.0, 11.0, 253.0]
    s = perturbation_stats(q, x0)
    assert s["linf_255"] == pytest.approx(3.0, abs=1e-4)


@pytest.mark.parametrize("loss", ["ratio", "paper"])
def test_loss_decreases(natural_gray: np.ndarray, loss: str) -> None:
    """Targeted attack (from the clean images) on two unrelated crops of a real photo: the loss goes down."""
    a = _crop(natural_gray, 200, 100, 128, 96)
    b = _crop(natural_gray, 100, 380, 128, 96)
    cfg = AttackConfig(
        eps=8 / 255, steps=16, lr=0.003, features=SMALL, init="zero", focus=False, eval_every=0, loss=loss
    )
    r = attack_pair(a, b, None, cfg)
    assert r.iterations == 16 and len(r.losses) == 16
    # keypoints are re-detected at every step, so the loss is noisy: compare the first and last four steps
    first, last = np.mean(r.losses[:4]), np.mean(r.losses[-4:])
    # ratio: hinges that vanish as matches pass; paper: 1 + d_pos - d_neg never does (an offset near 1)
    assert last < 0.8 * first if loss == "ratio" else last < first - 0.05
    assert float((r.adv_a - a).abs().max()) <= 8 / 255 + 1e-6


def test_targeted_attack_creates_consistent_matches(natural_gray: np.ndarray) -> None:
    """From the texture start, a short attack with a larger budget gives many identity-consistent ratio matches."""
    a = _crop(natural_gray, 40, 60, 128, 96)
    b = _crop(natural_gray, 300, 330, 128, 96)
    eye = torch.eye(3, dtype=torch.float64)
    before = consistent_matches(detect_and_describe(a, SMALL), detect_and_describe(b, SMALL), eye, 3.0)
    cfg = AttackConfig(eps=16 / 255, steps=5, features=SMALL, init="texture", eval_every=0)
    r = attack_pair(a, b, None, cfg)
    after = consistent_matches(detect_and_describe(r.adv_a, SMALL), detect_and_describe(r.adv_b, SMALL), eye, 3.0)
    assert after >= before + 10


def _features(xy: list[list[float]], desc: torch.Tensor) -> Features:
    n = len(xy)
    z = torch.zeros(n)
    zl = torch.zeros(n, dtype=torch.long)
    return Features(torch.tensor(xy), torch.full((n,), 1.6), z, z, desc, zl, zl, zl)


def _unit(rows: list[list[float]]) -> torch.Tensor:
    d = torch.zeros(len(rows), 128)
    d[:, : len(rows[0])] = torch.tensor(rows)
    return d / d.norm(dim=1, keepdim=True)


def test_ratio_losses_follow_the_ratio_test() -> None:
    """The ratio losses are zero exactly when the ratio test already gives the wanted outcome."""
    eye = torch.eye(3, dtype=torch.float64)
    da = _unit([[1, 0, 0, 0], [0, 1, 0, 0]])
    fa = _features([[10.0, 10.0], [50.0, 50.0]], da)
    # B: a copy of A's descriptors at the same places (every match passes), plus a far, dissimilar keypoint
    fb = _features([[10.5, 10.0], [50.0, 50.5], [200.0, 100.0]], _unit([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]))
    assert consistent_matches(fa, fb, eye, 3.0) == 2
    assert float(ratio_untargeted_loss(fa, fb, eye, 10.0, 1.0, 0.05)) > 0.5 / 2  # two strong matches to break
    assert float(ratio_targeted_loss(fa, fb, eye, 4.0, 1.0, 0.05)) < 0.02  # only the 0.5 px offsets remain
    # move B's keypoints 30 px away: no true match is left (untargeted 0), none consistent (targeted > 0)
    fb_far = _features([[40.0, 40.0], [80.0, 80.0], [200.0, 100.0]], fb.desc)
    assert float(ratio_untargeted_loss(fa, fb_far, eye, 10.0, 1.0, 0.05)) == 0.0
    assert consistent_matches(fa, fb_far, eye, 3.0) == 0
    # B's partners present but with swapped descriptors: the targeted hinge is active, the untargeted one is not
    fb_swap = _features([[10.0, 10.0], [50.0, 50.0], [200.0, 100.0]], fb.desc[[1, 0, 2]])
    assert float(ratio_targeted_loss(fa, fb_swap, eye, 4.0, 1.0, 0.05)) > 0.5
    assert float(ratio_untargeted_loss(fa, fb_swap, eye, 10.0, 1.0, 0.05)) == 0.0


def test_returned_images_are_the_best_step(natural_gray: np.ndarray) -> None:
    """keep_best: the count reported is that of the returned (8-bit) images, and the best over the steps."""
    a = _crop(natural_gray, 40, 60, 128, 96)
    b = _crop(natural_gray, 300, 330, 128, 96)
    eye = torch.eye(3, dtype=torch.float64)
    seen: list[int] = []
    cfg = AttackConfig(eps=8 / 255, steps=6, lr=0.01, features=SMALL, init="texture", eval_every=1)
    r = attack_pair(a, b, None, cfg, progress=lambda pr: seen.append(pr.consistent))
    f = detect_and_describe(torch.cat([r.adv_a, r.adv_b]), SMALL)
    assert r.consistent == consistent_matches(f.image(0), f.image(1), eye, cfg.ransac_threshold)
    assert r.consistent >= max(seen)


def test_unmatch_stops_when_nothing_is_left(natural_gray: np.ndarray) -> None:
    """Untargeted attack of a 'true' H that no match follows: nothing to break, it stops after one step."""
    a = _crop(natural_gray, 40, 60, 96, 80)
    H = torch.tensor([[1.0, 0.0, 500.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    cfg = AttackConfig(mode="unmatch", eps=4 / 255, steps=20, features=SMALL, init="zero")
    r = attack_pair(a, a, H, cfg)
    assert r.stopped_early and r.iterations == 1 and r.near == 0
    assert float((r.adv_a - a).abs().max()) <= 4 / 255 + 1e-6


def test_ransac_failures_counts_missed_homographies(natural_gray: np.ndarray) -> None:
    """The untargeted ranking: 0 of 3 seeded RANSAC runs miss the true H of a real pair, 3 of 3 miss a wrong one."""
    a = _crop(natural_gray, 40, 60, 128, 96)
    b = _crop(natural_gray, 43, 62, 128, 96)  # B(x) = A(x + (3, 2)): H maps A to B by (-3, -2)
    f = detect_and_describe(torch.cat([a, b]), SMALL)
    H = torch.tensor([[1.0, 0.0, -3.0], [0.0, 1.0, -2.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    mc = MatchConfig(features=SMALL)
    assert ransac_failures(f.image(0), f.image(1), H, mc, (128, 96)) == 0
    wrong = H.clone()
    wrong[0, 2] += 60.0
    assert ransac_failures(f.image(0), f.image(1), wrong, mc, (128, 96)) == 3


def test_saved_png_reloads_to_evaluated_pixels(natural_gray: np.ndarray, tmp_path) -> None:
    a = _crop(natural_gray, 40, 60, 96, 80)
    b = _crop(natural_gray, 200, 300, 96, 80)
    cfg = AttackConfig(eps=6 / 255, steps=2, features=SMALL, init="texture", eval_every=0)
    r = attack_pair(a, b, None, cfg)
    write_png(tmp_path / "a_adv.png", r.adv_a)
    back = read_image(tmp_path / "a_adv.png")
    assert back.bit_depth == 8
    assert torch.equal(back.tensor(), r.adv_a)
    report, (before, after) = evaluate_attack(a, b, r, None, cfg, opencv=False)
    picture = before_after_matches((a, b, before), (r.adv_a, r.adv_b, after))
    assert report["perturbation"]["a"] == perturbation_stats(back.tensor(), a)
    assert report["perturbation"]["a"]["linf_255"] <= 6 + 1e-4
    assert picture.shape[1] == 3 and picture.shape[-1] == 192


def test_bad_inputs() -> None:
    a = torch.rand(1, 1, 40, 40)
    with pytest.raises(UsageError, match="target homography"):
        attack_pair(a, torch.rand(1, 1, 40, 50), None, AttackConfig(steps=1, features=SMALL))
    for eps in (0.0, -0.1, 1.5, float("nan"), 0.5 / 255):
        with pytest.raises(UsageError, match="eps"):
            attack_pair(a, a, None, AttackConfig(eps=eps, steps=1))
    with pytest.raises(UsageError, match="true homography"):
        attack_pair(a, a, None, AttackConfig(mode="unmatch", steps=1))
    with pytest.raises(InputError, match="NaN"):
        attack_pair(a * float("nan"), a, None, AttackConfig(steps=1))
    with pytest.raises(InputError, match="mask"):
        attack_pair(a, a, None, AttackConfig(steps=1), mask_a=torch.ones(1, 1, 10, 10))
    with pytest.raises(UsageError, match="perturb"):
        AttackConfig(perturb="c").validate()
