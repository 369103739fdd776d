"""The NumPy 3x3 Sobel magnitude: OpenCV's and torch's derivatives bit for bit, IEEE arithmetic on top of them."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from gdvision.filters import gradient, gradient_magnitude
from gdvision.filters.config import EdgeConfig
from gdvision.filters.edges import unit_step_response
from gdvision.filters.sobel_np import SOBEL3_STEP_RESPONSE, sobel_magnitude_np

# (H, W, C): W * C % 8 from 0 to 7 (OpenCV's scalar tail, odd and even), 1-pixel sides, more than 4 channels
SHAPES = [(37, 53, 3), (64, 67, 1), (5, 9, 3), (40, 41, 4), (33, 30, 2), (17, 19, 1), (12, 14, 1), (9, 5, 5)]
SHAPES += [(1, 9, 3), (7, 1, 1), (1, 1, 1), (2, 2, 3)]


def _image(shape: tuple[int, int, int], kind: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "uint8":
        return rng.integers(0, 256, shape).astype(np.float32) / np.float32(255)
    if kind == "unit":
        return rng.random(shape, dtype=np.float32)
    return (rng.standard_normal(shape) * 1e3).astype(np.float32)


def _torch(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(2, 0, 1)[None].contiguous()


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kind", ["uint8", "unit", "wide"])
def test_equals_ieee_magnitude_of_the_torch_derivatives(shape: tuple[int, int, int], kind: str):
    x = _image(shape, kind, sum(shape))
    gx, gy = (_hwc(g) for g in gradient(_torch(x)))
    got = sobel_magnitude_np(x)
    assert got.dtype == np.float32 and got.shape == shape
    assert np.array_equal(got, np.sqrt(gx * gx + gy * gy))  # dx, dy bit for bit; IEEE sum and root
    assert np.array_equal(sobel_magnitude_np(x, "l1"), _hwc(gradient_magnitude(_torch(x), norm="l1")))
    # torch's own L2 magnitude (fused multiply-add, MKL's square root): within one unit in the last place
    ref = _hwc(gradient_magnitude(_torch(x)))
    ulps = np.abs(ref.view(np.int32).astype(np.int64) - got.view(np.int32).astype(np.int64))
    assert ulps.max() <= 1


def test_equals_opencv_derivatives_on_a_photo(sample_data: object = None):
    from pathlib import Path

    from gdvision.io.images import read_image

    root = Path(__file__).resolve().parents[2] / "sample_data" / "natural"
    photo = read_image(sorted(root.glob("*.png"))[0]).array[:123, :201]  # 201 * 3 % 8 = 3: the tail
    x = np.ascontiguousarray(photo)
    dx = cv2.Sobel(x, cv2.CV_32F, 1, 0, ksize=3)
    dy = cv2.Sobel(x, cv2.CV_32F, 0, 1, ksize=3)
    assert np.array_equal(sobel_magnitude_np(x), np.sqrt(dx * dx + dy * dy))
    assert np.array_equal(sobel_magnitude_np(x, "l1"), np.abs(dx) + np.abs(dy))


def test_unit_step_scale_and_bad_arguments():
    assert SOBEL3_STEP_RESPONSE == unit_step_response(EdgeConfig())
    step = np.zeros((6, 8, 1), np.float32)
    step[:, 4:] = 1.0
    assert sobel_magnitude_np(step).max() == SOBEL3_STEP_RESPONSE
    with pytest.raises(ValueError, match="float32"):
        sobel_magnitude_np(step.astype(np.float64))
    with pytest.raises(ValueError, match="float32"):
        sobel_magnitude_np(step[..., 0])
    with pytest.raises(ValueError, match="norm"):
        sobel_magnitude_np(step, "linf")


def test_row_bands_give_the_same_values_in_bounded_memory(monkeypatch: pytest.MonkeyPatch):
    import tracemalloc

    from gdvision.filters import sobel_np

    x = _image((37, 53, 3), "unit", 7)  # 53 * 3 % 8 = 7: the tail in every band
    whole = sobel_magnitude_np(x)
    for band in (1, 160, 500):  # one row per band, a few rows, the top and bottom bands reflecting
        monkeypatch.setattr(sobel_np, "_BAND_ELEMS", band)
        assert np.array_equal(sobel_magnitude_np(x), whole)
        assert np.array_equal(sobel_magnitude_np(x, "l1"), sobel_magnitude_np(x.copy(), "l1"))
    monkeypatch.undo()
    big = np.zeros((1500, 1000, 3), np.float32)  # 18 MB
    tracemalloc.start()
    try:
        out = sobel_magnitude_np(big)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.nbytes == big.nbytes and peak - out.nbytes < 8 << 20  # bands of about 1 MiB, not whole-image copies
