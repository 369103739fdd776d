"""Running a manifest over torchrun ranks: one process per device, results gathered by rank 0.

torchrun (``torchrun --nproc-per-node N -m gdvision <command> --manifest ...``, multi-node included) sets
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without them the run is a single process (rank 0 of 1).
Each rank computes on its own device: ``cuda:<LOCAL_RANK>`` when ``--device`` is auto/cuda and CUDA is present,
else the CPU (one intra-op thread per core share: ``cores // ranks on this node``). The process group uses the
gloo backend, which works everywhere and is all that is needed: only Python objects (the finished items'
records) are exchanged, once, at the end.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gdvision.device import resolve_device
from gdvision.errors import UsageError
from gdvision.runs.engine import Item, Job, RunSummary, log_files, merge_logs, read_records, run_items


@dataclass
class Rank:
    """This process's place in the run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def distributed(self) -> bool:
        return self.world > 1


def rank_from_env() -> Rank:
    """The torchrun rank of this process (rank 0 of 1 outside torchrun)."""

    def env(name: str, default: int) -> int:
        try:
            return int(os.environ.get(name, default))
        except ValueError:
            raise UsageError(f"environment variable {name} is not an integer: '{os.environ[name]}'") from None

    r = Rank(env("RANK", 0), env("WORLD_SIZE", 1), env("LOCAL_RANK", 0), env("LOCAL_WORLD_SIZE", 1))
    if not 0 <= r.rank < r.world:
        raise UsageError(f"RANK={r.rank} is not in [0, WORLD_SIZE={r.world})")
    return r


def rank_device(spec: str, r: Rank) -> torch.device:
    """The device of rank ``r`` for a ``--device`` spec: its own GPU when there are GPUs, else the CPU."""
    if r.distributed and spec in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", r.local_rank % torch.cuda.device_count())
    dev = resolve_device(spec)
    if r.distributed and dev.type == "cpu" and r.local_world > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // r.local_world))
    return dev


def run_manifest(
    job: Job,
    items: list[Item],
    out_dir: Path,
    r: Rank,
    batch_size: int = 16,
    overwrite: bool = False,
    resume: bool = False,
    progress: Any = None,
) -> RunSummary | None:
    """Run ``job`` over ``items`` on this rank; rank 0 returns the merged summary of the whole run, others None.

    Without ``resume`` or ``overwrite``, an ``out_dir`` that already holds finished items is a UsageError
    (so that a CI job never silently mixes two runs). Every rank checks this before any rank writes.
    """
    if r.distributed:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
    try:
        finished = {i for i, rec in read_records(log_files(out_dir)).items() if rec.get("status") == "ok"}
        if finished and not (resume or overwrite):
            raise UsageError(
                f"'{out_dir}' already holds {len(finished)} finished item(s) of an earlier run: add --resume to "
                "continue it (finished items are kept), or --overwrite to redo everything"
            )
        if r.distributed:
            dist.barrier()  # everyone has read the old logs before rank 0 may move them away
        if overwrite and r.rank == 0:
            _set_aside_logs(out_dir)
        if r.distributed:
            dist.barrier()
        summary = run_items(
            job, items, out_dir, batch_size, overwrite=overwrite, rank=r.rank, world=r.world, progress=progress
        )
        mine = [summary.records[it.id] for it in items if it.index % r.world == r.rank and it.id in summary.records]
        if r.distributed:
            gathered: list[Any] = [None] * r.world if r.rank == 0 else []
            dist.gather_object((mine, summary.done_now, summary.seconds), gathered if r.rank == 0 else None, dst=0)
            if r.rank != 0:
                dist.barrier()
                (out_dir / f"run.rank{r.rank}.jsonl").unlink(missing_ok=True)  # merged by rank 0 (other node?)
                return None
            records = merge_logs(out_dir, [rec for recs, _, _ in gathered for rec in recs])
            summary.done_now = sum(n for _, n, _ in gathered)
            summary.seconds = max(s for _, _, s in gathered)
            dist.barrier()
        else:
            records = merge_logs(out_dir)
        ids = {it.id for it in items}
        summary.records = {i: rec for i, rec in records.items() if i in ids}
        summary.items = len(items)
        summary.already_done = (
            len([i for i, rec in summary.records.items() if rec.get("status") == "ok"]) - summary.done_now
        )
        return summary
    finally:
        if r.distributed and dist.is_initialized():
            dist.destroy_process_group()


def _set_aside_logs(out_dir: Path) -> None:
    import time

    stamp = time.strftime("%Y%m%d-%H%M%S")
    for p in log_files(out_dir):
        p.rename(p.with_name(f"old-{stamp}.{p.name}"))


__all__ = ["Rank", "rank_device", "rank_from_env", "run_manifest"]
