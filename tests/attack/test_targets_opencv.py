"""``--target opencv-sift``: the replica of OpenCV's SIFT as an attacked pipeline, alone and in an ensemble."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gdvision.attack import AttackConfig, attack_pair
from gdvision.attack.targets import TARGETS, parse_targets, target_features
from gdvision.errors import UsageError
from gdvision.features import FeatureConfig


def test_opencv_sift_target_and_ensembles() -> None:
    assert "opencv-sift" in TARGETS
    cfg = target_features("opencv-sift")
    assert cfg.layout == "opencv" and cfg.max_features == 0 and cfg.detector == "dog"
    cfg.validate()
    assert target_features("gdvision") == FeatureConfig()  # the default target is untouched
    assert parse_targets("gdvision,opencv-sift") == ("gdvision", "opencv-sift")
    assert parse_targets(" opencv-sift , opencv-sift ") == ("opencv-sift",)
    with pytest.raises(UsageError, match="opencv-sift"):
        parse_targets("opencv")


def test_attack_steps_through_the_replica(natural_gray: np.ndarray) -> None:
    """A few targeted steps against the replica alone: finite losses that go down, pixels moved within the budget."""
    a = torch.round(torch.from_numpy(natural_gray[40:136, 60:188].copy())[None, None] * 255) / 255
    b = torch.round(torch.from_numpy(natural_gray[300:396, 330:458].copy())[None, None] * 255) / 255
    cfg = AttackConfig(
        target="opencv-sift", eps=8 / 255, steps=6, lr=0.003, init="zero", eval_every=0, stop_on_success=False
    )
    r = attack_pair(a, b, None, cfg)
    assert r.iterations == 6 and all(np.isfinite(r.losses))
    assert np.mean(r.losses[-2:]) < r.losses[0]
    moved = float((r.adv_a - a).abs().max()), float((r.adv_b - b).abs().max())
    assert 0 < max(moved) <= 8 / 255 + 1e-6
