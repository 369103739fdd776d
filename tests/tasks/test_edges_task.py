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
from gdvision.tasks.edges import EdgeBatch, computes_with_numpy, plan_edges, quantize8, run_edges


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
        if not computes_with_numpy(cfg, "cpu"):
            assert out.read_bytes() == encode_png(y[k].numpy(), 8, compress_level=1)
            continue
        # the default map on the CPU is NumPy's (IEEE square root): within one level of torch's, rarely off
        got = iio.imread(out).astype(int).reshape(21, 37, channels)
        want = iio.imread(encode_png(y[k].numpy(), 8, compress_level=1)).astype(int).reshape(21, 37, channels)
        assert np.abs(got - want).max() <= 1 and (got != want).mean() < 1e-3


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


def test_numpy_route_is_the_default_map_on_the_cpu_only():
    assert computes_with_numpy(EdgeConfig(), "cpu") and computes_with_numpy(EdgeConfig(norm="l1"), torch.device("cpu"))
    assert not computes_with_numpy(EdgeConfig(), torch.device("meta"))
    for cfg in [
        EdgeConfig(op="scharr", ksize=3),
        EdgeConfig(ksize=5),
        EdgeConfig(what="dx"),
        EdgeConfig(border="replicate"),
        EdgeConfig(op="canny"),
    ]:
        assert not computes_with_numpy(cfg, "cpu")


@pytest.mark.parametrize("fmt", ["png", "png16", "npy"])
def test_numpy_route_files_equal_the_torch_filter(tmp_path: Path, fmt: str):
    """Every format of the NumPy route against the torch filter: raw values within 1 unit in the last place,
    PNGs within one level (at rounding ties only); a 4-channel PNG fails per file with the torch route's message."""
    from gdvision.filters import gradient_magnitude

    rng = np.random.default_rng(4)
    images = [rng.integers(0, 256, (19, 23, c)).astype(np.float32) / np.float32(255) for c in (1, 3, 3)]
    images[2][4:8] = 1.0
    outs = [tmp_path / f"{k}.{'npy' if fmt == 'npy' else 'png'}" for k in range(3)]
    with ThreadPoolExecutor(2) as pool:
        means, futures = EdgeBatch(EdgeConfig(), "cpu", fmt, pool)(images, outs, means=True)
        for f in futures:
            f.result()
    for img, out, mean in zip(images, outs, means, strict=True):
        ref = gradient_magnitude(torch.from_numpy(img).permute(2, 0, 1)[None].contiguous())[0].permute(1, 2, 0)
        ref = ref.numpy().reshape(img.shape)
        assert mean == pytest.approx(float(ref.mean()), rel=1e-6)
        if fmt == "npy":
            got = np.load(out).reshape(img.shape)
            ulps = np.abs(got.view(np.int32).astype(np.int64) - ref.view(np.int32).astype(np.int64))
            assert got.dtype == np.float32 and ulps.max() <= 1
            continue
        peak = 255 if fmt == "png" else 65535
        got = np.rint(read_image(out).array.astype(np.float64) * peak).reshape(img.shape)  # Pillow reads 16 bits as 8
        want = np.clip(np.rint(np.clip(ref / np.float32(4), 0, 1) * np.float32(peak)), 0, peak)
        assert np.abs(got - want).max() <= 1 and (got != want).mean() < 1e-2
    with ThreadPoolExecutor(1) as pool:
        _, futures = EdgeBatch(EdgeConfig(), "cpu", "png", pool)([images[0].repeat(4, axis=2)], [tmp_path / "4.png"])
        with pytest.raises(Exception, match="4-channel PNG"):
            futures[0].result()


def test_folder_mode_on_the_cpu_never_imports_torch(tmp_path: Path):
    """``gdvision edges DIR`` with the default map, ``--device cpu`` or ``auto`` on this CPU-only torch: no torch;
    the files are those the in-process torch filter gives (within one level), a corrupt file fails alone."""
    import json
    import os
    import subprocess
    import sys

    rng = np.random.default_rng(5)
    src = tmp_path / "in"
    src.mkdir()
    for k in range(4):
        iio.imwrite(src / f"{k}.png", rng.integers(0, 256, (24, 30, 3), dtype=np.uint8))
    (src / "bad.png").write_bytes(b"not a png")
    script = (
        "import json, sys\n"
        "from gdvision.cli.entry import main\n"
        "sys.argv = ['gdvision'] + sys.argv[1:]\n"
        "try:\n    main()\n"
        "except SystemExit as e:\n    print(json.dumps({'rc': e.code, 'torch': 'torch' in sys.modules}))\n"
    )
    devices = ["cpu"]
    if torch.version.cuda is None and torch.version.hip is None and sys.platform != "darwin":
        devices.append("auto")  # this torch cannot use a GPU, so auto is the CPU without asking torch
    for device in devices:
        out = tmp_path / f"out_{device}"
        cmd = [sys.executable, "-c", script, "edges", str(src), "-o", str(out), "--json", "--device", device]
        res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "GDVISION_WORKER": "0"})
        lines = [json.loads(line) for line in res.stdout.strip().splitlines()]
        summary, status = lines[0], lines[-1]
        assert status == {"rc": 1, "torch": False}, res.stderr
        assert summary["written"] == 4 and summary["failed"] == 1 and "bad.png" in summary["failures"][0]["path"]
        for k in range(4):
            ref = to_unit_range(edge_map(read_image(src / f"{k}.png").tensor(), EdgeConfig()), EdgeConfig())
            want = np.clip(np.rint(ref[0].permute(1, 2, 0).numpy() * np.float32(255)), 0, 255)
            got = iio.imread(out / f"{k}.png").astype(int)
            assert np.abs(got - want).max() <= 1
