"""Benchmark ``gdvision depth`` against OpenCV StereoSGBM and StereoBM on the Middlebury Motorcycle pair.

Run from the repository root (on a quiet machine: other jobs stall torch's thread pool)::

    python bench/depth.py              # full 741x500 pair, the quality presets, automatic vs given range
    python bench/depth.py --quick      # half-size smoke run
    python bench/depth.py --scaling    # also time and peak memory at 1, 3 and 12 MP (a subprocess each)

Data: ``../shared/data/stereo_motorcycle`` (or ``sample_data/stereo_motorcycle``): the rectified quarter-
resolution Middlebury 2014 Motorcycle pair, GT left disparity (NaN = unknown) and ``calib.json``.

Metrics, all methods in the same run:

- ``bad_2.0``: fraction of the pixels with known GT whose disparity is off by more than 2 px; a pixel
  without an estimate counts as bad (Middlebury's rule).
- ``abs_rel`` and ``delta_1`` (delta < 1.25) on depth ``Z = f B / (d + doffs)`` over the pixels the
  method estimates (``coverage`` = that fraction); ``abs_rel_common`` over the pixels SGBM estimates too
  (the same pixel set for every method); ``abs_rel_filled`` after filling holes the Middlebury way (each
  hole takes the smaller of the nearest valid disparities to its left and right on the scanline).
- seconds (wall): best of ``--repeat`` runs for OpenCV, and for gdvision (whose per-stage seconds are those of
  its best run); ``x SGBM`` = seconds / SGBM's seconds in this run; the process CPU seconds of gdvision.

Rows of gdvision: the quality presets (``fast``, ``default``, ``best``) with the given range (disparities 0..64
px, OpenCV's ``numDisparities=64``; GT max 59.9 px); ``default, auto range``: the range the ``depth`` command
finds itself from feature matches (its seconds included); ``random start`` (Adam from noise, as Kornia's
depth example; ``--no-random`` skips it). ``--scaling`` adds rows at 1, 3 and 12 MP: the pair upsampled
(bilinear; its K scaled), the 12 MP row with the right view given twice (two source views), each solved in a
fresh subprocess that reports its peak RSS (``ru_maxrss``).
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


def load_pair(quick: bool):
    """(left8, right8, gt disparity, K0, K1, T1, f, baseline, doffs, ndisp) of the Motorcycle pair."""
    import cv2
    import imageio.v3 as iio

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
    if quick:  # half size: pixel x_half = x_full / 2 (pyrDown convention), disparities halve
        left8, right8 = cv2.pyrDown(left8), cv2.pyrDown(right8)
        gt = gt[::2, ::2] / 2.0
        S = np.diag([0.5, 0.5, 1.0])
        K0, K1 = S @ K0, S @ K1
        f, doffs, ndisp = f / 2, doffs / 2, 32
    return left8, right8, gt, K0, K1, T1, f, base, doffs, ndisp


def views(left8, right8, K0, K1, T1):
    import torch

    from gdvision.depth import View

    to_t = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0).permute(2, 0, 1)[None]  # noqa: E731
    ref = View(to_t(left8), torch.from_numpy(K0), torch.eye(4, dtype=torch.float64), name="left")
    src = View(to_t(right8), torch.from_numpy(K1), torch.from_numpy(T1), name="right")
    return ref, src


def scaling_child(mp: float, n_src: int, threads: int) -> None:
    """One scaling row in this (fresh) process: prints a JSON line with seconds, stages and peak RSS."""
    import resource

    import torch

    from gdvision.depth import DepthConfig, View, estimate_depth

    torch.set_num_threads(threads)
    left8, right8, _, K0, K1, T1, f, base, doffs, ndisp = load_pair(False)
    ref, src = views(left8, right8, K0, K1, T1)
    h0, w0 = ref.image.shape[-2:]
    s = (mp * 1e6 / (h0 * w0)) ** 0.5
    h, w = round(h0 * s), round(w0 * s)
    S = torch.diag(torch.tensor([w / w0, h / h0, 1.0], dtype=torch.float64))

    def up(v: View) -> View:
        img = torch.nn.functional.interpolate(v.image, size=(h, w), mode="bilinear", align_corners=False)
        return View(img.clamp(0, 1), S @ v.K, v.world_to_cam, name=v.name)

    big_ref, big_src = (up(ref), up(src)) if mp > 0 else (ref, src)
    cfg = DepthConfig(min_depth=f * base / (ndisp + doffs), max_depth=f * base / doffs)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    res = estimate_depth(big_ref, [big_src] * n_src, cfg)
    row = {
        "size_wh": list(big_ref.image.shape[-1:-3:-1]),
        "megapixels": big_ref.image.shape[-1] * big_ref.image.shape[-2] / 1e6,
        "sources": n_src,
        "seconds": res.seconds,
        "stages": res.stages,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_solve_mb": rss0 / 1024,
    }
    print(json.dumps(row))


def run_scaling(threads: int) -> list[dict]:
    import subprocess

    rows = []
    for mp, n_src in ((0, 1), (1.0, 1), (3.0, 1), (12.0, 2)):
        out = subprocess.run(
            [sys.executable, __file__, "--scaling-child", str(mp), str(n_src), "--threads", str(threads)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"  scaling {r['size_wh'][0]}x{r['size_wh'][1]} ({r['megapixels']:.2f} MP), {n_src} source(s): "
              f"{r['seconds']:.2f} s, peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)  # fmt: skip
    return rows


def cli_call(quick: bool, threads: int) -> dict:
    """Wall time of one in-process ``gdvision depth`` call on the pair (given range) and the solve's own seconds."""
    import os
    import subprocess
    import tempfile

    data = find_data()
    if quick:
        return {}
    left8, right8, gt, K0, K1, T1, f, base, doffs, ndisp = load_pair(False)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "gdvision", "depth", str(data / "left.png"), str(data / "right.png"), "-c",
               str(data / "calib.json"), "-o", tmp, "--min-depth", str(f * base / (ndisp + doffs)), "--max-depth",
               str(f * base / doffs), "--threads", str(threads), "--json"]  # fmt: skip
        env = {**os.environ, "GDVISION_WORKER": "0", "GDVISION_PROGRESS": "0"}
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
        wall = time.perf_counter() - t0
    summary = json.loads(out.stdout)
    return {"wall_seconds": wall, "solve_seconds": summary["seconds"], "start_up_and_io": wall - summary["seconds"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="half-size images")
    ap.add_argument("--repeat", type=int, default=3, help="timing repeats (OpenCV and the default preset)")
    ap.add_argument("--threads", type=int, default=2, help="torch and OpenCV threads")
    ap.add_argument("--no-random", action="store_true", help="skip the random-initialisation run")
    ap.add_argument("--scaling", action="store_true", help="also the 1/3/12 MP rows (minutes)")
    ap.add_argument("--scaling-child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "depth.json")
    args = ap.parse_args()
    if args.scaling_child:
        scaling_child(float(args.scaling_child[0]), int(args.scaling_child[1]), args.threads)
        return

    import cv2
    import torch

    from gdvision.depth import DepthConfig, depth_to_disparity, estimate_depth
    from gdvision.tasks.depth_range import resolve_depth_range

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    left8, right8, gt, K0, K1, T1, f, base, doffs, ndisp = load_pair(args.quick)
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
    ref, src = views(left8, right8, K0, K1, T1)
    zmin, zmax = f * base / (ndisp + doffs), f * base / (0 + doffs)
    extra: dict[str, dict] = {}
    runs: dict[str, tuple[str, dict]] = {
        "gdvision_fast": ("fast", {}),
        "gdvision_default": ("default", {}),
        "gdvision_best": ("best", {}),
        "gdvision_default_auto_range": ("default", {"auto": True}),
    }
    if not args.no_random:
        runs["gdvision_random_start"] = ("default", {"init": "random"})
    for name, (quality, opt) in runs.items():
        torch.manual_seed(0)
        auto = opt.pop("auto", False)
        cfg = DepthConfig.for_quality(quality, **({} if auto else {"min_depth": zmin, "max_depth": zmax}), **opt)
        repeats = args.repeat if name == "gdvision_default" else 1
        best_s, res, cpu, rng = float("inf"), None, 0.0, None
        for _ in range(repeats):
            c0, t0 = time.process_time(), time.perf_counter()
            run_cfg, rng = resolve_depth_range(ref, [src], cfg) if auto else (cfg, None)
            r = estimate_depth(ref, [src], run_cfg)
            wall = time.perf_counter() - t0
            if wall < best_s:
                best_s, res, cpu = wall, r, time.process_time() - c0
        times[name] = best_s
        disps[name] = depth_to_disparity(res.depth.numpy(), f, base, doffs)
        extra[name] = {"cpu_seconds": cpu, "stages": res.stages, "depth_range": [res.min_depth, res.max_depth]}
        if rng is not None:
            extra[name]["range_record"] = {k: v for k, v in rng.items() if k != "estimate"}
        print(f"  {name}: {best_s:.2f} s {res.stages}", flush=True)
    if torch.cuda.is_available():
        dev = torch.device("cuda")
        cfg = DepthConfig(min_depth=zmin, max_depth=zmax)
        estimate_depth(ref, [src], cfg, device=dev)  # warm-up
        res = estimate_depth(ref, [src], cfg, device=dev)
        times["gdvision_cuda"] = res.seconds
        disps["gdvision_cuda"] = depth_to_disparity(res.depth.numpy(), f, base, doffs)
        extra["gdvision_cuda"] = {"stages": res.stages}

    for name, d in disps.items():
        results[name] = score(d, gt, f, base, doffs, common)
        results[name]["seconds"] = times[name]
        results[name].update(extra.get(name, {}))
    ref_t = times["opencv_sgbm"]
    for name in results:
        results[name]["time_vs_sgbm"] = times[name] / ref_t
    scaling = run_scaling(args.threads) if args.scaling else []
    cli = cli_call(args.quick, args.threads)
    if cli:
        print(f"  one CLI call (in-process): {cli['wall_seconds']:.2f} s wall, of which the solve "
              f"{cli['solve_seconds']:.2f} s, start-up and I/O {cli['start_up_and_io']:.2f} s")  # fmt: skip

    meta = {
        "image_wh": [w, h],
        "data": str(find_data()),
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

    write_json(args.out, {"meta": meta, "results": results, "scaling": scaling, "cli_call": cli})
    hdr = f"{'method':28s} {'bad-2':>7s} {'holes':>7s} {'AbsRel':>7s} {'d<1.25':>7s} {'AbsRel@SGBM px':>14s} "
    hdr += f"{'AbsRel filled':>13s} {'bad-1':>7s} {'bad-4':>7s} {'seconds':>8s} {'x SGBM':>8s}"
    print(f"Middlebury Motorcycle {w}x{h}, {args.threads} thread(s) ({find_data()})")
    print(hdr)
    for name, r in results.items():
        print(
            f"{name:28s} {r['bad_2.0'] * 100:6.2f}% {r['holes'] * 100:6.2f}% {r['abs_rel']:7.4f} {r['delta_1']:7.4f} "
            f"{r['abs_rel_common']:14.4f} {r['abs_rel_filled']:13.4f} {r['bad_1.0'] * 100:6.2f}% "
            f"{r['bad_4.0'] * 100:6.2f}% {r['seconds']:8.2f} {r['time_vs_sgbm']:8.1f}"
        )
    for name, e in extra.items():
        rng = e.get("depth_range")
        print(f"{name}: stages {e['stages']}" + (f", range {rng[0]:.1f}..{rng[1]:.1f}" if rng else ""))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
