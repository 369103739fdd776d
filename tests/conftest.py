"""Shared test fixtures: paths to bundled sample data, small synthetic images, and the devices to test on.

A test that takes a ``device`` argument runs once per available device: ``cpu``, plus ``cuda`` when
``torch.cuda.is_available()`` and ``mps`` when ``torch.backends.mps.is_available()`` (ids ``[cpu]``, ``[cuda]``,
``[mps]``, so ``-k cuda`` selects the GPU runs). ``GDVISION_TEST_DEVICES=cuda`` (comma-separated) restricts the list.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"


def pytest_configure(config: pytest.Config) -> None:
    """A private worker folder for this test session: a warm worker that the user (or another test session of the
    same user) runs is never asked to serve these tests' calls. Tests of the worker set their own folder."""
    import tempfile

    if "GDVISION_WORKER_DIR" not in os.environ:
        folder = Path(tempfile.mkdtemp(prefix="gdvision-test-worker-"))
        folder.chmod(0o700)
        os.environ["GDVISION_WORKER_DIR"] = str(folder)


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def natural_gray() -> np.ndarray:
    """A real 512x512 gray photo (camera.png, CC0) as float32 in [0, 1]."""
    import imageio.v3 as iio

    return iio.imread(SAMPLE / "natural" / "camera.png").astype(np.float32) / 255.0


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@cache
def available_devices() -> list[str]:
    """The devices that ``device``-taking tests run on (see the module docstring)."""
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    wanted = os.environ.get("GDVISION_TEST_DEVICES")
    if wanted:
        names = [w.strip() for w in wanted.split(",") if w.strip()]
        missing = [n for n in names if n not in found]
        if missing:
            raise pytest.UsageError(f"GDVISION_TEST_DEVICES names {missing}, not available here (found {found})")
        found = names
    return found


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise every test that takes ``device`` over the available devices (torch is imported only then)."""
    if "device" in metafunc.fixturenames:
        metafunc.parametrize("device", available_devices())


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small images: one torch thread is faster, and avoids OpenMP spin-waits when the machine is shared.

    Use per module with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
