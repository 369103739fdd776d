"""The 3x3 Sobel gradient magnitude of one (H, W, C) float32 image in NumPy, without torch.

:func:`sobel_magnitude_np` computes what :func:`gdvision.filters.gradient_magnitude` computes for ``op='sobel'``,
``ksize=3``, ``border='reflect101'`` with the same float32 operations in the same order for the derivatives: the
row passes ``[-1, 0, 1]`` and ``[1, 2, 1]``, the column passes and OpenCV's scalar tail (the last ``(W * C) % 8``
values of each interleaved row, see :mod:`gdvision.filters.passes`), so dx and dy, and the L1 norm, are equal bit
for bit. The L2 norm is ``sqrt(dx * dx + dy * dy)`` with IEEE (correctly rounded) operations; torch on the CPU
fuses the sum into one multiply-add and takes its float32 square root through MKL, which on some CPUs is not
correctly rounded, so the two L2 maps differ by at most 1 unit in the last place (measured on 200 photos: 20% of
the values; 0.005% of the 8-bit PNG values, by one level, each within one unit in the last place of a rounding tie).

Why it exists: ``gdvision edges`` over a folder on the CPU needs no torch with it, and importing torch costs about
1 s of a run's wall time (1.3 CPU s) - more than computing the edges of 300 files. The image layout is the one
decoders give, (H, W, C), so OpenCV's interleaved rows are plain rows here.

Example:
    >>> ramp = np.tile(np.arange(6, dtype=np.float32), (4, 1))[:, :, None]
    >>> sobel_magnitude_np(ramp)[1, :, 0].tolist()
    [0.0, 8.0, 8.0, 8.0, 8.0, 0.0]
"""

from __future__ import annotations

import numpy as np

_SIMD_LANES = 8  # OpenCV's float32 filters: 8-lane AVX2 steps over a row of W * C values, then a scalar tail
_BAND_ELEMS = 1 << 18  # padded values per row band (1 MiB): its temporaries stay in cache, memory stays bounded

# The 3x3 Sobel magnitude of a unit step edge: what gdvision.filters.edges.unit_step_response gives for it (the
# scale of PNG output), restated here so that the NumPy route needs no torch (a test checks they agree).
SOBEL3_STEP_RESPONSE = 4.0


def _reflect101(i: np.ndarray, n: int) -> np.ndarray:
    """Indices ``i`` in [-1, n] mapped into [0, n) by OpenCV's reflect-101 rule (index 0 when ``n`` is 1)."""
    if n == 1:
        return np.zeros_like(i)
    i = np.abs(i)
    return np.where(i >= n, 2 * (n - 1) - i, i)


def _padded_band(x: np.ndarray, r0: int, r1: int) -> np.ndarray:
    """Rows [r0 - 1, r1 + 1) of ``x`` (H, W, C), reflect-101 at the image's top and bottom, with one reflected
    column on each side: (r1 - r0 + 2, W + 2, C), a new array."""
    h, w, c = x.shape
    p = np.empty((r1 - r0 + 2, w + 2, c), np.float32)
    if r0 >= 1 and r1 + 1 <= h:
        p[:, 1:-1] = x[r0 - 1 : r1 + 1]
    else:
        p[:, 1:-1] = x[_reflect101(np.arange(r0 - 1, r1 + 1), h)]
    left, right = (2, w - 1) if w > 1 else (1, 1)  # columns -1 and w of x: 1 and w - 2 (the pixel itself if w = 1)
    p[:, 0] = p[:, left]
    p[:, -1] = p[:, right]
    return p


def _smooth121(a: np.ndarray, m: np.ndarray, b: np.ndarray, tail: int, pairs: bool) -> np.ndarray:
    """``(a + b) + 2m`` for shifted (R, W, C) views, and OpenCV's tail order ``(a + 2m) + b`` on the last ``tail``
    values of each row of W * C (all of them, or for ``pairs`` all but an odd last one)."""
    out = np.add(a, b)
    out += 2.0 * m  # 2m is exact: one rounding, as torch's add(alpha=2)
    k = tail - (tail % 2 if pairs else 0)
    if k:
        rows = out.shape[0]
        n = out.shape[1] * out.shape[2]
        sl = slice(n - tail, n - tail + k)

        def flat(v: np.ndarray) -> np.ndarray:  # a view: each row's W * C values are contiguous in the band
            return v.reshape(rows, n)[:, sl]

        out.reshape(rows, n)[:, sl] = (flat(a) + 2.0 * flat(m)) + flat(b)
    return out


def sobel_magnitude_np(x: np.ndarray, norm: str = "l2") -> np.ndarray:
    """3x3 Sobel magnitude ``sqrt(dx^2 + dy^2)`` (``norm='l2'``) or ``|dx| + |dy|`` (``'l1'``) of an image.

    Args:
        x: (H, W, C) float32 image (any range; the edges command passes [0, 1]), H, W >= 1.
        norm: ``'l2'`` or ``'l1'``.

    Returns:
        (H, W, C) float32 (unnormalised: a unit ramp gives 8): for ``'l1'`` equal bit for bit to
        ``gradient_magnitude(t, 'sobel', 3, 'reflect101', norm)`` of ``t = torch.from_numpy(x).permute(2, 0, 1)[None]``
        on the CPU, for ``'l2'`` the IEEE magnitude of its dx and dy (within one unit in the last place of it, see
        above). The image is computed in row bands of about 1 MiB, so memory beyond the output stays bounded.

    Shape:
        - Input: (H, W, C)
        - Output: (H, W, C)

    Example:
        >>> step = np.zeros((5, 6, 1), np.float32)
        >>> step[:, 3:] = 1.0
        >>> sobel_magnitude_np(step)[2, :, 0].tolist()
        [0.0, 0.0, 4.0, 4.0, 0.0, 0.0]
    """
    if x.dtype != np.float32 or x.ndim != 3:
        raise ValueError(f"expected an (H, W, C) float32 image, got {x.dtype} {x.shape}")
    if norm not in ("l1", "l2"):
        raise ValueError(f"unknown norm '{norm}': use l1 or l2")
    h, w, c = x.shape
    tail = (w * c) % _SIMD_LANES
    out = np.empty_like(x)
    rows = max(1, _BAND_ELEMS // ((w + 2) * c))
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        p = _padded_band(x, r0, r1)
        left, mid, right = p[:, :-2], p[:, 1:-1], p[:, 2:]
        rd = np.subtract(right, left)  # row pass [-1, 0, 1]
        rs = _smooth121(left, mid, right, tail, pairs=True)  # row pass [1, 2, 1]
        gx = _smooth121(rd[:-2], rd[1:-1], rd[2:], tail, pairs=False)  # column pass [1, 2, 1]
        gy = np.subtract(rs[2:], rs[:-2])  # column pass [-1, 0, 1]
        if norm == "l1":
            np.add(np.abs(gx, out=gx), np.abs(gy, out=gy), out=out[r0:r1])
            continue
        gx *= gx
        gy *= gy
        gx += gy
        np.sqrt(gx, out=out[r0:r1])
    return out


__all__ = ["SOBEL3_STEP_RESPONSE", "sobel_magnitude_np"]
