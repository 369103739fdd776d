"""Benchmark of ``gdvision match`` against OpenCV SIFT and kornia SIFT on pairs with a known homography.

Pairs: synthetic homographies of the natural photos (``bench/synthetic.py``: 480x360, corners moved up to
25%, in-plane rotation up to 45 degrees, scale 0.6-1.6, gain 0.8-1.2, bias +-0.05, noise 0.01, seed 0) plus
the four mono-modal ITK brain pairs. Methods, in the same run and on the same pairs:

- ``gdvision``: :func:`gdvision.features.match.match_images` with its defaults (DoG, ratio 0.8, RANSAC 3 px).
- ``opencv``: ``cv2.SIFT_create()`` (defaults) + BFMatcher knn ratio 0.8 + ``findHomography(RANSAC, 3 px)``.
- ``kornia``: ``SIFTFeature`` + ``match_smnn`` + ``kornia.geometry.RANSAC('homography', inl_th=3)``.

The methods run pair by pair, in a new seeded random order for each pair. Per method: keypoints (mean of A and
B), matches, inliers, share of pairs with mean corner error <= 1/3/5 px,
median seconds per pair (whole pipeline from float arrays, both images). Also the repeatability against
David Lowe's reference keys for box.png: the share of his keypoints with a detected keypoint within 2 px
whose scale ratio is within 1.5 (OpenCV's ``size / 2`` is its sigma).

Run: ``python bench/match.py [--quick] [--pairs N] [--device cpu|cuda]``; writes ``bench/results/match.json``.
Threads: torch.set_num_threads(2), cv2.setNumThreads(2).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import synthetic  # noqa: E402

from gdvision.coords import mean_corner_error  # noqa: E402
from gdvision.features import FeatureConfig, MatchConfig, detect_and_describe, match_images  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _gray_u8(img: np.ndarray) -> np.ndarray:
    g = img[..., 0] if img.shape[2] == 1 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    return np.clip(g * 255.0 + 0.5, 0, 255).astype(np.uint8)


def run_opencv(a: np.ndarray, b: np.ndarray) -> dict:
    sift = cv2.SIFT_create()
    ga, gb = _gray_u8(a), _gray_u8(b)
    ka, da = sift.detectAndCompute(ga, None)
    kb, db = sift.detectAndCompute(gb, None)
    out = {"kp": (len(ka) + len(kb)) / 2, "matches": 0, "inliers": 0, "H": None}
    if da is None or db is None or len(ka) < 2 or len(kb) < 2:
        return out
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(da, db, k=2)
    good = [m[0] for m in knn if len(m) == 2 and m[0].distance < 0.8 * m[1].distance]
    out["matches"] = len(good)
    if len(good) < 4:
        return out
    pa = np.float32([ka[m.queryIdx].pt for m in good])
    pb = np.float32([kb[m.trainIdx].pt for m in good])
    H, mask = cv2.findHomography(pa, pb, cv2.RANSAC, 3.0)
    out["H"] = H
    out["inliers"] = int(mask.sum()) if mask is not None else 0
    return out


class KorniaRunner:
    def __init__(self, device: torch.device) -> None:
        import kornia.feature as KF
        from kornia.geometry.ransac import RANSAC

        self.KF = KF
        self.device = device
        self.feat = KF.SIFTFeature(device=device)
        self.ransac = RANSAC("homography", inl_th=3.0, seed=0)

    def __call__(self, a: np.ndarray, b: np.ndarray) -> dict:
        ga = torch.from_numpy(_gray_u8(a).astype(np.float32) / 255.0)[None, None].to(self.device)
        gb = torch.from_numpy(_gray_u8(b).astype(np.float32) / 255.0)[None, None].to(self.device)
        with torch.inference_mode():
            la, _, dsa = self.feat(ga)
            lb, _, dsb = self.feat(gb)
            dist, idx = self.KF.match_smnn(dsa[0], dsb[0], 0.95)
            out = {"kp": (la.shape[1] + lb.shape[1]) / 2, "matches": int(idx.shape[0]), "inliers": 0, "H": None}
            if idx.shape[0] < 4:
                return out
            pa = la[0, idx[:, 0], :, 2]
            pb = lb[0, idx[:, 1], :, 2]
            H, inl = self.ransac(pa, pb)
        out["H"] = H.cpu().double().numpy()
        out["inliers"] = int(inl.sum())
        return out


def run_gdvision(a: np.ndarray, b: np.ndarray, device: torch.device, cfg: MatchConfig) -> dict:
    ta = torch.from_numpy(a).permute(2, 0, 1)[None].to(device)
    tb = torch.from_numpy(b).permute(2, 0, 1)[None].to(device)
    try:
        r = match_images(ta, tb, cfg)
    except Exception as exc:  # noqa: BLE001 - a failure counts as a miss
        return {"kp": 0, "matches": 0, "inliers": 0, "H": None, "error": str(exc)}
    return {
        "kp": (len(r.features_a) + len(r.features_b)) / 2,
        "matches": int(r.idx.shape[0]),
        "inliers": int(r.inliers.sum()),
        "H": r.model.cpu().numpy(),
    }


def corner_error(H: np.ndarray | None, Hgt: np.ndarray, h: int, w: int) -> float:
    if H is None or not np.all(np.isfinite(H)) or abs(H[2, 2]) < 1e-12:
        return float("inf")
    return float(mean_corner_error(torch.from_numpy(np.asarray(H, float)), torch.from_numpy(Hgt), h, w))


def read_lowe_keys(path: Path) -> np.ndarray:
    """(N, 4) x, y, scale, orientation of Lowe's keys (his file stores row, col first)."""
    from gdvision.io.keypoints import read_lowe

    kp = read_lowe(path)
    return np.concatenate([kp.xy, kp.scale[:, None], kp.angle[:, None]], 1)


def repeatability(ref: np.ndarray, xy: np.ndarray, scale: np.ndarray, px: float = 2.0, ratio: float = 1.5) -> float:
    """Share of reference keys (x, y, scale) with a keypoint within ``px`` pixels and a scale ratio within ``ratio``."""
    d = np.linalg.norm(ref[:, None, :2] - xy[None], axis=-1)
    r = scale[None] / ref[:, None, 2]
    ok = (d <= px) & (r <= ratio) & (r >= 1.0 / ratio)
    return float(ok.any(1).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="6 synthetic pairs, no kornia warm-up")
    ap.add_argument("--pairs", type=int, default=30, help="synthetic pairs (default 30)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-kornia", action="store_true")
    ap.add_argument("--threads", type=int, default=2, help="torch and OpenCV threads (default 2)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "match.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    device = torch.device(args.device)
    n = 6 if args.quick else args.pairs
    pairs = synthetic.make_pairs(
        synthetic.load_natural(),
        n,
        size=(480, 360),
        max_corner_shift=0.25,
        max_rotation_deg=45.0,
        scale_range=(0.6, 1.6),
        photometric=True,
        seed=0,
    )
    for p in pairs:
        p["set"] = "synthetic"
    for p in synthetic.itk_brain_pairs():
        p["set"] = "itk_brain"
        pairs.append(p)

    cfg = MatchConfig()
    methods = {
        "gdvision": lambda a, b: run_gdvision(a, b, device, cfg),
        "opencv": run_opencv,
    }
    if not args.no_kornia:
        methods["kornia"] = KorniaRunner(device)
    # warm-up (first-call allocations, kornia module set-up)
    for fn in methods.values():
        fn(pairs[0]["a"], pairs[0]["b"])

    rows: dict[str, list[dict]] = {m: [] for m in methods}
    order = np.random.default_rng(0)  # a new order per pair: no method always runs right after the same one
    items = list(methods.items())
    for i, p in enumerate(pairs):
        h, w = p["a"].shape[:2]
        for k in order.permutation(len(methods)):
            name, fn = items[k]
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            r = fn(p["a"], p["b"])
            if device.type == "cuda":
                torch.cuda.synchronize()
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            err = corner_error(r["H"], p["H"], h, w)
            rows[name].append(
                {
                    "pair": i,
                    "set": p["set"],
                    "kp": r["kp"],
                    "matches": r["matches"],
                    "inliers": r["inliers"],
                    "error": err,
                    "seconds": dt,
                    "cpu_seconds": dc,
                }
            )
        print(
            f"pair {i:2d} {p['set']:9s} "
            + "  ".join(f"{m}: {rows[m][-1]['error']:7.2f}px {rows[m][-1]['seconds']:.3f}s" for m in methods),
            file=sys.stderr,
        )

    summary = {}
    for name, rs in rows.items():
        for subset in ("all", "synthetic", "itk_brain"):
            sel = [r for r in rs if subset == "all" or r["set"] == subset]
            if not sel:
                continue
            e = np.array([r["error"] for r in sel])
            summary.setdefault(name, {})[subset] = {
                "pairs": len(sel),
                "keypoints": float(np.mean([r["kp"] for r in sel])),
                "matches": float(np.mean([r["matches"] for r in sel])),
                "inliers": float(np.mean([r["inliers"] for r in sel])),
                "acc@1px": float((e <= 1).mean()),
                "acc@3px": float((e <= 3).mean()),
                "acc@5px": float((e <= 5).mean()),
                "median_error_px": float(np.median(e)),
                "median_s_per_pair": float(np.median([r["seconds"] for r in sel])),
                "median_cpu_s_per_pair": float(np.median([r["cpu_seconds"] for r in sel])),
            }
    ocv = summary["opencv"]["all"]["median_s_per_pair"]
    ocv_cpu = summary["opencv"]["all"]["median_cpu_s_per_pair"]
    for name in summary:
        summary[name]["all"]["time_vs_opencv"] = summary[name]["all"]["median_s_per_pair"] / ocv
        summary[name]["all"]["cpu_time_vs_opencv"] = summary[name]["all"]["median_cpu_s_per_pair"] / ocv_cpu

    # repeatability against Lowe's keys for box.png
    box = synthetic.SHARED / "box" if (synthetic.SHARED / "box").is_dir() else ROOT / "sample_data" / "box"
    ref = read_lowe_keys(box / "box.sift")
    import imageio.v3 as iio

    img = iio.imread(box / "box.png").astype(np.float32) / 255.0
    f = detect_and_describe(torch.from_numpy(img)[None, None].to(device), FeatureConfig(max_features=0))
    rep = {"gdvision": repeatability(ref, f.xy.cpu().numpy(), f.scale.cpu().numpy())}
    rep["gdvision_keypoints"] = len(f)
    kps = cv2.SIFT_create().detect((img * 255).astype(np.uint8), None)
    rep["opencv"] = repeatability(ref, np.float32([k.pt for k in kps]), np.float32([k.size / 2 for k in kps]))
    rep["opencv_keypoints"] = len(kps)
    rep["reference_keypoints"] = len(ref)

    result = {
        "device": str(device),
        "threads": args.threads,
        "load_average": list(__import__("os").getloadavg()),
        "pairs": len(pairs),
        "summary": summary,
        "repeatability_box": rep,
        "per_pair": rows,
        "torch": torch.__version__,
        "opencv": cv2.__version__,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))

    print(f"\n{len(pairs)} pairs ({n} synthetic + {len(pairs) - n} ITK brain), device {device}, {args.threads} threads")
    print(
        f"{'method':10s} {'set':10s} {'kp':>7s} {'match':>7s} {'inl':>7s} {'@1px':>6s} {'@3px':>6s} {'@5px':>6s} "
        f"{'s/pair':>8s} {'cpu s':>8s}"
    )
    for name, sub in summary.items():
        for subset, s in sub.items():
            print(
                f"{name:10s} {subset:10s} {s['keypoints']:7.0f} {s['matches']:7.0f} {s['inliers']:7.0f} "
                f"{s['acc@1px']:6.2f} {s['acc@3px']:6.2f} {s['acc@5px']:6.2f} {s['median_s_per_pair']:8.3f} "
                f"{s['median_cpu_s_per_pair']:8.3f}"
            )
    for name in summary:
        a = summary[name]["all"]
        print(f"time vs OpenCV ({name}): wall {a['time_vs_opencv']:.2f}x, cpu {a['cpu_time_vs_opencv']:.2f}x")
    print(
        f"repeatability vs Lowe's {rep['reference_keypoints']} keys (2 px, scale ratio 1.5): "
        f"gdvision {rep['gdvision']:.3f} "
        f"({rep['gdvision_keypoints']} kp), OpenCV {rep['opencv']:.3f} ({rep['opencv_keypoints']} kp)"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
