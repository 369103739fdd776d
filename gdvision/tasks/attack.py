"""The ``attack`` task: read a pair, attack it, evaluate on the saved 8-bit pixels, write every output.

One function does the file-level work for both modes: :func:`run_attack`. ``gdvision attack A B`` calls it without
``claim``, so it builds the run's own :class:`~gdvision.tasks.outputs.OutputPolicy`; ``--manifest`` runs call it
through :class:`AttackJob` with the item's claim (:meth:`gdvision.tasks.protocol.Item.claim`). Every output is
claimed before anything is read or solved (an attack takes minutes: a refused output must not come after it).

Outputs in ``out_dir``: ``<stem>_adv.png`` and ``<stem>_delta.png`` (the perturbation magnified) for each perturbed
image, ``matches.png`` (matches before and after) and ``report.json``.

This module imports torch only when an attack runs, so option and output errors come before that (~3 s).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gdvision.errors import InputError, SolverError, UsageError
from gdvision.tasks.outputs import OutputPolicy
from gdvision.tasks.protocol import Item, Outcome

if TYPE_CHECKING:
    from gdvision.attack import AttackConfig


def output_names(a: Path, b: Path, perturb: str) -> dict[str, str]:
    """Stems for the outputs of the perturbed images: the input stems, made distinct when both share one.

    >>> output_names(Path("x/im.png"), Path("y/im.png"), "both")
    {'a': 'im_a', 'b': 'im_b'}
    """
    sa, sb = a.stem, b.stem
    if sa == sb:
        sa, sb = sa + "_a", sb + "_b"
    names = {}
    if perturb in ("a", "both"):
        names["a"] = sa
    if perturb in ("b", "both"):
        names["b"] = sb
    return names


def output_files(a: Path, b: Path, perturb: str, out_dir: Path) -> dict[str, Path]:
    """Every file :func:`run_attack` writes for this pair, by its key in the report's ``files``.

    >>> sorted(output_files(Path("a.png"), Path("b.png"), "a", Path("out")))
    ['adv_a', 'delta_a', 'matches', 'report']
    """
    files = {}
    for key, stem in output_names(a, b, perturb).items():
        files[f"adv_{key}"] = out_dir / f"{stem}_adv.png"
        files[f"delta_{key}"] = out_dir / f"{stem}_delta.png"
    files["matches"] = out_dir / "matches.png"
    files["report"] = out_dir / "report.json"
    return files


def _check_inputs(paths: list[Path | None]) -> None:
    for p in paths:
        if p is not None and not Path(p).is_file():
            raise UsageError(f"file not found: '{p}'")


def run_attack(
    a: Path,
    b: Path,
    out_dir: Path,
    cfg: AttackConfig,
    target_h: Path | None = None,
    true_h: Path | None = None,
    mask: Path | None = None,
    mask_b: Path | None = None,
    *,
    claim: Callable[[Path], Path] | None = None,
    overwrite: bool = False,
    device: str = "auto",
    seed: int | None = None,
    opencv: bool = True,
    progress: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Attack the pair (A, B) as ``cfg`` says, write the outputs into ``out_dir``, return the report (JSON-able).

    ``claim(path)`` checks each output against the run's output policy and returns the path to write (see
    :meth:`gdvision.tasks.outputs.OutputPolicy.claim`); every output is claimed first. Without ``claim``
    (``gdvision attack A B``) the run gets its own policy: nothing is written outside ``out_dir``, no input is
    replaced, and an existing output is refused (UsageError, exit 2) unless ``overwrite``.

    ``target_h`` (match) / ``true_h`` (unmatch): JSON homographies A -> B in pixels; by default identity (match,
    equal sizes only) or what gdvision ``match`` finds on the clean pair (unmatch). ``mask`` / ``mask_b``: where the
    perturbation may be nonzero (``mask`` for both images unless ``mask_b``). ``report["gdvision_after"]["success"]``
    says whether the attack succeeded.
    """
    inputs = [a, b, target_h, true_h, mask, mask_b]
    _check_inputs(inputs)
    if claim is None:
        policy = OutputPolicy(out_dir, inputs=inputs, overwrite=overwrite)
        policy.check_out_dir()
        claim = policy.claim
    names = output_files(a, b, cfg.perturb, out_dir)
    dest = {key: claim(path) for key, path in names.items()}

    import torch

    from gdvision.attack import attack_pair, evaluate_attack, match_config_for
    from gdvision.device import resolve_device, seed_everything
    from gdvision.features import match_images
    from gdvision.io.images import read_homography, read_image, to_gray, write_json, write_png
    from gdvision.viz import before_after_matches, perturbation_picture

    cfg = cfg.resolved()
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
    report, (before, after) = evaluate_attack(ta, tb, result, H, cfg, opencv=opencv, seed=0 if seed is None else seed)
    files: dict[str, str] = {}
    for key in ("a", "b"):
        if f"adv_{key}" in dest:
            adv, delta = (result.adv_a, result.delta_a) if key == "a" else (result.adv_b, result.delta_b)
            write_png(dest[f"adv_{key}"], adv)
            write_png(dest[f"delta_{key}"], perturbation_picture(delta, cfg.eps))
            files[f"adv_{key}"], files[f"delta_{key}"] = str(names[f"adv_{key}"]), str(names[f"delta_{key}"])
    write_png(dest["matches"], before_after_matches((ta, tb, before), (result.adv_a, result.adv_b, after)))
    files["matches"] = str(names["matches"])
    report.update({"a": str(a), "b": str(b), "device": str(dev), "files": files})
    for key, img in (("a", img_a), ("b", img_b)):
        if img.bit_depth != 8:
            report.setdefault("notes", []).append(
                f"image {key.upper()} is {img.bit_depth}-bit; the output is 8-bit, so L-inf may exceed eps by up to "
                "half an 8-bit level where no 8-bit value lies within the budget"
            )
    files["report"] = str(names["report"])
    write_json(dest["report"], report)
    return report


def attack_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The numbers of a report that a batch log keeps: success, inliers and corner error after, PSNR, L-inf.

    >>> rep = {"gdvision_after": {"success": True, "inliers": 31, "corner_error_px": 2.0}, "perturbation": {}}
    >>> attack_metrics(rep)
    {'success': 1.0, 'inliers_after': 31.0, 'corner_error_after_px': 2.0}
    """
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
        from gdvision.tasks.pairs import pair_id

        return pair_id(fields)

    def output_of(self, item_id: str, out_dir: Path) -> Path:
        return out_dir / item_id

    def load(self, item: Item) -> None:
        _check_inputs([item.path(col) if item.get(col) else None for col in self.path_columns])

    def batch_key(self, item: Item, loaded: Any) -> Hashable | None:
        return None

    def solve(self, group: list[tuple[Item, Any]]) -> list[Outcome]:
        out = []
        for item, _ in group:
            opt = {k: item.path(k) for k in ("target_h", "true_h", "mask") if item.get(k)}
            report = run_attack(
                item.path("a"),
                item.path("b"),
                item.out,
                self.cfg,
                **opt,
                claim=item.claim,
                device=self.device,
                seed=self.seed,
                opencv=self.opencv,
                progress=self.progress,
            )
            out.append(Outcome(item, {"outputs": report["files"], "metrics": attack_metrics(report), **report}))
        return out


__all__ = ["AttackJob", "attack_metrics", "output_files", "output_names", "run_attack"]
