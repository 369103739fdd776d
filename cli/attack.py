"""``gdvision attack``: adversarial pixels that make unrelated images match, or break a true match."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import DeviceOpt, JsonOpt, QuietOpt, SeedOpt, check_output, emit_json, handle_errors, progress_bar, say


def parse_eps(text: str) -> float:
    """``0.0314`` or ``8/255`` -> float; UsageError for anything else.

    Example:
        >>> round(parse_eps("8/255"), 5)
        0.03137
    """
    from gdvision.errors import UsageError

    try:
        if "/" in text:
            num, den = text.split("/", 1)
            return float(num) / float(den)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise UsageError(f"--eps must be a number or a fraction like 8/255, got '{text}'") from None


def _output_names(a: Path, b: Path, perturb: str) -> dict[str, str]:
    """Stems for the outputs: the input stems, made distinct when both inputs share one."""
    sa, sb = a.stem, b.stem
    if sa == sb:
        sa, sb = sa + "_a", sb + "_b"
    names = {}
    if perturb in ("a", "both"):
        names["a"] = sa
    if perturb in ("b", "both"):
        names["b"] = sb
    return names


@handle_errors
def attack(
    a: Annotated[Path, typer.Argument(help="Image A: PNG, JPEG, TIFF, PGM/PPM, .npy (gray or RGB).")],
    b: Annotated[Path, typer.Argument(help="Image B.")],
    out_dir: Annotated[
        Path, typer.Option(help="Folder for <stem>_adv.png, <stem>_delta.png, report.json and matches.png.")
    ],
    mode: Annotated[
        str,
        typer.Option(help="match: make A and B match under the target H (targeted); unmatch: break their true match."),
    ] = "match",
    eps: Annotated[
        str, typer.Option(help="L-inf budget per pixel in [0, 1] intensity units, a number or a fraction (8/255).")
    ] = "8/255",
    steps: Annotated[
        int, typer.Option(help="Adam iterations (each one re-detects and re-describes both images).")
    ] = 150,
    lr: Annotated[
        float | None, typer.Option(help="Adam step size, in intensity units (default 0.01 for match, 0.003 unmatch).")
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
            "Default: texture for match, zero for unmatch.",
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
    stop_inliers: Annotated[
        int, typer.Option(help="match: stop once this many ratio matches are consistent with H (0 = all steps).")
    ] = 0,
    max_features: Annotated[int, typer.Option(help="Hessian keypoints kept per image (top-K).")] = 2500,
    no_opencv: Annotated[bool, typer.Option("--no-opencv", help="Skip the OpenCV SIFT transfer check.")] = False,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    seed: SeedOpt = None,
) -> None:
    """Optimise pixels, within an L-inf budget, to fool gdvision's feature matching (Hessian + SIFT + RANSAC).

    match: make two unrelated images match under a target homography (identity by default).

    unmatch: perturb a true pair until RANSAC no longer recovers its homography.

    The perturbed images are written as 8-bit PNGs, and every figure of the report is measured on those pixels:

    L-inf, L2, PSNR; inliers and corner error under gdvision match and (when installed) OpenCV SIFT + RANSAC.

    Exit 0 when the attack succeeded, 1 when it did not (outputs are written either way), 2 for bad usage.

    Examples:

      gdvision attack cat.png house.png --mode match --out-dir adv/

      gdvision attack a.png b.png --mode unmatch --eps 4/255 --true-h H.json --out-dir adv/ --json
    """
    from gdvision.errors import UsageError

    eps_v = parse_eps(eps)
    if target_h is not None and mode == "unmatch":
        raise UsageError("--target-h is for --mode match; give the true homography with --true-h")
    if true_h is not None and mode == "match":
        raise UsageError("--true-h is for --mode unmatch; give the homography to fake with --target-h")

    from gdvision.attack import AttackConfig, default_attack_features

    feats = default_attack_features()
    feats.max_features = max_features
    cfg = AttackConfig(
        mode=mode,
        eps=eps_v,
        steps=steps,
        lr=(0.01 if mode == "match" else 0.003) if lr is None else lr,
        perturb=perturb,
        alpha=alpha,
        beta=beta,
        features=feats,
        init=("texture" if mode == "match" else "zero") if init is None else init,
        focus=focus,
        loss=loss,
        stop_inliers=stop_inliers,
    )
    cfg.validate()
    names = _output_names(a, b, perturb)
    outputs = [out_dir / f"{s}_{kind}.png" for s in names.values() for kind in ("adv", "delta")]
    outputs += [out_dir / "report.json", out_dir / "matches.png"]
    for o in outputs:
        check_output(o, [p for p in (a, b, mask, mask_b, target_h, true_h) if p is not None])
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out-dir '{out_dir}' exists and is not a folder")

    import torch

    from gdvision.attack import attack_pair, evaluate_attack, match_config_for, perturbation_picture
    from gdvision.device import resolve_device, seed_everything
    from gdvision.errors import InputError, SolverError
    from gdvision.io import read_homography, read_image, to_gray, write_json, write_png
    from gdvision.match import match_images

    dev = resolve_device(device)
    seed_everything(seed)
    img_a, img_b = read_image(a), read_image(b)
    ta, tb = img_a.tensor(dev), img_b.tensor(dev)
    H = None
    if target_h is not None:
        H = torch.from_numpy(read_homography(target_h))
    elif true_h is not None:
        H = torch.from_numpy(read_homography(true_h))
    elif mode == "unmatch":
        try:
            H = match_images(ta, tb, match_config_for(cfg, 0 if seed is None else seed)).model.cpu()
        except SolverError as exc:
            raise InputError(f"unmatch: the clean pair does not match ({exc}); nothing to break") from None
    elif (img_a.width, img_a.height) != (img_b.width, img_b.height):
        raise UsageError(
            f"A is {img_a.width}x{img_a.height} and B is {img_b.width}x{img_b.height}: give --target-h for images "
            "of different sizes"
        )

    def load_mask(p: Path | None, name: str, ref):
        if p is None:
            return None
        m = read_image(p)
        if (m.width, m.height) != (ref.width, ref.height):
            raise InputError(
                f"mask '{p}' is {m.width}x{m.height} but image {name} is {ref.width}x{ref.height}: sizes must agree"
            )
        return (to_gray(m.tensor(dev)) > 0).float()

    ma = load_mask(mask, "A", img_a) if perturb in ("a", "both") else None
    mb = load_mask(mask_b if mask_b is not None else mask, "B", img_b) if perturb in ("b", "both") else None

    with progress_bar(not (quiet or json_out), f"attack ({mode})") as update:

        def on_step(pr) -> None:
            info = f"loss {pr.loss:.4f}"
            if pr.consistent is not None:
                info += f"  H-consistent matches {pr.consistent}"
            update(completed=pr.iteration, total=pr.steps, info=info)

        result = attack_pair(ta, tb, H, cfg, ma, mb, on_step)
        update(description="evaluating", info="")
        report, picture = evaluate_attack(
            ta, tb, result, H, cfg, opencv=not no_opencv, seed=0 if seed is None else seed
        )

    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    for key, stem in names.items():
        adv = result.adv_a if key == "a" else result.adv_b
        delta = result.delta_a if key == "a" else result.delta_b
        files[f"adv_{key}"] = str(write_png(out_dir / f"{stem}_adv.png", adv))
        files[f"delta_{key}"] = str(write_png(out_dir / f"{stem}_delta.png", perturbation_picture(delta, cfg.eps)))
    files["matches"] = str(write_png(out_dir / "matches.png", picture))
    report.update({"a": str(a), "b": str(b), "device": str(dev), "files": files})
    for key, img in (("a", img_a), ("b", img_b)):
        if img.bit_depth != 8:
            report.setdefault("notes", []).append(
                f"image {key.upper()} is {img.bit_depth}-bit; the output is 8-bit, so L-inf may exceed eps by up to "
                "half an 8-bit level where no 8-bit value lies within the budget"
            )
    files["report"] = str(out_dir / "report.json")
    write_json(out_dir / "report.json", report)
    ok = bool(report["gdvision_after"]["success"])
    if json_out:
        emit_json(report)
    else:
        g0, g1 = report["gdvision_before"], report["gdvision_after"]

        def fmt(r) -> str:
            ce = r.get("corner_error_px")
            return f"{r['inliers']} inliers, corner error {'none' if ce is None else f'{ce:.1f} px'}"

        pa, pb = report["perturbation"]["a"], report["perturbation"]["b"]
        say(
            quiet,
            f"attack ({mode}, eps {cfg.eps * 255:.3g}/255) {'succeeded' if ok else 'FAILED'} in "
            f"{result.seconds:.1f} s: gdvision match before {fmt(g0)}; after {fmt(g1)}",
        )
        say(
            quiet,
            f"PSNR A {pa['psnr_db']:.2f} dB, B {pb['psnr_db']:.2f} dB; L-inf A {pa['linf_255']:.0f}/255, "
            f"B {pb['linf_255']:.0f}/255",
        )
        if "opencv_after" in report:
            say(
                quiet,
                f"OpenCV SIFT (transfer): before {fmt(report['opencv_before'])}; after {fmt(report['opencv_after'])}",
            )
        say(quiet, f"wrote {out_dir}/: " + ", ".join(Path(f).name for f in files.values()))
    if not ok:
        raise typer.Exit(1)
