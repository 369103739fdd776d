"""Canny edge detector on (B, C, H, W) tensors, batched, with OpenCV's decisions.

Pipeline (Canny 1986, as implemented by ``cv2.Canny``):

1. optional Gaussian smoothing (``sigma``; OpenCV's Canny has none, so the default is off);
2. Sobel gradients (``ksize`` 3, 5 or 7, replicate border as ``cv2.Canny``), on intensities scaled to
   [0, 255] (``value_range``), so that thresholds are in OpenCV's units;
3. for C > 1, each pixel keeps the channel with the largest magnitude (OpenCV's rule for colour images);
4. magnitude ``|dx| + |dy|`` (``l2=False``, OpenCV's default) or ``sqrt(dx^2 + dy^2)``;
5. non-maximum suppression along the gradient direction quantised to 0/45/90/135 degrees with OpenCV's
   fixed-point tan(22.5°) test and its tie rules;
6. double threshold and hysteresis: pixels with magnitude > ``high`` are seeds, pixels > ``low`` that are
   8-connected to a seed through such pixels are kept.

Steps 1-4 are differentiable (see :func:`gdvision.filters.separable.gradient_magnitude`); 5-6 are not.
On the CPU the hysteresis uses ``scipy.ndimage.label`` on the whole batch at once; elsewhere it propagates
seeds by repeated 3x3 max-pooling until nothing changes.

A tensor that is not (B, C, H, W) raises :class:`~gdvision.errors.InputError`; an aperture other than 3, 5, 7 or
a non-finite threshold raises :class:`~gdvision.errors.UsageError`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from gdvision._checks import check_number
from gdvision.errors import UsageError
from gdvision.filters.blocks import check_batch
from gdvision.filters.config import KSIZES
from gdvision.filters.separable import gaussian_blur, gradient

# OpenCV's tan(22.5 deg) in 15-bit fixed point.
_SHIFT = 15
_TG22 = int(0.4142135623730950488016887242097 * (1 << _SHIFT) + 0.5)


def canny_candidates(
    x: torch.Tensor,
    low: float,
    high: float,
    ksize: int = 3,
    l2: bool = False,
    sigma: float | None = None,
    value_range: float = 255.0,
    quantize: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weak and strong edge candidates after non-maximum suppression, each (B, 1, H, W) bool.

    ``weak``: NMS maxima with magnitude > ``low``; ``strong``: those with magnitude > ``high``. Arguments as
    in :func:`canny`.

    Example:
        >>> weak, strong = canny_candidates(torch.rand(1, 1, 32, 32), 50, 150)
        >>> bool((strong & ~weak).any())
        False
    """
    check_batch(x)
    if ksize not in KSIZES["canny"]:
        raise UsageError(f"Canny aperture must be 3, 5 or 7, got {ksize}")
    check_number(float(low), "low")
    check_number(float(high), "high")
    if low > high:
        low, high = high, low
    v = x.double() * value_range
    if quantize:
        v = torch.round(v)
    if sigma is not None and sigma > 0:
        v = gaussian_blur(v, sigma, border="replicate")
    gx, gy = gradient(v, "sobel", ksize, "replicate")
    mag = gx * gx + gy * gy if l2 else gx.abs() + gy.abs()
    if x.shape[1] > 1:  # colour: per pixel, the channel with the largest magnitude; on ties the LAST one,
        c = x.shape[1]  # which is OpenCV's first for the same image in BGR order (what cv2.imread gives)
        idx = (c - 1) - mag.flip(1).argmax(dim=1, keepdim=True)
        mag, gx, gy = mag.gather(1, idx), gx.gather(1, idx), gy.gather(1, idx)
    if l2:  # OpenCV compares squared magnitudes with squared thresholds, both integers
        lo_t = float(np.floor(min(low, 32767.0) ** 2)) if low > 0 else float(np.floor(low))
        hi_t = float(np.floor(min(high, 32767.0) ** 2)) if high > 0 else float(np.floor(high))
    else:
        lo_t, hi_t = float(np.floor(low)), float(np.floor(high))
    maxima = _nms(mag, gx, gy)
    weak = maxima & (mag > lo_t)
    strong = weak & (mag > hi_t)
    return weak, strong


def _nms(mag: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """OpenCV's non-maximum suppression on (B, 1, H, W); neighbours outside the image count as 0."""
    h, w = mag.shape[-2:]
    p = F.pad(mag, (1, 1, 1, 1))

    def nb(dy: int, dx: int) -> torch.Tensor:
        return p[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    ax = gx.abs()
    ay = gy.abs() * float(1 << _SHIFT)
    tg22 = ax * float(_TG22)
    tg67 = tg22 + ax * float(1 << (_SHIFT + 1))
    horizontal = ay < tg22
    vertical = ay > tg67
    same_sign = ~((gx < 0) ^ (gy < 0))  # OpenCV: s = (xs ^ ys) < 0 ? -1 : 1 (zero counts as positive)
    # Diagonal: compare with (row-1, col-s) and (row+1, col+s).
    diag_pos = (mag > nb(-1, -1)) & (mag > nb(1, 1))
    diag_neg = (mag > nb(-1, 1)) & (mag > nb(1, -1))
    keep_h = (mag > nb(0, -1)) & (mag >= nb(0, 1))
    keep_v = (mag > nb(-1, 0)) & (mag >= nb(1, 0))
    keep_d = torch.where(same_sign, diag_pos, diag_neg)
    return torch.where(horizontal, keep_h, torch.where(vertical, keep_v, keep_d))


def hysteresis(weak: torch.Tensor, strong: torch.Tensor) -> torch.Tensor:
    """Keep the ``weak`` pixels 8-connected (through weak pixels) to a ``strong`` one; (B, 1, H, W) bool.

    Example:
        >>> weak = torch.tensor([[[[1, 1, 0, 1]]]], dtype=torch.bool)
        >>> strong = torch.tensor([[[[1, 0, 0, 0]]]], dtype=torch.bool)
        >>> hysteresis(weak, strong).int().tolist()
        [[[[1, 1, 0, 0]]]]
    """
    if weak.device.type == "cpu":
        from scipy import ndimage

        wk = weak.numpy()
        structure = np.zeros((3, 3, 3, 3), dtype=bool)
        structure[1, 1] = True  # 8-connectivity inside each image, never across images or channels
        labels, n = ndimage.label(wk, structure=structure)
        if n == 0:
            return torch.zeros_like(weak)
        seeded = np.zeros(n + 1, dtype=bool)
        seeded[np.unique(labels[strong.numpy() & wk])] = True
        seeded[0] = False
        return torch.from_numpy(seeded[labels])
    edges = strong & weak
    wf = weak.float()
    while True:
        grown = (F.max_pool2d(edges.float(), 3, stride=1, padding=1) * wf) > 0
        if torch.equal(grown, edges):
            return edges
        edges = grown


def canny(
    x: torch.Tensor,
    low: float,
    high: float,
    ksize: int = 3,
    l2: bool = False,
    sigma: float | None = None,
    value_range: float = 255.0,
    quantize: bool = True,
) -> torch.Tensor:
    """Canny edges of a (B, C, H, W) image batch in [0, 1] -> (B, 1, H, W) float {0, 1}.

    Args:
        x: images in [0, 1]; multiplied by ``value_range`` (255) so that thresholds are in the units of
            ``cv2.Canny`` on 8-bit images.
        low, high: hysteresis thresholds on the gradient magnitude (swapped if ``low > high``).
        ksize: Sobel aperture 3, 5 or 7.
        l2: use ``sqrt(dx^2 + dy^2)`` instead of ``|dx| + |dy|`` (``L2gradient``).
        sigma: Gaussian pre-smoothing in pixels (None: none, like OpenCV).
        quantize: round ``x * value_range`` to integers first, i.e. look at the image as 8-bit data, as
            ``cv2.Canny`` does; with it, 8-bit inputs give OpenCV's edge map.

    Example:
        >>> img = torch.zeros(1, 1, 32, 32)
        >>> img[..., 8:24, 8:24] = 1.0
        >>> edges = canny(img, 50, 150)
        >>> int(edges.sum()) > 0
        True
    """
    with torch.no_grad():
        weak, strong = canny_candidates(x, low, high, ksize, l2, sigma, value_range, quantize)
        return hysteresis(weak, strong).to(x.dtype if x.is_floating_point() else torch.float32)


__all__ = ["canny", "canny_candidates", "hysteresis"]
