"""Device selection and seeding.

``resolve_device("auto")`` picks CUDA when available, else MPS, else CPU. An explicit device that is not
present (``cuda`` without a GPU, ``cuda:3`` on a one-GPU machine, ``mps`` off Apple silicon) raises a
:class:`~gdvision.errors.UsageError` with a one-line message instead of failing later inside torch.
``parse_device`` checks the syntax alone, without importing torch (for usage errors that must come fast).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from gdvision.errors import UsageError

if TYPE_CHECKING:
    import torch

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda)(?::(\d+))?$")


def parse_device(spec: str) -> tuple[str, int | None]:
    """Check the syntax of ``auto|cpu|cuda|cuda:N|mps`` without importing torch: ``(kind, index or None)``.

    Whether the device exists is :func:`resolve_device`'s question (it needs torch); a string that names no
    device at all is a :class:`~gdvision.errors.UsageError` here, so that a command can refuse it in milliseconds.

    Example:
        >>> parse_device("cuda:1"), parse_device(" CPU ")
        (('cuda', 1), ('cpu', None))
        >>> parse_device("tpu")
        Traceback (most recent call last):
        ...
        gdvision.errors.UsageError: unknown device 'tpu': use auto, cpu, cuda, cuda:N or mps
    """
    m = _DEVICE_RE.match(spec.strip().lower())
    if not m or (m.group(2) is not None and m.group(1) != "cuda"):
        raise UsageError(f"unknown device '{spec}': use auto, cpu, cuda, cuda:N or mps")
    return m.group(1), None if m.group(2) is None else int(m.group(2))


def resolve_device(spec: str = "auto") -> torch.device:
    """Turn ``auto|cpu|cuda|cuda:N|mps`` into a :class:`torch.device` that exists on this machine."""
    kind, index = parse_device(spec)
    import torch

    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise UsageError("device 'mps' is not available on this machine")
        return torch.device("mps")
    if not torch.cuda.is_available():
        raise UsageError(f"device '{spec}' is not available: no CUDA GPU found (use --device cpu)")
    index = index or 0
    if index >= torch.cuda.device_count():
        raise UsageError(f"device '{spec}' is not available: {torch.cuda.device_count()} CUDA GPU(s) found")
    return torch.device("cuda", index)


def is_cpu_without_torch(spec: str) -> bool:
    """Whether ``spec`` (``auto|cpu|cuda|cuda:N|mps``) resolves to the CPU, judged without importing torch.

    True for ``cpu``, and for ``auto`` where :func:`resolve_device` could pick no accelerator: torch is a CPU-only
    build (its ``torch/version.py`` names no CUDA or ROCm version), or the machine shows no GPU device node
    (``/dev/nvidiactl``, ``/dev/dxg`` under WSL, ``/dev/kfd`` for ROCm) or hides them all
    (``CUDA_VISIBLE_DEVICES`` empty or ``-1``). False whenever unsure (macOS, where MPS may be present; no torch
    found; an unreadable build file) and once torch is imported, so that the caller asks torch, as before. Lets a
    command that can compute on the CPU without torch skip importing it (about 1 s).

    Example:
        >>> is_cpu_without_torch("cpu"), is_cpu_without_torch("cuda")
        (True, False)
    """
    import os
    import sys

    kind, _ = parse_device(spec)
    if kind != "auto":
        return kind == "cpu"
    if "torch" in sys.modules:
        return False
    return no_accelerator(_torch_build(), sys.platform, os.environ, os.path.exists)


def no_accelerator(
    build: dict[str, bool] | None,
    platform: str,
    environ: Mapping[str, str],
    exists: Callable[[str], bool],
) -> bool:
    """The rule of :func:`is_cpu_without_torch` for ``auto``: True only where no accelerator can be found.

    ``build``: what :func:`_torch_build` read (None: unknown); ``platform``: ``sys.platform``; ``environ``: the
    environment; ``exists``: ``os.path.exists``.

    Example:
        >>> no_accelerator({"cuda": True, "hip": False}, "linux", {}, lambda p: False)
        True
        >>> no_accelerator({"cuda": True, "hip": False}, "linux", {}, lambda p: p == "/dev/nvidiactl")
        False
    """
    if build is None or platform == "darwin":
        return False
    if not any(build.values()):
        return True
    if not platform.startswith("linux"):
        return False
    cuda_hidden = environ.get("CUDA_VISIBLE_DEVICES", "x").strip() in ("", "-1")
    nodes = ("/dev/nvidiactl", "/dev/dxg") if build.get("cuda") and not cuda_hidden else ()
    nodes += ("/dev/kfd",) if build.get("hip") else ()
    return not any(exists(n) for n in nodes)


def _torch_build() -> dict[str, bool] | None:
    """``{'cuda': ..., 'hip': ...}``: whether the installed torch was built for them, read from ``torch/version.py``
    without importing torch; None when torch or the file is not found or says neither clearly."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("torch")
        text = (Path(spec.submodule_search_locations[0]) / "version.py").read_text()  # type: ignore[union-attr,index]
    except (ImportError, AttributeError, TypeError, IndexError, OSError, ValueError):
        return None
    found = {}
    for name in ("cuda", "hip"):
        m = re.search(rf"^{name}\s*(?::[^=\n]*)?=\s*(.+?)\s*$", text, re.MULTILINE)
        if m is None:
            return None
        found[name] = m.group(1) != "None"
    return found


def seed_everything(seed: int | None) -> None:
    """Seed Python, NumPy and torch RNGs (all devices) for reproducible runs; ``None`` does nothing."""
    if seed is None:
        return
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels on ``device`` (for honest timings)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


_MALLOC_TUNED = False


def keep_freed_memory() -> None:
    """Let glibc keep freed blocks of up to 64 MiB for reuse instead of returning them to the system (Linux only).

    Solvers that allocate and free the same large CPU tensors call after call (scale-space octaves, distance
    matrices) otherwise get each one freshly ``mmap``-ed and pay page faults that zero it again (``gdvision
    match``: a third of the time per pair). Process-wide, set once; a no-op elsewhere.

    Example:
        >>> keep_freed_memory()  # idempotent
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD: blocks up to 64 MiB come from the heap and are reused
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD: keep up to 256 MiB of free heap instead of trimming it
    except (OSError, AttributeError):
        pass
