"""eps auto (the smallest breaking budget), targets and ensembles, warm starts, and the CLI's early usage errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gdvision.attack import AttackConfig, attack_pair, judge_members, match_config_for, search_budget
from gdvision.attack.search import ladder_levels
from gdvision.attack.targets import target_features
from gdvision.cli.app import app
from gdvision.errors import UsageError
from gdvision.features import FeatureConfig, MatchConfig
from gdvision.io.images import read_image, write_json, write_png

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = FeatureConfig(detector="hessian", max_features=300, double_first=False, contrast_threshold=0.01)
SHIFT = torch.tensor([[1.0, 0.0, -3.0], [0.0, 1.0, -2.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _crop(img: np.ndarray, x: int, y: int, w: int = 128, h: int = 96) -> torch.Tensor:
    return torch.round(torch.from_numpy(img[y : y + h, x : x + w].copy())[None, None] * 255) / 255


@pytest.fixture(scope="module")
def true_pair(natural_gray: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """B(x) = A(x + (3, 2)): the true H maps A to B by (-3, -2) (SHIFT)."""
    return _crop(natural_gray, 40, 60), _crop(natural_gray, 43, 62)


def test_gdvision_target_is_match_with_its_defaults() -> None:
    """The default target's white-box matcher is exactly `gdvision match`'s default MatchConfig."""
    assert match_config_for(AttackConfig()) == MatchConfig()
    assert [n for n, _ in AttackConfig(target="hessian,gdvision").members()] == ["hessian", "gdvision"]
    assert AttackConfig(target="hessian").members()[0][1] == target_features("hessian")
    with pytest.raises(UsageError, match="target"):
        AttackConfig(target="gdvision,sift").validate()
    with pytest.raises(UsageError, match="ensemble"):
        AttackConfig(target="gdvision,hessian", features=SMALL).validate()


def test_ladder() -> None:
    assert ladder_levels(1) == [1] and ladder_levels(16) == [1, 2, 4, 8, 16] and ladder_levels(5) == [1, 2, 4, 5]


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 1000), eps_levels=st.integers(1, 6), scale=st.floats(0.0, 0.5))
def test_warm_start_stays_within_budget(seed: int, eps_levels: int, scale: float) -> None:
    """A warm start from any perturbation (here up to 0.5, far over budget) is projected: the output stays within
    eps on 8-bit levels."""
    g = torch.Generator().manual_seed(seed)
    a = torch.round(torch.nn.functional.avg_pool2d(torch.rand(1, 1, 40, 40, generator=g), 3, 1, 1) * 255) / 255
    b = torch.round(torch.nn.functional.avg_pool2d(torch.rand(1, 1, 40, 40, generator=g), 3, 1, 1) * 255) / 255
    start = (torch.randn(1, 1, 40, 40, generator=g) * scale, torch.randn(1, 1, 40, 40, generator=g) * scale)
    cfg = AttackConfig(eps=eps_levels / 255, steps=1, features=SMALL)
    r = attack_pair(a, b, None, cfg, start=start)
    for adv, x0 in ((r.adv_a, a), (r.adv_b, b)):
        assert float((adv - x0).abs().max()) <= eps_levels / 255 + 1e-6
        assert torch.equal(torch.round(adv * 255) / 255, adv)


def test_eps_star_is_minimal_on_saved_pngs(true_pair, tmp_path) -> None:
    """eps* breaks the pair and the level below does not, both judged on PNGs written and read back."""
    a, b = true_pair
    cfg = AttackConfig(mode="unmatch", eps_auto=True, eps_max=6 / 255, steps=1, features=SMALL, stop_check_every=1)
    assert not judge_members(a, b, SHIFT, cfg)[0]  # the clean pair matches
    s = search_budget(a, b, SHIFT, cfg)
    assert s.level is not None and 1 <= s.level <= 6
    assert [r["level"] for r in s.rungs][: len(ladder_levels(s.level))] == ladder_levels(6)[: len(s.rungs)]

    def reloaded(x: torch.Tensor, name: str) -> torch.Tensor:
        write_png(tmp_path / name, x)
        back = read_image(tmp_path / name).tensor()
        assert torch.equal(back, x)  # the saved PNG is exactly the evaluated pixels
        return back

    xa, xb = reloaded(s.result.adv_a, "a.png"), reloaded(s.result.adv_b, "b.png")
    assert float((xa - a).abs().max()) <= s.level / 255 + 1e-6
    assert judge_members(xa, xb, SHIFT, cfg)[0]
    if s.level > 1:  # the level below was attacked and did not break the pair
        assert s.below is not None and float((s.below.adv_a - a).abs().max()) <= (s.level - 1) / 255 + 1e-6
        ya, yb = reloaded(s.below.adv_a, "a1.png"), reloaded(s.below.adv_b, "b1.png")
        assert not judge_members(ya, yb, SHIFT, cfg)[0]
    tried = {r["level"]: r["works"] for r in s.rungs}
    assert tried[s.level] and (s.level == 1 or tried[s.level - 1] is False)


def test_unbroken_at_eps_max(true_pair) -> None:
    """A judge nothing satisfies: every ladder rung is tried once, and the verdict is 'unbroken'."""
    a, b = true_pair
    cfg = AttackConfig(mode="unmatch", eps_auto=True, eps_max=3 / 255, steps=1, features=SMALL)
    s = search_budget(a, b, SHIFT, cfg, judge=lambda xa, xb: False)
    assert s.level is None and s.result is None and [r["level"] for r in s.rungs] == [1, 2, 3]
    assert float((s.last.adv_a - a).abs().max()) <= 3 / 255 + 1e-6


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--target", "sift"], "unknown target 'sift'"),
        (["--target", "gdvision,,hessian"], "empty member"),
        (["--eps", "auto", "--eps-max", "2.5/255"], "whole number of 8-bit levels"),
        (["--eps", "auto", "--eps-max", "0"], "--eps-max must be in"),
        (["--eps", "auto", "--eps-max", "300/255"], "--eps-max must be in"),
        (["--eps-max", "abc"], "--eps-max must be a number"),
        (["--target", "gdvision,hessian", "--max-features", "10"], "single --target"),
    ],
)
def test_bad_options_exit_2_before_torch(args: list[str], needle: str, tmp_path) -> None:
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom gdvision.cli.app import app\n"
        f"r = CliRunner().invoke(app, ['attack', 'a.png', 'b.png', '--out-dir', {str(tmp_path / 'o')!r}, *{args!r}])\n"
        "print(r.exit_code, 'torch' in sys.modules)\nprint(r.output)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    first, output = out.split("\n", 1)
    assert first == "2 False", out
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], output


def test_cli_eps_auto_report_and_manifest_curve(true_pair, tmp_path) -> None:
    """--eps auto: the report's eps* and the saved PNGs agree; a manifest run writes the robustness curve."""
    a, b = true_pair
    write_png(tmp_path / "a.png", a)
    write_png(tmp_path / "b.png", b)
    write_json(tmp_path / "H.json", {"H": SHIFT.tolist()})
    common = ["--mode", "unmatch", "--eps", "auto", "--eps-max", "3/255", "--steps", "2", "--target", "hessian"]
    common += ["--max-features", "300", "--no-opencv", "--device", "cpu"]
    out = tmp_path / "one"
    res = CliRunner().invoke(
        app,
        ["attack", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--true-h", str(tmp_path / "H.json")]
        + common
        + ["--out-dir", str(out), "--json"],
    )
    assert res.exit_code in (0, 1), res.output
    rep = json.loads(res.stdout.strip().splitlines()[-1])
    bs = rep["budget_search"]
    level = bs["eps_star_255"]
    assert res.exit_code == (0 if level is not None else 1)
    adv = read_image(out / "a_adv.png").tensor()
    assert rep["perturbation"]["a"]["linf_255"] == pytest.approx(float((adv - a).abs().max()) * 255, abs=1e-3)
    assert rep["perturbation"]["a"]["linf_255"] <= (3 if level is None else level) + 1e-4
    assert rep["success"] == (level is not None) and "hessian" in rep["targets"] and "gdvision" in rep["targets"]
    assert rep["targets"]["gdvision"]["attacked"] is False  # the transfer figure
    man = tmp_path / "pairs.csv"
    man.write_text(f"a,b,true_h,id\n{tmp_path / 'a.png'},{tmp_path / 'b.png'},{tmp_path / 'H.json'},p1\n")
    res = CliRunner().invoke(app, ["attack", "--manifest", str(man), *common, "--out-dir", str(tmp_path / "many")])
    assert res.exit_code in (0, 1), res.output
    curve = json.loads((tmp_path / "many" / "robustness.json").read_text())
    assert curve["pairs"] == 1 and curve["eps_255"] == [0, 1, 2, 3]
    lv = curve["eps_star_255"]["p1"]
    assert curve["fraction_broken"] == [float(lv is not None and lv <= k) for k in range(4)]


def test_robustness_files_from_reports(tmp_path) -> None:
    """The curve of a run folder: fraction broken per level, the median counting unbroken pairs above eps-max, and
    (with matplotlib) a PNG that decodes."""
    from gdvision.tasks.attack import write_robustness

    for name, level in (("p1", 3), ("p2", None), ("p3", 1)):
        (tmp_path / name).mkdir()
        write_json(tmp_path / name / "report.json", {"budget_search": {"eps_star_255": level, "eps_max_255": 4}})
    curve = write_robustness(tmp_path, tmp_path / "robustness.json", tmp_path / "robustness.png")
    assert curve is not None and curve["median_eps_star_255"] == 3
    assert curve["fraction_broken"] == pytest.approx([0, 1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert json.loads((tmp_path / "robustness.json").read_text())["pairs"] == 3
    pytest.importorskip("matplotlib")
    assert min(read_image(tmp_path / "robustness.png").array.shape[:2]) > 100
