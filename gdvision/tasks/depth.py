"""Run the depth solver on files: read views and cameras, solve, write every output (``gdvision depth``, manifests).

Outputs in ``out_dir``: depth.npy (float32, NaN = unknown), depth.pfm, depth16.png (depth = value / scale,
0 = unknown), depth_preview.png, confidence.png, points.ply (world frame) and summary.json.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import gdvision.depth.metrics as dm
import gdvision.io.depth_files as do
from gdvision.depth.solver import DepthConfig, View, estimate_depth, rectified_pair
from gdvision.device import resolve_device, seed_everything
from gdvision.errors import InputError, UsageError
from gdvision.io.cameras import cameras_for_views, read_cameras
from gdvision.io.images import read_image, to_gray, write_json, write_npy, write_png
from gdvision.runs.engine import Item, Outcome

OUTPUT_FILES = (
    "depth.npy",
    "depth.pfm",
    "depth16.png",
    "depth_preview.png",
    "confidence.png",
    "points.ply",
    "summary.json",
)


def run_depth_job(
    views: list[Path],
    cameras: Path,
    out_dir: Path,
    cfg: DepthConfig,
    gray: bool = True,
    gt: Path | None = None,
    gt_kind: str = "depth",
    device: str = "auto",
    seed: int | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Load the views and cameras, solve, write every output into ``out_dir``; return the summary (JSON-able).

    ``views``: reference first, then the source views; ``cameras``: a calibration file or folder
    (:func:`gdvision.io.cameras.read_cameras`); ``gt``: optional ground truth (.npy/.pfm) of kind ``gt_kind``
    ('depth' or 'disparity' in pixels for a rectified pair); ``cfg``: the solver's settings; ``gray``: match
    luminance only. Depth is in the poses' unit; NaN = unknown.
    """

    dev = resolve_device(device)
    seed_everything(seed if seed is not None else 0)
    cam_set = read_cameras(cameras)
    images = [read_image(v) for v in views]
    chans = {im.channels for im in images}
    if len(chans) != 1:
        raise InputError(f"views mix channel counts {sorted(chans)}: give all gray or all colour images")
    cams = cameras_for_views(cam_set, list(views), [(im.height, im.width) for im in images])
    vlist = []
    for im, cam, path in zip(images, cams, views, strict=True):
        t = im.tensor()
        t = t.clamp(0, 1)
        if gray:
            t = to_gray(t)
        vlist.append(View(t, torch.from_numpy(cam.K), torch.from_numpy(cam.world_to_cam), im.mask_tensor(), path.name))
    res = estimate_depth(vlist[0], vlist[1:], cfg, progress=progress, device=dev)
    depth = res.depth.numpy()
    out_dir.mkdir(parents=True, exist_ok=True)
    write_npy(out_dir / "depth.npy", depth.astype(np.float32))
    do.write_pfm(out_dir / "depth.pfm", depth)
    scale = do.depth_png16_scale(depth)
    do.write_depth_png16(out_dir / "depth16.png", depth, scale)
    do.write_depth_preview(out_dir / "depth_preview.png", depth)
    write_png(out_dir / "confidence.png", res.confidence.numpy())
    pts, col = do.depth_to_points(depth, cams[0].K, cams[0].world_to_cam, images[0].array)
    do.write_ply(out_dir / "points.ply", pts, col)
    known = np.isfinite(depth)
    summary: dict[str, Any] = {
        "reference": str(views[0]),
        "sources": [str(v) for v in views[1:]],
        "cameras": str(cameras),
        "camera_format": cam_set.kind,
        "size_wh": [int(depth.shape[1]), int(depth.shape[0])],
        "depth_range_used": [res.min_depth, res.max_depth],
        "depth_stats": {
            "min": float(np.nanmin(depth)) if known.any() else None,
            "median": float(np.nanmedian(depth)) if known.any() else None,
            "max": float(np.nanmax(depth)) if known.any() else None,
        },
        "known_fraction": float(known.mean()),
        "mean_confidence": float(res.confidence.mean()),
        "png16_scale": scale,
        "png16_note": "depth = value / png16_scale; 0 = unknown",
        "levels": res.levels,
        "seconds": res.seconds,
        "device": str(dev),
        "outputs": {name.split(".")[0]: str(out_dir / name) for name in OUTPUT_FILES},
    }
    if gt is not None:
        g = _read_gt(gt, depth.shape)
        rect = rectified_pair(vlist[0], vlist[1]) if len(vlist) == 2 else None
        if gt_kind == "disparity":
            if rect is None:
                raise InputError(f"--gt-kind disparity needs a rectified pair of views; '{cameras}' is not one")
            g_depth = dm.disparity_to_depth(g, *rect)
            g_disp = g
        else:
            g_depth, g_disp = g, (dm.depth_to_disparity(g, *rect) if rect else None)
        metrics = dm.depth_metrics(depth, g_depth)
        if rect is not None and g_disp is not None:
            d_disp = dm.depth_to_disparity(depth, *rect)
            metrics.update(dm.disparity_metrics(d_disp, np.where(np.isfinite(g_depth), g_disp, np.nan)))
        summary["metrics"] = metrics
        summary["gt"] = {"path": str(gt), "kind": gt_kind}
    write_json(out_dir / "summary.json", summary)
    return summary


def _read_gt(path: Path, shape: tuple[int, ...]) -> Any:
    if not path.exists():
        raise UsageError(f"file not found: '{path}'")
    if path.suffix.lower() == ".pfm":
        g = do.read_pfm(path)
    elif path.suffix.lower() == ".npy":
        try:
            g = np.load(path, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"cannot read ground truth '{path}': {exc}") from None
    else:
        raise UsageError(f"ground truth '{path}' must be .npy or .pfm")
    g = np.squeeze(np.asarray(g, dtype=np.float64))
    if g.shape != tuple(shape):
        raise InputError(f"ground truth '{path}' has shape {g.shape}, the reference image is {tuple(shape)}")
    return np.where(np.isfinite(g) & (g > 0), g, np.nan)


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


def _number(item: Item, column: str) -> float:
    try:
        return float(item.fields[column])
    except ValueError:
        raise UsageError(f"item '{item.id}': '{column}' must be a number, got '{item.fields[column]}'") from None
