"""The OpenCV SIFT replica (``FeatureConfig(layout="opencv")``, ``--target opencv-sift``) against ``cv2.SIFT``.

Measured on this 200x160 crop of camera.png (bench/sift_replica.py gives the whole-image figures): 201 keypoints
each, every OpenCV keypoint repeated within 1 px and 1.5x scale and every replica keypoint likewise, every angle
within 5 degrees, median descriptor L2 0.0058 (OpenCV's rounding of its descriptors to integers), the nearest
replica descriptor at the same keypoint for all 201; the bounds leave room for float rounding only.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gdvision.errors import UsageError
from gdvision.features import FeatureConfig, detect_and_describe
from gdvision.features.opencv_layout import OPENCV_SHIFT

cv2 = pytest.importorskip("cv2")

REPLICA = FeatureConfig(layout="opencv", max_features=0)


def _crop8(natural_gray: np.ndarray) -> np.ndarray:
    return np.round(natural_gray[150:310, 200:400] * 255).astype(np.uint8)  # 200x160, 8-bit


def test_replica_repeats_opencv_keypoints_and_descriptors(natural_gray: np.ndarray) -> None:
    g8 = _crop8(natural_gray)
    kps, dcv = cv2.SIFT_create().detectAndCompute(g8, None)
    xy_c = np.array([k.pt for k in kps]) - OPENCV_SHIFT
    s_c = np.array([k.size / 2 for k in kps])
    a_c = np.radians([k.angle for k in kps])
    dcv = dcv / np.linalg.norm(dcv, axis=1, keepdims=True)
    with torch.no_grad():
        f = detect_and_describe(torch.from_numpy(g8 / 255.0).float()[None, None], REPLICA)
    xy_r, s_r, a_r, d_r = (t.double().numpy() for t in (f.xy, f.scale, f.angle, f.desc))
    assert len(kps) >= 40
    assert abs(len(f) - len(kps)) <= 2
    dist = np.linalg.norm(xy_c[:, None] - xy_r[None], axis=-1)
    ratio = np.maximum(s_c[:, None] / s_r[None], s_r[None] / s_c[:, None])
    near = (dist <= 1.0) & (ratio <= 1.5)
    assert near.any(1).mean() >= 0.99  # the goal: 90%
    assert near.any(0).mean() >= 0.99
    dang = np.abs((a_c[:, None] - a_r[None] + math.pi) % (2 * math.pi) - math.pi)
    best = np.where(near, dang, np.inf).argmin(1)
    rows = np.nonzero(near.any(1))[0]
    assert (dang[rows, best[rows]] <= math.radians(5)).mean() >= 0.99
    l2 = np.linalg.norm(dcv[rows] - d_r[best[rows]], axis=1)
    assert np.median(l2) <= 0.01
    nn = (dcv @ d_r.T).argmax(1)
    assert near[np.arange(len(kps)), nn].mean() >= 0.98


def test_replica_is_differentiable(natural_gray: np.ndarray) -> None:
    """Descriptors, angles, positions, scales and responses carry gradients to the pixels. Positions, scales and
    responses agree with a finite difference (float64, same keypoints). The angle and so the descriptor do not:
    OpenCV's nearest-bin orientation votes jump as pixels of weak gradient change bin, which a finite difference
    sees and the gradient (exact almost everywhere) does not."""
    img = torch.from_numpy(natural_gray[200:264, 250:330].astype(np.float64))[None, None]
    x = img.clone().requires_grad_(True)
    f = detect_and_describe(x, REPLICA)
    assert len(f) > 5
    w = torch.randn(f.desc.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    (gd,) = torch.autograd.grad((f.desc * w).sum() + f.angle.sum(), x, retain_graph=True)
    assert torch.isfinite(gd).all() and float(gd.abs().sum()) > 0

    def smooth(ff):
        return ff.xy.sum() + ff.scale.sum() + 100 * ff.response.sum()

    (g,) = torch.autograd.grad(smooth(f), x)
    d = torch.randn(img.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    h = 1e-6
    with torch.no_grad():
        fp, fm = detect_and_describe(img + h * d, REPLICA), detect_and_describe(img - h * d, REPLICA)
    assert len(fp) == len(fm) == len(f)
    fd = (smooth(fp) - smooth(fm)) / (2 * h)
    assert float(fd) == pytest.approx(float((g * d).sum()), rel=1e-5)


def test_layout_option() -> None:
    assert FeatureConfig().layout == "gdvision"  # the default pipeline is unchanged
    with pytest.raises(UsageError, match="layout"):
        FeatureConfig(layout="vlfeat").validate()
    with pytest.raises(UsageError, match="detector dog"):
        FeatureConfig(layout="opencv", detector="hessian").validate()
