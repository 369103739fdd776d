"""``gdvision worker start|stop|status``: the opt-in warm process for shell loops (docs/worker.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import JsonOpt, QuietOpt, emit_json, fail, handle_errors

ACTIONS = ("start", "stop", "status")


def _summary(action: str, info: dict) -> tuple[str, int]:
    """The human line and the exit code of ``action``'s result ``info``."""
    if action == "start":
        verb = "started" if info["started"] else "already running"
        return f"worker {verb}: pid {info['pid']}, idle timeout {info['idle_timeout_s']:g} s, {info['folder']}", 0
    if action == "stop":
        if info["stopped"]:
            return f"worker stopped: pid {info['pid']}", 0
        if "reason" in info:
            return f"no worker stopped: {info['reason']}", 0
        return f"worker stopping: pid {info['pid']} ends once its running calls finish", 0
    if info["running"]:
        line = (
            f"worker running: pid {info['pid']}, up {info['uptime_s']:g} s, {info['calls_served']} calls served, "
            f"{info['calls_running']} running, idle timeout {info['idle_timeout_s']:g} s, {info['folder']}"
        )
        return line, 0
    return f"no worker running ({info.get('problem') or info['folder']})", 0


@handle_errors
def worker(
    action: Annotated[str, typer.Argument(help="start, stop or status.")],
    idle_timeout: Annotated[
        float,
        typer.Option("--idle-timeout", help="With start: end the worker after this many seconds without a call."),
    ] = 900.0,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch/--no-watch",
            help="With start: reload when gdvision's source files change (--no-watch: keep the code loaded at start).",
        ),
    ] = True,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Keep torch loaded in a background process, so that each gdvision call starts in a fraction of a second.

    While a worker runs, each gdvision call of this user (same Python, same gdvision, same start-up environment)
    runs in it, with the output and exit code of an in-process run; without one, calls run in-process as usual.
    GDVISION_WORKER=0 keeps a call in-process; GDVISION_WORKER_DIR sets the worker's private folder. status exits 0
    either way (with --json, "running" says whether one runs).

    Examples:

      gdvision worker start

      for f in sample_data/natural/*.png; do gdvision edges "$f" -o out/edges -q; done

      gdvision worker stop
    """
    from gdvision._checks import check_choice, check_number
    from gdvision.worker import control
    from gdvision.worker.paths import WorkerDirError

    check_choice(action, "ACTION", ACTIONS)
    check_number(idle_timeout, "--idle-timeout", low=0, low_open=True)
    try:
        if action == "start":
            info = control.start(idle_timeout, watch=watch)
        elif action == "stop":
            info = control.stop()
        else:
            info = control.status()
    except (WorkerDirError, RuntimeError, OSError) as exc:
        fail(str(exc), 1, json_out)
    line, code = _summary(action, info)
    if json_out:
        emit_json({**info, "exit_code": code})
    elif not quiet:
        typer.echo(line, err=True)
    raise typer.Exit(code)
