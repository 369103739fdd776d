"""Progress display of the CLI: stage, counts, elapsed time and ETA on stderr, never on stdout.

:func:`progress_bar` shows a rich bar when stderr is a terminal. When stderr is not a terminal (a CI log, a pipe,
a file) it shows nothing unless asked: ``GDVISION_PROGRESS=1`` then prints plain lines instead of a bar (a line
per stage and at most one every :data:`LINE_EVERY_S` seconds), ``GDVISION_PROGRESS=0`` turns the bar off even
on a terminal. ``--quiet`` and ``--json`` turn every progress display off.

A stage is what ``description`` names (``"depth: plane sweep"``, ``"depth: level 2/4"``): a new description
starts a new stage, whose counts, elapsed time and ETA start from zero.

Example:
    >>> with progress_bar(False, "work") as update:  # disabled: a no-op
    ...     update(completed=1, total=2, description="stage 1")
    >>> progress_mode(True, tty=False, env={}), progress_mode(True, tty=False, env={"GDVISION_PROGRESS": "1"})
    ('off', 'lines')
    >>> progress_mode(True, tty=True, env={}), progress_mode(False, tty=True, env={"GDVISION_PROGRESS": "1"})
    ('bar', 'off')
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

ENV = "GDVISION_PROGRESS"
"""Environment variable: ``1`` shows progress when stderr is not a terminal (plain lines), ``0`` never shows it."""
LINE_EVERY_S = 10.0
"""Plain-line mode: at most one line per this many seconds within a stage."""


def progress_mode(enabled: bool, tty: bool | None = None, env: Mapping[str, str] | None = None) -> str:
    """``"bar"``, ``"lines"`` or ``"off"``: how :func:`progress_bar` shows progress.

    ``enabled``: False under ``--quiet``/``--json``; ``tty``: whether stderr is a terminal (default: ask it);
    ``env``: the environment (default ``os.environ``), read for :data:`ENV`.
    """
    if not enabled:
        return "off"
    asked = (os.environ if env is None else env).get(ENV, "").strip().lower()
    if asked in ("0", "no", "false", "off"):
        return "off"
    if tty is None:
        tty = bool(getattr(sys.stderr, "isatty", lambda: False)())
    if tty:
        return "bar"
    return "lines" if asked in ("1", "yes", "true", "on") else "off"


def _fmt_s(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 60}:{s % 60:02d}"


class _Lines:
    """Plain-line progress for logs: ``stage: done/total (info) 0:12 elapsed, eta 0:30``."""

    def __init__(self, description: str) -> None:
        self.description, self.info = description, ""
        self.done: float = 0
        self.total: float | None = None
        self.start = self.last = time.monotonic()
        self.printed = False

    def update(
        self,
        completed: float | None = None,
        total: float | None = None,
        description: str | None = None,
        advance: float | None = None,
        info: str | None = None,
    ) -> None:
        now = time.monotonic()
        if description is not None and description != self.description:
            self.description, self.done, self.total, self.start, self.printed = description, 0, None, now, False
            self.info = ""
        if total is not None:
            self.total = total
        if completed is not None:
            self.done = completed
        if advance is not None:
            self.done += advance
        if info is not None:
            self.info = info
        if not self.printed or now - self.last >= LINE_EVERY_S:
            self.printed, self.last = True, now
            sys.stderr.write(self.line(now) + "\n")
            sys.stderr.flush()

    def line(self, now: float) -> str:
        elapsed = now - self.start
        text = f"{self.description}: {self.done:g}/{self.total:g}" if self.total else f"{self.description}:"
        if self.info:
            text += f" ({self.info})"
        text += f" {_fmt_s(elapsed)} elapsed"
        if self.total and 0 < self.done < self.total:
            text += f", eta {_fmt_s(elapsed * (self.total - self.done) / self.done)}"
        return text


@contextlib.contextmanager
def progress_bar(enabled: bool, description: str = "working") -> Iterator[Callable[..., None]]:
    """Progress on stderr; yields ``update(completed=None, total=None, description=None, advance=None, info=None)``.

    ``enabled``: False under ``--quiet`` or ``--json`` (then, and when :func:`progress_mode` says ``"off"``, the
    update is a no-op). A new ``description`` is a new stage: its count, elapsed time and ETA restart.
    """
    mode = progress_mode(enabled)
    if mode == "off":
        yield lambda *a, **k: None
        return
    if mode == "lines":
        yield _Lines(description).update
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, TextColumn
    from rich.text import Text

    class Counts(ProgressColumn):
        """``12/256``; nothing for a stage without a count (no ``0/?``)."""

        def render(self, task: Any) -> Text:
            return Text("" if task.total is None else f"{task.completed:g}/{task.total:g}", style="green")

    class Timing(ProgressColumn):
        """``0:12 elapsed, eta 0:30`` (no eta before the first count or without a total)."""

        def render(self, task: Any) -> Text:
            text = f"{_fmt_s(task.elapsed or 0.0)} elapsed"
            if task.total is not None and task.time_remaining is not None and task.completed < task.total:
                text += f", eta {_fmt_s(task.time_remaining)}"
            return Text(text, style="yellow")

    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        Counts(),
        TextColumn("{task.fields[info]}"),
        Timing(),
        console=Console(stderr=True),
        transient=True,
    ) as prog:
        state: dict[str, Any] = {"task": prog.add_task(description, total=None, info=""), "stage": description}

        def update(description: str | None = None, **values: float | str | None) -> None:
            """``values``: ``completed``, ``total``, ``advance``, ``info`` (None = unchanged), as in :class:`_Lines`."""
            given = {k: v for k, v in values.items() if v is not None}
            if description is not None and description != state["stage"]:  # a new stage: a new task, new clock
                prog.remove_task(state["task"])
                state["task"] = prog.add_task(description, total=given.get("total"), info=given.get("info", ""))
                state["stage"] = description
            prog.update(state["task"], **given)

        yield update


__all__ = ["ENV", "LINE_EVERY_S", "progress_bar", "progress_mode"]
