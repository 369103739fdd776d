"""``gdvision depth`` command line: outputs, summary, metrics and one-line errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from synthetic import CAMS, K, render
from typer.testing import CliRunner

from gdvision.cli.app import app

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("scene")
    cams = {}
    for name, T in CAMS.items():
        img, depth = render(T)
        iio.imwrite(d / name, (img * 255).round().astype(np.uint8))
        cams[name] = {"K": K.tolist(), "world_to_cam": T.tolist()}
        if name == "ref.png":
            np.save(d / "gt_depth.npy", depth)
    (d / "cams.json").write_text(json.dumps(cams))
    return d


def _args(d: Path, out: Path, *extra: str) -> list[str]:
    return [
        "depth",
        "--views",
        str(d / "ref.png"),
        str(d / "right.png"),
        str(d / "left.png"),
        "--cameras",
        str(d / "cams.json"),
        "--out-dir",
        str(out),
        "--min-depth",
        "2",
        "--max-depth",
        "8",
        "--iters",
        "40",
        "--finest-iters",
        "40",
        "--planes",
        "64",
        *extra,
    ]


def test_cli_writes_all_outputs_and_metrics(scene_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = runner.invoke(app, _args(scene_dir, out, "--json", "--gt", str(scene_dir / "gt_depth.npy")))
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["metrics"]["abs_rel"] < 0.05
    assert "bad_2.0" not in summary["metrics"]  # not a rectified pair
    depth = np.load(out / "depth.npy")
    assert depth.dtype == np.float32 and depth.shape == (96, 128)
    q = iio.imread(out / "depth16.png")
    assert q.dtype == np.uint16
    known = np.isfinite(depth)
    np.testing.assert_allclose(q[known] / summary["png16_scale"], depth[known], rtol=1e-3)
    prev = iio.imread(out / "depth_preview.png")
    assert prev.shape[1] == 128 and prev.shape[0] > 96 and prev.shape[2] == 3
    assert iio.imread(out / "confidence.png").shape == (96, 128)
    assert (out / "points.ply").read_bytes().startswith(b"ply\nformat binary_little_endian")
    assert (out / "depth.pfm").exists() and json.loads((out / "summary.json").read_text())["png16_scale"] > 0
    assert not list(out.glob(".*.tmp"))


def test_cli_rectified_pair_with_disparity_gt(sample_dir: Path, tmp_path: Path) -> None:
    """Middlebury-style calib.txt on a small crop-free downscale of the sample pair; bad-t metrics reported."""
    import cv2

    d = sample_dir / "stereo_motorcycle"
    for n in ("left.png", "right.png"):
        small = cv2.pyrDown(cv2.pyrDown(cv2.pyrDown(iio.imread(d / n))))
        iio.imwrite(tmp_path / n, small)
    gt = np.load(d / "disp_left.npy")[::8, ::8] / 8
    np.save(tmp_path / "disp.npy", gt.astype(np.float32))
    (tmp_path / "calib.txt").write_text(
        "cam0=[3979.911 0 1244.772; 0 3979.911 1019.507; 0 0 1]\n"
        "cam1=[3979.911 0 1369.115; 0 3979.911 1019.507; 0 0 1]\n"
        "doffs=124.343\nbaseline=193.001\nwidth=2964\nheight=2000\nndisp=270\n"
    )
    args = [
        "depth", str(tmp_path / "left.png"), str(tmp_path / "right.png"), "-c", str(tmp_path / "calib.txt"),
        "-o", str(tmp_path / "out"), "--gt", str(tmp_path / "disp.npy"), "--gt-kind", "disparity",
        "--min-depth", "2000", "--max-depth", "6200", "--iters", "20", "--finest-iters", "20", "--json",
    ]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout.strip().splitlines()[-1])["metrics"]
    assert m["holes"] < 0.02 and m["bad_2.0"] < 0.3 and m["abs_rel"] < 0.1


@pytest.mark.parametrize(
    ("mutate", "code", "message"),
    [
        (lambda d, a: a.__setitem__(3, str(d / "missing.png")), 2, "file not found"),
        (lambda d, a: a.__setitem__(6, str(d / "nope.json")), 2, "cameras not found"),
        (lambda d, a: a.__setitem__(8, str(d / "ref.png")), 2, "is an input of the run"),
        (lambda d, a: a.extend(["--min-depth", "-1"]), 2, "--min-depth must be > 0"),
        (lambda d, a: a.extend(["--gt", str(d / "gt_depth.npy"), "--gt-kind", "disparity"]), 1, "rectified pair"),
        (lambda d, a: a.extend(["--init", "magic"]), 2, "unknown --init 'magic'"),
    ],
)
def test_cli_bad_input_one_line_errors(scene_dir: Path, tmp_path: Path, mutate, code: int, message: str) -> None:
    args = _args(scene_dir, tmp_path / "o", "--iters", "1", "--finest-iters", "1")
    mutate(scene_dir, args)
    res = runner.invoke(app, args)
    assert res.exit_code == code, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert any(ln.startswith("error:") for ln in lines) and len(lines) == 1, res.output
    import re

    assert re.search(message, res.output), res.output


def test_cli_missing_camera_names_file(scene_dir: Path, tmp_path: Path) -> None:
    cams = json.loads((scene_dir / "cams.json").read_text())
    del cams["left.png"]
    (tmp_path / "c.json").write_text(json.dumps(cams))
    args = _args(scene_dir, tmp_path / "o")
    args[6] = str(tmp_path / "c.json")
    res = runner.invoke(app, args)
    assert res.exit_code == 1 and "c.json': no camera for view 'left.png'" in res.output


def test_cli_help_teaches() -> None:
    res = runner.invoke(app, ["depth", "--help"])
    assert res.exit_code == 0
    for word in ("--cameras", "--out-dir", "--min-depth", "--gt-kind", "COLMAP", "Examples"):
        assert word in res.output


def test_manifest_runs_items_with_per_item_options(scene_dir: Path, tmp_path: Path) -> None:
    """Two items from a JSON Lines manifest: per-item depth range and gt, outputs in DIR/<id>/, gated on AbsRel."""
    rows = [
        {"id": "three_views", "views": ["ref.png", "right.png", "left.png"], "cameras": "cams.json"},
        {"id": "two_views", "views": "ref.png;right.png", "cameras": "cams.json", "min_depth": 2, "max_depth": 8},
    ]
    for r in rows:
        r["gt"] = "gt_depth.npy"
    manifest = scene_dir / "scenes.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "runs"
    args = _args(scene_dir, out)[7:]  # the options, without --views ... --cameras
    args = ["depth", "--manifest", str(manifest), *args, "--json", "--max-error", "0.05"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout.strip().splitlines()[-1])
    assert rep["ok"] == 2 and rep["metrics"]["abs_rel"]["max"] < 0.05
    for r in rows:
        assert np.load(out / r["id"] / "depth.npy").shape == (96, 128)
    res = runner.invoke(app, [*args, "--resume", "--max-error", "1e-6"])
    assert res.exit_code == 1 and json.loads(res.stdout)["already_done"] == 2


def _one_error_line(res, code: int, pattern: str) -> None:
    import re

    assert res.exit_code == code, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert "internal error" not in res.output and re.search(pattern, lines[0]), res.output


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["ref.png", "-c", "cams.json"], r"at least one source image, got 1 image"),
        (["ref.png", "right.png"], r"--cameras is required"),
        ([], r"at least one source image, got 0 image"),
        (["ref.png", "right.png", "-c", "cams.json", "--min-depth", "1e-30"], r"--min-depth must be between"),
        (["ref.png", "right.png", "-c", "cams.json", "--min-depth", "nan"], r"--min-depth must be finite"),
        (["ref.png", "right.png", "-c", "cams.json", "--max-depth", "inf"], r"--max-depth must be finite"),
        (
            ["ref.png", "right.png", "-c", "cams.json", "--min-depth", "5", "--max-depth", "2"],
            r"--min-depth \(5.0\) must be smaller than the maximum depth \(2.0\)",
        ),
        (["ref.png", "right.png", "-c", "cams.json", "--planes", "1"], r"--planes must be >= 2"),
        (["ref.png", "right.png", "-c", "cams.json", "--iters", "-1"], r"--iters must be >= 0"),
        (["ref.png", "right.png", "-c", "cams.json", "--gt-kind", "disp"], r"unknown --gt-kind 'disp'"),
    ],
)
def test_usage_errors_exit_2_with_one_line(scene_dir: Path, tmp_path: Path, args: list[str], pattern: str) -> None:
    """Defect 10: one view or no --cameras printed 'internal error: BadParameter' and exited 1."""
    full = ["depth", *[str(scene_dir / a) if a.endswith((".png", ".json")) else a for a in args], "-o", str(tmp_path)]
    _one_error_line(runner.invoke(app, full), 2, pattern)
    assert not (tmp_path / "depth.npy").exists()


def test_usage_errors_come_before_importing_torch(scene_dir: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from gdvision.cli.app import app\n"
        f"d, o = {str(scene_dir)!r}, {str(tmp_path)!r}\n"
        "for args in (['depth', d + '/ref.png', '-c', d + '/cams.json', '-o', o],\n"
        "             ['depth', d + '/ref.png', d + '/right.png', '-o', o],\n"
        "             ['depth', d + '/ref.png', d + '/right.png', '-c', d + '/cams.json', '-o', o, '--alpha', '2'],\n"
        "             ['depth', d + '/ref.png', d + '/right.png', '-c', d + '/cams.json', '-o', o, '--init', 'x']):\n"
        "    r = CliRunner().invoke(app, args)\n"
        "    assert r.exit_code == 2, r.output\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_existing_outputs_are_refused_unless_overwrite(scene_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "points.ply").write_bytes(b"keep me")
    args = _args(scene_dir, out, "--iters", "1", "--finest-iters", "1", "--planes", "16")
    _one_error_line(runner.invoke(app, args), 2, r"output '.*points.ply' exists: pass --overwrite")
    assert (out / "points.ply").read_bytes() == b"keep me" and not (out / "depth.npy").exists()
    res = runner.invoke(app, [*args, "--overwrite", "-q"])
    assert res.exit_code == 0, res.output
    assert (out / "points.ply").read_bytes().startswith(b"ply\n") and (out / "depth.npy").exists()


def test_inputs_in_the_out_dir_are_never_replaced(scene_dir: Path, tmp_path: Path) -> None:
    """A view named like an output (depth.npy) in --out-dir: refused even with --overwrite, the file unchanged."""
    img = iio.imread(scene_dir / "ref.png").astype(np.float32) / 255
    np.save(tmp_path / "depth.npy", img)
    before = (tmp_path / "depth.npy").read_bytes()
    cams = json.loads((scene_dir / "cams.json").read_text())
    cams["depth.npy"] = cams["ref.png"]
    (tmp_path / "cams.json").write_text(json.dumps(cams))
    args = ["depth", str(tmp_path / "depth.npy"), str(scene_dir / "right.png"), "-c", str(tmp_path / "cams.json")]
    _one_error_line(runner.invoke(app, [*args, "-o", str(tmp_path), "--overwrite"]), 2, "would overwrite input")
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    _one_error_line(runner.invoke(app, [*args, "-o", str(link), "--overwrite"]), 2, "would overwrite input")
    assert (tmp_path / "depth.npy").read_bytes() == before


@pytest.mark.parametrize(
    ("make_gt", "pattern"),
    [
        (lambda g: np.full_like(g, np.nan), r"gt.npy' has no known pixel"),
        (lambda g: g[:50], r"gt.npy' has shape \(50, 128\), the reference image is \(96, 128\)"),
    ],
)
def test_bad_ground_truth_fails_before_the_solve(scene_dir: Path, tmp_path: Path, make_gt, pattern: str) -> None:
    np.save(tmp_path / "gt.npy", make_gt(np.load(scene_dir / "gt_depth.npy")))
    out = tmp_path / "out"
    res = runner.invoke(app, _args(scene_dir, out, "--gt", str(tmp_path / "gt.npy")))
    _one_error_line(res, 1, pattern)
    assert not out.exists() or not any(out.iterdir())  # nothing written: the error came before the solve


def test_manifest_item_with_one_view_fails_with_its_reason(scene_dir: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"id,views,cameras\nsolo,{scene_dir / 'ref.png'},{scene_dir / 'cams.json'}\n")
    res = runner.invoke(app, ["depth", "--manifest", str(manifest), "-o", str(tmp_path / "o"), "--json"])
    assert res.exit_code == 1, res.output
    rep = json.loads(res.stdout.strip().splitlines()[-1])
    assert rep["failed"] == 1 and "at least one source image" in rep["failures"][0]["error"]


def test_progress_names_stages_with_counts_only_where_asked(scene_dir: Path, tmp_path: Path) -> None:
    """Issue 19 item 2, issue 16: stages (sweep with its plane count, refinement, fill) and an ETA on stderr;
    no bar when stderr is not a terminal unless GDVISION_PROGRESS=1; nothing under --quiet; stdout stays empty."""
    res = runner.invoke(app, _args(scene_dir, tmp_path / "a"), env={"GDVISION_PROGRESS": "1"})
    assert res.exit_code == 0, res.output
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    sweep = [x for x in lines if x.startswith("depth: sweep: ")]
    assert sweep and sweep[0].startswith("depth: sweep: 8/64 0:0") and " elapsed, eta 0:" in sweep[0]
    assert any(x.startswith("depth: refine level 1/") for x in lines)
    assert any(x.startswith("depth: fill") for x in lines)
    assert lines[-1].startswith("depth of ref.png")  # the summary still comes last
    res = runner.invoke(app, _args(scene_dir, tmp_path / "b"), env={"GDVISION_PROGRESS": ""})  # not a terminal
    assert res.exit_code == 0 and not any("sweep" in x or "elapsed" in x for x in res.stderr.splitlines())
    res = runner.invoke(app, _args(scene_dir, tmp_path / "c", "-q"), env={"GDVISION_PROGRESS": "1"})
    assert res.exit_code == 0 and res.stderr == "" and res.stdout == ""


def test_summary_counts_source_views_and_hints_at_the_range_options(scene_dir: Path, tmp_path: Path) -> None:
    """Issue 19 item 7: "from 2 source views" (not "view(s)"); the automatic range is recorded (issue 16)."""
    res = runner.invoke(app, _args(scene_dir, tmp_path / "a"))
    assert res.exit_code == 0, res.output
    assert res.stderr.startswith("depth of ref.png from 2 source views: ") and "note:" not in res.stderr
    args = _args(scene_dir, tmp_path / "b")
    i = args.index("--min-depth")
    del args[i : i + 4]  # no --min-depth, no --max-depth
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    # issue 16: the range now comes from feature matches between the views (a warning only when it cannot)
    assert "note:" not in res.stderr and "warning:" not in res.stderr
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["depth_range"]["source"] == "matches"
