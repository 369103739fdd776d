"""The coarse-to-fine sweep's parts: banded SGM, the recursive background fill (the pipeline: test_depth_solver)."""

from __future__ import annotations

import pytest
import torch

from gdvision.depth.aggregate import sgm_aggregate
from gdvision.depth.fill import fill_background

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


def test_uniqueness_losers_flags_only_the_worse_matched_claimant() -> None:
    """Pixels 2 and 4 of a rectified pair land on the same source pixel (x - d = 0) at different depths: the nearer
    one (4) loses only when it matches worse than the one it hides, and only if it loses in every view."""
    from gdvision.depth import DepthConfig, View
    from gdvision.depth.fill import uniqueness_losers
    from gdvision.depth.problem import DepthProblem, build_levels

    K = torch.tensor([[50.0, 0, 9.5], [0, 50, 1.5], [0, 0, 1]], dtype=torch.float64)
    right = torch.eye(4, dtype=torch.float64)
    right[0, 3] = -1.0
    left = torch.eye(4, dtype=torch.float64)
    left[0, 3] = 1.0
    img = torch.rand(1, 1, 4, 20)
    disp = torch.full((1, 1, 4, 20), 2.0)
    disp[..., 4] = 4.0
    w = disp / 50
    good, bad = torch.full_like(disp, 0.1), torch.full_like(disp, 0.1)
    good[..., 4], bad[..., 2] = 0.5, 0.5  # 4 matches worse than 2 / 2 (truly hidden) matches worse than 4

    def problem(views):
        lv = build_levels(View(img, K, torch.eye(4)), [View(img, K, T) for T in views], 1, torch.device("cpu"))
        return DepthProblem(lv, 0.02, 0.24, DepthConfig())

    one = problem([right])
    assert uniqueness_losers(one, 0, w, [good])[0, 0, 0].nonzero().flatten().tolist() == [4]
    assert not bool(uniqueness_losers(one, 0, w, [bad]).any())  # a true occluder is not a loser
    w[..., 6] = 2.6 / 50  # in the left view pixel 4 lands on x + d = 8 and pixel 6 now on 8.6 -> 9: no collision
    two = problem([right, left])
    assert not bool(uniqueness_losers(two, 0, w, [good, good]).any())  # 4 loses in one of its two views only
    assert uniqueness_losers(one, 0, w, [good])[0, 0, 0].nonzero().flatten().tolist() == [4]
