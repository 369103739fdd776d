"""``gdvision compare``: did this change make things worse? Two batch run logs, item by item."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .common import JsonOpt, QuietOpt, emit_json, handle_errors, say

# The defaults of gdvision.runs.compare, repeated here so that --help shows them without importing the runs package
# (tests/runs/test_compare.py checks that both agree).
DEFAULT_TOLERANCE = 1e-6
DEFAULT_REL_TOLERANCE = 0.01


def _detail(r: dict[str, Any]) -> str:
    """``run (baseline b, +x%)`` for one regression entry, or the run's state (failed, missing, null)."""
    if "baseline" not in r:
        return str(r["run"])
    run, base = r["run"], r["baseline"]
    if isinstance(run, (int, float)) and base:
        return f"{run:.6g} (baseline {base:.6g}, {100 * (run - base) / abs(base):+.1f}%)"
    return f"{run if isinstance(run, str) else format(run, '.6g')} (baseline {base:.6g})"


@handle_errors
def compare(
    run: Annotated[Path, typer.Argument(help="The new run: its run.jsonl or its --out-dir folder.")],
    baseline: Annotated[Path, typer.Argument(help="The reference run: its run.jsonl or its --out-dir folder.")],
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            help="Compare only this metric (repeatable; any logged metric). "
            "Default: the quality metrics (not iterations, seconds, keypoint counts, pixels, edges' mean).",
        ),
    ] = None,
    tolerance: Annotated[
        float, typer.Option(help="Allowed worsening in the metric's units (the larger of both allowances wins).")
    ] = DEFAULT_TOLERANCE,
    rel_tolerance: Annotated[
        float, typer.Option(help="Allowed worsening as a fraction of the baseline's value (0.01 = 1%).")
    ] = DEFAULT_REL_TOLERANCE,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    device: Annotated[str, typer.Option("--device", help="Accepted for symmetry; nothing is computed.")] = "auto",
) -> None:
    """Compare two run logs item by item; exit 1 if an item regressed (worse metric, new failure, missing).

    By default the quality metrics are compared (errors, AbsRel, RMSE, EPE, bad-N, holes, coverage, delta-N,
    inliers, matches, PSNR, success...), each allowed to get worse by max(--tolerance, --rel-tolerance x baseline);
    bookkeeping metrics (iterations, seconds, keypoint counts, pixels, edges' mean, the attack's after-attack
    values) only with --metric. Lower is better for errors, AbsRel, RMSE, EPE, bad-N, holes and seconds; higher for
    inliers, matches, keypoints, coverage, delta-N, PSNR and success; other metrics must not change by more than the
    tolerance either way. A metric that the baseline has and the run lacks (or logs as null) is a regression, and
    so is a comparison that compares no metric at all.

    Examples:

      gdvision compare out/run_new out/run_base

      gdvision compare new/run.jsonl base/run.jsonl --metric corner_error_px --tolerance 0.05 --rel-tolerance 0
    """
    from gdvision.runs.compare import compare_runs

    del device
    res = compare_runs(run, baseline, metric, tolerance, rel_tolerance)
    if json_out:
        emit_json(res.as_dict())
    else:
        regressed = res.regressed_items
        say(
            quiet,
            f"{res.compared} items compared: {len(regressed)} regressed, {len(res.improved_items)} improved, "
            f"{len(res.missing)} missing, {len(res.new_items)} new "
            f"({', '.join(res.metrics) or 'no metric'}; allowed worsening max({tolerance:g}, "
            f"{rel_tolerance:g} x baseline))",
        )
        for note in res.notes:
            say(quiet, f"note: {note}")
        for r in res.regressions:
            say(quiet, f"regressed: {r['id']}: {r['metric']} {_detail(r)}")
    for problem in res.problems:
        typer.echo(f"error: {problem}", err=True)
    if res.failed:
        raise typer.Exit(1)
