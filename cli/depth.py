"""``gdvision depth``: dense depth of a reference view from N calibrated views."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .common import (
    DeviceOpt,
    JsonOpt,
    QuietOpt,
    SeedOpt,
    check_output,
    check_positive,
    emit_json,
    handle_errors,
    progress_bar,
    say,
)

OUTPUT_FILES = (
    "depth.npy",
    "depth.pfm",
    "depth16.png",
    "depth_preview.png",
    "confidence.png",
    "points.ply",
    "summary.json",
)


@handle_errors
def depth(
    views: Annotated[
        list[Path] | None,
        typer.Argument(help="Images: the reference first, then 1 or more source views (PNG, JPEG, TIFF, .npy)."),
    ] = None,
    views_flag: Annotated[
        bool, typer.Option("--views", help="Optional marker before the images: `--views REF SRC1 [SRC2 ...]`.")
    ] = False,
    cameras: Annotated[
        Path | None,
        typer.Option(
            "--cameras",
            "-c",
            help="Calibration: gdvision JSON {name: {K, world_to_cam}}, a COLMAP text model folder "
            "(cameras.txt + images.txt) or a Middlebury calib.txt (views matched by order).",
        ),
    ] = None,
    out_dir: Annotated[Path | None, typer.Option("--out-dir", "-o", help="Folder for the outputs.")] = None,
    min_depth: Annotated[
        float | None, typer.Option(help="Nearest depth, in the poses' unit [default: from the baselines].")
    ] = None,
    max_depth: Annotated[float | None, typer.Option(help="Farthest depth [default: from the baselines].")] = None,
    alpha: Annotated[float, typer.Option(help="Weight of (1-SSIM)/2 vs |difference| in the photometric loss.")] = 0.85,
    smoothness: Annotated[float, typer.Option(help="Weight of the edge-aware smoothness of inverse depth.")] = 1.0,
    iters: Annotated[int, typer.Option(help="Adam iterations per pyramid level (coarser levels).")] = 100,
    finest_iters: Annotated[int, typer.Option(help="Adam iterations at the finest (full-size) level.")] = 30,
    levels: Annotated[
        int | None, typer.Option(help="Pyramid levels [default: halve while the shorter side stays >= 200 px].")
    ] = None,
    init: Annotated[
        str, typer.Option(help="Start: sweep (plane sweep at the coarsest level), random or constant.")
    ] = "sweep",
    planes: Annotated[
        int, typer.Option(help="Inverse-depth planes of the sweep; 0 = two per pixel of parallax (16..256).")
    ] = 0,
    gray: Annotated[
        bool, typer.Option("--gray/--color", help="Match luminance only (faster) or all channels.")
    ] = False,
    gt: Annotated[
        Path | None, typer.Option(help="Ground truth (.npy or .pfm, NaN/inf/0 = unknown): print error metrics.")
    ] = None,
    gt_kind: Annotated[
        str, typer.Option(help="depth, or disparity in pixels (rectified pair: left x matches right x - d).")
    ] = "depth",
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    seed: SeedOpt = None,
) -> None:
    """Estimate a dense depth map of the first image from calibrated views by coarse-to-fine gradient descent.

    Each source view is warped into the reference through the depth (p_i ~ K_i T_i T_ref^-1 d K_ref^-1 p);
    the loss is 0.85 (1-SSIM)/2 + 0.15 |difference| per view, minimum over the views that see a pixel,
    plus edge-aware smoothness of inverse depth. A plane sweep initialises the coarsest level; Adam refines.

    Writes to --out-dir: depth.npy (float32, NaN = unknown), depth.pfm, depth16.png (depth = value / scale,
    scale in summary.json, 0 = unknown), depth_preview.png (turbo-like, legend in depth units),
    confidence.png, points.ply (coloured, world frame) and summary.json.

    Examples:

      gdvision depth left.png right.png --cameras calib.txt --out-dir out/ --min-depth 2000 --max-depth 6000

      gdvision depth --views ref.jpg a.jpg b.jpg --cameras sparse/0/ --out-dir out/ --json

      gdvision depth left.png right.png -c calib.json -o out/ --gt disp.npy --gt-kind disparity
    """
    del views_flag
    if not views or len(views) < 2:
        raise typer.BadParameter("give the reference image and at least one source image", param_hint="VIEWS")
    if cameras is None:
        raise typer.BadParameter("--cameras is required", param_hint="--cameras")
    if out_dir is None:
        raise typer.BadParameter("--out-dir is required", param_hint="--out-dir")
    from gdvision.errors import UsageError

    for name, v in (("--min-depth", min_depth), ("--max-depth", max_depth)):
        check_positive(name, v)
    check_positive("--smoothness", smoothness, allow_zero=True)
    check_positive("--iters", iters, allow_zero=True)
    check_positive("--finest-iters", finest_iters, allow_zero=True)
    check_positive("--planes", planes, allow_zero=True)
    if not 0.0 <= alpha <= 1.0:
        raise UsageError(f"--alpha must be in [0, 1], got {alpha}")
    if max(iters, finest_iters) > 100000 or planes > 4096:
        raise UsageError("--iters must be <= 100000 and --planes <= 4096")
    if gt_kind not in ("depth", "disparity"):
        raise UsageError(f"--gt-kind must be depth or disparity, got '{gt_kind}'")
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out-dir '{out_dir}' exists and is not a folder")
    inputs = [*views, cameras] + ([gt] if gt else [])
    for name in OUTPUT_FILES:
        check_output(out_dir / name, inputs)

    show = not (quiet or json_out)
    with progress_bar(show, "depth") as update:

        def on_progress(p: Any) -> None:
            update(
                completed=p.iteration,
                total=p.max_iterations,
                description=f"level {p.num_levels - p.level}/{p.num_levels}",
                info=f"loss {p.loss:.4f}",
            )

        summary = _run(
            views=views,
            cameras=cameras,
            out_dir=out_dir,
            min_depth=min_depth,
            max_depth=max_depth,
            alpha=alpha,
            smoothness=smoothness,
            iters=iters,
            finest_iters=finest_iters,
            levels=levels,
            init=init,
            planes=planes,
            gray=gray,
            gt=gt,
            gt_kind=gt_kind,
            device=device,
            seed=seed,
            progress=on_progress,
        )
    if json_out:
        emit_json(summary)
    else:
        r = summary["depth_range_used"]
        say(
            quiet,
            f"depth of {views[0].name} from {len(views) - 1} view(s): {summary['known_fraction'] * 100:.1f}% known, "
            f"range {r[0]:.4g}..{r[1]:.4g}, {summary['seconds']:.1f} s -> {out_dir}/",
        )
        m = summary.get("metrics")
        if m:
            parts = [f"{k} {v:.4g}" for k, v in m.items() if isinstance(v, float)]
            say(quiet, "vs ground truth: " + ", ".join(parts))


def _run(
    views: list[Path],
    cameras: Path,
    out_dir: Path,
    min_depth: float | None,
    max_depth: float | None,
    alpha: float,
    smoothness: float,
    iters: int,
    finest_iters: int,
    levels: int | None,
    init: str,
    planes: int,
    gray: bool,
    gt: Path | None,
    gt_kind: str,
    device: str,
    seed: int | None,
    progress: Any,
) -> dict[str, Any]:
    """Load the views and cameras, solve, write every output; return the summary."""
    import numpy as np
    import torch

    from gdvision import depth_metrics as dm
    from gdvision import depth_output as do
    from gdvision.cameras import cameras_for_views, read_cameras
    from gdvision.depth import DepthConfig, View, estimate_depth, rectified_pair
    from gdvision.device import resolve_device, seed_everything
    from gdvision.errors import InputError
    from gdvision.io import read_image, to_gray, write_json, write_npy, write_png

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
    cfg = DepthConfig(
        min_depth=min_depth,
        max_depth=max_depth,
        alpha=alpha,
        smoothness=smoothness,
        iters=iters,
        finest_iters=finest_iters,
        levels=levels,
        init=init,
        sweep_planes=planes or None,
    )
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
    import numpy as np

    from gdvision.depth_output import read_pfm
    from gdvision.errors import InputError, UsageError

    if not path.exists():
        raise UsageError(f"file not found: '{path}'")
    if path.suffix.lower() == ".pfm":
        g = read_pfm(path)
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
