"""Adversarial perturbations that fool feature matching: the public API of the ``attack`` solver.

Tensors in, tensors out: no file is read or written here (:mod:`gdvision.tasks.attack` does that, and
:mod:`gdvision.viz` draws the perturbation and match pictures).

- :class:`AttackConfig` (:mod:`~gdvision.attack.config`): the settings, their per-mode defaults and validation
  (no torch import).
- :func:`attack_pair` (:mod:`~gdvision.attack.solver`): optimise the pixels of a pair -> :class:`AttackResult`.
- :mod:`~gdvision.attack.budget`: the L-inf budget, masks and 8-bit rounding; :mod:`~gdvision.attack.losses`: the
  losses; :mod:`~gdvision.attack.start`: the starting points.
- :mod:`~gdvision.attack.evaluation`: the success rule (:func:`success`), the white-box and OpenCV checks
  (:func:`evaluate_attack`).

The solver names are loaded on first use, so ``from gdvision.attack import AttackConfig`` does not import torch.

Example:
    >>> from gdvision.attack import AttackConfig
    >>> AttackConfig(mode="unmatch").resolved().init
    'zero'
"""

from __future__ import annotations

from gdvision._lazy import lazy_exports
from gdvision.attack import config as _config
from gdvision.attack.config import *  # noqa: F403 (the settings: every name in config.__all__)

_LAZY = {
    "AttackProgress": "solver",
    "AttackResult": "solver",
    "attack_pair": "solver",
    "apply_perturbation": "budget",
    "bounded_perturbation": "budget",
    "perturbation_stats": "budget",
    "quantize_within_budget": "budget",
    "attack_loss": "losses",
    "ratio_targeted_loss": "losses",
    "ratio_untargeted_loss": "losses",
    "targeted_loss": "losses",
    "untargeted_loss": "losses",
    "FAIL_ERROR_PX": "evaluation",
    "MAX_ERROR_PX": "evaluation",
    "MIN_INLIERS": "evaluation",
    "consistent_matches": "evaluation",
    "evaluate_attack": "evaluation",
    "evaluate_gdvision": "evaluation",
    "evaluate_opencv": "evaluation",
    "match_config_for": "evaluation",
    "match_counts": "evaluation",
    "ransac_failures": "evaluation",
    "success": "evaluation",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
__all__ = [*_config.__all__, *_LAZY]
