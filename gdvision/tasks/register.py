"""``gdvision register`` as a task: manifest items of pairs solved in batches, one JSON result per pair."""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from typing import Any

from gdvision.runs.engine import Item, Outcome
from gdvision.tasks.pairs import PairJob


class RegisterJob(PairJob):
    """``gdvision register --manifest``: batched homography estimation of pairs of equal sizes and options."""

    name = "register"
    optional = ("gt", "model", "loss")
    metric_keys = ("corner_error_px", "iterations")

    def batch_key(self, item: Item, loaded: Any) -> Hashable:
        a, b, _ = loaded
        return (a.height, a.width, b.height, b.width, item.get("model"), item.get("loss"))

    def solve(self, group: list[tuple[Item, Any]]) -> list[Outcome]:
        from gdvision.register.solver import solve_loaded_pairs

        item0 = group[0][0]
        overrides = {k: item0.get(k) for k in ("model", "loss") if item0.get(k)}
        cfg = dataclasses.replace(self.cfg, **overrides)
        cfg.validate()
        return self.finish(solve_loaded_pairs([(it, *ld) for it, ld in group], cfg, self.device))


__all__ = ["RegisterJob"]
