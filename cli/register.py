"""``gdvision register``: placeholder replaced below."""

from __future__ import annotations


def register() -> None:
    """Estimate the transform mapping image A onto image B."""
