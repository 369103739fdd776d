"""The attack's success rule at its thresholds, and the config's per-mode defaults and validation."""

from __future__ import annotations

import pytest

from gdvision.attack import (
    DEFAULT_INIT,
    DEFAULT_LR,
    FAIL_ERROR_PX,
    MAX_ERROR_PX,
    MIN_INLIERS,
    AttackConfig,
    success,
)
from gdvision.errors import UsageError


def test_thresholds_are_the_documented_ones() -> None:
    assert (MIN_INLIERS, MAX_ERROR_PX, FAIL_ERROR_PX) == (30, 5.0, 20.0)


@pytest.mark.parametrize(
    ("inliers", "corner_error", "expected"),
    [
        (29, 1.0, False),  # one inlier short
        (30, 1.0, True),  # exactly the minimum
        (30, 4.9, True),
        (30, 5.0, False),  # the corner error must be strictly below 5 px
        (30, 5.1, False),
        (500, 5.1, False),  # many folded "inliers" far from the target are no success
        (29, 4.9, False),
        (30, None, False),  # no model at all
    ],
)
def test_targeted_success_boundaries(inliers: int, corner_error: float | None, expected: bool) -> None:
    rec = {"inliers": inliers, "corner_error_px": corner_error}
    assert success(rec, "match") is expected


@pytest.mark.parametrize(
    ("corner_error", "inliers", "expected"),
    [
        (19.9, 100, False),  # RANSAC still recovers the true H (within 20 px)
        (20.0, 100, False),  # the error must be strictly above 20 px
        (20.1, 100, True),
        (20.1, 4, True),
        (None, 0, True),  # no RANSAC model: the match is broken
        (0.0, 4, False),
    ],
)
def test_untargeted_success_boundaries(corner_error: float | None, inliers: int, expected: bool) -> None:
    rec = {"inliers": inliers, "corner_error_px": corner_error}
    assert success(rec, "unmatch") is expected


def test_success_of_a_check_that_did_not_run() -> None:
    assert success(None, "match") is None and success(None, "unmatch") is None


def test_per_mode_defaults_come_from_the_config() -> None:
    """lr and init left unset take the mode's default; explicit values are kept."""
    m, u = AttackConfig(mode="match").resolved(), AttackConfig(mode="unmatch").resolved()
    assert (m.lr, m.init) == (DEFAULT_LR["match"], DEFAULT_INIT["match"]) == (0.01, "texture")
    assert (u.lr, u.init) == (DEFAULT_LR["unmatch"], DEFAULT_INIT["unmatch"]) == (0.003, "zero")
    assert AttackConfig(mode="unmatch", lr=0.02, init="blend").resolved().lr == 0.02
    assert AttackConfig(mode="unmatch", lr=0.02, init="blend").resolved().init == "blend"
    assert AttackConfig().lr is None  # resolved() returns a copy: the config itself keeps "unset"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("mode", "steal"),
        ("eps", 0.0),
        ("eps", float("nan")),
        ("eps", 0.5 / 255),
        ("steps", 0),
        ("lr", 0.0),
        ("lr", 2.0),
        ("perturb", "c"),
        ("init", "noise"),
        ("loss", "hinge"),
        ("stop_inliers", -1),
        ("alpha", -1.0),
        ("phases", 0),
    ],
)
def test_validation_names_the_field(field: str, value: object) -> None:
    with pytest.raises(UsageError, match=rf"^(unknown )?{field}\b"):
        AttackConfig(**{field: value}).validate()
