"""Synthetic data with known ground truth shared by the tests.

- :func:`random_homography`: a random A -> B pixel homography from jittered image corners.
- :func:`render`: a ray-cast 3-view scene (tilted textured plane + 2 boxes) with known depth and cameras.
- :func:`render_converging`: a ray-cast converging, non-rectified pair (close tilted target with a striped
  patch, in front of a box and a background plane) with known depth; :data:`CONV_CAMS` its cameras.
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


# ---- a converging, non-rectified pair (issue 16): a close, strongly textured, tilted planar target with a
# striped (periodic) patch, in front of a box and a tilted background plane. The source sits right of and above
# the reference (baseline with a y component), has other intrinsics and looks at the target (toe-in of about
# 21 degrees about y and 11 about x), so epipolar lines are not image rows and parallax is large.

CONV_W, CONV_H = 160, 120
TARGET_C = np.array([0.0, 0.01, 0.55])  # target centre (the reference camera frame is the world frame)
TARGET_N = np.array([0.5, -0.2, -1.0]) / np.linalg.norm([0.5, -0.2, -1.0])
TARGET_HALF = (0.17, 0.12)  # half extents along the target's own u, v axes (metres)
STRIPES = (0.01, 0.14, 0.03, 0.018)  # striped patch: u from, u to, |v| up to; stripe period (metres)
BACK_N = np.array([-0.1, 0.05, 1.0]) / np.linalg.norm([-0.1, 0.05, 1.0])
BACK_C = float(BACK_N @ np.array([0.0, 0.0, 2.5]))
CONV_BOX = ((-0.95, -0.6, 2.1), (-0.45, 0.1, 2.5))
CONV_CAMS = {
    "ref": (np.array([[150.0, 0.0, 79.5], [0.0, 150.0, 59.5], [0.0, 0.0, 1.0]]), np.eye(4)),
    "src": (
        np.array([[110.0, 0.0, 84.0], [0.0, 108.0, 56.0], [0.0, 0.0, 1.0]]),
        look_at((0.2, -0.1, 0.03), tuple(TARGET_C)),
    ),
}


def _cast_converging(
    world_to_cam: np.ndarray, K: np.ndarray, xs: np.ndarray, ys: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colour (..., 3), depth (...) and surface id (0 target, 1 stripes, 2 background, 3 box) of pixel rays."""
    R, t = world_to_cam[:3, :3], world_to_cam[:3, 3]
    c = -R.T @ t
    dirs = np.stack([xs, ys, np.ones_like(xs)], -1) @ np.linalg.inv(K).T @ R  # z = 1 in the camera: t = depth
    with np.errstate(divide="ignore", invalid="ignore"):
        t_back = (BACK_C - BACK_N @ c) / (dirs @ BACK_N)
        t_tgt = (TARGET_N @ (TARGET_C - c)) / (dirs @ TARGET_N)
        t1, t2 = (np.array(CONV_BOX[0]) - c) / dirs, (np.array(CONV_BOX[1]) - c) / dirs
    t_in, t_out = np.nanmax(np.minimum(t1, t2), -1), np.nanmin(np.maximum(t1, t2), -1)
    u_ax = np.cross([0.0, 1.0, 0.0], TARGET_N)
    u_ax /= np.linalg.norm(u_ax)
    rel = c + dirs * t_tgt[..., None] - TARGET_C
    u, v = rel @ u_ax, rel @ np.cross(TARGET_N, u_ax)
    on_target = (t_tgt > 0) & (np.abs(u) <= TARGET_HALF[0]) & (np.abs(v) <= TARGET_HALF[1])
    on_box = (t_in <= t_out) & (t_in > 0) & (t_in < t_back)
    depth = np.where(on_target, t_tgt, np.where(on_box, t_in, t_back))
    sid = np.where(on_target, 0, np.where(on_box, 3, 2))
    sid = np.where(on_target & (u >= STRIPES[0]) & (u <= STRIPES[1]) & (np.abs(v) <= STRIPES[2]), 1, sid)
    pts = c + dirs * depth[..., None]
    rng = np.random.default_rng(11)  # the target's fine texture: periods of about 2-6 pixels
    fine = np.zeros(pts.shape[:-1] + (3,))
    for ch in range(3):
        for _ in range(14):
            d = rng.normal(size=3)
            fine[..., ch] += np.sin(pts @ (d / np.linalg.norm(d)) * rng.uniform(150, 450) + rng.uniform(0, 6.3))
    col = np.where((sid == 0)[..., None], 0.5 + 0.4 * np.tanh(fine / 3.0), _texture(pts))
    wave = 0.5 + 0.45 * np.tanh(3.0 * np.sin(2 * np.pi * u / STRIPES[3]))
    col = np.where((sid == 1)[..., None], np.stack([wave, 0.8 * wave + 0.1, 0.6 * wave + 0.2], -1), col)
    return col, depth, sid


def render_converging(name: str, ss: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image (H, W, 3) in [0, 1], depth (H, W) and surface id (H, W; 0 target, 1 its striped patch,
    2 background, 3 box) of the converging scene seen by camera ``name`` ("ref" or "src" of :data:`CONV_CAMS`).

    The image averages ss x ss rays per pixel; depth and id are those of the pixel-centre ray.
    """
    K, T = CONV_CAMS[name]
    f = (np.arange(CONV_H * ss) + 0.5) / ss - 0.5, (np.arange(CONV_W * ss) + 0.5) / ss - 0.5
    ys, xs = np.meshgrid(*f, indexing="ij")
    img = _cast_converging(T, K, xs, ys)[0].reshape(CONV_H, ss, CONV_W, ss, 3).mean((1, 3))
    ys, xs = np.meshgrid(np.arange(CONV_H, dtype=float), np.arange(CONV_W, dtype=float), indexing="ij")
    _, depth, sid = _cast_converging(T, K, xs, ys)
    return img.astype(np.float32), depth.astype(np.float32), sid
