"""Filters: OpenCV parity (cv2.Sobel/Scharr/Laplacian/getDerivKernels), dtypes, blocking, gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gdvision.errors import InputError, UsageError
from gdvision.filters import blocks
from gdvision.filters import separable as f
from gdvision.filters.passes import opencv_tail_applies, separable_passes, separable_passes_even

cv2 = pytest.importorskip("cv2")

CV_BORDER = {
    "reflect101": cv2.BORDER_REFLECT_101,
    "replicate": cv2.BORDER_REPLICATE,
    "constant": cv2.BORDER_CONSTANT,
}


def _t(img: np.ndarray) -> torch.Tensor:
    """(H, W) or (H, W, C) numpy -> (1, C, H, W) tensor."""
    t = torch.from_numpy(np.ascontiguousarray(img))
    return t[None, None] if t.dim() == 2 else t.permute(2, 0, 1)[None]


def _np(x: torch.Tensor) -> np.ndarray:
    return x[0].permute(1, 2, 0).numpy().squeeze(-1) if x.shape[1] == 1 else x[0].permute(1, 2, 0).numpy()


def _exact(ours: np.ndarray, ref: np.ndarray, what: str = "") -> None:
    """Bit-for-bit equal to OpenCV's float32 result (what the module promises for these filters)."""
    ref = ref.reshape(ours.shape)
    assert np.array_equal(ours, ref), f"{what}: max |diff| {np.abs(ours - ref).max()}"


@pytest.fixture(scope="module")
def float_img() -> np.ndarray:
    """Random float32 values in [0, 255], width a multiple of 8 (OpenCV's SIMD width: no scalar tail)."""
    return (np.random.default_rng(1).random((61, 96)) * 255).astype(np.float32)


@pytest.fixture(scope="module")
def rgb8(sample_dir) -> np.ndarray:
    import imageio.v3 as iio

    return iio.imread(sample_dir / "natural" / "chelsea.png")[:120, :157].astype(np.float32)


@pytest.mark.parametrize("border", list(CV_BORDER))
@pytest.mark.parametrize("ksize", [1, 3, 5, 7])
def test_sobel_matches_opencv_on_8bit_rgb(rgb8, border, ksize):
    gx, gy = f.sobel(_t(rgb8), border, ksize)
    ref_x = cv2.Sobel(rgb8, cv2.CV_32F, 1, 0, ksize=ksize, borderType=CV_BORDER[border])
    ref_y = cv2.Sobel(rgb8, cv2.CV_32F, 0, 1, ksize=ksize, borderType=CV_BORDER[border])
    _exact(_np(gx), ref_x, "dx")
    _exact(_np(gy), ref_y, "dy")


@pytest.mark.parametrize("border", list(CV_BORDER))
def test_float32_parity_sobel_scharr_laplacian(float_img, border):
    x, bt = _t(float_img), CV_BORDER[border]
    for ksize in (3, 5):
        gx, gy = f.sobel(x, border, ksize)
        _exact(_np(gx), cv2.Sobel(float_img, cv2.CV_32F, 1, 0, ksize=ksize, borderType=bt), f"sobel{ksize} dx")
        _exact(_np(gy), cv2.Sobel(float_img, cv2.CV_32F, 0, 1, ksize=ksize, borderType=bt), f"sobel{ksize} dy")
    sx, sy = f.scharr(x, border)
    _exact(_np(sx), cv2.Scharr(float_img, cv2.CV_32F, 1, 0, borderType=bt), "scharr dx")
    _exact(_np(sy), cv2.Scharr(float_img, cv2.CV_32F, 0, 1, borderType=bt), "scharr dy")
    for ksize in (1, 3):
        lap = f.laplacian(x, ksize, border)
        _exact(_np(lap), cv2.Laplacian(float_img, cv2.CV_32F, ksize=ksize, borderType=bt), f"laplacian{ksize}")


@pytest.mark.parametrize(("width", "channels"), [(37, 1), (45, 3), (29, 4), (13, 5), (61, 3)])
def test_float32_parity_with_opencv_scalar_tail(width, channels):
    """W * C not a multiple of 8: OpenCV finishes each row with scalar code that adds in another order."""
    img = (np.random.default_rng(width).random((23, width, channels)) * 255).astype(np.float32)
    x = _t(img)
    refs = {
        "sobel3": (cv2.Sobel(img, cv2.CV_32F, 1, 0), cv2.Sobel(img, cv2.CV_32F, 0, 1)),
        "sobel5": (cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=5), cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=5)),
        "scharr": (cv2.Scharr(img, cv2.CV_32F, 1, 0), cv2.Scharr(img, cv2.CV_32F, 0, 1)),
    }
    ours = {"sobel3": f.sobel(x), "sobel5": f.sobel(x, ksize=5), "scharr": f.scharr(x)}
    for name, (rx, ry) in refs.items():
        gx, gy = ours[name]
        _exact(_np(gx), rx, f"{name} dx")
        _exact(_np(gy), ry, f"{name} dy")
    for ksize in (1, 3):
        ref = cv2.Laplacian(img, cv2.CV_32F, ksize=ksize)
        _exact(_np(f.laplacian(x, ksize)), ref, f"laplacian{ksize}")


def test_float32_tail_parity_in_the_blocked_path():
    """A batch big enough for the CPU block loop: each block must know its images' channels."""
    imgs = (np.random.default_rng(5).random((40, 100, 93, 3)) * 255).astype(np.float32)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()
    gx, gy = f.sobel(x)
    mag = f.gradient_magnitude(x)
    for i in (0, 17, 39):
        rx, ry = cv2.Sobel(imgs[i], cv2.CV_32F, 1, 0), cv2.Sobel(imgs[i], cv2.CV_32F, 0, 1)
        _exact(gx[i].permute(1, 2, 0).numpy(), rx, f"image {i} dx")
        _exact(gy[i].permute(1, 2, 0).numpy(), ry, f"image {i} dy")
        assert np.abs(mag[i].permute(1, 2, 0).numpy() - cv2.magnitude(rx, ry)).max() <= 1e-3


def test_laplacian_5_and_scaled_derivatives_close(rgb8):
    x = _t(rgb8)
    ref = cv2.Laplacian(rgb8, cv2.CV_32F, ksize=5)
    assert np.abs(_np(f.laplacian(x, 5)) - ref).max() <= 1e-3
    d2 = f.derivative(x, 2, 0, ksize=5, scale=0.5)
    assert np.abs(_np(d2) - cv2.Sobel(rgb8, cv2.CV_32F, 2, 0, ksize=5, scale=0.5)).max() <= 1e-3


def test_valid_border_is_the_interior(float_img):
    x = _t(float_img)
    gx, gy = f.sobel(x, "valid", 5)
    assert gx.shape[-2:] == (61 - 4, 96 - 4)
    full_x, full_y = f.sobel(x, "reflect101", 5)
    assert torch.equal(gx, full_x[..., 2:-2, 2:-2]) and torch.equal(gy, full_y[..., 2:-2, 2:-2])
    assert f.laplacian(x, 3, "valid").shape[-2:] == (59, 94)


@pytest.mark.parametrize("ksize", [1, 3, 5, 7])
def test_deriv_kernels_match_opencv(ksize):
    for order in range(0, min(3, max(ksize, 3))):
        if order >= (3 if ksize == 1 else ksize):
            continue
        kx, _ = cv2.getDerivKernels(order, 0 if order else 1, ksize)
        assert f.deriv_kernel1d(order, ksize) == tuple(kx.ravel().tolist())
    kx, ky = cv2.getDerivKernels(1, 0, cv2.FILTER_SCHARR)
    assert f.deriv_kernel1d(1, -1) == tuple(kx.ravel().tolist())
    assert f.deriv_kernel1d(0, -1) == tuple(ky.ravel().tolist())


def test_magnitude_and_orientation(rgb8):
    x = _t(rgb8)
    gx = cv2.Sobel(rgb8, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(rgb8, cv2.CV_32F, 0, 1)
    mag = f.gradient_magnitude(x)
    ref = cv2.magnitude(gx, gy)
    assert np.abs(_np(mag) - ref).max() <= 1e-5 * ref.max()
    l1 = f.gradient_magnitude(x, norm="l1")
    assert np.abs(_np(l1) - (np.abs(gx) + np.abs(gy))).max() <= 1e-3
    ang = f.orientation(*f.sobel(x), degrees=True)
    ref_ang = cv2.phase(gx, gy, angleInDegrees=True)  # cv2.phase is accurate to ~0.3 degrees
    diff = np.abs(_np(ang) - ref_ang)
    diff = np.minimum(diff, 360 - diff)
    assert diff[ref > 1].max() < 0.5
    assert float(ang.min()) >= 0 and float(ang.max()) < 360


def test_many_channels_and_batches_equal_per_image():
    x = torch.rand(3, 5, 23, 31)
    gx, gy = f.sobel(x, ksize=5)
    for b in range(3):
        bx, by = f.sobel(x[b : b + 1], ksize=5)  # batch items are independent, bit for bit
        assert torch.equal(gx[b], bx[0]) and torch.equal(gy[b], by[0])
        for c in range(5):  # channels too, up to OpenCV's W * C dependent rounding in the last columns
            sx, sy = f.sobel(x[b : b + 1, c : c + 1], ksize=5)
            torch.testing.assert_close(gx[b, c], sx[0, 0], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(gy[b, c], sy[0, 0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("border", ["reflect101", "replicate", "constant", "valid"])
def test_blocked_cpu_path_equals_whole_tensor(monkeypatch, border):
    x = torch.rand(2, 3, 21, 26)
    whole = [
        f.gradient_magnitude(x, "scharr", border=border),
        f.laplacian(x, 3, border),
        f.sobel(x, border, 7)[1],
        f.gaussian_blur(x, 1.2, border=border),
    ]
    for elems in (1200, 100):  # several images per block; row bands inside one image
        monkeypatch.setattr(blocks, "_BLOCK_ELEMS", elems)
        blocked = [
            f.gradient_magnitude(x, "scharr", border=border),
            f.laplacian(x, 3, border),
            f.sobel(x, border, 7)[1],
            f.gaussian_blur(x, 1.2, border=border),
        ]
        for a, b in zip(whole, blocked, strict=True):
            assert a.shape == b.shape
            assert torch.allclose(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtypes_keep_dtype_and_agree(dtype):
    x = torch.rand(2, 3, 32, 40)
    ref = f.gradient_magnitude(x)
    out = f.gradient_magnitude(x.to(dtype))
    assert out.dtype == dtype and out.shape == x.shape
    tol = {torch.float16: 1e-2, torch.bfloat16: 5e-2, torch.float64: 1e-5}[dtype]
    assert torch.allclose(out.float(), ref, atol=tol * 8, rtol=tol)
    lap = f.laplacian(x.to(dtype), 1)
    assert lap.dtype == dtype


def test_ramp_and_constant_images():
    ramp = torch.arange(10.0).expand(1, 1, 10, 10)
    gx, gy = f.sobel(ramp)
    assert torch.all(gx[..., 1:-1] == 8) and torch.all(gy == 0)
    assert torch.all(f.gradient_magnitude(torch.full((1, 2, 9, 9), 0.7)) == 0)
    assert torch.allclose(f.gaussian_blur(torch.full((1, 1, 9, 9), 0.3), 2.0), torch.full((1, 1, 9, 9), 0.3))


def test_bad_arguments_raise_the_project_errors():
    """Bad parameters are UsageError (exit 2), unusable tensors InputError (exit 1): never a bare ValueError."""
    x = torch.rand(1, 1, 8, 8)
    usage = [
        lambda: f.sobel(x, ksize=4),
        lambda: f.sobel(x, border="wrap"),
        lambda: f.laplacian(x, 2),
        lambda: f.gradient_magnitude(x, norm="l3"),
        lambda: f.gradient(x, "prewitt"),
        lambda: f.magnitude(x, x, "l3"),
        lambda: f.derivative(x, 0, 0),
        lambda: f.deriv_kernel1d(2, -1),
        lambda: f.separable_filter(x, [1.0, 1.0], [1.0]),
        lambda: f.gaussian_blur(x, 0.0),
        lambda: f.gaussian_kernel1d(1.0, 4),
        lambda: f.pad(x, 1, 1, 1, 1, "wrap"),
    ]
    for fn in usage:
        with pytest.raises(UsageError):
            fn()
    with pytest.raises(UsageError, match="unknown border 'wrap'"):
        f.sobel(x, border="wrap")
    for fn in (lambda: f.sobel(torch.rand(1, 1, 3, 3), "valid", 5), lambda: f.sobel(torch.rand(8, 8))):
        with pytest.raises(InputError):
            fn()


def test_gradcheck_float64():
    torch.manual_seed(0)
    x = torch.rand(1, 1, 5, 6, dtype=torch.float64, requires_grad=True)
    fns = [
        lambda t: f.sobel(t, ksize=1)[0],
        lambda t: f.sobel(t, ksize=3)[1],
        lambda t: f.sobel(t, "replicate", ksize=5)[0],
        lambda t: f.sobel(t, "constant", ksize=7)[1],
        lambda t: f.scharr(t)[0],
        lambda t: f.laplacian(t, 1),
        lambda t: f.laplacian(t, 3, "valid"),
        lambda t: f.gradient_magnitude(t, "sobel"),
        lambda t: f.gradient_magnitude(t, "scharr", norm="l1"),
        lambda t: f.orientation(*f.sobel(t)),
        lambda t: f.gaussian_blur(t, 1.0),
    ]
    for fn in fns:
        assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-5)
    k = torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, kk: f.separable_filter(t, kk, kk), (x, k), eps=1e-6, atol=1e-5)


def test_magnitude_gradient_finite_on_flat_image():
    x = torch.full((1, 1, 8, 8), 0.5, requires_grad=True)
    f.gradient_magnitude(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_fast_path_results_do_not_alias_across_calls() -> None:
    """The CPU fast path reuses scratch buffers between blocks: results must stay independent."""
    a, b = torch.rand(6, 3, 300, 300), torch.rand(6, 3, 300, 300)
    for norm in ("l2", "l1"):
        ma = f.gradient_magnitude(a, norm=norm)
        keep = ma.clone()
        mb = f.gradient_magnitude(b, norm=norm)
        assert torch.equal(ma, keep)
        assert not torch.equal(ma, mb)
        ref = f.magnitude(*f.sobel(a.double()), norm).float()
        assert torch.allclose(ma, ref, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_central_gradient_written_directly_equals_the_separable_filter(dtype: torch.dtype):
    """The replicate border's direct differences (fresh tensors or ``out`` views) = the separable filter's values bit
    for bit, sides of 1 and 2 pixels included; with a gradient the filter runs and gradients flow."""
    g = torch.Generator().manual_seed(3)
    for shape in [(2, 1, 37, 53), (1, 3, 1, 9), (1, 1, 7, 1), (1, 2, 2, 2), (1, 1, 1, 1)]:
        x = torch.rand(*shape, generator=g, dtype=dtype)
        want = (
            f.separable_filter(x, (-0.5, 0.0, 0.5), (1.0,), "replicate"),
            f.separable_filter(x, (1.0,), (-0.5, 0.0, 0.5), "replicate"),
        )
        for got in (f.central_gradient(x), None):
            if got is None:  # into views of a larger buffer, as the registration's stack does
                buf = torch.full((shape[0], 3 * shape[1], *shape[2:]), float("nan"), dtype=dtype)
                got = f.central_gradient(x, out=(buf[:, : shape[1]], buf[:, shape[1] : 2 * shape[1]]))
                assert bool(buf[:, 2 * shape[1] :].isnan().all())  # nothing written beyond the views
            for a, b in zip(got, want, strict=True):
                assert a.dtype == dtype and torch.equal(a, b), shape
    x = torch.rand(1, 1, 6, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: f.central_gradient(t)[0], (x,))


def test_even_passes_equal_the_full_passes_subsampled_where_no_opencv_tail_applies() -> None:
    """The even-only passes compute the kept values as the full passes do; opencv_tail_applies names the filters
    (float32, a kernel with a scalar-tail rule, W * C not a multiple of 8) where they would not, so callers avoid them.
    """
    assert opencv_tail_applies((1.0, 2.0, 1.0), (1.0, 2.0, 1.0), 12, 1, torch.float32)  # 12 % 8 = 4
    assert not opencv_tail_applies((1.0, 2.0, 1.0), (1.0, 2.0, 1.0), 12, 2, torch.float32)  # 24 % 8 = 0
    assert not opencv_tail_applies((1.0, 2.0, 1.0), (1.0, 2.0, 1.0), 12, 1, torch.float64)  # tails: float32 only
    assert not opencv_tail_applies((0.25, 0.5, 0.25), (0.25, 0.5, 0.25), 12, 1, torch.float32)  # no rule: same order
    for kx, ky in (((1.0, 2.0, 1.0), (-1.0, 0.0, 1.0)), ((0.0625, 0.25, 0.375, 0.25, 0.0625),) * 2):
        r = len(kx) // 2
        for h, w in ((5, 16), (8, 24), (9, 13)):
            q = torch.rand(2, 1, h + 2 * r, w + 2 * r)
            if opencv_tail_applies(kx, ky, w, 1, q.dtype):
                continue
            full = separable_passes(q, kx, ky)
            assert torch.equal(separable_passes_even(q, kx, ky), full[..., ::2, ::2])
