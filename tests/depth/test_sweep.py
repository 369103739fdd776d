"""The coarse-to-fine sweep: banded SGM, band strips, the default pipeline on the synthetic 3-view scene."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic import CAMS, K, render

from gdvision.depth import DepthConfig, View, estimate_depth
from gdvision.depth.aggregate import sgm_aggregate
from gdvision.depth.fill import fill_background
from gdvision.depth.metrics import depth_metrics
from gdvision.depth.problem import build_levels
from gdvision.depth.sweep import band_sweep

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_banded_sgm_equals_full_sgm_inside_the_band() -> None:
    """Per-pixel bands of a volume whose costs outside the bands are high: same aggregated costs as the full SGM."""
    torch.manual_seed(3)
    p, h, w, k = 24, 9, 11, 7
    base = torch.randint(0, p - k + 1, (h, w))
    full = torch.full((p, h, w), 5.0)
    band = torch.rand(k, h, w)
    full.scatter_(0, base[None] + torch.arange(k).view(k, 1, 1), band)
    guide = torch.rand(1, 3, h, w)
    ref = sgm_aggregate(full, guide, 0.03, 0.3).gather(0, base[None] + torch.arange(k).view(k, 1, 1))
    out = sgm_aggregate(band, guide, 0.03, 0.3, base=base)
    assert torch.allclose(out, ref, atol=1e-4)


@pytest.fixture(scope="module")
def scene() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {name: render(T) for name, T in CAMS.items()}


def _view(scene, name: str) -> View:
    img = torch.from_numpy(scene[name][0]).permute(2, 0, 1)[None]
    return View(img, torch.from_numpy(K), torch.from_numpy(CAMS[name]), name=name)


def test_default_settings_recover_depth_and_use_the_third_view(scene) -> None:
    """Defaults (no Adam); a small ``sweep_max_pixels`` forces the band levels on this small scene."""
    gt = scene["ref.png"][1]
    ref = _view(scene, "ref.png")
    errs = {}
    for name, cfg in (
        ("single level", DepthConfig(min_depth=2.0, max_depth=8.0)),
        ("two band levels", DepthConfig(min_depth=2.0, max_depth=8.0, sweep_max_pixels=4000)),
    ):
        two = estimate_depth(ref, [_view(scene, "right.png")], cfg)
        three = estimate_depth(ref, [_view(scene, "right.png"), _view(scene, "left.png")], cfg)
        m2, m3 = depth_metrics(two.depth.numpy(), gt), depth_metrics(three.depth.numpy(), gt)
        errs[name] = (m2["abs_rel"], m3["abs_rel"])
        assert m3["coverage"] > 0.999
        assert m3["abs_rel"] < 0.05, (name, m3)  # measured: 0.0104 single level
        assert m3["abs_rel"] < m2["abs_rel"], (name, m2, m3)
        assert set(three.stages) >= {"pyramid", "sweep", "aggregation", "fill"}
    assert "band" in estimate_depth(ref, [_view(scene, "right.png")], DepthConfig(
        min_depth=2.0, max_depth=8.0, sweep_max_pixels=4000)).stages, errs  # fmt: skip


def test_band_strips_agree_with_one_strip(scene) -> None:
    """The band sweep in strips of 40 rows (memory bound) gives nearly the map of one whole-image band sweep."""
    ref = _view(scene, "ref.png")
    lv = build_levels(ref, [_view(scene, "right.png")], 2, torch.device("cpu"))
    w_min, w_max = 1 / 8.0, 1 / 2.0
    coarse = torch.full(lv[1].ref.shape[-2:], 1 / 4.0)
    step = (w_max - w_min) / 64
    cfg = DepthConfig(band_radius=12)
    whole = band_sweep(lv[0], coarse, w_min, w_max, step, cfg)
    strips = band_sweep(lv[0], coarse, w_min, w_max, step, DepthConfig(band_radius=12, band_max_pixels=128 * 40))
    assert whole.shape == strips.shape == lv[0].ref.shape[-2:]
    assert float(((whole - strips).abs() <= step).float().mean()) > 0.95


def test_fill_background_reaches_wide_holes() -> None:
    """A hole far wider than the local steps is filled (through the half-size copies) from its nearer side."""
    w = torch.full((1, 1, 20, 90), 9.0)
    w[..., :5] = 0.5
    w[..., -5:] = 0.2
    good = w < 1
    out = fill_background(w, good)
    assert bool((out[good] == w[good]).all())
    assert bool(((out[~good] == 0.5) | (out[~good] == w[..., -1:].flatten()[0])).all())
    assert bool((out[..., 5:9] == 0.5).all()) and bool(torch.allclose(out[..., 75:85], torch.tensor(0.2)))
