"""Depth result files: PFM, 16-bit PNG, coloured PLY point cloud (the pictures are in :mod:`gdvision.viz`).

Every writer is atomic (:func:`gdvision.io.images.atomic_write_bytes`). Depth maps are (H, W) float arrays in the
cameras' length unit with NaN = unknown.

- PFM (``Pf``, one channel): header ``Pf\\n<W> <H>\\n-1.0\\n`` (negative scale = little-endian), then float32
  rows stored **bottom-to-top** as the format requires; NaN is kept.
- 16-bit PNG: ``value = round(depth * scale)``, 0 = unknown; ``depth = value / scale``.
- PLY (``binary_little_endian 1.0``): per point ``x y z`` float32 then ``red green blue`` uchar (15 bytes,
  no padding), in the order given.

Example:
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "d.pfm")
    >>> _ = write_pfm(p, np.array([[1.0, 2.0], [3.0, np.nan]]))
    >>> open(p, "rb").read()[:12], read_pfm(p)[0].tolist()
    (b'Pf\\n2 2\\n-1.0\\n', [1.0, 2.0])
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from gdvision.errors import InputError
from gdvision.io.images import atomic_write_bytes, encode_png


def write_pfm(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Atomically write a (H, W) float map as a one-channel little-endian PFM (NaN preserved)."""
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


__all__ = [
    "depth_png16_scale",
    "encode_ply",
    "read_pfm",
    "read_ply_header",
    "write_depth_png16",
    "write_pfm",
    "write_ply",
]
