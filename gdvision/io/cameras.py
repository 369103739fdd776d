"""Camera files: readers of calibrations for calibrated views (the camera math is in :mod:`gdvision.depth.cameras`).

A :class:`Camera` holds intrinsics ``K`` (3x3, pixels, **pixel centres at integers**: ``(0, 0)`` is the centre
of the top-left pixel, OpenCV's convention) and a world-to-camera pose ``world_to_cam`` (4x4,
``X_cam = world_to_cam @ [X_world, 1]``, camera frame x right, y down, z forward).

Three formats are read by :func:`read_cameras`:

- **gdvision JSON** (``*.json``): ``{"<image name>": {"K": 3x3, "world_to_cam": 4x4}, ...}``; optional
  ``"width"``/``"height"`` are checked against the images. ``"T_world_to_cam"`` is accepted for
  ``"world_to_cam"``, and so is the layout of ``shared/data/stereo_motorcycle/calib.json``
  (``{"cameras": {"<label>": {"image": "<name>", "K": ..., "T_world_to_cam": ...}}}``).
- **COLMAP text model** (a folder with ``cameras.txt`` and ``images.txt``): models SIMPLE_PINHOLE, PINHOLE,
  SIMPLE_RADIAL, RADIAL and OPENCV (distortion terms are ignored: undistort the images first). COLMAP puts
  ``(0, 0)`` at the top-left *corner*, so 0.5 is subtracted from its principal point.
- **Middlebury calib.txt** for a rectified pair: ``cam0``, ``cam1``, ``baseline`` (``doffs`` is implied by
  the two principal points). ``cam0`` is the world frame; ``cam1`` sits ``baseline`` along +x. Views are
  matched by order (first view = cam0). When the file's ``width``/``height`` are a uniform multiple of the
  image size (e.g. the quarter-resolution Middlebury images), ``K`` is scaled by ``image / file`` size.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gdvision.errors import InputError, UsageError


@dataclass
class Camera:
    """One camera. ``K`` (3, 3) float64 pixels; ``world_to_cam`` (4, 4) float64; optional image size.

    Camera math (centres, projections, back-projection) is in :mod:`gdvision.depth.cameras`; this module only
    reads files into these numbers.

    Example:
        >>> cam = Camera(np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]]), np.eye(4), 640, 480, "a.png")
        >>> float(cam.K[0, 2]), cam.key
        (320.0, 'a.png')
    """

    K: np.ndarray
    world_to_cam: np.ndarray
    width: int | None = None
    height: int | None = None
    key: str = ""


@dataclass
class CameraSet:
    """Cameras read from one file: ``cameras`` by key (image name), ``kind`` and whether views match by order."""

    cameras: dict[str, Camera]
    kind: str
    path: Path
    by_order: bool = False


def _matrix(value: object, shape: tuple[int, int], where: str, field: str) -> np.ndarray:
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{where}: field '{field}' is not a numeric {shape[0]}x{shape[1]} matrix") from None
    if m.shape != shape:
        raise InputError(f"{where}: field '{field}' must be {shape[0]}x{shape[1]}, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise InputError(f"{where}: field '{field}' contains non-finite numbers")
    return m


def validate_camera(cam: Camera, where: str) -> None:
    """InputError (one line naming ``where`` and the field) for an unusable K or pose."""
    K, T = cam.K, cam.world_to_cam
    if not (np.isfinite(K).all() and np.isfinite(T).all()):
        raise InputError(f"{where}: non-finite numbers in 'K' or 'world_to_cam'")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InputError(f"{where}: field 'K' needs positive focal lengths, got fx={K[0, 0]:g}, fy={K[1, 1]:g}")
    if abs(K[1, 0]) > 1e-9 or abs(K[2, 0]) > 1e-9 or abs(K[2, 1]) > 1e-9 or abs(K[2, 2] - 1) > 1e-9:
        raise InputError(f"{where}: field 'K' must be upper triangular with K[2] = [0, 0, 1]")
    if np.abs(T[3] - np.array([0, 0, 0, 1.0])).max() > 1e-9:
        raise InputError(f"{where}: field 'world_to_cam' must have last row [0, 0, 0, 1]")
    R = T[:3, :3]
    if np.abs(R.T @ R - np.eye(3)).max() > 1e-4 or np.linalg.det(R) <= 0:
        raise InputError(f"{where}: field 'world_to_cam' has a rotation part that is not a proper rotation")


def _size(entry: dict, where: str) -> tuple[int | None, int | None]:
    out: list[int | None] = []
    for k in ("width", "height"):
        v = entry.get(k)
        if v is not None and (not isinstance(v, (int, float)) or v <= 0 or v != int(v)):
            raise InputError(f"{where}: field '{k}' must be a positive integer, got {v!r}")
        out.append(int(v) if v is not None else None)
    return out[0], out[1]


def read_gdvision_json(path: Path) -> CameraSet:
    """Read gdvision's camera JSON (see the module docstring)."""
    from gdvision.io.images import read_json

    data = read_json(path)
    if not isinstance(data, dict) or not data:
        raise InputError(f"'{path}': expected an object mapping image names to cameras")
    entries: dict[str, dict] = {}
    if isinstance(data.get("cameras"), dict):  # shared-data calib.json layout
        for label, e in data["cameras"].items():
            if not isinstance(e, dict):
                raise InputError(f"'{path}': field 'cameras.{label}' is not an object")
            entries[str(e.get("image", label))] = e
    else:
        for name, e in data.items():
            if not isinstance(e, dict):
                raise InputError(f"'{path}': field '{name}' is not an object with 'K' and 'world_to_cam'")
            entries[str(name)] = e
    cams: dict[str, Camera] = {}
    for name, e in entries.items():
        where = f"'{path}' camera '{name}'"
        if "K" not in e:
            raise InputError(f"{where}: missing field 'K'")
        pose_key = "world_to_cam" if "world_to_cam" in e else "T_world_to_cam"
        if pose_key not in e:
            raise InputError(f"{where}: missing field 'world_to_cam'")
        K = _matrix(e["K"], (3, 3), where, "K")
        T = _matrix(e[pose_key], (4, 4), where, pose_key)
        w, h = _size(e, where)
        cam = Camera(K, T, w, h, name)
        validate_camera(cam, where)
        cams[name] = cam
    return CameraSet(cams, "json", path)


def _quat_to_rot(qw: float, qx: float, qy: float, qz: float) -> np.ndarray:
    n = math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
    if n < 1e-12:
        raise ValueError("zero quaternion")
    w, x, y, z = qw / n, qx / n, qy / n, qz / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


_COLMAP_MODELS = {  # model -> (number of params, function params -> fx, fy, cx, cy)
    "SIMPLE_PINHOLE": (3, lambda p: (p[0], p[0], p[1], p[2])),
    "PINHOLE": (4, lambda p: (p[0], p[1], p[2], p[3])),
    "SIMPLE_RADIAL": (4, lambda p: (p[0], p[0], p[1], p[2])),
    "RADIAL": (5, lambda p: (p[0], p[0], p[1], p[2])),
    "OPENCV": (8, lambda p: (p[0], p[1], p[2], p[3])),
}


def read_colmap_text(folder: Path) -> CameraSet:
    """Read a COLMAP text model folder (``cameras.txt`` + ``images.txt``); keys are the image names."""
    cam_file, img_file = folder / "cameras.txt", folder / "images.txt"
    for f in (cam_file, img_file):
        if not f.is_file():
            raise UsageError(f"'{folder}' is not a COLMAP text model: missing '{f.name}'")
    intr: dict[int, tuple[np.ndarray, int, int]] = {}
    for lineno, raw in enumerate(cam_file.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        where = f"'{cam_file}' line {lineno}"
        if len(parts) < 4:
            raise InputError(f"{where}: expected 'CAMERA_ID MODEL WIDTH HEIGHT PARAMS...'")
        model = parts[1].upper()
        if model not in _COLMAP_MODELS:
            raise InputError(f"{where}: unsupported camera model '{parts[1]}' (use {', '.join(_COLMAP_MODELS)})")
        n, fn = _COLMAP_MODELS[model]
        try:
            cid, w, h = int(parts[0]), int(parts[2]), int(parts[3])
            params = [float(v) for v in parts[4:]]
        except ValueError:
            raise InputError(f"{where}: non-numeric field") from None
        if len(params) != n:
            raise InputError(f"{where}: model {model} needs {n} parameters, got {len(params)}")
        if not all(math.isfinite(v) for v in params):
            raise InputError(f"{where}: field 'PARAMS' contains non-finite numbers")
        fx, fy, cx, cy = fn(params)
        K = np.array([[fx, 0.0, cx - 0.5], [0.0, fy, cy - 0.5], [0.0, 0.0, 1.0]])
        intr[cid] = (K, w, h)
    cams: dict[str, Camera] = {}
    lines = img_file.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        where = f"'{img_file}' line {i}"
        parts = line.split()
        if len(parts) < 10:
            raise InputError(f"{where}: expected 'IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME'")
        try:
            q = [float(v) for v in parts[1:5]]
            t = np.array([float(v) for v in parts[5:8]])
            cid = int(parts[8])
        except ValueError:
            raise InputError(f"{where}: non-numeric field") from None
        if not (all(math.isfinite(v) for v in q) and np.isfinite(t).all()):
            raise InputError(f"{where}: field 'QW..TZ' contains non-finite numbers")
        name = " ".join(parts[9:])
        i += 1  # the POINTS2D line that follows every image line (possibly empty)
        if cid not in intr:
            raise InputError(f"{where}: image '{name}' refers to unknown CAMERA_ID {cid}")
        try:
            R = _quat_to_rot(*q)
        except ValueError:
            raise InputError(f"{where}: field 'QW QX QY QZ' is a zero quaternion") from None
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = R, t
        K, w, h = intr[cid]
        cam = Camera(K.copy(), T, w, h, name)
        validate_camera(cam, f"'{img_file}' image '{name}'")
        cams[name] = cam
    if not cams:
        raise InputError(f"'{img_file}': no images")
    return CameraSet(cams, "colmap", folder)


def read_middlebury_calib(path: Path) -> CameraSet:
    """Read a Middlebury ``calib.txt`` (rectified pair) into cameras ``cam0`` (world frame) and ``cam1``."""
    fields: dict[str, str] = {}
    for raw in path.read_text(errors="replace").splitlines():
        if "=" in raw:
            k, v = raw.split("=", 1)
            fields[k.strip()] = v.strip()
    where = f"'{path}'"
    mats = []
    for key in ("cam0", "cam1"):
        if key not in fields:
            raise InputError(f"{where}: missing field '{key}'")
        rows = [r.split() for r in fields[key].strip("[] ").split(";")]
        try:
            m = np.array([[float(v) for v in r] for r in rows])
        except ValueError:
            raise InputError(f"{where}: field '{key}' is not a numeric 3x3 matrix") from None
        mats.append(_matrix(m, (3, 3), where, key))
    if "baseline" not in fields:
        raise InputError(f"{where}: missing field 'baseline'")
    try:
        baseline = float(fields["baseline"])
        size = [int(float(fields[k])) if k in fields else None for k in ("width", "height")]
    except ValueError:
        raise InputError(f"{where}: field 'baseline', 'width' or 'height' is not a number") from None
    if not (math.isfinite(baseline) and baseline > 0):
        raise InputError(f"{where}: field 'baseline' must be a positive number, got {fields['baseline']}")
    if "doffs" in fields:
        try:
            doffs = float(fields["doffs"])
        except ValueError:
            raise InputError(f"{where}: field 'doffs' is not a number") from None
        if abs(doffs - (mats[1][0, 2] - mats[0][0, 2])) > 1e-3 * max(1.0, abs(doffs)):
            raise InputError(f"{where}: field 'doffs' ({doffs}) differs from cam1 cx - cam0 cx")
    T1 = np.eye(4)
    T1[0, 3] = -baseline
    cams = {
        "cam0": Camera(mats[0], np.eye(4), size[0], size[1], "cam0"),
        "cam1": Camera(mats[1], T1, size[0], size[1], "cam1"),
    }
    for k, c in cams.items():
        validate_camera(c, f"{where} field '{k}'")
    return CameraSet(cams, "middlebury", path, by_order=True)


def read_cameras(path: str | Path) -> CameraSet:
    """Read cameras from a gdvision JSON file, a COLMAP text folder or a Middlebury ``calib.txt``.

    Example:
        >>> cams = read_cameras("sample_data/stereo_motorcycle/calib.json")  # doctest: +SKIP
        >>> sorted(cams.cameras)  # doctest: +SKIP
        ['left.png', 'right.png']
    """
    p = Path(path)
    if not p.exists():
        raise UsageError(f"cameras not found: '{p}'")
    if p.is_dir():
        return read_colmap_text(p)
    if p.suffix.lower() == ".json":
        return read_gdvision_json(p)
    head = p.read_text(errors="replace")[:4096]
    if re.search(r"^\s*cam0\s*=", head, re.MULTILINE):
        return read_middlebury_calib(p)
    if p.name in ("cameras.txt", "images.txt"):
        return read_colmap_text(p.parent)
    raise UsageError(f"'{p}': unknown camera format (use a .json file, a COLMAP text folder or a Middlebury calib.txt)")


def cameras_for_views(cams: CameraSet, views: list[Path], sizes: list[tuple[int, int]]) -> list[Camera]:
    """The camera of every view, matched by file name (exact, then base name, then stem) or by order.

    ``sizes`` are the images' (height, width). Raises InputError (naming the camera file and the field) for
    a view without a camera, or an image whose size does not match its camera's ``width``/``height`` or
    principal point. Middlebury intrinsics are rescaled when the images are a uniform down-sampling.
    """
    out: list[Camera] = []
    if cams.by_order:
        keys = list(cams.cameras)
        if len(views) > len(keys):
            raise InputError(f"'{cams.path}' describes {len(keys)} cameras but {len(views)} views were given")
        chosen = [(cams.cameras[keys[i]], v) for i, v in enumerate(views)]
    else:
        chosen = []
        for v in views:
            cam = cams.cameras.get(v.name) or cams.cameras.get(str(v))
            if cam is None:
                by_base = [c for k, c in cams.cameras.items() if Path(k).name == v.name]
                by_stem = [c for k, c in cams.cameras.items() if Path(k).stem == v.stem]
                cam = by_base[0] if len(by_base) == 1 else by_stem[0] if len(by_stem) == 1 else None
            if cam is None:
                known = ", ".join(sorted(cams.cameras)[:6])
                raise InputError(f"'{cams.path}': no camera for view '{v.name}' (cameras: {known})")
            chosen.append((cam, v))
    for (cam, v), (h, w) in zip(chosen, sizes, strict=True):
        where = f"'{cams.path}' camera '{cam.key}'"
        K = cam.K.copy()
        if cam.width is not None and cam.height is not None and (cam.width, cam.height) != (w, h):
            sx, sy = w / cam.width, h / cam.height
            if cams.kind == "middlebury" and abs(sx - sy) < 0.01 * sx:
                K = np.diag([sx, sx, 1.0]) @ K
            else:
                raise InputError(
                    f"{where}: fields 'width'/'height' are {cam.width}x{cam.height} but image '{v}' is {w}x{h}"
                )
        cx, cy = K[0, 2], K[1, 2]
        if not (-0.5 * w <= cx <= 1.5 * w and -0.5 * h <= cy <= 1.5 * h):
            raise InputError(
                f"{where}: field 'K' has its principal point ({cx:.1f}, {cy:.1f}) far outside the {w}x{h} image "
                f"'{v}' (intrinsics for another image size?)"
            )
        out.append(Camera(K, cam.world_to_cam.copy(), w, h, cam.key))
    return out


__all__ = ["Camera", "CameraSet", "cameras_for_views", "read_cameras", "validate_camera"]
