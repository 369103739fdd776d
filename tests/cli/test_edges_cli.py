"""``gdvision edges``: folder mode and CLI (outputs, the output policy, corrupt files, exit codes, JSON)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gdvision.cli.app import app
from gdvision.errors import UsageError
from gdvision.filters.edges import EdgeConfig, edge_map, to_unit_range
from gdvision.tasks.edges import output_paths, plan_edges, run_edges

runner = CliRunner()


@pytest.fixture
def folder(tmp_path: Path, sample_dir: Path) -> Path:
    """Four real images of two sizes, one RGB, plus a corrupt file."""
    src = tmp_path / "in"
    src.mkdir()
    cam = iio.imread(sample_dir / "natural" / "camera.png")
    iio.imwrite(src / "a.png", cam[:64, :80])
    iio.imwrite(src / "b.png", cam[100:164, 50:130])
    iio.imwrite(src / "c.png", cam[:48, :48])
    iio.imwrite(src / "d.png", iio.imread(sample_dir / "natural" / "chelsea.png")[:64, :80])
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    return src


def _load(path: Path) -> torch.Tensor:
    im = iio.imread(path).astype(np.float32) / 255.0
    t = torch.from_numpy(im)
    return t[None, None] if t.dim() == 2 else t.permute(2, 0, 1)[None]


def test_cli_writes_mirrored_outputs_and_reports_corrupt_file(folder: Path, tmp_path: Path):
    out = tmp_path / "out"
    res = runner.invoke(app, ["edges", str(folder), "-o", str(out), "--json", "--batch-size", "2"])
    assert res.exit_code == 1, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["files"] == 5 and summary["written"] == 4 and summary["failed"] == 1
    assert summary["failures"][0]["path"].endswith("broken.png")
    assert "broken.png" in res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png", "d.png"]
    # The PNG is the library's Sobel magnitude scaled so a unit step reads 1.
    cfg = EdgeConfig()
    expected = to_unit_range(edge_map(_load(folder / "a.png"), cfg), cfg)[0, 0].numpy()
    got = iio.imread(out / "a.png").astype(np.float32) / 255.0
    assert np.abs(got - expected).max() <= 0.5 / 255 + 1e-6
    assert iio.imread(out / "d.png").shape == (64, 80, 3)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_existing_output_is_refused_unless_overwrite(folder: Path, tmp_path: Path):
    """One rule for every command: an existing output stops the run (exit 2, naming file and flag) before any work."""
    out = tmp_path / "out"
    (folder / "broken.png").unlink()
    first = runner.invoke(app, ["edges", str(folder), "-o", str(out), "--quiet"])
    assert first.exit_code == 0, first.output
    for name in ("a.png", "b.png", "d.png"):
        (out / name).unlink()
    (out / "c.png").write_bytes(b"keep me")
    before = _snapshot(out)
    again = runner.invoke(app, ["edges", str(folder), "-o", str(out), "--json"])
    assert again.exit_code == 2, again.output
    assert "c.png" in again.stderr and "--overwrite" in again.stderr
    assert _snapshot(out) == before  # nothing written, not even a.png before c.png
    forced = runner.invoke(app, ["edges", str(folder), "-o", str(out), "--overwrite", "--json"])
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.stdout)["written"] == 4
    assert (out / "a.png").exists() and (out / "c.png").read_bytes() != b"keep me"


def test_out_dir_linked_to_the_inputs_never_replaces_them(folder: Path, tmp_path: Path):
    """Defect 2 (folder mode): --out-dir naming the inputs' folder through a symlink, with --overwrite."""
    (folder / "broken.png").unlink()
    link = tmp_path / "link"
    link.symlink_to(folder, target_is_directory=True)
    before = _snapshot(folder)
    for out in (folder, link):
        res = runner.invoke(app, ["edges", str(folder), "-o", str(out), "--overwrite"])
        assert res.exit_code == 2, res.output
        assert "a.png" in res.stderr and "input" in res.stderr
        assert _snapshot(folder) == before


def test_input_linked_into_the_out_dir_is_not_replaced(folder: Path, tmp_path: Path):
    """An input that is a symlink to a file in --out-dir: its real file is an input too."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes((folder / "a.png").read_bytes())
    links = tmp_path / "links"
    links.mkdir()
    (links / "a.png").symlink_to(out / "a.png")
    before = _snapshot(out)
    res = runner.invoke(app, ["edges", str(links), "-o", str(out), "--overwrite"])
    assert res.exit_code == 2, res.output
    assert "would overwrite input" in res.stderr
    assert _snapshot(out) == before


def test_outputs_of_two_inputs_clash_before_any_work(folder: Path, tmp_path: Path):
    """a.png and a.jpg would both become a.png: exit 2 naming both, nothing written."""
    iio.imwrite(folder / "a.jpg", iio.imread(folder / "a.png"))
    out = tmp_path / "out"
    res = runner.invoke(app, ["edges", str(folder), "-o", str(out)])
    assert res.exit_code == 2, res.output
    assert "a.jpg" in res.stderr and "a.png" in res.stderr
    assert not out.exists()


def test_folder_and_manifest_modes_write_the_same_bytes(folder: Path, tmp_path: Path):
    """Both modes go through one compute-and-write path."""
    (folder / "broken.png").unlink()
    (tmp_path / "m.csv").write_text("image\n" + "".join(f"{folder / n}\n" for n in ("a.png", "d.png")))
    for fmt in ("png", "npy"):
        common = ["--op", "scharr", "--what", "dy", "--format", fmt, "-q"]
        res = runner.invoke(app, ["edges", str(folder), "-o", str(tmp_path / f"f_{fmt}"), *common])
        assert res.exit_code == 0, res.output
        res = runner.invoke(app, ["edges", "--manifest", str(tmp_path / "m.csv"), "-o", str(tmp_path / fmt), *common])
        assert res.exit_code == 0, res.output
        for n in ("a", "d"):
            name = f"{n}.{fmt}"
            assert (tmp_path / fmt / name).read_bytes() == (tmp_path / f"f_{fmt}" / name).read_bytes()


_NO_TORCH = """
import sys
from typer.testing import CliRunner
from gdvision.cli.app import app
for args in {cases!r}:
    res = CliRunner().invoke(app, ["edges", *args])
    assert res.exit_code == 2, (args, res.output)
    print(res.stderr.strip())
print("torch imported:", "torch" in sys.modules)
"""


def test_usage_errors_on_option_values_come_before_importing_torch(folder: Path, tmp_path: Path):
    out = str(tmp_path / "o")
    cases = [
        [str(folder), "-o", out, "--op", "prewitt"],
        [str(folder), "-o", out, "--ksize", "4"],
        [str(folder), "-o", out, "--border", "wrap"],
        [str(folder), "-o", out, "--format", "jpg"],
        [str(folder), "-o", out, "--what", "angle"],
        [str(folder), "-o", out, "--op", "canny", "--sigma", "0"],
        ["--manifest", str(folder / "m.csv"), "-o", out, "--op", "canny", "--ksize", "1"],
    ]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    res = subprocess.run(
        [sys.executable, "-c", _NO_TORCH.format(cases=cases)], capture_output=True, text=True, env=env, timeout=120
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[-1] == "torch imported: False"
    # the messages name the flags, not the config's fields
    assert lines[0] == "error: unknown --op 'prewitt': use one of sobel, scharr, laplacian, canny"
    assert lines[1] == "error: --ksize for sobel must be one of 1, 3, 5, 7, got 4"
    assert lines[3] == "error: unknown --format 'jpg': use one of png, png16, npy"
    assert lines[5].startswith("error: --sigma must be > 0")


@pytest.mark.parametrize(
    ("args", "cfg"),
    [
        (["--op", "scharr", "--what", "dx"], EdgeConfig(op="scharr", what="dx")),
        (["--op", "laplacian", "--ksize", "1", "--border", "replicate"], EdgeConfig(op="laplacian", ksize=1)),
        (["--op", "sobel", "--what", "orientation", "--ksize", "5"], EdgeConfig(what="orientation", ksize=5)),
        (["--op", "canny", "--low", "40", "--high", "120"], EdgeConfig(op="canny", low=40, high=120)),
    ],
)
def test_npy_output_equals_library(folder: Path, tmp_path: Path, args, cfg):
    if "--border" in args:
        cfg.border = args[args.index("--border") + 1]
    out = tmp_path / "out"
    res = runner.invoke(app, ["edges", str(folder / "a.png"), "-o", str(out), "--format", "npy", "-q", *args])
    assert res.exit_code == 0, res.output
    got = np.load(out / "a.npy")
    expected = edge_map(_load(folder / "a.png"), cfg)[0, 0].numpy()
    assert got.shape == (64, 80)
    assert np.allclose(got, expected, atol=1e-6)


def test_canny_png_matches_opencv(folder: Path, tmp_path: Path):
    cv2 = pytest.importorskip("cv2")
    out = tmp_path / "out"
    res = runner.invoke(app, ["edges", str(folder / "b.png"), "-o", str(out), "--op", "canny", "-q"])
    assert res.exit_code == 0, res.output
    ours = iio.imread(out / "b.png") > 0
    ref = cv2.Canny(iio.imread(folder / "b.png"), 50, 150) > 0
    assert (ours == ref).mean() >= 0.99 and ref.sum() > 20


def test_usage_errors(folder: Path, tmp_path: Path):
    out = str(tmp_path / "o")
    cases = [
        ["edges", str(folder), "-o", out, "--op", "prewitt"],
        ["edges", str(folder), "-o", out, "--ksize", "4"],
        ["edges", str(folder), "-o", out, "--op", "canny", "--low", "-3"],
        ["edges", str(folder), "-o", out, "--border", "wrap"],
        ["edges", str(folder), "-o", out, "--format", "jpg"],
        ["edges", str(folder), "-o", out, "--device", "tpu"],
        ["edges", str(tmp_path / "nothing*.png"), "-o", out],
        ["edges", str(folder), "-o", str(folder)],  # would overwrite the inputs
        ["edges", str(folder), "-o", str(folder / "a.png")],  # the out-dir is an input file
    ]
    for args in cases:
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert res.stderr.startswith("error: ") and "Traceback" not in res.output


def test_missing_file_fails_but_others_are_written(folder: Path, tmp_path: Path):
    out = tmp_path / "out"
    res = runner.invoke(app, ["edges", str(folder / "a.png"), str(folder / "nope.png"), "-o", str(out), "-q"])
    assert res.exit_code == 1
    assert (out / "a.png").exists() and "nope.png" in res.stderr


def test_output_paths_mirror_and_collisions(tmp_path: Path):
    paths = [tmp_path / "x" / "a.png", tmp_path / "x" / "sub" / "a.jpg"]
    outs = output_paths(paths, tmp_path / "o", "npy")
    assert outs == [tmp_path / "o" / "a.npy", tmp_path / "o" / "sub" / "a.npy"]
    with pytest.raises(UsageError):
        output_paths([tmp_path / "a.png", tmp_path / "a.jpg"], tmp_path / "o", "png")


def test_run_edges_groups_by_size(folder: Path, tmp_path: Path):
    (folder / "broken.png").unlink()
    seen: list[int] = []
    summary = run_edges(
        plan_edges(sorted(folder.iterdir()), tmp_path / "o", "png16"),
        EdgeConfig(op="sobel", what="dy"),
        torch.device("cpu"),
        batch_size=8,
        progress=lambda done, total, info: seen.append(done),
    )
    # a, b share a size (gray 64x80); c and d (RGB) are alone: three batches.
    assert summary.batches == 3 and summary.written == 4 and not summary.failures
    assert seen[-1] == 4
    assert iio.imread(tmp_path / "o" / "a.png").dtype == np.uint16
