"""``bench/gpu.sh --smoke``: the GPU benchmark script's CPU smoke mode runs and writes its one JSON file.

So that the script does not rot while no GPU is at hand: every step of the smoke mode exits 0 (edges' library
table and a targeted attack really run, on tiny sizes; the other benchmarks' options are checked against their
``--help``), and the file holds each bench's own result.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(os.environ.get("GDVISION_GPU_SH") == "1", reason="run by bench/gpu.sh itself")
@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash, timeout")
def test_gpu_script_smoke_mode(tmp_path):
    pytest.importorskip("cv2")
    out = tmp_path / "gpu.json"
    r = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu.sh"), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TMPDIR=str(tmp_path)),
    )
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["mode"] == "smoke" and doc["device"] == "cpu" and doc["ok"]
    assert set(doc["steps"]) == {"edges", "attack", "register", "match", "depth"}
    edges = doc["steps"]["edges"]["result"]
    assert edges["device"] == "cpu" and [row["batch"] for row in edges["library"]] == [1]
    assert edges["library"][0]["ms"]["gdvision"] > 0
    attack = doc["steps"]["attack"]["result"]
    assert attack["config"]["device"] == "cpu"
    assert any(s.get("steps_per_s_mean", 0) > 0 for s in attack["summary"].values())  # keys: mode (or pipeline/mode)
    assert [p.name for p in tmp_path.iterdir()] == ["gpu.json"]  # the scratch copy is gone
