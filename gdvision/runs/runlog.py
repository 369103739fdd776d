"""The run log of a manifest run: ``<out_dir>/run.jsonl``, one JSON line per finished item.

Lines are appended, flushed and fsynced one by one, so a killed run loses at most the items in flight. A crash in
the middle of a write leaves a **torn last line** (bytes after the last newline). Before anything is appended,
:func:`set_aside_torn_tail` moves those bytes to ``<log>.torn-<time>`` and cuts the log back to its last complete
line, so the log stays valid JSON Lines and nothing is silently lost; the run's summary lists what was set aside.

Example:
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> log = RunLog(d / "run.jsonl")
    >>> log.write({"id": "a", "status": "ok"})
    >>> log.close()
    >>> with (d / "run.jsonl").open("a") as fh:  # a crash mid-line
    ...     _ = fh.write('{"id": "b", "sta')
    >>> torn = set_aside_torn_tail(d / "run.jsonl")
    >>> torn["bytes"], Path(torn["saved_to"]).read_text()
    (16, '{"id": "b", "sta')
    >>> sorted(read_records([d / "run.jsonl"]))
    ['a']
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from gdvision.io.images import atomic_write_bytes, dumps_json

LOG_NAME = "run.jsonl"
#: File names in an out-dir that belong to run logs (no item output may take one of them).
LOG_PATTERNS = (LOG_NAME, "run.rank*.jsonl", "old-*.jsonl", "*.torn-*")


def set_aside_torn_tail(path: Path) -> dict[str, Any] | None:
    """Move a torn last line of the log ``path`` to ``<path>.torn-<time>`` and truncate the log after its last newline.

    Returns ``{"log": path, "saved_to": ..., "bytes": n}`` when a torn line was found, else None.
    """
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size == 0:
                return None
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return None
            # find the last newline, reading backwards in blocks
            end, cut = size, 0
            while end > 0:
                start = max(0, end - 65536)
                fh.seek(start)
                block = fh.read(end - start)
                k = block.rfind(b"\n")
                if k >= 0:
                    cut = start + k + 1
                    break
                end = start
            fh.seek(cut)
            torn = fh.read()
    except FileNotFoundError:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    saved = path.with_name(f"{path.name}.torn-{stamp}")
    n = 1
    while saved.exists():
        n += 1
        saved = path.with_name(f"{path.name}.torn-{stamp}-{n}")
    atomic_write_bytes(saved, torn)
    with path.open("r+b") as fh:
        fh.truncate(cut)
        fh.flush()
        os.fsync(fh.fileno())
    return {"log": str(path), "saved_to": str(saved), "bytes": len(torn)}


class RunLog:
    """Append-only JSON Lines log; every line is flushed and fsynced as soon as it is written.

    A torn last line left by a crash is set aside first (:func:`set_aside_torn_tail`); ``torn`` says what was moved.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        torn = set_aside_torn_tail(path)
        self.torn: list[dict[str, Any]] = [torn] if torn else []
        self._fh = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._fh.write(dumps_json(record) + "\n")
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def log_files(out_dir: Path) -> list[Path]:
    """The run log and any per-rank logs left by a distributed run, in merge order."""
    shards = sorted(out_dir.glob("run.rank*.jsonl"), key=lambda p: p.name)
    main = out_dir / LOG_NAME
    return ([main] if main.exists() else []) + shards


def read_records(paths: list[Path]) -> dict[str, dict[str, Any]]:
    """The newest record of each item id over ``paths`` (an ``ok`` line is never replaced by a failure).

    A torn last line (a process killed mid-write) is ignored here; :func:`set_aside_torn_tail` keeps its bytes.
    """
    latest: dict[str, dict[str, Any]] = {}
    for p in paths:
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if not isinstance(rec, dict) or "id" not in rec:
                continue
            prev = latest.get(rec["id"])
            if prev is not None and prev.get("status") == "ok" and rec.get("status") != "ok":
                continue
            latest[rec["id"]] = rec
    return latest


def write_records(path: Path, records: list[dict[str, Any]]) -> None:
    """Atomically (re)write a log with ``records`` in item order."""
    records = sorted(records, key=lambda r: (r.get("index", 0), r["id"]))
    atomic_write_bytes(path, "".join(dumps_json(r) + "\n" for r in records).encode())


def set_aside_logs(out_dir: Path) -> None:
    """Rename every run log in ``out_dir`` to ``old-<time>.<name>`` (``--overwrite``: the old run is kept)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for p in log_files(out_dir):
        target, n = p.with_name(f"old-{stamp}.{p.name}"), 1
        while target.exists():
            n += 1
            target = p.with_name(f"old-{stamp}-{n}.{p.name}")
        p.rename(target)


def merge_logs(out_dir: Path, extra: list[dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Fold per-rank logs (and ``extra`` records) into ``run.jsonl``; remove the per-rank logs. Returns the records."""
    shards = [p for p in log_files(out_dir) if p.name != LOG_NAME]
    records = read_records(log_files(out_dir))
    for rec in extra or []:
        prev = records.get(rec["id"])
        if prev is None or prev.get("status") != "ok" or rec.get("status") == "ok":
            records[rec["id"]] = rec
    if shards or extra:
        write_records(out_dir / LOG_NAME, list(records.values()))
        for p in shards:
            p.unlink(missing_ok=True)
    return records


__all__ = [
    "LOG_NAME",
    "LOG_PATTERNS",
    "RunLog",
    "log_files",
    "merge_logs",
    "read_records",
    "set_aside_logs",
    "set_aside_torn_tail",
    "write_records",
]
