"""The shared CLI plumbing of manifest runs: --json errors, usage errors before torch, exit codes, per-row options."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from gdvision.cli.app import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "args",
    [
        ["edges", "--manifest", "{d}/nope.csv", "-o", "{d}/o"],
        ["register", "--manifest", "{d}/nope.csv", "--out-dir", "{d}/o"],
        ["register", "{d}/nope.png", "{d}/nope2.png"],
        ["match", "--manifest", "{d}/nope.csv", "--out-dir", "{d}/o"],
        ["depth", "--manifest", "{d}/nope.csv", "--out-dir", "{d}/o"],
        ["attack", "--manifest", "{d}/nope.csv", "--out-dir", "{d}/o"],
        ["compare", "{d}/nope.jsonl", "{d}/nope2.jsonl"],
    ],
    ids=lambda a: "-".join(x for x in a[:2] if "{" not in x),
)
def test_json_mode_prints_the_fatal_error_on_stdout(tmp_path: Path, args: list[str]) -> None:
    """Defect 13: with --json a fatal error printed nothing on stdout; a script reading it got no JSON at all."""
    r = runner.invoke(app, [a.format(d=tmp_path) for a in args] + ["--json"])
    assert r.exit_code == 2, r.output
    obj = json.loads(r.stdout)
    assert obj["exit_code"] == 2 and "not found" in obj["error"] and "nope" in obj["error"]
    assert "error: " in r.stderr


def test_manifest_option_errors_come_before_torch(tmp_path: Path) -> None:
    """Usage errors on option values are raised before the engine imports torch (seconds on every typo)."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from gdvision.cli.common import run_manifest_command\n"
        "from gdvision.errors import UsageError\n"
        "for opts in ({'batch_size': 0}, {'max_error': -1.0}, {'resume': True, 'overwrite': True},"
        " {'max_metric': ['mean']}):\n"
        "    try:\n"
        "        run_manifest_command(lambda d: None, dict(manifest=Path('m.csv'), out_dir=Path('o'), **opts))\n"
        "    except UsageError as exc:\n"
        "        print('usage', 'torch' in sys.modules)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.stdout.split() == ["usage", "False"] * 4, r.stdout + r.stderr


class _DropsAnItem:
    """A job that returns no outcome for item 'b' (a buggy task): the run must not report success."""

    name = "drop"
    required = ("x",)
    optional: tuple[str, ...] = ()
    path_columns: tuple[str, ...] = ()
    error_metric = None

    def item_id(self, fields: dict[str, str]) -> str:
        return fields["x"]

    def output_of(self, item_id: str, out_dir: Path) -> Path:
        return out_dir / f"{item_id}.txt"

    def load(self, item: object) -> None:
        return None

    def batch_key(self, item: object, loaded: object) -> None:
        return None

    def solve(self, group: list) -> list:
        from gdvision.runs.engine import Outcome

        return [Outcome(it, {"outputs": {}, "metrics": {}}) for it, _ in group if it.id != "b"]


def test_an_item_without_a_result_fails_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The run exited 0 when an item had no ok record though none had failed (how ``already_done: -1`` passed)."""
    from gdvision.cli.common import run_manifest_command

    (tmp_path / "m.csv").write_text("x\na\nb\n")
    opts = {"manifest": tmp_path / "m.csv", "out_dir": tmp_path / "out", "device": "cpu", "json_out": True}
    with pytest.raises(typer.Exit) as exc:
        run_manifest_command(lambda d: _DropsAnItem(), opts)
    assert exc.value.exit_code == 1
    rep = json.loads(capsys.readouterr().out)
    assert (rep["items"], rep["ok"], rep["failed"], rep["already_done"], rep["complete"]) == (2, 1, 0, 0, False)


def test_per_row_model_and_loss_change_the_result(tmp_path: Path) -> None:
    """Two rows of one perspective pair: 'homography' recovers it, 'translation' cannot; the loss column is used."""
    W, H = 192, 144
    Hm = np.array([[1.05, 0.04, -5.0], [-0.03, 0.96, 7.0], [2e-4, -1.5e-4, 1.0]])
    photo = iio.imread(ROOT / "sample_data" / "natural" / "camera.png").astype(np.float32) / 255.0
    big = photo[100 : 100 + 2 * H, 120 : 120 + 2 * W]
    S = np.diag([2.0, 2.0, 1.0])
    S[:2, 2] = 0.5
    a = cv2.resize(big, (W, H), interpolation=cv2.INTER_AREA)
    b = cv2.warpPerspective(big, S @ np.linalg.inv(Hm) @ np.linalg.inv(S), (2 * W, 2 * H), flags=cv2.WARP_INVERSE_MAP)
    b = cv2.resize(b, (W, H), interpolation=cv2.INTER_AREA)
    for name, img in (("a.png", a), ("b.png", b)):
        iio.imwrite(tmp_path / name, (img * 255).round().astype(np.uint8))
    (tmp_path / "gt.json").write_text(json.dumps({"H": Hm.tolist()}))
    rows = ["a,b,gt,model,loss,id", "a.png,b.png,gt.json,homography,,full", "a.png,b.png,gt.json,translation,,shift"]
    rows.append("a.png,b.png,gt.json,homography,l1,full_l1")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    args = ["register", "--manifest", str(tmp_path / "m.csv"), "--out-dir", str(out), "--device", "cpu", "--json"]
    r = runner.invoke(app, args)
    rep = json.loads(r.stdout)
    res = {i: json.loads((out / f"{i}.json").read_text()) for i in ("full", "full_l1")}
    assert (res["full"]["model"], res["full"]["loss"], res["full_l1"]["loss"]) == ("homography", "ncc", "l1")
    assert res["full"]["corner_error_px"] < 0.5 and res["full_l1"]["corner_error_px"] < 1.0
    assert not np.allclose(np.array(res["full"]["H"]), np.array(res["full_l1"]["H"]))  # l1 is another solve
    # a translation cannot fit a perspective pair: either a poor translation, or the solver rejects it (exit 1)
    if rep["failed"]:
        assert r.exit_code == 1 and [f["id"] for f in rep["failures"]] == ["shift"]
        assert not (out / "shift.json").exists()
    else:
        assert r.exit_code == 0, r.output
        shift = json.loads((out / "shift.json").read_text())
        assert shift["model"] == "translation" and shift["corner_error_px"] > 3.0
        Hs = np.array(shift["H"])
        assert np.allclose(Hs[:2, :2], np.eye(2)) and np.allclose(Hs[2], [0, 0, 1])  # really a translation
