"""How close the differentiable OpenCV SIFT replica (``--target opencv-sift``) is to ``cv2.SIFT``.

For each image (8-bit gray: ``cv2.cvtColor(BGR2GRAY)`` of the file; the replica gets the same pixels / 255),
``cv2.SIFT_create()`` (defaults: nfeatures 0, 3 layers, contrast 0.04, edge 10, sigma 1.6) and the replica
(``target_features("opencv-sift")``) are run on the same pixels, and:

- ``repeat``: the fraction of OpenCV's keypoints with a replica keypoint within 1 px (OpenCV's ``pt - 0.25``
  against the replica's position: see ``gdvision.features.opencv_layout.OPENCV_SHIFT``) and a scale ratio <= 1.5
  (OpenCV's ``size / 2`` against the replica's sigma); ``precision``: the same, from the replica's side.
- ``angle_ok``: of the repeated OpenCV keypoints, the fraction whose closest-angle replica keypoint there is within
  5 degrees; ``desc_l2``: the median L2 distance between OpenCV's descriptor (divided by its norm) and that replica
  keypoint's (unit) descriptor (two random unit SIFT-like vectors are about 1.0-1.2 apart);
  ``desc_l2_ang``: the same over the keypoints whose angle agrees within 5 degrees.
- ``nn_same``: the fraction of OpenCV's descriptors whose nearest replica descriptor (L2, over the whole image)
  belongs to a replica keypoint within 1 px and 1.5x scale of it.

Images: ``sample_data/natural`` (6 photos), ``box/box.png``, ``box/box_in_scene.png``, the Motorcycle left view and
an ITK brain slice, where present. Usage: ``python bench/sift_replica.py [--threads 1] [--images a.png ...]`` ->
``bench/results/sift_replica.json`` and a printed table.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from gdvision.attack.targets import target_features
from gdvision.features import detect_and_describe
from gdvision.features.opencv_layout import OPENCV_SHIFT

ROOT = Path(__file__).resolve().parent
DATA = ROOT.parent / "sample_data"


def default_images() -> list[Path]:
    """The benchmark's images that exist."""
    nat = sorted((DATA / "natural").glob("*.*"))
    more = [DATA / "box" / "box.png", DATA / "box" / "box_in_scene.png", DATA / "stereo_motorcycle" / "left.png"]
    more.append(DATA / "itk_brain" / "BrainProtonDensitySliceBorder20.png")
    return [p for p in nat + more if p.exists()]


def load_gray(path: Path) -> np.ndarray:
    """8-bit gray pixels of an image file, as OpenCV's SIFT would convert a colour image."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise SystemExit(f"cannot read {path}")
    if img.dtype != np.uint8:
        img = cv2.convertScaleAbs(img, alpha=255.0 / max(float(img.max()), 1.0))
    if img.ndim == 3:
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2GRAY)
    return img


def opencv_sift(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's keypoints as (N, 2) true positions, (N,) sigma, (N,) angle (radians) and (N, 128) unit descriptors."""
    kps, desc = cv2.SIFT_create().detectAndCompute(gray, None)
    xy = np.array([k.pt for k in kps], dtype=np.float64).reshape(-1, 2) - OPENCV_SHIFT
    sig = np.array([k.size / 2 for k in kps], dtype=np.float64)
    ang = np.radians(np.array([k.angle for k in kps], dtype=np.float64))
    desc = desc.astype(np.float64)
    desc /= np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)
    return xy, sig, ang, desc


def replica_sift(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The replica's keypoints, in the same form as :func:`opencv_sift`."""
    img = torch.from_numpy(gray.astype(np.float32) / 255.0)[None, None]
    with torch.no_grad():
        f = detect_and_describe(img, target_features("opencv-sift"))
    return (f.xy.double().numpy(), f.scale.double().numpy(), f.angle.double().numpy(), f.desc.double().numpy())


def near(xy_a, sig_a, xy_b, sig_b, radius: float = 1.0, ratio: float = 1.5) -> np.ndarray:
    """(Na, Nb) bool: keypoint b is within ``radius`` px of a and their scales within ``ratio`` of each other."""
    d = np.linalg.norm(xy_a[:, None] - xy_b[None], axis=-1)
    r = np.maximum(sig_a[:, None] / sig_b[None], sig_b[None] / sig_a[:, None])
    return (d <= radius) & (r <= ratio)


def compare(cv: tuple, rep: tuple, chunk: int = 256) -> dict:
    """The figures of one image (see the module docstring); OpenCV's keypoints in chunks (bounded memory)."""
    xy_c, s_c, a_c, d_c = cv
    xy_r, s_r, a_r, d_r = rep
    hit, found, ang_err, l2, nn_same = [], np.zeros(len(xy_r), bool), [], [], []
    for i in range(0, len(xy_c), chunk):
        sl = slice(i, i + chunk)
        ok = near(xy_c[sl], s_c[sl], xy_r, s_r)
        found |= ok.any(0)
        h = ok.any(1)
        hit.append(h)
        dang = np.abs((a_c[sl, None] - a_r[None] + math.pi) % (2 * math.pi) - math.pi)
        best = np.where(ok, dang, np.inf).argmin(1)
        rows = np.nonzero(h)[0]
        ang_err.append(dang[rows, best[rows]])
        l2.append(np.linalg.norm(d_c[sl][rows] - d_r[best[rows]], axis=1))
        nn = (d_c[sl] @ d_r.T).argmax(1)  # unit vectors: the largest dot product is the nearest
        nn_same.append(ok[np.arange(len(nn)), nn])
    hit, ang_err, l2, nn_same = (np.concatenate(v) for v in (hit, ang_err, l2, nn_same))
    agree = ang_err <= math.radians(5)
    return {
        "opencv": len(xy_c),
        "replica": len(xy_r),
        "repeat": float(hit.mean()),
        "precision": float(found.mean()),
        "angle_ok": float(agree.mean()),
        "desc_l2": float(np.median(l2)),
        "desc_l2_ang": float(np.median(l2[agree])),
        "nn_same": float(nn_same.mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--images", nargs="*", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "sift_replica.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    rows = {}
    cols = ["opencv", "replica", "repeat", "precision", "angle_ok", "desc_l2", "desc_l2_ang", "nn_same", "seconds"]
    print(f"{'image':34s}" + "".join(f"{c:>12s}" for c in cols))
    for path in args.images or default_images():
        gray = load_gray(path)
        t0 = time.perf_counter()
        rep = replica_sift(gray)
        sec = time.perf_counter() - t0
        row = compare(opencv_sift(gray), rep) | {"seconds": round(sec, 2), "size": list(gray.shape[::-1])}
        name = f"{path.parent.name}/{path.name}"
        rows[name] = row
        print(
            f"{name:34s}" + "".join(f"{row[c]:>12d}" if isinstance(row[c], int) else f"{row[c]:>12.3f}" for c in cols)
        )
    keys = ["repeat", "precision", "angle_ok", "desc_l2", "desc_l2_ang", "nn_same"]
    summary = {k: float(np.median([r[k] for r in rows.values()])) for k in keys}
    summary["min_repeat"] = min(r["repeat"] for r in rows.values())
    print("median: " + ", ".join(f"{k} {v:.3f}" for k, v in summary.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"images": rows, "summary": summary, "opencv": cv2.__version__}, indent=2) + "\n")


if __name__ == "__main__":
    main()
