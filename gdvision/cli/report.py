"""``gdvision report``: one self-contained HTML page about a manifest run, optionally against a baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import JsonOpt, QuietOpt, emit_json, handle_errors, say


@handle_errors
def report(
    run_dir: Annotated[Path, typer.Argument(help="The run: a --manifest run's --out-dir (or its run.jsonl).")],
    baseline: Annotated[
        Path | None,
        typer.Option("--baseline", help="A run of the same command to compare with (the verdict of gdvision compare)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Where to write the page (default: RUN_DIR/report.html).")
    ] = None,
    worst: Annotated[int, typer.Option("--worst", help="How many worst items per metric get their pictures.")] = 5,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing report file.")] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write a self-contained HTML page about a --manifest run: counts, failures, settings, metric histograms,
    the worst items with their pictures, a sortable table of every item, and with --baseline the per-item
    change and the same verdict as `gdvision compare RUN_DIR BASELINE` (regressions highlighted).

    The page has no external URL, script or font: pictures and plots are embedded (small thumbnails, only for the
    worst items), and each picture links to its file relative to the page. Exit 0 when the page is written (also
    when the verdict is 'regressed': gate CI on `gdvision compare`), 1 or 2 with one `error:` line otherwise.
    Needs matplotlib: pip install 'gdvision[report]'.

    Examples:

      gdvision report out/run

      gdvision report out/run --baseline out/base --out report.html --worst 3
    """
    if worst < 0:
        from gdvision.errors import UsageError

        raise UsageError(f"--worst must be >= 0, got {worst}")
    from gdvision.report import write_report

    rep = write_report(run_dir, baseline, out, worst, overwrite=overwrite)
    info = rep.summary()
    if json_out:
        emit_json(info)
        return
    line = f"report: {info['items']} items ({info['ok']} ok, {info['failed']} failed) -> {rep.out}"
    if rep.verdict is not None:
        line += f"; against the baseline: {rep.verdict} ({len(info['regressed_items'])} regressed)"
    say(quiet, line)
    for note in info["notes"]:
        say(quiet, f"note: {note}")
    if info["missing_files"]:
        say(quiet, f"note: {info['missing_files']} output file(s) named in the log are missing")
