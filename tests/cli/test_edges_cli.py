"""``gdvision edges``: batch engine and CLI (outputs, skipping, corrupt files, exit codes, JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gdvision.cli.app import app
from gdvision.errors import UsageError
from gdvision.filters.edges import EdgeConfig, edge_map, output_paths, run_edges, to_unit_range

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


def test_skip_existing_unless_overwrite(folder: Path, tmp_path: Path):
    out = tmp_path / "out"
    (folder / "broken.png").unlink()
    first = runner.invoke(app, ["edges", str(folder), "-o", str(out), "--quiet"])
    assert first.exit_code == 0, first.output
    marker = b"keep me"
    (out / "a.png").write_bytes(marker)
    again = runner.invoke(app, ["edges", str(folder), "-o", str(out), "--json"])
    assert again.exit_code == 0
    assert json.loads(again.stdout)["skipped"] == 4
    assert (out / "a.png").read_bytes() == marker
    forced = runner.invoke(app, ["edges", str(folder / "a.png"), "-o", str(out), "--overwrite", "--quiet"])
    assert forced.exit_code == 0
    assert (out / "a.png").read_bytes() != marker


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
        sorted(folder.iterdir()),
        tmp_path / "o",
        EdgeConfig(op="sobel", what="dy"),
        torch.device("cpu"),
        fmt="png16",
        batch_size=8,
        progress=lambda done, total, info: seen.append(done),
    )
    # a, b share a size (gray 64x80); c and d (RGB) are alone: three batches.
    assert summary.batches == 3 and summary.written == 4 and not summary.failures
    assert seen[-1] == 4
    assert iio.imread(tmp_path / "o" / "a.png").dtype == np.uint16
