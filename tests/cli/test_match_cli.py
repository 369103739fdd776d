"""CLI of ``gdvision match`` / ``gdvision features`` and the keypoint file formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gdvision.cli.app import app
from gdvision.io.keypoints import KeypointSet, read_keypoints, read_lowe, write_keypoints

runner = CliRunner()


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path, Path, np.ndarray]:
    """A real photo crop and a warped copy (known H), written as PNG, plus H.json."""
    import cv2
    import imageio.v3 as iio

    root = Path(__file__).resolve().parents[2] / "sample_data" / "natural"
    img = iio.imread(root / "camera.png")[120:300, 140:380]
    src = np.float32([[0, 0], [239, 0], [239, 179], [0, 179]])
    H = cv2.getPerspectiveTransform(src, src + np.float32([[8, -5], [-6, 4], [5, 9], [-4, -6]])).astype(np.float64)
    warped = cv2.warpPerspective(img, H, (240, 180))
    d = tmp_path_factory.mktemp("match")
    a, b, gt = d / "a.png", d / "b.png", d / "gt.json"
    iio.imwrite(a, img)
    iio.imwrite(b, warped)
    gt.write_text(json.dumps({"H": H.tolist()}))
    return a, b, gt, H


def test_match_writes_outputs(pair, tmp_path):
    a, b, gt, H = pair
    out, mj, viz = tmp_path / "H.json", tmp_path / "M.json", tmp_path / "viz.png"
    r = runner.invoke(
        app,
        [
            "match",
            str(a),
            str(b),
            "--out",
            str(out),
            "--out-matches",
            str(mj),
            "--out-viz",
            str(viz),
            "--gt",
            str(gt),
            "--device",
            "cpu",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert rec["corner_error_px"] < 1.0 and rec["inliers"] >= 20
    saved = json.loads(out.read_text())
    import torch

    from gdvision.coords import mean_corner_error

    assert float(mean_corner_error(torch.tensor(saved["H"]), torch.from_numpy(H), 180, 240)) < 1.0
    m = json.loads(mj.read_text())
    assert m["count"] == rec["matches"] and sum(x["inlier"] for x in m["matches"]) == rec["inliers"]
    import imageio.v3 as iio

    v = iio.imread(viz)
    assert v.shape == (180, 480, 3)


def test_match_fundamental_and_human_output(pair):
    a, b, _, _ = pair
    r = runner.invoke(app, ["match", str(a), str(b), "--model", "fundamental", "--matcher", "mnn", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "F = " in r.stdout and "inliers" in r.output


@pytest.mark.parametrize(
    "args,code,needle",
    [
        (["--matcher", "knn"], 2, "matcher"),
        (["--detector", "harris"], 2, "detector"),
        (["--ratio", "1.5"], 2, "ratio"),
        (["--ransac-threshold", "-1"], 2, "ransac-threshold"),
        (["--model", "affine"], 2, "model"),
        (["--refine", "--model", "fundamental"], 2, "refine"),
    ],
)
def test_match_bad_usage(pair, args, code, needle):
    a, b, _, _ = pair
    r = runner.invoke(app, ["match", str(a), str(b), "--device", "cpu", *args])
    assert r.exit_code == code, r.output
    assert needle in r.output and "Traceback" not in r.output


def test_match_input_errors(pair, tmp_path):
    a, b, _, _ = pair
    r = runner.invoke(app, ["match", str(a), str(tmp_path / "missing.png"), "--device", "cpu"])
    assert r.exit_code == 2 and "not found" in r.output  # the project's convention for a missing file
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    r = runner.invoke(app, ["match", str(a), str(bad), "--device", "cpu"])
    assert r.exit_code == 1 and "error:" in r.output
    r = runner.invoke(app, ["match", str(a), str(b), "--out", str(a), "--device", "cpu"])
    assert r.exit_code == 2 and "overwrite" in r.output
    r = runner.invoke(app, ["match", str(a), "--device", "cpu"])
    assert r.exit_code == 2
    # a flat image has no features: a one-line solver failure
    import imageio.v3 as iio

    flat = tmp_path / "flat.png"
    iio.imwrite(flat, np.full((64, 64), 128, np.uint8))
    r = runner.invoke(app, ["match", str(flat), str(flat), "--device", "cpu"])
    assert r.exit_code == 1 and "matches" in r.output and "Traceback" not in r.output


def test_match_pairs_batch(pair, tmp_path):
    a, b, gt, _ = pair
    csv = tmp_path / "pairs.csv"
    csv.write_text(f"a,b,gt\n{a},{b},{gt}\n{a},{tmp_path / 'nope.png'},\n")
    out_dir = tmp_path / "res"
    args = ["match", "--manifest", str(csv), "--out-dir", str(out_dir), "--device", "cpu", "--json"]
    r = runner.invoke(app, args)
    assert r.exit_code == 1  # one pair failed, the other was kept
    rep = json.loads(r.stdout)
    assert rep["ok"] == 1 and rep["failed"] == 1
    assert rep["metrics"]["corner_error_px"]["median"] < 1.0
    assert rep["metrics"]["inliers"]["median"] >= 30
    assert (out_dir / "a__b.json").exists()
    r = runner.invoke(app, [*args, "--resume", "--min-metric", "inliers=100000"])
    assert r.exit_code == 1 and "a__b" in r.stderr  # the regressed item is named
    r = runner.invoke(app, ["match", "--manifest", str(csv), "--device", "cpu"])
    assert r.exit_code == 2 and "--out-dir" in r.output


def test_features_formats_roundtrip(pair, tmp_path):
    a, _, _, _ = pair
    sift = tmp_path / "a.sift"
    r = runner.invoke(app, ["features", str(a), "--out", str(sift), "--device", "cpu", "--max-features", "300"])
    assert r.exit_code == 0, r.output
    ks = read_keypoints(sift)
    assert 50 <= len(ks) <= 300
    assert sift.read_text().split("\n")[0] == f"{len(ks)} 128"
    txt = tmp_path / "a.txt"
    r = runner.invoke(
        app, ["features", str(a), "--out", str(txt), "--device", "cpu", "--max-features", "300", "--json"]
    )
    assert r.exit_code == 0
    kv = read_keypoints(txt)
    assert len(kv) == len(ks)
    # same keypoints in both files: Lowe stores (row, col) and -angle, read back in gdvision's convention
    assert np.allclose(kv.xy, ks.xy, atol=0.01) and np.allclose(np.cos(kv.angle), np.cos(ks.angle), atol=0.01)
    assert np.array_equal(kv.desc, ks.desc)
    r = runner.invoke(app, ["features", str(a), str(a), "--out", str(txt)])
    assert r.exit_code == 2
    r = runner.invoke(app, ["features", str(a), "--out", str(txt), "--format", "json"])
    assert r.exit_code == 2


def test_keypoint_io_reads_lowe_reference(sample_dir, tmp_path):
    ks = read_lowe(sample_dir / "box" / "box.sift")
    assert len(ks) == 638 and ks.desc.shape == (638, 128)
    # row/col order: x spans the 324 px width, y the 223 px height
    assert ks.xy[:, 0].max() > 300 and ks.xy[:, 1].max() < 223
    write_keypoints(tmp_path / "copy.key", ks, "lowe")
    back = read_lowe(tmp_path / "copy.key")
    assert np.allclose(back.xy, ks.xy, atol=0.01) and np.array_equal(back.desc, ks.desc)
    bad = tmp_path / "bad.sift"
    bad.write_text("3 128\n1 2 3\n")
    from gdvision.errors import InputError

    with pytest.raises(InputError):
        read_lowe(bad)
    vs = KeypointSet(np.zeros((1, 2)), np.ones(1), np.zeros(1), np.full((1, 128), 1 / np.sqrt(128)))
    write_keypoints(tmp_path / "v.txt", vs)
    assert read_keypoints(tmp_path / "v.txt").desc[0, 0] == 45


def test_features_out_dir_keeps_going(pair, tmp_path):
    a, b, _, _ = pair
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG broken")
    out_dir = tmp_path / "keys"
    r = runner.invoke(
        app, ["features", str(a), str(bad), str(b), "--out-dir", str(out_dir), "--format", "vlfeat", "--json"]
    )
    assert r.exit_code == 1  # one image failed, the two others were written
    rep = json.loads(r.stdout)
    assert len(rep["results"]) == 2 and len(rep["failed"]) == 1
    assert (out_dir / "a.txt").exists() and (out_dir / "b.txt").exists()


def test_match_never_replaces_ground_truth(pair, tmp_path):
    """Defect 3: ``match a b --gt g.json --out g.json`` must not destroy the ground truth (exit 2, untouched)."""
    a, b, gt, _ = pair
    before = gt.read_bytes()
    for flag in ("--out", "--out-matches", "--out-viz"):
        for extra in ([], ["--overwrite"]):
            r = runner.invoke(app, ["match", str(a), str(b), "--gt", str(gt), flag, str(gt), "--device", "cpu", *extra])
            assert r.exit_code == 2, (flag, extra, r.output)
            assert "would overwrite input" in r.output and str(gt) in r.output
            assert gt.read_bytes() == before
    # nor through a symlink to it
    link = tmp_path / "link.json"
    link.symlink_to(gt)
    r = runner.invoke(app, ["match", str(a), str(b), "--gt", str(gt), "--out", str(link), "--device", "cpu"])
    assert r.exit_code == 2 and gt.read_bytes() == before


def test_match_existing_outputs_need_overwrite(pair, tmp_path):
    """An existing output is refused (exit 2, naming the file and --overwrite) before any work; --overwrite replaces."""
    a, b, gt, _ = pair
    out, viz = tmp_path / "H.json", tmp_path / "viz.png"
    out.write_text("old")
    r = runner.invoke(app, ["match", str(a), str(b), "--out", str(out), "--out-viz", str(viz), "--device", "cpu"])
    assert r.exit_code == 2 and str(out) in r.output and "--overwrite" in r.output
    assert out.read_text() == "old" and not viz.exists()  # nothing written: the claim came first
    r = runner.invoke(app, ["match", str(a), str(b), "--out", str(out), "--device", "cpu", "--overwrite", "--quiet"])
    assert r.exit_code == 0, r.output
    assert np.asarray(json.loads(out.read_text())["H"]).shape == (3, 3)
    # two outputs on one file
    r = runner.invoke(
        app, ["match", str(a), str(b), "--out", str(viz), "--out-matches", str(viz), "--device", "cpu", "--overwrite"]
    )
    assert r.exit_code == 2 and "--out" in r.output and "--out-matches" in r.output and not viz.exists()


def test_match_single_and_manifest_write_the_same_record(pair, tmp_path):
    """Single-item ``--out`` and the manifest's ``<id>.json`` come from one record builder: same fields, same H."""
    a, b, gt, H = pair
    out = tmp_path / "single.json"
    r = runner.invoke(app, ["match", str(a), str(b), "--gt", str(gt), "--out", str(out), "--device", "cpu", "-q"])
    assert r.exit_code == 0, r.output
    csv = tmp_path / "m.csv"
    csv.write_text(f"a,b,gt\n{a},{b},{gt}\n")
    r = runner.invoke(
        app, ["match", "--manifest", str(csv), "--out-dir", str(tmp_path / "res"), "--device", "cpu", "-q"]
    )
    assert r.exit_code == 0, r.output
    single, batch = json.loads(out.read_text()), json.loads((tmp_path / "res" / "a__b.json").read_text())
    assert set(single) == set(batch) and single["a"] == str(a) and batch["b"] == str(b)
    for k in ("H", "matches", "inliers", "keypoints_a", "keypoints_b", "corner_error_px"):
        assert single[k] == batch[k], k
    assert single["corner_error_px"] < 1.0


@pytest.mark.parametrize(
    "args",
    [
        ["match", "x.png", "y.png", "--matcher", "knn"],
        ["match", "x.png", "y.png", "--ratio", "1.5"],
        ["match", "x.png", "y.png", "--ransac-threshold", "nan"],
        ["match", "x.png", "y.png", "--max-features", "-3"],
        ["features", "x.png", "--out-dir", "d", "--detector", "harris"],
        ["features", "x.png", "--out-dir", "d", "--format", "json"],
    ],
)
def test_bad_option_values_fail_before_torch(args):
    """Defect 13: a usage error on an option value answers (exit 2, naming the flag) without importing torch."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from gdvision.cli.app import app\n"
        "r = CliRunner().invoke(app, sys.argv[1:])\n"
        "print(r.exit_code, 'torch' in sys.modules)\n"
        "print(r.output)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    first, _, rest = out.stdout.partition("\n")
    assert first == "2 False", out.stdout + out.stderr
    assert args[-2] in rest, rest  # the flag is named


def test_match_manifest_options_without_manifest_are_usage_errors(pair, tmp_path):
    a, b, _, _ = pair
    for extra in (["--out-dir", str(tmp_path / "d")], ["--resume"]):
        r = runner.invoke(app, ["match", str(a), str(b), "--device", "cpu", *extra])
        assert r.exit_code == 2 and "--manifest" in r.output, r.output
    assert not (tmp_path / "d").exists()


def test_match_quiet_without_out_prints_the_model_on_stdout(pair):
    """Issue 19 item 4: ``match -q`` without --out/--json exited 0 printing nothing: the result was thrown away."""
    a, b, _, H = pair
    r = runner.invoke(app, ["match", str(a), str(b), "--device", "cpu", "-q"])
    assert r.exit_code == 0, r.output
    assert r.stderr == ""  # quiet silences the summary, not the result
    (line,) = r.stdout.splitlines()
    assert line.startswith("H = ")
    got = np.asarray(json.loads(line[4:]))
    got /= got[2, 2]
    corners = np.array([[0, 0, 1], [239, 0, 1], [239, 179, 1], [0, 179, 1]], float).T
    pa, pb = got @ corners, H @ corners
    assert np.abs(pa[:2] / pa[2] - pb[:2] / pb[2]).max() < 2.0


def test_match_viz_max_caps_the_lines_inliers_first(pair, tmp_path):
    """Issue 19 item 5: ``--viz-max N`` draws at most N lines (inliers first); a negative value is a usage error."""
    import imageio.v3 as iio

    a, b, _, _ = pair
    counts = {}
    for cap in ("3", "200"):
        viz = tmp_path / f"viz{cap}.png"
        r = runner.invoke(app, ["match", str(a), str(b), "--out-viz", str(viz), "--viz-max", cap, "--device", "cpu"])
        assert r.exit_code == 0, r.output
        pic = iio.imread(viz).astype(int)
        green = (np.abs(pic - [26, 255, 51]) <= 1).all(-1).sum()
        red = (np.abs(pic - [255, 38, 26]) <= 1).all(-1).sum()
        counts[cap] = (green, red)
    assert counts["3"][0] > 0 and counts["3"][1] == 0  # three inliers, no outlier
    assert counts["200"][0] > 5 * counts["3"][0]
    r = runner.invoke(app, ["match", str(a), str(b), "--out-viz", str(tmp_path / "v.png"), "--viz-max", "-1"])
    assert r.exit_code == 2 and "--viz-max" in r.stderr and not (tmp_path / "v.png").exists()


def test_match_progress_names_its_stages_on_stderr_only_when_asked(pair):
    """Issue 19 item 2: stage names on stderr (plain lines when stderr is no terminal and GDVISION_PROGRESS=1)."""
    a, b, _, _ = pair
    r = runner.invoke(app, ["match", str(a), str(b), "--device", "cpu"], env={"GDVISION_PROGRESS": "1"})
    assert r.exit_code == 0, r.output
    stages = [line.split(":")[1].strip() for line in r.stderr.splitlines() if line.startswith("match: ")]
    assert stages == ["reading images", "features, matching, RANSAC"]
    assert r.stdout.startswith("H = ") and r.stdout.count("\n") == 1
    r = runner.invoke(app, ["match", str(a), str(b), "--device", "cpu"], env={"GDVISION_PROGRESS": ""})
    assert r.exit_code == 0 and not any(line.startswith("match: ") for line in r.stderr.splitlines())
