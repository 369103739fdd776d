"""``gdvision depth`` command line: outputs, summary, metrics and one-line errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from synthetic import CAMS, K, render
from typer.testing import CliRunner

from gdvision.cli.app import app

runner = CliRunner()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small images: one torch thread is faster, and avoids OpenMP spin-waits when the machine is shared."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


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
        (lambda d, a: a.__setitem__(8, str(d / "ref.png")), 2, "not a folder"),
        (lambda d, a: a.extend(["--min-depth", "-1"]), 2, "--min-depth must be > 0"),
        (lambda d, a: a.extend(["--gt", str(d / "gt_depth.npy"), "--gt-kind", "disparity"]), 1, "rectified pair"),
        (lambda d, a: a.extend(["--init", "magic"]), 2, "init must be"),
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
