"""``gdvision depth``: dense depth of a reference view from N calibrated views."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .common import (
    DeviceOpt,
    JsonOpt,
    ManifestOpt,
    MaxMetricOpt,
    MinMetricOpt,
    OverwriteOpt,
    QuietOpt,
    ResumeOpt,
    SeedOpt,
    check_manifest_usage,
    check_output,
    check_positive,
    emit_json,
    handle_errors,
    progress_bar,
    run_manifest_command,
    say,
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
    manifest: ManifestOpt = None,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    max_error: Annotated[
        float | None, typer.Option(help="With --manifest and gt: exit 1 if the median AbsRel exceeds this.")
    ] = None,
    min_metric: MinMetricOpt = None,
    max_metric: MaxMetricOpt = None,
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

      gdvision depth --manifest scenes.csv -o out/ --max-error 0.05   (columns: views "ref;src1;...", cameras,
      optional gt, gt_kind, min_depth, max_depth, id; outputs in out/<id>/)
    """
    del views_flag
    check_manifest_usage(manifest, out_dir, [views, cameras, gt])
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
    from gdvision.depth.solver import DepthConfig

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
    if manifest is not None:
        from gdvision.tasks.depth import DepthJob

        run_manifest_command(lambda d: DepthJob(cfg, gray, gt_kind, str(d), seed), locals())
        return
    if not views or len(views) < 2:
        raise typer.BadParameter("give the reference image and at least one source image", param_hint="VIEWS")
    if cameras is None:
        raise typer.BadParameter("--cameras is required", param_hint="--cameras")
    if out_dir is None:
        raise typer.BadParameter("--out-dir is required", param_hint="--out-dir")
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out-dir '{out_dir}' exists and is not a folder")
    from gdvision.tasks.depth import OUTPUT_FILES

    inputs = [*views, cameras] + ([gt] if gt else [])
    for name in OUTPUT_FILES:
        check_output(out_dir / name, inputs)

    from gdvision.tasks.depth import run_depth_job

    show = not (quiet or json_out)
    with progress_bar(show, "depth") as update:

        def on_progress(p: Any) -> None:
            update(
                completed=p.iteration,
                total=p.max_iterations,
                description=f"level {p.num_levels - p.level}/{p.num_levels}",
                info=f"loss {p.loss:.4f}",
            )

        summary = run_depth_job(
            views, cameras, out_dir, cfg, gray, gt, gt_kind, device=device, seed=seed, progress=on_progress
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
