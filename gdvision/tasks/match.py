"""``gdvision match`` as a task: features, matching and RANSAC per pair, one JSON result per pair."""

from __future__ import annotations

from typing import Any

from gdvision.runs.engine import Item, Outcome
from gdvision.tasks.pairs import PairJob


class MatchJob(PairJob):
    """``gdvision match --manifest``: features, matching and RANSAC, pair by pair."""

    name = "match"
    metric_keys = ("corner_error_px", "inliers", "matches", "keypoints_a", "keypoints_b")

    def solve(self, group: list[tuple[Item, Any]]) -> list[Outcome]:
        from gdvision.features.match import solve_match_pairs

        return self.finish(solve_match_pairs([(it, *ld) for it, ld in group], self.cfg, self.device))


__all__ = ["MatchJob"]
