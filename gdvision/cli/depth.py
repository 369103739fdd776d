"""``gdvision depth``: dense depth of a reference view from N calibrated views."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from gdvision.errors import UsageError

from . import common as opts
from .common import emit_json, handle_errors, progress_bar, say

# DepthConfig field (and option) names -> the flags that set them
_FLAGS = {
    "min_depth": "--min-depth",
    "max_depth": "--max-depth",
    "alpha": "--alpha",
    "smoothness": "--smoothness",
    "iters": "--iters",
    "finest_iters": "--finest-iters",
    "levels": "--levels",
    "init": "--init",
    "sweep_planes": "--planes",
    "quality": "--quality",
}


@handle_errors
@opts.manifest_options()
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
        float | None,
        typer.Option(help="Nearest depth, in the poses' unit [default: from feature matches between the views]."),
    ] = None,
    max_depth: Annotated[
        float | None, typer.Option(help="Farthest depth [default: from feature matches between the views].")
    ] = None,
    alpha: Annotated[float, typer.Option(help="Weight of (1-SSIM)/2 vs |difference| in the photometric loss.")] = 0.85,
    smoothness: Annotated[float, typer.Option(help="Weight of the edge-aware smoothness of inverse depth.")] = 1.0,
    quality: Annotated[
        str,
        typer.Option(
            help="Speed/quality preset: fast, default (the best quality at interactive speed) or best "
            "(a wider band and Adam refinement at full size; several times slower)."
        ),
    ] = "default",
    iters: Annotated[
        int | None, typer.Option(help="Adam iterations per coarser level (only with --init random/constant).")
    ] = None,
    finest_iters: Annotated[
        int | None,
        typer.Option(help="Adam iterations at full size after the sweep [default: from --quality: 0, best 20]."),
    ] = None,
    levels: Annotated[
        int | None,
        typer.Option(
            help="Pyramid levels [default: down to the finest level with at most 100 000 pixels, where the "
            "full-range sweep runs; with --init random/constant: halve while the shorter side stays >= 200 px]."
        ),
    ] = None,
    init: Annotated[
        str,
        typer.Option(help="Start: sweep (coarse-to-fine plane sweep), random or constant (then Adam on every level)."),
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
    overwrite: opts.OverwriteOpt = False,
    max_error: Annotated[
        float | None, typer.Option(help="With --manifest and gt: exit 1 if the median AbsRel exceeds this.")
    ] = None,
    device: opts.DeviceOpt = "auto",
    threads: opts.ThreadsOpt = 0,
    json_out: opts.JsonOpt = False,
    quiet: opts.QuietOpt = False,
    seed: opts.SeedOpt = None,
    **batch: Any,
) -> None:
    """Estimate a dense depth map of the first image from calibrated views by coarse-to-fine gradient descent.

    Each source view is warped into the reference through the depth (p_i ~ K_i T_i T_ref^-1 d K_ref^-1 p).
    A plane sweep over the whole depth range at a coarse level (SSIM matching cost, minimum over the views
    that see a pixel, semi-global aggregation), then at every finer level a narrow band of depths per pixel;
    with --quality best, Adam refines the photometric loss at full size. Occluded pixels take the background.
    Stages and their progress go to stderr; the seconds of every stage go to summary.json.

    Writes to --out-dir: depth.npy (float32, NaN = unknown), depth.pfm, depth16.png (depth = value / scale,
    scale in summary.json, 0 = unknown), depth_preview.png (turbo-like, legend in depth units),
    confidence.png, points.ply (coloured, world frame) and summary.json. Existing outputs are refused unless
    --overwrite; inputs (views, cameras, --gt) are never replaced.

    Examples:

      gdvision depth left.png right.png --cameras calib.txt --out-dir out/ --min-depth 2000 --max-depth 6000

      gdvision depth --views ref.jpg a.jpg b.jpg --cameras sparse/0/ --out-dir out/ --json

      gdvision depth left.png right.png -c calib.json -o out/ --gt disp.npy --gt-kind disparity

      gdvision depth --manifest scenes.csv -o out/ --max-error 0.05   (columns: views "ref;src1;...", cameras,
      optional gt, gt_kind, min_depth, max_depth, id; outputs in out/<id>/)
    """
    del views_flag
    manifest = batch["manifest"]
    opts.check_manifest_usage(manifest, out_dir, [views, cameras, gt])
    from gdvision._checks import check_choice
    from gdvision.depth.config import DepthConfig

    given = {"iters": iters, "finest_iters": finest_iters}
    cfg = opts.validated(
        lambda: DepthConfig.for_quality(
            quality,
            min_depth=min_depth,
            max_depth=max_depth,
            alpha=alpha,
            smoothness=smoothness,
            levels=levels,
            init=init,
            sweep_planes=planes or None,
            **{k: v for k, v in given.items() if v is not None},
        ),
        _FLAGS,
    )
    check_choice(gt_kind, "--gt-kind", ("depth", "disparity"))
    opts.set_threads(threads)
    if manifest is not None:
        from gdvision.tasks.depth import DepthJob

        opts.run_manifest_command(lambda d: DepthJob(cfg, gray, gt_kind, str(d), seed), {**locals(), **batch})
        return
    views = views or []
    if len(views) < 2:
        raise UsageError(
            f"depth needs the reference image and at least one source image, got {len(views)} image(s): "
            "gdvision depth REF SRC1 [SRC2 ...] --cameras CAMS --out-dir DIR"
        )
    if cameras is None:
        raise UsageError("--cameras is required (a calibration JSON, a COLMAP text folder or a Middlebury calib.txt)")
    if out_dir is None:
        raise UsageError("--out-dir is required")
    from gdvision.tasks.depth import run_depth_files

    show = not (quiet or json_out)
    with progress_bar(show, "depth: setup") as update:

        def on_progress(p: Any) -> None:
            if hasattr(p, "stage"):  # the plane sweep (planes costed), then its aggregation (no count)
                update(description=f"depth: {p.stage}", completed=p.done, total=p.total, info="")
                return
            update(
                completed=p.iteration,
                total=p.max_iterations,
                description=f"depth: refine level {p.num_levels - p.level}/{p.num_levels}",
                info=f"loss {p.loss:.4f}",
            )

        summary = run_depth_files(
            views,
            cameras,
            out_dir,
            cfg,
            overwrite=overwrite,
            gray=gray,
            gt=gt,
            gt_kind=gt_kind,
            device=device,
            seed=seed,
            progress=on_progress,
        )
    if summary.get("depth_range", {}).get("warning"):  # the range fell back to the camera baselines
        say(quiet, f"warning: {summary['depth_range']['warning']}")
    if json_out:
        emit_json(summary)
    else:
        r = summary["depth_range_used"]
        n_src = len(views) - 1
        say(
            quiet,
            f"depth of {views[0].name} from {n_src} source view{'s' if n_src > 1 else ''}: "
            f"{summary['known_fraction'] * 100:.1f}% known, range {r[0]:.4g}..{r[1]:.4g}, "
            f"{summary['seconds']:.1f} s -> {out_dir}/",
        )
        m = summary.get("metrics")
        if m:
            parts = [f"{k} {v:.4g}" for k, v in m.items() if isinstance(v, float)]
            say(quiet, "vs ground truth: " + ", ".join(parts))
