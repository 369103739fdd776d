"""The verdict: measures without ground truth that tell an answer from a non-answer; coordinate conventions."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

from gdvision.coords import H_CONVENTION, centring_matrix, homography_from_centred, homography_to_centred
from gdvision.register.verdict import MIN_GRADIENT_AGREEMENT, MIN_OVERLAP, judge, texture

BRAIN = Path(__file__).resolve().parents[2] / "sample_data" / "itk_brain"


def _smooth(seed: int, h: int = 96, w: int = 128) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.avg_pool2d(torch.rand(1, 1, h, w, generator=g), 5, 1, 2)


def test_texture_of_a_constant_image_is_zero() -> None:
    assert texture(torch.full((2, 3, 16, 16), 0.3)).tolist() == [0.0, 0.0]
    assert float(texture(_smooth(0))[0]) > 0.02
    half = _smooth(0)
    half[..., :64] = 0.5
    mask = torch.zeros(1, 1, 96, 128)
    mask[..., :64] = 1  # only the flat half is valid: no texture there
    assert float(texture(half, mask)[0]) == 0.0 and float(texture(half)[0]) > 0.02


def test_judge_accepts_an_alignment_and_rejects_unrelated_content() -> None:
    a, other = _smooth(0), _smooth(1)
    eye = torch.eye(3, dtype=torch.float64).expand(1, 3, 3)
    good, bad = judge(torch.cat([a, a]), torch.cat([a, other]), eye.expand(2, 3, 3))
    assert good.ok and good.measures["gradient_agreement"] > 0.99 and good.measures["overlap"] == 1.0
    assert not bad.ok and bad.decided_by == "gradient_agreement"
    assert bad.measures["gradient_agreement"] < MIN_GRADIENT_AGREEMENT and "gradient agreement" in bad.reason


def test_judge_rejects_a_transform_that_leaves_no_overlap() -> None:
    a = _smooth(0)
    away = torch.tensor([[[0.05, 0.0, 2.0], [0.0, 0.05, 2.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)  # A -> a spot
    v = judge(a, a, away)[0]
    assert not v.ok and v.decided_by == "overlap" and v.measures["overlap"] < MIN_OVERLAP
    assert v.as_dict()["reason"].startswith("overlap")
    nan = torch.full((1, 3, 3), float("nan"), dtype=torch.float64)
    assert judge(a, a, nan)[0].decided_by == "solver"


def test_judge_accepts_t1_vs_pd_at_the_true_transform() -> None:
    """Different modalities (contrast inverted in places): edge orientations still agree."""
    meta = json.loads((BRAIN / "transforms.json").read_text())
    entry = next(e for e in meta["pairs"] if "T1" in e["moving"])
    load = lambda n: torch.from_numpy(iio.imread(BRAIN / n).astype(np.float32) / 255)[None, None]  # noqa: E731
    H = torch.tensor(entry["H_fixed_to_moving"], dtype=torch.float64)[None]
    v = judge(load(meta["fixed"]), load(entry["moving"]), H)[0]
    assert v.ok and v.measures["gradient_agreement"] > 0.9


def test_centred_coordinates_round_trip_and_conventions() -> None:
    H = torch.tensor([[1.05, 0.04, -5.0], [-0.03, 0.96, 7.0], [2e-4, -1.5e-4, 1.0]], dtype=torch.float64)
    Hc = homography_to_centred(H, 48, 64)
    assert torch.allclose(homography_from_centred(Hc, 48, 64), H, atol=1e-12)
    T = centring_matrix(48, 64)
    corners = torch.tensor([[0.0, 0.0, 1.0], [63.0, 47.0, 1.0]], dtype=torch.float64)
    assert torch.allclose((corners @ T.T)[:, 0], torch.tensor([-63 / 64, 63 / 64], dtype=torch.float64))
    assert "H [xA, yA, 1]^T" in H_CONVENTION
