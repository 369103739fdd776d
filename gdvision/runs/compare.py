"""Item-by-item comparison of two batch runs (``gdvision compare RUN BASELINE``).

Both are run logs written by the batch engine (:mod:`gdvision.runs.engine`), given as the ``run.jsonl`` file or the
run's ``--out-dir`` folder; items are paired by id (the newest line of an id wins). Every metric a command logs has
a direction in :data:`METRIC_DIRECTIONS` (families such as ``bad_2.0`` and ``delta_1`` by pattern): lower is better
(errors, AbsRel, RMSE, EPE, bad-N, holes, seconds), higher is better (inliers, matches, keypoints, coverage, delta-N,
PSNR, success), or neutral (edges' ``mean``, register's ``iterations``, the attack's after-attack values, whose good
direction depends on the mode): a neutral metric, like one no command logs, must not change by more than the
tolerance in either direction.

By default only **quality** metrics are compared: every metric except the **bookkeeping** ones in
:data:`BOOKKEEPING` (counts and timings such as ``iterations``, ``seconds``, keypoint counts, edges' ``mean``), which
change for reasons that are no regression; ``--metric`` compares any logged metric. A run whose baseline logs no
quality metric at all (``edges``) compares its bookkeeping metrics instead (except ``seconds``), and says so. The
default tolerances (:data:`DEFAULT_TOLERANCE` absolute, :data:`DEFAULT_REL_TOLERANCE` of the baseline) let float
noise and rounding pass and catch a change of a few percent.

An item regresses when a compared metric got worse by more than ``tolerance`` (absolute) and ``rel_tolerance``
(fraction of the baseline's value), when the baseline has a number for it and the run has none (null, NaN, or no
such metric), when it failed in the run but not in the baseline, or when it is missing from the run. A comparison
that compares nothing fails too: when items succeeded in both runs but no metric has a number in both.

Example:
    >>> direction("epe"), direction("delta_2"), direction("mean")
    (-1, 1, 0)
    >>> compared_by_default("corner_error_px"), compared_by_default("iterations")
    (True, False)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gdvision._checks import check_number
from gdvision.errors import UsageError
from gdvision.runs.engine import read_records

LOWER, HIGHER, NEUTRAL = -1, 1, 0

METRIC_DIRECTIONS: dict[str, int] = {
    # register
    "corner_error_px": LOWER,
    "iterations": NEUTRAL,
    # match (and register's corner_error_px)
    "inliers": HIGHER,
    "matches": HIGHER,
    "keypoints_a": HIGHER,
    "keypoints_b": HIGHER,
    # edges
    "mean": NEUTRAL,
    # depth: gdvision.depth.metrics, and the task's known_fraction
    "abs_rel": LOWER,
    "sq_rel": LOWER,
    "rmse": LOWER,
    "epe": LOWER,
    "holes": LOWER,
    "coverage": HIGHER,
    "pixels": HIGHER,
    "known_fraction": HIGHER,
    # attack: the after-attack values are better low for `match` and high for `unmatch`, so neutral
    "success": HIGHER,
    "psnr_db_min": HIGHER,
    "linf_255_max": LOWER,
    "inliers_after": NEUTRAL,
    "corner_error_after_px": NEUTRAL,
    # every record
    "seconds": LOWER,
}
"""Direction of every metric a command logs: -1 lower is better, +1 higher is better, 0 any change counts."""

BOOKKEEPING: frozenset[str] = frozenset(
    {
        "iterations",  # register: how long the solver ran, not how well
        "seconds",  # every record: timing depends on the machine and its load
        "keypoints_a",  # match: detector counts; the quality is in inliers and corner_error_px
        "keypoints_b",
        "pixels",  # depth: how many pixels the ground truth has, not how good the estimate is
        "mean",  # edges: the mean edge strength, a fingerprint of the output
        "inliers_after",  # attack: better low or high depending on the mode; success says whether it worked
        "corner_error_after_px",
    }
)
"""Metrics that ``compare`` leaves out unless named with ``--metric``: the others are the quality metrics."""

DEFAULT_TOLERANCE = 1e-6
"""Default allowed worsening in a metric's own units (float noise on values near zero)."""
DEFAULT_REL_TOLERANCE = 0.01
"""Default allowed worsening as a fraction of the baseline's value (1%)."""

METRIC_FAMILIES: tuple[tuple[re.Pattern[str], int], ...] = (
    (re.compile(r"bad_\d+(\.\d+)?"), LOWER),  # Middlebury bad-t: fraction of pixels off by more than t px
    (re.compile(r"delta_\d+"), HIGHER),  # fraction of pixels within 1.25^k of the truth
)


def known_metric(metric: str) -> bool:
    """Whether ``metric`` has a declared direction (in :data:`METRIC_DIRECTIONS` or a family of it)."""
    return metric in METRIC_DIRECTIONS or any(p.fullmatch(metric) for p, _ in METRIC_FAMILIES)


def direction(metric: str) -> int:
    """+1 if higher is better, -1 if lower is better, 0 if neutral or unknown (any change counts)."""
    if metric in METRIC_DIRECTIONS:
        return METRIC_DIRECTIONS[metric]
    return next((d for p, d in METRIC_FAMILIES if p.fullmatch(metric)), NEUTRAL)


def compared_by_default(metric: str) -> bool:
    """Whether ``compare`` without ``--metric`` compares ``metric``: it is not :data:`BOOKKEEPING`."""
    return metric not in BOOKKEEPING


def log_files(path: Path) -> list[Path]:
    """The run log(s) that ``path`` names: the file itself, or in a run folder its ``run.jsonl`` (else the
    per-rank logs ``run.rank*.jsonl`` of an unfinished distributed run).

    Raises:
        UsageError: ``path`` does not exist, or is a folder with no run log.
    """
    if path.is_file():
        return [path]
    if path.is_dir():
        if (path / "run.jsonl").is_file():
            return [path / "run.jsonl"]
        ranks = sorted(path.glob("run.rank*.jsonl"))
        if ranks:
            return ranks
        raise UsageError(f"'{path}' is a folder without a run log (run.jsonl): give a --manifest run's --out-dir")
    raise UsageError(f"file not found: '{path}'")


def _number(value: Any) -> float | None:
    """``value`` as a float when it is a number (not NaN), else None (null, missing, text)."""
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return float(value)
    return None


@dataclass
class Comparison:
    """What changed between a run and its baseline.

    ``problems``: reasons the comparison itself fails (nothing could be compared); ``failed`` is True when there
    are regressions or problems.
    """

    compared: int = 0
    regressions: list[dict[str, Any]] = field(default_factory=list)
    improvements: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    new_items: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tolerance: float = DEFAULT_TOLERANCE
    rel_tolerance: float = DEFAULT_REL_TOLERANCE

    @property
    def failed(self) -> bool:
        return bool(self.regressions or self.problems)

    @property
    def regressed_items(self) -> list[str]:
        """Ids of the items with at least one regression, in order."""
        return list(dict.fromkeys(r["id"] for r in self.regressions))

    @property
    def improved_items(self) -> list[str]:
        """Ids of the items with at least one improvement and no regression."""
        bad = set(self.regressed_items)
        return [i for i in dict.fromkeys(r["id"] for r in self.improvements) if i not in bad]

    def as_dict(self) -> dict[str, Any]:
        return {
            "compared": self.compared,
            "regressed": len(self.regressed_items),
            "improved": len(self.improved_items),
            "regressed_items": self.regressed_items,
            "regressed_metrics": len(self.regressions),
            "improved_metrics": len(self.improvements),
            "tolerance": self.tolerance,
            "rel_tolerance": self.rel_tolerance,
            "notes": self.notes,
            "missing_in_run": self.missing,
            "new_in_run": self.new_items,
            "metrics": self.metrics,
            "problems": self.problems,
            "regressions": self.regressions,
            "improvements": self.improvements,
        }


def _check_metric_names(names: list[str], records: list[dict[str, Any]]) -> None:
    logged = {k for r in records for k in (r.get("metrics") or {})}
    unknown = [n for n in names if n not in logged]
    if unknown:
        have = ", ".join(sorted(logged)) or "none"
        raise UsageError(f"--metric {unknown[0]}: no item of either run logs it (metrics logged: {have})")


def compare_runs(
    run: Path,
    baseline: Path,
    metrics: list[str] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    rel_tolerance: float = DEFAULT_REL_TOLERANCE,
) -> Comparison:
    """Compare the run log ``run`` with ``baseline`` item by item (see the module docstring).

    ``run``, ``baseline``: a ``run.jsonl`` or the run folder holding it. ``metrics``: the metrics to compare
    (default: the quality metrics the baseline has a number for, see :func:`compared_by_default`); a name that no
    record of either run logs is a usage error.

    Raises:
        UsageError: a log is missing, the baseline holds no records, a tolerance is negative or not finite, or a
            ``metrics`` name is logged by neither run.

    Example:
        >>> compare_runs(Path("new/run.jsonl"), Path("base/run.jsonl"), tolerance=0.01).regressions  # doctest: +SKIP
        []
    """
    run_logs, base_logs = log_files(run), log_files(baseline)
    check_number(tolerance, "--tolerance", low=0.0)
    check_number(rel_tolerance, "--rel-tolerance", low=0.0)
    new, old = read_records(run_logs), read_records(base_logs)
    if not old:
        raise UsageError(f"'{baseline}' holds no run records")
    out = Comparison(tolerance=tolerance, rel_tolerance=rel_tolerance)
    wanted = compared_by_default
    if metrics:
        metrics = list(dict.fromkeys(metrics))
        _check_metric_names(metrics, [*new.values(), *old.values()])
    else:
        logged = {k for r in old.values() if r.get("status") == "ok" for k in (r.get("metrics") or {})} - {"seconds"}
        if logged and not any(compared_by_default(k) for k in logged):
            wanted = logged.__contains__
            names = ", ".join(sorted(logged))
            out.notes.append(f"the baseline logs no quality metric: comparing its bookkeeping metrics ({names})")
    out.missing = sorted(set(old) - set(new))
    out.new_items = sorted(set(new) - set(old))
    both_ok, shared, used = 0, 0, set()
    for iid in sorted(set(old) & set(new)):
        a, b = new[iid], old[iid]
        out.compared += 1
        if a.get("status") != "ok":
            if b.get("status") == "ok":
                out.regressions.append({"id": iid, "metric": "status", "run": "failed", "error": a.get("error")})
            continue
        if b.get("status") != "ok":
            continue
        both_ok += 1
        ma, mb = a.get("metrics") or {}, b.get("metrics") or {}
        names = metrics or sorted(k for k in mb if wanted(k))
        for name in names:
            va, vb = _number(ma.get(name)), _number(mb.get(name))
            if vb is None:  # nothing to compare against
                continue
            used.add(name)
            if va is None:
                out.regressions.append(
                    {"id": iid, "metric": name, "run": "missing" if name not in ma else "null", "baseline": vb}
                )
                continue
            shared += 1
            d = direction(name)
            worse = (vb - va) if d > 0 else (va - vb) if d < 0 else abs(va - vb)
            allowed = max(tolerance, rel_tolerance * abs(vb))
            entry = {"id": iid, "metric": name, "run": va, "baseline": vb}
            if worse > allowed:
                out.regressions.append(entry)
            elif d != 0 and -worse > allowed:
                out.improvements.append(entry)
    out.metrics = sorted(used)
    if both_ok and not shared:
        which = f"--metric {', '.join(metrics)}" if metrics else "metric"
        out.problems.append(f"nothing compared: no {which} has a number in both runs for any item")
    for iid in out.missing:
        out.regressions.append({"id": iid, "metric": "status", "run": "missing"})
    return out


__all__ = [
    "BOOKKEEPING",
    "DEFAULT_REL_TOLERANCE",
    "DEFAULT_TOLERANCE",
    "METRIC_DIRECTIONS",
    "METRIC_FAMILIES",
    "Comparison",
    "compare_runs",
    "compared_by_default",
    "direction",
    "known_metric",
    "log_files",
]
