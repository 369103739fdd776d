"""Re-running a manifest into the same out-dir: refuse, --resume, --overwrite, changed parameters, torn logs, modes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from typer.testing import CliRunner

from gdvision.cli.app import app

runner = CliRunner()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Three images, a manifest of them, and a manifest with a corrupt fourth file."""
    d = tmp_path / "in"
    d.mkdir()
    rng = np.random.default_rng(3)
    for i in range(3):
        iio.imwrite(d / f"im{i}.png", (rng.random((24, 32, 3)) * 255).astype(np.uint8))
    (d / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    (d / "m.csv").write_text("image\nim0.png\nim1.png\nim2.png\n")
    (d / "with_bad.csv").write_text("image\nim0.png\nim1.png\nim2.png\nbad.png\n")
    return d


def _edges(manifest: Path, out: Path, *extra: str) -> object:
    return runner.invoke(
        app, ["edges", "--manifest", str(manifest), "-o", str(out), "--device", "cpu", "--json", *extra]
    )


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "run.jsonl").read_text().splitlines()]


def test_an_earlier_run_is_refused_without_a_flag(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _edges(folder / "with_bad.csv", out).exit_code == 1  # bad.png failed: no finished item needed
    (out / "im0.png").unlink()
    (out / "run.jsonl").write_text(
        "\n".join(line for line in (out / "run.jsonl").read_text().splitlines() if "bad" in line) + "\n"
    )
    stamp = (out / "im1.png").stat().st_mtime_ns
    r = _edges(folder / "with_bad.csv", out)
    assert r.exit_code == 2 and "run.jsonl" in r.output and "--resume" in r.output and "--overwrite" in r.output
    assert json.loads(r.stdout)["exit_code"] == 2
    assert (out / "im1.png").stat().st_mtime_ns == stamp and not (out / "im0.png").exists()


def test_an_existing_output_without_a_log_is_refused(folder: Path, tmp_path: Path) -> None:
    """Outputs of something else (no run log) are not replaced silently either."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "im1.png").write_bytes(b"precious")
    r = _edges(folder / "m.csv", out)
    assert r.exit_code == 2 and "im1.png" in r.output and "exists" in r.output and "--overwrite" in r.output
    assert (out / "im1.png").read_bytes() == b"precious" and not (out / "im0.png").exists()


def test_resume_with_other_parameters_is_refused(folder: Path, tmp_path: Path) -> None:
    """A re-run with different parameters must not keep the earlier run's outputs as if they were its own."""
    out = tmp_path / "out"
    assert _edges(folder / "with_bad.csv", out, "--op", "sobel").exit_code == 1
    before = {p.name: p.read_bytes() for p in out.glob("im*.png")}
    r = _edges(folder / "with_bad.csv", out, "--op", "laplacian", "--resume")
    assert r.exit_code == 2 and "op: 'sobel' then, 'laplacian' now" in r.output and "--overwrite" in r.output
    assert {p.name: p.read_bytes() for p in out.glob("im*.png")} == before
    r = _edges(folder / "with_bad.csv", out, "--format", "npy", "--resume")
    assert r.exit_code == 2 and "fmt: 'png' then, 'npy' now" in r.output
    assert _edges(folder / "with_bad.csv", out, "--op", "sobel", "--resume").exit_code == 1  # same: fine
    assert all(rec["params"]["op"] == "sobel" for rec in _log(out))


def test_overwrite_redoes_every_item_and_keeps_the_old_log(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _edges(folder / "m.csv", out).exit_code == 0
    old_log = (out / "run.jsonl").read_text()
    inodes = {i: (out / f"im{i}.png").stat().st_ino for i in range(3)}
    r = _edges(folder / "m.csv", out, "--overwrite", "--op", "laplacian")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert (rep["done_now"], rep["already_done"], rep["ok"]) == (3, 0, 3)
    (kept,) = out.glob("old-*.run.jsonl")
    assert kept.read_text() == old_log
    assert all((out / f"im{i}.png").stat().st_ino != inodes[i] for i in range(3))  # each file written anew
    assert {rec["params"]["op"] for rec in _log(out)} == {"laplacian"} and len(_log(out)) == 3


def test_a_fixed_input_becomes_ok_on_resume(folder: Path, tmp_path: Path) -> None:
    """The failed item is redone (its partial output replaced); the finished ones are kept as they are."""
    out = tmp_path / "out"
    assert _edges(folder / "with_bad.csv", out).exit_code == 1
    stamp = (out / "im0.png").stat().st_mtime_ns
    iio.imwrite(folder / "bad.png", np.full((24, 32, 3), 200, np.uint8))  # the input is fixed
    (out / "bad.png").write_bytes(b"partial output of a crashed write")
    r = _edges(folder / "with_bad.csv", out, "--resume")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert (rep["ok"], rep["failed"], rep["done_now"], rep["already_done"]) == (4, 0, 1, 3)
    assert (out / "im0.png").stat().st_mtime_ns == stamp
    assert iio.imread(out / "bad.png").max() == 0  # a flat image has no edges: the real result replaced the junk
    assert [rec["status"] for rec in _log(out) if rec["id"] == "bad"] == ["failed", "ok"]  # appended; newest wins


def test_a_torn_last_line_is_set_aside(folder: Path, tmp_path: Path) -> None:
    """A crash mid-write leaves half a line: it is moved aside before appending, and the summary says so."""
    out = tmp_path / "out"
    assert _edges(folder / "with_bad.csv", out).exit_code == 1
    torn = b'{"id": "im9", "index": 9, "sta'
    with (out / "run.jsonl").open("ab") as fh:
        fh.write(torn)
    iio.imwrite(folder / "bad.png", np.zeros((24, 32, 3), np.uint8))
    r = _edges(folder / "with_bad.csv", out, "--resume")
    assert r.exit_code == 0, r.output
    (note,) = json.loads(r.stdout)["torn_log_lines"]
    assert note["bytes"] == len(torn) and Path(note["saved_to"]).read_bytes() == torn
    lines = (out / "run.jsonl").read_text().splitlines()
    assert all(isinstance(json.loads(line), dict) for line in lines)  # still valid JSON Lines
    assert sorted(json.loads(line)["id"] for line in lines) == ["bad", "bad", "im0", "im1", "im2"]
    with (out / "run.jsonl").open("ab") as fh:
        fh.write(b'{"id": "x"')
    r = runner.invoke(
        app, ["edges", "--manifest", str(folder / "m.csv"), "-o", str(out), "--resume", "--device", "cpu"]
    )
    assert r.exit_code == 0 and "torn line" in r.output and "10 bytes set aside" in r.output


def test_result_files_get_normal_modes(folder: Path, tmp_path: Path) -> None:
    """New result files are 0644 under umask 022 (not mkstemp's 0600); a replaced file keeps its mode."""
    old = os.umask(0o022)
    try:
        out = tmp_path / "out"
        assert _edges(folder / "m.csv", out).exit_code == 0
        for name in ("im0.png", "im2.png", "run.jsonl"):
            assert (out / name).stat().st_mode & 0o777 == 0o644, name
        (out / "im1.png").chmod(0o600)
        assert _edges(folder / "m.csv", out, "--overwrite").exit_code == 0
        assert (out / "im1.png").stat().st_mode & 0o777 == 0o600
        assert (out / "im0.png").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)
