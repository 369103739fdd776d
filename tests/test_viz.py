"""Pictures (gdvision.viz): how many match lines are drawn and which; the depth preview's robust colour scale."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from gdvision.viz import colorize, depth_preview, draw_matches, pick_matches

GREEN, RED = torch.tensor([0.1, 1.0, 0.2]), torch.tensor([1.0, 0.15, 0.1])


def _rows_drawn(pic: torch.Tensor, colour: torch.Tensor) -> set[int]:
    hit = (pic[0] - colour.view(3, 1, 1)).abs().amax(0) < 1e-6
    return set(torch.nonzero(hit.any(1))[:, 0].tolist())


def _horizontal_matches(n: int, inliers: torch.Tensor) -> SimpleNamespace:
    """Match ``i`` is a horizontal line on row ``i`` (x 1 in A to x 1 in B)."""
    ys = torch.arange(n, dtype=torch.float32)
    pts = torch.stack([torch.ones(n), ys], 1)
    return SimpleNamespace(pts_a=pts, pts_b=pts, inliers=inliers)


def test_match_lines_are_capped_inliers_first_and_spread() -> None:
    """Issue 19 item 5: 1363 lines made a solid wall; at most max_lines are drawn, inliers before outliers."""
    n = 1000
    inl = torch.zeros(n, dtype=torch.bool)
    inl[::3] = True  # 334 inliers
    res = _horizontal_matches(n, inl)
    img = torch.zeros(1, 1, n, 8)
    pic = draw_matches(img, img, res)  # default cap
    green, red = _rows_drawn(pic, GREEN), _rows_drawn(pic, RED)
    assert len(green) == 200 and not red and all(r % 3 == 0 for r in green)
    assert min(green) < 50 and max(green) > n - 50  # spread over all inliers, not the last 200
    pic = draw_matches(img, img, res, max_lines=400)
    green, red = _rows_drawn(pic, GREEN), _rows_drawn(pic, RED)
    assert len(green) == 334 and len(red) == 66 and not green & red
    assert not _rows_drawn(draw_matches(img, img, res, max_lines=0), GREEN)
    assert pick_matches(inl, 5000).numel() == n  # under the cap: every match


def test_depth_preview_scales_colours_by_robust_percentiles_and_says_so() -> None:
    """Issue 19 item 5: a few wild depths (3% of the pixels) must not wash out the colours of the rest."""
    d = np.tile(np.linspace(2.0, 5.0, 200), (100, 1))
    rng = np.random.default_rng(0)
    wild = rng.random(d.shape) < 0.03
    d[wild] = np.where(rng.random(wild.sum()) < 0.5, 0.01, 5000.0)
    img = depth_preview(d)
    near, far = img[:100, 0][~wild[:, 0]].mean(0), img[:100, -1][~wild[:, -1]].mean(0)
    assert np.abs(near - colorize(np.array([[1.0]]))[0, 0]).max() < 0.1  # the bulk's near end: the red end
    assert np.abs(far - colorize(np.array([[0.0]]))[0, 0]).max() < 0.1  # its far end: the blue end
    # the legend names the percentiles: "p98 ..." starts with a p (glyph row "110"), unlike any digit
    legend_text = img[100 + 12 :, :, 0]
    assert legend_text[4, 2:8].tolist() == [1, 1, 1, 1, 0, 0]
    given = depth_preview(d, min_depth=float(np.percentile(d, 2)), max_depth=float(np.percentile(d, 98)))
    np.testing.assert_array_equal(given[:100], img[:100])  # the same colours ...
    assert given[100 + 12 :, 2:8, 0][4].tolist() != [1, 1, 1, 1, 0, 0]  # ... but a given range is not tagged
