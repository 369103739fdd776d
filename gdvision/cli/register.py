"""``gdvision register``: estimate the transform mapping image A onto image B."""

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

MODELS = ("translation", "euclidean", "similarity", "affine", "homography")
LOSSES = ("ncc", "l1", "grad", "ssim", "mi")


@handle_errors
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
        Path | None, typer.Option(help='Start from this homography A -> B (JSON {"H": ...}), e.g. from `match`.')
    ] = None,
    gt: Annotated[Path | None, typer.Option(help="True H (JSON): report the mean corner error in pixels.")] = None,
    levels: Annotated[
        int | None, typer.Option(help="Pyramid levels [default: as many as keep the coarsest side >= 12 px].")
    ] = None,
    iters: Annotated[int, typer.Option(help="Iteration cap per pyramid level.")] = 50,
    lr: Annotated[float, typer.Option(help="Initial step scale for the first-order losses (ssim, mi).")] = 2e-3,
    tol: Annotated[float, typer.Option(help="Stop a level when the loss improves by less than this fraction.")] = 1e-5,
    manifest: ManifestOpt = None,
    pairs: Annotated[Path | None, typer.Option(hidden=True, help="Old name of --manifest.")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Folder for --manifest results (<id>.json, run.jsonl).")] = None,
    batch_size: Annotated[int, typer.Option(help="With --manifest: pairs of equal size solved together.")] = 16,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    max_error: Annotated[
        float | None,
        typer.Option(help="With --manifest and gt: exit 1 if the median corner error exceeds this (px)."),
    ] = None,
    min_metric: MinMetricOpt = None,
    max_metric: MaxMetricOpt = None,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    seed: SeedOpt = None,
) -> None:
    """Find the homography (or simpler motion) that maps image A onto image B.

    H maps pixel coordinates of A to those of B (x right, y down, (0, 0) = centre of the top-left pixel),
    so cv2.warpPerspective(A, H, (wB, hB)) approximates B. Multi-scale Gauss-Newton / Levenberg-Marquardt
    on a photometric loss, after a coarse global search.

    Examples:

      gdvision register a.png b.png --out H.json --out-overlay check.png

      gdvision register t1.png pd.png --loss mi --model similarity --json

      gdvision register --manifest pairs.csv --out-dir results/ --max-error 0.5

    A manifest has columns a, b and optionally gt (JSON with the true H), model, loss, id.
    """
    from gdvision.errors import UsageError

    for name, value in (("--iters", iters), ("--lr", lr), ("--batch-size", batch_size)):
        check_positive(name, value)
    check_positive("--tol", tol, allow_zero=True)
    check_positive("--max-error", max_error, allow_zero=True)
    if model not in MODELS:
        raise UsageError(f"unknown --model '{model}': use one of {', '.join(MODELS)}")
    if loss not in LOSSES:
        raise UsageError(f"unknown --loss '{loss}': use one of {', '.join(LOSSES)}")
    manifest = manifest or pairs
    check_manifest_usage(manifest, out_dir, [a, b, out, out_warped, out_overlay, mask_a, mask_b, init, gt])
    if manifest is None and (a is None or b is None):
        raise UsageError("give two images A and B, or --manifest FILE --out-dir DIR")

    from gdvision.device import resolve_device, seed_everything
    from gdvision.register.solver import RegisterConfig

    dev = resolve_device(device)
    seed_everything(seed)
    cfg = RegisterConfig(model=model, loss=loss, levels=levels, iters=iters, lr=lr, tol=tol)
    cfg.validate()
    if manifest is not None:
        from gdvision.tasks.register import RegisterJob

        run_manifest_command(lambda d: RegisterJob(cfg, d), locals())
        return
    assert a is not None and b is not None
    _run_single(a, b, cfg, dev, out, out_warped, out_overlay, mask_a, mask_b, init, gt, json_out, quiet)


def _run_single(a, b, cfg, dev, out, out_warped, out_overlay, mask_a, mask_b, init, gt, json_out, quiet) -> None:
    import torch

    from gdvision.io.images import read_homography, read_image, write_json, write_png
    from gdvision.register.solver import describe_result, register_pair, warp_to_b

    for o in (out, out_warped, out_overlay):
        check_output(o, [a, b])
    img_a, img_b = read_image(a), read_image(b)
    ma = _mask(mask_a, img_a, dev)
    mb = _mask(mask_b, img_b, dev)
    h0 = torch.from_numpy(read_homography(init)) if init is not None else None
    hgt = torch.from_numpy(read_homography(gt)) if gt is not None else None
    with progress_bar(not (quiet or json_out), "registering") as update:

        def progress(p: Any) -> None:
            update(description=f"level {p.num_levels - p.level}/{p.num_levels}", info=f"loss {p.loss:.5g}")

        res = register_pair(img_a.tensor(dev), img_b.tensor(dev), cfg, ma, mb, h0, progress)
    record = describe_result(res, 0, cfg, img_a, img_b, dev, hgt)
    if out is not None:
        write_json(out, record)
    if out_warped is not None or out_overlay is not None:
        warped, overlay = warp_to_b(img_a.tensor(dev), img_b.tensor(dev), res.H[0])
        if out_warped is not None:
            write_png(out_warped, warped, bits=16 if img_a.bit_depth == 16 else 8)
        if out_overlay is not None:
            write_png(out_overlay, overlay)
    if json_out:
        emit_json(record)
    else:
        msg = f"registered {a.name} -> {b.name} ({cfg.model}, {cfg.loss}) in {record['seconds']:.3f} s"
        if "corner_error_px" in record:
            msg += f"; mean corner error {record['corner_error_px']:.4f} px"
        say(quiet, msg)
        if not quiet and out is None:
            typer.echo("H = " + str([[round(v, 8) for v in row] for row in record["H"]]))


def _mask(path: Path | None, img: Any, dev: Any) -> Any:
    """Load a validity mask (nonzero = valid) combined with the image's own alpha; None if neither exists."""
    import torch

    from gdvision.errors import InputError
    from gdvision.io.images import read_image

    m = img.mask_tensor(dev)
    if path is None:
        return m
    mk = read_image(path)
    if (mk.height, mk.width) != (img.height, img.width):
        raise InputError(f"mask '{path}' is {mk.width}x{mk.height}, image is {img.width}x{img.height}")
    t = (torch.from_numpy(mk.array.max(axis=2) > 0).float()[None, None]).to(dev)
    return t if m is None else t * m
