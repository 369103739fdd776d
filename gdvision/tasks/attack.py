"""Run one attack on files: read the pair, attack, evaluate on the saved 8-bit PNGs, write every output.

Used by ``gdvision attack`` (one pair) and its ``--manifest`` runs (:class:`AttackJob`). Outputs in
``out_dir``: ``<stem>_adv.png`` and ``<stem>_delta.png`` (the perturbation magnified) for each perturbed image,
``matches.png`` (matches before and after) and ``report.json``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import torch

from gdvision.attack.solver import AttackConfig, attack_pair, evaluate_attack, match_config_for, perturbation_picture
from gdvision.device import resolve_device, seed_everything
from gdvision.errors import InputError, SolverError, UsageError
from gdvision.features.match import match_images
from gdvision.io.images import read_homography, read_image, to_gray, write_json, write_png
from gdvision.runs.engine import Item, Outcome
from gdvision.tasks.pairs import pair_id


def output_names(a: Path, b: Path, perturb: str) -> dict[str, str]:
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


def output_files(a: Path, b: Path, perturb: str, out_dir: Path) -> list[Path]:
    """Every file :func:`run_attack_job` writes for this pair."""
    names = output_names(a, b, perturb)
    files = [out_dir / f"{s}_{kind}.png" for s in names.values() for kind in ("adv", "delta")]
    return files + [out_dir / "report.json", out_dir / "matches.png"]


def run_attack_job(
    a: Path,
    b: Path,
    out_dir: Path,
    cfg: AttackConfig,
    target_h: Path | None = None,
    true_h: Path | None = None,
    mask: Path | None = None,
    mask_b: Path | None = None,
    device: str = "auto",
    seed: int | None = None,
    opencv: bool = True,
    progress: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Attack the pair (A, B) as ``cfg`` says, write the outputs into ``out_dir``, return the report (JSON-able).

    ``target_h`` (match) / ``true_h`` (unmatch): JSON homographies A -> B in pixels; by default identity (match,
    equal sizes only) or what gdvision ``match`` finds on the clean pair (unmatch). ``mask`` / ``mask_b``: where the
    perturbation may be nonzero. ``report["gdvision_after"]["success"]`` says whether the attack succeeded.
    """
    dev = resolve_device(device)
    seed_everything(seed)
    img_a, img_b = read_image(a), read_image(b)
    ta, tb = img_a.tensor(dev), img_b.tensor(dev)
    H = None
    if target_h is not None:
        H = torch.from_numpy(read_homography(target_h))
    elif true_h is not None:
        H = torch.from_numpy(read_homography(true_h))
    elif cfg.mode == "unmatch":
        try:
            H = match_images(ta, tb, match_config_for(cfg, 0 if seed is None else seed)).model.cpu()
        except SolverError as exc:
            raise InputError(f"unmatch: the clean pair does not match ({exc}); nothing to break") from None
    elif (img_a.width, img_a.height) != (img_b.width, img_b.height):
        raise UsageError(
            f"A is {img_a.width}x{img_a.height} and B is {img_b.width}x{img_b.height}: give --target-h for images "
            "of different sizes"
        )

    def load_mask(p: Path | None, name: str, ref: Any) -> torch.Tensor | None:
        if p is None:
            return None
        m = read_image(p)
        if (m.width, m.height) != (ref.width, ref.height):
            raise InputError(
                f"mask '{p}' is {m.width}x{m.height} but image {name} is {ref.width}x{ref.height}: sizes must agree"
            )
        return (to_gray(m.tensor(dev)) > 0).float()

    ma = load_mask(mask, "A", img_a) if cfg.perturb in ("a", "both") else None
    mb = load_mask(mask_b if mask_b is not None else mask, "B", img_b) if cfg.perturb in ("b", "both") else None
    result = attack_pair(ta, tb, H, cfg, ma, mb, progress)
    report, picture = evaluate_attack(ta, tb, result, H, cfg, opencv=opencv, seed=0 if seed is None else seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    for key, stem in output_names(a, b, cfg.perturb).items():
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
    return report


def attack_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The numbers of a report that a batch log keeps: success, inliers and corner error after, PSNR, L-inf."""
    after = report["gdvision_after"]
    out: dict[str, float] = {"success": float(bool(after["success"])), "inliers_after": float(after["inliers"])}
    if after.get("corner_error_px") is not None:
        out["corner_error_after_px"] = float(after["corner_error_px"])
    pert = [p for p in report["perturbation"].values() if p]
    if pert:
        out["psnr_db_min"] = min(float(p["psnr_db"]) for p in pert)
        out["linf_255_max"] = max(float(p["linf_255"]) for p in pert)
    return out


class AttackJob:
    """``gdvision attack --manifest``: one attack per pair; adversarial PNGs and report in ``<out_dir>/<id>/``."""

    name = "attack"
    required = ("a", "b")
    optional = ("target_h", "true_h", "mask")
    path_columns = ("a", "b", "target_h", "true_h", "mask")
    error_metric = None

    def __init__(self, cfg: Any, device: str, seed: int | None, opencv: bool = True, progress: Any = None) -> None:
        self.cfg, self.device, self.seed, self.opencv, self.progress = cfg, device, seed, opencv, progress

    def item_id(self, fields: dict[str, str]) -> str:
        return pair_id(fields)

    def output_of(self, item_id: str, out_dir: Path) -> Path:
        return out_dir / item_id

    def load(self, item: Item) -> None:
        for col in self.path_columns:
            if item.get(col) and not item.path(col).exists():
                raise UsageError(f"file not found: '{item.path(col)}'")

    def batch_key(self, item: Item, loaded: Any) -> Hashable | None:
        return None

    def solve(self, group: list[tuple[Item, Any]]) -> list[Outcome]:
        out = []
        for item, _ in group:
            opt = {k: item.path(k) for k in ("target_h", "true_h", "mask") if item.get(k)}
            report = run_attack_job(
                item.path("a"),
                item.path("b"),
                item.out,
                self.cfg,
                **opt,
                device=self.device,
                seed=self.seed,
                opencv=self.opencv,
                progress=self.progress,
            )
            out.append(Outcome(item, {"outputs": report["files"], "metrics": attack_metrics(report), **report}))
        return out


__all__ = ["AttackJob", "attack_metrics", "output_files", "output_names", "run_attack_job"]
