"""``gdvision features``: output names that cannot clash, inputs never replaced, existing outputs kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gdvision.cli.app import app
from gdvision.io.keypoints import read_keypoints

runner = CliRunner()


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """A 160x120 crop of the bundled camera photo as PNG."""
    import imageio.v3 as iio

    img = iio.imread(Path(__file__).resolve().parents[2] / "sample_data" / "natural" / "camera.png")[100:220, 150:310]
    p = tmp_path_factory.mktemp("photo") / "photo.png"
    iio.imwrite(p, img)
    return p


def _args(*extra: str) -> list[str]:
    return ["features", *extra, "--device", "cpu", "--max-features", "100"]


def test_features_same_stem_is_refused_before_any_work(photo, tmp_path):
    """Defect 6: ``features in/a.png in/a.jpg --out-dir ft`` wrote one a.sift and reported two."""
    import imageio.v3 as iio

    d = tmp_path / "in"
    d.mkdir()
    img = iio.imread(photo)
    iio.imwrite(d / "a.png", img)
    iio.imwrite(d / "a.jpg", img[:, ::-1].copy())
    ft = tmp_path / "ft"
    r = runner.invoke(app, _args(str(d / "a.png"), str(d / "a.jpg"), "--out-dir", str(ft)))
    assert r.exit_code == 2, r.output
    assert "a.png" in r.output and "a.jpg" in r.output and "a.sift" in r.output
    assert not ft.exists() or not any(ft.iterdir())  # nothing written
    # the folder form finds both files too
    r = runner.invoke(app, _args(str(d), "--out-dir", str(ft)))
    assert r.exit_code == 2 and "a.png" in r.output and "a.jpg" in r.output
    # one image given twice is the same clash
    r = runner.invoke(app, _args(str(d / "a.png"), str(d / "a.png"), "--out-dir", str(ft)))
    assert r.exit_code == 2
    # distinct stems: one file each, reported as written
    iio.imwrite(d / "b.jpg", img)
    r = runner.invoke(app, _args(str(d / "a.png"), str(d / "b.jpg"), "--out-dir", str(ft), "--json"))
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert sorted(Path(x["out"]).name for x in rep["results"]) == ["a.sift", "b.sift"]
    for x in rep["results"]:
        assert len(read_keypoints(x["out"])) == x["keypoints"] > 10


def test_features_never_replaces_an_input(photo, tmp_path):
    """An input whose keypoint file name is itself (x.sift in the out-dir) is refused, also with --overwrite."""
    import imageio.v3 as iio

    d = tmp_path / "d"
    d.mkdir()
    x = d / "x.sift"
    x.write_bytes(photo.read_bytes())
    other = d / "y.png"
    iio.imwrite(other, iio.imread(photo))
    before = x.read_bytes()
    for extra in ([], ["--overwrite"]):
        r = runner.invoke(app, _args(str(other), str(x), "--out-dir", str(d), *extra))
        assert r.exit_code == 2, r.output
        assert "would overwrite input" in r.output and x.read_bytes() == before
        assert not (d / "y.sift").exists()  # refused before any work
    r = runner.invoke(app, _args(str(photo), "--out", str(photo), "--overwrite"))
    assert r.exit_code == 2 and "would overwrite input" in r.output


def test_features_existing_output_needs_overwrite(photo, tmp_path):
    out = tmp_path / "k"
    r = runner.invoke(app, _args(str(photo), "--out-dir", str(out), "--format", "vlfeat", "-q"))
    assert r.exit_code == 0, r.output
    f = out / "photo.txt"
    first = f.read_bytes()
    f.write_text("stale")
    r = runner.invoke(app, _args(str(photo), "--out-dir", str(out), "--format", "vlfeat"))
    assert r.exit_code == 2 and "photo.txt" in r.output and "--overwrite" in r.output
    assert f.read_text() == "stale"
    r = runner.invoke(app, _args(str(photo), "--out-dir", str(out), "--format", "vlfeat", "--overwrite", "-q"))
    assert r.exit_code == 0 and f.read_bytes() == first  # same bytes as the first run: deterministic
    ks = read_keypoints(f)
    assert 10 < len(ks) <= 100 and np.isfinite(ks.xy).all()


def test_features_out_dir_must_not_be_a_file(photo, tmp_path):
    r = runner.invoke(app, _args(str(photo), "--out-dir", str(photo)))
    assert r.exit_code == 2 and "Traceback" not in r.output
