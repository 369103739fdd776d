"""``gdvision edges``: Sobel / Scharr / Laplacian / Canny edge maps of many images, batched on a device."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from . import common as opts
from .common import emit_json, handle_errors, progress_bar, say

# How the command line shows the fields of EdgeConfig in its error messages.
_FLAGS = {f: f"--{f}" for f in ("op", "what", "ksize", "border", "norm", "low", "high", "sigma")}


@handle_errors
@opts.manifest_options()
def edges(
    out_dir: Annotated[Path, typer.Option("--out-dir", "-o", help="Folder for the results (created).")],
    inputs: Annotated[
        list[str] | None, typer.Argument(help="Image files, folders (their images, sorted) or glob patterns.")
    ] = None,
    op: Annotated[str, typer.Option("--op", help="sobel | scharr | laplacian | canny.")] = "sobel",
    what: Annotated[
        str,
        typer.Option(
            "--what",
            help="For sobel/scharr: magnitude | dx | dy | orientation (radians in [0, 2pi), 0 = +x, pi/2 = down).",
        ),
    ] = "magnitude",
    ksize: Annotated[
        int, typer.Option("--ksize", help="Aperture: sobel 1/3/5/7, laplacian 1/3/5/7, canny 3/5/7; scharr: 3.")
    ] = 3,
    border: Annotated[
        str,
        typer.Option("--border", help="reflect101 (OpenCV's default) | replicate | constant | valid (output shrinks)."),
    ] = "reflect101",
    norm: Annotated[str, typer.Option("--norm", help="Magnitude norm: l2 (sqrt(dx^2+dy^2)) or l1 (|dx|+|dy|).")] = "l2",
    low: Annotated[float, typer.Option("--low", help="Canny low threshold, 8-bit units as cv2.Canny.")] = 50.0,
    high: Annotated[float, typer.Option("--high", help="Canny high threshold, 8-bit units as cv2.Canny.")] = 150.0,
    sigma: Annotated[
        float | None, typer.Option("--sigma", help="Canny: Gaussian pre-smoothing in pixels (default: none).")
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="png (8-bit; magnitude scaled so a unit step is white, signed maps centred on grey), "
            "png16, or npy (raw float32 values for images in [0, 1]).",
        ),
    ] = "png",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images of one size computed together.")] = 16,
    workers: Annotated[int, typer.Option("--workers", help="Threads decoding and encoding files.")] = 2,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace outputs that already exist (without it, an existing output is an error, exit 2). "
            "With --manifest: redo every item (old logs are set aside).",
        ),
    ] = False,
    threads: opts.ThreadsOpt = 0,
    device: opts.DeviceOpt = "auto",
    quiet: opts.QuietOpt = False,
    json_out: opts.JsonOpt = False,
    **batch: Any,
) -> None:
    """Edge maps of images: Sobel/Scharr (magnitude, dx, dy, orientation), Laplacian or Canny.

    Results match OpenCV (cv2.Sobel/Scharr/Laplacian/Canny with the same border).

    Each channel is filtered separately; Canny merges the channels as OpenCV does.

    Images are grouped by size and computed in batches on --device while threads decode and write files. The
    default map (3x3 Sobel magnitude) on the CPU is computed with NumPy in those threads, without importing torch.

    Output names mirror the input names under --out-dir (extension .png or .npy). Every output is checked before
    any work: an output that exists (without --overwrite), that would replace an input or that two inputs would
    share stops the run with exit 2, and nothing is written.

    A file that cannot be read is reported and skipped, and the exit code is then 1.

    Examples:

        gdvision edges photos/ --op canny --low 50 --high 150 --out-dir edges/

        gdvision edges 'scans/*.png' --op sobel --what dx --ksize 5 --format npy -o grads/

        gdvision edges --manifest files.csv -o edges/ --resume   (column: image; a run.jsonl log, resumable)
    """
    from gdvision.errors import UsageError
    from gdvision.filters.config import EdgeConfig
    from gdvision.tasks.edges import check_format

    cfg = EdgeConfig(op, what, 3 if op == "scharr" else ksize, border, norm, low, high, sigma)
    cfg.validate(names=_FLAGS)
    check_format(fmt, "--format")
    manifest = batch["manifest"]
    opts.check_manifest_usage(manifest, out_dir, [inputs])
    opts.check_positive("--workers", workers)
    opts.check_positive("--threads", threads, allow_zero=True)
    opts.check_positive("--batch-size", batch_size)
    if manifest is None and not inputs:
        raise UsageError("give image files, folders or globs, or --manifest FILE")
    if manifest is not None:
        from gdvision.tasks.edges import EdgesJob

        opts.set_threads(threads)
        opts.run_manifest_command(lambda d: EdgesJob(cfg, d, fmt, workers), {**locals(), **batch})
        return
    from gdvision.device import parse_device
    from gdvision.io.images import list_images
    from gdvision.tasks.edges import plan_edges, run_edges

    paths = list_images(inputs or [])
    if not paths:
        raise UsageError(f"no images found in {', '.join(inputs or [])}")
    plan = plan_edges(paths, out_dir, fmt, overwrite)  # every output claimed before any work
    parse_device(device)  # a malformed --device is a usage error before anything starts
    with progress_bar(not quiet and not json_out, "edges") as update:
        summary = run_edges(  # decoding starts while torch is imported, if the map needs torch at all
            plan,
            cfg,
            device,
            batch_size=batch_size,
            workers=workers,
            progress=lambda done, total, info: update(completed=done, total=total, info=info),
            threads=threads,
        )
    for path, err in summary.failures:
        typer.echo(f"error: {path}: {err}" if path not in err else f"error: {err}", err=True)
    if json_out:
        emit_json(summary.as_dict())
    else:
        say(
            quiet,
            f"{summary.written} written, {len(summary.failures)} failed "
            f"in {summary.seconds:.2f} s ({summary.files_per_s:.1f} files/s) -> {out_dir}",
        )
    if summary.failures:
        raise typer.Exit(1)
