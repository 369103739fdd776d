"""The CPU block engine: padding into scratch buffers, blocks, huge-page outputs, OpenCV parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gdvision.filters import blocks
from gdvision.filters import separable as f

cv2 = pytest.importorskip("cv2")

BORDERS = {"reflect101": cv2.BORDER_REFLECT_101, "replicate": cv2.BORDER_REPLICATE, "constant": cv2.BORDER_CONSTANT}


@pytest.mark.parametrize("border", ["reflect101", "replicate", "constant"])
@pytest.mark.parametrize(("h", "w", "rx", "top", "bottom"), [(5, 7, 1, 1, 1), (9, 4, 3, 2, 0), (2, 3, 2, 0, 1)])
def test_pad_into_scratch_equals_pad(border: str, h: int, w: int, rx: int, top: int, bottom: int):
    x = torch.rand(3, 1, h, w)
    ref = blocks.pad(x, rx, rx, top, bottom, border)
    assert torch.equal(blocks._pad_into_scratch(x, rx, top, bottom, border), ref)
    if border == "reflect101" and rx < w and max(top, bottom) < h:
        assert torch.equal(ref, F.pad(x, (rx, rx, top, bottom), mode="reflect"))
    # integer input: converted to float32 on the way, as .to(float32) after pad would
    xi = (x * 200).to(torch.uint8)
    assert torch.equal(
        blocks._pad_into_scratch(xi, rx, top, bottom, border), blocks.pad(xi, rx, rx, top, bottom, border).float()
    )


@pytest.mark.parametrize(("n", "h"), [(3, 256), (24, 256), (97, 256), (2, 1500)])
def test_blocks_cover_every_output_row_of_every_image_once(n: int, h: int):
    jobs = blocks._blocks(n, h, 256, h, 1, 1)
    cells = [(i, r) for i0, i1, r0, r1 in jobs for i in range(i0, i1) for r in range(r0, r1)]
    assert sorted(cells) == [(i, r) for i in range(n) for r in range(h)]
    assert all((i1 - i0) * (r1 - r0 + 2) * 258 <= max(blocks._BLOCK_ELEMS, 258 * 3) for i0, i1, r0, r1 in jobs)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threaded_blocks_equal_opencv_and_restore_the_thread_count(threads: int):
    """Enough images for several blocks (and a huge-page output): dx, dy bit-exact, the magnitude the same
    whatever the thread count, and torch's thread setting unchanged afterwards."""
    rng = np.random.default_rng(threads)
    imgs = (rng.random((40, 128, 125, 3)) * 255).astype(np.float32)  # W * C = 375: with OpenCV's scalar tail
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gx, gy = f.sobel(x)
        mag = f.gradient_magnitude(x)
        assert torch.get_num_threads() == threads
        torch.set_num_threads(1)
        assert torch.equal(mag, f.gradient_magnitude(x))
    finally:
        torch.set_num_threads(before)
    for i in (0, 13, 39):
        assert np.array_equal(gx[i].permute(1, 2, 0).numpy(), cv2.Sobel(imgs[i], cv2.CV_32F, 1, 0))
        assert np.array_equal(gy[i].permute(1, 2, 0).numpy(), cv2.Sobel(imgs[i], cv2.CV_32F, 0, 1))


@pytest.mark.parametrize("border", ["reflect101", "replicate", "constant"])
def test_blocked_scharr_and_laplacian_equal_opencv_on_every_border(border: str):
    rng = np.random.default_rng(7)
    imgs = (rng.random((12, 90, 77, 3)) * 255).astype(np.float32)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()
    gx, gy = f.scharr(x, border=border)
    lap = f.laplacian(x, 3, border=border)
    for i in (0, 11):
        b = BORDERS[border]
        assert np.array_equal(gx[i].permute(1, 2, 0).numpy(), cv2.Scharr(imgs[i], cv2.CV_32F, 1, 0, borderType=b))
        assert np.array_equal(gy[i].permute(1, 2, 0).numpy(), cv2.Scharr(imgs[i], cv2.CV_32F, 0, 1, borderType=b))
        assert np.array_equal(
            lap[i].permute(1, 2, 0).numpy(), cv2.Laplacian(imgs[i], cv2.CV_32F, ksize=3, borderType=b)
        )


def test_huge_pages_keeps_the_tensor_and_its_values():
    t = torch.empty(3, 1 << 20)  # 12 MiB: advised
    assert blocks._huge_pages(t) is t
    t.fill_(2.5)
    assert bool((t == 2.5).all())
    small = torch.empty(10)
    assert blocks._huge_pages(small) is small


@pytest.mark.parametrize("shape", [(7, 1), (1, 9), (1, 1), (2, 1), (1, 2)])
def test_reflect101_on_a_one_pixel_side_equals_opencv(shape: tuple[int, int]):
    """A side of 1 pixel repeats that pixel (nothing to reflect); the other side still reflects, as in OpenCV."""
    import cv2

    x = np.arange(1.0, 1.0 + shape[0] * shape[1], dtype=np.float32).reshape(shape)
    want = cv2.copyMakeBorder(x, 2, 1, 3, 2, cv2.BORDER_REFLECT_101)
    got = blocks.pad(torch.from_numpy(x)[None, None], 3, 2, 2, 1, "reflect101")[0, 0].numpy()
    assert np.array_equal(got, want)
    dy = f.derivative(torch.from_numpy(x)[None, None], 0, 1)[0, 0].numpy()
    assert np.array_equal(dy, cv2.Sobel(x, cv2.CV_32F, 0, 1, ksize=3))
