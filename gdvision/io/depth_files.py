"""Writing depth results: PFM, 16-bit PNG, colourised preview with a legend, coloured PLY point cloud.

Every writer is atomic (:func:`gdvision.io.images.atomic_write_bytes`). Depth maps are (H, W) float arrays in the
cameras' length unit with NaN = unknown.

- PFM (``Pf``, one channel, little-endian, rows stored bottom-to-top as the format requires); NaN is kept.
- 16-bit PNG: ``value = round(depth * scale)``, 0 = unknown; ``depth = value / scale``.
- Preview: a turbo-like colour ramp on inverse depth (near = red, far = blue, unknown = black) with a
  colour bar underneath labelled with the depth at its two ends and its middle.
- PLY (binary little-endian): ``x y z`` float32 and ``red green blue`` uchar per known pixel.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from gdvision.errors import InputError
from gdvision.io.images import atomic_write_bytes, encode_png

# Anchor colours of a turbo-like ramp (dark blue -> blue -> cyan -> green -> yellow -> orange -> dark red).
_RAMP = np.array(
    [
        [0.19, 0.07, 0.23],
        [0.27, 0.45, 0.93],
        [0.10, 0.80, 0.86],
        [0.40, 0.98, 0.38],
        [0.88, 0.87, 0.20],
        [0.98, 0.47, 0.09],
        [0.48, 0.02, 0.01],
    ]
)

# 3x5 bitmap glyphs for the legend labels.
_GLYPHS = {
    "0": "111101101101111",
    "1": "010110010010111",
    "2": "111001111100111",
    "3": "111001111001111",
    "4": "101101111001001",
    "5": "111100111001111",
    "6": "111100111101111",
    "7": "111001010010010",
    "8": "111101111101111",
    "9": "111101111001111",
    ".": "000000000000010",
    "-": "000000111000000",
    "e": "000111101110011",
    "+": "000010111010000",
    " ": "000000000000000",
}


def write_pfm(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Atomically write a (H, W) float map as a one-channel little-endian PFM (NaN preserved).

    Example:
        >>> write_pfm("/tmp/d.pfm", np.ones((2, 3), np.float32))  # doctest: +SKIP
    """
    a = np.asarray(image, dtype="<f4")
    if a.ndim != 2:
        raise ValueError(f"PFM writer expects (H, W), got {a.shape}")
    header = f"Pf\n{a.shape[1]} {a.shape[0]}\n-1.0\n".encode()
    return atomic_write_bytes(path, header + np.ascontiguousarray(a[::-1]).tobytes())


def read_pfm(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a PFM file (``Pf`` or ``PF``; the first channel of a colour one) as a (H, W) float32 array."""
    p = Path(path)
    data = p.read_bytes()
    try:
        parts = data.split(b"\n", 3)
        kind = parts[0].strip()
        w, h = (int(v) for v in parts[1].split())
        scale = float(parts[2])
        body = parts[3]
    except (ValueError, IndexError):
        raise InputError(f"'{p}' is not a valid PFM file") from None
    if kind not in (b"Pf", b"PF"):
        raise InputError(f"'{p}' is not a PFM file (header {kind[:8]!r})")
    c = 3 if kind == b"PF" else 1
    dtype = "<f4" if scale < 0 else ">f4"
    if len(body) < w * h * c * 4:
        raise InputError(f"'{p}': truncated PFM data")
    arr = np.frombuffer(body[: w * h * c * 4], dtype=dtype).reshape(h, w, c)[::-1, :, 0]
    return np.ascontiguousarray(arr.astype(np.float32))


def depth_png16_scale(depth: np.ndarray) -> float:
    """Scale (units per depth unit) that maps the largest finite depth to about 65000 in a 16-bit PNG."""
    finite = depth[np.isfinite(depth) & (depth > 0)]
    if finite.size == 0:
        return 1.0
    return float(65000.0 / finite.max())


def write_depth_png16(path: str | os.PathLike[str], depth: np.ndarray, scale: float) -> Path:
    """Atomically write ``round(depth * scale)`` as a 16-bit gray PNG, 0 = unknown (depth = value / scale)."""
    d = np.asarray(depth, dtype=np.float64)
    q = np.where(np.isfinite(d) & (d > 0), np.clip(np.rint(d * scale), 1, 65535), 0)
    return atomic_write_bytes(path, encode_png(q / 65535.0, bits=16))


def colorize(values: np.ndarray) -> np.ndarray:
    """Turbo-like colours (H, W, 3) in [0, 1] of ``values`` in [0, 1] (NaN -> black)."""
    v = np.asarray(values, dtype=np.float64)
    nan = ~np.isfinite(v)
    t = np.clip(np.nan_to_num(v), 0, 1) * (len(_RAMP) - 1)
    i0 = np.minimum(np.floor(t).astype(int), len(_RAMP) - 2)
    f = (t - i0)[..., None]
    rgb = _RAMP[i0] * (1 - f) + _RAMP[i0 + 1] * f
    rgb[nan] = 0.0
    return rgb


def _format_depth(v: float) -> str:
    if not np.isfinite(v):
        return "-"
    if v == 0 or 1e-2 <= abs(v) < 1e5:
        s = f"{v:.4g}"
        return s if "e" not in s else f"{v:.3e}"
    return f"{v:.2e}"


def _draw_text(canvas: np.ndarray, text: str, x: int, y: int, scale: int = 2) -> None:
    for ch in text:
        g = _GLYPHS.get(ch, _GLYPHS[" "])
        for r in range(5):
            for c in range(3):
                if g[r * 3 + c] == "1":
                    y0, x0 = y + r * scale, x + c * scale
                    canvas[y0 : y0 + scale, x0 : x0 + scale] = 1.0
        x += 4 * scale


def depth_preview(depth: np.ndarray, min_depth: float | None = None, max_depth: float | None = None) -> np.ndarray:
    """RGB preview (H + legend, W, 3) in [0, 1]: colours on inverse depth between the depth range's ends.

    The range defaults to the 1st and 99th percentiles of the known depths. The legend is a colour bar
    (near = red on the right, far = blue on the left) with the far, middle (in inverse depth) and near
    depths printed under it.

    Example:
        >>> depth_preview(np.linspace(1, 2, 64 * 48).reshape(48, 64)).shape
        (78, 64, 3)
    """
    d = np.asarray(depth, dtype=np.float64)
    known = np.isfinite(d) & (d > 0)
    if min_depth is None or max_depth is None:
        if known.any():
            lo, hi = np.percentile(d[known], [1, 99])
        else:
            lo, hi = 1.0, 2.0
        min_depth = min_depth if min_depth is not None else float(lo)
        max_depth = max_depth if max_depth is not None else float(hi)
    if not max_depth > min_depth:
        max_depth = min_depth * 1.001 + 1e-9
    inv_lo, inv_hi = 1.0 / max_depth, 1.0 / min_depth
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(known, (1.0 / d - inv_lo) / (inv_hi - inv_lo), np.nan)
    img = colorize(t)
    h, w = d.shape
    bar_h, text_h = 12, 18
    legend = np.zeros((bar_h + text_h, w, 3))
    legend[:bar_h] = colorize(np.linspace(0, 1, w)[None].repeat(bar_h, 0))
    mid = 2.0 / (inv_lo + inv_hi)
    labels = [_format_depth(max_depth), _format_depth(mid), _format_depth(min_depth)]
    canvas = np.zeros((text_h, w))
    widths = [len(s) * 8 for s in labels]
    xs = [2, max((w - widths[1]) // 2, 0), max(w - widths[2] - 2, 0)]
    for s, x in zip(labels, xs, strict=True):
        if x + len(s) * 8 <= w:
            _draw_text(canvas, s, x, 4)
    legend[bar_h:] = canvas[..., None]
    return np.concatenate([img, legend], axis=0)


def write_depth_preview(
    path: str | os.PathLike[str], depth: np.ndarray, min_depth: float | None = None, max_depth: float | None = None
) -> Path:
    """Atomically write :func:`depth_preview` as an 8-bit RGB PNG."""
    return atomic_write_bytes(path, encode_png(depth_preview(depth, min_depth, max_depth), bits=8))


def encode_ply(points: np.ndarray, colors: np.ndarray) -> bytes:
    """Binary little-endian PLY bytes for ``points`` (N, 3) float and ``colors`` (N, 3) in [0, 1]."""
    pts = np.asarray(points, dtype="<f4").reshape(-1, 3)
    col = np.clip(np.rint(np.asarray(colors, dtype=np.float64).reshape(-1, 3) * 255), 0, 255).astype(np.uint8)
    rec = np.empty(
        pts.shape[0], dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")]
    )
    rec["x"], rec["y"], rec["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    rec["r"], rec["g"], rec["b"] = col[:, 0], col[:, 1], col[:, 2]
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment written by gdvision depth\n"
        f"element vertex {pts.shape[0]}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    return header.encode() + rec.tobytes()


def depth_to_points(
    depth: np.ndarray, K: np.ndarray, world_to_cam: np.ndarray | None = None, image: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """3-D points (N, 3) of the known pixels of ``depth`` (H, W) and their colours (N, 3) in [0, 1].

    Points are in world coordinates when ``world_to_cam`` is given, else in the camera frame. ``image``
    (H, W, C) supplies colours (gray is repeated; none gives white).
    """
    d = np.asarray(depth, dtype=np.float64)
    h, w = d.shape
    ys, xs = np.nonzero(np.isfinite(d) & (d > 0))
    z = d[ys, xs]
    rays = np.linalg.inv(K) @ np.stack([xs, ys, np.ones_like(xs)]).astype(np.float64)
    pc = (rays * z).T
    if world_to_cam is not None:
        R, t = world_to_cam[:3, :3], world_to_cam[:3, 3]
        pc = (pc - t) @ R  # R^T (X - t)
    if image is None:
        col = np.ones_like(pc)
    else:
        im = np.asarray(image, dtype=np.float64)
        im = im[..., None] if im.ndim == 2 else im
        col = im[ys, xs][:, :3] if im.shape[2] >= 3 else np.repeat(im[ys, xs][:, :1], 3, axis=1)
    return pc, col


def write_ply(path: str | os.PathLike[str], points: np.ndarray, colors: np.ndarray) -> Path:
    """Atomically write a coloured point cloud (opens in MeshLab, Open3D, CloudCompare)."""
    return atomic_write_bytes(path, encode_ply(points, colors))


def read_ply_header(path: str | os.PathLike[str]) -> tuple[str, int]:
    """(header text, vertex count) of a PLY file written by :func:`write_ply` (for checks)."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode()
    n = next(int(line.split()[2]) for line in header.splitlines() if line.startswith("element vertex"))
    if len(data) - end != n * struct.calcsize("<fffBBB"):
        raise InputError(f"'{path}': PLY body size does not match {n} vertices")
    return header, n
