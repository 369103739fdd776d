"""Shared building blocks: image I/O, devices, warping, pyramids, losses, the optimisation loop."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np
import pytest
import torch
from synthetic import random_homography

from gdvision.coords import apply_homography, grid_to_pixel, mean_corner_error, pixel_to_grid
from gdvision.device import resolve_device
from gdvision.errors import InputError, SolverError, UsageError
from gdvision.filters.separable import separable_filter
from gdvision.io.images import list_images, read_homography, read_image, write_json, write_npy, write_png
from gdvision.losses import (
    charbonnier_loss,
    edge_aware_smoothness,
    gradient_loss,
    mutual_information,
    ncc,
    ssim_loss,
    ssim_map,
    total_variation,
)
from gdvision.optim import StepConfig, minimize_first_order, minimize_lm
from gdvision.pyramid import downsample_mask, gaussian_pyramid, num_levels, pyr_down
from gdvision.warp import sample_points, warp_perspective

# ----------------------------------------------------------------------------------------------- I/O


def test_read_formats(tmp_path: Path, rng: np.random.Generator) -> None:
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    iio.imwrite(tmp_path / "rgb.png", rgb)
    img = read_image(tmp_path / "rgb.png")
    assert img.tensor().shape == (1, 3, 20, 30)
    assert np.allclose(img.array, rgb / 255.0, atol=1e-6)
    assert img.mask is None and img.bit_depth == 8

    g16 = rng.integers(0, 65536, (10, 12), dtype=np.uint16)
    iio.imwrite(tmp_path / "g16.png", g16)
    img = read_image(tmp_path / "g16.png")
    assert img.bit_depth == 16 and img.channels == 1
    assert np.allclose(img.array[..., 0], g16 / 65535.0, atol=1e-6)

    rgba = np.concatenate([rgb, np.zeros((20, 30, 1), np.uint8)], axis=2)
    rgba[5:, :, 3] = 255
    iio.imwrite(tmp_path / "rgba.png", rgba)
    img = read_image(tmp_path / "rgba.png")
    assert img.channels == 3 and img.mask is not None
    assert img.mask[:5].sum() == 0 and img.mask[5:].min() == 1

    cv2.imwrite(str(tmp_path / "g.pgm"), rgb[..., 0])
    assert read_image(tmp_path / "g.pgm").channels == 1

    stack = rng.random((7, 16, 18)).astype(np.float32)
    iio.imwrite(tmp_path / "ms.tif", (stack * 65535).astype(np.uint16))
    ms = read_image(tmp_path / "ms.tif")
    assert ms.channels == 7 and ms.height == 16 and ms.width == 18

    np.save(tmp_path / "arr.npy", stack.transpose(1, 2, 0))
    arr = read_image(tmp_path / "arr.npy")
    assert arr.channels == 7 and np.allclose(arr.array, stack.transpose(1, 2, 0))


def test_read_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    with pytest.raises(InputError, match="cannot read image"):
        read_image(tmp_path / "bad.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        read_image(tmp_path / "empty.png")
    np.save(tmp_path / "nan.npy", np.full((4, 4), np.nan, np.float32))
    with pytest.raises(InputError, match="NaN"):
        read_image(tmp_path / "nan.npy")


def test_atomic_writes(tmp_path: Path) -> None:
    img = torch.rand(1, 3, 8, 9)
    write_png(tmp_path / "o8.png", img)
    write_png(tmp_path / "o16.png", img, bits=16)
    back = read_image(tmp_path / "o16.png")
    assert back.bit_depth == 16
    assert np.allclose(back.array.transpose(2, 0, 1), img[0].numpy(), atol=1 / 65535)
    write_npy(tmp_path / "o.npy", img)
    write_json(tmp_path / "o.json", {"x": float("nan"), "y": np.float32(2.0)})
    assert json.loads((tmp_path / "o.json").read_text()) == {"x": None, "y": 2.0}
    assert sorted(os.listdir(tmp_path)) == ["o.json", "o.npy", "o16.png", "o8.png"]  # no temp files left


def test_read_homography(tmp_path: Path) -> None:
    (tmp_path / "h.json").write_text(json.dumps({"H": [[2, 0, 1], [0, 2, 3], [0, 0, 2]]}))
    assert np.allclose(read_homography(tmp_path / "h.json"), [[1, 0, 0.5], [0, 1, 1.5], [0, 0, 1]])
    (tmp_path / "s.json").write_text(json.dumps({"H": [[1, 2, 3], [2, 4, 6], [0, 0, 1]]}))
    with pytest.raises(InputError, match="singular"):
        read_homography(tmp_path / "s.json")
    (tmp_path / "b.json").write_text(json.dumps({"H": [[1, 2], [3, 4]]}))
    with pytest.raises(InputError, match="3x3"):
        read_homography(tmp_path / "b.json")


def test_list_images(tmp_path: Path) -> None:
    for name in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_images([str(tmp_path)])] == ["a.jpg", "b.png"]
    assert [p.name for p in list_images([str(tmp_path / "*.png")])] == ["b.png"]


def test_devices() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(UsageError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="not available"):
            resolve_device("cuda:0")


def test_cpu_without_torch_rule() -> None:
    """``auto`` counts as the CPU without importing torch only where no accelerator can be found."""
    from gdvision.device import _torch_build, is_cpu_without_torch, no_accelerator

    cuda, cpu_only, rocm = {"cuda": True, "hip": False}, {"cuda": False, "hip": False}, {"cuda": False, "hip": True}
    nothing = lambda p: False  # noqa: E731
    assert no_accelerator(cpu_only, "linux", {}, lambda p: True)  # a CPU build cannot use a GPU
    assert no_accelerator(cuda, "linux", {}, nothing)
    assert not no_accelerator(cuda, "linux", {}, lambda p: p == "/dev/nvidiactl")
    assert not no_accelerator(cuda, "linux", {}, lambda p: p == "/dev/dxg")  # WSL
    assert no_accelerator(cuda, "linux", {"CUDA_VISIBLE_DEVICES": ""}, lambda p: True)
    assert no_accelerator(cuda, "linux", {"CUDA_VISIBLE_DEVICES": "-1"}, lambda p: True)
    assert not no_accelerator(cuda, "linux", {"CUDA_VISIBLE_DEVICES": "0"}, lambda p: True)
    assert not no_accelerator(rocm, "linux", {}, lambda p: p == "/dev/kfd")
    assert not no_accelerator(cuda, "win32", {}, nothing)  # unsure: ask torch
    assert not no_accelerator(cpu_only, "darwin", {}, nothing)  # MPS
    assert not no_accelerator(None, "linux", {}, nothing)  # no build file read
    assert is_cpu_without_torch("cpu") and not is_cpu_without_torch("cuda:1") and not is_cpu_without_torch("mps")
    assert not is_cpu_without_torch("auto")  # torch is imported in this process: ask it
    with pytest.raises(UsageError):
        is_cpu_without_torch("tpu")
    build = _torch_build()
    assert build is not None and build["cuda"] == (torch.version.cuda is not None)
    assert build["hip"] == (torch.version.hip is not None)


# -------------------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("seed", range(5))
def test_warp_matches_opencv(seed: int, natural_gray: np.ndarray, device: str) -> None:
    rng = np.random.default_rng(seed)
    img = np.ascontiguousarray(natural_gray[100:220, 150:310])
    H = random_homography(rng, 160, 120)
    x, h = torch.from_numpy(img)[None, None].to(device), torch.from_numpy(H).to(device)
    ref = cv2.warpPerspective(img, H, (150, 110), flags=cv2.INTER_LINEAR)
    out, mask = warp_perspective(x, h, (150, 110))
    assert out.device.type == device
    inside = mask[0, 0].cpu().numpy() > 0
    assert inside.mean() > 0.3
    assert np.abs(out[0, 0].cpu().numpy() - ref)[inside].max() < 1e-3
    # inverse_map: dst(x) = src(H x)
    ref_inv = cv2.warpPerspective(img, H, (150, 110), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    out_inv, mask_inv = warp_perspective(x, h, (150, 110), True)
    inside = mask_inv[0, 0].cpu().numpy() > 0
    assert np.abs(out_inv[0, 0].cpu().numpy() - ref_inv)[inside].max() < 1e-3


def test_coordinates_roundtrip() -> None:
    pts = torch.tensor([[0.0, 0.0], [63.0, 47.0], [10.5, 3.25]])
    uv = pixel_to_grid(pts, 48, 64)
    assert torch.allclose(uv[0], torch.tensor([-1.0, -1.0])) and torch.allclose(uv[1], torch.tensor([1.0, 1.0]))
    assert torch.allclose(grid_to_pixel(uv, 48, 64), pts)
    H = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    assert torch.allclose(
        apply_homography(H, pts.double()), pts.double() + torch.tensor([2.0, -1.0], dtype=torch.float64)
    )
    assert float(mean_corner_error(H, torch.eye(3, dtype=torch.float64), 48, 64)) == pytest.approx(5**0.5)


def test_sample_points_exact_at_pixels(device: str) -> None:
    img = torch.rand(2, 3, 9, 11, device=device)
    pts = torch.tensor([[[0.0, 0.0], [10.0, 8.0], [4.0, 5.0]]], device=device).expand(2, -1, -1)
    s = sample_points(img, pts)
    assert torch.allclose(s[:, :, 2], img[:, :, 5, 4])
    assert torch.allclose(s[:, :, 1], img[:, :, 8, 10])


def test_pyramid(natural_gray: np.ndarray, device: str) -> None:
    img = np.ascontiguousarray(natural_gray[:101, :77])
    ours = pyr_down(torch.from_numpy(img)[None, None].to(device))[0, 0].cpu().numpy()
    assert ours.shape == (51, 39)
    assert np.abs(ours - cv2.pyrDown(img)).max() < 1e-5
    assert num_levels(480, 640, 24) == 5
    levels = gaussian_pyramid(torch.rand(1, 1, 480, 640, device=device), min_size=24)
    shapes = [p.shape[-2:] for p in levels]
    assert shapes[-1] == (30, 40) and len(shapes) == 5 and all(p.device.type == device for p in levels)


@pytest.mark.parametrize("border", ["reflect101", "replicate", "constant"])
def test_pyr_down_computes_only_the_kept_pixels_with_the_same_values(border: str) -> None:
    """pyr_down computes the even rows and columns only: bit for bit the full blur subsampled, for odd and even
    sides, sides of 1-5 pixels, planes large enough to be cut into bands of rows, 1 and 3 channels, float32 and
    float64, and with gradients (the unblocked path)."""
    g = torch.Generator().manual_seed(4)
    k = [1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16]
    for h, w in ((1, 1), (2, 5), (3, 4), (5, 13), (31, 64), (48, 641), (803, 700)):  # the last: bands of rows
        for c in (1, 3):
            for dtype in (torch.float32, torch.float64):
                x = torch.rand(2, c, h, w, generator=g, dtype=dtype)
                assert torch.equal(pyr_down(x, border), separable_filter(x, k, k, border)[..., ::2, ::2])
    x = torch.rand(1, 3, 37, 50, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.equal(pyr_down(x, border), separable_filter(x, k, k, border)[..., ::2, ::2])


def test_downsample_mask_keeps_a_pixel_only_where_its_3x3_parents_are_all_valid() -> None:
    g = torch.Generator().manual_seed(5)
    for h, w in ((1, 1), (2, 3), (5, 8), (17, 31)):
        m = (torch.rand(2, 1, h, w, generator=g) > 0.15).float()
        out = downsample_mask(m)
        assert out.shape[-2:] == ((h + 1) // 2, (w + 1) // 2)
        for y in range(out.shape[-2]):
            for x in range(out.shape[-1]):
                parents = m[:, 0, max(0, 2 * y - 1) : 2 * y + 2, max(0, 2 * x - 1) : 2 * x + 2]
                assert torch.equal(out[:, 0, y, x], parents.amin((1, 2)))


def test_gradients_are_correct() -> None:
    torch.manual_seed(0)
    x = torch.rand(1, 1, 9, 10, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(pyr_down, (x,))
    H = torch.tensor([[1.02, 0.03, 0.4], [-0.02, 0.98, -0.3], [1e-3, 2e-3, 1.0]], dtype=torch.float64)
    Hp = H.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda img, h: warp_perspective(img, h, (8, 7), inverse_map=True)[0], (x, Hp))
    y = torch.rand(1, 1, 9, 10, dtype=torch.float64)
    m = torch.ones(1, 1, 9, 10, dtype=torch.float64)
    for fn in (
        lambda a: ssim_loss(a, y, m, window=5),
        lambda a: ncc(a, y, m),
        lambda a: charbonnier_loss(a, y, m),
        lambda a: gradient_loss(a, y + 0.01 * a.detach() * 0 + 0.0, m),
        lambda a: mutual_information(a, y, m, bins=8),
        lambda a: edge_aware_smoothness(a + 1.0, y),
        lambda a: total_variation(a * 0.5 + y),
    ):
        assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-4)


def test_loss_values_on_known_cases(device: str) -> None:
    torch.manual_seed(0)
    a = torch.rand(2, 1, 32, 32, device=device)
    one = torch.ones(2, device=device)
    assert torch.allclose(ssim_map(a, a), torch.ones_like(a), atol=1e-4)
    assert torch.allclose(ncc(a, 0.5 * a + 0.2), one, atol=1e-5)
    assert torch.allclose(ncc(a, 1.0 - a), -one, atol=1e-5)
    assert torch.allclose(gradient_loss(a, a + 0.3), 0 * one, atol=1e-6)
    # MI of an image with a monotone remap of itself beats MI with unrelated noise
    assert (mutual_information(a, a**2) > 3 * mutual_information(a, torch.rand_like(a))).all()
    flat = torch.ones(1, 1, 8, 8, device=device)
    assert float(edge_aware_smoothness(flat, torch.rand(1, 3, 8, 8, device=device))) == 0.0


# ------------------------------------------------------------------------------------ optimisation


def test_lm_fits_exponential_batch() -> None:
    t = torch.linspace(0, 1, 50, dtype=torch.float64)
    truth = torch.tensor([[2.0, -1.5], [0.5, 0.8]], dtype=torch.float64)

    def fn(p: torch.Tensor, index: torch.Tensor | None):
        tr = truth if index is None else truth[index]
        y = tr[:, :1] * torch.exp(tr[:, 1:] * t)
        model = p[:, :1] * torch.exp(p[:, 1:] * t)
        r = model - y
        J = torch.stack([torch.exp(p[:, 1:] * t), p[:, :1] * t * torch.exp(p[:, 1:] * t)], dim=-1)
        return r, J, torch.ones_like(r)

    p, cost, _ = minimize_lm(fn, torch.ones(2, 2, dtype=torch.float64), StepConfig(iters=100, tol=0, xtol=1e-12))
    assert torch.allclose(p, truth, atol=1e-6)
    assert (cost < 1e-12).all()


def test_first_order_converges_and_detects_nan() -> None:
    target = torch.tensor([[3.0, -2.0]])
    p, loss, _ = minimize_first_order(
        lambda q: ((q - target) ** 2).sum(1), torch.zeros(1, 2), StepConfig(method="adam", lr=0.1, iters=500)
    )
    assert torch.allclose(p, target, atol=1e-2)
    with pytest.raises(SolverError, match="non-finite"):
        minimize_first_order(lambda q: (q * float("nan")).sum(1), torch.zeros(1, 2), StepConfig(method="adam"))
    with pytest.raises(SolverError, match="diverged"):
        minimize_first_order(lambda q: -((q - 0.1) ** 4).sum(1) - 1, torch.ones(1, 2), StepConfig(method="sgd", lr=1.0))


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("level", [1, 6])
def test_png_encoder_round_trips_through_opencv(channels: int, bits: int, level: int) -> None:
    from gdvision.io.images import encode_png

    peak = 2**bits - 1
    q = np.random.default_rng(channels + bits).integers(0, peak + 1, size=(9, 13, channels))
    data = encode_png(q / peak, bits, compress_level=level)
    back = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if channels >= 3:  # OpenCV returns BGR(A)
        back = back[..., [2, 1, 0, 3][:channels]]
    elif channels == 2:  # ... and gray + alpha as BGRA
        back = back[..., [0, 3]]
    assert back.dtype == (np.uint8 if bits == 8 else np.uint16)
    np.testing.assert_array_equal(back.reshape(q.shape), q)
