"""Keypoint + descriptor files in the plain formats of VLFeat and of David Lowe's SIFT binary.

Both are text; descriptors are stored as integers 0..255 (``min(255, floor(512 * d))`` of the unit
descriptor ``d``, OpenCV's and Lowe's quantisation).

- **VLFeat** (``vlfeat``, the ``sift`` command line's ``.frame``/``.descr`` pair written as one file): one
  keypoint per line: ``x y scale angle d1 ... d128``. ``x, y`` are gdvision pixel coordinates (0-based,
  (0, 0) = centre of the top-left pixel), ``scale`` is sigma in pixels, ``angle`` in radians in gdvision's
  convention (clockwise on screen from +x, = OpenCV's ``KeyPoint.angle``).
- **Lowe** (``lowe``, the ``.key`` files of Lowe's ``sift`` binary, e.g. VLFeat's ``box.sift``): a header line
  ``N 128``, then per keypoint a line ``row col scale orientation`` (row = y first!) followed by the 128
  integers, 20 per line. Lowe's orientation is ``-angle`` (y-up sense) and his orientation bins turn the
  other way, so writing negates the angle and reverses the 8 orientation bins of every histogram (reading
  undoes both), as VLFeat's ``vl_ubcread`` does.

Example:
    >>> import numpy as np, tempfile, os
    >>> ks = KeypointSet(np.array([[10.5, 20.25]]), np.array([2.0]), np.array([0.5]), np.full((1, 128), 0.08))
    >>> path = os.path.join(tempfile.mkdtemp(), "k.key")
    >>> write_keypoints(path, ks, "lowe")
    >>> back = read_keypoints(path)
    >>> back.xy.tolist(), back.angle.round(3).tolist(), int(back.desc[0, 0])
    ([[10.5, 20.25]], [0.5], 40)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gdvision.errors import InputError, UsageError
from gdvision.io.images import atomic_write_bytes

FORMATS = ("vlfeat", "lowe")


@dataclass
class KeypointSet:
    """Keypoints of one image as numpy arrays.

    Attributes:
        xy: (N, 2) float pixel coordinates (x, y); scale: (N,) sigma in pixels; angle: (N,) radians
        (gdvision convention); desc: (N, 128) descriptors, float unit vectors or integers 0..255.
    """

    xy: np.ndarray
    scale: np.ndarray
    angle: np.ndarray
    desc: np.ndarray

    def __len__(self) -> int:
        return int(self.xy.shape[0])


def _quantize(desc: np.ndarray) -> np.ndarray:
    d = np.asarray(desc)
    if np.issubdtype(d.dtype, np.integer) or (d.size and d.max() > 1.0 + 1e-6):
        return np.clip(np.rint(d), 0, 255).astype(np.int64)
    return np.clip(np.floor(d * 512.0), 0, 255).astype(np.int64)


def _flip_bins(desc: np.ndarray) -> np.ndarray:
    """Reverse the sense of the 8 orientation bins of each of the 16 histograms (bin o -> (8 - o) % 8)."""
    d = desc.reshape(desc.shape[0], -1, 8)
    return d[:, :, (8 - np.arange(8)) % 8].reshape(desc.shape[0], -1)


def guess_format(path: str | Path) -> str:
    """``lowe`` for .key/.sift files, else ``vlfeat``."""
    return "lowe" if Path(path).suffix.lower() in (".key", ".sift") else "vlfeat"


def write_keypoints(path: str | Path, ks: KeypointSet, fmt: str | None = None) -> None:
    """Write ``ks`` atomically in ``fmt`` (``vlfeat`` or ``lowe``; None: from the suffix, see :func:`guess_format`)."""
    atomic_write_bytes(path, format_keypoints(ks, fmt or guess_format(path)).encode())


def format_keypoints(ks: KeypointSet, fmt: str) -> str:
    """The text of a keypoint file of ``ks`` in ``fmt`` (``vlfeat`` or ``lowe``), as :func:`write_keypoints` writes it.

    >>> ks = KeypointSet(np.array([[1.0, 2.0]]), np.array([1.5]), np.array([0.0]), np.zeros((1, 128)))
    >>> format_keypoints(ks, "lowe").splitlines()[:2]
    ['1 128', '2.00 1.00 1.50 0.000']
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown keypoint format '{fmt}': use one of {', '.join(FORMATS)}")
    q = _quantize(ks.desc).reshape(len(ks), -1)
    lines: list[str] = []
    if fmt == "vlfeat":
        for i in range(len(ks)):
            head = f"{ks.xy[i, 0]:.4f} {ks.xy[i, 1]:.4f} {ks.scale[i]:.4f} {ks.angle[i]:.6f}"
            lines.append(head + " " + " ".join(str(int(v)) for v in q[i]))
    else:
        q = _flip_bins(q)
        lines.append(f"{len(ks)} {q.shape[1]}")
        for i in range(len(ks)):
            ang = -float(ks.angle[i])
            ang = (ang + np.pi) % (2 * np.pi) - np.pi
            lines.append(f"{ks.xy[i, 1]:.2f} {ks.xy[i, 0]:.2f} {ks.scale[i]:.2f} {ang:.3f}")
            for s in range(0, q.shape[1], 20):
                lines.append(" " + " ".join(str(int(v)) for v in q[i, s : s + 20]))
    return "\n".join(lines) + "\n"


def read_keypoints(path: str | Path, fmt: str | None = None) -> KeypointSet:
    """Read a keypoint file (``vlfeat`` or ``lowe``; None: from the suffix); InputError when malformed."""
    p = Path(path)
    fmt = fmt or guess_format(p)
    if fmt not in FORMATS:
        raise UsageError(f"unknown keypoint format '{fmt}': use one of {', '.join(FORMATS)}")
    try:
        text = p.read_text()
    except OSError as exc:
        raise InputError(f"cannot read '{p}': {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InputError(f"'{p}' is not a text keypoint file") from None
    try:
        if fmt == "lowe":
            tok = text.split()
            n, d = int(tok[0]), int(tok[1])
            vals = np.array(tok[2:], dtype=np.float64)
            if vals.size != n * (4 + d):
                raise ValueError(f"expected {n} keys of {4 + d} numbers, found {vals.size} numbers")
            vals = vals.reshape(n, 4 + d)
            desc = _flip_bins(vals[:, 4:]) if d == 128 else vals[:, 4:]
            return KeypointSet(vals[:, [1, 0]].copy(), vals[:, 2].copy(), -vals[:, 3], desc)
        rows = [r.split() for r in text.splitlines() if r.strip()]
        vals = np.array(rows, dtype=np.float64) if rows else np.zeros((0, 132))
        if vals.ndim != 2 or vals.shape[1] < 4:
            raise ValueError("each line needs x y scale angle and the descriptor")
        return KeypointSet(vals[:, :2].copy(), vals[:, 2].copy(), vals[:, 3].copy(), vals[:, 4:].copy())
    except (ValueError, IndexError) as exc:
        raise InputError(f"'{p}' is not a valid {fmt} keypoint file: {exc}") from None


def read_lowe(path: str | Path) -> KeypointSet:
    """Read Lowe's ``.key``/``.sift`` format (see the module docstring)."""
    return read_keypoints(path, "lowe")
