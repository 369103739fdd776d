"""``gdvision attack``: adversarial pixels that make unrelated images match, or break a true match."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from gdvision.attack.config import DEFAULT_INIT, DEFAULT_LR, AttackConfig
from gdvision.attack.targets import TARGETS, parse_targets, target_features
from gdvision.errors import UsageError

from . import common as opts
from .common import emit_json, handle_errors, progress_bar, say

# config field -> the flag that sets it (library errors name fields; the CLI shows flags)
_FLAGS = {
    f: "--" + f.replace("_", "-")
    for f in ("mode", "eps", "steps", "lr", "perturb", "alpha", "beta", "init", "loss", "stop_inliers", "eps_max")
}
_FLAGS.update({"max_features": "--max-features", "features": "--max-features"})


def parse_eps(text: str, flag: str = "--eps") -> float:
    """``0.0314`` or ``8/255`` -> float; UsageError for anything else.

    Example:
        >>> round(parse_eps("8/255"), 5)
        0.03137
    """
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            return float(num) / float(den)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise UsageError(f"{flag} must be a number or a fraction like 8/255, got '{text}'") from None


@handle_errors
@opts.manifest_options()
def attack(
    out_dir: Annotated[
        Path, typer.Option(help="Folder for <stem>_adv.png, <stem>_delta.png, report.json and matches.png.")
    ],
    a: Annotated[Path | None, typer.Argument(help="Image A: PNG, JPEG, TIFF, PGM/PPM, .npy (gray or RGB).")] = None,
    b: Annotated[Path | None, typer.Argument(help="Image B.")] = None,
    mode: Annotated[
        str,
        typer.Option(help="match: make A and B match under the target H (targeted); unmatch: break their true match."),
    ] = "match",
    eps: Annotated[
        str,
        typer.Option(
            help="L-inf budget per pixel in [0, 1] intensity units, a number or a fraction (8/255); auto: the "
            "smallest whole 8-bit level up to --eps-max that breaks (unmatch) or matches (match) the pair."
        ),
    ] = "8/255",
    eps_max: Annotated[str, typer.Option(help="--eps auto: the largest budget tried, k/255 (16/255).")] = "16/255",
    target: Annotated[
        str,
        typer.Option(
            help=f"The attacked matcher(s): {', '.join(TARGETS)} (gdvision = `gdvision match` with its defaults; "
            "hessian = the Kornia paper's), or a comma-separated ensemble (losses summed)."
        ),
    ] = "gdvision",
    steps: Annotated[
        int, typer.Option(help="Adam iterations (each one re-detects and re-describes both images).")
    ] = 150,
    lr: Annotated[
        float | None,
        typer.Option(
            help=f"Adam step size, in intensity units (default {DEFAULT_LR['match']} for match, "
            f"{DEFAULT_LR['unmatch']} for unmatch)."
        ),
    ] = None,
    perturb: Annotated[str, typer.Option(help="Which image(s) may change: a, b or both.")] = "both",
    target_h: Annotated[
        Path | None,
        typer.Option(help='match: the homography A -> B to fake (JSON {"H": 3x3}); default identity (equal sizes).'),
    ] = None,
    true_h: Annotated[
        Path | None,
        typer.Option(help="unmatch: the true homography A -> B (JSON); default: what `gdvision match` finds now."),
    ] = None,
    mask: Annotated[
        Path | None,
        typer.Option(help="Patch attack: only pixels where this image is nonzero may change (A's size; B's too)."),
    ] = None,
    mask_b: Annotated[Path | None, typer.Option(help="A separate mask for B (default: --mask).")] = None,
    alpha: Annotated[float, typer.Option(help="Weight of the descriptor term.")] = 1.0,
    beta: Annotated[float, typer.Option(help="Weight of the mean squared pixel change.")] = 1.0,
    init: Annotated[
        str | None,
        typer.Option(
            help="Start: zero (the clean images); blend (move each image's fine detail toward the other's under H, "
            "or away for unmatch); texture (blend plus one shared random texture in the budget left, match only). "
            f"Default: {DEFAULT_INIT['match']} for match, {DEFAULT_INIT['unmatch']} for unmatch.",
        ),
    ] = None,
    focus: Annotated[
        bool,
        typer.Option(help="--loss paper, match: weight the descriptor term by geometric proximity."),
    ] = True,
    loss: Annotated[
        str,
        typer.Option(
            help="ratio: hinges on Lowe's ratio test for the matches that can pass (match) or survive (unmatch); "
            "paper: the Kornia paper's triplet loss."
        ),
    ] = "ratio",
    stop_on_success: Annotated[
        bool,
        typer.Option(
            help="Every 10 steps, judge the best 8-bit pixels so far by the success rule under the target(s) and stop "
            "once they succeed (--no-stop-on-success: run every step, for a margin)."
        ),
    ] = True,
    stop_inliers: Annotated[
        int, typer.Option(help="match: stop once this many ratio matches are consistent with H (0 = all steps).")
    ] = 0,
    max_features: Annotated[
        int | None, typer.Option(help="Keypoints kept per image (default: the target's, 4000 gdvision, 2500 hessian).")
    ] = None,
    no_opencv: Annotated[bool, typer.Option("--no-opencv", help="Skip the OpenCV SIFT transfer check.")] = False,
    device: opts.DeviceOpt = "auto",
    threads: opts.ThreadsOpt = 0,
    overwrite: opts.OverwriteOpt = False,
    json_out: opts.JsonOpt = False,
    quiet: opts.QuietOpt = False,
    seed: opts.SeedOpt = None,
    **batch: Any,
) -> None:
    """Optimise pixels, within an L-inf budget, to fool a feature matcher (by default `gdvision match` itself).

    match: make two unrelated images match under a target homography (identity by default).

    unmatch: perturb a true pair until RANSAC no longer recovers its homography.

    The perturbed images are written as 8-bit PNGs, and every figure of the report is measured on those pixels:

    L-inf, L2, PSNR; inliers and corner error under gdvision match and (when installed) OpenCV SIFT + RANSAC.

    Success: match = at least 30 RANSAC inliers and a mean corner error below 5 px against the target; unmatch = no
    RANSAC model, or a corner error above 20 px against the true H. Exit 0 when the attack succeeded, 1 when it did
    not (outputs are written either way), 2 for bad usage. Existing outputs are kept (exit 2) unless --overwrite;
    the inputs (images, masks, --target-h, --true-h) are never replaced.

    Examples:

      gdvision attack cat.png house.png --mode match --out-dir adv/

      gdvision attack a.png b.png --mode unmatch --eps 4/255 --true-h H.json --out-dir adv/ --json

      gdvision attack a.png b.png --mode unmatch --eps auto --true-h H.json --out-dir adv/   (eps*: robustness)

      gdvision attack --manifest pairs.csv --out-dir adv/ --min-metric success=1   (columns a, b, optional
      target_h / true_h, mask, id; outputs in adv/<id>/)
    """
    auto = eps.strip().lower() == "auto"
    eps_v = 8.0 / 255.0 if auto else parse_eps(eps)
    eps_max_v = parse_eps(eps_max, "--eps-max")
    try:
        names = parse_targets(target)
    except UsageError as exc:
        raise UsageError(f"--target: {exc}") from None
    feats = None
    if max_features is not None:
        if len(names) > 1:
            raise UsageError("--max-features applies to a single --target, not an ensemble")
        feats = target_features(names[0])
        feats.max_features = max_features
    if target_h is not None and mode == "unmatch":
        raise UsageError("--target-h is for --mode match; give the true homography with --true-h")
    if true_h is not None and mode == "match":
        raise UsageError("--true-h is for --mode unmatch; give the homography to fake with --target-h")
    cfg = opts.validated(
        AttackConfig(
            mode=mode,
            eps=eps_v,
            steps=steps,
            lr=lr,
            perturb=perturb,
            alpha=alpha,
            beta=beta,
            features=feats,
            target=target,
            eps_auto=auto,
            eps_max=eps_max_v,
            init=init,
            focus=focus,
            loss=loss,
            stop_inliers=stop_inliers,
            stop_on_success=stop_on_success,
        ),
        _FLAGS,
    )
    manifest = batch["manifest"]
    opts.check_manifest_usage(manifest, out_dir, [a, b, target_h, true_h, mask, mask_b])
    opts.set_threads(threads)
    if manifest is not None:
        _run_manifest(cfg, seed, not no_opencv, {**locals(), **batch})
        return
    if a is None or b is None:
        raise UsageError("give two images A and B, or --manifest FILE")
    from gdvision.tasks.attack import run_attack

    with progress_bar(not (quiet or json_out), f"attack ({mode})") as update:

        def on_step(pr: Any) -> None:
            info = f"loss {pr.loss:.4f}"
            if pr.consistent is not None:
                info += f"  H-consistent matches {pr.consistent}"
            update(completed=pr.iteration, total=pr.steps, info=info)

        files = {"target_h": target_h, "true_h": true_h, "mask": mask, "mask_b": mask_b}
        report = run_attack(
            a,
            b,
            out_dir,
            cfg,
            **files,
            overwrite=overwrite,
            device=device,
            seed=seed,
            opencv=not no_opencv,
            progress=on_step,
        )
    ok = bool(report.get("success", report["gdvision_after"]["success"]))
    if json_out:
        emit_json(report)
    else:
        _summary(report, ok, out_dir, quiet)
    if not ok:
        raise typer.Exit(1)


def _run_manifest(cfg: AttackConfig, seed: int | None, opencv: bool, options: dict[str, Any]) -> None:
    """``--manifest``: one attack per pair; with ``--eps auto`` the run's robustness curve (``robustness.json``, and
    ``robustness.png`` when matplotlib is importable) is written into --out-dir, claimed before any work."""
    from gdvision.tasks.attack import AttackJob

    dest = None
    if cfg.eps_auto:
        from gdvision.tasks.outputs import OutputPolicy

        out_dir = options["out_dir"]
        policy = OutputPolicy(out_dir, inputs=[options["manifest"]], overwrite=options.get("overwrite", False))
        resume = bool(options.get("resume"))
        dest = [policy.claim(out_dir / name, existing_ok=resume) for name in ("robustness.json", "robustness.png")]
    try:
        opts.run_manifest_command(lambda d: AttackJob(cfg, str(d), seed, opencv), options)
    finally:
        if dest is not None:
            from gdvision.tasks.attack import write_robustness

            curve = write_robustness(options["out_dir"], dest[0], dest[1])
            if curve is not None:
                say(
                    options.get("quiet", False) or options.get("json_out", False),
                    f"robustness curve of {curve['pairs']} pairs (median eps* {curve['median_eps_star_255']}/255): "
                    f"{dest[0]}",
                )


def _summary(report: dict[str, Any], ok: bool, out_dir: Path, quiet: bool) -> None:
    """The human summary of one attack (stderr)."""
    g0, g1 = report["gdvision_before"], report["gdvision_after"]

    def fmt(r: dict[str, Any]) -> str:
        ce = r.get("corner_error_px")
        return f"{r['inliers']} inliers, corner error {'none' if ce is None else f'{ce:.1f} px'}"

    pa, pb = report["perturbation"]["a"], report["perturbation"]["b"]
    bs = report.get("budget_search")
    if bs:
        tried = ", ".join(f"{r['level']}{'+' if r['works'] else '-'}" for r in bs["rungs"])
        say(quiet, f"budget search ({report['mode']}): {bs['verdict']}; levels tried (+ works): {tried}")
    say(
        quiet,
        f"attack ({report['mode']}, target {','.join(report['target'])}, eps {report['eps'] * 255:.3g}/255) "
        f"{'succeeded' if ok else 'FAILED'} in {report['seconds']:.1f} s ({report['steps']} steps): before {fmt(g0)}; "
        f"after {fmt(g1)}",
    )
    for name, t in report["targets"].items():
        if not t["attacked"]:
            say(quiet, f"{name} (transfer): before {fmt(t['before'])}; after {fmt(t['after'])}")
    say(
        quiet,
        f"PSNR A {pa['psnr_db']:.2f} dB, B {pb['psnr_db']:.2f} dB; L-inf A {pa['linf_255']:.0f}/255, "
        f"B {pb['linf_255']:.0f}/255",
    )
    if "opencv_after" in report:
        say(
            quiet, f"OpenCV SIFT (transfer): before {fmt(report['opencv_before'])}; after {fmt(report['opencv_after'])}"
        )
    say(quiet, f"wrote {out_dir}/: " + ", ".join(Path(f).name for f in report["files"].values()))
