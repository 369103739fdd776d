"""What the register and match tasks share: columns ``a``, ``b``, ``gt``; id ``<stemA>__<stemB>``; a JSON result."""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gdvision.io.images import LoadedImage, read_homography, read_image, write_json
from gdvision.tasks.protocol import Item, Outcome


def split_result(record: dict[str, Any], outputs: dict[str, str], metric_keys: tuple[str, ...]) -> dict[str, Any]:
    """A solver's JSON record as the engine wants it: ``outputs``, ``metrics`` (the numeric ``metric_keys``), rest."""
    metrics = {k: record[k] for k in metric_keys if isinstance(record.get(k), (int, float))}
    return {"outputs": outputs, "metrics": metrics, **record}


def pair_id(fields: dict[str, str]) -> str:
    return f"{Path(fields['a']).stem}__{Path(fields['b']).stem}"


class PairJob:
    """What register and match share: columns ``a``, ``b``, ``gt``; id ``<stemA>__<stemB>``; a JSON result per pair."""

    name = "pair"
    required = ("a", "b")
    optional: tuple[str, ...] = ("gt",)
    path_columns = ("a", "b", "gt")
    error_metric = "corner_error_px"
    metric_keys: tuple[str, ...] = ("corner_error_px",)

    def __init__(self, cfg: Any, device: torch.device) -> None:
        self.cfg, self.device = cfg, device

    def item_id(self, fields: dict[str, str]) -> str:
        return pair_id(fields)

    def output_of(self, item_id: str, out_dir: Path) -> Path:
        return out_dir / f"{item_id}.json"

    def load(self, item: Item) -> tuple[LoadedImage, LoadedImage, np.ndarray | None]:
        gt = item.get("gt")
        return read_image(item.path("a")), read_image(item.path("b")), (read_homography(gt) if gt else None)

    def batch_key(self, item: Item, loaded: Any) -> Hashable | None:
        return None

    def finish(self, outcomes: list[Outcome]) -> list[Outcome]:
        """Write each result to its item's JSON file and shape it for the log."""
        out = []
        for oc in outcomes:
            if oc.result is not None:
                write_json(oc.item.out, oc.result)
                oc = Outcome(oc.item, split_result(oc.result, {"json": str(oc.item.out)}, self.metric_keys))
            out.append(oc)
        return out


__all__ = ["PairJob", "pair_id", "split_result"]
