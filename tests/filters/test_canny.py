"""Canny: the same edge map as cv2.Canny, pixel for pixel, on the shared 8-bit images; batching, hysteresis."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gdvision.filters.canny_edges import canny, canny_candidates, hysteresis

cv2 = pytest.importorskip("cv2")

IMAGES = ["natural/camera.png", "natural/chelsea.png", "box/box.png", "itk_brain/BrainT1SliceBorder20.png"]


def _load(sample_dir, name: str) -> np.ndarray:
    import imageio.v3 as iio

    im = iio.imread(sample_dir / name)
    assert im.dtype == np.uint8
    return im[..., :3] if im.ndim == 3 else im


def _tensor(im: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(im.astype(np.float32) / 255.0)
    return t[None, None] if t.dim() == 2 else t.permute(2, 0, 1)[None]


SETTINGS = [(50, 150, 3, False), (100, 220, 3, True), (60, 240, 5, False), (20, 60, 5, True)]


@pytest.mark.parametrize("name", IMAGES)
@pytest.mark.parametrize(("low", "high", "ksize", "l2"), SETTINGS)
def test_agrees_with_opencv(sample_dir, name, low, high, ksize, l2):
    im = _load(sample_dir, name)
    cv_in = np.ascontiguousarray(im[..., ::-1]) if im.ndim == 3 else im  # OpenCV sees colour as BGR
    ref = cv2.Canny(cv_in, low, high, apertureSize=ksize, L2gradient=l2) > 0
    ours = canny(_tensor(im), low, high, ksize, l2)[0, 0].numpy() > 0
    assert np.array_equal(ours, ref), f"{name}: {(ours != ref).sum()} of {ref.size} pixels differ"  # 100.00%
    assert ref.sum() > 100  # the comparison is about real edges


@pytest.mark.parametrize("name", IMAGES)
def test_aperture_7_is_close_to_opencv_not_equal(sample_dir, name):
    """ksize 7 is not pixel-exact (measured: 99.40% .. 99.96% of pixels agree on these images); pin that figure."""
    im = _load(sample_dir, name)
    cv_in = np.ascontiguousarray(im[..., ::-1]) if im.ndim == 3 else im
    ref = cv2.Canny(cv_in, 400, 1200, apertureSize=7) > 0
    ours = canny(_tensor(im), 400, 1200, 7)[0, 0].numpy() > 0
    assert (ours == ref).mean() >= 0.994, f"{name}: {(ours == ref).mean():.4%}"
    assert ref.sum() > 1000


def test_batch_equals_single_and_thresholds_are_ordered(sample_dir):
    im = _load(sample_dir, "natural/camera.png")[:128, :160]
    x = _tensor(im)
    batch = torch.cat([x, x.flip(-1), 1 - x])
    out = canny(batch, 40, 120)
    for i in range(3):
        assert torch.equal(out[i : i + 1], canny(batch[i : i + 1], 40, 120))
    assert torch.equal(canny(x, 120, 40), canny(x, 40, 120))
    more = canny(x, 20, 120).sum()
    assert more >= out[0].sum()  # lower low threshold can only add edges


def test_square_edges_lie_on_the_boundary():
    img = torch.zeros(1, 1, 40, 40)
    img[..., 10:30, 10:30] = 1.0
    e = canny(img, 50, 150)[0, 0]
    ys, xs = torch.nonzero(e, as_tuple=True)
    assert len(ys) > 60
    near = ((ys - 9.5).abs() <= 1) | ((ys - 29.5).abs() <= 1) | ((xs - 9.5).abs() <= 1) | ((xs - 29.5).abs() <= 1)
    assert bool(near.all())
    assert canny(torch.zeros(1, 1, 16, 16), 10, 20).sum() == 0


def test_hysteresis_connectivity_cpu_and_pooling_agree():
    weak = torch.zeros(2, 1, 7, 7, dtype=torch.bool)
    weak[0, 0, 1, 1:6] = True  # a line
    weak[0, 0, 2, 6] = True  # diagonal neighbour of the line's end: 8-connected
    weak[0, 0, 5, 0:3] = True  # separate segment without seed
    weak[1, 0, 3, 3] = True
    strong = torch.zeros_like(weak)
    strong[0, 0, 1, 1] = True
    out = hysteresis(weak, strong)
    assert out[0, 0, 1, 1:6].all() and out[0, 0, 2, 6]
    assert not out[0, 0, 5].any() and not out[1].any()
    # The accelerator path (iterative pooling) gives the same answer: run it by hand on the CPU.
    edges = strong & weak
    for _ in range(20):
        edges = (torch.nn.functional.max_pool2d(edges.float(), 3, 1, 1) * weak.float()) > 0
    assert torch.equal(edges, out)


def test_candidates_strong_subset_of_weak():
    x = torch.rand(2, 3, 24, 24)
    weak, strong = canny_candidates(x, 30, 90, l2=True, sigma=1.0)
    assert weak.shape == (2, 1, 24, 24)
    assert not (strong & ~weak).any()
