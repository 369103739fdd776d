"""``gdvision compare``: did this change make things worse? Two batch run logs, item by item."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import JsonOpt, QuietOpt, emit_json, handle_errors, say


@handle_errors
def compare(
    run: Annotated[Path, typer.Argument(help="run.jsonl of the new run (from any command's --manifest).")],
    baseline: Annotated[Path, typer.Argument(help="run.jsonl of the reference run.")],
    metric: Annotated[
        list[str] | None, typer.Option("--metric", help="Compare only this metric (repeatable). Default: all.")
    ] = None,
    tolerance: Annotated[float, typer.Option(help="Allowed worsening, in the metric's units.")] = 0.0,
    rel_tolerance: Annotated[float, typer.Option(help="Allowed worsening, as a fraction of the baseline.")] = 0.0,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    device: Annotated[str, typer.Option("--device", help="Accepted for symmetry; nothing is computed.")] = "auto",
) -> None:
    """Compare two run logs item by item; exit 1 if an item regressed (worse metric, new failure, missing).

    Lower is better for errors, AbsRel, RMSE, EPE, bad-N, holes and seconds; higher for inliers, matches,
    keypoints, coverage, delta-N, PSNR and success; other metrics (edges' mean, iterations, the attack's
    after-attack values) must not change by more than the tolerance. A metric that the baseline has and the run
    lacks (or logs as null) is a regression, and so is a comparison that compares no metric at all.

    Example:

      gdvision compare new/run.jsonl baseline/run.jsonl --metric corner_error_px --tolerance 0.05
    """
    from gdvision.runs.compare import compare_runs

    del device
    res = compare_runs(run, baseline, metric, tolerance, rel_tolerance)
    if json_out:
        emit_json(res.as_dict())
    else:
        say(
            quiet,
            f"{res.compared} items compared: {len(res.regressions)} regressed, {len(res.improvements)} improved, "
            f"{len(res.missing)} missing, {len(res.new_items)} new",
        )
        for r in res.regressions:
            if not quiet:
                detail = f"{r['run']} (baseline {r['baseline']})" if "baseline" in r else str(r["run"])
                typer.echo(f"regressed: {r['id']}: {r['metric']} {detail}", err=True)
    for problem in res.problems:
        typer.echo(f"error: {problem}", err=True)
    if res.failed:
        raise typer.Exit(1)
