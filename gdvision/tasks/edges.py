"""``gdvision edges`` as a task: image files -> edge maps -> result files, in folder mode and manifest mode.

Both modes compute and write through one :class:`EdgeBatch`: a batch of decoded images of one shape goes to the
device as one tensor, its maps come back, and a thread pool encodes and writes each file (atomically) while the
next batch computes.

- Folder mode (:func:`plan_edges`, then :func:`run_edges`): output names mirror input names,
  ``OUT_DIR/<path relative to the inputs' common folder>`` with the extension ``.png`` or ``.npy``
  (:func:`output_paths`). :func:`plan_edges` claims every output through the run's
  :class:`~gdvision.tasks.outputs.OutputPolicy` before any file is decoded: an output that would replace an input
  (also through a symlink), lie outside ``--out-dir``, be written for two inputs, or that exists without
  ``--overwrite`` stops the run (UsageError, exit 2) before anything is written. Images are read ahead by a small
  thread pool and grouped by (H, W, C); a file that cannot be read or written is reported and the others go on.
- Manifest mode (:class:`EdgesJob`, column ``image``): the engine (:mod:`gdvision.runs.engine`) claims each item's
  output, loads, groups and logs; :meth:`EdgesJob.solve` runs one :class:`EdgeBatch`.

Formats: ``png`` (8-bit, scaled by :func:`gdvision.filters.edges.to_unit_range`), ``png16``, or ``npy`` (raw
float32 values, (H, W) for one channel, (H, W, C) otherwise). torch is imported when the first batch is computed,
so a command line can check its options against :data:`FORMATS` and the config first.

Example:
    >>> from pathlib import Path
    >>> [str(p) for p in output_paths([Path("a/x.jpg"), Path("a/b/y.png")], Path("out"), "png")]
    ['out/x.png', 'out/b/y.png']
    >>> check_format("jpg")
    Traceback (most recent call last):
    ...
    gdvision.errors.UsageError: unknown format 'jpg': use one of png, png16, npy
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gdvision._checks import check_choice
from gdvision.device import is_cpu_without_torch, keep_freed_memory
from gdvision.errors import GdvisionError, UsageError
from gdvision.filters.config import EdgeConfig
from gdvision.filters.sobel_np import SOBEL3_STEP_RESPONSE, sobel_magnitude_np
from gdvision.io.images import LoadedImage, atomic_write_bytes, encode_png, read_image, write_npy
from gdvision.io.png16 import encode_png_array
from gdvision.tasks.outputs import OutputPolicy
from gdvision.tasks.protocol import Item, Outcome

if TYPE_CHECKING:
    import torch

FORMATS = ("png", "png16", "npy")
_PNG_LEVEL = 1  # zlib level of written PNGs: cv2.imwrite's default; 3x faster than 6 for ~10% more bytes


def check_format(fmt: str, name: str = "format") -> str:
    """``fmt`` if it is one of :data:`FORMATS`; UsageError naming ``name`` otherwise."""
    return check_choice(fmt, name, FORMATS)


def suffix(fmt: str) -> str:
    """The file extension of format ``fmt``: ``.npy`` or ``.png``."""
    return ".npy" if fmt == "npy" else ".png"


def output_paths(paths: list[Path], out_dir: Path, fmt: str) -> list[Path]:
    """Output path per input: the path relative to the inputs' common folder, under ``out_dir``.

    UsageError when two inputs get the same output (``a.png`` and ``a.jpg``). Example:
        >>> [str(p) for p in output_paths([Path("a/x.jpg"), Path("a/b/y.png")], Path("out"), "npy")]
        ['out/x.npy', 'out/b/y.npy']
    """
    if not paths:
        return []
    root = os.path.commonpath([os.path.abspath(p.parent) for p in paths])
    outs = [out_dir / Path(os.path.relpath(os.path.abspath(p), root)).with_suffix(suffix(fmt)) for p in paths]
    seen: dict[Path, Path] = {}
    for p, o in zip(paths, outs, strict=True):
        if o in seen:
            raise UsageError(f"inputs '{seen[o]}' and '{p}' would both be written to '{o}'")
        seen[o] = p
    return outs


@dataclass(frozen=True)
class EdgePlan:
    """The files of one folder-mode run: (input, output) pairs whose outputs are claimed, and the format."""

    pairs: tuple[tuple[Path, Path], ...]
    fmt: str


def plan_edges(paths: list[Path], out_dir: Path, fmt: str = "png", overwrite: bool = False) -> EdgePlan:
    """Name every output (:func:`output_paths`) and claim each through one :class:`OutputPolicy`, before any work.

    The plan holds the real paths to write. UsageError (exit 2, nothing written) when an output would replace an
    input (symlinks resolved), lie outside ``out_dir`` (through a symlinked subfolder), serve two inputs, or exists
    while ``overwrite`` is off.
    """
    check_format(fmt)
    policy = OutputPolicy(out_dir, inputs=paths, overwrite=overwrite)
    policy.check_out_dir()
    outs = output_paths(paths, out_dir, fmt)
    claimed = [policy.claim(o, owner=f"input '{p}'") for p, o in zip(paths, outs, strict=True)]
    return EdgePlan(tuple(zip(paths, claimed, strict=True)), fmt)


def encode_result(arr: np.ndarray, fmt: str, path: Path) -> None:
    """Write one result atomically, creating its folder.

    ``arr``: (C, H, W) float32 (already in [0, 1] for PNG), or for ``png`` an (H, W, C) uint8 array already
    quantised by :func:`quantize8` (what :class:`EdgeBatch` hands over: the same bytes, less work per file).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if arr.dtype == np.uint8:
        atomic_write_bytes(path, encode_png_array(arr, _PNG_LEVEL))
        return
    if fmt == "npy":
        write_npy(path, arr[0] if arr.shape[0] == 1 else np.ascontiguousarray(arr.transpose(1, 2, 0)))
        return
    if arr.shape[0] not in (1, 3):
        raise UsageError(f"cannot write a {arr.shape[0]}-channel PNG for '{path.name}': use --format npy")
    atomic_write_bytes(path, encode_png(arr, 16 if fmt == "png16" else 8, compress_level=_PNG_LEVEL))


def computes_with_numpy(cfg: EdgeConfig, device: torch.device | str) -> bool:
    """Whether :class:`EdgeBatch` computes ``cfg`` on ``device`` with NumPy (no torch) instead of the torch filters.

    True for the default map - the 3x3 Sobel magnitude (L2 or L1) with the reflect-101 border - on the CPU
    (``device`` ``'cpu'`` or a CPU torch device): :func:`~gdvision.filters.sobel_np.sobel_magnitude_np`, file by file
    in the writer threads. Every other map, and every accelerator, uses the torch filters.

    Example:
        >>> computes_with_numpy(EdgeConfig(), "cpu"), computes_with_numpy(EdgeConfig(op="scharr"), "cpu")
        (True, False)
    """
    kind = device if isinstance(device, str) else device.type
    default_map = (cfg.op, cfg.ksize, cfg.what, cfg.border) == ("sobel", 3, "magnitude", "reflect101")
    return kind == "cpu" and default_map and cfg.norm in ("l1", "l2")


class EdgeBatch:
    """Compute the edge maps of one batch and hand their files to a writer pool: the one path of both modes.

    Args:
        cfg: what to compute (validated here).
        device: where to compute: a torch device, or ``'cpu'`` for the NumPy route (:func:`computes_with_numpy`).
        fmt: one of :data:`FORMATS`.
        pool: the threads that encode and write the files (and on the NumPy route also compute them).
    """

    def __init__(self, cfg: EdgeConfig, device: torch.device | str, fmt: str, pool: Executor) -> None:
        cfg.validate()
        self.cfg, self.device, self.fmt, self.pool = cfg, device, check_format(fmt), pool
        self.numpy = computes_with_numpy(cfg, device)
        if not self.numpy and isinstance(device, str):
            raise ValueError(f"EdgeBatch needs a torch device for {cfg}, got '{device}'")

    def __call__(
        self, images: list[np.ndarray], outs: list[Path], means: bool = False
    ) -> tuple[list[float], list[Future[None]]]:
        """Edge maps of ``images`` (each (H, W, C) float32 in [0, 1], one shape), written to ``outs``.

        Returns the maps' means (raw values, before PNG scaling; only with ``means``) and one future per file,
        whose ``result()`` re-raises the write's error. Raises when the batch as a whole fails (e.g. images too
        small for a ``valid`` filter).
        """
        if self.numpy:
            jobs = zip(images, outs, strict=True)
            futs = [self.pool.submit(_numpy_file, a, self.cfg.norm, self.fmt, o, means) for a, o in jobs]
            avg = [float("nan") if f.exception() is not None else f.result() for f in futs] if means else []
            return avg, futs  # type: ignore[return-value]
        import torch

        from gdvision.filters.edges import edge_map, to_unit_range

        batch = torch.stack([torch.from_numpy(a).permute(2, 0, 1) for a in images])  # one copy, (B, C, H, W)
        y = edge_map(batch.to(device=self.device, dtype=torch.float32), self.cfg)
        avg = y.float().mean(dim=(1, 2, 3)).tolist() if means else []
        if self.fmt != "npy":
            y = to_unit_range(y, self.cfg)
        if self.fmt == "png" and y.shape[1] in (1, 3):
            y_np = quantize8(y).numpy()  # (B, H, W, C) uint8: each file only filters and compresses
        else:
            y_np = y.float().cpu().numpy()
        return avg, [self.pool.submit(encode_result, y_np[k], self.fmt, o) for k, o in enumerate(outs)]


def _numpy_file(image: np.ndarray, norm: str, fmt: str, path: Path, mean: bool = False) -> float:
    """The NumPy route for one image (H, W, C): its Sobel magnitude written to ``path``; returns the map's mean
    (with ``mean``; NaN otherwise).

    The same values and files as the torch route (:func:`~gdvision.filters.edges.to_unit_range`, then
    :func:`encode_result`), up to the last-place difference of the square root that
    :mod:`gdvision.filters.sobel_np` describes.
    """
    y = sobel_magnitude_np(np.ascontiguousarray(image, dtype=np.float32), norm)
    avg = float(y.mean(dtype=np.float64)) if mean else float("nan")
    if fmt != "npy":
        y /= np.float32(SOBEL3_STEP_RESPONSE)
        np.clip(y, 0.0, 1.0, out=y)
    encode_result(y.transpose(2, 0, 1), fmt, path)
    return avg


def quantize8(y: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) values in [0, 1] -> (B, H, W, C) uint8 on the CPU, exactly as :func:`encode_png` quantises.

    NaN -> 0, +inf -> 255, -inf -> 0; otherwise ``clip(rint(v * 255), 0, 255)`` in float32 (round half to even).

    Example:
        >>> import torch
        >>> quantize8(torch.tensor([0.0, 0.5, 1.0, float("nan")]).view(1, 1, 1, 4)).flatten().tolist()
        [0, 128, 255, 0]
    """
    import torch

    # nan_to_num after the scaling: NaN -> 0 and +-inf -> 255 / 0, as nan_to_num(nan=0, posinf=1, neginf=0) before it
    f = torch.mul(y.float(), 255.0).round_().nan_to_num_(0.0, 255.0, 0.0).clamp_(0.0, 255.0).to(torch.uint8)
    if f.shape[1] == 1:
        return f.permute(0, 2, 3, 1)
    q = torch.empty((y.shape[0], y.shape[2], y.shape[3], y.shape[1]), dtype=torch.uint8)
    return q.permute(0, 3, 1, 2).copy_(f).permute(0, 2, 3, 1)  # (C, H, W) -> (H, W, C) in uint8: the cheapest copy


def _one_line(exc: BaseException) -> str:
    msg = str(exc) if isinstance(exc, GdvisionError) else f"{type(exc).__name__}: {exc}"
    return msg.splitlines()[0] if msg else type(exc).__name__


# ------------------------------------------------------------------------------------------- folder mode


@dataclass
class EdgeRunSummary:
    """Outcome of :func:`run_edges`. ``failures`` lists (input path, one-line reason)."""

    files: int = 0
    written: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    batches: int = 0

    @property
    def files_per_s(self) -> float:
        done = self.written + len(self.failures)
        return done / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "files": self.files,
            "written": self.written,
            "failed": len(self.failures),
            "failures": [{"path": p, "error": e} for p, e in self.failures],
            "batches": self.batches,
            "seconds": round(self.seconds, 4),
            "files_per_s": round(self.files_per_s, 2),
        }


_READ_AHEAD_BYTES = 128 << 20  # decoded images held ahead of the compute (at least 2 batches' worth of files)


class _ReadAhead:
    """Decode files in order in ``pool``, fed by a thread of its own, ahead of the consumer by up to
    ``_READ_AHEAD_BYTES`` of decoded images (at least ``least`` files).

    The feeder keeps submitting while the main thread imports torch (~1-3 s of a command's start), so the first
    files (about 170 RGB 256x256 images) are decoded on the other core by the time the first batch computes.
    Iterating yields ``(input, output, future of read_image(input))`` in order.
    """

    def __init__(self, pool: Executor, pairs: list[tuple[Path, Path]], least: int) -> None:
        self._pool, self._pairs, self._least = pool, pairs, max(1, least)
        self._futs: list[Future[LoadedImage] | None] = [None] * len(pairs)
        self._consumed, self._size, self._closed = 0, 0, False
        self._cv = threading.Condition()
        self._thread = threading.Thread(target=self._feed, name="gdvision-read-ahead", daemon=True)

    def __enter__(self) -> _ReadAhead:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join()

    def _may_submit(self, i: int) -> bool:
        ahead = i - self._consumed
        return ahead < self._least or (self._size > 0 and ahead * self._size < _READ_AHEAD_BYTES)

    def _learn_size(self, fut: Future[LoadedImage]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return
        with self._cv:
            self._size = max(self._size, fut.result().array.nbytes)
            self._cv.notify_all()

    def _feed(self) -> None:
        for i, (p, _) in enumerate(self._pairs):
            with self._cv:
                while not self._closed and not self._may_submit(i):
                    self._cv.wait()
                if self._closed:
                    return
                fut = self._futs[i] = self._pool.submit(read_image, p)
                self._cv.notify_all()
            fut.add_done_callback(self._learn_size)

    def __iter__(self) -> Iterator[tuple[Path, Path, Future[LoadedImage]]]:
        for i, (p, o) in enumerate(self._pairs):
            with self._cv:
                while self._futs[i] is None:
                    self._cv.wait()
                fut, self._futs[i] = self._futs[i], None
                self._consumed = i + 1
                self._cv.notify_all()
            yield p, o, fut  # type: ignore[misc]


def run_edges(
    plan: EdgePlan,
    cfg: EdgeConfig,
    device: torch.device | str,
    batch_size: int = 16,
    workers: int = 2,
    progress: Callable[[int, int, str], None] | None = None,
    threads: int = 0,
) -> EdgeRunSummary:
    """Compute the edge maps of a plan's files and write them (``gdvision edges FILES -o DIR``).

    Decoding starts first, in the worker threads, so that it overlaps the import of torch when ``device`` is
    a string (``auto``, ``cpu``, ``cuda``...: resolved once reading is under way). The default map on the CPU
    (:func:`computes_with_numpy`; ``auto`` counts when :func:`~gdvision.device.is_cpu_without_torch` says so) is
    computed with NumPy in the worker threads and torch is not imported at all.

    Args:
        plan: inputs and their claimed outputs, from :func:`plan_edges`.
        cfg: what to compute (:class:`~gdvision.filters.config.EdgeConfig`).
        device: where to compute (a torch device, or its name).
        batch_size: images of the same size computed together.
        workers: threads for decoding and encoding.
        progress: called as ``progress(done, total, info)`` after each file.
        threads: torch threads (0: torch's default), set once reading is under way. On the CPU with
            ``workers >= 2`` the batches compute with one torch thread (the files are the parallel unit). Unused
            on the NumPy route, whose parallel unit is the file (``workers`` threads).

    Returns:
        an :class:`EdgeRunSummary`; a file that cannot be read or written is a failure in it, not an exception.

    Raises:
        UsageError: bad options (nothing is written then).

    Example:
        >>> plan = plan_edges([Path("a.png")], Path("out"))  # doctest: +SKIP
        >>> run_edges(plan, EdgeConfig(), torch.device("cpu")).written  # doctest: +SKIP
        1
    """
    if batch_size < 1 or workers < 1:
        raise UsageError("--batch-size and --workers must be >= 1")
    cfg.validate()
    t0 = time.perf_counter()
    todo = list(plan.pairs)
    summary = EdgeRunSummary(files=len(todo))
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, len(todo), f"{done / max(time.perf_counter() - t0, 1e-9):.1f} files/s")

    def fail(p: Path, exc: BaseException) -> None:
        summary.failures.append((str(p), _one_line(exc)))
        tick()

    with (
        ThreadPoolExecutor(max_workers=workers) as pool,
        _ReadAhead(pool, todo, max(2 * batch_size, 2 * workers)) as ahead,
    ):
        if isinstance(device, str) and is_cpu_without_torch(device) and computes_with_numpy(cfg, "cpu"):
            device = "cpu"  # the default map on the CPU: NumPy in the worker threads, torch never imported
        else:
            device = _start_torch(device, threads)
        compute = EdgeBatch(cfg, device, plan.fmt, pool)
        if compute.numpy:
            keep_freed_memory()  # each file's arrays reuse the last one's memory instead of faulting in fresh pages
            _run_batches(ahead, compute, batch_size, summary, fail, tick)
        else:
            with _one_compute_thread(device, workers):  # type: ignore[arg-type]
                _run_batches(ahead, compute, batch_size, summary, fail, tick)
    summary.seconds = time.perf_counter() - t0
    return summary


def _start_torch(device: torch.device | str, threads: int) -> torch.device:
    """Import torch (the slow part of a command's start), apply ``threads`` and resolve ``device``."""
    import torch

    from gdvision.device import resolve_device

    if threads:
        torch.set_num_threads(threads)
    return device if isinstance(device, torch.device) else resolve_device(device)


def _run_batches(
    ahead: Iterable[tuple[Path, Path, Future[LoadedImage]]],
    compute: EdgeBatch,
    batch_size: int,
    summary: EdgeRunSummary,
    fail: Callable[[Path, BaseException], None],
    tick: Callable[[], None],
) -> None:
    """Group decoded images by shape, compute full groups as they fill (the rest at the end), collect the writes."""
    pending: list[tuple[Path, Future[None]]] = []

    def drain(block: bool) -> None:
        keep = []
        for p, fut in pending:
            if not (block or fut.done()):
                keep.append((p, fut))
                continue
            try:
                fut.result()
            except Exception as exc:  # noqa: BLE001 - reported per file
                fail(p, exc)
            else:
                summary.written += 1
                tick()
        pending[:] = keep

    def flush(group: list[tuple[Path, Path, np.ndarray]]) -> None:
        try:
            _, futures = compute([a for _, _, a in group], [o for _, o, _ in group])
        except (GdvisionError, ValueError, RuntimeError) as exc:  # the batch fails, the run goes on
            if isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower():
                raise
            for p, _, _ in group:
                fail(p, exc)
            return
        summary.batches += 1
        pending.extend((p, fut) for (p, _, _), fut in zip(group, futures, strict=True))
        drain(block=False)

    groups: dict[tuple[int, ...], list[tuple[Path, Path, np.ndarray]]] = {}
    for p, o, fut in ahead:
        try:
            arr = fut.result().array
        except Exception as exc:  # noqa: BLE001 - corrupt/unreadable file: report and go on
            fail(p, exc)
            continue
        groups.setdefault(arr.shape, []).append((p, o, arr))
        if len(groups[arr.shape]) >= batch_size:
            flush(groups.pop(arr.shape))
    for key in list(groups):
        flush(groups.pop(key))
    drain(block=True)


@contextmanager
def _one_compute_thread(device: torch.device, workers: int) -> Iterator[None]:
    """On the CPU with several workers, compute with one torch thread: the files are the parallel unit.

    The worker threads decode and encode (Pillow and zlib release the GIL) while the batch computes; torch's
    OpenMP threads would spin on the same cores (measured 3x slower with 2 OpenMP threads and 2 workers under load).
    """
    import torch

    before = torch.get_num_threads()
    if device.type != "cpu" or workers < 2 or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------------------- manifest mode


class EdgesJob:
    """``gdvision edges --manifest``: edge maps of images of equal shapes computed as one batch."""

    name = "edges"
    required = ("image",)
    optional: tuple[str, ...] = ()
    path_columns = ("image",)
    error_metric = None

    def __init__(self, cfg: Any, device: torch.device, fmt: str = "png", workers: int = 2) -> None:
        self.cfg, self.device, self.fmt = cfg, device, fmt
        self.pool = ThreadPoolExecutor(max_workers=workers)

    def item_id(self, fields: dict[str, str]) -> str:
        return Path(fields["image"]).stem

    def output_of(self, item_id: str, out_dir: Path) -> Path:
        return out_dir / f"{item_id}{suffix(self.fmt)}"

    def load(self, item: Item) -> np.ndarray:
        return read_image(item.path("image")).array

    def batch_key(self, item: Item, loaded: Any) -> Hashable:
        return tuple(loaded.shape)

    def solve(self, group: list[tuple[Item, Any]]) -> list[Outcome]:
        compute = EdgeBatch(self.cfg, self.device, self.fmt, self.pool)
        means, futures = compute([a for _, a in group], [it.out for it, _ in group], means=True)
        outcomes = []
        for (it, _), mean, fut in zip(group, means, futures, strict=True):
            try:
                fut.result()
            except (GdvisionError, OSError) as exc:
                outcomes.append(Outcome(it, error=str(exc)))
            else:
                outcomes.append(Outcome(it, {"outputs": {"edges": str(it.out)}, "metrics": {"mean": mean}}))
        return outcomes


__all__ = [
    "FORMATS",
    "EdgeBatch",
    "EdgeRunSummary",
    "EdgesJob",
    "check_format",
    "computes_with_numpy",
    "EdgePlan",
    "plan_edges",
    "quantize8",
    "encode_result",
    "output_paths",
    "run_edges",
]
