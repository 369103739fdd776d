"""Settings of an attack: :class:`AttackConfig`, its defaults (per mode where they differ) and its validation.

The CLI (``gdvision attack``), the manifest task and ``bench/attack.py`` all build an :class:`AttackConfig` and
leave what they are not told to its defaults; :meth:`AttackConfig.resolved` fills the per-mode ones (the Adam step
``lr`` and the start ``init``). :meth:`AttackConfig.validate` raises :class:`~gdvision.errors.UsageError` naming
the field (``steps must be >= 1, got 0``); the CLI maps field names to its flags. This module does not import torch,
so a bad option value is reported before torch is loaded.

Example:
    >>> AttackConfig(mode="unmatch").resolved().lr, AttackConfig().resolved().init
    (0.003, 'texture')
    >>> AttackConfig(steps=0).validate()
    Traceback (most recent call last):
    ...
    gdvision.errors.UsageError: steps must be >= 1, got 0
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from gdvision._checks import check_choice, check_number
from gdvision.attack.targets import TARGETS, parse_targets, target_features
from gdvision.errors import UsageError
from gdvision.features.config import FeatureConfig

MODES = ("match", "unmatch")
PERTURB = ("a", "b", "both")
INITS = ("zero", "blend", "texture")
LOSSES = ("ratio", "paper")

# Per-mode defaults. match: the texture start plants shared structure, and a larger step moves it into place
# quickly; unmatch: start from the clean pair and take small steps (the true matches break one by one).
DEFAULT_LR = {"match": 0.01, "unmatch": 0.003}
DEFAULT_INIT = {"match": "texture", "unmatch": "zero"}


def default_attack_features() -> FeatureConfig:
    """The features of the ``hessian`` target (the Kornia paper's experiment): the top 2500 Hessian keypoints, SIFT
    descriptors, no contrast threshold, no doubled first octave (see :mod:`gdvision.attack.targets`).

    >>> default_attack_features().detector
    'hessian'
    """
    return target_features("hessian")


def _check_level_budget(value: float, name: str) -> None:
    """UsageError unless ``value`` is a whole number of 8-bit levels in [1/255, 1]."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not 1.0 / 255.0 - 1e-9 <= value <= 1.0 + 1e-9:
        raise UsageError(f"{name} must be in [1/255, 1] (8-bit levels, e.g. 16/255), got {value}")
    if abs(value * 255.0 - round(value * 255.0)) > 1e-6:
        raise UsageError(f"{name} must be a whole number of 8-bit levels (k/255), got {value * 255:.4g}/255")


@dataclass
class AttackConfig:
    """Settings of :func:`gdvision.attack.attack_pair` (see :mod:`gdvision.attack.solver` for the method).

    Attributes:
        mode: ``match`` (targeted: make A and B match under the target H) or ``unmatch`` (untargeted: break the
            true H).
        eps: L-inf budget in [0, 1] intensity units (default 8/255); at least one 8-bit level (1/255).
        steps: Adam iterations.
        lr: Adam step (intensity units, see :mod:`gdvision.attack.budget`); None = the mode's default
            (:data:`DEFAULT_LR`: 0.01 for ``match``, 0.003 for ``unmatch``).
        perturb: which image(s) to change: ``a``, ``b`` or ``both``.
        alpha: weight of the descriptor term; beta: weight of the pixel-change term (mean squared change).
        radius: ``match``: correspondence radius in pixels (distance to ``H(p)``; the paper loss adds scale).
        margin: margin of the descriptor hinges (descriptor distance units, descriptors have norm 1).
        target: the attacked pipeline(s) (:mod:`gdvision.attack.targets`): ``gdvision`` (``gdvision match`` with its
            defaults), ``hessian``, or a comma-separated ensemble (losses summed).
        features: an explicit detector/descriptor for a single target (replaces the target's own; None = the
            target's, see :meth:`members`).
        eps_auto: search the smallest budget (whole 8-bit levels up to ``eps_max``) that breaks the pair
            (``unmatch``) or reaches success (``match``): :func:`gdvision.attack.search.search_budget`; ``eps`` is
            then unused.
        eps_max: the largest budget ``eps_auto`` tries (16/255).
        stop_on_success: every ``stop_check_every`` steps, judge the best 8-bit pixels so far by the success rule
            under every attacked target (RANSAC seed 0, :func:`gdvision.attack.evaluation.judge_members`) and stop
            once they succeed (False: run every step, e.g. to gain a margin for transfer).
        stop_check_every: how often (steps) the stop check (``stop_on_success``, the budget search) looks.
        eval_every: count the ratio-test matches consistent with H (within ``ransac_threshold``) every this many
            steps for the progress report (0 = never; cheap, the features are already computed).
        ransac_threshold: RANSAC inlier threshold (px) of the evaluation.
        init: starting point: ``zero``, ``blend`` or ``texture`` (see :mod:`gdvision.attack.start`); None = the
            mode's default (:data:`DEFAULT_INIT`: ``texture`` for ``match``, ``zero`` for ``unmatch``).
        focus: ``paper`` loss, ``match``: weight the descriptor term by geometric proximity (False: the plain mean).
        loss: ``ratio`` (default: hinges on Lowe's ratio test, see :func:`gdvision.attack.losses.ratio_targeted_loss`
            and :func:`gdvision.attack.losses.ratio_untargeted_loss`) or ``paper`` (the Kornia paper's triplet
            loss, :func:`gdvision.attack.losses.targeted_loss`).
        kill_radius: ``unmatch``: a ratio match whose B point lies within this many px of ``H(p)`` still counts as
            a true match (it would pull RANSAC toward H), so the attack pushes all of them out.
        quantize: optimise the 8-bit pixels that will be saved (straight-through gradient), so every step's
            features are those of the output.
        keep_best: return the best step's images, by the white-box count (``match``: most ratio matches within
            ``ransac_threshold`` of H; ``unmatch``: fewest within ``kill_radius``), rather than the last step's.
        ransac_score: ``unmatch``: rank the steps first by how many of 3 seeded RANSAC runs (seeds 1-3, not the
            evaluation's 0) miss H (see :func:`gdvision.attack.evaluation.ransac_failures`; run once at most 20
            true matches are left).
        stop_inliers: ``match``: stop once that many ratio matches are H-consistent (0 = run every step).
            ``unmatch`` always stops once no ratio match is left within ``kill_radius`` of H.
        focus_count: ``ratio`` loss, ``match``: work on the pairs that pass already plus this many closest to
            passing (0 = every pair).
        phases: with ``keep_best``, the steps are split into this many Adam runs, each restarted from the best
            pixels so far with half the previous step size.

    Example:
        >>> AttackConfig(mode="unmatch", eps=4 / 255).validate()
    """

    mode: str = "match"
    eps: float = 8.0 / 255.0
    steps: int = 150
    lr: float | None = None
    perturb: str = "both"
    alpha: float = 1.0
    beta: float = 1.0
    radius: float = 4.0
    margin: float = 0.05
    target: str = "gdvision"
    features: FeatureConfig | None = None
    eps_auto: bool = False
    eps_max: float = 16.0 / 255.0
    stop_on_success: bool = True
    stop_check_every: int = 10
    eval_every: int = 10
    ransac_threshold: float = 3.0
    init: str | None = None
    focus: bool = True
    loss: str = "ratio"
    kill_radius: float = 10.0
    quantize: bool = True
    keep_best: bool = True
    stop_inliers: int = 0
    focus_count: int = 24
    phases: int = 3
    ransac_score: bool = True

    def resolved(self) -> AttackConfig:
        """A copy with the per-mode defaults filled in (``lr``, ``init``); validate first for a clear error.

        >>> AttackConfig(lr=0.05).resolved().lr
        0.05
        """
        lr = DEFAULT_LR.get(self.mode, DEFAULT_LR["match"]) if self.lr is None else self.lr
        init = DEFAULT_INIT.get(self.mode, DEFAULT_INIT["match"]) if self.init is None else self.init
        return replace(self, lr=lr, init=init)

    def members(self) -> list[tuple[str, FeatureConfig]]:
        """The attacked pipelines as ``(name, features)``: one per target, or ``("custom", features)``.

        >>> [n for n, _ in AttackConfig(target="gdvision,hessian").members()]
        ['gdvision', 'hessian']
        """
        names = parse_targets(self.target)
        if self.features is not None:
            if len(names) > 1:
                raise UsageError("features: an explicit FeatureConfig replaces a single target, not an ensemble")
            return [("custom", self.features)]
        return [(n, target_features(n)) for n in names]

    def validate(self) -> None:
        """UsageError naming the first field that cannot work."""
        check_choice(self.mode, "mode", MODES)
        parse_targets(self.target)
        _check_level_budget(self.eps_max, "eps_max")
        check_number(self.stop_check_every, "stop_check_every", low=1, integer=True)
        check_choice(self.perturb, "perturb", PERTURB)
        eps = self.eps
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or not 0 < eps <= 1:
            raise UsageError(f"eps must be in (0, 1] (intensity units, e.g. 0.0314 = 8/255), got {eps}")
        if eps < 1.0 / 255.0 - 1e-9:
            raise UsageError(f"eps {eps:.5g} is below one 8-bit level (1/255 = 0.00392): the output cannot change")
        check_number(self.steps, "steps", low=1, high=100_000, integer=True)
        if self.lr is not None:
            check_number(self.lr, "lr", low=0, low_open=True, high=1)
        for name in ("alpha", "beta", "margin"):
            check_number(getattr(self, name), name, low=0, high=1e6)
        check_number(self.radius, "radius", low=0, low_open=True, high=1000)
        check_choice(self.loss, "loss", LOSSES)
        check_number(self.kill_radius, "kill_radius", low=0, low_open=True, high=1000)
        check_number(self.phases, "phases", low=1, high=100, integer=True)
        check_number(self.focus_count, "focus_count", low=0, integer=True)
        check_number(self.stop_inliers, "stop_inliers", low=0, integer=True)
        if self.init is not None:
            check_choice(self.init, "init", INITS)
        check_number(self.eval_every, "eval_every", low=0, integer=True)
        check_number(self.ransac_threshold, "ransac_threshold", low=0, low_open=True, high=1000)
        for _, feats in self.members():
            feats.validate()


__all__ = [
    "TARGETS",
    "DEFAULT_INIT",
    "DEFAULT_LR",
    "INITS",
    "LOSSES",
    "MODES",
    "PERTURB",
    "AttackConfig",
    "default_attack_features",
]
