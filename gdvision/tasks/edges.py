"""``gdvision edges`` as a task: edge maps of images of equal shapes computed as one batch."""

from __future__ import annotations

from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gdvision.errors import GdvisionError
from gdvision.io.images import read_image
from gdvision.runs.engine import Item, Outcome


class EdgesJob:
    """``gdvision edges --manifest``: edge maps of images of equal shapes computed as one batch."""

    name = "edges"
    required = ("image",)
    optional: tuple[str, ...] = ()
    path_columns = ("image",)
    error_metric = None

    def __init__(self, cfg: Any, device: torch.device, fmt: str = "png", workers: int = 2) -> None:
        self.cfg, self.device, self.fmt = cfg, device, fmt
        self.pool = ThreadPoolExecutor(max_workers=workers)

    def item_id(self, fields: dict[str, str]) -> str:
        return Path(fields["image"]).stem

    def output_of(self, item_id: str, out_dir: Path) -> Path:
        return out_dir / f"{item_id}.{'npy' if self.fmt == 'npy' else 'png'}"

    def load(self, item: Item) -> np.ndarray:
        return read_image(item.path("image")).array

    def batch_key(self, item: Item, loaded: Any) -> Hashable:
        return tuple(loaded.shape)

    def solve(self, group: list[tuple[Item, Any]]) -> list[Outcome]:
        from gdvision.filters.edges import edge_map, encode_result, to_unit_range

        batch = torch.from_numpy(np.stack([a for _, a in group])).permute(0, 3, 1, 2)
        y = edge_map(batch.to(device=self.device, dtype=torch.float32), self.cfg)
        means = y.float().mean(dim=(1, 2, 3)).tolist()
        if self.fmt != "npy":
            y = to_unit_range(y, self.cfg)
        y_np = y.float().cpu().numpy()

        def write(k: int) -> str | None:
            try:
                encode_result(y_np[k], self.fmt, group[k][0].out)
                return None
            except (GdvisionError, OSError) as exc:
                return str(exc)

        errors = list(self.pool.map(write, range(len(group))))
        return [
            Outcome(it, error=err)
            if err
            else Outcome(it, {"outputs": {"edges": str(it.out)}, "metrics": {"mean": means[k]}})
            for k, ((it, _), err) in enumerate(zip(group, errors, strict=True))
        ]


__all__ = ["EdgesJob"]
