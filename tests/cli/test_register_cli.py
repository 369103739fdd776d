"""CLI of ``gdvision register``: outputs, manifests, the output policy, the verdict, masks, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np
import pytest
from typer.testing import CliRunner

from gdvision.cli.app import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
W, H = 192, 144
MOTIONS = [
    np.array([[1, 0, 6.3], [0, 1, -4.7], [0, 0, 1]], float),
    np.array(
        [[0.97 * np.cos(0.1), -0.97 * np.sin(0.1), 12.0], [0.97 * np.sin(0.1), 0.97 * np.cos(0.1), -9.0], [0, 0, 1]]
    ),
    np.array([[1.05, 0.04, -5.0], [-0.03, 0.96, 7.0], [2e-4, -1.5e-4, 1.0]]),
]


def _pair(Hm: np.ndarray, seed: int, corrupt_b: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """8-bit A (a crop of camera.png) and B = A seen through Hm, gain 1.1 and a little noise."""
    rng = np.random.default_rng(seed)
    photo = iio.imread(ROOT / "sample_data" / "natural" / "camera.png").astype(np.float32) / 255.0
    a = photo[100 : 100 + H, 120 : 120 + W]
    b = cv2.warpPerspective(photo[100:, 120:], Hm, (W, H), flags=cv2.INTER_LINEAR)
    b = np.clip(b * 1.1 + rng.normal(0, 0.005, b.shape), 0, 1)
    if corrupt_b:
        b[:, : W // 2] = rng.random((H, W // 2))  # garbage in the left half of B
    return (a * 255).round().astype(np.uint8), (b * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pairs")
    for i, Hm in enumerate(MOTIONS):
        a, b = _pair(Hm, i)
        iio.imwrite(d / f"a{i}.png", a)
        iio.imwrite(d / f"b{i}.png", b)
        (d / f"gt{i}.json").write_text(json.dumps({"H": Hm.tolist()}))
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    iio.imwrite(d / "flat.png", np.full((H, W), 128, np.uint8))
    other = iio.imread(ROOT / "sample_data" / "natural" / "coffee.png")
    iio.imwrite(d / "other.png", cv2.cvtColor(other, cv2.COLOR_RGB2GRAY)[50 : 50 + H, 200 : 200 + W])
    return d


def _run(*args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, ["register", *args])
    return r.exit_code, r.stdout, r.stderr


def test_single_outputs(pair_files: Path, tmp_path: Path) -> None:
    d = pair_files
    out, warped, overlay = tmp_path / "H.json", tmp_path / "w.png", tmp_path / "o.png"
    code, stdout, _ = _run(
        str(d / "a2.png"), str(d / "b2.png"), "--out", str(out), "--out-warped", str(warped),
        "--out-overlay", str(overlay), "--gt", str(d / "gt2.json"), "--json", "--device", "cpu",
    )  # fmt: skip
    assert code == 0, stdout
    rec = json.loads(stdout)
    assert rec["corner_error_px"] < 0.5
    assert rec["direction"] == "A -> B" and "[xB, yB, 1]^T ~ H [xA, yA, 1]^T" in rec["convention"]
    assert rec["verdict"]["ok"] and rec["verdict"]["measures"]["gradient_agreement"] > 0.9
    assert json.loads(out.read_text())["H"] == rec["H"]
    w = iio.imread(warped).astype(float)
    assert w.shape == (H, W)
    b = iio.imread(d / "b2.png").astype(float)
    inner = (slice(20, -20), slice(20, -20))
    assert np.abs(w[inner] * 1.1 - b[inner]).mean() < 6  # aligned (up to the 1.1 gain)
    assert iio.imread(overlay).shape == (H, W, 3)


def test_readme_quick_start_pair(tmp_path: Path) -> None:
    """sample_data/register: the README's example, known H (achieved 0.013 px)."""
    s = ROOT / "sample_data" / "register"
    code, stdout, _ = _run(
        str(s / "coffee_a.png"), str(s / "coffee_b.png"), "--gt", str(s / "coffee_H_gt.json"), "--json"
    )
    assert code == 0
    assert json.loads(stdout)["corner_error_px"] < 0.03


@pytest.mark.parametrize("flag", ["--gt", "--init"])
def test_output_never_replaces_the_ground_truth_or_start(pair_files: Path, tmp_path: Path, flag: str) -> None:
    """Defect 3: `--gt g.json --out g.json` (or --init) replaced the ground truth with the result."""
    g = tmp_path / "g.json"
    g.write_text(json.dumps({"H": MOTIONS[0].tolist()}))
    before = g.read_bytes()
    for extra in ([], ["--overwrite"]):
        code, _, stderr = _run(
            str(pair_files / "a0.png"), str(pair_files / "b0.png"), flag, str(g), "--out", str(g), *extra
        )
        assert code == 2 and "would overwrite input" in stderr
        assert g.read_bytes() == before
    link = tmp_path / "link.json"  # also through a symlink
    link.symlink_to(g)
    code, _, _ = _run(str(pair_files / "a0.png"), str(pair_files / "b0.png"), flag, str(g), "--out", str(link))
    assert code == 2 and g.read_bytes() == before


def test_existing_output_needs_overwrite(pair_files: Path, tmp_path: Path) -> None:
    out, overlay = tmp_path / "H.json", tmp_path / "o.png"
    out.write_text("old")
    args = [str(pair_files / "a0.png"), str(pair_files / "b0.png"), "--out", str(out), "--out-overlay", str(overlay)]
    code, _, stderr = _run(*args, "--quiet")
    assert code == 2 and "--overwrite" in stderr
    assert out.read_text() == "old" and not overlay.exists()  # refused before anything was solved or written
    code, _, _ = _run(*args, "--quiet", "--overwrite")
    assert code == 0 and "H" in json.loads(out.read_text())
    code, _, stderr = _run(
        str(pair_files / "a0.png"),
        str(pair_files / "b0.png"),
        "--out",
        str(out),
        "--out-warped",
        str(out),
        "--overwrite",
    )
    assert code == 2 and "both" in stderr


@pytest.mark.parametrize("how", ["mask-b", "alpha"])
def test_mask_of_b_from_the_cli(pair_files: Path, tmp_path: Path, how: str) -> None:
    """Garbage in B's left half, excluded by --mask-b or by B's alpha channel."""
    a, b = _pair(MOTIONS[2], 5, corrupt_b=True)
    keep = np.full((H, W), 255, np.uint8)
    keep[:, : W // 2 + 2] = 0
    iio.imwrite(tmp_path / "a.png", a)
    args = [str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--gt", str(pair_files / "gt2.json"), "--json"]
    if how == "mask-b":
        iio.imwrite(tmp_path / "b.png", b)
        iio.imwrite(tmp_path / "mb.png", keep)
        args += ["--mask-b", str(tmp_path / "mb.png")]
    else:
        iio.imwrite(tmp_path / "b.png", np.dstack([b, b, b, keep]))
    code, stdout, _ = _run(*args)
    assert code == 0, stdout
    assert json.loads(stdout)["corner_error_px"] < 0.5


def test_constant_image_is_refused_before_solving(pair_files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 11: a constant image gave an arbitrary H with exit 0."""
    import gdvision.register.solver as solver

    monkeypatch.setattr(solver, "register_batch", lambda *a, **k: pytest.fail("solved a textureless image"))
    code, stdout, stderr = _run(str(pair_files / "flat.png"), str(pair_files / "b0.png"), "--quiet")
    assert code == 1 and "no texture" in stderr and "flat.png" in stderr


def test_unrelated_pair_is_rejected(pair_files: Path, tmp_path: Path) -> None:
    """Defect 11: two unrelated photos gave an arbitrary H with exit 0; now exit 1 naming the measure."""
    out = tmp_path / "H.json"
    code, stdout, stderr = _run(str(pair_files / "a0.png"), str(pair_files / "other.png"), "--out", str(out), "--json")
    assert code == 1
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert (
        len(errors) == 1 and "rejected" in errors[0] and ("gradient agreement" in errors[0] or "overlap" in errors[0])
    )
    rec = json.loads(stdout)  # one JSON object: the record, its verdict and measures, the error
    assert rec["verdict"]["ok"] is False and rec["error"] == errors[0][len("error: ") :]
    assert set(rec["verdict"]["measures"]) >= {"overlap", "gradient_agreement", "ncc"}
    assert not out.exists()  # a rejected result is not written


def test_manifest_with_rejected_items(pair_files: Path, tmp_path: Path) -> None:
    d = pair_files
    csv = tmp_path / "m.csv"
    csv.write_text(f"a,b,gt\n{d}/a0.png,{d}/b0.png,{d}/gt0.json\n{d}/a1.png,{d}/flat.png,\n{d}/a0.png,{d}/other.png,\n")
    r = runner.invoke(app, ["register", "--manifest", str(csv), "--out-dir", str(tmp_path / "o"), "--json"])
    assert r.exit_code == 1
    s = json.loads(r.stdout)
    assert s["ok"] == 1 and s["failed"] == 2
    errors = {f["id"]: f["error"] for f in s["failures"]}
    assert "no texture" in errors["a1__flat"] and "rejected" in errors["a0__other"]
    assert (tmp_path / "o" / "a0__b0.json").exists() and not (tmp_path / "o" / "a0__other.json").exists()


def test_manifest_with_corrupt_file_and_resume(pair_files: Path, tmp_path: Path) -> None:
    d = pair_files
    csv = d / "pairs.csv"
    rows = [f"a{i}.png,b{i}.png,gt{i}.json" for i in range(3)] + ["a0.png,corrupt.png,"]
    csv.write_text("a,b,gt\n" + "\n".join(rows) + "\n")
    out = tmp_path / "res"
    args = ["register", "--manifest", str(csv), "--out-dir", str(out), "--json", "--batch-size", "2"]
    r = runner.invoke(app, args)
    assert r.exit_code == 1  # one pair failed
    summary = json.loads(r.stdout)
    assert summary["ok"] == 3 and summary["failed"] == 1
    assert summary["metrics"]["corner_error_px"]["max"] < 0.5
    assert summary["failures"][0]["id"] == "a0__corrupt"
    lines = [json.loads(x) for x in (out / "run.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and {x["status"] for x in lines} == {"ok", "failed"}
    stamp = (out / "a0__b0.json").stat().st_mtime_ns
    r = runner.invoke(app, args)  # an earlier run's results are never mixed in silently
    assert r.exit_code == 2 and "--resume" in r.output
    r = runner.invoke(app, [*args, "--resume", "--max-error", "1e-9"])
    assert r.exit_code == 1
    summary = json.loads(r.stdout.splitlines()[0])
    assert summary["already_done"] == 3 and summary["done_now"] == 0 and summary["regressions"]
    assert "a1__b1" in summary["regressions"][0]
    assert (out / "a0__b0.json").stat().st_mtime_ns == stamp


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["missing.png", "b0.png"], 2, "not found"),
        (["a0.png", "corrupt.png"], 1, "cannot read image"),
        (["a0.png", "b0.png", "--levels", "7"], 1, "too small"),
        (["a0.png", "b0.png", "--device", "tpu"], 2, "unknown device"),
        (["a0.png", "b0.png", "--model", "spline"], 2, "--model"),
        (["a0.png", "b0.png", "--loss", "l3"], 2, "--loss"),
        (["a0.png", "b0.png", "--iters", "0"], 2, "--iters"),
        (["a0.png", "b0.png", "--lr", "nan"], 2, "--lr"),
        (["a0.png", "b0.png", "--init", "singular.json"], 1, "singular"),
        (["a0.png", "b0.png", "--init", "huge.json"], 1, "--init"),
        (["a0.png", "b0.png", "--gt", "huge.json"], 1, "--gt"),
        (["a0.png", "b0.png", "--gt", "other_size.json"], 1, "size_a"),
        (["a0.png", "b0.png", "--out", "a0.png"], 2, "overwrite input"),
        (["a0.png"], 2, "two images"),
        (["a0.png", "nan.npy"], 1, "NaN"),
    ],
)
def test_bad_input(pair_files: Path, args: list[str], code: int, message: str, monkeypatch) -> None:
    monkeypatch.chdir(pair_files)
    (pair_files / "singular.json").write_text(json.dumps({"H": [[1, 1, 0], [1, 1, 0], [0, 0, 1]]}))
    (pair_files / "huge.json").write_text(json.dumps({"H": [[1e300, 0, 0], [0, 1e300, 0], [1e300, 0, 1]]}))
    (pair_files / "other_size.json").write_text(json.dumps({"H": np.eye(3).tolist(), "size_a": [640, 480]}))
    np.save(pair_files / "nan.npy", np.full((H, W), np.nan, np.float32))
    r = runner.invoke(app, ["register", *args, "--quiet"])
    assert r.exit_code == code, r.output
    assert message in r.stderr
    assert "Traceback" not in r.output and "Warning" not in r.output  # one line, no numpy warnings
    assert len([ln for ln in r.output.splitlines() if ln.startswith("error:")]) == 1


def test_gt_is_checked_before_the_solve(pair_files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gdvision.register.solver as solver

    monkeypatch.chdir(pair_files)
    monkeypatch.setattr(solver, "register_batch", lambda *a, **k: pytest.fail("solved before checking --gt"))
    (pair_files / "gt_bad.json").write_text(json.dumps({"H": [[1, 0], [0, 1]]}))
    code, _, stderr = _run("a0.png", "b0.png", "--gt", "gt_bad.json", "--quiet")
    assert code == 1 and "3x3" in stderr


def test_usage_errors_come_before_torch() -> None:
    """A bad option value is reported without importing torch (which takes seconds)."""
    prog = (
        "import sys\n"
        "from gdvision.cli.app import main\n"
        "sys.argv = ['gdvision', 'register', 'a.png', 'b.png', '--model', 'spline']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
        "print(code, 'torch' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["2", "False"], r.stdout + r.stderr
    assert "--model" in r.stderr


# --------------------------------------------------------------------------------------------- --init auto


def _wide(d: Path, name: str, angle: float, scale: float, persp: bool) -> tuple[Path, Path, Path]:
    """A 256x192 crop of camera.png and B = the photo seen rotated by ``angle`` degrees and scaled about the centre."""
    w, h = 256, 192
    photo = iio.imread(ROOT / "sample_data" / "natural" / "camera.png").astype(np.float32) / 255.0
    T = np.array([[1, 0, -120], [0, 1, -100], [0, 0, 1.0]])
    c, s = np.cos(np.radians(angle)) * scale, np.sin(np.radians(angle)) * scale
    cx, cy = (w - 1) / 2, (h - 1) / 2
    G = np.array([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy], [0, 0, 1]])
    if persp:
        G = G @ np.array([[1, 0.02, 0], [0.01, 1, 0], [3e-4, -2e-4, 1]])
    a = cv2.warpPerspective(photo, T, (w, h), flags=cv2.INTER_LINEAR)
    b = cv2.warpPerspective(photo, G @ T, (w, h), flags=cv2.INTER_LINEAR)
    b = np.clip(b * 1.1 + np.random.default_rng(0).normal(0, 0.005, b.shape), 0, 1)
    paths = d / f"{name}_a.png", d / f"{name}_b.png", d / f"{name}_gt.json"
    iio.imwrite(paths[0], (a * 255).round().astype(np.uint8))
    iio.imwrite(paths[1], (b * 255).round().astype(np.uint8))
    paths[2].write_text(json.dumps({"H": (G / G[2, 2]).tolist()}))
    return paths


@pytest.fixture(scope="module")
def wide_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, Path]]:
    d = tmp_path_factory.mktemp("wide")
    return {"homography": _wide(d, "wide", 45, 0.7, True), "similarity": _wide(d, "sim", 60, 1.3, False)}


def test_wide_pair_direct_fails_and_auto_recovers_from_features(wide_files: dict, tmp_path: Path) -> None:
    """Issue 15: 45 degrees and scale 0.7 are beyond the direct solve; --init auto (default) starts from features."""
    a, b, gt = wide_files["homography"]
    code, stdout, _ = _run(str(a), str(b), "--gt", str(gt), "--init", "none", "--json", "--device", "cpu")
    rec = json.loads(stdout)
    assert rec["start"] == "direct" and (code == 1 or rec["corner_error_px"] > 3)
    out = tmp_path / "H.json"
    code, stdout, _ = _run(str(a), str(b), "--gt", str(gt), "--json", "--device", "cpu", "--out", str(out))
    rec = json.loads(stdout)
    assert code == 0 and rec["start"] == "features" and rec["corner_error_px"] < 1.0
    assert rec["features"]["inliers"] >= 15 and rec["direct_verdict"]["ok"] is False
    assert rec["verdict"]["measures"]["feature_agreement"] > 0.9
    assert json.loads(out.read_text())["start"] == "features"
    code, stdout, stderr = _run(str(a), str(b), "--gt", str(gt), "--device", "cpu")
    assert code == 0 and "start features" in stdout + stderr  # the human line says which start was used


def test_wide_pair_feature_start_fits_the_model(wide_files: dict) -> None:
    """With --model similarity the feature start is a similarity fitted to the inliers, and so is the result."""
    a, b, gt = wide_files["similarity"]
    code, stdout, _ = _run(str(a), str(b), "--gt", str(gt), "--model", "similarity", "--json", "--device", "cpu")
    rec = json.loads(stdout)
    assert code == 0 and rec["start"] == "features" and rec["corner_error_px"] < 1.0
    Hm = np.array(rec["H"])
    assert np.allclose(Hm[2], [0, 0, 1]) and np.isclose(Hm[0, 0], Hm[1, 1]) and np.isclose(Hm[0, 1], -Hm[1, 0])


def test_init_none_and_auto_keep_the_direct_result_on_a_near_pair(pair_files: Path) -> None:
    """A near pair: --init none, --init auto and the library's register_batch give the same H; start direct."""
    import torch

    from gdvision.register import RegisterConfig, register_batch

    d = pair_files
    recs = {}
    for mode in ("none", "auto"):
        code, stdout, _ = _run(str(d / "a2.png"), str(d / "b2.png"), "--init", mode, "--json", "--device", "cpu")
        recs[mode] = json.loads(stdout)
        assert code == 0 and recs[mode]["start"] == "direct"
    ta, tb = (torch.from_numpy(iio.imread(d / f"{s}2.png").astype(np.float32) / 255)[None, None] for s in "ab")
    assert recs["none"]["H"] == recs["auto"]["H"] == register_batch(ta, tb, RegisterConfig()).H[0].tolist()
    assert "feature_agreement" not in recs["none"]["verdict"]["measures"]


def test_unrelated_pair_still_fails_with_auto(pair_files: Path) -> None:
    code, stdout, stderr = _run(str(pair_files / "a0.png"), str(pair_files / "other.png"), "--init", "auto", "--json")
    rec = json.loads(stdout)
    assert code == 1 and rec["verdict"]["ok"] is False and "rejected" in stderr


def test_manifest_records_each_items_start(pair_files: Path, wide_files: dict, tmp_path: Path) -> None:
    a, b, gt = wide_files["homography"]
    d = pair_files
    a2, b2 = d / "a2.png", d / "b2.png"
    csv = tmp_path / "m.csv"
    csv.write_text(f"a,b,gt\n{a},{b},{gt}\n{a2},{b2},{d / 'gt2.json'}\n")
    out = tmp_path / "o"
    r = runner.invoke(app, ["register", "--manifest", str(csv), "--out-dir", str(out), "--json", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    wide = json.loads((out / f"{a.stem}__{b.stem}.json").read_text())
    near = json.loads((out / "a2__b2.json").read_text())
    assert wide["start"] == "features" and wide["corner_error_px"] < 1.0 and near["start"] == "direct"
    r = runner.invoke(app, ["register", "--manifest", str(csv), "--out-dir", str(tmp_path / "n"), "--init", "none"])
    assert r.exit_code == 1  # the direct solve alone cannot do the wide pair
    r = runner.invoke(app, ["register", "--manifest", str(csv), "--out-dir", str(tmp_path / "f"), "--init", str(gt)])
    assert r.exit_code == 2  # a start file belongs to one pair


def test_init_file_is_recorded_as_the_start(pair_files: Path) -> None:
    d = pair_files
    code, stdout, _ = _run(
        str(d / "a1.png"), str(d / "b1.png"), "--init", str(d / "gt1.json"), "--gt", str(d / "gt1.json"), "--json"
    )
    rec = json.loads(stdout)
    assert code == 0 and rec["start"] == "file" and rec["corner_error_px"] < 0.5 and "features" not in rec


def test_quiet_without_out_still_prints_the_result(pair_files: Path) -> None:
    """-q silences stderr only: without --out the homography goes to stdout, never nowhere (issue 19)."""
    d = pair_files
    code, stdout, stderr = _run(str(d / "a2.png"), str(d / "b2.png"), "-q", "--threads", "1", "--device", "cpu")
    assert code == 0
    assert stderr == ""
    assert stdout.startswith("H = [[")
    gt = np.array(json.loads((d / "gt2.json").read_text())["H"])
    h = np.array(json.loads(stdout.strip()[4:]))  # the printed nested list of floats
    assert np.abs(h / h[2, 2] - gt / gt[2, 2]).max() < 0.05


def test_negative_threads_is_a_usage_error(pair_files: Path) -> None:
    code, _, stderr = _run(str(pair_files / "a2.png"), str(pair_files / "b2.png"), "--threads", "-1")
    assert code == 2 and "--threads" in stderr
