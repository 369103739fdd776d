"""CLI tests of ``gdvision attack``: outputs, the report's honesty about the saved pixels, errors and exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from gdvision.attack.solver import perturbation_stats
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
