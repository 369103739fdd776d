"""The edges task's fast paths give the same files as the plain ones: PNG quantisation in torch, Pillow's PNG decode,
and the single torch thread of the CPU folder mode."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from gdvision.filters.config import EdgeConfig
from gdvision.filters.edges import edge_map, to_unit_range
from gdvision.io.images import _plain_png, encode_png, read_image
from gdvision.tasks.edges import EdgeBatch, plan_edges, quantize8, run_edges


def test_quantize8_equals_encode_png_rounding():
    rng = np.random.default_rng(1)
    vals = np.concatenate(
        [
            rng.random(30000, dtype=np.float32) * 1.4 - 0.2,
            (np.arange(0, 2048) / 2040).astype(np.float32),  # every rounding boundary k / 255 and halves
            (np.arange(256) + 0.5).astype(np.float32) / 255,
            np.array([np.nan, np.inf, -np.inf, -0.0], np.float32),
        ]
    )
    vals = vals[: len(vals) // 3 * 3]
    y = torch.from_numpy(vals).view(1, 3, 1, -1)
    hwc = y[0].permute(1, 2, 0).numpy()
    arr = np.nan_to_num(hwc, nan=0.0, posinf=1.0, neginf=0.0)
    expected = np.clip(np.rint(arr * np.float32(255)), 0, 255).astype(np.uint8)
    assert np.array_equal(quantize8(y)[0].numpy(), expected)


@pytest.mark.parametrize(
    "cfg",
    [
        EdgeConfig(),
        EdgeConfig(op="scharr", what="dx"),
        EdgeConfig(what="orientation"),
        EdgeConfig(op="laplacian", ksize=3),
        EdgeConfig(op="canny"),
    ],
    ids=["magnitude", "scharr-dx", "orientation", "laplacian", "canny"],
)
@pytest.mark.parametrize("channels", [1, 3])
def test_edge_batch_png_bytes_equal_the_float_path(tmp_path: Path, cfg: EdgeConfig, channels: int):
    rng = np.random.default_rng(channels)
    images = [rng.random((21, 37, channels), dtype=np.float32) for _ in range(3)]
    images[0][5:9] = 1.0  # saturated edges: values above 1 before clipping
    outs = [tmp_path / f"{k}.png" for k in range(3)]
    with ThreadPoolExecutor(2) as pool:
        _, futures = EdgeBatch(cfg, torch.device("cpu"), "png", pool)(images, outs)
        for f in futures:
            f.result()
    y = to_unit_range(edge_map(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), cfg), cfg)
    for k, out in enumerate(outs):
        assert out.read_bytes() == encode_png(y[k].numpy(), 8, compress_level=1)


def test_plain_png_decode_equals_imageio(tmp_path: Path):
    rng = np.random.default_rng(2)
    for shape in [(9, 13), (9, 13, 2), (9, 13, 3), (9, 13, 4)]:
        a = rng.integers(0, 256, shape, dtype=np.uint8)
        p = tmp_path / f"im{len(shape)}_{shape[-1]}.png"
        iio.imwrite(p, a)
        got = _plain_png(p.read_bytes())
        assert got is not None and got.dtype == np.uint8 and np.array_equal(got, iio.imread(p))
        assert np.array_equal(read_image(p).array[..., 0], a.reshape(9, 13, -1)[..., 0] / np.float32(255))
    from PIL import Image

    pal = Image.fromarray(rng.integers(0, 4, (9, 13), dtype=np.uint8), mode="L").convert("P")
    pal.save(tmp_path / "pal.png")
    assert _plain_png((tmp_path / "pal.png").read_bytes()) is None  # palette images go through imageio
    assert read_image(tmp_path / "pal.png").array.shape[:2] == (9, 13)


def test_folder_mode_restores_torch_threads_and_writes_the_same_files(tmp_path: Path):
    rng = np.random.default_rng(3)
    src = tmp_path / "in"
    src.mkdir()
    for k in range(5):
        iio.imwrite(src / f"{k}.png", rng.integers(0, 256, (24, 30, 3), dtype=np.uint8))
    paths = sorted(src.glob("*.png"))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        one = run_edges(plan_edges(paths, tmp_path / "one"), EdgeConfig(), torch.device("cpu"), 2, workers=1)
        two = run_edges(plan_edges(paths, tmp_path / "two"), EdgeConfig(), torch.device("cpu"), 2, workers=3)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert one.written == two.written == 5
    for p in paths:
        assert (tmp_path / "one" / p.name).read_bytes() == (tmp_path / "two" / p.name).read_bytes()
