"""``gdvision report``: pages built from real manifest runs on sample_data, their content, the baseline verdict
(equal to ``gdvision compare``'s), bad input, the size of a 500-item page, and a look in headless Chromium."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from typer.testing import CliRunner

from gdvision.cli.app import app

pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_data"
runner = CliRunner()

# command -> (manifest, fast options, expected items, pictures per drawn item, item to regress, metric, factor)
RUNS = {
    "register": ("register1.csv", ["--iters", "30"], 1, 1, "coffee", "corner_error_px", 0.1),
    "match": (str(SAMPLE / "manifests" / "match_pairs.csv"), [], 2, 1, "box", "inliers", 2.0),
    "depth": (
        str(SAMPLE / "manifests" / "scenes.csv"),
        ["--iters", "5", "--finest-iters", "5", "--planes", "16", "--gray"],
        1,
        3,
        "motorcycle",
        "abs_rel",
        0.5,
    ),
    "attack": (str(SAMPLE / "manifests" / "attack_pairs.csv"), ["--steps", "3"], 1, 4, "coffee", "psnr_db_min", 2.0),
}


def _invoke(argv: list[str]):
    return runner.invoke(app, argv)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One real manifest run per command (smallest settings), made from a working folder as a user would."""
    work = tmp_path_factory.mktemp("runs")
    reg = SAMPLE / "register"
    (work / "register1.csv").write_text(
        f"id,a,b,gt\ncoffee,{reg / 'coffee_a.png'},{reg / 'coffee_b.png'},{reg / 'coffee_H_gt.json'}\n"
    )
    out = {}
    import os

    cwd = os.getcwd()
    os.chdir(work)
    try:
        for cmd, (manifest, opts, *_rest) in RUNS.items():
            r = _invoke([cmd, "--manifest", manifest, "--out-dir", f"out_{cmd}", "-q", "--device", "cpu", *opts])
            assert r.exit_code in (0, 1) and "Traceback" not in r.output, r.output
            out[cmd] = work / f"out_{cmd}"
    finally:
        os.chdir(cwd)
    return out


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "run.jsonl").read_text().splitlines()]


def _better_baseline(run: Path, dest: Path, item: str, metric: str, factor: float) -> Path:
    """A copy of ``run``'s log in which ``item``'s ``metric`` was better by ``factor``: the run regressed there."""
    dest.mkdir(parents=True, exist_ok=True)
    recs = _records(run)
    for r in recs:
        if r["id"] == item:
            r["metrics"][metric] = r["metrics"][metric] * factor
    (dest / "run.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return dest


def _pictures(page: str) -> list[np.ndarray]:
    found = re.findall(r"data:image/jpeg;base64,([A-Za-z0-9+/=]+)", page)
    return [iio.imread(base64.b64decode(b)) for b in found]


def _table_ids(page: str) -> list[str]:
    return re.findall(r"<td id='item-([^']+)'>", page)


def _compare_verdict(run: Path, base: Path) -> str:
    r = _invoke(["compare", str(run), str(base), "-q"])
    assert r.exit_code in (0, 1), r.output
    return "regressed" if r.exit_code == 1 else "no regression"


@pytest.mark.parametrize("command", sorted(RUNS))
def test_report_of_a_real_run_and_its_baseline(command, runs, tmp_path):
    _, _, n_items, n_pics, item, metric, factor = RUNS[command]
    run = runs[command]
    base = _better_baseline(run, tmp_path / "base", item, metric, factor)
    out = tmp_path / "page.html"
    r = _invoke(["report", str(run), "--baseline", str(base), "--out", str(out), "--worst", "2", "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    page = out.read_text()
    # item count and table
    assert info["command"] == command and info["items"] == n_items == len(_table_ids(page))
    # the regressed item is named, in the verdict and the highlighted rows, as compare names it
    assert info["verdict"] == "regressed" == _compare_verdict(run, base)
    assert info["regressed_items"] == [item]
    assert re.search(rf"<tr class=\"regressed\"><td><a href=\"#item-{item}\">{item}</a></td><td>{metric}</td>", page)
    assert "verdict: regressed" in page
    # pictures present and decodable; each links to a file
    pics = _pictures(page)
    assert len(pics) >= n_pics, f"{command}: {len(pics)} pictures"
    assert all(p.ndim in (2, 3) and min(p.shape[:2]) >= 16 and p.std() > 1 for p in pics)
    assert "file missing" not in page and "cannot" not in page
    # one histogram per quality metric
    assert page.count("data:image/png;base64,") >= len(info["quality_metrics"])
    # self-contained: no URL of any kind, no external script or stylesheet
    assert "http://" not in page and "https://" not in page and "<link" not in page and 'src="//' not in page


@pytest.mark.parametrize("command", ["match", "depth"])
def test_verdict_equals_compare_when_nothing_regressed(command, runs, tmp_path):
    run = runs[command]
    base = tmp_path / "same"
    base.mkdir()
    shutil.copy(run / "run.jsonl", base / "run.jsonl")
    r = _invoke(["report", str(run), "--baseline", str(base), "--out", str(tmp_path / "p.html"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["verdict"] == "no regression" == _compare_verdict(run, base)


def test_default_out_is_in_the_run_folder_and_links_are_relative(runs, tmp_path):
    run = tmp_path / "attack_copy"
    shutil.copytree(runs["attack"], run)
    r = _invoke(["report", str(run), "-q"])
    assert r.exit_code == 0, r.output
    page = (run / "report.html").read_text()
    links = re.findall(r'<a href="([^"#]+)"', page)
    assert links and all(not link.startswith("/") for link in links)
    assert all((run / link.replace("%20", " ")).resolve().exists() for link in links)
    # an existing report is not replaced without --overwrite
    again = _invoke(["report", str(run)])
    assert again.exit_code == 2 and again.output.startswith("error: ") and "--overwrite" in again.output


def test_deleted_outputs_are_named_not_a_traceback(runs, tmp_path):
    run = tmp_path / "depth_copy"
    shutil.copytree(runs["depth"], run)
    for f in (run / "motorcycle").glob("depth_preview.png"):
        f.unlink()
    r = _invoke(["report", str(run), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["missing_files"] == 1
    page = (run / "report.html").read_text()
    assert "file missing" in page and "depth_preview.png" in page and "missing (deleted after the run?)" in page


def test_torn_log_is_reported_and_the_rest_shown(runs, tmp_path):
    run = tmp_path / "match_copy"
    shutil.copytree(runs["match"], run)
    with (run / "run.jsonl").open("a") as fh:
        fh.write('{"id": "third", "status": "o')
    r = _invoke(["report", str(run), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["items"] == 2 and any("torn line" in n for n in info["notes"])
    assert "ends in a torn line" in (run / "report.html").read_text()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: None, "without a run log"),
        (lambda d: (d / "run.jsonl").write_text(""), "holds no run records"),
        (lambda d: (d / "run.jsonl").write_text('{"id": "x", "sta'), "holds no run records"),
    ],
    ids=["no-log", "empty-log", "only-a-torn-line"],
)
def test_unusable_run_folder_is_one_error_line(setup, message, tmp_path):
    setup(tmp_path)
    r = _invoke(["report", str(tmp_path)])
    assert r.exit_code == 2 and message in r.output
    assert r.output.count("\n") == 1 and r.output.startswith("error: ") and "Traceback" not in r.output


def test_baseline_of_another_command_is_refused(runs, tmp_path):
    r = _invoke(["report", str(runs["match"]), "--baseline", str(runs["attack"]), "--out", str(tmp_path / "p.html")])
    assert r.exit_code == 2 and r.output.startswith("error: ") and "attack run" in r.output
    assert not (tmp_path / "p.html").exists()
    missing = _invoke(["report", str(runs["match"]), "--baseline", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "--baseline" in missing.output


def test_torchrun_rank_logs_and_a_resumed_log(runs, tmp_path):
    recs = _records(runs["match"])
    # an unfinished distributed run: one log per rank, no run.jsonl
    ranks = tmp_path / "ranks"
    ranks.mkdir()
    for k, rec in enumerate(recs):
        (ranks / f"run.rank{k}.jsonl").write_text(json.dumps(rec) + "\n")
    r = _invoke(["report", str(ranks), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["items"] == len(recs) and any("per-rank logs" in n for n in info["notes"])
    # a resumed run: a failure line, then the ok line of the same item; the ok one wins
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    failed = {**recs[0], "status": "failed", "error": "boom", "metrics": {}}
    lines = [failed, *recs]
    (resumed / "run.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    r = _invoke(["report", str(resumed), "--json"])
    info = json.loads(r.stdout)
    assert info["items"] == len(recs) and info["failed"] == 0
    # and a failed item is listed with its error line
    (resumed / "run.jsonl").write_text(json.dumps(failed) + "\n" + json.dumps(recs[1]) + "\n")
    r = _invoke(["report", str(resumed), "--overwrite", "--json"])
    assert json.loads(r.stdout)["failures"] == [{"id": recs[0]["id"], "error": "boom"}]
    assert "boom" in (resumed / "report.html").read_text()


def test_manifest_report_option_writes_the_page_through_the_output_policy(tmp_path):
    out = tmp_path / "out"
    argv = ["edges", "--manifest", str(SAMPLE / "manifests" / "files.csv"), "-o", str(out), "-q", "--report"]
    r = _invoke(argv)
    assert r.exit_code == 0, r.output
    page = (out / "report.html").read_text()
    assert len(_table_ids(page)) == 3 and len(_pictures(page)) == 6  # input and output of 3 images
    # a second run into the same folder is refused before any work (the log and the report exist)
    again = _invoke(argv)
    assert again.exit_code == 2 and again.output.startswith("error: ")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "report.html").write_text("mine")
    r = _invoke([*argv[:4], str(fresh), "-q", "--report"])
    assert r.exit_code == 2 and "report.html" in r.output and (fresh / "report.html").read_text() == "mine"
    assert not (fresh / "run.jsonl").exists()


def test_size_of_a_500_item_page(runs, tmp_path, capsys):
    """500 items (copies of the real match record with spread metrics): thumbnails only for the worst ones."""
    (rec,) = [r for r in _records(runs["match"]) if r["id"] == "coffee"]
    rng = np.random.default_rng(0)
    run = tmp_path / "big"
    run.mkdir()
    lines = []
    for k in range(500):
        r = json.loads(json.dumps(rec))
        r.update(id=f"pair{k:03d}", index=k, seconds=float(rng.uniform(0.5, 2)))
        r["metrics"] = {
            "corner_error_px": float(rng.gamma(2, 0.3)),
            "inliers": int(rng.integers(20, 400)),
            "matches": int(rng.integers(400, 600)),
        }
        lines.append(json.dumps(r))
    (run / "run.jsonl").write_text("\n".join(lines) + "\n")
    r = _invoke(["report", str(run), "--json"])
    assert r.exit_code == 0, r.output
    size = (run / "report.html").stat().st_size
    page = (run / "report.html").read_text()
    assert len(_table_ids(page)) == 500 and len(_pictures(page)) >= 5
    with capsys.disabled():
        print(f"\n500-item report: {size / 1024:.0f} KiB")
    assert size < 1_000_000


def test_other_commands_start_without_the_report_libraries():
    code = (
        "import sys; import gdvision.cli.app; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'torch') "
        "or m.startswith('gdvision.report')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium is not installed (.ci/run installs it)")
def test_chromium_renders_the_page(runs, tmp_path):
    base = _better_baseline(runs["match"], tmp_path / "base", "box", "inliers", 2.0)
    page = tmp_path / "page.html"
    assert _invoke(["report", str(runs["match"]), "--baseline", str(base), "--out", str(page)]).exit_code == 0
    shot = tmp_path / "shot.png"
    cmd = [
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--window-size=1280,1600",
        f"--screenshot={shot}",
        page.as_uri(),
    ]
    subprocess.run(cmd, capture_output=True, timeout=120)
    img = iio.imread(shot)
    assert img.shape[:2] == (1600, 1280)
    rgb = img[..., :3].astype(int)
    # the red/orange of the regression banner and the rows, and the embedded pictures: far from a blank page
    assert rgb.std() > 20
    reddish = (rgb[..., 0] > 200) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)
    assert reddish.sum() > 50
