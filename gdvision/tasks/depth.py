"""``gdvision depth`` on files: read views, cameras and ground truth, solve, write every output, record.

Single-item mode (:func:`run_depth_files`) and manifest mode (:class:`DepthJob`) both go through :func:`run_depth`.
Every output file is claimed through the run's :class:`~gdvision.tasks.outputs.OutputPolicy` before the solve.

Outputs in the item's folder: depth.npy (float32, NaN = unknown), depth.pfm, depth16.png (depth = value / scale,
0 = unknown), depth_preview.png, confidence.png, points.ply (world frame) and summary.json.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import gdvision.depth.metrics as dm
import gdvision.io.depth_files as df
from gdvision.depth import DepthConfig, View, estimate_depth, rectified_pair, world_points
from gdvision.device import resolve_device, seed_everything
from gdvision.errors import InputError, UsageError
from gdvision.io.cameras import CameraSet, cameras_for_views, read_cameras
from gdvision.io.images import LoadedImage, read_image, to_gray, write_json, write_npy, write_png
from gdvision.tasks.depth_range import resolve_depth_range
from gdvision.tasks.outputs import OutputPolicy
from gdvision.tasks.protocol import Item, Outcome
from gdvision.viz import confidence_picture, depth_preview

# summary key -> file name in the item's folder
OUTPUTS = {
    "depth": "depth.npy",
    "depth_pfm": "depth.pfm",
    "depth16": "depth16.png",
    "depth_preview": "depth_preview.png",
    "confidence": "confidence.png",
    "points": "points.ply",
    "summary": "summary.json",
}
OUTPUT_FILES = tuple(OUTPUTS.values())
GT_KINDS = ("depth", "disparity")

Claim = Callable[[Path], Path]


def input_files(views: Sequence[Path], cameras: Path, gt: Path | None = None) -> list[Path]:
    """Every input file of one depth item: the views, the camera file (or the files of a camera folder), gt.

    >>> [p.name for p in input_files([Path("a.png"), Path("b.png")], Path("calib.txt"), Path("gt.pfm"))]
    ['a.png', 'b.png', 'calib.txt', 'gt.pfm']
    """
    cams = sorted(p for p in cameras.iterdir() if p.is_file()) if cameras.is_dir() else [cameras]
    return [*views, *cams, *([gt] if gt is not None else [])]


def check_item_usage(views: Sequence[Path], cameras: Path | None, gt_kind: str) -> None:
    """UsageError for an item that cannot be run: fewer than two views, no cameras, an unknown gt kind.

    >>> check_item_usage([Path("a.png")], Path("c.json"), "depth")
    Traceback (most recent call last):
    ...
    gdvision.errors.UsageError: depth needs the reference image and at least one source image ...)
    """
    if len(views) < 2:
        raise UsageError("depth needs the reference image and at least one source image (VIEWS: REF SRC1 [SRC2 ...])")
    if cameras is None:
        raise UsageError("depth needs --cameras (a calibration file or a COLMAP text folder)")
    if gt_kind not in GT_KINDS:
        raise UsageError(f"unknown gt_kind '{gt_kind}': use one of {', '.join(GT_KINDS)}")


def run_depth_files(
    views: Sequence[Path],
    cameras: Path,
    out_dir: Path,
    cfg: DepthConfig,
    overwrite: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Single-item mode: the output policy of ``out_dir`` (inputs protected, existing outputs refused unless
    ``overwrite``), then :func:`run_depth` with the same ``options``."""
    gt = options.get("gt")
    policy = OutputPolicy(out_dir, input_files(views, cameras, gt), overwrite=overwrite)
    policy.check_out_dir()
    return run_depth(views, cameras, out_dir, cfg, claim=policy.claim, **options)


def run_depth(
    views: Sequence[Path],
    cameras: Path,
    out_dir: Path,
    cfg: DepthConfig,
    claim: Claim,
    gray: bool = False,
    gt: Path | None = None,
    gt_kind: str = "depth",
    device: str = "auto",
    seed: int | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Claim the outputs, load the views, cameras and gt, solve, write every output into ``out_dir``.

    ``views``: reference first, then the source views; ``cameras``: a calibration file or folder
    (:func:`gdvision.io.cameras.read_cameras`); ``gt``: optional ground truth (.npy/.pfm) of kind ``gt_kind``
    ('depth' or 'disparity' in pixels for a rectified pair); ``cfg``: the solver's settings; ``gray``: match
    luminance only; ``claim``: the output policy's claim (every output is claimed before anything is read).
    Returns the summary (JSON-able). Depth is in the poses' unit; NaN = unknown.
    """
    views = [Path(v) for v in views]
    check_item_usage(views, cameras, gt_kind)
    cfg.validate()
    paths = {key: claim(out_dir / name) for key, name in OUTPUTS.items()}
    dev = resolve_device(device)
    seed_everything(seed if seed is not None else 0)
    cam_set = read_cameras(cameras)
    images = [read_image(v) for v in views]
    chans = {im.channels for im in images}
    if len(chans) != 1:
        raise InputError(f"views mix channel counts {sorted(chans)}: give all gray or all colour images")
    cams = cameras_for_views(cam_set, views, [(im.height, im.width) for im in images])
    vlist = [
        _view(im, cam.K, cam.world_to_cam, path.name, gray) for im, cam, path in zip(images, cams, views, strict=True)
    ]
    truth = _ground_truth(gt, gt_kind, vlist, cameras) if gt is not None else None
    cfg, depth_range = resolve_depth_range(vlist[0], vlist[1:], cfg)  # missing bounds: from feature matches
    res = estimate_depth(vlist[0], vlist[1:], cfg, progress=progress, device=dev)
    depth = res.depth.numpy()
    out_dir.mkdir(parents=True, exist_ok=True)
    write_npy(paths["depth"], depth.astype(np.float32))
    df.write_pfm(paths["depth_pfm"], depth)
    scale = df.depth_png16_scale(depth)
    df.write_depth_png16(paths["depth16"], depth, scale)
    write_png(paths["depth_preview"], depth_preview(depth), bits=8)
    write_png(paths["confidence"], confidence_picture(res.confidence))
    pts, idx = world_points(res.depth, vlist[0].K, vlist[0].world_to_cam)
    arr = images[0].array.reshape(-1, images[0].channels)[idx.numpy()].astype(np.float64)
    df.write_ply(paths["points"], pts.numpy(), arr[:, :3] if arr.shape[1] >= 3 else np.repeat(arr[:, :1], 3, 1))
    summary = _summary(views, cameras, cam_set, res, depth, scale, str(dev), out_dir)
    summary["depth_range"] = depth_range
    summary["quality"] = cfg.quality
    if depth_range.get("seconds") is not None:  # the range from feature matches is a stage of the solve too
        summary["stage_seconds"] = {"depth range": depth_range["seconds"], **summary["stage_seconds"]}
    if truth is not None:
        summary["metrics"] = _metrics(depth, *truth)
        summary["gt"] = {"path": str(gt), "kind": gt_kind}
    write_json(paths["summary"], summary)
    return summary


def _view(im: LoadedImage, K: np.ndarray, world_to_cam: np.ndarray, name: str, gray: bool) -> View:
    t = im.tensor().clamp(0, 1)
    if gray:
        t = to_gray(t)
    return View(t, torch.from_numpy(K), torch.from_numpy(world_to_cam), im.mask_tensor(), name)


def _summary(
    views: list[Path], cameras: Path, cam_set: CameraSet, res: Any, depth: np.ndarray, scale: float, dev: str, out: Path
) -> dict[str, Any]:
    known = np.isfinite(depth)
    return {
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
        "stage_seconds": res.stages,
        "device": dev,
        "outputs": {key: str(out / name) for key, name in OUTPUTS.items()},
    }


def _ground_truth(
    gt: Path, gt_kind: str, vlist: list[View], cameras: Path
) -> tuple[np.ndarray, np.ndarray | None, tuple[float, float, float] | None]:
    """(gt depth, gt disparity or None, rectified-pair geometry or None), checked before the solve."""
    g = read_ground_truth(gt, tuple(vlist[0].image.shape[-2:]))
    rect = rectified_pair(vlist[0], vlist[1]) if len(vlist) == 2 else None
    if gt_kind == "disparity":
        if rect is None:
            raise InputError(f"--gt-kind disparity needs a rectified pair of views; '{cameras}' is not one")
        return dm.disparity_to_depth(g, *rect), g, rect
    return g, (dm.depth_to_disparity(g, *rect) if rect else None), rect


def _metrics(
    depth: np.ndarray, g_depth: np.ndarray, g_disp: np.ndarray | None, rect: tuple[float, float, float] | None
) -> dict[str, float]:
    metrics = dm.depth_metrics(depth, g_depth)
    if rect is not None and g_disp is not None:
        d_disp = dm.depth_to_disparity(depth, *rect)
        metrics.update(dm.disparity_metrics(d_disp, np.where(np.isfinite(g_depth), g_disp, np.nan)))
    return metrics


def read_ground_truth(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """Ground truth (H, W) float64 from .npy or .pfm, NaN where unknown (NaN, inf, <= 0).

    UsageError for a missing file or another format; InputError for an unreadable file, a shape other than
    ``shape`` (the reference image's), or no known pixel at all.
    """
    if not path.is_file():
        raise UsageError(f"file not found: '{path}'")
    if path.suffix.lower() == ".pfm":
        g = df.read_pfm(path)
    elif path.suffix.lower() == ".npy":
        try:
            g = np.load(path, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"cannot read ground truth '{path}': {exc}") from None
    else:
        raise UsageError(f"ground truth '{path}' must be .npy or .pfm")
    try:
        g = np.squeeze(np.asarray(g, dtype=np.float64))
    except (TypeError, ValueError):
        raise InputError(f"ground truth '{path}' is not a numeric array") from None
    if g.shape != tuple(shape):
        raise InputError(f"ground truth '{path}' has shape {g.shape}, the reference image is {tuple(shape)}")
    known = np.isfinite(g) & (g > 0)
    if not known.any():
        raise InputError(f"ground truth '{path}' has no known pixel (all NaN, infinite or <= 0)")
    return np.where(known, g, np.nan)


class DepthJob:
    """``gdvision depth --manifest``: one depth map per item (reference + source views, cameras)."""

    name = "depth"
    required = ("views", "cameras")
    optional = ("gt", "gt_kind", "min_depth", "max_depth")
    path_columns = ("views", "cameras", "gt")
    error_metric = "abs_rel"

    def __init__(
        self,
        cfg: DepthConfig,
        gray: bool,
        gt_kind: str,
        device: str,
        seed: int | None,
        progress: Callable[[Any], None] | None = None,
    ) -> None:
        self.cfg, self.gray, self.gt_kind, self.device, self.seed = cfg, gray, gt_kind, device, seed
        self.progress = progress

    def item_id(self, fields: dict[str, str]) -> str:
        return Path(fields["views"].split(";")[0]).stem

    def output_of(self, item_id: str, out_dir: Path) -> Path:
        return out_dir / item_id

    def load(self, item: Item) -> None:
        views = [Path(v) for v in item.fields["views"].split(";") if v]
        try:
            check_item_usage(views, item.path("cameras"), item.get("gt_kind") or self.gt_kind)
        except UsageError as exc:
            raise UsageError(f"item '{item.id}': {exc}") from None
        if item.policy is not None and item.path("cameras").is_dir():  # the files of a COLMAP folder are inputs too
            item.policy.add_inputs(input_files([], item.path("cameras")))
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
            summary = run_depth(
                [Path(v) for v in item.fields["views"].split(";") if v],
                item.path("cameras"),
                item.out,
                cfg,
                claim=item.claim,
                gray=self.gray,
                gt=Path(gt) if gt else None,
                gt_kind=item.get("gt_kind") or self.gt_kind,
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


__all__ = [
    "GT_KINDS",
    "OUTPUTS",
    "OUTPUT_FILES",
    "DepthJob",
    "check_item_usage",
    "input_files",
    "read_ground_truth",
    "run_depth",
    "run_depth_files",
]
