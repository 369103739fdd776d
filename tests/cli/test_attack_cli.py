"""CLI tests of ``gdvision attack``: outputs, the report's honesty about the saved pixels, errors and exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from gdvision.attack import perturbation_stats
from gdvision.cli.app import app
from gdvision.io.images import read_image, write_json, write_png

runner = CliRunner()


@pytest.fixture(scope="module")
def pair(tmp_path_factory, natural_gray: np.ndarray):
    d = tmp_path_factory.mktemp("attack_in")
    a = natural_gray[60:156, 40:168]
    b = natural_gray[330:426, 300:428]
    write_png(d / "a.png", a)
    write_png(d / "b.png", b)
    write_png(d / "wide.png", natural_gray[:96, :150])
    mask = np.zeros((96, 128), dtype=np.float32)
    mask[20:70, 30:90] = 1.0
    write_png(d / "mask.png", mask)
    write_json(d / "shift.json", {"H": [[1, 0, 3], [0, 1, -2], [0, 0, 1]]})
    return d


def test_attack_writes_outputs_and_honest_report(pair, tmp_path) -> None:
    out = tmp_path / "adv"
    res = runner.invoke(
        app,
        [
            "attack",
            str(pair / "a.png"),
            str(pair / "b.png"),
            "--out-dir",
            str(out),
            "--steps",
            "2",
            "--eps",
            "6/255",
            "--max-features",
            "300",
            "--json",
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code in (0, 1), res.output  # 1 = attack did not succeed in 2 steps; outputs are still written
    rep = json.loads(res.stdout.strip().splitlines()[-1])
    for name in ("a_adv.png", "b_adv.png", "a_delta.png", "b_delta.png", "report.json", "matches.png"):
        assert (out / name).exists(), name
    assert json.loads((out / "report.json").read_text())["mode"] == "match"
    for key, stem in (("a", "a"), ("b", "b")):
        adv = read_image(out / f"{stem}_adv.png").tensor()
        orig = read_image(pair / f"{stem}.png").tensor()
        stats = perturbation_stats(adv, orig)
        assert stats == pytest.approx(rep["perturbation"][key])
        assert stats["linf_255"] <= 6 + 1e-4
    assert rep["gdvision_before"]["success"] is False
    assert res.exit_code == (0 if rep["gdvision_after"]["success"] else 1)


def test_patch_attack_changes_only_the_mask(pair, tmp_path) -> None:
    out = tmp_path / "patch"
    res = runner.invoke(
        app,
        [
            "attack",
            str(pair / "a.png"),
            str(pair / "b.png"),
            "--out-dir",
            str(out),
            "--steps",
            "1",
            "--quiet",
            "--mask",
            str(pair / "mask.png"),
            "--perturb",
            "a",
            "--max-features",
            "300",
            "--no-opencv",
        ],
    )
    assert res.exit_code in (0, 1), res.output
    adv = read_image(out / "a_adv.png").array[..., 0]
    orig = read_image(pair / "a.png").array[..., 0]
    mask = read_image(pair / "mask.png").array[..., 0] > 0
    changed = np.abs(adv - orig) > 0
    assert changed.any() and not changed[~mask].any()
    assert not (out / "b_adv.png").exists()


@pytest.mark.parametrize(
    ("extra", "code", "needle"),
    [
        (["--eps", "0"], 2, "--eps"),
        (["--eps", "-0.1"], 2, "--eps"),
        (["--eps", "eight"], 2, "--eps"),
        (["--mode", "steal"], 2, "--mode"),
        (["--perturb", "c"], 2, "--perturb"),
        (["--steps", "0"], 2, "--steps"),
        (["--loss", "hinge"], 2, "--loss"),
        (["--stop-inliers", "-1"], 2, "--stop-inliers"),
    ],
)
def test_bad_options(pair, tmp_path, extra, code, needle) -> None:
    res = runner.invoke(app, ["attack", str(pair / "a.png"), str(pair / "b.png"), "--out-dir", str(tmp_path)] + extra)
    assert res.exit_code == code, res.output
    assert needle in res.output and "Traceback" not in res.output


def test_different_sizes_need_target_h(pair, tmp_path) -> None:
    res = runner.invoke(app, ["attack", str(pair / "a.png"), str(pair / "wide.png"), "--out-dir", str(tmp_path)])
    assert res.exit_code == 2
    assert "--target-h" in res.output


def test_missing_and_wrong_files(pair, tmp_path) -> None:
    res = runner.invoke(app, ["attack", str(pair / "nope.png"), str(pair / "b.png"), "--out-dir", str(tmp_path)])
    assert res.exit_code == 2 and "not found" in res.output
    res = runner.invoke(
        app,
        [
            "attack",
            str(pair / "a.png"),
            str(pair / "b.png"),
            "--out-dir",
            str(tmp_path),
            "--mask",
            str(pair / "wide.png"),
        ],
    )
    assert res.exit_code == 1 and "mask" in res.output
    res = runner.invoke(
        app,
        [
            "attack",
            str(pair / "a.png"),
            str(pair / "b.png"),
            "--out-dir",
            str(tmp_path),
            "--mode",
            "unmatch",
            "--target-h",
            str(pair / "shift.json"),
        ],
    )
    assert res.exit_code == 2 and "--true-h" in res.output


def test_unmatch_of_a_pair_that_does_not_match(pair, tmp_path) -> None:
    """Unrelated crops have no homography to break: a clear error, exit 1."""
    flat = tmp_path / "flat.png"
    write_png(flat, np.full((96, 128), 0.5, dtype=np.float32))
    res = runner.invoke(
        app, ["attack", str(pair / "a.png"), str(flat), "--out-dir", str(tmp_path / "o"), "--mode", "unmatch"]
    )
    assert res.exit_code == 1, res.output
    assert "does not match" in res.output


def test_attack_manifest_logs_each_pair(pair, tmp_path) -> None:
    """Two attacks from a manifest (one with its own target H); outputs per id; the budget holds in the log."""
    (pair / "attacks.csv").write_text("id,a,b,target_h\nplain,a.png,b.png,\nshifted,a.png,b.png,shift.json\n")
    out = tmp_path / "runs"
    args = ["attack", "--manifest", str(pair / "attacks.csv"), "--out-dir", str(out), "--steps", "2"]
    args += ["--eps", "6/255", "--max-features", "300", "--no-opencv", "--json", "--device", "cpu"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["ok"] == 2 and rep["metrics"]["linf_255_max"]["max"] <= 6.0 + 1e-4
    for iid in ("plain", "shifted"):
        assert (out / iid / "a_adv.png").exists() and (out / iid / "report.json").exists()
    shifted = json.loads((out / "shifted" / "report.json").read_text())
    assert shifted["homography"] == [[1, 0, 3], [0, 1, -2], [0, 0, 1]]
    res = runner.invoke(app, [*args, "--resume", "--min-metric", "success=1"])
    assert res.exit_code == 1 and "regression" in res.output  # 2 steps cannot make them match


# --------------------------------------------------------------------------- a run that succeeds; same seed, same bytes

# A targeted attack that succeeds quickly for real: small crops of two different parts of a photo (no match before),
# a large budget (32/255) from the texture start, one Adam step, the top 200 Hessian keypoints.
SUCCEEDS = ["--eps", "32/255", "--steps", "1", "--target", "hessian", "--max-features", "200", "--no-opencv"]
SUCCEEDS += ["--device", "cpu"]


@pytest.fixture(scope="module")
def succeeded(tmp_path_factory, natural_gray: np.ndarray):
    d = tmp_path_factory.mktemp("attack_small")
    write_png(d / "a.png", natural_gray[60:124, 40:120])
    write_png(d / "b.png", natural_gray[330:394, 300:380])
    out = d / "adv"
    args = ["attack", str(d / "a.png"), str(d / "b.png"), "--out-dir", str(out), *SUCCEEDS, "--seed", "5", "--json"]
    res = runner.invoke(app, args)
    snapshot = {f.name: f.read_bytes() for f in sorted(out.iterdir())}
    return d, out, args, res, snapshot


def test_targeted_attack_succeeds_and_exits_0(succeeded) -> None:
    """The attack reaches the success rule (>= 30 inliers, corner error < 5 px), checked again on the saved PNGs."""
    import torch

    from gdvision.coords import mean_corner_error
    from gdvision.features import FeatureConfig, MatchConfig, match_images

    d, out, _, res, _ = succeeded
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["gdvision_before"]["success"] is False and rep["gdvision_before"]["inliers"] < 30
    assert rep["gdvision_after"]["success"] is True
    feats = FeatureConfig(detector="hessian", max_features=200, double_first=False, contrast_threshold=0.0)
    adv_a, adv_b = (read_image(out / f"{s}_adv.png").tensor() for s in ("a", "b"))
    m = match_images(adv_a, adv_b, MatchConfig(features=feats, seed=5))
    ce = float(mean_corner_error(m.model, torch.eye(3, dtype=torch.float64), 64, 80))
    assert int(m.inliers.sum()) >= 30 and ce < 5.0
    assert int(m.inliers.sum()) == rep["gdvision_after"]["inliers"]
    for s in ("a", "b"):
        stats = perturbation_stats(read_image(out / f"{s}_adv.png").tensor(), read_image(d / f"{s}.png").tensor())
        assert stats["linf_255"] <= 32 + 1e-4


def test_outputs_are_kept_unless_overwrite_and_same_seed_gives_same_bytes(succeeded) -> None:
    """A second run into the same folder is refused (exit 2, before any work) and changes nothing; with --overwrite
    it runs again and, with the same --seed, writes the same bytes (report.json: all but the timing)."""
    _, out, args, res, snapshot = succeeded
    assert res.exit_code == 0, res.output
    assert set(snapshot) == {"a_adv.png", "b_adv.png", "a_delta.png", "b_delta.png", "matches.png", "report.json"}
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2
    assert "exists" in refused.output and "--overwrite" in refused.output
    assert {f.name: f.read_bytes() for f in sorted(out.iterdir())} == snapshot
    again = runner.invoke(app, [*args, "--overwrite"])
    assert again.exit_code == 0, again.output
    now = {f.name: f.read_bytes() for f in sorted(out.iterdir())}
    assert set(now) == set(snapshot)
    for name in snapshot:
        if name == "report.json":
            old, new = json.loads(snapshot[name]), json.loads(now[name])
            assert old.pop("seconds") >= 0 and new.pop("seconds") >= 0
            assert old == new
        else:
            assert now[name] == snapshot[name], name


def test_usage_errors_come_before_torch(tmp_path) -> None:
    """Bad option values, an existing output and an output that would replace an input: exit 2, no torch import."""
    import subprocess
    import sys

    (tmp_path / "adv").mkdir()
    write_png(tmp_path / "adv" / "a_adv.png", np.zeros((20, 20), dtype=np.float32))  # an earlier run's output
    for name in ("a.png", "b.png", "a_adv.png"):
        write_png(tmp_path / name, np.zeros((20, 20), dtype=np.float32))
    a, b, b_named_like_output = (str(tmp_path / n) for n in ("a.png", "b.png", "a_adv.png"))
    cases = [
        ([a, b, "--out-dir", str(tmp_path / "o"), "--eps", "0"], "--eps"),
        ([a, b, "--out-dir", str(tmp_path / "o"), "--mode", "steal"], "--mode"),
        ([a, b, "--out-dir", str(tmp_path / "o"), "--lr", "2"], "--lr"),
        ([a, b, "--out-dir", str(tmp_path / "o"), "--init", "noise"], "--init"),
        ([a, b, "--out-dir", str(tmp_path / "adv")], "--overwrite"),
        ([a, b_named_like_output, "--out-dir", str(tmp_path)], "would overwrite input"),
    ]
    code = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "from gdvision.cli.app import app\n"
        "out = []\n"
        f"for args in {[c[0] for c in cases]!r}:\n"
        "    r = CliRunner().invoke(app, ['attack', *args])\n"
        "    out.append([r.exit_code, r.output])\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'runs': out}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    for (exit_code, output), (_, needle) in zip(got["runs"], cases, strict=True):
        assert exit_code == 2 and needle in output, output
    assert got["torch"] is False
