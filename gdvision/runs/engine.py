"""One batch engine for every subcommand: manifests, batched compute, a resumable JSON Lines log, thresholds.

A **manifest** lists the items of a run, one per row: a CSV file with a header, or a JSON Lines file (one object
per line; ``.jsonl`` / ``.ndjson``). Each subcommand names the input columns it needs (``register``: ``a``, ``b``;
``edges``: ``image``; ``depth``: ``views``, ``cameras``; ...) and the optional ones it understands (``gt``, per-item
options such as ``model``); an ``id`` column names the item (default: derived from the input file names). Relative
paths are resolved against the manifest's folder. Each command's columns: its task module in :mod:`gdvision.tasks`.

The **log** ``<out_dir>/run.jsonl`` gets one JSON line per item as soon as it finishes (flushed and fsynced)::

    {"id": ..., "index": row, "status": "ok"|"failed", "inputs": {...}, "outputs": {...}, "metrics": {...},
     "seconds": ..., "error": null|"...", "rank": 0, "result": {...}}

so a killed run loses at most the items in flight. A later run over the same ``out_dir`` skips every item that
has an ``ok`` line (it is never redone nor overwritten) and retries failed ones; the newest line of an id wins.
With ``overwrite`` everything is redone and the old logs are kept as ``old-<time>.run.jsonl``.

**Distributed** (:mod:`gdvision.runs.distributed`): with torchrun, rank ``r`` of ``n`` takes the items whose row index
``i`` has ``i % n == r``, appends to its own ``run.rank<r>.jsonl``; at the end rank 0 gathers every rank's lines
(``torch.distributed.gather_object``) into ``run.jsonl`` and writes the summary. Logs of a crashed run (any rank)
are read back on resume, whatever the number of ranks then.

**Thresholds** (CI regression runs): :func:`check_thresholds` compares the median of a metric over the run with
a bound and names the items beyond it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from gdvision.errors import GdvisionError, UsageError
from gdvision.io.images import atomic_write_bytes, dumps_json
from gdvision.runs.prefetch import prefetch
from gdvision.tasks.outputs import OutputPolicy

LOG_NAME = "run.jsonl"


@dataclass
class Item:
    """One manifest row: its row index, id, columns (paths resolved) and where its outputs go."""

    index: int
    id: str
    fields: dict[str, str]
    out: Path
    policy: OutputPolicy | None = None

    def claim(self, path: Path, existing_ok: bool = False) -> Path:
        """The path to write one of this item's files to, checked by the run's output policy (if any)."""
        if self.policy is None:
            return path
        return self.policy.claim(path, existing_ok=existing_ok, owner=f"item '{self.id}'")

    def path(self, column: str) -> Path:
        return Path(self.fields[column])

    def get(self, column: str) -> str | None:
        v = self.fields.get(column)
        return v if v else None


@dataclass
class Outcome:
    """What a job returns for an item: its JSON record (``outputs``, ``metrics``, anything else), or an error."""

    item: Item
    result: dict[str, Any] | None = None
    error: str | None = None


class Job(Protocol):
    """A subcommand as the engine sees it (implementations: one per module of :mod:`gdvision.tasks`)."""

    name: str
    required: tuple[str, ...]  # input columns every row must have
    optional: tuple[str, ...]  # other columns it understands
    path_columns: tuple[str, ...]  # columns holding paths (resolved against the manifest's folder)
    error_metric: str | None  # the metric ``--max-error`` bounds (lower is better)

    def item_id(self, fields: dict[str, str]) -> str: ...

    def output_of(self, item_id: str, out_dir: Path) -> Path: ...

    def load(self, item: Item) -> Any: ...

    def batch_key(self, item: Item, loaded: Any) -> Hashable | None: ...

    def solve(self, group: list[tuple[Item, Any]]) -> list[Outcome]: ...


# ------------------------------------------------------------------------------------------------ manifest


def read_manifest(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV (header line) or JSON Lines manifest as dicts of stripped strings; UsageError if malformed."""
    if not path.exists():
        raise UsageError(f"file not found: '{path}'")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read manifest '{path}': {exc}") from None
    rows: list[dict[str, str]] = []
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise UsageError(f"manifest '{path}', line {n}: not JSON ({exc})") from None
            if not isinstance(obj, dict):
                raise UsageError(f"manifest '{path}', line {n}: expected a JSON object")
            rows.append({str(k).strip().lower(): _cell(v) for k, v in obj.items()})
    else:
        try:
            reader = csv.DictReader(text.splitlines())
            rows = [{k.strip().lower(): (v or "").strip() for k, v in r.items() if k} for r in reader]
        except csv.Error as exc:
            raise UsageError(f"cannot read manifest '{path}': {exc}") from None
    if not rows:
        raise UsageError(f"manifest '{path}' has no rows")
    return rows


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, list):
        return ";".join(str(x) for x in v)
    return str(v).strip()


def manifest_items(path: Path, job: Job, out_dir: Path) -> list[Item]:
    """Validate a manifest against ``job``'s columns and turn its rows into items with unique ids."""
    rows = read_manifest(path)
    known = set(job.required) | set(job.optional) | {"id"}
    cols = set().union(*(r.keys() for r in rows))
    missing = [c for c in job.required if c not in cols]
    if missing:
        raise UsageError(
            f"manifest '{path}' needs column(s) {', '.join(job.required)} for {job.name} "
            f"(missing: {', '.join(missing)}; found: {', '.join(sorted(cols))})"
        )
    unknown = sorted(cols - known)
    if unknown:
        raise UsageError(
            f"manifest '{path}': unknown column(s) {', '.join(unknown)} for {job.name} "
            f"(known: {', '.join(sorted(known))})"
        )
    base = path.parent
    items: list[Item] = []
    seen: set[str] = set()
    for i, row in enumerate(rows):
        for c in job.required:
            if not row.get(c):
                raise UsageError(f"manifest '{path}', item {i + 1}: empty '{c}'")
        fields = {k: _resolve(v, base) if k in job.path_columns and v else v for k, v in row.items() if k != "id"}
        iid = row.get("id") or job.item_id(fields)
        if iid in seen:
            if row.get("id"):
                raise UsageError(f"manifest '{path}': id '{iid}' appears twice")
            iid = f"{iid}__{i}"
        seen.add(iid)
        items.append(Item(i, iid, fields, job.output_of(iid, out_dir)))
    return items


def _resolve(value: str, base: Path) -> str:
    parts = [p.strip() for p in value.split(";") if p.strip()]
    return ";".join(p if Path(p).is_absolute() else str(base / p) for p in parts)


# ------------------------------------------------------------------------------------------------ the log


class RunLog:
    """Append-only JSON Lines log; every line is flushed and fsynced as soon as it is written."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
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

    A torn last line (a process killed mid-write) is ignored.
    """
    latest: dict[str, dict[str, Any]] = {}
    for p in paths:
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except OSError:
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


# ------------------------------------------------------------------------------------------------ engine


@dataclass
class RunSummary:
    """Counts and aggregate metrics of a run (over every item of the manifest, earlier runs included)."""

    items: int = 0
    done_now: int = 0
    already_done: int = 0
    seconds: float = 0.0
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> list[dict[str, Any]]:
        return [r for r in self.records.values() if r.get("status") == "ok"]

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [{"id": r["id"], "error": r.get("error")} for r in self.records.values() if r.get("status") != "ok"]

    def metrics(self) -> dict[str, dict[str, float]]:
        return aggregate_metrics(self.ok)

    def as_dict(self) -> dict[str, Any]:
        done = self.done_now + self.already_done
        return {
            "items": self.items,
            "ok": len(self.ok),
            "done_now": self.done_now,
            "already_done": self.already_done,
            "failed": len(self.failures),
            "failures": self.failures,
            "seconds": round(self.seconds, 4),
            "items_per_s": round(self.done_now / self.seconds, 3) if self.seconds > 0 else None,
            "metrics": self.metrics(),
            "complete": done == self.items,
        }


def aggregate_metrics(records: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """count / median / mean / min / max of every numeric metric over ``records``."""
    values: dict[str, list[float]] = {}
    for r in records:
        for k, v in (r.get("metrics") or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                values.setdefault(k, []).append(float(v))
            elif isinstance(v, bool):
                values.setdefault(k, []).append(float(v))
    return {
        k: {
            "count": len(v),
            "median": statistics.median(v),
            "mean": statistics.fmean(v),
            "min": min(v),
            "max": max(v),
        }
        for k, v in sorted(values.items())
    }


def _load_ahead(job: Job, items: list[Item], workers: int) -> Iterator[tuple[Item, Any, str | None]]:
    """Load items in a thread pool, in order, a bounded window ahead of the caller's compute."""

    def load(item: Item) -> tuple[Item, Any, str | None]:
        try:
            return item, job.load(item), None
        except GdvisionError as exc:
            return item, None, str(exc)
        except (OSError, ValueError) as exc:
            return item, None, f"{type(exc).__name__}: {exc}".splitlines()[0]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _, fut in prefetch(pool, load, items, max(2 * workers, 8)):
            yield fut.result()


def run_items(
    job: Job,
    items: list[Item],
    out_dir: Path,
    batch_size: int = 16,
    overwrite: bool = False,
    workers: int = 2,
    rank: int = 0,
    world: int = 1,
    progress: Callable[[int, int, str], None] | None = None,
) -> RunSummary:
    """Run ``job`` over this rank's share of ``items``, logging each item; returns this rank's summary.

    Items whose id already has an ``ok`` record in ``out_dir``'s logs are skipped (unless ``overwrite``).
    Loaded items with equal :meth:`Job.batch_key` (not None) are solved together, up to ``batch_size``.
    ``progress(done, total, info)`` is called after each item.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    previous = {} if overwrite else read_records(log_files(out_dir))
    mine = [it for it in items if it.index % world == rank]
    todo = [it for it in mine if previous.get(it.id, {}).get("status") != "ok"]
    summary = RunSummary(items=len(mine), already_done=len(mine) - len(todo))
    summary.records = {it.id: previous[it.id] for it in mine if it.id in previous}
    log = RunLog(out_dir / (LOG_NAME if world == 1 else f"run.rank{rank}.jsonl"))
    finished = summary.already_done
    if progress:
        progress(finished, len(mine), "")

    def record(item: Item, result: dict[str, Any] | None, error: str | None, seconds: float) -> None:
        nonlocal finished
        rec: dict[str, Any] = {
            "id": item.id,
            "index": item.index,
            "status": "ok" if error is None else "failed",
            "inputs": item.fields,
            "outputs": (result or {}).get("outputs", {}),
            "metrics": (result or {}).get("metrics", {}),
            "seconds": round(seconds, 6),
            "error": error,
            "rank": rank,
        }
        if result is not None:
            rec["result"] = {k: v for k, v in result.items() if k not in ("outputs", "metrics")}
        log.write(rec)
        summary.records[item.id] = rec
        if error is None:
            summary.done_now += 1
        finished += 1
        if progress:
            rate = summary.done_now / max(time.perf_counter() - t0, 1e-9)
            progress(finished, len(mine), f"{rate:.2f} items/s")

    pending: dict[Hashable, list[tuple[Item, Any]]] = {}

    def flush(key: Hashable) -> None:
        group = pending.pop(key, [])
        if not group:
            return
        t = time.perf_counter()
        try:
            outcomes = job.solve(group)
        except (GdvisionError, ValueError, RuntimeError) as exc:  # the batch fails, the run goes on
            if isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower():
                raise
            msg = str(exc) if isinstance(exc, GdvisionError) else f"{type(exc).__name__}: {exc}"
            outcomes = [Outcome(it, error=msg.splitlines()[0]) for it, _ in group]
        per_item = (time.perf_counter() - t) / len(group)
        for oc in outcomes:
            record(oc.item, oc.result, oc.error, per_item)

    try:
        for item, loaded, error in _load_ahead(job, todo, workers):
            if error is not None:
                record(item, None, error, 0.0)
                continue
            key = job.batch_key(item, loaded)
            if key is None:  # not batchable: solve it now, alone
                key = ("__single__", item.id)
                pending[key] = [(item, loaded)]
                flush(key)
                continue
            pending.setdefault(key, []).append((item, loaded))
            if len(pending[key]) >= batch_size:
                flush(key)
        for key in list(pending):
            flush(key)
    finally:
        log.close()
    summary.seconds = time.perf_counter() - t0
    return summary


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


# ------------------------------------------------------------------------------------------------ thresholds


def parse_bounds(specs: list[str] | None, option: str) -> dict[str, float]:
    """``["name=value", ...]`` -> ``{name: value}``; UsageError on a malformed entry."""
    out: dict[str, float] = {}
    for s in specs or []:
        name, sep, value = s.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise UsageError(f"{option} takes NAME=VALUE (e.g. corner_error_px=0.5), got '{s}'") from None
    return out


def check_thresholds(
    records: list[dict[str, Any]],
    max_median: dict[str, float],
    min_median: dict[str, float],
) -> list[str]:
    """Regression messages: a metric whose median is above its ``max_median`` (below its ``min_median``).

    Each message names the items beyond the bound. A bound on a metric that no item reports is a regression too
    (the run measured nothing).
    """
    problems: list[str] = []
    ok = [r for r in records if r.get("status") == "ok"]
    for name, bound, worse in [(n, b, "above") for n, b in max_median.items()] + [
        (n, b, "below") for n, b in min_median.items()
    ]:
        vals = [(r["id"], r.get("metrics", {}).get(name)) for r in ok]
        vals = [(i, float(v)) for i, v in vals if isinstance(v, (int, float))]
        if not vals:
            problems.append(f"no item reports metric '{name}' (does the manifest have ground truth?)")
            continue
        med = statistics.median(v for _, v in vals)
        beyond = [i for i, v in vals if (v > bound if worse == "above" else v < bound)]
        if (med > bound) if worse == "above" else (med < bound):
            names = ", ".join(beyond[:10]) + (f" and {len(beyond) - 10} more" if len(beyond) > 10 else "")
            problems.append(f"median {name} {med:.6g} is {worse} {bound:g}; items {worse} it: {names}")
    return problems


__all__ = [
    "Item",
    "Job",
    "Outcome",
    "RunLog",
    "RunSummary",
    "aggregate_metrics",
    "check_thresholds",
    "manifest_items",
    "merge_logs",
    "parse_bounds",
    "read_manifest",
    "read_records",
    "run_items",
]
