"""Shared CLI plumbing: common options, error handling, progress bars, JSON output.

Exit codes: 0 success, 1 failure (bad input data, solver failure, some batch items failed), 2 bad usage.
Errors are printed as one line on stderr (``error: ...``), never as a traceback; set ``GDVISION_DEBUG=1``
to get the traceback of an unexpected error.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from gdvision.errors import GdvisionError, UsageError

from .progress import progress_bar

DeviceOpt = Annotated[
    str,
    typer.Option("--device", help="Where to compute: auto (CUDA if available, else CPU), cpu, cuda, cuda:N or mps."),
]
QuietOpt = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="No progress display or human summary on stderr (errors still print)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one machine-readable JSON object on stdout.")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Seed for reproducible runs.")]
ThreadsOpt = Annotated[
    int, typer.Option("--threads", help="CPU threads for torch's compute (0: torch's default, all cores).")
]

# Options of manifest mode (``--manifest``), shared by the commands that have them.
ManifestOpt = Annotated[
    Path | None,
    typer.Option(
        "--manifest",
        help="CSV (header row) or JSON Lines file with one item per row: run them all (needs --out-dir). "
        "Columns per command: see docs/batch.md. Works under torchrun for several processes/machines.",
    ),
]
PairsOpt = Annotated[Path | None, typer.Option(hidden=True, help="Old name of --manifest.")]
OutDirOpt = Annotated[Path | None, typer.Option(help="Folder for --manifest results (<id>.json, run.jsonl).")]
ResumeOpt = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="With --manifest: continue the earlier run in --out-dir with the same options (finished items are "
        "kept, the others redone).",
    ),
]
OverwriteOpt = Annotated[
    bool,
    typer.Option(
        help="Replace existing outputs, never an input (with --manifest: redo every item; old logs are set aside)."
    ),
]
MaxCornerErrorOpt = Annotated[
    float | None, typer.Option(help="With --manifest and gt: exit 1 if the median corner error exceeds this (px).")
]
MinMetricOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--min-metric", help="With --manifest: NAME=VALUE; exit 1 if the run's median NAME is below VALUE (repeatable)."
    ),
]
MaxMetricOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--max-metric", help="With --manifest: NAME=VALUE; exit 1 if the run's median NAME is above VALUE (repeatable)."
    ),
]
ReportOpt = Annotated[
    bool,
    typer.Option(
        "--report", help="With --manifest: write report.html into --out-dir at the end (see gdvision report)."
    ),
]

F = TypeVar("F", bound=Callable[..., Any])

# The options that only manifest mode reads, in the order --help lists them: (annotation, default).
_MANIFEST_OPTIONS: dict[str, tuple[Any, Any]] = {
    "manifest": (ManifestOpt, None),
    "pairs": (PairsOpt, None),
    "out_dir": (OutDirOpt, None),
    "resume": (ResumeOpt, False),
    "max_error": (MaxCornerErrorOpt, None),
    "min_metric": (MinMetricOpt, None),
    "max_metric": (MaxMetricOpt, None),
    "report": (ReportOpt, False),
}


def manifest_options(*extra: str) -> Callable[[F], F]:
    """Decorator: give a command ``--manifest``, ``--resume``, ``--min-metric``, ``--max-metric`` and ``extra``.

    ``extra``: any of ``pairs`` (hidden old name of --manifest), ``out_dir`` (a results folder that only
    manifest mode uses) and ``max_error`` (on the median corner error). The options are appended to the
    command's signature (typer reads ``__signature__``) as keyword-only parameters, and the command takes them
    in one ``**batch`` argument: the dict that :func:`check_manifest_usage` and :func:`run_manifest_command` read.

    Example:
        >>> import inspect
        >>> @manifest_options("max_error")
        ... def cmd(x: int = 0, **batch: Any) -> None: ...
        >>> list(inspect.signature(cmd).parameters)
        ['x', 'manifest', 'resume', 'max_error', 'min_metric', 'max_metric', 'report']
    """
    names = {"manifest", "resume", "min_metric", "max_metric", "report", *extra}

    def decorate(func: F) -> F:
        sig = inspect.signature(func, eval_str=True)
        own = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        kw = inspect.Parameter.KEYWORD_ONLY
        added = [
            inspect.Parameter(n, kw, annotation=a, default=d) for n, (a, d) in _MANIFEST_OPTIONS.items() if n in names
        ]
        func.__signature__ = sig.replace(parameters=own + added)  # type: ignore[attr-defined]
        func.__annotations__.update({p.name: p.annotation for p in added})
        return func

    return decorate


def fail(message: str, code: int, json_out: bool = False) -> None:
    """Print ``error: message`` on stderr (and ``{"error": ..., "exit_code": n}`` on stdout if ``json_out``); exit."""
    typer.echo(f"error: {message}", err=True)
    if json_out:
        emit_json({"error": message, "exit_code": code})
    raise typer.Exit(code)


def handle_errors(func: F) -> F:
    """Decorator for command functions: turn gdvision errors into one-line messages and exit codes.

    When the command was called with ``json_out=True`` (``--json``), a fatal error also prints
    ``{"error": "...", "exit_code": n}`` on stdout, so that a script reading stdout always gets one JSON object.
    A ``device`` option that names no device (``--device tpu``) is refused first, before torch is imported.
    """

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        js = bool(kwargs.get("json_out", False))
        try:
            if isinstance(kwargs.get("device"), str):
                from gdvision.device import parse_device

                parse_device(kwargs["device"])
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except GdvisionError as exc:
            fail(str(exc), exc.exit_code, js)
        except KeyboardInterrupt:
            fail("interrupted", 130, js)
        except MemoryError:
            fail("out of memory (try a smaller --batch-size or image, or --device cpu)", 1, js)
        except Exception as exc:  # noqa: BLE001 - last-resort one-line report
            if os.environ.get("GDVISION_DEBUG"):
                raise
            msg = str(exc).splitlines()[0] if str(exc) else ""
            if "out of memory" in msg.lower():
                fail("out of memory on the device (try a smaller --batch-size, or --device cpu)", 1, js)
            fail(f"internal error: {type(exc).__name__}: {msg} (set GDVISION_DEBUG=1 for a traceback)", 1, js)

    return wrapper  # type: ignore[return-value]


def emit_json(obj: Any) -> None:
    """Print ``obj`` as one JSON line on stdout."""
    from gdvision.io.images import dumps_json

    sys.stdout.write(dumps_json(obj) + "\n")
    sys.stdout.flush()


def check_positive(name: str, value: float | int | None, allow_zero: bool = False) -> None:
    """UsageError unless ``value`` is None or > 0 (>= 0 with ``allow_zero``)."""
    if value is None:
        return
    if value != value or (value < 0 if allow_zero else value <= 0):  # NaN check via value != value
        raise UsageError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def set_threads(threads: int) -> None:
    """Apply ``--threads``: UsageError when negative; 0 leaves torch's default; imports torch only when > 0."""
    check_positive("--threads", threads, allow_zero=True)
    if threads:
        import torch

        torch.set_num_threads(threads)


def validated(cfg: Any, flags: dict[str, str]) -> Any:
    """``cfg`` after its ``validate()``; a UsageError names the flag instead of the config field (no torch import).

    ``flags``: config field -> the option that sets it; the first field named in the message is replaced.
    ``cfg`` may also be a function that builds the config (its errors are mapped the same way).
    """
    import re

    try:
        if not hasattr(cfg, "validate"):
            cfg = cfg()
        cfg.validate()
    except UsageError as exc:
        msg = str(exc)
        hits = [(m.start(), f) for f in flags if (m := re.search(rf"(?<![\w-]){f}(?![\w-])", msg))]
        if hits:
            pos, f = min(hits)
            msg = msg[:pos] + flags[f] + msg[pos + len(f) :]
        raise UsageError(msg) from None
    return cfg


def say(quiet: bool, message: str) -> None:
    """Print a human summary line on stderr unless quiet."""
    if not quiet:
        typer.echo(message, err=True)


def check_manifest_usage(manifest: Path | None, out_dir: Path | None, single: list[Any]) -> None:
    """UsageError unless exactly one of single-item arguments and ``--manifest`` (with ``--out-dir``) is given."""
    if manifest is None:
        return
    if any(v not in (None, False, [], ()) for v in single):
        raise UsageError("give either the inputs of one item or --manifest, not both")
    if out_dir is None:
        raise UsageError("--manifest needs --out-dir")


def run_manifest_command(make_job: Callable[[Any], Any], options: dict[str, Any]) -> None:
    """The ``--manifest`` path shared by every subcommand: run, report, apply the CI thresholds, set the exit code.

    ``make_job(device)`` builds the :class:`gdvision.runs.engine.Job`. ``options``: the command's parsed options (pass
    its ``locals()``), of which ``manifest, out_dir, device, batch_size, overwrite, resume, max_error, min_metric,
    max_metric, json_out, quiet`` are used when present. Under torchrun only rank 0 reports.
    Exit 1 when an item failed or a threshold is crossed (the regressed items are named).
    """
    manifest: Path = options["manifest"]
    out_dir: Path = options["out_dir"]
    device: str = options.get("device", "auto")
    batch_size: int = options.get("batch_size", 16)
    overwrite: bool = options.get("overwrite", False)
    resume: bool = options.get("resume", False)
    max_error: float | None = options.get("max_error")
    min_metric: list[str] | None = options.get("min_metric")
    max_metric: list[str] | None = options.get("max_metric")
    json_out: bool = options.get("json_out", False)
    quiet: bool = options.get("quiet", False)
    want_report: bool = options.get("report", False)
    # usage errors on option values first: the engine's modules import torch (seconds)
    check_positive("--batch-size", batch_size)
    check_positive("--max-error", max_error, allow_zero=True)
    if overwrite and resume:
        raise UsageError("--resume and --overwrite exclude each other")
    if want_report:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise UsageError("--report draws its plots with matplotlib: pip install 'gdvision[report]'")
    from gdvision.runs.engine import check_thresholds, manifest_items, parse_bounds

    upper = parse_bounds(max_metric, "--max-metric")
    lower = parse_bounds(min_metric, "--min-metric")
    from gdvision.runs.distributed import rank_device, rank_from_env, run_manifest

    r = rank_from_env()
    dev = rank_device(device, r)
    job = make_job(dev)
    if max_error is not None:
        if job.error_metric is None:
            raise UsageError(f"{job.name} has no error metric for --max-error: use --max-metric NAME=VALUE")
        upper.setdefault(job.error_metric, max_error)
    items = manifest_items(manifest, job, out_dir, overwrite=overwrite, resume=resume)
    page = None  # the report's file is claimed before any work
    if want_report and items and items[0].policy is not None:
        page = items[0].policy.claim(out_dir / "report.html", owner="--report")
    show = not (quiet or json_out) and r.rank == 0
    with progress_bar(show, job.name) as update:
        summary = run_manifest(
            job,
            items,
            out_dir,
            r,
            batch_size=batch_size,
            overwrite=overwrite,
            resume=resume,
            progress=lambda done, total, info: update(completed=done, total=total, info=info),
        )
    if summary is None:  # not rank 0: rank 0 reports for everyone
        return
    report = summary.as_dict()
    report.update({"command": job.name, "out_dir": str(out_dir), "log": str(out_dir / "run.jsonl"), "ranks": r.world})
    problems = check_thresholds(list(summary.records.values()), upper, lower)
    if problems:
        report["regressions"] = problems
    unfinished = report["items"] - report["ok"] - report["failed"]
    if json_out:
        emit_json(report)
    elif not quiet:
        line = (
            f"{job.name}: {report['ok']} of {report['items']} items done ({report['done_now']} now, "
            f"{report['already_done']} earlier), {report['failed']} failed, {report['seconds']:.1f} s"
        )
        for name, agg in report["metrics"].items():
            if name in upper or name in lower or name == job.error_metric:
                line += f"; median {name} {agg['median']:.5g}"
        say(quiet, line + f" -> {out_dir / 'run.jsonl'}")
        for f in report["failures"]:
            typer.echo(f"failed: {f['id']}: {f['error']}", err=True)
        for t in report["torn_log_lines"]:
            say(
                quiet,
                f"note: '{t['log']}' ended in a torn line (a crash mid-write): {t['bytes']} bytes set aside in "
                f"'{t['saved_to']}'",
            )
    for p in problems:
        typer.echo(f"error: regression: {p}", err=True)
    if unfinished:
        typer.echo(f"error: {unfinished} item(s) have no result in the log", err=True)
    if page is not None:
        from gdvision.report import write_report

        write_report(out_dir, claim=lambda _: page)
        say(quiet or json_out, f"report: {page}")
    if problems or report["failed"] or unfinished:
        raise typer.Exit(1)
