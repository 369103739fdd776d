"""Synthetic image pairs with a known homography, shared by the benchmarks (``register``, ``match``).

Each pair is cut from one source photo: ``A`` is a random crop (with a random zoom so that any photo covers
the requested size), ``B`` is the same photo seen through ``H @ T_A``, so ``B(H x) = A(x)`` exactly, apart
from interpolation and the photometric change. Content that ``B`` sees outside the source photo comes from a
mirrored (reflect-101) extension of the source, which is the same for both views, so the ground truth stays exact.

Conventions: pixel coordinates with (0, 0) at the centre of the top-left pixel; ``H`` maps A to B
(``[xB, yB, 1]^T ~ H [xA, yA, 1]^T``), so ``cv2.warpPerspective(A, H, (W, H))`` approximates ``B``.

Example:
    >>> import numpy as np
    >>> imgs = [np.random.default_rng(0).random((300, 400, 1), dtype=np.float32)]
    >>> p = make_pairs(imgs, 2, size=(160, 120), seed=1)
    >>> p[0]["a"].shape, p[0]["b"].shape, p[0]["H"].shape
    ((120, 160, 1), (120, 160, 1), (3, 3))
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
NATURAL_FILES = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "gravel.png", "rocket.jpg")


def load_natural(folder: Path | None = None) -> list[np.ndarray]:
    """The natural photos as float32 (H, W, C) arrays in [0, 1] (from ../shared/data/natural, else sample_data)."""
    import imageio.v3 as iio

    folder = folder or (SHARED / "natural" if (SHARED / "natural").is_dir() else ROOT / "sample_data" / "natural")
    out = []
    for name in NATURAL_FILES:
        arr = iio.imread(folder / name)
        arr = arr.astype(np.float32) / 255.0
        if arr.ndim == 2:
            arr = arr[..., None]
        out.append(arr[..., :3])
    return out


def _random_homography(
    rng: np.random.Generator, w: int, h: int, max_corner_shift: float, max_rotation_deg: float, scale_range
) -> np.ndarray:
    """A -> B pixel homography: corner jitter, then rotation and scale about the image centre."""
    src = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float64)
    shift = rng.uniform(-max_corner_shift, max_corner_shift, size=(4, 2)) * np.array([w, h])
    P = cv2.getPerspectiveTransform(src.astype(np.float32), (src + shift).astype(np.float32)).astype(np.float64)
    ang = math.radians(rng.uniform(-max_rotation_deg, max_rotation_deg))
    lo, hi = scale_range
    s = math.exp(rng.uniform(math.log(lo), math.log(hi))) if hi > lo else float(lo)
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    c, si = math.cos(ang) * s, math.sin(ang) * s
    R = np.array([[c, -si, cx - c * cx + si * cy], [si, c, cy - si * cx - c * cy], [0, 0, 1]])
    H = R @ P
    return H / H[2, 2]


def make_pairs(
    images: list[np.ndarray],
    n: int,
    size: tuple[int, int] = (640, 480),
    max_corner_shift: float = 0.125,
    max_rotation_deg: float = 0.0,
    scale_range: tuple[float, float] = (1.0, 1.0),
    photometric: bool = True,
    seed: int = 0,
) -> list[dict]:
    """``n`` pairs (a, b, H) of size ``size=(W, H)`` drawn from ``images`` (float32 HxWxC in [0, 1]).

    Args:
        images: source photos, float32 (H, W, C) in [0, 1]; pairs cycle through them.
        n: number of pairs.
        size: (width, height) of both images of a pair.
        max_corner_shift: each corner of A moves by up to this fraction of (W, H) (uniform per coordinate).
        max_rotation_deg: an extra in-plane rotation about the centre, uniform in +-this many degrees.
        scale_range: an extra scale about the centre, log-uniform in this range.
        photometric: B gets gain U(0.8, 1.2) and bias U(-0.05, 0.05); both get Gaussian noise sigma 0.01; clipped.
        seed: fixed seed: the same arguments give the same pairs.

    Returns:
        list of dicts ``a`` (H, W, C) float32, ``b`` (H, W, C) float32, ``H`` (3, 3) float64 A -> B in pixels,
        plus ``source`` (index into ``images``).
    """
    rng = np.random.default_rng(seed)
    W, Hh = size
    out = []
    for i in range(n):
        k = i % len(images)
        src = np.ascontiguousarray(images[k].astype(np.float32))
        hs, ws = src.shape[:2]
        # T_A: source -> A. Zoom so the source covers A with some room to move, then a random offset.
        zoom = max(W / ws, Hh / hs) * rng.uniform(1.0, 1.25)
        zoom = max(zoom, rng.uniform(0.8, 1.0)) if zoom < 1.0 else zoom
        ox = rng.uniform(0.0, max(ws * zoom - W, 0.0))
        oy = rng.uniform(0.0, max(hs * zoom - Hh, 0.0))
        T = np.array([[zoom, 0, -ox], [0, zoom, -oy], [0, 0, 1]], dtype=np.float64)
        H = _random_homography(rng, W, Hh, max_corner_shift, max_rotation_deg, scale_range)
        flags = cv2.INTER_LINEAR
        border = cv2.BORDER_REFLECT_101
        a = cv2.warpPerspective(src, T, (W, Hh), flags=flags, borderMode=border)
        b = cv2.warpPerspective(src, H @ T, (W, Hh), flags=flags, borderMode=border)
        if a.ndim == 2:
            a, b = a[..., None], b[..., None]
        if photometric:
            gain = rng.uniform(0.8, 1.2)
            bias = rng.uniform(-0.05, 0.05)
            b = b * gain + bias
            a = a + rng.normal(0.0, 0.01, a.shape)
            b = b + rng.normal(0.0, 0.01, b.shape)
        a = np.clip(a, 0.0, 1.0).astype(np.float32)
        b = np.clip(b, 0.0, 1.0).astype(np.float32)
        out.append({"a": a, "b": b, "H": H, "source": k})
    return out


def itk_brain_pairs(folder: Path | None = None) -> list[dict]:
    """The ITK brain slices with their GT (fixed -> moving pixel homographies), mono-modal pairs only.

    Returns dicts like :func:`make_pairs` (``a`` = fixed, ``b`` = moving, ``H`` fixed -> moving) plus ``name``.
    """
    import json

    import imageio.v3 as iio

    folder = folder or (SHARED / "itk_brain" if (SHARED / "itk_brain").is_dir() else ROOT / "sample_data" / "itk_brain")
    meta = json.loads((folder / "transforms.json").read_text())
    fixed = iio.imread(folder / "BrainProtonDensitySliceBorder20.png").astype(np.float32) / 255.0
    out = []
    entries = meta.get("pairs", meta) if isinstance(meta, dict) else meta
    items = entries.items() if isinstance(entries, dict) else [(e.get("moving"), e) for e in entries]
    for name, e in items:
        if not isinstance(e, dict) or "H_fixed_to_moving" not in e:
            continue
        mov_name = e.get("moving", name)
        if "T1" in str(mov_name):
            continue
        mov = iio.imread(folder / mov_name).astype(np.float32) / 255.0
        out.append(
            {
                "a": fixed[..., None],
                "b": mov[..., None],
                "H": np.asarray(e["H_fixed_to_moving"], float),
                "name": mov_name,
            }
        )
    return out
