"""Every subcommand as a :class:`gdvision.runs.engine.Job`: its manifest columns, loading, batching, solving, outputs.

Manifest columns (CSV header or JSON Lines keys; ``id`` is optional everywhere):

==========  ==========================  ===========================================================  ============
command     required                    optional                                                     ``--max-error``
==========  ==========================  ===========================================================  ============
register    ``a``, ``b``                ``gt`` (JSON H, A -> B), ``model``, ``loss``                  corner_error_px
match       ``a``, ``b``                ``gt`` (JSON H, A -> B)                                       corner_error_px
edges       ``image``                   -                                                            -
depth       ``views`` (``;``-separated,  ``gt``, ``gt_kind``, ``min_depth``, ``max_depth``           abs_rel
            reference first), ``cameras``
attack      ``a``, ``b``                ``target_h`` / ``true_h`` (JSON H), ``mask``                 -
==========  ==========================  ===========================================================  ============

Outputs per item (``<id>`` defaults to ``<stemA>__<stemB>``, the image stem, or the reference view's stem):
register/match ``<out_dir>/<id>.json``; edges ``<out_dir>/<id>.<png|npy>``; depth and attack ``<out_dir>/<id>/``.
Items of one batch key are solved together on the device (register: equal sizes and options; edges: equal
shapes); the others one by one. Images are decoded in the engine's I/O threads, ahead of the compute.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gdvision.errors import GdvisionError, UsageError
from gdvision.io.images import LoadedImage, read_homography, read_image, write_json
from gdvision.runs.engine import Item, Outcome


def _split_result(record: dict[str, Any], outputs: dict[str, str], metric_keys: tuple[str, ...]) -> dict[str, Any]:
    """A solver's JSON record as the engine wants it: ``outputs``, ``metrics`` (the numeric ``metric_keys``), rest."""
    metrics = {k: record[k] for k in metric_keys if isinstance(record.get(k), (int, float))}
    return {"outputs": outputs, "metrics": metrics, **record}


def _pair_id(fields: dict[str, str]) -> str:
    return f"{Path(fields['a']).stem}__{Path(fields['b']).stem}"


class _PairJob:
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
        return _pair_id(fields)

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
                oc = Outcome(oc.item, _split_result(oc.result, {"json": str(oc.item.out)}, self.metric_keys))
            out.append(oc)
        return out


class RegisterJob(_PairJob):
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


class MatchJob(_PairJob):
    """``gdvision match --manifest``: features, matching and RANSAC, pair by pair."""

    name = "match"
    metric_keys = ("corner_error_px", "inliers", "matches", "keypoints_a", "keypoints_b")

    def solve(self, group: list[tuple[Item, Any]]) -> list[Outcome]:
        from gdvision.features.match import solve_match_pairs

        return self.finish(solve_match_pairs([(it, *ld) for it, ld in group], self.cfg, self.device))


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


class DepthJob:
    """``gdvision depth --manifest``: one depth map per item (reference + source views, cameras)."""

    name = "depth"
    required = ("views", "cameras")
    optional = ("gt", "gt_kind", "min_depth", "max_depth")
    path_columns = ("views", "cameras", "gt")
    error_metric = "abs_rel"

    def __init__(
        self,
        cfg: Any,
        gray: bool,
        gt_kind: str,
        device: str,
        seed: int | None,
        progress: Callable[[Any], None] | None = None,
    ) -> None:
        self.cfg, self.gray, self.gt_kind, self.device, self.seed, self.progress = (
            cfg,
            gray,
            gt_kind,
            device,
            seed,
            progress,
        )

    def item_id(self, fields: dict[str, str]) -> str:
        return Path(fields["views"].split(";")[0]).stem

    def output_of(self, item_id: str, out_dir: Path) -> Path:
        return out_dir / item_id

    def load(self, item: Item) -> None:
        views = item.fields["views"].split(";")
        if len(views) < 2:
            raise UsageError(f"item '{item.id}': 'views' needs the reference and at least one source image")
        return None

    def batch_key(self, item: Item, loaded: Any) -> Hashable | None:
        return None

    def solve(self, group: list[tuple[Item, Any]]) -> list[Outcome]:
        from gdvision.tasks.depth import run_depth_job

        out = []
        for item, _ in group:
            cfg = dataclasses.replace(
                self.cfg, **{k: _number(item, k) for k in ("min_depth", "max_depth") if item.get(k)}
            )
            gt = item.get("gt")
            summary = run_depth_job(
                [Path(v) for v in item.fields["views"].split(";")],
                item.path("cameras"),
                item.out,
                cfg,
                self.gray,
                Path(gt) if gt else None,
                item.get("gt_kind") or self.gt_kind,
                device=self.device,
                seed=self.seed,
                progress=self.progress,
            )
            metrics = {k: v for k, v in (summary.get("metrics") or {}).items() if isinstance(v, (int, float))}
            metrics["known_fraction"] = summary["known_fraction"]
            out.append(Outcome(item, {"outputs": summary["outputs"], "metrics": metrics, **summary}))
        return out


class AttackJob:
    """``gdvision attack --manifest``: one attack per pair; adversarial PNGs and report in ``<out_dir>/<id>/``."""

    name = "attack"
    required = ("a", "b")
    optional = ("target_h", "true_h", "mask")
    path_columns = ("a", "b", "target_h", "true_h", "mask")
    error_metric = None

    def __init__(self, cfg: Any, device: str, seed: int | None, opencv: bool = True, progress: Any = None) -> None:
        self.cfg, self.device, self.seed, self.opencv, self.progress = cfg, device, seed, opencv, progress

    def item_id(self, fields: dict[str, str]) -> str:
        return _pair_id(fields)

    def output_of(self, item_id: str, out_dir: Path) -> Path:
        return out_dir / item_id

    def load(self, item: Item) -> None:
        for col in self.path_columns:
            if item.get(col) and not item.path(col).exists():
                raise UsageError(f"file not found: '{item.path(col)}'")

    def batch_key(self, item: Item, loaded: Any) -> Hashable | None:
        return None

    def solve(self, group: list[tuple[Item, Any]]) -> list[Outcome]:
        from gdvision.tasks.attack import attack_metrics, run_attack_job

        out = []
        for item, _ in group:
            opt = {k: item.path(k) for k in ("target_h", "true_h", "mask") if item.get(k)}
            report = run_attack_job(
                item.path("a"),
                item.path("b"),
                item.out,
                self.cfg,
                **opt,
                device=self.device,
                seed=self.seed,
                opencv=self.opencv,
                progress=self.progress,
            )
            out.append(Outcome(item, {"outputs": report["files"], "metrics": attack_metrics(report), **report}))
        return out


def _number(item: Item, column: str) -> float:
    try:
        return float(item.fields[column])
    except ValueError:
        raise UsageError(f"item '{item.id}': '{column}' must be a number, got '{item.fields[column]}'") from None


__all__ = ["AttackJob", "DepthJob", "EdgesJob", "MatchJob", "RegisterJob"]
