"""Shared test fixtures: paths to bundled sample data and small synthetic images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"


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
