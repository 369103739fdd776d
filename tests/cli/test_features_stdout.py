"""``gdvision features IMG`` without --out/--out-dir prints the keypoints on stdout (the result never vanishes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from gdvision.cli.app import app
from gdvision.io.keypoints import read_keypoints

BOX = Path(__file__).resolve().parents[2] / "sample_data" / "box" / "box.png"


def test_one_image_without_out_prints_the_same_keypoints_as_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [str(BOX), "--max-features", "200", "--format", "vlfeat"]
    printed = CliRunner().invoke(app, ["features", *args, "-q"])
    assert printed.exit_code == 0, printed.output
    written = CliRunner().invoke(app, ["features", *args, "--out", "box.txt"])
    assert written.exit_code == 0, written.output
    assert printed.stdout == Path("box.txt").read_text()
    Path("printed.txt").write_text(printed.stdout)
    ks = read_keypoints("printed.txt", "vlfeat")
    assert 50 <= len(ks) <= 200 and np.isfinite(ks.xy).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["box.txt", "printed.txt"]  # nothing else written


def test_the_default_stdout_format_is_lowe_and_the_summary_goes_to_stderr():
    r = CliRunner().invoke(app, ["features", str(BOX), "--max-features", "100"])
    assert r.exit_code == 0, r.output
    n, dim = map(int, r.stdout.splitlines()[0].split())
    assert dim == 128 and 1 <= n <= 100
    assert "keypoints (stdout)" in r.stderr and "keypoints" not in r.stdout.splitlines()[0]


def test_several_images_or_json_without_out_are_usage_errors():
    r = CliRunner().invoke(app, ["features", str(BOX), str(BOX)])
    assert r.exit_code == 2 and "--out-dir" in r.output
    r = CliRunner().invoke(app, ["features", str(BOX), "--json"])
    assert r.exit_code == 2 and "--out" in r.output
