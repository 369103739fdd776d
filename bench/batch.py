"""Benchmark of batch runs: a shell loop calling the CLI per item vs one ``--manifest`` run vs torchrun.

Three ways to process the same items, timed as wall-clock seconds of the whole command(s), start-up included:

- (a) ``loop``: a shell loop calling ``gdvision edges FILE`` / ``gdvision register A B`` once per item (what batch
  scripts do); measured on the first ``--loop-items`` items (it is slow) and reported per item; run twice: in-process
  (``GDVISION_WORKER=0``, every call imports torch) and ``loop_worker``, the same calls served by a warm worker
  (``gdvision worker start``, docs/worker.md; started before and stopped after, not timed; ``--no-worker`` skips it);
- (b) ``manifest``: one ``gdvision <command> --manifest M --out-dir D`` process;
- (c) ``torchrun``: ``python -m torch.distributed.run --standalone --nproc-per-node 2 -m gdvision ... --manifest``.

Items: ``edges`` = 256x256 RGB crops of the bundled natural photos (Sobel magnitude, 8-bit PNG out);
``register`` = 320x240 synthetic homography pairs (``bench/synthetic.py``, seed 5) with ground truth.
Also start-up: ``gdvision --help`` and a bad-argument call against ``python -c pass`` (median of 15).

Usage: ``python bench/batch.py [--quick] [--threads N]`` -> ``bench/results/batch.json`` and a table. Torch threads:
(a) and (b) use ``--threads`` (default 2) intra-op threads, each torchrun rank ``threads // 2``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from synthetic import load_natural, make_pairs  # noqa: E402

RUNS = ("manifest", "torchrun")


def _wall(cmd: list[str], env: dict[str, str], check: bool = True) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    dt = time.perf_counter() - t
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    return dt


def startup(env: dict[str, str], reps: int) -> dict[str, float]:
    py = sys.executable
    cases = {
        "python -c pass": [py, "-c", "pass"],
        "gdvision --help": [py, "-m", "gdvision", "--help"],
        "gdvision register --bogus (usage error)": [py, "-m", "gdvision", "register", "--bogus"],
    }
    out = {}
    for name, cmd in cases.items():
        out[name] = round(statistics.median(_wall(cmd, env, check=False) for _ in range(reps)), 4)
    return out


def make_edges_items(folder: Path, n: int) -> Path:
    import imageio.v3 as iio

    photos = [p for p in load_natural() if p.shape[0] > 256 and p.shape[1] > 256 and p.shape[2] >= 3]
    rng = np.random.default_rng(0)
    rows = ["image"]
    for i in range(n):
        ph = photos[i % len(photos)]
        y0, x0 = rng.integers(0, ph.shape[0] - 256), rng.integers(0, ph.shape[1] - 256)
        crop = (ph[y0 : y0 + 256, x0 : x0 + 256, :3] * 255).round().astype(np.uint8)
        iio.imwrite(folder / f"img_{i:04d}.png", crop)
        rows.append(f"img_{i:04d}.png")
    (folder / "edges.csv").write_text("\n".join(rows) + "\n")
    return folder / "edges.csv"


def make_register_items(folder: Path, n: int) -> Path:
    import imageio.v3 as iio

    pairs = make_pairs(load_natural(), n, size=(320, 240), seed=5)
    rows = ["a,b,gt"]
    for i, p in enumerate(pairs):
        for k in ("a", "b"):
            img = (np.clip(p[k], 0, 1) * 255).round().astype(np.uint8)
            iio.imwrite(folder / f"p{i:03d}_{k}.png", img[..., 0] if img.shape[2] == 1 else img)
        (folder / f"p{i:03d}_gt.json").write_text(json.dumps({"H": p["H"].tolist()}))
        rows.append(f"p{i:03d}_a.png,p{i:03d}_b.png,p{i:03d}_gt.json")
    (folder / "register.csv").write_text("\n".join(rows) + "\n")
    return folder / "register.csv"


def shell_loop(command: str, lines: list[str], folder: Path, out: Path, extra: list[str], env: dict[str, str]) -> float:
    """Items per second of one ``gdvision`` process per item (``lines``: manifest rows, files under ``folder``)."""
    py = sys.executable
    t = 0.0
    for i, line in enumerate(lines):
        cols = line.split(",")
        if command == "edges":
            cmd = [py, "-m", "gdvision", "edges", str(folder / cols[0]), "-o", str(out), *extra]
        else:
            res = out / f"{i}.json"
            cmd = [py, "-m", "gdvision", "register", str(folder / cols[0]), str(folder / cols[1]), "--out", str(res)]
            cmd += ["--gt", str(folder / cols[2]), *extra]
            out.mkdir(parents=True, exist_ok=True)
        t += _wall(cmd, env)
    return len(lines) / t


def run_three(
    command: str, manifest: Path, loop_items: int, threads: int, env: dict[str, str], worker: bool = True
) -> dict[str, object]:
    py = sys.executable
    lines = manifest.read_text().splitlines()[1:]
    n = len(lines)
    work = Path(tempfile.mkdtemp(prefix=f"gdv-bench-{command}-"))
    folder = manifest.parent
    extra = ["--device", "cpu", "--quiet"]
    if command == "edges":
        extra += ["--threads", str(threads)]
    # (a) one process per item, in-process, then served by a warm worker (its own private folder)
    loop_rate = shell_loop(command, lines[:loop_items], folder, work / "loop", extra, dict(env, GDVISION_WORKER="0"))
    worker_rate = None
    if worker:
        wenv = dict(env, GDVISION_WORKER_DIR=str(work / "worker"), GDVISION_WORKER="1")
        _wall([py, "-m", "gdvision", "worker", "start", "--idle-timeout", "600", "--no-watch", "-q"], wenv)
        try:
            worker_rate = shell_loop(command, lines[:loop_items], folder, work / "loop_worker", extra, wenv)
            served = json.loads(
                subprocess.run(
                    [py, "-m", "gdvision", "worker", "status", "--json"], env=wenv, capture_output=True, text=True
                ).stdout
            )["calls_served"]
            if served != loop_items:
                raise RuntimeError(f"the worker served {served} of {loop_items} calls")
        finally:
            _wall([py, "-m", "gdvision", "worker", "stop", "-q"], wenv, check=False)
    # (b) one manifest run
    man = [py, "-m", "gdvision", command, "--manifest", str(manifest), "--out-dir", str(work / "manifest"), *extra]
    t_b = _wall(man, env)
    # (c) torchrun, 2 processes
    env_c = dict(env, OMP_NUM_THREADS=str(max(1, threads // 2)))
    tr = [py, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "gdvision", command]
    tr += ["--manifest", str(manifest), "--out-dir", str(work / "torchrun"), *extra]
    if command == "edges":
        tr[tr.index("--threads") + 1] = str(max(1, threads // 2))
    t_c = _wall(tr, env_c)
    logs = {k: [json.loads(x) for x in (work / k / "run.jsonl").read_text().splitlines()] for k in RUNS}

    res: dict[str, object] = {
        "items": n,
        "loop_items": loop_items,
        "loop_per_s": round(loop_rate, 3),
        "loop_worker_per_s": None if worker_rate is None else round(worker_rate, 3),
        "worker_speedup_vs_loop": None if worker_rate is None else round(worker_rate / loop_rate, 2),
        "manifest_per_s": round(n / t_b, 3),
        "torchrun2_per_s": round(n / t_c, 3),
        "manifest_speedup_vs_loop": round((n / t_b) / loop_rate, 2),
        "torchrun2_speedup_vs_loop": round((n / t_c) / loop_rate, 2),
        "torchrun2_speedup_vs_manifest": round(t_b / t_c, 2),
        "all_items_ok": all(len(v) == n and all(r["status"] == "ok" for r in v) for v in logs.values()),
    }
    if command == "register":
        for k, v in logs.items():
            errs = [r["metrics"]["corner_error_px"] for r in v if "corner_error_px" in r["metrics"]]
            res[f"{k}_median_corner_error_px"] = round(statistics.median(errs), 4)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--edges-items", type=int, default=500)
    ap.add_argument("--register-items", type=int, default=64)
    ap.add_argument("--loop-items", type=int, default=10)
    ap.add_argument("--no-worker", action="store_true", help="skip the shell loop served by a warm worker")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "batch.json")
    args = ap.parse_args()
    if args.quick:
        args.edges_items, args.register_items, args.loop_items = 40, 8, 3
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    result: dict[str, object] = {
        "benchmark": "batch runs: per-item CLI loop vs one --manifest run vs torchrun 2 processes (CPU)",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "load_avg_at_start": os.getloadavg(),
        "threads": args.threads,
    }
    result["startup_s"] = startup(env, 5 if args.quick else 15)
    print("start-up (median wall s): " + ", ".join(f"{k} {v}" for k, v in result["startup_s"].items()), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "e").mkdir()
        (d / "r").mkdir()
        em = make_edges_items(d / "e", args.edges_items)
        rm = make_register_items(d / "r", args.register_items)
        for name, man in (("edges", em), ("register", rm)):
            result[name] = run_three(name, man, args.loop_items, args.threads, env, worker=not args.no_worker)
            r = result[name]
            unit = "files/s" if name == "edges" else "pairs/s"
            print(
                f"{name:9s} ({r['items']} items): loop {r['loop_per_s']} {unit} (1.00x) | loop with worker "
                f"{r['loop_worker_per_s']} ({r['worker_speedup_vs_loop']}x) | manifest "
                f"{r['manifest_per_s']} ({r['manifest_speedup_vs_loop']}x) | torchrun x2 {r['torchrun2_per_s']} "
                f"({r['torchrun2_speedup_vs_loop']}x; {r['torchrun2_speedup_vs_manifest']}x manifest) | "
                f"all ok: {r['all_items_ok']}",
                flush=True,
            )
    result["load_avg_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
