"""The batch engine: manifests, the run log, resume after a kill, torchrun ranks, CI thresholds, compare."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from typer.testing import CliRunner

from gdvision.cli.app import app
from gdvision.errors import UsageError
from gdvision.runs.compare import compare_runs, direction
from gdvision.runs.engine import check_thresholds, manifest_items, read_manifest
from gdvision.tasks.edges import EdgesJob
from gdvision.tasks.register import RegisterJob

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 small RGB images of two sizes and an edges manifest listing them (and one corrupt file)."""
    d = tmp_path_factory.mktemp("batch")
    rng = np.random.default_rng(0)
    rows = ["id,image"]
    for i in range(24):
        img = (rng.random((40 + 8 * (i % 2), 56, 3)) * 255).astype(np.uint8)
        iio.imwrite(d / f"im{i:02d}.png", img)
        rows.append(f"item{i:02d},im{i:02d}.png")
    (d / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    (d / "all.csv").write_text("\n".join(rows) + "\n")
    (d / "with_bad.csv").write_text("\n".join([*rows[:5], "broken,bad.png"]) + "\n")
    return d


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "run.jsonl").read_text().splitlines()]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_manifest_csv_and_jsonl(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("a,b,gt\nx/a.png,b.png,\n")
    (tmp_path / "m.jsonl").write_text(json.dumps({"a": "x/a.png", "b": "b.png", "model": "affine"}) + "\n\n")
    job = RegisterJob(None, None)
    csv_items = manifest_items(tmp_path / "m.csv", job, tmp_path / "out")
    jl_items = manifest_items(tmp_path / "m.jsonl", job, tmp_path / "out")
    for items in (csv_items, jl_items):
        assert items[0].id == "a__b" and items[0].path("a") == tmp_path / "x" / "a.png"
        assert items[0].out == tmp_path / "out" / "a__b.json"
    assert jl_items[0].get("model") == "affine" and csv_items[0].get("gt") is None
    (tmp_path / "bad.csv").write_text("a,c\n1,2\n")
    with pytest.raises(UsageError, match="missing: b"):
        manifest_items(tmp_path / "bad.csv", job, tmp_path)
    (tmp_path / "unknown.csv").write_text("a,b,colour\n1,2,3\n")
    with pytest.raises(UsageError, match="unknown column"):
        manifest_items(tmp_path / "unknown.csv", job, tmp_path)
    (tmp_path / "broken.jsonl").write_text("{not json\n")
    with pytest.raises(UsageError, match="line 1"):
        read_manifest(tmp_path / "broken.jsonl")


def test_edges_manifest_log_failures_and_resume(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["edges", "--manifest", str(image_folder / "with_bad.csv"), "-o", str(out), "--device", "cpu", "--json"]
    r = runner.invoke(app, args)
    assert r.exit_code == 1  # the corrupt file failed, the others were written
    rep = json.loads(r.stdout)
    assert rep["ok"] == 4 and rep["failed"] == 1 and rep["failures"][0]["id"] == "broken"
    log = _log(out)
    assert sorted(x["id"] for x in log if x["status"] == "ok") == ["item00", "item01", "item02", "item03"]
    ok = next(x for x in log if x["id"] == "item01")
    assert Path(ok["outputs"]["edges"]).is_file() and ok["metrics"]["mean"] > 0
    # the output is the library's result for that image
    from gdvision.filters.edges import EdgeConfig, edge_map, to_unit_range

    x = iio.imread(image_folder / "im01.png").astype(np.float32) / 255.0
    import torch

    want = to_unit_range(edge_map(torch.from_numpy(x).permute(2, 0, 1)[None], EdgeConfig()), EdgeConfig())
    got = iio.imread(out / "item01.png").astype(np.float32) / 255.0
    assert np.abs(got - want[0].permute(1, 2, 0).numpy()).max() <= 0.5 / 255 + 1e-6
    stamp = (out / "item00.png").stat().st_mtime_ns
    r = runner.invoke(app, [*args, "--resume"])
    assert r.exit_code == 1 and json.loads(r.stdout)["already_done"] == 4
    assert (out / "item00.png").stat().st_mtime_ns == stamp  # finished items are never redone
    r = runner.invoke(app, [*args, "--max-metric", "mean=1e-9", "--resume"])
    assert r.exit_code == 1 and "item00" in r.stderr


def test_killed_run_resumes_without_loss_or_duplicates(image_folder: Path, tmp_path: Path) -> None:
    """Kill a real process mid-run, resume, and compare with an uninterrupted run: same items, same bytes."""
    manifest = image_folder / "all.csv"
    base = [sys.executable, "-m", "gdvision", "edges", "--manifest", str(manifest), "--device", "cpu", "--quiet"]
    base += ["--batch-size", "1", "--workers", "1"]
    full = tmp_path / "full"
    subprocess.run([*base, "-o", str(full)], check=True, env=_env(), timeout=300)
    cut = tmp_path / "cut"
    proc = subprocess.Popen([*base, "-o", str(cut)], env=_env(), start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline:
        done = (cut / "run.jsonl").read_text().count("\n") if (cut / "run.jsonl").exists() else 0
        if done >= 3 or proc.poll() is not None:
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_with = len(_log(cut))
    r = subprocess.run([*base, "-o", str(cut), "--resume", "--json"], env=_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["already_done"] == killed_with and rep["done_now"] == 24 - killed_with
    ids = [x["id"] for x in _log(cut)]
    assert sorted(ids) == sorted(x["id"] for x in _log(full)) and len(ids) == len(set(ids)) == 24
    for i in range(24):
        assert (cut / f"item{i:02d}.png").read_bytes() == (full / f"item{i:02d}.png").read_bytes()
    assert killed_with < 24, "the run finished before it could be killed: the test proved nothing"


def test_torchrun_two_processes_equal_one(image_folder: Path, tmp_path: Path) -> None:
    """2 ranks on the CPU with gloo: every item exactly once, merged by rank 0, same outputs as one process."""
    manifest = image_folder / "all.csv"
    one, two = tmp_path / "one", tmp_path / "two"
    cmd = ["-m", "gdvision", "edges", "--manifest", str(manifest), "--device", "cpu", "--json", "--batch-size", "4"]
    subprocess.run([sys.executable, *cmd, "-o", str(one)], check=True, env=_env(), capture_output=True, timeout=300)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    r = subprocess.run([*torchrun, *cmd, "-o", str(two)], env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    reports = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == 1 and reports[0]["ranks"] == 2 and reports[0]["ok"] == 24  # rank 0 reports for all
    log = _log(two)
    assert sorted(x["id"] for x in log) == sorted(x["id"] for x in _log(one)) and len(log) == 24
    assert {x["rank"] for x in log} == {0, 1}
    assert all(x["index"] % 2 == x["rank"] for x in log)
    assert not list(two.glob("run.rank*.jsonl"))  # per-rank logs were merged
    for x in log:
        assert Path(x["outputs"]["edges"]).read_bytes() == (one / Path(x["outputs"]["edges"]).name).read_bytes()


def test_thresholds_name_the_items() -> None:
    recs = [{"id": f"p{i}", "status": "ok", "metrics": {"corner_error_px": e}} for i, e in enumerate([0.1, 0.2, 5.0])]
    assert check_thresholds(recs, {"corner_error_px": 1.0}, {}) == []
    (msg,) = check_thresholds(recs, {"corner_error_px": 0.15}, {})
    assert "p1" in msg and "p2" in msg and "p0" not in msg
    (msg,) = check_thresholds(recs, {}, {"inliers": 10})
    assert "no item reports" in msg


def _write_log(path: Path, values: dict[str, float], failed: tuple[str, ...] = ()) -> Path:
    lines = []
    for i, (iid, v) in enumerate(values.items()):
        status = "failed" if iid in failed else "ok"
        lines.append(json.dumps({"id": iid, "index": i, "status": status, "metrics": {"corner_error_px": v}}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_compare_runs(tmp_path: Path) -> None:
    base = _write_log(tmp_path / "base.jsonl", {"a": 0.10, "b": 0.20, "c": 0.30})
    same = _write_log(tmp_path / "same.jsonl", {"a": 0.10, "b": 0.21, "c": 0.25})
    worse = _write_log(tmp_path / "worse.jsonl", {"a": 0.50, "b": 0.20}, failed=("b",))
    assert direction("corner_error_px") == -1 and direction("inliers") == 1
    res = compare_runs(same, base, tolerance=0.02)
    assert res.regressions == [] and [x["id"] for x in res.improvements] == ["c"]
    assert [x["id"] for x in compare_runs(same, base).regressions] == ["b"]  # 0.21 > 0.20 with no tolerance
    res = compare_runs(worse, base, tolerance=0.02)
    assert sorted(x["id"] for x in res.regressions) == ["a", "b", "c"]  # worse, newly failed, missing
    r = runner.invoke(app, ["compare", str(same), str(base), "--tolerance", "0.02"])
    assert r.exit_code == 0
    r = runner.invoke(app, ["compare", str(worse), str(base), "--json"])
    assert r.exit_code == 1 and json.loads(r.stdout)["regressed"] == 3
    r = runner.invoke(app, ["compare", str(tmp_path / "nope.jsonl"), str(base)])
    assert r.exit_code == 2


def test_manifest_usage_errors(image_folder: Path, tmp_path: Path) -> None:
    m = str(image_folder / "all.csv")
    r = runner.invoke(app, ["edges", str(image_folder / "im00.png"), "--manifest", m, "-o", str(tmp_path)])
    assert r.exit_code == 2 and "not both" in r.output
    r = runner.invoke(app, ["edges", "--manifest", m, "-o", str(tmp_path), "--max-metric", "mean"])
    assert r.exit_code == 2 and "NAME=VALUE" in r.output
    r = runner.invoke(app, ["register", "--manifest", m, "--out-dir", str(tmp_path)])
    assert r.exit_code == 2 and "needs column" in r.output
    r = runner.invoke(app, ["edges", "--manifest", m, "-o", str(tmp_path), "--resume", "--overwrite"])
    assert r.exit_code == 2
    assert EdgesJob(None, None).required == ("image",)


def test_items_of_a_crashed_rank_are_resumed(image_folder: Path, tmp_path: Path) -> None:
    """Rank 1 of 2 logged its share, then the run died before rank 0 merged: a 1-process --resume keeps that share."""
    import torch

    from gdvision.filters.edges import EdgeConfig
    from gdvision.runs.engine import run_items

    out = tmp_path / "out"
    job = EdgesJob(EdgeConfig(), torch.device("cpu"))
    items = manifest_items(image_folder / "all.csv", job, out)
    part = run_items(job, items, out, rank=1, world=2)
    assert part.done_now == 12 and (out / "run.rank1.jsonl").exists() and not (out / "run.jsonl").exists()
    args = ["edges", "--manifest", str(image_folder / "all.csv"), "-o", str(out), "--device", "cpu", "--json"]
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "--resume" in r.output  # finished items exist: no silent mixing
    r = runner.invoke(app, [*args, "--resume"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["already_done"] == 12 and rep["done_now"] == 12 and rep["ok"] == 24
    log = _log(out)
    assert sorted(x["id"] for x in log) == [f"item{i:02d}" for i in range(24)]
    assert {x["rank"] for x in log if x["index"] % 2 == 1} == {1}  # rank 1's records were kept, not redone
    assert not list(out.glob("run.rank*.jsonl"))


def test_a_failing_batch_fails_its_items_only(image_folder: Path, tmp_path: Path) -> None:
    """A solver error in one batch (an image too small for a 'valid' 5x5 filter) is logged; the others finish."""
    iio.imwrite(image_folder / "tiny.png", np.zeros((3, 3, 3), np.uint8))
    (image_folder / "tiny.csv").write_text("id,image\nsmall,tiny.png\nbig,im00.png\n")
    out = tmp_path / "out"
    args = ["edges", "--manifest", str(image_folder / "tiny.csv"), "-o", str(out), "--device", "cpu", "--json"]
    r = runner.invoke(app, [*args, "--border", "valid", "--ksize", "5"])
    assert r.exit_code == 1
    rep = json.loads(r.stdout)
    assert rep["ok"] == 1 and rep["failures"][0]["id"] == "small" and "too small" in rep["failures"][0]["error"]
    assert (out / "big.png").exists() and not (out / "small.png").exists()
