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

from gdvision._lazy import lazy_exports
from gdvision.register import config as _config
from gdvision.register.config import *  # noqa: F403 (the settings: every name in config.__all__)

__getattr__, __dir__, _LAZY = lazy_exports(
    __name__,
    {
        "solver": ("register_batch", "register_pair"),
        "verdict": ("judge", "measure", "texture", "Verdict"),
    },
)

__all__ = sorted([*_config.__all__, *_LAZY])
