"""Synthetic data with known ground truth shared by the tests.

- :func:`random_homography`: a random A -> B pixel homography from jittered image corners.
- :func:`render`: a ray-cast 3-view scene (tilted textured plane + 2 boxes) with known depth and cameras.
"""

from __future__ import annotations

import numpy as np


def random_homography(
    rng: np.random.Generator, w: int, h: int, amount: float = 0.15, shift_px: float | None = None
) -> np.ndarray:
    """A -> B homography (float64, 3x3) moving each corner of a w x h image by a uniform random offset.

    The offset is at most ``amount`` of the image size per axis, or ``shift_px`` pixels when given.
    """
    import cv2

    src = np.float32([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]])
    if shift_px is not None:
        jitter = rng.uniform(-shift_px, shift_px, (4, 2)).astype(np.float32)
    else:
        jitter = rng.uniform(-amount, amount, (4, 2)).astype(np.float32) * np.float32([w, h])
    return cv2.getPerspectiveTransform(src, src + jitter).astype(np.float64)


W, H, F = 128, 96, 110.0


K = np.array([[F, 0.0, (W - 1) / 2], [0.0, F, (H - 1) / 2], [0.0, 0.0, 1.0]])
BOXES = [((-1.2, -0.7, 3.0), (-0.4, 0.3, 3.6)), ((0.3, 0.0, 3.8), (1.1, 0.9, 4.4))]
PLANE_N = np.array([0.1, -0.15, 1.0]) / np.linalg.norm([0.1, -0.15, 1.0])
PLANE_C = float(PLANE_N @ np.array([0.0, 0.0, 5.0]))


def look_at(center: tuple[float, float, float], target: tuple[float, float, float] = (0.0, 0.0, 4.0)) -> np.ndarray:
    """world_to_cam of a camera at ``center`` looking at ``target`` (x right, y down, z forward)."""
    c = np.asarray(center, float)
    z = np.asarray(target, float) - c
    z /= np.linalg.norm(z)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, z])
    T[:3, 3] = -T[:3, :3] @ c
    return T


CAMS = {"ref.png": np.eye(4), "right.png": look_at((0.4, 0.0, 0.0)), "left.png": look_at((-0.35, 0.1, 0.0))}


def _texture(pts: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(7)
    out = np.zeros(pts.shape[:-1] + (3,))
    for ch in range(3):
        acc = np.zeros(pts.shape[:-1])
        for _ in range(14):
            d = rng.normal(size=3)
            d /= np.linalg.norm(d)
            acc += np.sin(pts @ d * rng.uniform(4, 30) + rng.uniform(0, 6.3)) * rng.uniform(0.3, 1.0)
        out[..., ch] = acc
    return 0.5 + 0.4 * np.tanh(out / 3.0)


def _cast(world_to_cam: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hit points (..., 3) and reference-frame depth (...) of the rays through pixel positions (xs, ys)."""
    R, t = world_to_cam[:3, :3], world_to_cam[:3, 3]
    c = -R.T @ t
    rays_cam = np.stack([xs, ys, np.ones_like(xs)], -1) @ np.linalg.inv(K).T  # z = 1
    dirs = rays_cam @ R  # world directions R^T d
    tbest = (PLANE_C - PLANE_N @ c) / (dirs @ PLANE_N)
    for lo, hi in BOXES:
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = (np.array(lo) - c) / dirs
            t2 = (np.array(hi) - c) / dirs
        tn = np.nanmax(np.minimum(t1, t2), -1)
        tf = np.nanmin(np.maximum(t1, t2), -1)
        hit = (tn <= tf) & (tn > 0)
        tbest = np.where(hit & (tn < tbest), tn, tbest)
    return c + dirs * tbest[..., None], tbest


def render(world_to_cam: np.ndarray, ss: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast the scene (tilted textured plane + 2 boxes): image (H, W, 3) in [0, 1] and depth (H, W).

    The image averages ss x ss rays per pixel (anti-aliasing); the depth is that of the pixel-centre ray.
    """
    fy = (np.arange(H * ss) + 0.5) / ss - 0.5
    fx = (np.arange(W * ss) + 0.5) / ss - 0.5
    ys, xs = np.meshgrid(fy, fx, indexing="ij")
    pts, _ = _cast(world_to_cam, xs, ys)
    img = _texture(pts).reshape(H, ss, W, ss, 3).mean((1, 3))
    ys, xs = np.meshgrid(np.arange(H, dtype=float), np.arange(W, dtype=float), indexing="ij")
    _, depth = _cast(world_to_cam, xs, ys)
    return img.astype(np.float32), depth.astype(np.float32)
