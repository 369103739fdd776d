"""Registration: known motions recovered on real photos, losses, masks, --init, batching, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gdvision.cli.app import app
from gdvision.coords import mean_corner_error
from gdvision.errors import InputError, UsageError
from gdvision.register.solver import RegisterConfig, register_batch, register_pair

W, H = 192, 144


def make_pair(
    img: np.ndarray, Hm: np.ndarray, gain: float = 1.0, bias: float = 0.0, noise: float = 0.0, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A = a crop of a real photo, B = A seen through Hm (A -> B) with a photometric change."""
    rng = np.random.default_rng(seed)
    big = img[100 : 100 + 2 * H, 120 : 120 + 2 * W]
    a = cv2.resize(big, (W, H), interpolation=cv2.INTER_AREA)
    # B is rendered from the 2x larger source for realism (not a re-sampling of A itself)
    S = np.diag([2.0, 2.0, 1.0])
    S[:2, 2] = 0.5
    b = cv2.warpPerspective(big, S @ np.linalg.inv(Hm) @ np.linalg.inv(S), (2 * W, 2 * H), flags=cv2.WARP_INVERSE_MAP)
    b = cv2.resize(b, (W, H), interpolation=cv2.INTER_AREA)
    b = np.clip(b * gain + bias + rng.normal(0, noise, b.shape), 0, 1).astype(np.float32)
    return torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None]


def corner_err(Hest: torch.Tensor, Hm: np.ndarray) -> float:
    return float(mean_corner_error(Hest.to(torch.float64), torch.from_numpy(Hm), H, W))


MOTIONS = {
    "translation": np.array([[1, 0, 6.3], [0, 1, -4.7], [0, 0, 1]], float),
    "similarity": np.array(
        [[0.97 * np.cos(0.1), -0.97 * np.sin(0.1), 12.0], [0.97 * np.sin(0.1), 0.97 * np.cos(0.1), -9.0], [0, 0, 1]]
    ),
    "homography": np.array([[1.05, 0.04, -5.0], [-0.03, 0.96, 7.0], [2e-4, -1.5e-4, 1.0]]),
}


@pytest.mark.parametrize("model", list(MOTIONS))
def test_recovers_known_motion(model: str, natural_gray: np.ndarray) -> None:
    Hm = MOTIONS[model]
    a, b = make_pair(natural_gray, Hm, gain=1.15, bias=-0.04, noise=0.01)
    res = register_pair(a, b, RegisterConfig(model=model))
    assert corner_err(res.H[0], Hm) < 0.5
    assert not bool(res.failed[0])


@pytest.mark.parametrize("loss", ["ncc", "grad", "l1", "ssim"])
def test_losses_recover_homography(loss: str, natural_gray: np.ndarray) -> None:
    Hm = MOTIONS["homography"]
    exposure = loss in ("ncc", "grad")  # l1 and ssim compare raw intensities
    a, b = make_pair(natural_gray, Hm, gain=1.2 if exposure else 1.0, bias=0.05 if exposure else 0.0, noise=0.005)
    res = register_pair(a, b, RegisterConfig(loss=loss))
    assert corner_err(res.H[0], Hm) < 0.5


def test_mutual_information_across_modalities(natural_gray: np.ndarray) -> None:
    """B is a non-monotone remap of A's intensities (as between MRI modalities): NCC cannot, MI can."""
    Hm = MOTIONS["similarity"]
    a, b = make_pair(natural_gray, Hm)
    b = 4.0 * b * (1.0 - b)  # folds the intensity scale: dark and bright both map to dark
    res = register_pair(a, b, RegisterConfig(loss="mi", model="similarity"))
    assert corner_err(res.H[0], Hm) < 0.5


def test_init_refines_a_feature_start(natural_gray: np.ndarray) -> None:
    Hm = MOTIONS["homography"]
    a, b = make_pair(natural_gray, Hm, noise=0.01)
    rng = np.random.default_rng(3)
    c = np.float32([[0, 0], [W - 1, 0], [W - 1, H - 1], [0, H - 1]])
    start = cv2.getPerspectiveTransform(
        c, (cv2.perspectiveTransform(c[None], Hm)[0] + rng.normal(0, 3, (4, 2))).astype(np.float32)
    )
    assert corner_err(torch.from_numpy(start), Hm) > 2.0
    res = register_pair(a, b, RegisterConfig(), init=torch.from_numpy(start))
    assert corner_err(res.H[0], Hm) < 0.3


def test_masks_exclude_a_corrupted_region(natural_gray: np.ndarray) -> None:
    Hm = MOTIONS["homography"]
    a, b = make_pair(natural_gray, Hm)
    a = a.clone()
    a[..., :, : W // 3] = torch.rand(1, 1, H, W // 3)  # garbage in the left third of A
    mask = torch.ones(1, 1, H, W)
    mask[..., :, : W // 3 + 2] = 0
    res = register_pair(a, b, RegisterConfig(), mask_a=mask)
    assert corner_err(res.H[0], Hm) < 0.5


def test_batched_equals_single(natural_gray: np.ndarray) -> None:
    pairs = [make_pair(natural_gray, MOTIONS[m], noise=0.01, seed=i) for i, m in enumerate(MOTIONS)]
    a = torch.cat([p[0] for p in pairs])
    b = torch.cat([p[1] for p in pairs])
    batch = register_batch(a, b)
    for k, (pa, pb) in enumerate(pairs):
        single = register_batch(pa, pb)
        assert float(mean_corner_error(batch.H[k], single.H[0], H, W)) < 1e-3
        assert corner_err(batch.H[k], list(MOTIONS.values())[k]) < 0.5


def test_solver_bad_input() -> None:
    with pytest.raises(InputError, match="too small"):
        register_batch(torch.rand(1, 1, 20, 20), torch.rand(1, 1, 20, 20), RegisterConfig(levels=4))
    with pytest.raises(InputError, match="NaN"):
        register_batch(torch.full((1, 1, 64, 64), float("nan")), torch.rand(1, 1, 64, 64))
    with pytest.raises(UsageError, match="model"):
        register_batch(torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64), RegisterConfig(model="spline"))
    with pytest.raises(InputError, match="singular"):
        register_batch(torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64), init=torch.zeros(3, 3))


# --------------------------------------------------------------------------------------------- CLI

runner = CliRunner()


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    natural = iio.imread(Path(__file__).resolve().parents[2] / "sample_data" / "natural" / "camera.png")
    d = tmp_path_factory.mktemp("pairs")
    for i, m in enumerate(MOTIONS):
        a, b = make_pair(natural.astype(np.float32) / 255.0, MOTIONS[m], gain=1.1, noise=0.005, seed=i)
        iio.imwrite(d / f"a{i}.png", (a[0, 0].numpy() * 255).round().astype(np.uint8))
        iio.imwrite(d / f"b{i}.png", (b[0, 0].numpy() * 255).round().astype(np.uint8))
        (d / f"gt{i}.json").write_text(json.dumps({"H": MOTIONS[m].tolist()}))
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return d


def test_cli_single_outputs(pair_files: Path, tmp_path: Path) -> None:
    d = pair_files
    out = tmp_path / "H.json"
    r = runner.invoke(
        app,
        [
            "register",
            str(d / "a2.png"),
            str(d / "b2.png"),
            "--out",
            str(out),
            "--out-warped",
            str(tmp_path / "w.png"),
            "--out-overlay",
            str(tmp_path / "o.png"),
            "--gt",
            str(d / "gt2.json"),
            "--json",
            "--device",
            "cpu",
        ],
    )
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert rec["corner_error_px"] < 0.5
    assert json.loads(out.read_text())["H"] == rec["H"]
    warped = iio.imread(tmp_path / "w.png")
    assert warped.shape == (H, W)
    b = iio.imread(d / "b2.png").astype(float)
    inner = (slice(20, -20), slice(20, -20))
    assert np.abs(warped.astype(float)[inner] / 1.1 - b[inner] / 1.1).mean() < 12  # aligned (up to the 1.1 gain)
    assert iio.imread(tmp_path / "o.png").shape == (H, W, 3)


def test_cli_pairs_with_corrupt_file_and_resume(pair_files: Path, tmp_path: Path) -> None:
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
    # an earlier run's results are never mixed in silently
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "--resume" in r.output
    # resume: finished pairs are not redone, the broken one is retried and fails again; the CI gate names items
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
        (["a0.png", "b0.png", "--iters", "0"], 2, "--iters"),
        (["a0.png", "b0.png", "--init", "singular.json"], 1, "singular"),
        (["a0.png", "b0.png", "--out", "a0.png"], 2, "overwrite input"),
        (["a0.png"], 2, "two images"),
        (["a0.png", "nan.npy"], 1, "NaN"),
    ],
)
def test_cli_bad_input(pair_files: Path, args: list[str], code: int, message: str, monkeypatch) -> None:
    monkeypatch.chdir(pair_files)
    (pair_files / "singular.json").write_text(json.dumps({"H": [[1, 1, 0], [1, 1, 0], [0, 0, 1]]}))
    np.save(pair_files / "nan.npy", np.full((H, W), np.nan, np.float32))
    r = runner.invoke(app, ["register", *args, "--quiet"])
    assert r.exit_code == code, r.output
    assert message in r.output
    assert "Traceback" not in r.output
    assert len([ln for ln in r.output.splitlines() if ln.startswith("error:")]) == 1
