"""Item-by-item comparison of two batch runs (``gdvision compare RUN.jsonl BASELINE.jsonl``).

Both files are run logs written by the batch engine (:mod:`gdvision.runs.engine`); items are paired by id (the newest
line of an id wins). A metric's direction comes from its name: errors, residuals, depth error ratios and
``seconds`` are better lower; inliers, matches, PSNR, delta/ success rates, coverage are better higher; other
metrics are compared for change in either direction. An item regresses when a compared metric got worse by more
than ``tolerance`` (absolute) and ``rel_tolerance`` (fraction of the baseline's value), or when it failed in the
run but not in the baseline, or is missing from the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gdvision.errors import UsageError
from gdvision.runs.engine import read_records

LOWER_IS_BETTER = ("error", "abs_rel", "sq_rel", "rmse", "bad", "seconds", "residual", "loss")
HIGHER_IS_BETTER = ("inliers", "matches", "psnr", "delta", "success", "coverage", "known", "agreement", "keypoints")


def direction(metric: str) -> int:
    """+1 if higher is better, -1 if lower is better, 0 if unknown (any change counts)."""
    m = metric.lower()
    if any(k in m for k in LOWER_IS_BETTER):
        return -1
    if any(k in m for k in HIGHER_IS_BETTER):
        return 1
    return 0


@dataclass
class Comparison:
    """What changed between a run and its baseline."""

    compared: int = 0
    regressions: list[dict[str, Any]] = field(default_factory=list)
    improvements: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    new_items: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "compared": self.compared,
            "regressed": len(self.regressions),
            "improved": len(self.improvements),
            "missing_in_run": self.missing,
            "new_in_run": self.new_items,
            "regressions": self.regressions,
            "improvements": self.improvements,
        }


def compare_runs(
    run: Path,
    baseline: Path,
    metrics: list[str] | None = None,
    tolerance: float = 0.0,
    rel_tolerance: float = 0.0,
) -> Comparison:
    """Compare the run log ``run`` with ``baseline`` item by item (see the module docstring).

    ``metrics``: the metrics to compare (default: every numeric metric both records have, except ``seconds``).

    Example:
        >>> compare_runs(Path("new/run.jsonl"), Path("base/run.jsonl"), tolerance=0.01).regressions  # doctest: +SKIP
        []
    """
    for p in (run, baseline):
        if not p.is_file():
            raise UsageError(f"file not found: '{p}'")
    if tolerance < 0 or rel_tolerance < 0:
        raise UsageError("--tolerance and --rel-tolerance must be >= 0")
    new, old = read_records([run]), read_records([baseline])
    if not old:
        raise UsageError(f"'{baseline}' holds no run records")
    out = Comparison()
    out.missing = sorted(set(old) - set(new))
    out.new_items = sorted(set(new) - set(old))
    for iid in sorted(set(old) & set(new)):
        a, b = new[iid], old[iid]
        out.compared += 1
        if a.get("status") != "ok":
            if b.get("status") == "ok":
                out.regressions.append({"id": iid, "metric": "status", "run": "failed", "error": a.get("error")})
            continue
        ma, mb = a.get("metrics") or {}, b.get("metrics") or {}
        names = metrics or sorted(k for k in set(ma) & set(mb) if k != "seconds")
        for name in names:
            va, vb = ma.get(name), mb.get(name)
            if not isinstance(va, (int, float)) or not isinstance(vb, (int, float)):
                continue
            d = direction(name)
            worse = (vb - va) if d > 0 else (va - vb) if d < 0 else abs(va - vb)
            allowed = max(tolerance, rel_tolerance * abs(vb))
            entry = {"id": iid, "metric": name, "run": va, "baseline": vb}
            if worse > allowed:
                out.regressions.append(entry)
            elif d != 0 and -worse > allowed:
                out.improvements.append(entry)
    for iid in out.missing:
        out.regressions.append({"id": iid, "metric": "status", "run": "missing"})
    return out


__all__ = ["Comparison", "compare_runs", "direction"]
