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
