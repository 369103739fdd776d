"""Running a solver over many image pairs listed in a CSV file (``register --pairs``, ``match --pairs``).

The CSV has a header with columns ``a`` and ``b`` (image paths) and optionally ``gt`` (a JSON file with the
true homography A -> B, ``{"H": ...}``). Relative paths are resolved against the CSV file's folder.

For each pair the runner writes ``<out_dir>/<stemA>__<stemB>.json`` atomically and appends one JSON line to
``<out_dir>/run.jsonl`` (the run log) as soon as the pair is done, so an interrupted run loses at most the
pairs in flight. Pairs whose result file already exists are skipped (resumed) unless ``overwrite``. A pair that
fails (missing or corrupt file, solver failure) is logged with its error and never stops the others.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import GdvisionError, InputError, UsageError
from .io import LoadedImage, dumps_json, read_homography, read_image, write_json


@dataclass
class PairItem:
    """One row of a pairs file: image paths, optional ground-truth file, and the result path."""

    index: int
    a: Path
    b: Path
    gt: Path | None
    out: Path


@dataclass
class PairOutcome:
    """What a solver returns for a pair: the JSON-able result, or an error message."""

    item: PairItem
    result: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class PairsSummary:
    """Counts and aggregate metrics of a pairs run."""

    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    corner_errors: list[float] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pairs": self.total,
            "done": self.done,
            "skipped_existing": self.skipped,
            "failed": self.failed,
            "failures": self.failures,
        }
        if self.corner_errors:
            errs = self.corner_errors
            out["corner_error_px"] = {
                "count": len(errs),
                "median": statistics.median(errs),
                "mean": statistics.fmean(errs),
                "max": max(errs),
                "success_rate_3px": sum(e < 3.0 for e in errs) / len(errs),
            }
        return out


def read_pairs(csv_path: Path, out_dir: Path) -> list[PairItem]:
    """Parse a pairs CSV (columns ``a``, ``b``, optional ``gt``); UsageError for a malformed file."""
    if not csv_path.exists():
        raise UsageError(f"file not found: '{csv_path}'")
    try:
        with csv_path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"cannot read pairs file '{csv_path}': {exc}") from None
    if not rows:
        raise UsageError(f"pairs file '{csv_path}' has no rows (expected a header 'a,b[,gt]' and one row per pair)")
    cols = {c.strip().lower() for c in rows[0]}
    if not {"a", "b"} <= cols:
        raise UsageError(f"pairs file '{csv_path}' needs columns 'a' and 'b' (found: {', '.join(sorted(cols))})")
    base = csv_path.parent
    items = []
    seen: dict[Path, int] = {}
    for i, row in enumerate(rows):
        row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
        if not row.get("a") or not row.get("b"):
            raise UsageError(f"pairs file '{csv_path}', row {i + 2}: empty 'a' or 'b'")
        a = Path(row["a"]) if Path(row["a"]).is_absolute() else base / row["a"]
        b = Path(row["b"]) if Path(row["b"]).is_absolute() else base / row["b"]
        gt = row.get("gt") or None
        gtp = None if gt is None else (Path(gt) if Path(gt).is_absolute() else base / gt)
        out = out_dir / f"{a.stem}__{b.stem}.json"
        if out in seen:
            out = out_dir / f"{a.stem}__{b.stem}__{i}.json"
        seen[out] = i
        items.append(PairItem(i, a, b, gtp, out))
    return items


Loaded = tuple[PairItem, LoadedImage | None, LoadedImage | None, Any, str | None]


def load_pairs(items: list[PairItem], workers: int = 4) -> Iterator[Loaded]:
    """Decode pairs in a small thread pool, in order, overlapping I/O with the caller's compute.

    Yields ``(item, image_a, image_b, H_gt or None, error or None)``.
    """

    def load(item: PairItem) -> Loaded:
        try:
            a = read_image(item.a)
            b = read_image(item.b)
            gt = read_homography(item.gt) if item.gt is not None else None
            return item, a, b, gt, None
        except GdvisionError as exc:
            return item, None, None, None, str(exc)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        # a bounded window of futures keeps memory flat on huge pair lists
        window = max(2 * workers, 8)
        futures = [pool.submit(load, it) for it in items[:window]]
        nxt = len(futures)
        while futures:
            fut = futures.pop(0)
            if nxt < len(items):
                futures.append(pool.submit(load, items[nxt]))
                nxt += 1
            yield fut.result()


class RunLog:
    """Append-only JSON Lines log; every line is flushed and fsynced as soon as it is written."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._fh.write(dumps_json(record) + "\n")
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def run_pairs(
    items: list[PairItem],
    solve: Callable[[list[Loaded]], list[PairOutcome]],
    out_dir: Path,
    batch_key: Callable[[Loaded], Any],
    batch_size: int,
    overwrite: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> PairsSummary:
    """Run ``solve`` over ``items`` in batches of loaded pairs sharing ``batch_key``; write results and log.

    ``solve`` receives a list of loaded pairs (all with the same key) and returns one
    :class:`PairOutcome` per pair. Results go to ``item.out`` (atomic) and to ``out_dir/run.jsonl``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = PairsSummary(total=len(items))
    todo = []
    for it in items:
        if it.out.exists() and not overwrite:
            summary.skipped += 1
            try:
                prev = json.loads(it.out.read_text())
                if isinstance(prev.get("corner_error_px"), (int, float)):
                    summary.corner_errors.append(float(prev["corner_error_px"]))
            except (OSError, ValueError):
                pass
        else:
            todo.append(it)
    log = RunLog(out_dir / "run.jsonl")
    finished = summary.skipped
    if on_progress:
        on_progress(finished, summary.total)
    pending: dict[Any, list[Loaded]] = {}

    def flush(key: Any) -> None:
        nonlocal finished
        group = pending.pop(key, [])
        if not group:
            return
        try:
            outcomes = solve(group)
        except GdvisionError as exc:
            outcomes = [PairOutcome(g[0], error=str(exc)) for g in group]
        for oc in outcomes:
            record: dict[str, Any] = {"index": oc.item.index, "a": str(oc.item.a), "b": str(oc.item.b)}
            if oc.error is not None:
                summary.failed += 1
                summary.failures.append({"a": str(oc.item.a), "b": str(oc.item.b), "error": oc.error})
                record["error"] = oc.error
            else:
                assert oc.result is not None
                write_json(oc.item.out, oc.result)
                summary.done += 1
                record.update({"out": str(oc.item.out), **oc.result})
                err = oc.result.get("corner_error_px")
                if isinstance(err, (int, float)):
                    summary.corner_errors.append(float(err))
            log.write(record)
            finished += 1
        if on_progress:
            on_progress(finished, summary.total)

    try:
        for loaded in load_pairs(todo):
            item, _, _, _, error = loaded
            if error is not None:
                summary.failed += 1
                summary.failures.append({"a": str(item.a), "b": str(item.b), "error": error})
                log.write({"index": item.index, "a": str(item.a), "b": str(item.b), "error": error})
                finished += 1
                if on_progress:
                    on_progress(finished, summary.total)
                continue
            key = batch_key(loaded)
            pending.setdefault(key, []).append(loaded)
            if len(pending[key]) >= batch_size:
                flush(key)
        for key in list(pending):
            flush(key)
    finally:
        log.close()
    return summary


def check_max_error(summary: PairsSummary, max_error: float | None) -> str | None:
    """A failure message when the median corner error exceeds ``max_error`` (or no error could be measured)."""
    if max_error is None:
        return None
    if not summary.corner_errors:
        raise InputError("--max-error needs ground truth: add a 'gt' column to the pairs file")
    med = statistics.median(summary.corner_errors)
    if med > max_error:
        return f"median corner error {med:.4f} px exceeds --max-error {max_error} px"
    return None
