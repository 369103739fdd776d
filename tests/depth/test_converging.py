"""Depth on a converging, non-rectified pair (issue 16): visibility and fill follow the cameras, not image rows.

The scene (:func:`synthetic.render_converging`): a close, finely textured, tilted planar target with a striped
(periodic) patch, in front of a box and a tilted background plane; the source sits right of and above the
reference, has other intrinsics and looks at the target (toe-in about 21 degrees about y, 11 about x).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic import CONV_CAMS, CONV_H, CONV_W, STRIPES, render_converging

from gdvision.depth import DepthConfig, View, estimate_depth, rectified_pair
from gdvision.depth.fill import fill_directions_background, fill_occluded, occluded_mask
from gdvision.depth.problem import DepthProblem, build_levels

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MIN_D, MAX_D = 0.3, 6.0  # the target lies at 0.46-0.64, the background at 2.1-2.7


@pytest.fixture(scope="module")
def scene() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return {name: render_converging(name) for name in CONV_CAMS}


def _view(scene, name: str) -> View:
    img = torch.from_numpy(scene[name][0]).permute(2, 0, 1)[None]
    K, T = CONV_CAMS[name]
    return View(img, torch.from_numpy(K), torch.from_numpy(T), name=name)


@pytest.fixture(scope="module")
def seen_by_source(scene) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast truth: (visible, in_frame) (H, W) bool of every reference pixel in the source view."""
    (Kr, _), (Ks, Ts) = CONV_CAMS["ref"], CONV_CAMS["src"]
    depth, src_depth = scene["ref"][1], scene["src"][1]
    ys, xs = np.mgrid[0:CONV_H, 0:CONV_W].astype(float)
    pts = np.stack([xs, ys, np.ones_like(xs)], -1) @ np.linalg.inv(Kr).T * depth[..., None]
    cam = pts @ Ts[:3, :3].T + Ts[:3, 3]
    q = cam @ Ks.T
    u, v = np.round(q[..., 0] / q[..., 2]).astype(int), np.round(q[..., 1] / q[..., 2]).astype(int)
    in_frame = (u >= 0) & (u < CONV_W) & (v >= 0) & (v < CONV_H)
    there = np.where(in_frame, src_depth[v.clip(0, CONV_H - 1), u.clip(0, CONV_W - 1)], np.inf)
    return in_frame & (cam[..., 2] <= there * 1.03), in_frame


def _problem(scene) -> DepthProblem:
    levels = build_levels(_view(scene, "ref"), [_view(scene, "src")], 1, torch.device("cpu"))
    return DepthProblem(levels, 1.0 / MAX_D, 1.0 / MIN_D, DepthConfig())


def test_the_pair_converges_and_is_not_rectified(scene) -> None:
    assert rectified_pair(_view(scene, "ref"), _view(scene, "src")) is None
    R = CONV_CAMS["src"][1][:3, :3]
    toe_y, toe_x = np.degrees(np.arctan2(-R[2, 0], R[2, 2])), np.degrees(np.arctan2(R[2, 1], R[2, 2]))
    assert 15 < toe_y < 25 and 5 < toe_x < 15, (toe_y, toe_x)
    # the stripes repeat many times within the epipolar search range: their period is ambiguous
    period_px = STRIPES[3] / 0.55 * CONV_CAMS["ref"][0][0, 0]
    assert _problem(scene).parallax(0) > 10 * period_px


def test_occluded_mask_matches_the_ray_cast_visibility(scene, seen_by_source) -> None:
    visible, _ = seen_by_source
    occ = occluded_mask(_problem(scene), 0, torch.from_numpy(1.0 / scene["ref"][1])[None, None])[0, 0].numpy()
    assert occ[~visible].mean() > 0.98  # hidden behind the target or out of the source's frame
    assert occ[visible].mean() < 0.01


def test_a_slanted_surface_squeezed_in_the_source_does_not_hide_itself() -> None:
    # rectified pair, source to the right: reference x matches source x - d. A slanted strip whose disparity
    # grows by 0.8 px per pixel lands 5x squeezed in the source (x - d moves 0.2 px per pixel): several
    # reference pixels share a source pixel, yet nothing is hidden (no fold). A plain z-buffer hid most of it.
    f, h, w = 50.0, 4, 60
    K = torch.tensor([[f, 0.0, (w - 1) / 2], [0.0, f, (h - 1) / 2], [0.0, 0.0, 1.0]], dtype=torch.float64)
    T = torch.eye(4, dtype=torch.float64)
    T[0, 3] = -1.0
    img = torch.rand(1, 1, h, w)
    levels = build_levels(View(img, K, torch.eye(4)), [View(img, K, T)], 1, torch.device("cpu"))
    prob = DepthProblem(levels, 1.0 / f, 20.0 / f, DepthConfig())  # disparities 1..20 px
    disp = torch.full((1, 1, h, w), 2.0)
    disp[..., 20:36] = 2.0 + 0.8 * torch.arange(16.0)
    occ = occluded_mask(prob, 0, disp / f)[0, 0]
    assert not occ[:, 2:].any(), occ[0].nonzero().flatten().tolist()
    assert occ[:, :2].all()  # x - 2 < 0: out of frame
    # a near strip still hides the background next to it (a fold: the disparity jumps by 8 px)
    disp[..., 50:55] = 10.0  # source x 40..44, where the background x 42..46 lands
    occ = occluded_mask(prob, 0, disp / f)[0, 0, 0]
    assert occ.nonzero().flatten().tolist() == [0, 1, 42, 43, 44, 45, 46]


def test_fill_directions_background_takes_the_rank_th_farthest_direction() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.rand(1, 1, 7, 9, generator=g) + 0.5
    good = torch.rand(1, 1, 7, 9, generator=g) < 0.4
    for rank in (1, 2, 3):
        out = fill_directions_background(w, good, rank)
        assert torch.equal(out[good], w[good])
        for y, x in (~good[0, 0]).nonzero().tolist():
            hits = []
            for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1)):
                yy, xx = y + dy, x + dx
                while 0 <= yy < 7 and 0 <= xx < 9 and not good[0, 0, yy, xx]:
                    yy, xx = yy + dy, xx + dx
                if 0 <= yy < 7 and 0 <= xx < 9:
                    hits.append(float(w[0, 0, yy, xx]))
            want = sorted(hits)[min(rank, len(hits)) - 1] if hits else float(w[0, 0, y, x])
            assert float(out[0, 0, y, x]) == want


def test_fill_occluded_restores_the_out_of_frame_region_and_keeps_the_visible_one(scene, seen_by_source) -> None:
    # the true depth where the source sees the pixel, a foreground value (what a solver's fattening gives)
    # where it does not; only the seen pixels count as well matched
    visible, in_frame = seen_by_source
    gt = scene["ref"][1]
    w = np.where(visible, 1.0 / gt, 1.0 / 0.55).astype(np.float32)
    out = fill_occluded(_problem(scene), 0, torch.from_numpy(w)[None, None], torch.from_numpy(visible)[None, None])
    rel = np.abs(1.0 / out[0, 0].numpy() - gt) / gt
    # achieved: 1.0 of the out-of-frame region (the row fill: 0.83), 0.974 of the visible pixels kept
    assert (rel[~in_frame] < 0.05).mean() > 0.95
    assert (rel[visible] < 0.05).mean() > 0.96


@pytest.fixture(scope="module")
def solved(scene):
    cfg = DepthConfig(min_depth=MIN_D, max_depth=MAX_D)
    return estimate_depth(_view(scene, "ref"), [_view(scene, "src")], cfg)


def test_converging_pair_gets_the_target_and_its_stripes_right(scene, solved) -> None:
    gt, sid = scene["ref"][1], scene["ref"][2]
    d = solved.depth.numpy()
    rel = np.abs(d - gt) / gt
    target = sid <= 1
    # achieved: 0.99-1.0 of the target and 1.0 of the stripes within 5 % (0.6-0.77 of the stripes without SGM)
    assert (rel[target] < 0.05).mean() >= 0.95
    assert not (d[target] > 0.8 * MAX_D).any()  # nothing at the far end of the range
    assert (rel[sid == 1] < 0.05).mean() >= 0.9  # the periodic patch does not take an aliased depth


def test_converging_pair_fill_follows_the_cameras(scene, solved) -> None:
    gt = scene["ref"][1]
    unfilled = estimate_depth(
        _view(scene, "ref"), [_view(scene, "src")], DepthConfig(min_depth=MIN_D, max_depth=MAX_D, final_fill=None)
    )

    def abs_rel(d: np.ndarray) -> float:
        ok = np.isfinite(d)
        return float(np.mean(np.abs(d[ok] - gt[ok]) / gt[ok]))

    # measured, AbsRel with the final fill / without it, commit b00b6c9's solver (the faster one in progress):
    # fill_occluded 0.178 / 0.313 (0.191 / 0.359); row fill 0.192 / 0.313 (0.304 / 0.359)
    assert abs_rel(solved.depth.numpy()) < 0.6 * abs_rel(unfilled.depth.numpy())


@pytest.mark.xfail(
    strict=True,
    reason="automatic range: no feature match survives on this pair, and the baseline fallback (0.63-135) "
    "excludes the 0.46-0.64 target",
)
def test_converging_pair_with_the_automatic_range(scene) -> None:
    from gdvision.tasks.depth_range import resolve_depth_range

    ref, src = _view(scene, "ref"), _view(scene, "src")
    cfg, _ = resolve_depth_range(ref, [src], DepthConfig())
    gt, sid = scene["ref"][1], scene["ref"][2]
    d = estimate_depth(ref, [src], cfg).depth.numpy()
    assert (np.abs(d - gt)[sid <= 1] / gt[sid <= 1] < 0.05).mean() >= 0.95
