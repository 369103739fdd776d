"""Benchmark ``gdvision depth`` against OpenCV StereoSGBM and StereoBM on the Middlebury Motorcycle pair.

Run from the repository root::

    python bench/depth.py            # full 741x500 pair
    python bench/depth.py --quick    # half-size smoke run

Data: ``../shared/data/stereo_motorcycle`` (or ``sample_data/stereo_motorcycle``): the rectified quarter-
resolution Middlebury 2014 Motorcycle pair, GT left disparity (NaN = unknown) and ``calib.json``.

Metrics, all methods in the same run:

- ``bad_2.0``: fraction of the pixels with known GT whose disparity is off by more than 2 px; a pixel
  without an estimate counts as bad (Middlebury's rule).
- ``abs_rel`` and ``delta_1`` (delta < 1.25) on depth ``Z = f B / (d + doffs)`` over the pixels the
  method estimates (``coverage`` = that fraction); ``abs_rel_common`` over the pixels SGBM estimates too
  (the same pixel set for every method); ``abs_rel_filled`` after filling holes the Middlebury way (each
  hole takes the smaller of the nearest valid disparities to its left and right on the scanline).
- seconds (wall), best of ``--repeat`` runs for OpenCV (fast) and of one run for gdvision; for gdvision
  also the process CPU seconds (a fairer figure when other jobs share the machine).

Fairness: the same thread count (``--threads``, default 2) for torch and OpenCV. Every method gets the
same disparity search range: OpenCV's ``minDisparity=0, numDisparities=64`` (GT max 59.9 px) and for
gdvision the depth range of disparities 0..64 px. gdvision is also run with ``init="random"`` (Kornia's
depth example starts from noise) to compare the plane-sweep start.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def find_data() -> Path:
    for p in (ROOT.parent / "shared" / "data" / "stereo_motorcycle", ROOT / "sample_data" / "stereo_motorcycle"):
        if (p / "left.png").exists() and (p / "disp_left.npy").exists():
            return p
    raise SystemExit("stereo_motorcycle data not found in ../shared/data or sample_data")


def fill_holes_middlebury(disp: np.ndarray) -> np.ndarray:
    """Fill NaN disparities per scanline with min(nearest valid left, nearest valid right)."""
    out = disp.copy()
    h, w = disp.shape
    for y in range(h):
        row = disp[y]
        valid = np.isfinite(row)
        if not valid.any():
            continue
        idx = np.where(valid, np.arange(w), -1)
        left = np.maximum.accumulate(idx)
        ridx = np.where(valid, np.arange(w), w)
        right = np.minimum.accumulate(ridx[::-1])[::-1]
        lv = np.where(left >= 0, row[np.clip(left, 0, w - 1)], np.inf)
        rv = np.where(right < w, row[np.clip(right, 0, w - 1)], np.inf)
        out[y] = np.where(valid, row, np.minimum(lv, rv))
    return out


def score(disp: np.ndarray, gt: np.ndarray, f: float, base: float, doffs: float, common: np.ndarray) -> dict:
    from gdvision.depth import depth_metrics, disparity_metrics, disparity_to_depth

    gz = disparity_to_depth(gt, f, base, doffs)
    z = disparity_to_depth(disp, f, base, doffs)
    m = disparity_metrics(disp, gt)
    dmet = depth_metrics(z, gz)
    out = {
        "bad_1.0": m["bad_1.0"],
        "bad_2.0": m["bad_2.0"],
        "bad_4.0": m["bad_4.0"],
        "holes": m["holes"],
        "epe": m["epe"],
        "abs_rel": dmet["abs_rel"],
        "delta_1": dmet["delta_1"],
        "coverage": dmet["coverage"],
        "abs_rel_common": depth_metrics(np.where(common, z, np.nan), gz)["abs_rel"],
    }
    zf = disparity_to_depth(fill_holes_middlebury(disp), f, base, doffs)
    filled = depth_metrics(zf, gz)
    out["abs_rel_filled"] = filled["abs_rel"]
    out["bad_2.0_filled"] = disparity_metrics(fill_holes_middlebury(disp), gt)["bad_2.0"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="half-size images, fewer iterations")
    ap.add_argument("--repeat", type=int, default=3, help="timing repeats for OpenCV")
    ap.add_argument("--threads", type=int, default=2, help="torch and OpenCV threads")
    ap.add_argument("--no-random", action="store_true", help="skip the random-initialisation run")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "depth.json")
    args = ap.parse_args()

    import cv2
    import imageio.v3 as iio
    import torch

    from gdvision.depth import DepthConfig, View, depth_to_disparity, estimate_depth

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    data = find_data()
    cal = json.loads((data / "calib.json").read_text())
    left8 = iio.imread(data / "left.png")
    right8 = iio.imread(data / "right.png")
    gt = np.load(data / "disp_left.npy").astype(np.float64)
    K0 = np.array(cal["cameras"]["left"]["K"], dtype=np.float64)
    K1 = np.array(cal["cameras"]["right"]["K"], dtype=np.float64)
    T1 = np.array(cal["cameras"]["right"]["T_world_to_cam"], dtype=np.float64)
    base, doffs, f = float(cal["baseline_mm"]), float(cal["doffs_px"]), float(K0[0, 0])
    ndisp = 64
    if args.quick:  # half size: pixel x_half = x_full / 2 (pyrDown convention), disparities halve
        left8, right8 = cv2.pyrDown(left8), cv2.pyrDown(right8)
        gt = gt[::2, ::2] / 2.0
        S = np.diag([0.5, 0.5, 1.0])
        K0, K1 = S @ K0, S @ K1
        f, doffs, ndisp = f / 2, doffs / 2, 32
    h, w = gt.shape
    results: dict[str, dict] = {}

    # ---- OpenCV
    gl, gr = cv2.cvtColor(left8, cv2.COLOR_RGB2GRAY), cv2.cvtColor(right8, cv2.COLOR_RGB2GRAY)
    bs = 5
    sgbm = cv2.StereoSGBM_create(
        minDisparity=0,
        numDisparities=ndisp,
        blockSize=bs,
        P1=8 * 3 * bs * bs,
        P2=32 * 3 * bs * bs,
        uniquenessRatio=10,
        speckleWindowSize=100,
        speckleRange=2,
        mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY,
    )
    bm = cv2.StereoBM_create(numDisparities=ndisp, blockSize=15)
    bm.setUniquenessRatio(10)
    bm.setSpeckleWindowSize(100)
    bm.setSpeckleRange(2)
    lb, rb = cv2.cvtColor(left8, cv2.COLOR_RGB2BGR), cv2.cvtColor(right8, cv2.COLOR_RGB2BGR)
    disps: dict[str, np.ndarray] = {}
    times: dict[str, float] = {}
    for name, fn in (("opencv_sgbm", lambda: sgbm.compute(lb, rb)), ("opencv_bm", lambda: bm.compute(gl, gr))):
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            raw = fn()
            best = min(best, time.perf_counter() - t0)
        d = raw.astype(np.float64) / 16.0
        d[raw < 0] = np.nan  # invalid = (minDisparity - 1) * 16
        disps[name] = d
        times[name] = best
    common = np.isfinite(disps["opencv_sgbm"])

    # ---- gdvision
    to_t = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0).permute(2, 0, 1)[None]  # noqa: E731
    ref = View(to_t(left8), torch.from_numpy(K0), torch.eye(4, dtype=torch.float64), name="left")
    src = View(to_t(right8), torch.from_numpy(K1), torch.from_numpy(T1), name="right")
    zmin, zmax = f * base / (ndisp + doffs), f * base / (0 + doffs)
    runs = {"gdvision": "sweep"} if args.no_random else {"gdvision": "sweep", "gdvision_random_init": "random"}
    curves: dict[str, list[float]] = {}
    cpu_times: dict[str, float] = {}
    level_info: dict[str, list] = {}
    for name, init in runs.items():
        torch.manual_seed(0)
        cfg = DepthConfig(min_depth=zmin, max_depth=zmax, init=init)
        if args.quick:
            cfg.iters, cfg.finest_iters, cfg.min_size = 40, 10, 100
        losses: list[float] = []
        c0 = time.process_time()
        res = estimate_depth(ref, [src], cfg, progress=lambda p, L=losses: L.append(p.loss))  # noqa: B023
        cpu_times[name] = time.process_time() - c0
        times[name] = res.seconds
        disps[name] = depth_to_disparity(res.depth.numpy(), f, base, doffs)
        curves[name] = losses
        level_info[name] = res.levels
    if torch.cuda.is_available():
        dev = torch.device("cuda")
        cfg = DepthConfig(min_depth=zmin, max_depth=zmax)
        estimate_depth(ref, [src], cfg, device=dev)  # warm-up
        res = estimate_depth(ref, [src], cfg, device=dev)
        times["gdvision_cuda"] = res.seconds
        disps["gdvision_cuda"] = depth_to_disparity(res.depth.numpy(), f, base, doffs)

    for name, d in disps.items():
        results[name] = score(d, gt, f, base, doffs, common)
        results[name]["seconds"] = times[name]
    for name in level_info:
        results[name]["levels"] = level_info[name]
        results[name]["cpu_seconds"] = cpu_times[name]
        c = curves[name]
        results[name]["loss_first"] = c[0] if c else None
        results[name]["loss_last"] = c[-1] if c else None
    ref_t = times["opencv_sgbm"]
    for name in results:
        results[name]["time_vs_sgbm"] = times[name] / ref_t

    meta = {
        "image_wh": [w, h],
        "data": str(data),
        "threads": args.threads,
        "quick": args.quick,
        "ndisp": ndisp,
        "torch": torch.__version__,
        "opencv": cv2.__version__,
        "sgbm": "blockSize 5, SGBM_3WAY, P1/P2 = 8/32*3*25, uniqueness 10, speckle 100/2, minDisparity 0",
        "bm": "blockSize 15, uniqueness 10, speckle 100/2, gray",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from gdvision.io.images import write_json

    write_json(args.out, {"meta": meta, "results": results})
    hdr = f"{'method':22s} {'bad-2':>7s} {'holes':>7s} {'AbsRel':>7s} {'d<1.25':>7s} {'AbsRel@SGBM px':>14s} "
    hdr += f"{'AbsRel filled':>13s} {'bad-1':>7s} {'bad-4':>7s} {'seconds':>8s} {'x SGBM':>8s}"
    print(f"Middlebury Motorcycle {w}x{h}, {args.threads} thread(s) ({data})")
    print(hdr)
    for name, r in results.items():
        print(
            f"{name:22s} {r['bad_2.0'] * 100:6.2f}% {r['holes'] * 100:6.2f}% {r['abs_rel']:7.4f} {r['delta_1']:7.4f} "
            f"{r['abs_rel_common']:14.4f} {r['abs_rel_filled']:13.4f} {r['bad_1.0'] * 100:6.2f}% "
            f"{r['bad_4.0'] * 100:6.2f}% {r['seconds']:8.2f} {r['time_vs_sgbm']:8.1f}"
        )
    for name in level_info:
        print(f"{name}: {cpu_times[name]:.1f} CPU seconds")
        print(
            f"{name}: loss {results[name]['loss_first']:.4f} -> {results[name]['loss_last']:.4f}, "
            f"levels {level_info[name]}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
