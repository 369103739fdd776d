"""Depth pictures (gdvision.viz): the preview's colours and legend, the confidence picture."""

from __future__ import annotations

import numpy as np
import torch

from gdvision.viz import confidence_picture, depth_preview


def test_preview_has_legend_and_colours() -> None:
    d = np.tile(np.linspace(2.0, 5.0, 64), (40, 1))
    d[:5, :5] = np.nan
    img = depth_preview(d)
    assert img.shape == (40 + 30, 64, 3)
    assert (img[:5, :5] == 0).all()  # unknown = black
    near, far = img[20, 0], img[20, -1]  # depth grows to the right
    assert near[0] > near[2] and far[2] > far[0]  # near red, far blue
    assert img[40 + 12 :, :, :].max() == 1.0  # legend text drawn
    assert img[40 + 12 :, :2].max() == 0.0  # labels start 2 px in


def test_confidence_picture_is_clipped_gray() -> None:
    c = torch.tensor([[0.0, 0.5, 1.0], [float("nan"), -0.1, 1.5]])
    pic = confidence_picture(c)
    assert pic.dtype == np.float32 and pic.shape == (2, 3)
    np.testing.assert_array_equal(pic, [[0.0, 0.5, 1.0], [0.0, 0.0, 1.0]])
