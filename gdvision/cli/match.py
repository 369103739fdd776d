"""``gdvision match`` and ``gdvision features``: SIFT-style features, matching and a robust homography."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from gdvision._checks import check_choice
from gdvision.errors import UsageError
from gdvision.features.config import FeatureConfig, MatchConfig

from . import common as opts
from .common import emit_json, handle_errors, progress_bar, say

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


# config field -> the flag that sets it (library errors name fields; the CLI shows flags)
_FLAGS = {
    "detector": "--detector",
    "max_features": "--max-features",
    "contrast_threshold": "--contrast-threshold",
    "matcher": "--matcher",
    "ratio": "--ratio",
    "model": "--model",
    "ransac_threshold": "--ransac-threshold",
    "max_iters": "--ransac-iters",
    "refine": "--refine",
    "seed": "--seed",
}


def _feature_config(
    detector: str, max_features: int, root: bool, upsample: bool | None, contrast: float
) -> FeatureConfig:
    return FeatureConfig(
        detector=detector, max_features=max_features, root=root, double_first=upsample, contrast_threshold=contrast
    )


@handle_errors
@opts.manifest_options("pairs", "out_dir", "max_error")
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
    viz_max: Annotated[
        int, typer.Option(help="Most match lines --out-viz draws: inliers first, evenly spread (0 = images only).")
    ] = 200,
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
    seed: opts.SeedOpt = None,
    refine: Annotated[
        bool, typer.Option(help="Refine the RANSAC homography photometrically with `register` (slower, sub-pixel).")
    ] = False,
    root_sift: RootOpt = False,
    upsample: UpsampleOpt = None,
    contrast_threshold: ContrastOpt = 0.04,
    gt: Annotated[Path | None, typer.Option(help="True H (JSON): report the mean corner error in pixels.")] = None,
    overwrite: opts.OverwriteOpt = False,
    device: opts.DeviceOpt = "auto",
    threads: opts.ThreadsOpt = 0,
    json_out: opts.JsonOpt = False,
    quiet: opts.QuietOpt = False,
    **batch: Any,
) -> None:
    """Match keypoints of two images and fit a homography (or fundamental matrix) with RANSAC.

    SIFT-style pipeline on tensors: Gaussian scale space, DoG (or Hessian) keypoints, 128-d SIFT descriptors,
    ratio / mutual matching, batched RANSAC (seeded: --seed, default 0), least-squares refinement. H maps pixel
    coordinates of A to B ((0, 0) = centre of the top-left pixel), the same convention as `register`.

    Examples:

      gdvision match a.png b.png --out H.json --out-viz viz.png

      gdvision match a.png b.png --matcher smnn --refine --json

      gdvision match --manifest pairs.csv --out-dir results/ --min-metric inliers=30

    A manifest has columns a, b and optionally gt (JSON with the true H) and id. Existing outputs are kept
    (exit 2) unless --overwrite; the inputs (A, B, --gt) are never replaced.
    """
    opts.check_positive("--viz-max", viz_max, allow_zero=True)
    batch["manifest"] = manifest = batch["manifest"] or batch.pop("pairs")
    opts.check_manifest_usage(manifest, batch["out_dir"], [a, b, out, out_matches, out_viz, gt])
    cfg = opts.validated(
        MatchConfig(
            features=_feature_config(detector, max_features, root_sift, upsample, contrast_threshold),
            matcher=matcher,
            ratio=ratio,
            model=model,
            ransac_threshold=ransac_threshold,
            max_iters=ransac_iters,
            seed=0 if seed is None else seed,
            refine=refine,
        ),
        _FLAGS,
    )
    if manifest is None and (a is None or b is None):
        raise UsageError("give two images A and B, or --manifest FILE --out-dir DIR")
    if manifest is None and (batch["out_dir"] is not None or batch["resume"]):
        raise UsageError("--out-dir and --resume go with --manifest; for one pair use --out, --out-matches, --out-viz")
    opts.set_threads(threads)
    if manifest is not None:
        from gdvision.device import seed_everything
        from gdvision.tasks.match import MatchJob

        seed_everything(seed)
        opts.run_manifest_command(lambda d: MatchJob(cfg, d), {**locals(), **batch})
        return
    assert a is not None and b is not None
    from gdvision.tasks.match import run_match

    with progress_bar(not (quiet or json_out), "match: setup") as update:
        stage = lambda name: update(description=f"match: {name}")  # noqa: E731
        rec = run_match(a, b, cfg, device, out, out_matches, out_viz, gt, overwrite, seed, viz_max, stage)
    if json_out:
        emit_json(rec)
        return
    msg = (
        f"matched {a.name} -> {b.name}: {rec['keypoints_a']} / {rec['keypoints_b']} keypoints, "
        f"{rec['matches']} matches, {rec['inliers']} inliers ({rec['model']}) in {rec['seconds']:.3f} s"
    )
    if "corner_error_px" in rec:
        msg += f"; mean corner error {rec['corner_error_px']:.4f} px"
    say(quiet, msg)
    if out is None:  # the model is the result: without --out it goes to stdout, --quiet or not (quiet is stderr)
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
    overwrite: Annotated[bool, typer.Option(help="Replace existing keypoint files (never an input).")] = False,
    device: opts.DeviceOpt = "auto",
    threads: opts.ThreadsOpt = 0,
    json_out: opts.JsonOpt = False,
    quiet: opts.QuietOpt = False,
) -> None:
    """Detect keypoints and compute SIFT descriptors; write them in VLFeat or Lowe text format.

    Positions are pixels ((0, 0) = centre of the top-left pixel), scale is sigma in pixels (OpenCV's
    KeyPoint.size / 2), angle in radians (OpenCV's KeyPoint.angle; Lowe's files store -angle).

    Examples:

      gdvision features box.png --out box.sift

      gdvision features box.png --format vlfeat > box.txt   (one image without --out: keypoints on stdout)

      gdvision features photos/ --out-dir keys/ --format vlfeat --max-features 2000

    With --out-dir, IMG.ext is written as <stem>.sift (lowe) or <stem>.txt (vlfeat); two images that would get
    one name (a.png and a.jpg) are refused before any work (exit 2). Existing files are kept unless --overwrite;
    an input is never replaced.
    """
    from gdvision.io.images import list_images
    from gdvision.io.keypoints import FORMATS

    if fmt is not None:
        check_choice(fmt, "--format", FORMATS)
    cfg = opts.validated(_feature_config(detector, max_features, root_sift, upsample, contrast_threshold), _FLAGS)
    if out is not None and out_dir is not None:
        raise UsageError("give --out or --out-dir, not both")
    if out is None and out_dir is None and json_out:
        raise UsageError("--json without --out/--out-dir would mix the summary with the keypoints: give --out FILE")
    paths = list_images([str(p) for p in images])
    if not paths:
        raise UsageError("no images given")
    opts.set_threads(threads)

    from gdvision.tasks.features import run_features

    with progress_bar(not (quiet or json_out) and len(paths) > 1, "features") as update:
        results, failures = run_features(
            paths, cfg, device, out, out_dir, fmt, overwrite, lambda done, total: update(completed=done, total=total)
        )
    if json_out:
        emit_json({"results": results, "failed": failures})
    else:
        for r in results:
            if r["out"] is None:  # no --out: the keypoints are the result, on stdout (the summary on stderr)
                typer.echo(r["text"], nl=False)
                say(quiet, f"{r['image']}: {r['keypoints']} keypoints (stdout)")
                continue
            say(quiet, f"{r['image']}: {r['keypoints']} keypoints -> {r['out']}")
        for f in failures:
            typer.echo(f"failed: {f['image']}: {f['error']}", err=True)
    if failures:
        opts.fail(f"{len(failures)} of {len(paths)} images failed", 1)
