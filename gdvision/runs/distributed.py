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
from gdvision.runs.engine import Item, Job, RunSummary, run_items
from gdvision.runs.runlog import log_files, merge_logs, set_aside_logs, set_aside_torn_tail


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

    ``items`` come from :func:`gdvision.runs.engine.manifest_items`, which has already refused an ``out_dir`` holding
    an earlier run unless ``resume`` or ``overwrite``. With ``overwrite`` rank 0 sets the old logs aside; otherwise it
    sets aside a torn last line of any log (a crash mid-write) before any rank appends.
    """
    if r.distributed:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
    try:
        if r.distributed:
            dist.barrier()  # everyone has read the old logs before rank 0 may move them away
        torn: list[dict[str, Any]] = []
        if r.rank == 0:
            if overwrite:
                set_aside_logs(out_dir)
            else:
                torn = [t for p in log_files(out_dir) if (t := set_aside_torn_tail(p)) is not None]
        if r.distributed:
            dist.barrier()
        summary = run_items(
            job, items, out_dir, batch_size, overwrite=overwrite, rank=r.rank, world=r.world, progress=progress
        )
        mine = [summary.records[it.id] for it in items if it.index % r.world == r.rank and it.id in summary.records]
        if r.distributed:
            gathered: list[Any] = [None] * r.world if r.rank == 0 else []
            share = (mine, summary.done_now, summary.already_done, summary.seconds)
            dist.gather_object(share, gathered if r.rank == 0 else None, dst=0)
            if r.rank != 0:
                dist.barrier()
                (out_dir / f"run.rank{r.rank}.jsonl").unlink(missing_ok=True)  # merged by rank 0 (other node?)
                return None
            records = merge_logs(out_dir, [rec for recs, *_ in gathered for rec in recs])
            summary.done_now = sum(g[1] for g in gathered)
            summary.already_done = sum(g[2] for g in gathered)
            summary.seconds = max(g[3] for g in gathered)
            dist.barrier()
        else:
            records = merge_logs(out_dir)
        ids = {it.id for it in items}
        summary.records = {i: rec for i, rec in records.items() if i in ids}
        summary.items = len(items)
        summary.torn = torn + summary.torn
        return summary
    finally:
        if r.distributed and dist.is_initialized():
            dist.destroy_process_group()


__all__ = ["Rank", "rank_device", "rank_from_env", "run_manifest"]
