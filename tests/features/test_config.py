"""FeatureConfig / MatchConfig: defaults, validation errors that name the field, no torch needed to validate."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gdvision.errors import UsageError
from gdvision.features.config import MATCH_MODELS, FeatureConfig, MatchConfig


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"detector": "harris"}, "detector"),
        ({"max_features": -1}, "max_features"),
        ({"max_features": 2.5}, "max_features"),
        ({"contrast_threshold": 1.0}, "contrast_threshold"),
        ({"contrast_threshold": float("nan")}, "contrast_threshold"),
        ({"edge_threshold": 1.0}, "edge_threshold"),
        ({"sigma0": 0.1}, "sigma0"),
        ({"scales_per_octave": 0}, "scales_per_octave"),
        ({"patch_size": 100}, "patch_size"),
        ({"chunk": 0}, "chunk"),
        ({"max_orientations": 0}, "max_orientations"),
    ],
)
def test_feature_config_errors_name_the_field(kwargs, field):
    with pytest.raises(UsageError, match=rf"\b{field}\b"):
        FeatureConfig(**kwargs).validate()


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"matcher": "knn"}, "matcher"),
        ({"ratio": 0.0}, "ratio"),
        ({"ratio": 1.5}, "ratio"),
        ({"model": "affine"}, "model"),
        ({"ransac_threshold": -1.0}, "ransac_threshold"),
        ({"ransac_threshold": float("inf")}, "ransac_threshold"),
        ({"confidence": 1.0}, "confidence"),
        ({"max_iters": 0}, "max_iters"),
        ({"seed": 1.5}, "seed"),
        ({"refine": True, "model": "fundamental"}, "refine"),
        ({"features": FeatureConfig(detector="harris")}, "detector"),
    ],
)
def test_match_config_errors_name_the_field(kwargs, field):
    with pytest.raises(UsageError, match=rf"\b{field}\b"):
        MatchConfig(**kwargs).validate()


def test_defaults_are_valid_and_models_agree_with_ransac():
    from gdvision.geometry import MODELS

    MatchConfig().validate()
    MatchConfig(matcher="smnn", ratio=1.0, refine=True, features=FeatureConfig(detector="hessian")).validate()
    assert MATCH_MODELS == MODELS


def test_config_validation_does_not_import_torch():
    code = (
        "import sys\n"
        "from gdvision.features import MatchConfig\n"
        "from gdvision.errors import UsageError\n"
        "try:\n"
        "    MatchConfig(matcher='knn').validate()\n"
        "except UsageError:\n"
        "    print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
