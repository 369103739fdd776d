"""Edge maps of many image files: grouping by size, batched device compute, overlapped decode/encode.

:func:`edge_map` turns a (B, C, H, W) batch in [0, 1] into the requested map (raw values, image units);
:func:`to_unit_range` maps it to [0, 1] for PNG output; :func:`run_edges` processes a list of files:

- files whose output already exists are skipped (unless ``overwrite``) before they are even decoded;
- a small thread pool decodes files ahead of the compute and encodes/writes results behind it, so the
  device (or the CPU's intra-op threads) rarely waits for I/O;
- decoded images are grouped by (H, W, C) and sent to the device in batches of ``batch_size``;
- a file that cannot be decoded (or written) is reported and skipped; the others still get their output;
- output names mirror input names: ``OUT_DIR/<path relative to the inputs' common folder>`` with the
  extension ``.png`` or ``.npy``; every write is atomic.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gdvision.errors import GdvisionError, UsageError
from gdvision.filters.canny import canny
from gdvision.filters.separable import deriv_kernel1d, gradient, gradient_magnitude, laplacian, orientation
from gdvision.io.images import atomic_write_bytes as _atomic_write
from gdvision.io.images import encode_png, read_image, write_npy
from gdvision.runs.prefetch import prefetch

OPS = ("sobel", "scharr", "laplacian", "canny")
WHATS = ("magnitude", "dx", "dy", "orientation")
FORMATS = ("png", "png16", "npy")
_PNG_LEVEL = 1  # zlib level of written PNGs: cv2.imwrite's default; 3x faster than 6 for ~10% more bytes


@dataclass
class EdgeConfig:
    """What to compute. ``what`` applies to sobel/scharr; thresholds and ``sigma`` to canny.

    Attributes:
        op: 'sobel', 'scharr', 'laplacian' or 'canny'.
        what: 'magnitude', 'dx', 'dy' or 'orientation' (radians in [0, 2*pi), 0 = +x, pi/2 = +y i.e. down).
        ksize: Sobel aperture 1/3/5/7 (canny 3/5/7), Laplacian 1/3/5/7; ignored by scharr.
        border: 'reflect101', 'replicate', 'constant' or 'valid' (canny always uses replicate).
        norm: magnitude norm 'l2' or 'l1' (canny: L2gradient when 'l2').
        low, high: canny hysteresis thresholds in 8-bit units (OpenCV's).
        sigma: canny Gaussian pre-smoothing in pixels, or None.
    """

    op: str = "sobel"
    what: str = "magnitude"
    ksize: int = 3
    border: str = "reflect101"
    norm: str = "l2"
    low: float = 50.0
    high: float = 150.0
    sigma: float | None = None

    def validate(self) -> None:
        """Raise :class:`UsageError` for an invalid combination."""
        if self.op not in OPS:
            raise UsageError(f"--op must be one of {', '.join(OPS)}, got '{self.op}'")
        if self.what not in WHATS:
            raise UsageError(f"--what must be one of {', '.join(WHATS)}, got '{self.what}'")
        if self.norm not in ("l1", "l2"):
            raise UsageError(f"--norm must be l1 or l2, got '{self.norm}'")
        from gdvision.filters.separable import BORDERS

        if self.border not in BORDERS:
            raise UsageError(f"--border must be one of {', '.join(BORDERS)}, got '{self.border}'")
        allowed = {"sobel": (1, 3, 5, 7), "scharr": (1, 3, 5, 7), "laplacian": (1, 3, 5, 7), "canny": (3, 5, 7)}
        if self.ksize not in allowed[self.op]:
            raise UsageError(f"--ksize for {self.op} must be one of {allowed[self.op]}, got {self.ksize}")
        if self.op == "canny":
            for name, v in (("--low", self.low), ("--high", self.high)):
                if not math.isfinite(v) or v < 0:
                    raise UsageError(f"{name} must be a finite number >= 0, got {v}")
            if self.sigma is not None and (not math.isfinite(self.sigma) or self.sigma <= 0 or self.sigma > 50):
                raise UsageError(f"--sigma must be in (0, 50], got {self.sigma}")


def edge_map(x: torch.Tensor, cfg: EdgeConfig) -> torch.Tensor:
    """The edge map of a (B, C, H, W) batch in [0, 1], in image units.

    Returns (B, C, H', W') for sobel/scharr/laplacian (H' = H unless ``border='valid'``) and (B, 1, H, W)
    of 0/1 for canny. Example:
        >>> edge_map(torch.rand(2, 3, 32, 32), EdgeConfig(op="scharr", what="dx")).shape
        torch.Size([2, 3, 32, 32])
    """
    if cfg.op == "canny":
        return canny(x, cfg.low, cfg.high, cfg.ksize, cfg.norm == "l2", cfg.sigma)
    if cfg.op == "laplacian":
        return laplacian(x, cfg.ksize, cfg.border)
    if cfg.what == "magnitude":
        return gradient_magnitude(x, cfg.op, cfg.ksize, cfg.border, cfg.norm)
    gx, gy = gradient(x, cfg.op, cfg.ksize, cfg.border)
    if cfg.what == "dx":
        return gx
    if cfg.what == "dy":
        return gy
    return orientation(gx, gy)


def unit_step_response(cfg: EdgeConfig) -> float:
    """The largest response of the chosen filter to a unit step edge (used to scale PNG output).

    Example:
        >>> unit_step_response(EdgeConfig(op="sobel", ksize=3))
        4.0
    """
    if cfg.op == "laplacian":
        if cfg.ksize == 1:
            return 4.0
        if cfg.ksize == 3:
            return 8.0
        d2, s = deriv_kernel1d(2, cfg.ksize), deriv_kernel1d(0, cfg.ksize)
        return 2.0 * sum(v for v in d2 if v > 0) * sum(s)
    size = -1 if cfg.op == "scharr" else cfg.ksize
    d, s = deriv_kernel1d(1, size), deriv_kernel1d(0, size)
    return sum(v for v in d if v > 0) * sum(s)


def to_unit_range(y: torch.Tensor, cfg: EdgeConfig) -> torch.Tensor:
    """Map an :func:`edge_map` result to [0, 1] for image output.

    magnitude: ``y / s`` (s = :func:`unit_step_response`, so a unit step reads 1), clipped;
    dx, dy, laplacian: ``0.5 + 0.5 * y / s`` (0.5 = no change), clipped; orientation: ``angle / (2*pi)``;
    canny: unchanged (0 or 1).
    """
    if cfg.op == "canny":
        return y
    if cfg.op != "laplacian" and cfg.what == "orientation":
        return y / (2.0 * math.pi)
    s = unit_step_response(cfg)
    if cfg.op != "laplacian" and cfg.what == "magnitude":
        return (y / s).clamp(0.0, 1.0)
    return (0.5 + 0.5 * y / s).clamp(0.0, 1.0)


def output_paths(paths: list[Path], out_dir: Path, fmt: str) -> list[Path]:
    """Output path per input: the path relative to the inputs' common folder, under ``out_dir``.

    Example:
        >>> [str(p) for p in output_paths([Path("a/x.jpg"), Path("a/b/y.png")], Path("out"), "png")]
        ['out/x.png', 'out/b/y.png']
    """
    ext = ".npy" if fmt == "npy" else ".png"
    if not paths:
        return []
    parents = [os.path.abspath(p.parent) for p in paths]
    root = os.path.commonpath(parents)
    outs = [out_dir / Path(os.path.relpath(os.path.abspath(p), root)).with_suffix(ext) for p in paths]
    seen: dict[Path, Path] = {}
    for p, o in zip(paths, outs, strict=True):
        if o in seen:
            raise UsageError(f"inputs '{seen[o]}' and '{p}' would both be written to '{o}'")
        seen[o] = p
    resolved_inputs = {os.path.abspath(p) for p in paths}
    for o in outs:
        if os.path.abspath(o) in resolved_inputs:
            raise UsageError(f"output '{o}' would overwrite an input: choose another --out-dir or --format")
    return outs


@dataclass
class EdgeRunSummary:
    """Outcome of :func:`run_edges`. ``failures`` lists (input path, one-line reason)."""

    files: int = 0
    written: int = 0
    skipped: int = 0
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
            "skipped": self.skipped,
            "failed": len(self.failures),
            "failures": [{"path": p, "error": e} for p, e in self.failures],
            "batches": self.batches,
            "seconds": round(self.seconds, 4),
            "files_per_s": round(self.files_per_s, 2),
        }


def encode_result(arr: np.ndarray, fmt: str, path: Path) -> None:
    """Write one (C, H, W) float32 result (already in [0, 1] for PNG) atomically, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "npy":
        write_npy(path, arr[0] if arr.shape[0] == 1 else np.ascontiguousarray(arr.transpose(1, 2, 0)))
        return
    if arr.shape[0] not in (1, 3):
        raise UsageError(f"cannot write a {arr.shape[0]}-channel PNG for '{path.name}': use --format npy")
    _atomic_write(path, encode_png(arr, 16 if fmt == "png16" else 8, compress_level=_PNG_LEVEL))


def run_edges(
    paths: list[Path],
    out_dir: Path,
    cfg: EdgeConfig,
    device: torch.device,
    fmt: str = "png",
    batch_size: int = 16,
    workers: int = 2,
    overwrite: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
) -> EdgeRunSummary:
    """Compute edge maps of image files and write them under ``out_dir``.

    Args:
        paths: input image files (see :func:`gdvision.io.images.list_images`).
        out_dir: output folder (created); see :func:`output_paths` for the names.
        cfg: what to compute (:class:`EdgeConfig`).
        device: where to compute.
        fmt: 'png' (8-bit, scaled by :func:`to_unit_range`), 'png16', or 'npy' (raw float32 values).
        batch_size: images of the same size computed together.
        workers: threads for decoding and encoding.
        overwrite: recompute files whose output exists.
        progress: called as ``progress(done, total, info)`` after each file.

    Returns:
        an :class:`EdgeRunSummary`; failures do not raise.

    Example:
        >>> run_edges([Path("a.png")], Path("out"), EdgeConfig(), torch.device("cpu"))  # doctest: +SKIP
    """
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    if batch_size < 1 or workers < 1:
        raise UsageError("--batch-size and --workers must be >= 1")
    cfg.validate()
    t0 = time.perf_counter()
    outs = output_paths(paths, out_dir, fmt)
    summary = EdgeRunSummary(files=len(paths))
    todo = [(p, o) for p, o in zip(paths, outs, strict=True) if overwrite or not o.exists()]
    summary.skipped = len(paths) - len(todo)
    total = len(todo)
    done = 0

    def tick(n: int = 1) -> None:
        nonlocal done
        done += n
        if progress is not None:
            rate = done / max(time.perf_counter() - t0, 1e-9)
            progress(done, total, f"{rate:.1f} files/s")

    def fail(p: Path, exc: BaseException) -> None:
        msg = str(exc) if isinstance(exc, GdvisionError) else f"{type(exc).__name__}: {exc}"
        summary.failures.append((str(p), msg.splitlines()[0] if msg else type(exc).__name__))
        tick()

    def write(arr: np.ndarray, o: Path) -> None:
        encode_result(arr, fmt, o)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending_writes: list[tuple[Path, Future[None]]] = []

        def drain_writes(block: bool) -> None:
            keep = []
            for p, fut in pending_writes:
                if block or fut.done():
                    try:
                        fut.result()
                        summary.written += 1
                        tick()
                    except Exception as exc:  # noqa: BLE001 - reported per file
                        fail(p, exc)
                else:
                    keep.append((p, fut))
            pending_writes[:] = keep

        def flush(group: list[tuple[Path, Path, np.ndarray]]) -> None:
            batch = torch.from_numpy(np.stack([a for _, _, a in group])).permute(0, 3, 1, 2)
            y = edge_map(batch.to(device=device, dtype=torch.float32), cfg)
            if fmt != "npy":
                y = to_unit_range(y, cfg)
            y_np = y.float().cpu().numpy()
            summary.batches += 1
            for i, (p, o, _) in enumerate(group):
                pending_writes.append((p, pool.submit(write, y_np[i], o)))
            drain_writes(block=False)

        groups: dict[tuple[int, ...], list[tuple[Path, Path, np.ndarray]]] = {}
        ahead = max(2 * batch_size, 2 * workers)
        for (p, o), fut in prefetch(pool, lambda po: read_image(po[0]), todo, ahead):
            try:
                arr = fut.result().array
            except Exception as exc:  # noqa: BLE001 - corrupt/unreadable file: report and go on
                fail(p, exc)
                continue
            key = arr.shape
            groups.setdefault(key, []).append((p, o, arr))
            if len(groups[key]) >= batch_size:
                _safe_flush(flush, groups.pop(key), fail)
        for key in list(groups):
            _safe_flush(flush, groups.pop(key), fail)
        drain_writes(block=True)
    summary.seconds = time.perf_counter() - t0
    return summary


def _safe_flush(
    flush: Callable[[list[tuple[Path, Path, np.ndarray]]], None],
    group: list[tuple[Path, Path, np.ndarray]],
    fail: Callable[[Path, BaseException], None],
) -> None:
    """Run one batch; if the batch as a whole fails (e.g. image too small for 'valid'), report each file."""
    try:
        flush(group)
    except (GdvisionError, ValueError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower():
            raise
        for p, _, _ in group:
            fail(p, exc)


__all__ = [
    "EdgeConfig",
    "EdgeRunSummary",
    "edge_map",
    "output_paths",
    "run_edges",
    "to_unit_range",
    "unit_step_response",
]
