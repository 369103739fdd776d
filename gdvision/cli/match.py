"""``gdvision match`` and ``gdvision features``: SIFT-style features, matching and a robust homography."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
    fail,
    handle_errors,
    progress_bar,
    run_manifest_command,
    say,
)

DetectorOpt = Annotated[
    str, typer.Option(help="dog: difference of Gaussians (Lowe's SIFT); hessian: determinant of Hessian.")
]
MaxFeaturesOpt = Annotated[
    int, typer.Option(help="Keep at most this many keypoints per image, strongest and spread out (0 = all).")
]
RootOpt = Annotated[bool, typer.Option("--root-sift", help="RootSIFT descriptors (L1-normalised square roots).")]
UpsampleOpt = Annotated[
    bool | None,
    typer.Option(
        "--upsample/--no-upsample",
        help="--upsample: double the image for the first octave (Lowe's layout, about 2x slower); --no-upsample: "
        "no scales below 1.6 px (fastest, fewer small keypoints). Default: the small scales at native resolution "
        "with a half-pixel re-fit, for images up to 2 megapixels (none above).",
        show_default=False,
    ),
]
ContrastOpt = Annotated[float, typer.Option(help="Contrast threshold for images in [0, 1] (OpenCV's default 0.04).")]


def _feature_config(detector: str, max_features: int, root: bool, upsample: bool | None, contrast: float):
    from gdvision.features.match import FeatureConfig

    check_positive("--max-features", max_features, allow_zero=True)
    check_positive("--contrast-threshold", contrast, allow_zero=True)
    cfg = FeatureConfig(
        detector=detector, max_features=max_features, root=root, double_first=upsample, contrast_threshold=contrast
    )
    cfg.validate()
    return cfg


@handle_errors
def match(
    a: Annotated[Path | None, typer.Argument(help="Image A: PNG, JPEG, TIFF, PGM/PPM, .npy.")] = None,
    b: Annotated[Path | None, typer.Argument(help="Image B.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help='Write the model as JSON: {"H": 3x3, ...}.')] = None,
    out_matches: Annotated[
        Path | None, typer.Option(help="Write the matches (coordinates, scores, inlier flags) as JSON.")
    ] = None,
    out_viz: Annotated[
        Path | None, typer.Option(help="Write both images side by side with inlier (green) / outlier (red) lines.")
    ] = None,
    detector: DetectorOpt = "dog",
    max_features: MaxFeaturesOpt = 4000,
    matcher: Annotated[
        str, typer.Option(help="ratio: Lowe's ratio test; mnn: mutual nearest neighbours; smnn: both.")
    ] = "ratio",
    ratio: Annotated[float | None, typer.Option(help="Ratio threshold (default: 0.8 for ratio, 0.9 for smnn).")] = None,
    model: Annotated[str, typer.Option(help="homography (A -> B) or fundamental (8-point).")] = "homography",
    ransac_threshold: Annotated[
        float, typer.Option(help="RANSAC inlier threshold in pixels (transfer error / Sampson distance).")
    ] = 3.0,
    ransac_iters: Annotated[int, typer.Option(help="Cap on RANSAC hypotheses.")] = 10000,
    refine: Annotated[
        bool, typer.Option(help="Refine the RANSAC homography photometrically with `register` (slower, sub-pixel).")
    ] = False,
    root_sift: RootOpt = False,
    upsample: UpsampleOpt = None,
    contrast_threshold: ContrastOpt = 0.04,
    gt: Annotated[Path | None, typer.Option(help="True H (JSON): report the mean corner error in pixels.")] = None,
    manifest: ManifestOpt = None,
    pairs: Annotated[Path | None, typer.Option(hidden=True, help="Old name of --manifest.")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Folder for --manifest results (<id>.json, run.jsonl).")] = None,
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
    """Match keypoints of two images and fit a homography (or fundamental matrix) with RANSAC.

    SIFT-style pipeline on tensors: Gaussian scale space, DoG (or Hessian) keypoints, 128-d SIFT descriptors,
    ratio / mutual matching, batched RANSAC (seeded: --seed, default 0), least-squares refinement. H maps pixel
    coordinates of A to B ((0, 0) = centre of the top-left pixel), the same convention as `register`.

    Examples:

      gdvision match a.png b.png --out H.json --out-viz viz.png

      gdvision match a.png b.png --matcher smnn --refine --json

      gdvision match --manifest pairs.csv --out-dir results/ --min-metric inliers=30

    A manifest has columns a, b and optionally gt (JSON with the true H) and id.
    """
    from gdvision.errors import UsageError

    check_positive("--ransac-threshold", ransac_threshold)
    check_positive("--ransac-iters", ransac_iters)
    manifest = manifest or pairs
    check_manifest_usage(manifest, out_dir, [a, b, out, out_matches, out_viz, gt])
    if manifest is None and (a is None or b is None):
        raise UsageError("give two images A and B, or --manifest FILE --out-dir DIR")

    from gdvision.device import resolve_device, seed_everything
    from gdvision.features.match import MatchConfig

    dev = resolve_device(device)
    seed_everything(seed)
    cfg = MatchConfig(
        features=_feature_config(detector, max_features, root_sift, upsample, contrast_threshold),
        matcher=matcher,
        ratio=ratio,
        model=model,
        ransac_threshold=ransac_threshold,
        max_iters=ransac_iters,
        seed=0 if seed is None else seed,
        refine=refine,
    )
    cfg.validate()
    if manifest is not None:
        from gdvision.tasks.match import MatchJob

        run_manifest_command(lambda d: MatchJob(cfg, d), locals())
        return
    assert a is not None and b is not None
    for o in (out, out_matches, out_viz):
        check_output(o, [a, b])

    import torch

    from gdvision.features.match import describe_match, draw_matches, match_images, matches_record
    from gdvision.io.images import read_homography, read_image, write_json, write_png

    img_a, img_b = read_image(a), read_image(b)
    hgt = torch.from_numpy(read_homography(gt)) if gt is not None else None
    ta, tb = img_a.tensor(dev), img_b.tensor(dev)
    with progress_bar(not (quiet or json_out), "matching"):
        res = match_images(ta, tb, cfg)
    rec = describe_match(res, cfg, (img_a.width, img_a.height), (img_b.width, img_b.height), dev, hgt, (str(a), str(b)))
    if out is not None:
        write_json(out, rec)
    if out_matches is not None:
        write_json(out_matches, matches_record(res))
    if out_viz is not None:
        write_png(out_viz, draw_matches(ta, tb, res))
    if json_out:
        emit_json(rec)
    else:
        msg = (
            f"matched {a.name} -> {b.name}: {rec['keypoints_a']} / {rec['keypoints_b']} keypoints, "
            f"{rec['matches']} matches, {rec['inliers']} inliers ({res.model_type}) in {rec['seconds']:.3f} s"
        )
        if "corner_error_px" in rec:
            msg += f"; mean corner error {rec['corner_error_px']:.4f} px"
        say(quiet, msg)
        if not quiet and out is None:
            key = "H" if "H" in rec else "F"
            typer.echo(f"{key} = " + str([[round(v, 8) for v in row] for row in rec[key]]))


@handle_errors
def features(
    images: Annotated[list[Path], typer.Argument(help="Image(s): PNG, JPEG, TIFF, PGM/PPM, .npy.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output file for a single image (e.g. IMG.sift).")
    ] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Folder for several images: <stem>.<format suffix>.")] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="vlfeat: 'x y scale angle d1..d128' per line; lowe: Lowe's .key format (header, 'row col scale "
            "orientation', 128 integers). Default: lowe for .key/.sift, else vlfeat.",
        ),
    ] = None,
    detector: DetectorOpt = "dog",
    max_features: MaxFeaturesOpt = 4000,
    root_sift: RootOpt = False,
    upsample: UpsampleOpt = None,
    contrast_threshold: ContrastOpt = 0.04,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Detect keypoints and compute SIFT descriptors; write them in VLFeat or Lowe text format.

    Positions are pixels ((0, 0) = centre of the top-left pixel), scale is sigma in pixels (OpenCV's
    KeyPoint.size / 2), angle in radians (OpenCV's KeyPoint.angle; Lowe's files store -angle).

    Examples:

      gdvision features box.png --out box.sift

      gdvision features photos/ --out-dir keys/ --format vlfeat --max-features 2000
    """
    from gdvision.errors import GdvisionError, UsageError
    from gdvision.io.images import list_images
    from gdvision.io.keypoints import FORMATS

    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"unknown --format '{fmt}': use one of {', '.join(FORMATS)}")
    paths = list_images([str(p) for p in images])
    if not paths:
        raise UsageError("no images given")
    if out is None and out_dir is None:
        raise UsageError("give --out FILE (one image) or --out-dir DIR")
    if out is not None and len(paths) > 1:
        raise UsageError(f"--out takes one image, got {len(paths)}: use --out-dir")
    if out is not None and out_dir is not None:
        raise UsageError("give --out or --out-dir, not both")
    cfg = _feature_config(detector, max_features, root_sift, upsample, contrast_threshold)

    from gdvision.device import resolve_device
    from gdvision.features.match import detect_and_describe, features_to_set
    from gdvision.io.images import read_image
    from gdvision.io.keypoints import write_keypoints

    dev = resolve_device(device)
    results, failures = [], []
    with progress_bar(not (quiet or json_out) and len(paths) > 1, "features") as update:
        for i, p in enumerate(paths):
            suffix = ".sift" if (fmt or "lowe") == "lowe" else ".txt"
            target = out if out is not None else out_dir / (p.stem + suffix)  # type: ignore[operator]
            try:
                check_output(target, paths)
                img = read_image(p)
                f = detect_and_describe(img.tensor(dev), cfg)
                write_keypoints(target, features_to_set(f), fmt)
                results.append({"image": str(p), "out": str(target), "keypoints": len(f)})
            except GdvisionError as exc:
                if len(paths) == 1:
                    raise
                failures.append({"image": str(p), "error": str(exc)})
            update(completed=i + 1, total=len(paths))
    if json_out:
        emit_json({"results": results, "failed": failures})
    else:
        for r in results:
            say(quiet, f"{r['image']}: {r['keypoints']} keypoints -> {r['out']}")
        for f in failures:
            typer.echo(f"failed: {f['image']}: {f['error']}", err=True)
    if failures:
        fail(f"{len(failures)} of {len(paths)} images failed", 1)
