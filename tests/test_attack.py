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
)
from gdvision.errors import InputError, UsageError
from gdvision.io import read_image, write_png
from gdvision.match import FeatureConfig, detect_and_describe


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


def test_loss_decreases(natural_gray: np.ndarray) -> None:
    """Targeted attack (from the clean images) on two unrelated crops of a real photo: the loss goes down."""
    a = _crop(natural_gray, 200, 100, 128, 96)
    b = _crop(natural_gray, 100, 380, 128, 96)
    cfg = AttackConfig(eps=8 / 255, steps=16, lr=0.003, features=SMALL, init="zero", focus=False, eval_every=0)
    r = attack_pair(a, b, None, cfg)
    assert r.iterations == 16 and len(r.losses) == 16
    # keypoints are re-detected at every step, so the loss is noisy: compare the first and last four steps
    assert np.mean(r.losses[-4:]) < np.mean(r.losses[:4]) - 0.05
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


def test_saved_png_reloads_to_evaluated_pixels(natural_gray: np.ndarray, tmp_path) -> None:
    a = _crop(natural_gray, 40, 60, 96, 80)
    b = _crop(natural_gray, 200, 300, 96, 80)
    cfg = AttackConfig(eps=6 / 255, steps=2, features=SMALL, init="texture", eval_every=0)
    r = attack_pair(a, b, None, cfg)
    write_png(tmp_path / "a_adv.png", r.adv_a)
    back = read_image(tmp_path / "a_adv.png")
    assert back.bit_depth == 8
    assert torch.equal(back.tensor(), r.adv_a)
    report, picture = evaluate_attack(a, b, r, None, cfg, opencv=False)
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
