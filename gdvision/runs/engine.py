"""One batch engine for every subcommand: manifests, batched compute, a resumable JSON Lines log, thresholds.

A **manifest** lists the items of a run, one per row: a CSV file with a header, or a JSON Lines file (one object
per line; ``.jsonl`` / ``.ndjson``). Each subcommand names the input columns it needs (``register``: ``a``, ``b``;
``edges``: ``image``; ``depth``: ``views``, ``cameras``; ...) and the optional ones it understands (``gt``, per-item
options such as ``model``); an ``id`` column names the item (default: derived from the input file names). Relative
paths are resolved against the manifest's folder. Each command's columns: its task module in :mod:`gdvision.tasks`.

**Outputs** (one :class:`gdvision.tasks.outputs.OutputPolicy` per run): ids become safe file names, nothing is
written outside ``out_dir`` nor over an input of the run (every path of every row, the manifest itself), and every
item's output is claimed before any work. An ``out_dir`` that already holds a run log or an item's output is refused
unless ``resume`` or ``overwrite``.

The **log** ``<out_dir>/run.jsonl`` (:mod:`gdvision.runs.runlog`) gets one JSON line per item as soon as it finishes
(flushed and fsynced)::

    {"id": ..., "index": row, "status": "ok"|"failed", "inputs": {...}, "outputs": {...}, "metrics": {...},
     "seconds": ..., "error": null|"...", "rank": 0, "params": {...}, "result": {...}}

so a killed run loses at most the items in flight (a torn last line is set aside before appending). With
``resume`` a later run skips every item that has an ``ok`` line (never redone nor overwritten) and redoes the
others; the earlier run's ``params`` (:func:`job_params`) and rows must be the same. With ``overwrite`` everything
is redone and the old logs are kept as ``old-<time>.run.jsonl``.

**Distributed** (:mod:`gdvision.runs.distributed`): with torchrun, rank ``r`` of ``n`` takes the items whose row index
``i`` has ``i % n == r``, appends to its own ``run.rank<r>.jsonl``; at the end rank 0 gathers every rank's lines
(``torch.distributed.gather_object``) into ``run.jsonl`` and writes the summary. Logs of a crashed run (any rank)
are read back on resume, whatever the number of ranks then.

**Thresholds** (CI regression runs): :func:`check_thresholds` compares the median of a metric over the run with
a bound and names the items beyond it.
"""

from __future__ import annotations

import csv
import dataclasses
import fnmatch
import json
import math
import statistics
import time
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gdvision.errors import GdvisionError, UsageError
from gdvision.io.images import dumps_json
from gdvision.runs.prefetch import prefetch
from gdvision.runs.runlog import (
    LOG_NAME,
    LOG_PATTERNS,
    RunLog,
    log_files,
    merge_logs,
    read_records,
    set_aside_logs,
    write_records,
)
from gdvision.tasks.outputs import OutputPolicy, safe_id
from gdvision.tasks.protocol import Item, Job, Outcome

# ------------------------------------------------------------------------------------------------ manifest


def _read_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    """``(line number, row)`` pairs of a CSV or JSON Lines manifest (see :func:`read_manifest`)."""
    if not path.exists():
        raise UsageError(f"file not found: '{path}'")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a leading byte-order mark is not part of the first name
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read manifest '{path}': {exc}") from None
    rows: list[tuple[int, dict[str, str]]] = []
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
            row = {str(k).strip().lower(): _cell(v) for k, v in obj.items()}
            raw_id = next((v for k, v in obj.items() if str(k).strip().lower() == "id"), None)
            if isinstance(raw_id, str) and not raw_id.strip():
                raise UsageError(f"manifest '{path}', line {n}: empty id (leave it out to get one from the file names)")
            rows.append((n, row))
    else:
        try:
            reader = csv.DictReader(text.splitlines())
            for r in reader:
                rows.append((reader.line_num, {k.strip().lower(): (v or "").strip() for k, v in r.items() if k}))
        except csv.Error as exc:
            raise UsageError(f"cannot read manifest '{path}': {exc}") from None
    if not rows:
        raise UsageError(f"manifest '{path}' has no rows")
    return rows


def read_manifest(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV (header line) or JSON Lines manifest as dicts of stripped strings; UsageError if malformed.

    Column names are lower-cased; a UTF-8 byte-order mark at the start is skipped.

    >>> import tempfile
    >>> m = Path(tempfile.mkdtemp()) / "m.csv"
    >>> _ = m.write_bytes("\\ufeffImage,id\\na.png,\\n".encode())
    >>> read_manifest(m)
    [{'image': 'a.png', 'id': ''}]
    """
    return [row for _, row in _read_rows(path)]


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, list):
        return ";".join(str(x) for x in v)
    return str(v).strip()


def _generated_id(name: str) -> str:
    """A file-name-safe version of an id made from input names (never refused by :func:`safe_id`)."""
    s = "".join("_" if c in "/\\\x00" else c for c in name).strip()
    if s in ("", ".", ".."):
        s = "item"
    if s[0] in "-~":
        s = "_" + s[1:]
    return safe_id(s)


def job_params(job: Job) -> dict[str, Any]:
    """The parameters that decide a job's results, as JSON values (recorded in the log; checked on ``--resume``).

    ``job.params`` when the job defines it; else the fields of ``job.cfg`` (a dataclass) and the job's other public
    attributes that are plain values (``fmt``, ``gray``, ``seed``...), except where and how fast it runs
    (``device``, ``workers``, ``batch_size``, ``progress``).
    """
    explicit = getattr(job, "params", None)
    if explicit is not None:
        params = dict(explicit() if callable(explicit) else explicit)
    else:
        params = {}
        cfg = getattr(job, "cfg", None)
        if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
            params.update(dataclasses.asdict(cfg))
        for k, v in vars(job).items():
            if k.startswith("_") or k in ("cfg", "device", "workers", "batch_size", "progress", "pool"):
                continue
            if v is None or isinstance(v, (str, int, float, bool)):
                params[k] = v
    return json.loads(dumps_json(params))


def _first_difference(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    for k in sorted(set(old) | set(new)):
        if old.get(k, "<unset>") != new.get(k, "<unset>"):
            return f"{k}: {old.get(k, '<unset>')!r} then, {new.get(k, '<unset>')!r} now"
    return None


def manifest_items(path: Path, job: Job, out_dir: Path, overwrite: bool = False, resume: bool = False) -> list[Item]:
    """Validate a manifest against ``job``'s columns, turn its rows into items, and claim their outputs.

    Ids: an ``id`` cell must be a safe file name (:func:`gdvision.tasks.outputs.safe_id`) used by no other row; a row
    without one gets ``job.item_id`` of its inputs, suffixed ``__2``, ``__3``... when an explicit or earlier id
    already has it. One :class:`OutputPolicy` serves the whole run: its inputs are every path of every row and the
    manifest itself; each item's ``out`` is claimed now (before any work) and the policy is attached to the item.

    Existing results: when ``out_dir`` already holds a run log or an item's output, UsageError unless ``resume``
    (finished items are kept; parameters and rows must be those of the earlier run) or ``overwrite``.
    """
    numbered = _read_rows(path)
    rows = [r for _, r in numbered]
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
    where = [f"manifest '{path}', line {n}" for n, _ in numbered]
    fields_of: list[dict[str, str]] = []
    explicit: dict[str, int] = {}
    for i, row in enumerate(rows):
        for c in job.required:
            if not row.get(c):
                raise UsageError(f"{where[i]}: empty '{c}'")
        fields_of.append(
            {k: _resolve(v, base) if k in job.path_columns and v else v for k, v in row.items() if k != "id"}
        )
        if row.get("id"):
            try:
                iid = safe_id(row["id"])
            except UsageError as exc:
                raise UsageError(f"{where[i]}: {exc}") from None
            if iid in explicit:
                raise UsageError(f"{where[explicit[iid]]} and line {numbered[i][0]} both have id '{iid}'")
            explicit[iid] = i
    used = set(explicit)
    ids: list[str] = []
    for i, row in enumerate(rows):
        iid = row.get("id") or ""
        if not iid:
            stem = _generated_id(job.item_id(fields_of[i]))
            iid, k = stem, 1
            while iid in used:
                k += 1
                iid = f"{stem}__{k}"
            used.add(iid)
        ids.append(iid)
    items = [Item(i, ids[i], fields_of[i], job.output_of(ids[i], out_dir)) for i in range(len(rows))]
    policy = _run_policy(path, job, out_dir, items, overwrite, resume)
    for item in items:
        item.policy = policy
        if item.out.parent == out_dir and any(fnmatch.fnmatch(item.out.name, p) for p in LOG_PATTERNS):
            raise UsageError(f"{where[item.index]}: id '{item.id}' would name a run log file: choose another id")
        try:
            item.claim(item.out)
        except UsageError as exc:
            raise UsageError(f"{where[item.index]}: {exc}") from None
    if resume:
        _check_resumable(out_dir, job, items, where)
    return items


def _run_policy(path: Path, job: Job, out_dir: Path, items: list[Item], overwrite: bool, resume: bool) -> OutputPolicy:
    """The run's output policy; UsageError when ``out_dir`` holds an earlier run and neither flag is given."""
    policy = OutputPolicy(out_dir, [path], overwrite=overwrite, flags="--resume or --overwrite", resume=resume)
    for item in items:
        for col in job.path_columns:
            policy.add_inputs(item.fields.get(col, "").split(";"))
    policy.check_out_dir()
    logs = log_files(out_dir) if out_dir.is_dir() else []
    if logs and not (overwrite or resume):
        raise UsageError(
            f"'{logs[0]}' exists (an earlier run in this --out-dir): pass --resume to continue it (finished items "
            "are kept) or --overwrite to redo everything"
        )
    policy.claim(out_dir / LOG_NAME, existing_ok=True, owner="the run log")
    return policy


def _check_resumable(out_dir: Path, job: Job, items: list[Item], where: list[str]) -> None:
    """UsageError when a finished item of the earlier run was made with other parameters or other inputs."""
    previous = read_records(log_files(out_dir))
    params = job_params(job)
    for item in items:
        rec = previous.get(item.id)
        if rec is None or rec.get("status") != "ok":
            continue
        if "params" in rec:
            diff = _first_difference(rec["params"], params)
            if diff is not None:
                raise UsageError(
                    f"cannot --resume: the earlier run in '{out_dir}' used other parameters ({diff}): "
                    "use --overwrite to redo everything"
                )
        if "inputs" in rec:
            diff = _first_difference(rec["inputs"], item.fields)
            if diff is not None:
                raise UsageError(
                    f"cannot --resume: {where[item.index]} (id '{item.id}') changed since the earlier run ({diff}): "
                    "use --overwrite to redo everything"
                )


def _resolve(value: str, base: Path) -> str:
    parts = [p.strip() for p in value.split(";") if p.strip()]
    return ";".join(p if Path(p).is_absolute() else str(base / p) for p in parts)


# ------------------------------------------------------------------------------------------------ engine


@dataclass
class RunSummary:
    """Counts and aggregate metrics of a run (over every item of the manifest, earlier runs included)."""

    items: int = 0
    done_now: int = 0
    already_done: int = 0
    seconds: float = 0.0
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    torn: list[dict[str, Any]] = field(default_factory=list)  # torn last lines set aside (runlog.set_aside_torn_tail)

    @property
    def ok(self) -> list[dict[str, Any]]:
        return [r for r in self.records.values() if r.get("status") == "ok"]

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [{"id": r["id"], "error": r.get("error")} for r in self.records.values() if r.get("status") != "ok"]

    def metrics(self) -> dict[str, dict[str, float]]:
        return aggregate_metrics(self.ok)

    def as_dict(self) -> dict[str, Any]:
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
            "complete": len(self.ok) == self.items,
            "torn_log_lines": self.torn,
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
    seen: dict[str, Item] = {}
    for it in items:
        if it.id in seen:
            raise UsageError(f"{seen[it.id].owner} and {it.owner} have the same id: give them different ids")
        seen[it.id] = it
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    params = job_params(job)
    previous = {} if overwrite else read_records(log_files(out_dir))
    mine = [it for it in items if it.index % world == rank]
    todo = [it for it in mine if previous.get(it.id, {}).get("status") != "ok"]
    summary = RunSummary(items=len(mine), already_done=len(mine) - len(todo))
    summary.records = {it.id: previous[it.id] for it in mine if it.id in previous}
    log = RunLog(out_dir / (LOG_NAME if world == 1 else f"run.rank{rank}.jsonl"))
    summary.torn = list(log.torn)
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
            "params": params,
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
    "LOG_NAME",
    "Item",
    "Job",
    "Outcome",
    "RunLog",
    "RunSummary",
    "aggregate_metrics",
    "check_thresholds",
    "job_params",
    "log_files",
    "manifest_items",
    "merge_logs",
    "parse_bounds",
    "read_manifest",
    "read_records",
    "run_items",
    "set_aside_logs",
    "write_records",
]
