"""Direct (photometric) image registration: the public API.

- :class:`RegisterConfig`, :class:`RegistrationResult`, ``MODELS``, ``LOSSES`` (:mod:`.config`, no torch import);
- :func:`register_batch`, :func:`register_pair` (:mod:`.solver`): the homography (or simpler motion) A -> B;
- :func:`judge`, :class:`Verdict`, :func:`texture` (:mod:`.verdict`): is a result an answer, without ground truth;
- motion models (:mod:`.motion`), the problem (:mod:`.problem`), the coarse start (:mod:`.search`).

Importing this package is cheap: torch is loaded when a solver name is first used.

Example:
    >>> from gdvision.register import RegisterConfig
    >>> RegisterConfig(model="similarity").validate().loss
    'ncc'
"""

from __future__ import annotations

import importlib
from typing import Any

from gdvision.register.config import LOSSES, MODELS, RegisterConfig, RegistrationResult

_LAZY = {
    "register_batch": "solver",
    "register_pair": "solver",
    "judge": "verdict",
    "measure": "verdict",
    "texture": "verdict",
    "Verdict": "verdict",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"gdvision.register.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'gdvision.register' has no attribute '{name}'")


__all__ = [
    "LOSSES",
    "MODELS",
    "RegisterConfig",
    "RegistrationResult",
    "Verdict",
    "judge",
    "measure",
    "register_batch",
    "register_pair",
    "texture",
]
