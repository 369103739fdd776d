"""Wide-baseline registration benchmark: ``register --init none`` vs ``--init auto`` vs OpenCV SIFT (+ ECC).

Run from the repository root (needs the ``bench`` extra: ``pip install -e .[bench]``)::

    python bench/register_wide.py            # full: 50 pairs of 640x480
    python bench/register_wide.py --quick    # 20 pairs of 320x240

Pairs: views of the CC0 photos in ``../shared/data/natural`` (else ``sample_data/natural``). ``A`` is a random
crop (as in ``bench/synthetic.py``); ``B`` is the photo seen through ``H = R S P``: ``P`` moves each corner by up to
15% of the image size (perspective), ``S`` is a scale about the centre, log-uniform in [0.5, 2], ``R`` a rotation
about the centre of 30 to 90 degrees (either sign). B gets gain U(0.8, 1.2), bias U(-0.05, 0.05), and both images
Gaussian noise of sigma 0.01; seed 0.

Methods, on the same pairs in the same run (8-bit images, as written to PNG):

- ``register --init none``: gdvision's direct solve alone (the task's ``solve_pairs``, what the CLI runs);
- ``register --init auto``: the direct solve, then a start from gdvision's feature matches when the verdict
  rejects it (the new default);
- OpenCV SIFT + RANSAC: ``cv2.SIFT_create``, BFMatcher with Lowe's ratio 0.8, ``cv2.findHomography`` RANSAC 3 px;
- SIFT + ECC: ``cv2.findTransformECC`` (MOTION_HOMOGRAPHY, Gaussian 5) started from the SIFT homography (the
  SIFT result is kept when ECC throws).

Success = mean corner error < 1 px. Seconds per pair are medians with ``--threads`` threads for every library.
The verdict section counts gdvision's results above 3 px that the verdict rejected, and those within 3 px that it
rejected: ``photometric`` = the direct results as ``--init none`` judges them; ``with_features`` = the direct
results as ``--init auto`` judges them (with the feature check when features were matched) and the results of the
feature start. Near pairs (``--near``, ``bench/synthetic.py``'s ``make_pairs`` with rotations up to 35 degrees and
scales 0.7-1.4, seed 1) are added to the verdict counts so that it also sees good direct results;
``--unrelated`` pairs (A of one photo, B of the next) count how often each mode rejects a pair with no answer.

Writes ``bench/results/register_wide.json`` (``--out`` to change) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from synthetic import load_natural, make_pairs  # noqa: E402

from gdvision.coords import mean_corner_error  # noqa: E402
from gdvision.io.images import LoadedImage  # noqa: E402
from gdvision.register import RegisterConfig  # noqa: E402
from gdvision.tasks.register import Pair, solve_pairs  # noqa: E402

GOOD_PX = 1.0  # success threshold (mean corner error)
WRONG_PX = 3.0  # the verdict should reject results worse than this


def wide_homography(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A -> B pixel homography: corners moved by up to 15%, scale 0.5-2, rotation 30-90 degrees about the centre."""
    src = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float32)
    shift = rng.uniform(-0.15, 0.15, size=(4, 2)) * np.array([w, h])
    P = cv2.getPerspectiveTransform(src, (src + shift).astype(np.float32)).astype(np.float64)
    ang = math.radians(rng.uniform(30.0, 90.0)) * rng.choice([-1.0, 1.0])
    s = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    c, si = math.cos(ang) * s, math.sin(ang) * s
    R = np.array([[c, -si, cx - c * cx + si * cy], [si, c, cy - si * cx - c * cy], [0, 0, 1]])
    H = R @ P
    return H / H[2, 2]


def wide_pairs(images: list[np.ndarray], n: int, size: tuple[int, int], seed: int = 0) -> list[dict]:
    """``n`` pairs ``a``, ``b`` (uint8 H x W x C) and ``H`` (A -> B), cycling through ``images``."""
    rng = np.random.default_rng(seed)
    W, Hh = size
    out = []
    for i in range(n):
        src = images[i % len(images)]
        hs, ws = src.shape[:2]
        zoom = max(W / ws, Hh / hs) * rng.uniform(1.0, 1.25)
        ox, oy = rng.uniform(0.0, max(ws * zoom - W, 0.0)), rng.uniform(0.0, max(hs * zoom - Hh, 0.0))
        T = np.array([[zoom, 0, -ox], [0, zoom, -oy], [0, 0, 1]], dtype=np.float64)
        H = wide_homography(rng, W, Hh)
        a = cv2.warpPerspective(src, T, (W, Hh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        b = cv2.warpPerspective(src, H @ T, (W, Hh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        a, b = a.reshape(Hh, W, -1), b.reshape(Hh, W, -1)
        b = b * rng.uniform(0.8, 1.2) + rng.uniform(-0.05, 0.05)
        a, b = a + rng.normal(0.0, 0.01, a.shape), b + rng.normal(0.0, 0.01, b.shape)
        a8, b8 = ((np.clip(x, 0.0, 1.0) * 255).round().astype(np.uint8) for x in (a, b))
        out.append({"a": a8, "b": b8, "H": H})
    return out


def corner_error(H: np.ndarray | None, Hgt: np.ndarray, h: int, w: int) -> float:
    if H is None or not np.isfinite(H).all():
        return float("inf")
    return float(mean_corner_error(torch.from_numpy(H), torch.from_numpy(Hgt), h, w))


def gray(x: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) if x.shape[2] == 3 else x[..., 0]


def loaded(x: np.ndarray, name: str) -> LoadedImage:
    return LoadedImage(x.astype(np.float32) / 255.0, None, 8, Path(name))


def run_register(p: dict, mode: str) -> dict:
    pair = Pair(loaded(p["a"], "a.png"), loaded(p["b"], "b.png"), gt=p["H"])
    t = time.perf_counter()
    rec = solve_pairs([pair], RegisterConfig(), torch.device("cpu"), init_mode=mode)[0]
    return {"H": np.array(rec["H"]), "seconds": time.perf_counter() - t, "record": rec}


def sift_ransac(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    sift = cv2.SIFT_create()
    ka, da = sift.detectAndCompute(gray(a), None)
    kb, db = sift.detectAndCompute(gray(b), None)
    if da is None or db is None or len(ka) < 4 or len(kb) < 2:
        return None
    good = [m for m, n in cv2.BFMatcher().knnMatch(da, db, k=2) if m.distance < 0.8 * n.distance]
    if len(good) < 4:
        return None
    pa = np.float32([ka[m.queryIdx].pt for m in good])
    pb = np.float32([kb[m.trainIdx].pt for m in good])
    H, _ = cv2.findHomography(pa, pb, cv2.RANSAC, 3.0)
    return None if H is None else H / H[2, 2]


def ecc_refine(a: np.ndarray, b: np.ndarray, H: np.ndarray | None) -> np.ndarray | None:
    """findTransformECC(template=A, input=B) from H: W with B(W x) ~ A(x), i.e. A -> B pixels."""
    if H is None:
        return None
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-6)
    ga, gb = gray(a).astype(np.float32) / 255.0, gray(b).astype(np.float32) / 255.0
    try:
        _, W = cv2.findTransformECC(ga, gb, H.astype(np.float32), cv2.MOTION_HOMOGRAPHY, criteria, None, 5)
    except cv2.error:
        return H
    W = W.astype(np.float64)
    return W / W[2, 2]


def timed(fn, *args):
    t = time.perf_counter()
    H = fn(*args)
    return {"H": H, "seconds": time.perf_counter() - t}


def summarize(name: str, errors: list[float], secs: list[float]) -> dict:
    finite = [e if math.isfinite(e) else 1e9 for e in errors]
    return {
        "method": name,
        "success": sum(e < GOOD_PX for e in errors),
        "within_3px": sum(e < WRONG_PX for e in errors),
        "n": len(errors),
        "median_error_px": statistics.median(finite),
        "seconds_per_pair": statistics.median(secs),
    }


def add_verdicts(verdicts: dict, e_none: float, e_auto: float, none: dict, auto: dict) -> None:
    """The judged results of one pair: the direct one as ``--init none`` judges it (photometric measures) and as
    ``--init auto`` judges it (with the feature check when features were matched), and the feature-start one."""
    verdicts["photometric"].append((e_none, none["verdict"]["ok"]))
    direct = auto["direct_verdict"] if auto["start"] == "features" else auto["verdict"]
    verdicts["with_features"].append((e_none, direct["ok"]))
    if auto["start"] == "features":
        verdicts["with_features"].append((e_auto, auto["verdict"]["ok"]))


def verdict_stats(results: list[tuple[float, bool]]) -> dict:
    """Detection of > 3 px results by the verdict: ``results`` are (corner error, accepted)."""
    wrong = [ok for e, ok in results if not e <= WRONG_PX]
    good = [ok for e, ok in results if e <= WRONG_PX]
    return {
        "results": len(results),
        "wrong": len(wrong),
        "wrong_caught": sum(not ok for ok in wrong),
        "good": len(good),
        "good_rejected": sum(not ok for ok in good),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="20 pairs of 320x240")
    ap.add_argument("--pairs", type=int, default=None)
    ap.add_argument("--near", type=int, default=None, help="near pairs for the verdict (default 10, quick 6)")
    ap.add_argument("--unrelated", type=int, default=10, help="pairs of two different photos (must be rejected)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "register_wide.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    n = args.pairs or (20 if args.quick else 50)
    args.near = args.near if args.near is not None else (6 if args.quick else 10)
    size = (320, 240) if args.quick else (640, 480)
    pairs = wide_pairs(load_natural(), n, size)
    near = [
        {k: (v * 255).round().astype(np.uint8) if k in "ab" else v for k, v in p.items()}
        for p in make_pairs(load_natural(), args.near, size, max_rotation_deg=35, scale_range=(0.7, 1.4), seed=1)
    ]
    w, h = size
    names = ["register --init none", "register --init auto", "OpenCV SIFT + RANSAC", "SIFT + ECC"]
    per = {k: [] for k in names}
    starts: dict[str, int] = {}
    verdicts: dict[str, list[tuple[float, bool]]] = {"photometric": [], "with_features": []}
    measures: list[dict] = []
    near_stats = {"none": 0, "auto": 0, "n": len(near)}
    for p in near:  # bench-style pairs (what the direct solve can do): counted for the verdict only
        none, auto = run_register(p, "none"), run_register(p, "auto")
        e_none, e_auto = corner_error(none["H"], p["H"], h, w), corner_error(auto["H"], p["H"], h, w)
        near_stats["none"] += e_none < GOOD_PX
        near_stats["auto"] += e_auto < GOOD_PX
        add_verdicts(verdicts, e_none, e_auto, none["record"], auto["record"])
    unrelated = {"none_rejected": 0, "auto_rejected": 0, "n": 0}
    for i in range(min(args.unrelated, len(pairs) - 1)):  # A of one photo, B of the next: must be rejected
        p = {"a": pairs[i]["a"], "b": pairs[i + 1]["b"], "H": np.eye(3)}
        unrelated["n"] += 1
        for mode in ("none", "auto"):
            unrelated[f"{mode}_rejected"] += not run_register(p, mode)["record"]["verdict"]["ok"]
    for i, p in enumerate(pairs):
        none = run_register(p, "none")
        auto = run_register(p, "auto")
        sift = timed(sift_ransac, p["a"], p["b"])
        ecc = timed(ecc_refine, p["a"], p["b"], sift["H"])
        ecc["seconds"] += sift["seconds"]
        for k, r in zip(names, (none, auto, sift, ecc), strict=True):
            per[k].append((corner_error(r["H"], p["H"], h, w), r["seconds"]))
        rec = auto["record"]
        starts[rec["start"]] = starts.get(rec["start"], 0) + 1
        add_verdicts(verdicts, per[names[0]][-1][0], per[names[1]][-1][0], none["record"], rec)
        line = "  ".join(f"{per[k][-1][0]:9.3f}" for k in names)
        m = none["record"]["verdict"]["measures"]
        measures.append(m)
        ga = m["gradient_agreement"]
        print(f"pair {i:3d} start {rec['start']:8s} errors (px): {line}  direct agreement {ga:.3f}", flush=True)
    rows = [summarize(k, [e for e, _ in per[k]], [s for _, s in per[k]]) for k in names]
    result = {
        "pairs": n,
        "size": list(size),
        "threads": args.threads,
        "rows": rows,
        "auto_starts": starts,
        "near_success": near_stats,
        "unrelated": unrelated,
        "verdict": {k: verdict_stats(v) for k, v in verdicts.items()},
        "errors_px": {k: [e for e, _ in per[k]] for k in names},
        "direct_measures": measures,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"\n{n} pairs {w}x{h}, rotation 30-90 deg, scale 0.5-2, perspective 15%; success = error < {GOOD_PX} px")
    print(f"{'method':24s} {'success':>9s} {'<3 px':>7s} {'median px':>10s} {'s/pair':>8s}")
    for r in rows:
        succ = f"{r['success']}/{r['n']}"
        med, sec = r["median_error_px"], r["seconds_per_pair"]
        print(f"{r['method']:24s} {succ:>9s} {r['within_3px']:>7d} {med:10.3f} {sec:8.3f}")
    print(f"auto starts: {starts}; near pairs (< {GOOD_PX} px): {near_stats}; unrelated pairs: {unrelated}")
    for name, v in result["verdict"].items():
        print(
            f"verdict ({name}): {v['wrong_caught']}/{v['wrong']} results > {WRONG_PX} px rejected, "
            f"{v['good_rejected']}/{v['good']} results <= {WRONG_PX} px rejected ({v['results']} results)"
        )


if __name__ == "__main__":
    main()
