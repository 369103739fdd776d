"""The depth range from the views (issue 16): triangulation with known cameras, the robust range from matches,
the fallback to the camera baselines with a warning, and the record of ``gdvision depth``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gdvision.cli.app import app
from gdvision.depth import DepthConfig, View, auto_depth_range
from gdvision.depth.auto_range import SourceMatches, confirmed_depths, depth_range_from_matches
from gdvision.geometry import fundamental_from_cameras, sampson_distance, triangulate_midpoint
from gdvision.tasks.depth_range import resolve_depth_range

pytestmark = pytest.mark.usefixtures("one_torch_thread")

F64 = torch.float64
K = torch.tensor([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]], dtype=F64)
SMALL = Path(__file__).resolve().parents[2] / "sample_data" / "stereo_small"


def pose(yaw: float, pitch: float, centre: tuple[float, float, float]) -> torch.Tensor:
    """World-to-camera (4, 4) of a camera at ``centre`` rotated by ``yaw`` (about y) then ``pitch`` (about x)."""
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    Ry = torch.tensor([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]], dtype=F64)
    Rx = torch.tensor([[1, 0, 0], [0, cp, -sp], [0, sp, cp]], dtype=F64)
    R = Rx @ Ry
    T = torch.eye(4, dtype=F64)
    T[:3, :3] = R
    T[:3, 3] = -R @ torch.tensor(centre, dtype=F64)
    return T


def project(T: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    Xc = X @ T[:3, :3].T + T[:3, 3]
    p = Xc @ K.T
    return p[:, :2] / p[:, 2:]


# a reference that is not at the origin and two converging, non-rectified sources
T_REF = pose(0.05, -0.03, (0.2, -0.1, -0.3))
T_SRC = [pose(-0.12, 0.02, (1.0, 0.1, -0.2)), pose(0.1, 0.05, (-0.8, -0.3, 0.1))]


def scene(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` world points in front of the reference at depths 3..12 (reference frame), and those depths."""
    g = torch.Generator().manual_seed(seed)
    z = 3.0 + 9.0 * torch.rand(n, generator=g, dtype=F64)
    xy = (torch.rand(n, 2, generator=g, dtype=F64) - 0.5) * torch.tensor([0.8, 0.6], dtype=F64) * z[:, None]
    Xc = torch.cat([xy, z[:, None]], 1)
    R, t = T_REF[:3, :3], T_REF[:3, 3]
    return (Xc - t) @ R, z  # R^T (X_cam - t)


def test_triangulation_is_exact_with_known_converging_cameras() -> None:
    X, z = scene(50)
    for T in T_SRC:
        Xt, za, zb = triangulate_midpoint(K, T_REF, K, T, project(T_REF, X), project(T, X))
        assert torch.allclose(Xt, X, atol=1e-9)
        assert torch.allclose(za, z, atol=1e-9)  # depth along the reference ray = reference-camera z
        zs = (X @ T[:3, :3].T + T[:3, 3])[:, 2]
        assert torch.allclose(zb, zs, atol=1e-9)
        F = fundamental_from_cameras(K, T_REF, K, T)
        assert float(sampson_distance(F[None], project(T_REF, X), project(T, X)).max()) < 1e-8
    # parallel rays (same pixel, same rotation, pure forward motion along the ray) are NaN, not a huge number
    T = T_REF.clone()
    T[:3, 3] -= T[:3, :3] @ (T_REF[:3, :3].T[:, 2])  # one unit along the reference's optical axis
    _, za, _ = triangulate_midpoint(K, T_REF, K, T, K[:2, 2][None], K[:2, 2][None])
    assert torch.isnan(za).all()


def test_range_from_matches_contains_the_true_depths_and_rejects_outliers() -> None:
    X, z = scene(300)
    g = torch.Generator().manual_seed(1)
    sources = []
    for T in T_SRC:
        pr, ps = project(T_REF, X), project(T, X)
        ps = ps + 0.3 * torch.randn(ps.shape, generator=g, dtype=F64)  # detector noise
        wrong = torch.rand(150, 2, generator=g, dtype=F64) * torch.tensor([640.0, 480.0], dtype=F64)
        sources.append(SourceMatches(K, T, torch.cat([pr, pr[:150]]), torch.cat([ps, wrong])))  # 1/3 outliers
    kept = confirmed_depths(K, T_REF, sources[0])
    assert 295 <= kept.numel() <= 310  # the inliers stay, nearly every random match goes (epipolar/reprojection)
    lo, hi, info = depth_range_from_matches(K, T_REF, sources)
    assert lo is not None and hi is not None
    assert lo < float(z.min()) and hi > float(z.max())  # contains every true depth
    assert lo > 2.0 and hi < 25.0  # and stays tight (the baseline rule of these cameras: far wider)
    assert info["matches"] == 900 and 590 <= info["points"] <= 620 and len(info["per_source"]) == 2
    p_lo, p_hi = info["depth_percentiles"]
    assert 3.0 <= p_lo < 3.5 and 11.5 < p_hi <= 12.0


def test_too_few_confirmed_matches_give_no_range() -> None:
    X, _ = scene(10)
    lo, hi, info = depth_range_from_matches(
        K, T_REF, [SourceMatches(K, T_SRC[0], project(T_REF, X), project(T_SRC[0], X))]
    )
    assert (lo, hi) == (None, None) and info["points"] == 10 and info["depth_percentiles"] is None


def _flat_views(h: int = 48, w: int = 64) -> tuple[View, View]:
    Ks = torch.tensor([[60.0, 0, 31.5], [0, 60.0, 23.5], [0, 0, 1]], dtype=F64)
    T = torch.eye(4, dtype=F64)
    T[0, 3] = -0.2
    img = torch.full((1, 1, h, w), 0.5)
    return View(img, Ks, torch.eye(4, dtype=F64), name="a"), View(img.clone(), Ks, T, name="b")


def test_textureless_views_fall_back_to_the_baselines_with_a_warning_naming_the_flags() -> None:
    ref, src = _flat_views()
    cfg, info = resolve_depth_range(ref, [src], DepthConfig())
    assert info["source"] == "baselines" and info["points"] == 0
    assert (cfg.min_depth, cfg.max_depth) == pytest.approx(auto_depth_range(ref, [src]))
    assert "--min-depth/--max-depth" in info["warning"] and "\n" not in info["warning"]
    # one given bound: the other comes from the automatic rule ("mixed"); both given: untouched, no matching
    cfg, info = resolve_depth_range(ref, [src], DepthConfig(max_depth=7.0))
    assert info["source"] == "mixed" and cfg.max_depth == 7.0 and cfg.min_depth == pytest.approx(info["min"])
    cfg, info = resolve_depth_range(ref, [src], DepthConfig(min_depth=1.0, max_depth=7.0))
    assert info == {"min": 1.0, "max": 7.0, "source": "given", "points": 0, "seconds": 0.0}
    # views too small for the feature detector (< 16 px): the same fallback, the reason recorded
    ref, src = _flat_views(12, 12)
    ref.image, src.image = torch.rand(1, 1, 12, 12), torch.rand(1, 1, 12, 12)
    cfg, info = resolve_depth_range(ref, [src], DepthConfig())
    assert info["source"] == "baselines" and "too small" in info["estimate"]["error"] and "warning" in info


runner = CliRunner()
TINY = ["--iters", "2", "--finest-iters", "1", "--gray", "--threads", "1"]


def test_cli_records_the_range_found_from_matches_on_stereo_small(tmp_path: Path) -> None:
    """Middlebury Motorcycle at 370x250: the automatic range holds the true depths (1st..99th percentile) and is
    far tighter than the baseline rule; summary.json records it, its source and the number of points."""
    out = tmp_path / "o"
    args = ["depth", str(SMALL / "left.png"), str(SMALL / "right.png"), "-c", str(SMALL / "calib.json")]
    res = runner.invoke(app, [*args, "-o", str(out), *TINY])
    assert res.exit_code == 0, res.output
    assert "warning" not in res.stderr
    rng = json.loads((out / "summary.json").read_text())["depth_range"]
    assert rng["source"] == "matches" and rng["points"] >= 40
    cal = json.loads((SMALL / "calib.json").read_text())["cameras"]
    f, base = cal["left"]["K"][0][0], -cal["right"]["T_world_to_cam"][0][3]
    doffs = cal["right"]["K"][0][2] - cal["left"]["K"][0][2]
    disp = np.load(SMALL / "disp_left.npy")
    z = f * base / (disp[np.isfinite(disp) & (disp > 0)] + doffs)
    z1, z99 = np.percentile(z, [1, 99])
    assert rng["min"] < z1 and rng["max"] > z99
    assert rng["max"] / rng["min"] < 4.0  # the baseline rule: 778..384064 mm, a ratio of ~500
    # one bound given: the other from the matches, recorded as mixed
    res = runner.invoke(app, [*args, "-o", str(tmp_path / "m"), "--max-depth", "6000", "--json", *TINY])
    assert res.exit_code == 0, res.output
    rng2 = json.loads(res.stdout.strip().splitlines()[-1])["depth_range"]
    assert rng2["source"] == "mixed" and rng2["max"] == 6000 and rng2["min"] == pytest.approx(rng["min"])


def test_cli_warns_once_on_stderr_when_the_views_are_textureless(tmp_path: Path) -> None:
    gray = np.full((48, 64), 128, np.uint8)
    iio.imwrite(tmp_path / "a.png", gray)
    iio.imwrite(tmp_path / "b.png", gray)
    ref, src = _flat_views()
    cams = {v.name + ".png": {"K": v.K.tolist(), "world_to_cam": v.world_to_cam.tolist()} for v in (ref, src)}
    (tmp_path / "cams.json").write_text(json.dumps(cams))
    args = ["depth", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-c", str(tmp_path / "cams.json"), *TINY]
    res = runner.invoke(app, [*args, "-o", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    warnings = [x for x in res.stderr.splitlines() if x.startswith("warning:")]
    assert len(warnings) == 1 and "--min-depth/--max-depth" in warnings[0]
    rng = json.loads((tmp_path / "o" / "summary.json").read_text())["depth_range"]
    assert rng["source"] == "baselines" and rng["points"] == 0 and "warning" in rng
    assert [rng["min"], rng["max"]] == pytest.approx(list(auto_depth_range(ref, [src])))
    res = runner.invoke(app, [*args, "-o", str(tmp_path / "q"), "-q"])
    assert res.exit_code == 0 and res.stderr == ""
