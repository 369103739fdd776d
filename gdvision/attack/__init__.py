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

__getattr__, __dir__, _LAZY = lazy_exports(
    __name__,
    {
        "solver": ("AttackProgress", "AttackResult", "attack_pair"),
        "search": ("BudgetSearch", "search_budget"),
        "budget": ("apply_perturbation", "bounded_perturbation", "perturbation_stats", "quantize_within_budget"),
        "losses": ("attack_loss", "ratio_targeted_loss", "ratio_untargeted_loss", "targeted_loss", "untargeted_loss"),
        "evaluation": (
            "FAIL_ERROR_PX",
            "MAX_ERROR_PX",
            "MIN_INLIERS",
            "consistent_matches",
            "evaluate_attack",
            "evaluate_gdvision",
            "evaluate_opencv",
            "judge_members",
            "match_config_for",
            "match_configs_for",
            "match_counts",
            "ransac_failures",
            "success",
        ),
    },
)

__all__ = [*_config.__all__, *_LAZY]
