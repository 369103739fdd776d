"""``gdvision register``: estimate the transform mapping image A onto image B."""

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
    fail,
    handle_errors,
    progress_bar,
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
    pairs: Annotated[
        Path | None, typer.Option(help="CSV with columns a,b[,gt]: register many pairs (needs --out-dir).")
    ] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Folder for --pairs results (<stemA>__<stemB>.json).")] = None,
    batch_size: Annotated[int, typer.Option(help="With --pairs: pairs of equal size solved together.")] = 16,
    overwrite: Annotated[bool, typer.Option(help="With --pairs: redo pairs whose result already exists.")] = False,
    max_error: Annotated[
        float | None, typer.Option(help="With --pairs and gt: exit 1 if the median corner error exceeds this (px).")
    ] = None,
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

      gdvision register --pairs pairs.csv --out-dir results/ --max-error 0.5
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
    if pairs is None and (a is None or b is None):
        raise UsageError("give two images A and B, or --pairs FILE --out-dir DIR")
    if pairs is not None and (a is not None or b is not None):
        raise UsageError("give either two images or --pairs, not both")
    if pairs is not None and out_dir is None:
        raise UsageError("--pairs needs --out-dir")

    from gdvision.device import resolve_device, seed_everything
    from gdvision.register import RegisterConfig

    dev = resolve_device(device)
    seed_everything(seed)
    cfg = RegisterConfig(model=model, loss=loss, levels=levels, iters=iters, lr=lr, tol=tol)
    cfg.validate()
    if pairs is not None:
        assert out_dir is not None
        _run_pairs(pairs, out_dir, cfg, dev, batch_size, overwrite, max_error, json_out, quiet, mask_a, mask_b)
        return
    assert a is not None and b is not None
    _run_single(a, b, cfg, dev, out, out_warped, out_overlay, mask_a, mask_b, init, gt, json_out, quiet)


def _run_single(a, b, cfg, dev, out, out_warped, out_overlay, mask_a, mask_b, init, gt, json_out, quiet) -> None:
    import torch

    from gdvision.io import read_homography, read_image, write_json, write_png
    from gdvision.register import describe_result, register_pair, warp_to_b

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
    from gdvision.io import read_image

    m = img.mask_tensor(dev)
    if path is None:
        return m
    mk = read_image(path)
    if (mk.height, mk.width) != (img.height, img.width):
        raise InputError(f"mask '{path}' is {mk.width}x{mk.height}, image is {img.width}x{img.height}")
    t = (torch.from_numpy(mk.array.max(axis=2) > 0).float()[None, None]).to(dev)
    return t if m is None else t * m


def _run_pairs(pairs, out_dir, cfg, dev, batch_size, overwrite, max_error, json_out, quiet, mask_a, mask_b) -> None:
    from gdvision.pairs import check_max_error, read_pairs, run_pairs
    from gdvision.register import solve_loaded_pairs

    if mask_a is not None or mask_b is not None:
        from gdvision.errors import UsageError

        raise UsageError("--mask-a/--mask-b apply to a single pair, not to --pairs")
    items = read_pairs(pairs, out_dir)
    with progress_bar(not (quiet or json_out), "pairs") as update:
        summary = run_pairs(
            items,
            lambda group: solve_loaded_pairs(group, cfg, dev),
            out_dir,
            batch_key=lambda ld: (ld[1].height, ld[1].width, ld[2].height, ld[2].width),
            batch_size=batch_size,
            overwrite=overwrite,
            on_progress=lambda done, total: update(completed=done, total=total),
        )
    report = summary.as_dict()
    report["out_dir"] = str(out_dir)
    regression = check_max_error(summary, max_error)
    if regression:
        report["regression"] = regression
    if json_out:
        emit_json(report)
    elif not quiet:
        line = f"{summary.done} done, {summary.skipped} already done, {summary.failed} failed of {summary.total} pairs"
        if "corner_error_px" in report:
            ce = report["corner_error_px"]
            line += (
                f"; corner error median {ce['median']:.4f} px, mean {ce['mean']:.4f} px, "
                f"{ce['success_rate_3px'] * 100:.1f}% < 3 px"
            )
        say(quiet, line)
        for f in summary.failures:
            typer.echo(f"failed: {f['a']} , {f['b']}: {f['error']}", err=True)
    if regression:
        fail(regression, 1)
    if summary.failed:
        raise typer.Exit(1)
