"""What the report says about a run: counts, failures, metrics, the worst items, the change against a baseline.

The verdict against a baseline is :func:`gdvision.runs.compare.compare_runs`'s, with its default tolerances, so the
page and ``gdvision compare RUN BASELINE`` never disagree. The metrics shown as quality metrics are the ones
``compare`` compares by default (:func:`gdvision.runs.compare.compared_by_default`; for a run that logs none, such
as ``edges``, its other metrics except ``seconds``, as ``compare`` does).

**Worst items** per quality metric: the highest values of a lower-is-better metric, the lowest of a
higher-is-better one, and for a neutral metric the values farthest from the median.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gdvision.errors import UsageError
from gdvision.report.load import RunData, load_run, resolve_output


@dataclass
class Report:
    """Everything the page shows (``render`` in :mod:`gdvision.report.html` turns it into HTML)."""

    run: RunData
    out: Path
    worst_n: int
    quality: list[str]
    metrics: list[str]
    worst: dict[str, list[str]] = field(default_factory=dict)
    missing_files: list[str] = field(default_factory=list)
    baseline: RunData | None = None
    comparison: Any = None  # gdvision.runs.compare.Comparison
    environment: dict[str, str] = field(default_factory=dict)

    @property
    def verdict(self) -> str | None:
        """``"regressed"`` / ``"no regression"`` against the baseline (compare's exit 1 / 0), None without one."""
        if self.comparison is None:
            return None
        return "regressed" if self.comparison.failed else "no regression"

    def by_id(self) -> dict[str, dict[str, Any]]:
        return {r["id"]: r for r in self.run.records}

    def seconds(self) -> dict[str, float]:
        s = [float(r["seconds"]) for r in self.run.ok if isinstance(r.get("seconds"), (int, float))]
        if not s:
            return {}
        return {"total": sum(s), "mean": statistics.fmean(s), "median": statistics.median(s), "max": max(s)}

    def devices(self) -> list[str]:
        found = {
            str((r.get("result") or {}).get("device")) for r in self.run.ok if (r.get("result") or {}).get("device")
        }
        return sorted(found)

    def summary(self) -> dict[str, Any]:
        """The report's facts as JSON (what ``gdvision report --json`` prints)."""
        out: dict[str, Any] = {
            "report": str(self.out),
            "command": self.run.command,
            "items": len(self.run.records),
            "ok": len(self.run.ok),
            "failed": len(self.run.failed),
            "failures": [{"id": r["id"], "error": r.get("error")} for r in self.run.failed],
            "quality_metrics": self.quality,
            "worst": self.worst,
            "missing_files": len(self.missing_files),
            "notes": self.run.notes,
            "seconds_per_item": self.seconds(),
        }
        if self.comparison is not None:
            out.update(
                {
                    "baseline": str(self.baseline.path) if self.baseline else None,
                    "verdict": self.verdict,
                    "regressed_items": self.comparison.regressed_items,
                    "improved_items": self.comparison.improved_items,
                }
            )
        return out


def numeric(value: Any) -> float | None:
    """``value`` as a finite float (booleans as 0/1), else None.

    >>> numeric(2), numeric(True), numeric(float("nan")), numeric("x")
    (2.0, 1.0, None, None)
    """
    if isinstance(value, (int, float)) and math.isfinite(float(value)):
        return float(value)
    return None


def quality_metrics(run: RunData) -> tuple[list[str], list[str]]:
    """(the quality metrics, every numeric metric) logged by the run's ``ok`` items, by ``compare``'s rule."""
    from gdvision.runs.compare import compared_by_default

    logged = sorted({k for r in run.ok for k, v in (r.get("metrics") or {}).items() if numeric(v) is not None})
    quality = [k for k in logged if compared_by_default(k)]
    if not quality:
        quality = [k for k in logged if k != "seconds"]
    return quality, logged


def worst_items(run: RunData, metric: str, n: int) -> list[str]:
    """Ids of the ``n`` worst ``ok`` items by ``metric`` (see the module docstring), worst first."""
    from gdvision.runs.compare import direction

    vals = [(r["id"], v) for r in run.ok if (v := numeric((r.get("metrics") or {}).get(metric))) is not None]
    if not vals or n <= 0:
        return []
    d = direction(metric)
    if d < 0:
        key = [-v for _, v in vals]
    elif d > 0:
        key = [v for _, v in vals]
    else:
        med = statistics.median(v for _, v in vals)
        key = [-abs(v - med) for _, v in vals]
    order = sorted(range(len(vals)), key=lambda i: (key[i], vals[i][0]))
    return [vals[i][0] for i in order[:n]]


def missing_outputs(run: RunData) -> list[str]:
    """The output files of ``ok`` records that are not there any more (deleted or moved after the run)."""
    gone = []
    for r in run.ok:
        for value in (r.get("outputs") or {}).values():
            if isinstance(value, str) and resolve_output(value, run.folder) is None:
                gone.append(value)
    return gone


def environment() -> dict[str, str]:
    """Versions of the environment that writes the report (a run log does not record them); torch is not imported."""
    from importlib import metadata

    from gdvision import __version__

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "gdvision": __version__,
        "torch": version("torch"),
        "numpy": version("numpy"),
        "matplotlib": version("matplotlib"),
        "python": sys.version.split()[0],
    }


def build_report(
    run_dir: str | os.PathLike[str],
    baseline: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    worst: int = 5,
) -> Report:
    """Read the run (and baseline) and work out what the page shows; UsageError for unusable input.

    Raises:
        UsageError: no run log or no readable record in ``run_dir`` or ``baseline``, a baseline of another command,
            ``worst`` < 0.
    """
    if worst < 0:
        raise UsageError(f"--worst must be >= 0, got {worst}")
    run = load_run(run_dir, "run")
    quality, logged = quality_metrics(run)
    target = Path(out) if out is not None else run.folder / "report.html"
    rep = Report(run, target, worst, quality, logged, environment=environment())
    rep.worst = {m: worst_items(run, m, worst) for m in quality}
    rep.missing_files = missing_outputs(run)
    if baseline is not None:
        base = load_run(baseline, "--baseline")
        if "unknown" not in (base.command, run.command) and base.command != run.command:
            raise UsageError(
                f"--baseline '{baseline}' is a {base.command} run and '{run_dir}' a {run.command} run: "
                "compare two runs of one command"
            )
        from gdvision.runs.compare import compare_runs

        rep.baseline = base
        rep.comparison = compare_runs(run.path, base.path)
    return rep


__all__ = ["Report", "build_report", "missing_outputs", "numeric", "quality_metrics", "worst_items"]
