"""The smallest budget that fools the matcher (``--eps auto``): a pair's robustness score in 8-bit levels.

:func:`search_budget` attacks the pair at whole 8-bit levels ``k/255`` up to ``eps_max``: first a doubling ladder
(1, 2, 4, 8, ... levels, the last rung ``eps_max``) until an attack works, then a bisection between the highest
level that did not work and the lowest that did, until they are one level apart. The answer ``eps*`` is that lowest
working level: an attack at ``eps* - 1`` was run and did not work (the minimality is within one 8-bit level, for
this attack; a stronger attack could do with less).

"Works" is judged on the 8-bit pixels an attack returns (exactly what is saved), by the success rule of
:func:`gdvision.attack.evaluation.success` under every attacked target (RANSAC seed 0): ``unmatch`` = no RANSAC
model or a corner error above 20 px against the true H; ``match`` = at least 30 inliers within 5 px of the target.

Work is reused between budgets: each rung starts from the perturbation of the nearest rung already run (the
previous rung going up; the lowest working level going down, clipped into the smaller budget), and each attack
stops as soon as its best pixels so far work (checked every ``stop_check_every`` steps).

Example:
    >>> ladder_levels(16)
    [1, 2, 4, 8, 16]
    >>> ladder_levels(12)
    [1, 2, 4, 8, 12]
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from gdvision.attack.config import AttackConfig
from gdvision.attack.evaluation import judge_members
from gdvision.attack.solver import AttackResult, attack_pair


def ladder_levels(max_level: int) -> list[int]:
    """The doubling ladder 1, 2, 4, ... below ``max_level``, then ``max_level`` (levels of 1/255)."""
    out, k = [], 1
    while k < max_level:
        out.append(k)
        k *= 2
    return out + [max_level]


@dataclass
class BudgetSearch:
    """Outcome of :func:`search_budget`.

    Attributes:
        level: ``eps*`` in 8-bit levels (0: the clean pair is already broken / matched; None: not reached at
            ``eps_max``).
        result: the attack at ``eps*`` (None when ``level`` is 0 or None).
        below: the attack one level below ``eps*`` (None when ``eps*`` <= 1: the clean pair is the level below).
        last: the attack at ``eps_max`` when unbroken (the images saved then).
        rungs: one record per attack run, in order: ``level``, ``works``, ``steps``, ``seconds``, and each target's
            ``inliers`` / ``corner_error_px``.
        seconds: wall time of the whole search; steps: Adam steps over all rungs.
    """

    level: int | None
    result: AttackResult | None
    below: AttackResult | None
    last: AttackResult | None
    rungs: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0


def search_budget(
    a: torch.Tensor,
    b: torch.Tensor,
    H: torch.Tensor | None,
    config: AttackConfig,
    mask_a: torch.Tensor | None = None,
    mask_b: torch.Tensor | None = None,
    progress: Callable[[Any], None] | None = None,
    judge: Callable[[torch.Tensor, torch.Tensor], bool] | None = None,
) -> BudgetSearch:
    """Find ``eps*``, the smallest budget (8-bit levels up to ``config.eps_max``) at which the attack works.

    ``a``, ``b``: (1, C, H, W) 8-bit images in [0, 1]; ``H``: (3, 3) A -> B (the target for ``match``, None =
    identity; the true one for ``unmatch``). ``judge(adv_a, adv_b)``: whether 8-bit pixels work (default: the
    success rule under every attacked target, see the module docstring). ``progress`` receives each step's
    :class:`~gdvision.attack.solver.AttackProgress` of the rung running.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> a = torch.round(torch.nn.functional.avg_pool2d(torch.rand(1, 1, 48, 48, generator=g), 3, 1, 1) * 255) / 255
        >>> cfg = AttackConfig(mode="unmatch", eps_auto=True, eps_max=4 / 255, steps=2)
        >>> s = search_budget(a, a, torch.eye(3, dtype=torch.float64), cfg, judge=lambda xa, xb: bool((xa != a).any()))
        >>> s.level, [r["level"] for r in s.rungs]
        (1, [1])
    """
    cfg = config.resolved()
    cfg.validate()
    Hm = torch.eye(3, dtype=torch.float64) if H is None else torch.as_tensor(H, dtype=torch.float64)
    if judge is None:

        def judge(xa: torch.Tensor, xb: torch.Tensor) -> bool:
            return judge_members(xa, xb, Hm, cfg)[0]

    t0 = time.perf_counter()
    top = int(round(cfg.eps_max * 255.0))
    out = BudgetSearch(None, None, None, None)
    if judge(a, b):  # nothing to do: the clean pair already fools the target
        out.level, out.seconds = 0, time.perf_counter() - t0
        return out
    runs: dict[int, AttackResult] = {}
    works: dict[int, bool] = {}

    def run(level: int, start: AttackResult | None) -> bool:
        c = replace(cfg, eps=level / 255.0, eps_auto=False)
        warm = None if start is None else (start.delta_a, start.delta_b)
        r = attack_pair(a, b, H, c, mask_a, mask_b, progress, start=warm, stop_check=judge)
        ok = bool(judge(r.adv_a, r.adv_b))
        runs[level], works[level] = r, ok
        out.rungs.append({"level": level, "works": ok, "steps": r.iterations, "seconds": r.seconds})
        out.steps += r.iterations
        return ok

    lo, hi, prev = 0, None, None
    for level in ladder_levels(top):
        if run(level, prev):
            hi = level
            break
        lo, prev = level, runs[level]
    if hi is None:
        out.last = runs[top]
        out.seconds = time.perf_counter() - t0
        return out
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if run(mid, runs[hi]):
            hi = mid
        else:
            lo = mid
    out.level, out.result = hi, runs[hi]
    out.below = runs.get(lo) if lo > 0 else None
    out.seconds = time.perf_counter() - t0
    return out


__all__ = ["BudgetSearch", "ladder_levels", "search_budget"]
