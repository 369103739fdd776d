"""Reading a manifest run's folder for the report: its records, what is missing, which command made it.

A run folder holds ``run.jsonl`` (one JSON line per item, :mod:`gdvision.runs.runlog`), or only the per-rank logs
``run.rank*.jsonl`` of a distributed run that did not finish; a torchrun run that finished and a resumed run both
leave one merged ``run.jsonl`` whose newest line per item wins (:func:`gdvision.runs.runlog.read_records`). What
cannot be read is not an error as long as some records can: a torn last line, lines that are not JSON, ``*.torn-*``
files set aside by a later run are listed in :attr:`RunData.notes`, so the page says what is missing.

Example:
    >>> import json, tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> rec = {"id": "x", "index": 0, "status": "ok", "metrics": {"mean": 0.5}, "params": {"op": "sobel", "what": "dx"}}
    >>> _ = (d / "run.jsonl").write_text(json.dumps(rec) + "\\n" + '{"id": "y", "sta')
    >>> run = load_run(d)
    >>> run.command, [r["id"] for r in run.records], run.notes
    ('edges', ['x'], ["run.jsonl ends in a torn line (16 bytes, a crash mid-write): that item's result is missing"])
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gdvision.errors import UsageError

# a command is recognised by parameter names only its job records (see gdvision.runs.engine.job_params)
_SIGNATURES: tuple[tuple[str, frozenset[str]], ...] = (
    ("depth", frozenset({"sweep_planes"})),
    ("attack", frozenset({"eps", "perturb"})),
    ("register", frozenset({"init_mode"})),
    ("match", frozenset({"matcher"})),
    ("edges", frozenset({"op", "what"})),
)
# output keys that name a command when the parameters do not (older logs)
_OUTPUT_KEYS: tuple[tuple[str, str], ...] = (
    ("depth_preview", "depth"),
    ("adv_a", "attack"),
    ("adv_b", "attack"),
    ("edges", "edges"),
)


@dataclass
class RunData:
    """One run as the report sees it: ``records`` in item order, and what could not be read (``notes``)."""

    path: Path
    folder: Path
    logs: list[Path]
    records: list[dict[str, Any]]
    command: str
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("status") == "ok"]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("status") != "ok"]

    def params(self) -> dict[str, Any]:
        """The run's parameters (the newest record's ``params``; every record of a run has the same ones)."""
        return next((r["params"] for r in reversed(self.records) if isinstance(r.get("params"), dict)), {})


def command_of(records: list[dict[str, Any]]) -> str:
    """The command that wrote ``records`` (``register``, ``match``, ``depth``, ``edges``, ``attack``) or ``unknown``.

    >>> command_of([{"params": {"model": "homography", "init_mode": "auto"}}])
    'register'
    >>> command_of([{"outputs": {"depth_preview": "d/x/depth_preview.png"}}])
    'depth'
    """
    for rec in records:
        keys = set(rec.get("params") or {})
        for name, sig in _SIGNATURES:
            if sig <= keys:
                return name
    for rec in records:
        outs = set(rec.get("outputs") or {})
        for key, name in _OUTPUT_KEYS:
            if key in outs:
                return name
    for rec in records:
        if "verdict" in (rec.get("result") or {}):
            return "register"
        if "inliers" in (rec.get("metrics") or {}):
            return "match"
    return "unknown"


def _read_lines(path: Path, notes: list[str]) -> list[dict[str, Any]]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        notes.append(f"{path.name} cannot be read ({exc.strerror or exc})")
        return []
    text = data.decode("utf-8", errors="replace")
    lines = text.split("\n")
    tail = lines.pop()  # after the last newline: '' unless the last line is torn
    if tail.strip():
        notes.append(
            f"{path.name} ends in a torn line ({len(tail.encode())} bytes, a crash mid-write): "
            "that item's result is missing"
        )
    out, bad = [], 0
    for line in lines:
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(rec, dict) and isinstance(rec.get("id"), str):
            out.append(rec)
        else:
            bad += 1
    if bad:
        notes.append(f"{path.name}: {bad} line(s) are not run records (not JSON or no id) and were skipped")
    return out


def _newest(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The newest record per id, an ``ok`` never replaced by a failure (as the engine reads a resumed log)."""
    latest: dict[str, dict[str, Any]] = {}
    for rec in lines:
        prev = latest.get(rec["id"])
        if prev is not None and prev.get("status") == "ok" and rec.get("status") != "ok":
            continue
        latest[rec["id"]] = rec
    return latest


def load_run(path: str | os.PathLike[str], what: str = "run") -> RunData:
    """The records of the run folder (or ``run.jsonl``) ``path``; UsageError when there is no readable record.

    ``what`` names the run in error messages (``run``, ``baseline``).
    """
    from gdvision.runs.compare import log_files

    p = Path(path)
    try:
        logs = log_files(p)
    except UsageError as exc:
        raise UsageError(str(exc) if what == "run" else f"{what}: {exc}") from None
    folder = p if p.is_dir() else p.parent
    notes: list[str] = []
    if logs and logs[0].name != "run.jsonl":
        notes.append("no run.jsonl: read the per-rank logs of a distributed run that did not finish")
    lines = [rec for log in logs for rec in _read_lines(log, notes)]
    set_aside = sorted(q.name for q in folder.glob("*.torn-*"))
    if set_aside:
        notes.append(f"torn lines of an earlier crash were set aside in {', '.join(set_aside)}")
    records = sorted(_newest(lines).values(), key=lambda r: (_index(r), r["id"]))
    if not records:
        shown = ", ".join(str(q) for q in logs)
        raise UsageError(
            f"{'' if what == 'run' else what + ': '}'{shown}' holds no run records (empty, torn or not a run log)"
        )
    return RunData(p, folder, logs, records, command_of(records), notes)


def _index(rec: dict[str, Any]) -> int:
    i = rec.get("index")
    return i if isinstance(i, int) else 1 << 30


def resolve_output(value: str, folder: Path) -> Path | None:
    """Where an output path of a record is now, or None when the file is gone.

    Records hold paths as the run was given them (relative to the folder it ran in, e.g. ``out/x/depth.npy``), so
    a relative path is looked up as given and then inside the run folder, dropping leading parts one by one.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "x.json").write_text("{}")
    >>> resolve_output("somewhere/else/x.json", d) == d / "x.json", resolve_output("gone.json", d)
    (True, None)
    """
    if not value:
        return None
    p = Path(value)
    if p.is_absolute() and p.exists():
        return p
    parts = p.parts[1:] if p.is_absolute() else p.parts
    for k in range(len(parts)):
        q = folder.joinpath(*parts[k:])
        if q.exists():
            return q
    if not p.is_absolute() and p.exists():
        return p
    return None


__all__ = ["RunData", "command_of", "load_run", "resolve_output"]
