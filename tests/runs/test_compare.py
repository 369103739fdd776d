"""``gdvision compare`` as a CI gate: metric directions, metrics that vanish, options that compare nothing."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from typer.testing import CliRunner

import gdvision.depth.metrics as dm
from gdvision.cli.app import app
from gdvision.runs.compare import direction, known_metric
from gdvision.tasks.attack import attack_metrics
from gdvision.tasks.match import MatchJob
from gdvision.tasks.register import RegisterJob

runner = CliRunner()

# The direction each logged metric must have: -1 lower is better, +1 higher is better, 0 any change counts.
EXPECTED = {
    "corner_error_px": -1,
    "iterations": 0,
    "inliers": 1,
    "matches": 1,
    "keypoints_a": 1,
    "keypoints_b": 1,
    "mean": 0,
    "abs_rel": -1,
    "sq_rel": -1,
    "rmse": -1,
    "delta_1": 1,
    "delta_2": 1,
    "delta_3": 1,
    "coverage": 1,
    "pixels": 1,
    "bad_1.0": -1,
    "bad_2.0": -1,
    "bad_4.0": -1,
    "epe": -1,
    "holes": -1,
    "known_fraction": 1,
    "success": 1,
    "inliers_after": 0,  # better low for `match`, high for `unmatch`
    "corner_error_after_px": 0,
    "psnr_db_min": 1,
    "linf_255_max": -1,
}


def _edges_metrics(tmp_path: Path) -> set[str]:
    """The metric names a real ``edges --manifest`` run logs."""
    iio.imwrite(tmp_path / "a.png", (np.random.default_rng(0).random((24, 32)) * 255).astype(np.uint8))
    (tmp_path / "m.csv").write_text("id,image\na,a.png\n")
    r = runner.invoke(app, ["edges", "--manifest", str(tmp_path / "m.csv"), "-o", str(tmp_path / "out"), "-q"])
    assert r.exit_code == 0, r.output
    (rec,) = [json.loads(line) for line in (tmp_path / "out" / "run.jsonl").read_text().splitlines()]
    return set(rec["metrics"])


def _logged_metrics(tmp_path: Path) -> dict[str, set[str]]:
    """Every metric name each command records in a run log, taken from the code that records them."""
    g = np.full((6, 8), 2.0)
    g[0, 0] = np.nan
    d = g * 1.05
    d[1, 1] = np.nan
    depth = set(dm.depth_metrics(d, g)) | set(dm.depth_metrics(np.full_like(g, np.nan), g))
    depth |= set(dm.disparity_metrics(d, g)) | {"known_fraction"}  # the depth task adds known_fraction
    report = {
        "gdvision_after": {"success": True, "inliers": 12, "corner_error_px": 3.0},
        "perturbation": {"a": {"psnr_db": 40.0, "linf_255": 4.0}, "b": None},
    }
    return {
        "register": set(RegisterJob.metric_keys),
        "match": set(MatchJob.metric_keys),
        "edges": _edges_metrics(tmp_path),
        "depth": depth,
        "attack": set(attack_metrics(report)),
    }


def test_every_logged_metric_has_its_direction(tmp_path: Path) -> None:
    logged = _logged_metrics(tmp_path)
    assert {"epe", "holes", "bad_2.0", "delta_1"} <= logged["depth"] and logged["edges"] == {"mean"}
    for command, names in logged.items():
        for name in sorted(names):
            assert name in EXPECTED, f"{command} logs '{name}', which this table does not list"
            assert known_metric(name), f"{command} logs '{name}' and compare does not know its direction"
            assert direction(name) == EXPECTED[name], f"direction of {command}'s '{name}'"
    assert not known_metric("my_metric") and direction("my_metric") == 0  # unknown: any change counts
    assert direction("bad_0.5") == -1 and direction("delta_4") == 1 and direction("seconds") == -1


def _log(path: Path, metrics: dict[str, dict], failed: tuple[str, ...] = ()) -> Path:
    lines = [
        json.dumps({"id": iid, "index": i, "status": "failed" if iid in failed else "ok", "metrics": m})
        for i, (iid, m) in enumerate(metrics.items())
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _compare(run: Path, base: Path, *options: str) -> tuple[int, dict, str]:
    r = runner.invoke(app, ["compare", str(run), str(base), "--json", *options])
    report = json.loads(r.stdout) if r.exit_code != 2 else {}
    return r.exit_code, report, r.stderr


def test_depth_epe_and_holes_improving_is_not_a_regression(tmp_path: Path) -> None:
    base = _log(tmp_path / "b.jsonl", {"s": {"epe": 1.5, "holes": 0.10, "bad_2.0": 0.2, "delta_1": 0.8}})
    better = _log(tmp_path / "r.jsonl", {"s": {"epe": 1.2, "holes": 0.05, "bad_2.0": 0.1, "delta_1": 0.9}})
    code, rep, _ = _compare(better, base)
    assert code == 0 and rep["regressed"] == 0 and rep["improved"] == 1 and rep["improved_metrics"] == 4
    worse = _log(tmp_path / "w.jsonl", {"s": {"epe": 1.6, "holes": 0.10, "bad_2.0": 0.2, "delta_1": 0.8}})
    code, rep, _ = _compare(worse, base)
    assert code == 1 and [(x["metric"], x["run"]) for x in rep["regressions"]] == [("epe", 1.6)]


@pytest.mark.parametrize("value", [None, "missing", "nan"])
def test_a_metric_that_becomes_null_or_disappears_regresses(tmp_path: Path, value: str | None) -> None:
    """Defect 9: the baseline has a number, the run has null, NaN, or no such metric: exit 1."""
    base = _log(tmp_path / "b.jsonl", {"p": {"corner_error_px": 0.3, "iterations": 40}, "q": {"corner_error_px": 0.2}})
    run_p = {"iterations": 40} if value == "missing" else {"corner_error_px": value, "iterations": 40}
    run = _log(tmp_path / "r.jsonl", {"p": run_p, "q": {"corner_error_px": 0.2}})
    if value == "nan":  # a hand-written log with a NaN literal (the engine writes null)
        run.write_text(run.read_text().replace('"nan"', "NaN"))
    code, rep, err = _compare(run, base)
    expect = "missing" if value == "missing" else "null"
    assert code == 1 and rep["regressions"] == [
        {"id": "p", "metric": "corner_error_px", "run": expect, "baseline": 0.3}
    ]
    r = runner.invoke(app, ["compare", str(run), str(base)])
    assert r.exit_code == 1 and f"regressed: p: corner_error_px {expect} (baseline 0.3)" in r.stderr
    code, rep, _ = _compare(run, base, "--metric", "iterations")  # the metric that is still there passes
    assert code == 0 and rep["metrics"] == ["iterations"]


def test_runs_that_share_no_metric_fail(tmp_path: Path) -> None:
    base = _log(tmp_path / "b.jsonl", {"p": {"epe": 1.0}, "q": {"epe": 2.0}})
    other = _log(tmp_path / "r.jsonl", {"p": {"corner_error_px": 0.1}, "q": {"corner_error_px": 0.1}})
    code, rep, err = _compare(other, base)
    assert code == 1 and "nothing compared" in err and rep["problems"]
    # the baseline has the metric as null only: nothing to compare against is no pass either
    nulls = _log(tmp_path / "n.jsonl", {"p": {"epe": None}, "q": {"epe": None}})
    code, rep, err = _compare(base, nulls)
    assert code == 1 and rep["regressed"] == 0 and "nothing compared" in err
    code, rep, err = _compare(base, nulls, "--metric", "epe")
    assert code == 1 and "--metric epe" in err
    # items that failed in both runs compare no metric and are no failure of the comparison
    failed = _log(tmp_path / "f.jsonl", {"p": {}, "q": {}}, failed=("p", "q"))
    assert _compare(failed, failed)[0] == 0


@pytest.mark.parametrize(
    "options, message",
    [
        (["--metric", "corner_eror_px"], "--metric corner_eror_px"),
        (["--metric", "epe", "--metric", "nope"], "--metric nope"),
        (["--tolerance", "nan"], "--tolerance"),
        (["--rel-tolerance", "nan"], "--rel-tolerance"),
        (["--tolerance", "inf"], "--tolerance"),
        (["--tolerance", "-0.1"], "--tolerance"),
    ],
)
def test_options_that_compare_nothing_are_usage_errors(tmp_path: Path, options: list[str], message: str) -> None:
    """Defect 9: ``--metric`` naming no logged metric and a NaN tolerance exit 2 with one error line."""
    base = _log(tmp_path / "b.jsonl", {"p": {"corner_error_px": 0.3, "epe": 1.0}})
    worse = _log(tmp_path / "r.jsonl", {"p": {"corner_error_px": 9.0, "epe": 1.0}})
    r = runner.invoke(app, ["compare", str(worse), str(base), *options])
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and message in r.stderr
    assert r.stderr.count("\n") == 1


def test_metric_option_selects_what_is_compared(tmp_path: Path) -> None:
    base = _log(tmp_path / "b.jsonl", {"p": {"corner_error_px": 0.3, "inliers": 80}, "q": {"corner_error_px": 0.5}})
    run = _log(tmp_path / "r.jsonl", {"p": {"corner_error_px": 0.2, "inliers": 60}, "q": {"corner_error_px": 0.5}})
    code, rep, _ = _compare(run, base)
    assert code == 1 and [(x["id"], x["metric"]) for x in rep["regressions"]] == [("p", "inliers")]
    code, rep, _ = _compare(run, base, "--metric", "corner_error_px")
    assert code == 0 and rep["metrics"] == ["corner_error_px"] and [x["id"] for x in rep["improvements"]] == ["p"]
    code, rep, _ = _compare(run, base, "--metric", "inliers", "--metric", "corner_error_px", "--metric", "inliers")
    assert code == 1 and rep["metrics"] == ["corner_error_px", "inliers"] and rep["regressed"] == 1


SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"


def _register_run(tmp_path: Path, name: str) -> Path:
    """A real ``register --manifest`` run over two sample pairs (one with ground truth); returns its folder."""
    reg, brain = SAMPLE / "register", SAMPLE / "itk_brain"
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "id,a,b,gt,model\n"
        f"coffee,{reg / 'coffee_a.png'},{reg / 'coffee_b.png'},{reg / 'coffee_H_gt.json'},\n"
        f"brain,{brain / 'BrainProtonDensitySliceBorder20.png'},{brain / 'BrainProtonDensitySliceR10X13Y17.png'},"
        ",similarity\n"
    )
    out = tmp_path / name
    r = runner.invoke(app, ["register", "--manifest", str(manifest), "--out-dir", str(out), "--device", "cpu", "-q"])
    assert r.exit_code == 0, r.output
    return out


def _edit(log: Path, to: Path, iid: str, **changes: float) -> Path:
    """A copy of the run log ``log`` at ``to`` with item ``iid``'s metrics changed."""
    recs = [json.loads(line) for line in log.read_text().splitlines()]
    for rec in recs:
        if rec["id"] == iid:
            rec["metrics"].update(changes)
    to.write_text("".join(json.dumps(rec) + "\n" for rec in recs))
    return to


def test_identical_reruns_pass_and_a_ten_percent_regression_fails_naming_the_item(tmp_path: Path) -> None:
    """Issue 19 item 3: defaults compare the quality metrics with a small tolerance, folders are accepted."""
    base, new = _register_run(tmp_path, "base"), _register_run(tmp_path, "new")
    r = runner.invoke(app, ["compare", str(new), str(base)])  # run folders, not their run.jsonl
    assert r.exit_code == 0, r.output
    assert r.stderr.startswith("2 items compared: 0 regressed, 0 improved, 0 missing, 0 new (corner_error_px;")
    log = base / "run.jsonl"
    err = json.loads(log.read_text().splitlines()[0])["metrics"]["corner_error_px"]
    # bookkeeping (iterations, seconds) changes and float noise on the quality metric are no regression
    noisy = _edit(log, tmp_path / "noisy.jsonl", "coffee", corner_error_px=err * (1 + 1e-6), iterations=7)
    code, rep, _ = _compare(noisy, base)
    assert code == 0 and rep["metrics"] == ["corner_error_px"] and rep["regressed"] == 0
    worse = _edit(log, tmp_path / "worse.jsonl", "coffee", corner_error_px=err * 1.1)
    r = runner.invoke(app, ["compare", str(worse), str(base)])
    assert r.exit_code == 1
    lines = r.stderr.splitlines()
    assert lines[0].startswith("2 items compared: 1 regressed, 0 improved")
    assert lines[1] == f"regressed: coffee: corner_error_px {err * 1.1:.6g} (baseline {err:.6g}, +10.0%)"
    code, rep, _ = _compare(worse, log)
    assert code == 1 and rep["regressed_items"] == ["coffee"] and rep["regressed"] == 1
    # bookkeeping is compared when asked for
    code, rep, _ = _compare(noisy, base, "--metric", "iterations")
    assert code == 1 and rep["regressed_items"] == ["coffee"]


def test_headline_counts_items_not_metrics(tmp_path: Path) -> None:
    base = _log(tmp_path / "b.jsonl", {"p": {"epe": 1.0, "holes": 0.1, "bad_2.0": 0.2}, "q": {"epe": 1.0}})
    run = _log(tmp_path / "r.jsonl", {"p": {"epe": 2.0, "holes": 0.2, "bad_2.0": 0.4}, "q": {"epe": 1.0}})
    code, rep, err = _compare(run, base)
    assert code == 1 and rep["regressed"] == 1 and rep["regressed_metrics"] == 3 and rep["regressed_items"] == ["p"]
    r = runner.invoke(app, ["compare", str(run), str(base)])
    assert r.exit_code == 1 and r.stderr.startswith("2 items compared: 1 regressed, 0 improved")


def test_a_run_with_only_bookkeeping_metrics_compares_them_and_says_so(tmp_path: Path) -> None:
    base = _log(tmp_path / "b.jsonl", {"a": {"mean": 0.25}, "b": {"mean": 0.5}})
    same = _log(tmp_path / "s.jsonl", {"a": {"mean": 0.25}, "b": {"mean": 0.5}})
    code, rep, _ = _compare(same, base)
    assert code == 0 and rep["metrics"] == ["mean"] and "bookkeeping" in rep["notes"][0]
    moved = _log(tmp_path / "m.jsonl", {"a": {"mean": 0.25}, "b": {"mean": 0.4}})
    code, rep, _ = _compare(moved, base)
    assert code == 1 and rep["regressed_items"] == ["b"]


def test_folder_without_a_run_log_is_a_usage_error(tmp_path: Path) -> None:
    base = _log(tmp_path / "b.jsonl", {"a": {"epe": 1.0}})
    (tmp_path / "empty").mkdir()
    r = runner.invoke(app, ["compare", str(tmp_path / "empty"), str(base)])
    assert r.exit_code == 2 and "without a run log" in r.stderr and r.stderr.count("\n") == 1


def test_default_tolerances_are_shown_in_help_and_agree_with_the_library() -> None:
    import gdvision.cli.compare as cli
    import gdvision.runs.compare as lib

    assert (cli.DEFAULT_TOLERANCE, cli.DEFAULT_REL_TOLERANCE) == (lib.DEFAULT_TOLERANCE, lib.DEFAULT_REL_TOLERANCE)
    r = runner.invoke(app, ["compare", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "default: 1e-06" in r.stdout and "default: 0.01" in r.stdout


def test_rel_tolerance_through_the_cli(tmp_path: Path) -> None:
    base = _log(tmp_path / "b.jsonl", {"p": {"rmse": 10.0, "coverage": 0.9}, "q": {"rmse": 0.5, "coverage": 0.9}})
    run = _log(tmp_path / "r.jsonl", {"p": {"rmse": 10.4, "coverage": 0.9}, "q": {"rmse": 0.52, "coverage": 0.9}})
    code, rep, _ = _compare(run, base)  # 4% worse: beyond the default 1%
    assert code == 1 and sorted(x["id"] for x in rep["regressions"]) == ["p", "q"]
    code, rep, _ = _compare(run, base, "--rel-tolerance", "0.05")  # 0.4 <= 5% of 10 and 0.02 <= 5% of 0.5
    assert code == 0 and rep["regressed"] == 0
    code, rep, _ = _compare(run, base, "--rel-tolerance", "0.03")  # 0.4 > 0.3 and 0.02 > 0.015
    assert code == 1 and rep["regressed"] == 2
    code, rep, _ = _compare(run, base, "--rel-tolerance", "0.03", "--tolerance", "0.025")  # the larger allowance wins
    assert code == 1 and [x["id"] for x in rep["regressions"]] == ["p"]
    r = runner.invoke(app, ["compare", str(run), str(base), "--rel-tolerance", "0.05", "--metric", "rmse"])
    assert r.exit_code == 0 and "2 items compared: 0 regressed" in r.stderr
