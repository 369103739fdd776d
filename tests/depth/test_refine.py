"""Depth post-processing: SGM aggregation of the sweep volume, occlusion masks, row-wise background fill."""

from __future__ import annotations

import torch

from gdvision.depth import DepthConfig, View
from gdvision.depth.aggregate import sgm_aggregate
from gdvision.depth.fill import fill_rows_background, fully_visible_mask, occluded_mask
from gdvision.depth.problem import DepthProblem, build_levels


def test_sgm_aggregation_removes_winner_take_all_noise() -> None:
    g = torch.Generator().manual_seed(0)
    n_p, h, w = 24, 40, 48
    true = torch.full((h, w), 6, dtype=torch.long)
    true[10:30, 15:35] = 17  # a near square on a far background
    k = torch.arange(n_p).view(-1, 1, 1)
    cost = 0.05 * (k - true).abs().clamp(max=6).float() + 0.3 * torch.rand(n_p, h, w, generator=g)
    guide = (true.float() / n_p)[None, None].expand(1, 3, h, w)  # edges where the depth jumps
    wta_err = ((cost.argmin(0) - true).abs() > 1).float().mean()  # off by more than one plane
    sgm_err = ((sgm_aggregate(cost, guide, p1=0.03, p2=0.3).argmin(0) - true).abs() > 1).float().mean()
    assert wta_err > 0.15, wta_err
    assert sgm_err < 0.06, sgm_err


def test_sgm_keeps_a_clean_volume_and_checks_shape() -> None:
    cost = torch.rand(10, 6, 7)
    cost[4] -= 2.0
    assert bool((sgm_aggregate(cost).argmin(0) == 4).all())
    try:
        sgm_aggregate(torch.rand(6, 7))
    except ValueError as e:
        assert "(K, H, W)" in str(e)
    else:  # pragma: no cover
        raise AssertionError("no error for a 2-D volume")


def test_fill_rows_takes_the_farther_neighbour_and_keeps_empty_rows() -> None:
    w = torch.tensor([[0.5, 9.0, 9.0, 0.25, 0.25], [9.0, 9.0, 0.75, 9.0, 9.0], [9.0, 9.0, 9.0, 9.0, 9.0]])[None, None]
    good = w < 1.0
    out = fill_rows_background(w, good)[0, 0]
    assert out[0].tolist() == [0.5, 0.25, 0.25, 0.25, 0.25]
    assert out[1].tolist() == [0.75] * 5  # row ends: the only neighbour there is
    assert out[2].tolist() == [9.0] * 5  # nothing good: unchanged


def _rectified_problem(w: int = 40, h: int = 6, f: float = 50.0, base: float = 1.0) -> DepthProblem:
    K = torch.tensor([[f, 0.0, (w - 1) / 2], [0.0, f, (h - 1) / 2], [0.0, 0.0, 1.0]], dtype=torch.float64)
    T = torch.eye(4, dtype=torch.float64)
    T[0, 3] = -base  # source to the right: reference x matches source x - f * base / Z
    img = torch.rand(1, 1, h, w)
    views = [View(img, K, torch.eye(4, dtype=torch.float64)), View(img, K, T)]
    levels = build_levels(views[0], views[1:], 1, torch.device("cpu"))
    # disparities 1..12 px: w = d / (f * base)
    return DepthProblem(levels, 1.0 / (f * base), 12.0 / (f * base), DepthConfig())


def test_occluded_mask_finds_the_half_occlusion_left_of_a_near_object() -> None:
    prob = _rectified_problem()
    disp = torch.full((1, 1, 6, 40), 2.0)
    disp[..., 20:30] = 10.0  # near object: its matches cover source x 10..19
    occ = occluded_mask(prob, 0, disp / 50.0)[0, 0, 0]
    # background pixels x with x - 2 in 10..19 are hidden behind it in the source; x = 0, 1 leave the frame
    expected = torch.zeros(40, dtype=torch.bool)
    expected[12:20] = True
    expected[:2] = True
    assert torch.equal(occ, expected), occ.nonzero().flatten().tolist()


def test_fully_visible_mask_is_the_band_the_whole_range_keeps_in_frame() -> None:
    prob = _rectified_problem()
    full = fully_visible_mask(prob, 0)[0, 0]
    # disparity up to 12 px: the match x - 12 stays in frame for x >= 12 only
    assert full[:, 12:].all() and not full[:, :12].any()
