"""``gdvision register``: estimate the transform mapping image A onto image B."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from gdvision.errors import UsageError

from . import common as opts
from .common import emit_json, handle_errors, progress_bar, say

# RegisterConfig field -> the flag that sets it (library errors name fields; the CLI shows flags)
_FLAGS = {"model": "--model", "loss": "--loss", "levels": "--levels", "iters": "--iters", "lr": "--lr", "tol": "--tol"}


@handle_errors
@opts.manifest_options("pairs", "out_dir", "max_error")
def register(
    a: Annotated[Path | None, typer.Argument(help="Image A (moving): PNG, JPEG, TIFF, PGM/PPM, .npy.")] = None,
    b: Annotated[Path | None, typer.Argument(help="Image B (fixed): the frame A is mapped into.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help='Write H as JSON: {"H": 3x3, ...}.')] = None,
    out_warped: Annotated[Path | None, typer.Option(help="Write A warped into B's frame (PNG).")] = None,
    out_overlay: Annotated[
        Path | None, typer.Option(help="Write a checkerboard of B and warped A (PNG) to judge the alignment.")
    ] = None,
    model: Annotated[
        str, typer.Option(help="Motion model: translation, euclidean, similarity, affine or homography.")
    ] = "homography",
    loss: Annotated[
        str,
        typer.Option(
            help="ncc: robust to exposure (default); l1: raw intensities; grad: gradient magnitudes; "
            "ssim: structural similarity; mi: mutual information (different modalities, e.g. MRI T1 vs PD)."
        ),
    ] = "ncc",
    mask_a: Annotated[Path | None, typer.Option(help="Validity mask for A (nonzero = use the pixel).")] = None,
    mask_b: Annotated[Path | None, typer.Option(help="Validity mask for B.")] = None,
    init: Annotated[
        str,
        typer.Option(
            help="auto: the direct solve, and when the verdict rejects it a start from feature matches (match's "
            "defaults) refined photometrically; none: the direct solve only; FILE: start from this homography "
            'A -> B (JSON {"H": ...}), e.g. from `match`. The record\'s "start" says which was used.'
        ),
    ] = "auto",
    gt: Annotated[Path | None, typer.Option(help="True H (JSON): report the mean corner error in pixels.")] = None,
    levels: Annotated[
        int | None, typer.Option(help="Pyramid levels [default: as many as keep the coarsest side >= 12 px].")
    ] = None,
    iters: Annotated[int, typer.Option(help="Iteration cap per pyramid level.")] = 50,
    lr: Annotated[float, typer.Option(help="Initial step scale for the first-order losses (ssim, mi).")] = 2e-3,
    tol: Annotated[float, typer.Option(help="Stop a level when the loss improves by less than this fraction.")] = 1e-5,
    batch_size: Annotated[int, typer.Option(help="With --manifest: pairs of equal size solved together.")] = 16,
    overwrite: opts.OverwriteOpt = False,
    threads: opts.ThreadsOpt = 0,
    device: opts.DeviceOpt = "auto",
    json_out: opts.JsonOpt = False,
    quiet: opts.QuietOpt = False,
    seed: opts.SeedOpt = None,
    **batch: Any,
) -> None:
    """Find the homography (or simpler motion) that maps image A onto image B.

    H maps pixel coordinates of A to those of B (x right, y down, (0, 0) = centre of the top-left pixel),
    so cv2.warpPerspective(A, H, (wB, hB)) approximates B. Multi-scale Gauss-Newton / Levenberg-Marquardt
    on a photometric loss, after a coarse global search.

    --init auto (the default) first solves directly; when the verdict rejects that result, it starts again
    from feature matches (as `gdvision match` finds them) and refines photometrically: large rotations,
    scale changes and viewpoint changes. The output says which start was used (direct, features, file).

    Every result is judged without ground truth: a constant image is refused before solving, and a result
    whose overlap or gradient orientation agreement is too low (unrelated images, a failed solve) exits 1
    naming that measure; its files are not written. --json carries the verdict and its measures.

    Examples:

      gdvision register a.png b.png --out H.json --out-overlay check.png

      gdvision register t1.png pd.png --loss mi --model similarity --json

      gdvision register --manifest pairs.csv --out-dir results/ --max-error 0.5

    A manifest has columns a, b and optionally gt (JSON with the true H), model, loss, id.
    """
    opts.check_positive("--batch-size", batch_size)
    opts.check_positive("--max-error", batch["max_error"], allow_zero=True)
    from gdvision.register.config import RegisterConfig

    cfg = opts.validated(RegisterConfig(model=model, loss=loss, levels=levels, iters=iters, lr=lr, tol=tol), _FLAGS)
    batch["manifest"] = manifest = batch["manifest"] or batch.pop("pairs")
    init_file = None if init in ("auto", "none") else Path(init)
    opts.check_manifest_usage(
        manifest, batch["out_dir"], [a, b, out, out_warped, out_overlay, mask_a, mask_b, init_file, gt]
    )
    if manifest is None and (a is None or b is None):
        raise UsageError("give two images A and B, or --manifest FILE --out-dir DIR")
    opts.set_threads(threads)

    from gdvision.device import resolve_device, seed_everything

    dev = resolve_device(device)
    seed_everything(seed)
    if manifest is not None:
        from gdvision.tasks.register import RegisterJob

        opts.run_manifest_command(lambda d: RegisterJob(cfg, d, init), {**locals(), **batch})
        return
    assert a is not None and b is not None
    _run_single(a, b, cfg, dev, locals())


def _run_single(a: Path, b: Path, cfg: Any, dev: Any, options: dict[str, Any]) -> None:
    from gdvision.tasks.register import RegistrationRejected, register_files

    json_out, quiet = options["json_out"], options["quiet"]
    files = {k: options[k] for k in ("mask_a", "mask_b", "init", "gt", "out", "out_warped", "out_overlay")}
    with progress_bar(not (quiet or json_out), "registering") as update:

        def progress(p: Any) -> None:
            update(description=f"level {p.num_levels - p.level}/{p.num_levels}", info=f"loss {p.loss:.5g}")

        try:
            record = register_files(a, b, cfg, dev, **files, overwrite=options["overwrite"], progress=progress)
        except RegistrationRejected as exc:
            if not json_out:
                raise
            typer.echo(f"error: {exc}", err=True)  # one JSON object on stdout: the record, the verdict, the error
            emit_json({**exc.record, "error": str(exc), "exit_code": exc.exit_code})
            raise typer.Exit(exc.exit_code) from None
    if json_out:
        emit_json(record)
    else:
        msg = f"registered {a.name} -> {b.name} ({cfg.model}, {cfg.loss}, start {record['start']})"
        msg += f" in {record['seconds']:.3f} s"
        msg += f"; gradient agreement {record['verdict']['measures']['gradient_agreement']:.3f}"
        if "corner_error_px" in record:
            msg += f"; mean corner error {record['corner_error_px']:.4f} px"
        say(quiet, msg)
        if options["out"] is None:  # the result goes to stdout, also under --quiet (it only silences stderr)
            typer.echo("H = " + str([[round(v, 8) for v in row] for row in record["H"]]))
