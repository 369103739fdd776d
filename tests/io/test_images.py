"""Reading awkward files: decompression bombs for the own 16-bit PNG decoder, multi-page TIFFs, JSON edge cases."""

from __future__ import annotations

import json
import struct
import tracemalloc
import zlib
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from PIL import Image

from gdvision.errors import InputError, UsageError
from gdvision.io.images import dumps_json, read_image, read_json, write_json, write_png

MB = 1 << 20


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def _png(width: int, height: int, idat: bytes, depth: int = 16, ctype: int = 2) -> bytes:
    """PNG bytes with the given header and an IDAT chunk holding ``idat`` (already compressed)."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, ctype, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _zeros_deflated(size: int) -> bytes:
    """zlib stream of ``size`` zero bytes (about size / 1000 bytes), built without holding ``size`` bytes."""
    z = zlib.compressobj(9)
    block = bytes(MB)
    parts = [z.compress(block) for _ in range(size // MB)]
    return b"".join(parts) + z.flush()


def _read_peak(path: Path) -> tuple[InputError, int]:
    """The InputError that reading ``path`` raises and the peak of Python/numpy memory allocated meanwhile."""
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as info:
            read_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return info.value, peak


def test_png16_declaring_a_huge_image_fails_before_allocating(tmp_path: Path) -> None:
    """Defect 7: a small 16-bit colour PNG that declares 60000x60000 must be refused from its header."""
    path = tmp_path / "bomb.png"
    path.write_bytes(_png(60000, 60000, _zeros_deflated(64 * MB)))  # 64 MB inflated, 65 KB on disk
    assert path.stat().st_size < 200_000
    err, peak = _read_peak(path)
    assert peak < 4 * MB, f"{peak / MB:.1f} MB allocated before refusing the file"
    msg = str(err)
    assert "\n" not in msg and "bomb.png" in msg and "60000x60000" in msg and "limit" in msg


def test_png16_inflating_past_its_header_stops_there(tmp_path: Path) -> None:
    """A header within the limit whose data inflates far beyond it: inflate only what the header announces."""
    path = tmp_path / "long.png"
    path.write_bytes(_png(64, 64, _zeros_deflated(64 * MB)))  # 64x64 RGB16 needs 24.6 KB
    err, peak = _read_peak(path)
    assert peak < 4 * MB, f"{peak / MB:.1f} MB allocated for a 64x64 image"
    assert "\n" not in str(err) and "longer than its header" in str(err)


def test_png16_truncated_data(tmp_path: Path) -> None:
    path = tmp_path / "short.png"
    path.write_bytes(_png(40, 30, zlib.compress(bytes(15 * (40 * 6 + 1)))))  # half of the rows
    with pytest.raises(InputError, match="truncated PNG data"):
        read_image(path)


@pytest.mark.parametrize("ctype, channels", [(2, 3), (6, 4), (4, 2)])
@pytest.mark.parametrize("filters", [(0, 1, 2), (3,), (4,), (0, 1, 2, 3, 4)])
def test_png16_every_row_filter_decodes_as_opencv_does(ctype: int, channels: int, filters: tuple[int, ...]) -> None:
    """Rows of random filtered bytes with random filter types (any bytes are a valid PNG), against OpenCV."""
    import cv2

    from gdvision.io.png16 import decode_png16

    rng = np.random.default_rng(ctype * 10 + len(filters))
    for w, h in ((37, 23), (1, 5), (6, 1)):
        rows = rng.integers(0, 256, (h, 1 + w * 2 * channels), dtype=np.uint8)
        rows[:, 0] = rng.choice(filters, h)
        data = _png(w, h, zlib.compress(rows.tobytes()), ctype=ctype)
        ref = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).reshape(h, w, -1)
        ref = ref[..., [0, 3]] if channels == 2 else ref[..., [2, 1, 0, 3][:channels]]  # OpenCV gives BGR(A)
        np.testing.assert_array_equal(decode_png16(data), ref)


def test_one_pixel_limit_for_8_and_16_bit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The own 16-bit decoder and Pillow's 8-bit path refuse the same sizes (twice PIL's MAX_IMAGE_PIXELS)."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 65536, (10, 10, 3), dtype=np.uint16)
    big = rng.integers(0, 65536, (15, 15, 3), dtype=np.uint16)
    for name, arr in (("s16.png", small), ("b16.png", big)):
        write_png(tmp_path / name, arr.astype(np.float32) / 65535, bits=16)
    for name, arr in (("s8.png", small), ("b8.png", big)):
        write_png(tmp_path / name, arr.astype(np.float32) / 65535)
    tifffile.imwrite(tmp_path / "b.tif", big[..., 0])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # limit: 200 pixels; 10x10 passes, 15x15 does not
    for name in ("s16.png", "s8.png"):
        assert read_image(tmp_path / name).height == 10
    np.testing.assert_array_equal(read_image(tmp_path / "s16.png").array, small / np.float32(65535))
    for name in ("b16.png", "b8.png", "b.tif"):
        with pytest.raises(InputError, match="limit"):
            read_image(tmp_path / name)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # Pillow's "no limit" lifts it for every format
    assert read_image(tmp_path / "b16.png").height == 15 and read_image(tmp_path / "b.tif").height == 15


# ------------------------------------------------------------------------------------------ TIFF pages


@pytest.mark.parametrize("pages", [2, 3, 4, 70])
def test_multipage_tiff_one_channel_per_page(tmp_path: Path, pages: int) -> None:
    """Defect 8: every page of a multi-page TIFF is a channel; with 2 or 4 pages none becomes an alpha mask."""
    rng = np.random.default_rng(pages)
    stack = rng.integers(0, 65536, (pages, 12, 9), dtype=np.uint16)
    stack[-1, :4] = 0  # a zero block in the last page: as alpha it would mask these rows out
    tifffile.imwrite(tmp_path / "t.tif", stack, photometric="minisblack")
    with tifffile.TiffFile(tmp_path / "t.tif") as tif:
        assert len(tif.pages) == pages
    img = read_image(tmp_path / "t.tif")
    assert img.channels == pages and img.mask is None and img.bit_depth == 16
    np.testing.assert_array_equal(img.array, np.moveaxis(stack, 0, -1) / np.float32(65535))


def test_tiff_pages_written_by_imageio(tmp_path: Path) -> None:
    stack = np.arange(2 * 6 * 7, dtype=np.uint8).reshape(2, 6, 7)
    iio.imwrite(tmp_path / "two.tif", stack)
    img = read_image(tmp_path / "two.tif")
    assert img.channels == 2 and img.mask is None
    np.testing.assert_array_equal(img.array[..., 1], stack[1] / np.float32(255))


def test_single_page_tiff_alpha_only_when_declared(tmp_path: Path) -> None:
    rgba = np.full((6, 8, 4), 200, np.uint8)
    rgba[:2, :, 3] = 0
    iio.imwrite(tmp_path / "rgba.tif", rgba)  # RGB + ExtraSamples=unassociated alpha
    img = read_image(tmp_path / "rgba.tif")
    assert img.channels == 3 and img.mask is not None
    assert img.mask[:2].sum() == 0 and img.mask[2:].min() == 1
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(rgba, -1, 0), photometric="rgb", planarconfig="separate")
    img = read_image(tmp_path / "planar.tif")
    assert img.channels == 3 and img.mask is not None and img.mask[:2].sum() == 0
    tifffile.imwrite(tmp_path / "four.tif", rgba, photometric="minisblack", extrasamples=["unspecified"] * 3)
    img = read_image(tmp_path / "four.tif")  # one gray sample + 3 unspecified ones: four channels, no alpha
    assert img.channels == 4 and img.mask is None


def test_tiff_pages_of_different_sizes(tmp_path: Path) -> None:
    with tifffile.TiffWriter(tmp_path / "mixed.tif") as tif:
        tif.write(np.zeros((8, 8), np.uint8))
        tif.write(np.zeros((4, 8), np.uint8))
    with pytest.raises(InputError, match="pages of a multi-page TIFF must match") as info:
        read_image(tmp_path / "mixed.tif")
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------------------------ JSON


def test_json_non_finite_values_become_null(tmp_path: Path) -> None:
    import torch

    obj = {
        "f": float("inf"),
        "np": np.float32("nan"),
        "arr": np.array([1.0, np.nan, -np.inf]),
        "t": torch.tensor([[0.5, float("nan")]]),
        "scalar": torch.tensor(float("inf")),
        1: (np.int64(3), np.bool_(True)),
    }
    expect = {"f": None, "np": None, "arr": [1.0, None, None], "t": [[0.5, None]], "scalar": None, "1": [3, True]}
    assert json.loads(dumps_json(obj)) == expect
    write_json(tmp_path / "o.json", obj)
    assert read_json(tmp_path / "o.json") == expect


def test_read_json_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps({"H": [1, 2]}).encode())
    assert read_json(tmp_path / "bom.json") == {"H": [1, 2]}  # as Windows tools save it
    (tmp_path / "utf8.json").write_bytes(json.dumps({"name": "café"}, ensure_ascii=False).encode())
    assert read_json(tmp_path / "utf8.json") == {"name": "café"}
    with pytest.raises(UsageError, match="not found"):
        read_json(tmp_path / "nope.json")
    with pytest.raises(UsageError, match="folder"):
        read_json(tmp_path)
    (tmp_path / "bad.json").write_text('{"H": [1, 2')
    (tmp_path / "latin1.json").write_bytes(b'{"a": "\xff"}')
    for name in ("bad.json", "latin1.json"):
        with pytest.raises(InputError, match="not valid JSON") as info:
            read_json(tmp_path / name)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_integer_scaling_equals_the_float64_quotient_for_every_value(tmp_path: Path, dtype: type) -> None:
    """8- and 16-bit pixels are divided in float32 (one pass): the same values as k / peak rounded from float64."""
    peak = np.iinfo(dtype).max
    every = np.arange(peak + 1, dtype=dtype)
    side = 16 if dtype == np.uint8 else 256
    iio.imwrite(tmp_path / "every.png", every.reshape(side, -1))
    got = read_image(tmp_path / "every.png").array[..., 0].ravel()
    want = (np.arange(peak + 1, dtype=np.float64) / peak).astype(np.float32)
    assert got.dtype == np.float32 and np.array_equal(got, want)
