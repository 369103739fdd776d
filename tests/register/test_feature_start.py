"""The pieces of ``--init auto``: fitting a motion model to matches, and the feature check of the verdict."""

from __future__ import annotations

import math

import pytest
import torch

from gdvision.register.motion import fit_motion
from gdvision.register.verdict import MIN_FEATURE_INLIERS, feature_check


def _similarity(angle: float, scale: float, tx: float, ty: float) -> torch.Tensor:
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    return torch.tensor([[c, -s, tx], [s, c, ty], [0, 0, 1]], dtype=torch.float64)


def _apply(M: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    q = torch.cat([p, torch.ones_like(p[:, :1])], 1) @ M.T
    return q[:, :2] / q[:, 2:3]


@pytest.mark.parametrize(
    ("model", "M"),
    [
        ("translation", _similarity(0.0, 1.0, 12.0, -7.0)),
        ("euclidean", _similarity(1.2, 1.0, 30.0, 5.0)),
        ("similarity", _similarity(-0.8, 0.6, -20.0, 40.0)),
        ("affine", torch.tensor([[0.7, 0.3, 10.0], [-0.2, 1.3, -4.0], [0, 0, 1]], dtype=torch.float64)),
        ("homography", torch.tensor([[0.7, 0.3, 10.0], [-0.2, 1.3, -4.0], [1e-3, -5e-4, 1]], dtype=torch.float64)),
    ],
)
def test_fit_motion_recovers_the_model_from_noisy_matches(model: str, M: torch.Tensor) -> None:
    g = torch.Generator().manual_seed(0)
    pa = torch.rand(200, 2, generator=g, dtype=torch.float64) * 300
    pb = _apply(M, pa) + 0.2 * torch.randn(200, 2, generator=g, dtype=torch.float64)
    fit = fit_motion(pa, pb, model)
    assert (_apply(fit, pa) - _apply(M, pa)).norm(dim=1).max() < 0.2
    if model != "homography":
        assert fit[2].tolist() == [0.0, 0.0, 1.0]
    if model == "euclidean":
        assert torch.allclose(fit[:2, :2] @ fit[:2, :2].T, torch.eye(2, dtype=torch.float64), atol=1e-12)


def test_fit_motion_of_a_simpler_model_is_its_least_squares_fit() -> None:
    """A similarity fitted to an affine motion: the similarity closest to it (here the rotation part alone)."""
    pa = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], dtype=torch.float64) * 50
    fit = fit_motion(pa, pa * torch.tensor([1.2, 0.8], dtype=torch.float64), "similarity")
    assert torch.allclose(fit, torch.diag(torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)), atol=1e-12)


def test_feature_check_rejects_a_result_that_disagrees_with_the_matches() -> None:
    g = torch.Generator().manual_seed(1)
    pa = torch.rand(40, 2, generator=g, dtype=torch.float64) * 200
    true = _similarity(0.9, 0.7, 50.0, 10.0)
    pb = _apply(true, pa)
    ok = {"ok": True, "measures": {"gradient_agreement": 0.8}}
    v = feature_check(ok, true, pa, pb)
    assert v["ok"] and v["measures"]["feature_agreement"] == 1.0 and v["measures"]["feature_inliers"] == 40
    wrong = _similarity(0.0, 1.0, 50.0, 10.0)
    v = feature_check(ok, wrong, pa, pb)
    assert not v["ok"] and v["decided_by"] == "feature_agreement" and "feature agreement" in v["reason"]
    few = MIN_FEATURE_INLIERS - 1  # too few matches to decide: the verdict stands, the measure is reported
    v = feature_check(ok, wrong, pa[:few], pb[:few])
    assert v["ok"] and v["measures"]["feature_inliers"] == few
    rejected = {"ok": False, "measures": {}, "decided_by": "overlap", "reason": "overlap 0.01 < 0.1"}
    assert feature_check(rejected, true, pa, pb)["decided_by"] == "overlap"  # an earlier rejection stays
