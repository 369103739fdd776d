"""Registration benchmark: gdvision vs kornia ImageRegistrator vs OpenCV ECC, on the same pairs, same run.

Run from the repository root (needs the ``bench`` extra: ``pip install -e .[bench]``)::

    python bench/register.py            # full: 50 synthetic 640x480 pairs + ITK brain slices + --init refinement
    python bench/register.py --quick    # smoke run: 6 pairs

Synthetic set (``bench/synthetic.py``): 640x480 crops of the CC0 photos in ``../shared/data/natural``, each
corner moved uniformly by up to 12.5% of the image size, B with gain U(0.8, 1.2), bias U(-0.05, 0.05) and
noise sigma 0.01, seed 0. Success = mean corner error < 3 px. Times are medians of seconds per pair on this
machine with ``--threads`` threads for every library (default 2), so compare the ratios, not the seconds.

Writes ``bench/results/register.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from synthetic import SHARED, itk_brain_pairs, load_natural, make_pairs  # noqa: E402

from gdvision.coords import mean_corner_error  # noqa: E402
from gdvision.io.images import to_gray  # noqa: E402
from gdvision.register import RegisterConfig, register_batch  # noqa: E402


def corner_error(H: np.ndarray, Hgt: np.ndarray, h: int, w: int) -> float:
    if H is None or not np.isfinite(H).all():
        return float("inf")
    return float(mean_corner_error(torch.from_numpy(H), torch.from_numpy(Hgt), h, w))


def to_tensor(x: np.ndarray, device: str = "cpu") -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].to(device)


def gray(x: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) if x.shape[2] == 3 else x[..., 0]


def run_gdvision(
    pairs: list[dict], device: str, loss: str = "ncc", init=None, model: str = "homography"
) -> tuple[list, list]:
    Hs, secs = [], []
    for i, p in enumerate(pairs):
        a, b = to_tensor(p["a"], device), to_tensor(p["b"], device)
        h0 = None if init is None else torch.from_numpy(init[i])
        t = time.perf_counter()
        res = register_batch(a, b, RegisterConfig(loss=loss, model=model), init=h0)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        secs.append(time.perf_counter() - t)
        Hs.append(None if bool(res.failed[0]) else res.H[0].cpu().numpy())
    return Hs, secs


def run_gdvision_batched(pairs: list[dict], device: str, batch: int = 16) -> tuple[list, list]:
    Hs, secs = [], []
    for s in range(0, len(pairs), batch):
        chunk = pairs[s : s + batch]
        a = torch.cat([to_gray(to_tensor(p["a"], device)) for p in chunk])
        b = torch.cat([to_gray(to_tensor(p["b"], device)) for p in chunk])
        t = time.perf_counter()
        res = register_batch(a, b, RegisterConfig())
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        dt = (time.perf_counter() - t) / len(chunk)
        for k in range(len(chunk)):
            Hs.append(None if bool(res.failed[k]) else res.H[k].cpu().numpy())
            secs.append(dt)
    return Hs, secs


def ecc_coarse_to_fine(a: np.ndarray, b: np.ndarray, levels: int = 4) -> np.ndarray | None:
    """OpenCV ECC homography A -> B over a Gaussian pyramid (what OpenCV users write)."""
    pa, pb = [gray(a)], [gray(b)]
    for _ in range(levels - 1):
        pa.append(cv2.pyrDown(pa[-1]))
        pb.append(cv2.pyrDown(pb[-1]))
    S = np.diag([2.0, 2.0, 1.0])
    Si = np.linalg.inv(S)
    H = np.eye(3)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-4)
    for lv in range(levels - 1, -1, -1):
        try:
            _, W = cv2.findTransformECC(pa[lv], pb[lv], H.astype(np.float32), cv2.MOTION_HOMOGRAPHY, criteria, None, 5)
        except cv2.error:
            return None
        H = W.astype(np.float64)
        if lv > 0:
            H = S @ H @ Si
    # findTransformECC(template=A, input=B) returns W with B(W x) ~ A(x): W maps A pixels to B pixels.
    return H / H[2, 2]


def run_ecc(pairs: list[dict]) -> tuple[list, list]:
    Hs, secs = [], []
    for p in pairs:
        t = time.perf_counter()
        Hs.append(ecc_coarse_to_fine(p["a"], p["b"]))
        secs.append(time.perf_counter() - t)
    return Hs, secs


def run_kornia(pairs: list[dict]) -> tuple[list, list]:
    from kornia.geometry.conversions import denormalize_homography
    from kornia.geometry.transform import ImageRegistrator

    Hs, secs = [], []
    for p in pairs:
        a, b = to_tensor(p["a"]), to_tensor(p["b"])
        h, w = a.shape[-2:]
        t = time.perf_counter()
        reg = ImageRegistrator("homography")
        M = reg.register(a, b)  # maps normalized B (dst) coordinates to A (src) coordinates
        secs.append(time.perf_counter() - t)
        Hpix = denormalize_homography(M.detach(), (h, w), (h, w))[0].double().numpy()
        H = np.linalg.inv(Hpix)
        Hs.append(H / H[2, 2])
    return Hs, secs


def summarize(name: str, pairs: list[dict], Hs: list, secs: list) -> dict:
    errs = [corner_error(H, p["H"], p["a"].shape[0], p["a"].shape[1]) for H, p in zip(Hs, pairs, strict=True)]
    ok = [e < 3.0 for e in errs]
    return {
        "method": name,
        "pairs": len(pairs),
        "success_rate": sum(ok) / len(ok),
        "median_corner_error_px": statistics.median(errs),
        "mean_corner_error_px_successes": statistics.mean([e for e in errs if e < 3.0]) if any(ok) else None,
        "median_seconds_per_pair": statistics.median(secs),
        "errors_px": [round(e, 4) if np.isfinite(e) else None for e in errs],
    }


def perturbed_init(pairs: list[dict], px: float, seed: int) -> list[np.ndarray]:
    """Start homographies whose corners are off the truth by about ``px`` pixels (a feature-based start)."""
    rng = np.random.default_rng(seed)
    out = []
    for p in pairs:
        h, w = p["a"].shape[:2]
        c = np.float32([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]])
        cb = cv2.perspectiveTransform(c[None], p["H"])[0]
        ang = rng.uniform(0, 2 * np.pi, 4)
        jitter = np.stack([np.cos(ang), np.sin(ang)], 1) * px
        out.append(cv2.getPerspectiveTransform(c, (cb + jitter).astype(np.float32)).astype(np.float64))
    return out


def sift_init(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """OpenCV SIFT + ratio test + RANSAC homography A -> B (the usual feature-based start)."""
    sift = cv2.SIFT_create()
    to8 = lambda x: np.clip(gray(x) * 255, 0, 255).astype(np.uint8)  # noqa: E731
    ka, da = sift.detectAndCompute(to8(a), None)
    kb, db = sift.detectAndCompute(to8(b), None)
    if da is None or db is None or len(ka) < 4 or len(kb) < 4:
        return None
    m = cv2.BFMatcher().knnMatch(da, db, k=2)
    good = [x[0] for x in m if len(x) == 2 and x[0].distance < 0.8 * x[1].distance]
    if len(good) < 4:
        return None
    pa = np.float32([ka[g.queryIdx].pt for g in good])
    pb = np.float32([kb[g.trainIdx].pt for g in good])
    H, _ = cv2.findHomography(pa, pb, cv2.RANSAC, 3.0)
    return H


def print_table(title: str, rows: list[dict], ref: str | None = None) -> None:
    print(f"\n{title}")
    print(f"{'method':34s} {'pairs':>5s} {'success':>8s} {'median px':>10s} {'s/pair':>8s} {'vs ' + (ref or ''):>10s}")
    ref_t = next((r["median_seconds_per_pair"] for r in rows if r["method"] == ref), None)
    for r in rows:
        ratio = f"{r['median_seconds_per_pair'] / ref_t:.2f}x" if ref_t else ""
        print(
            f"{r['method']:34s} {r['pairs']:5d} {r['success_rate'] * 100:7.1f}% {r['median_corner_error_px']:10.4f} "
            f"{r['median_seconds_per_pair']:8.4f} {ratio:>10s}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="6 pairs, skip slow parts")
    ap.add_argument("--pairs", type=int, default=50)
    ap.add_argument("--kornia-pairs", type=int, default=None, help="run kornia on the first N pairs only")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "register.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    n = 6 if args.quick else args.pairs
    pairs = make_pairs(load_natural(), n, size=(640, 480), max_corner_shift=0.125, photometric=True, seed=0)
    result: dict = {"device": args.device, "threads": args.threads, "torch": torch.__version__, "cv2": cv2.__version__}

    # warm-up (first-call allocations and kernels), not timed
    register_batch(to_tensor(pairs[0]["a"], args.device), to_tensor(pairs[0]["b"], args.device))
    rows = []
    rows.append(summarize("gdvision (single pair)", pairs, *run_gdvision(pairs, args.device)))
    rows.append(summarize("gdvision (batched x16)", pairs, *run_gdvision_batched(pairs, args.device)))
    rows.append(summarize("opencv ECC coarse-to-fine", pairs, *run_ecc(pairs)))
    kp = pairs[: (2 if args.quick else (args.kornia_pairs or n))]
    rows.append(summarize("kornia ImageRegistrator", kp, *run_kornia(kp)))
    result["synthetic"] = rows
    title = f"Synthetic 640x480, {n} pairs (corners +-12.5%, photometric change)"
    print_table(title, rows, "opencv ECC coarse-to-fine")
    single = rows[0]["median_seconds_per_pair"]
    batched = rows[1]["median_seconds_per_pair"]
    ecc = rows[2]["median_seconds_per_pair"]
    kor = rows[3]["median_seconds_per_pair"]
    result["ratios"] = {
        "kornia_over_gdvision": kor / single,
        "gdvision_over_ecc": single / ecc,
        "batched_throughput_gain": single / batched,
    }
    print(
        f"kornia/gdvision time: {kor / single:.1f}x   gdvision/ECC time: {single / ecc:.2f}x   "
        f"batched x16 throughput gain: {single / batched:.2f}x"
    )

    # ITK brain slices: mono-modal with NCC, the T1 slice with mutual information.
    brain = itk_brain_pairs()
    brows = []
    hs, ss = run_gdvision(brain, args.device)
    for p, H, s in zip(brain, hs, ss, strict=True):
        e = corner_error(H, p["H"], p["a"].shape[0], p["a"].shape[1])
        brows.append({"pair": p["name"], "loss": "ncc", "corner_error_px": e, "seconds": s})
    ecc_h, ecc_s = run_ecc(brain)
    for row, p, H, s in zip(brows, brain, ecc_h, ecc_s, strict=True):
        row["ecc_corner_error_px"] = corner_error(H, p["H"], p["a"].shape[0], p["a"].shape[1])
        row["ecc_seconds"] = s
    folder = SHARED / "itk_brain" if (SHARED / "itk_brain").is_dir() else ROOT / "sample_data" / "itk_brain"
    import imageio.v3 as iio

    t1 = iio.imread(folder / "BrainT1SliceBorder20.png").astype(np.float32)[..., None] / 255.0
    pd = iio.imread(folder / "BrainProtonDensitySliceBorder20.png").astype(np.float32)[..., None] / 255.0
    t1_pair = [{"a": pd, "b": t1, "H": np.eye(3), "name": "BrainT1SliceBorder20.png"}]
    # multi-modal: MI with the default homography and with the rigid model usual for same-subject MRI;
    # NCC shown to fail across modalities
    for loss, model in (("mi", "homography"), ("mi", "euclidean"), ("ncc", "homography")):
        hs, ss = run_gdvision(t1_pair, args.device, loss=loss, model=model)
        e = corner_error(hs[0], np.eye(3), pd.shape[0], pd.shape[1])
        row = {"pair": "BrainT1SliceBorder20.png", "loss": loss, "model": model, "corner_error_px": e}
        brows.append({**row, "seconds": ss[0]})
    result["itk_brain"] = brows
    print("\nITK brain slices (fixed = BrainProtonDensitySliceBorder20.png)")
    for r in brows:
        extra = f"  ECC {r['ecc_corner_error_px']:.3f} px" if "ecc_corner_error_px" in r else ""
        label = f"{r['loss']}/{r.get('model', 'homography')}"
        print(f"  {r['pair']:42s} {label:15s} {r['corner_error_px']:8.3f} px {r['seconds']:.3f} s{extra}")

    # Refinement from a feature-based start (--init): synthetic pairs from a start ~4 px off the truth,
    # and real pairs (ITK brain) from an OpenCV SIFT + RANSAC start.
    sub = pairs[: min(len(pairs), 20)]
    init = perturbed_init(sub, 4.0, seed=1)
    start_err = [corner_error(h, p["H"], 480, 640) for h, p in zip(init, sub, strict=True)]
    hs, _ = run_gdvision(sub, args.device, init=init)
    end_err = [corner_error(h, p["H"], 480, 640) for h, p in zip(hs, sub, strict=True)]
    refine = {
        "synthetic_start_median_px": statistics.median(start_err),
        "synthetic_final_median_px": statistics.median(end_err),
        "synthetic_final_max_px": max(end_err),
        "synthetic_below_1px": sum(e < 1 for e in end_err) / len(end_err),
        "real": [],
    }
    for p in brain:
        H0 = sift_init(p["a"], p["b"])
        if H0 is None:
            refine["real"].append({"pair": p["name"], "sift": None})
            continue
        e0 = corner_error(H0, p["H"], p["a"].shape[0], p["a"].shape[1])
        hs, _ = run_gdvision([p], args.device, init=[H0])
        e1 = corner_error(hs[0], p["H"], p["a"].shape[0], p["a"].shape[1])
        refine["real"].append({"pair": p["name"], "sift_px": e0, "refined_px": e1})
    result["refine_from_init"] = refine
    print(
        f"\n--init refinement, synthetic (start ~4 px): median {refine['synthetic_start_median_px']:.2f} -> "
        f"{refine['synthetic_final_median_px']:.4f} px, max {refine['synthetic_final_max_px']:.4f} px, "
        f"{refine['synthetic_below_1px'] * 100:.0f}% below 1 px"
    )
    for r in refine["real"]:
        if r.get("sift_px") is not None:
            print(f"  {r['pair']:42s} SIFT+RANSAC {r['sift_px']:.3f} px -> register --init {r['refined_px']:.3f} px")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
