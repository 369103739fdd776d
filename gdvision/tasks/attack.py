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

from collections.abc import Callable, Hashable, Iterable
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
    perturbation may be nonzero (``mask`` for both images unless ``mask_b``). ``report["success"]`` says whether
    the attack succeeded under every attacked target. With ``cfg.eps_auto`` the budget search runs
    (:func:`gdvision.attack.search_budget`): the images at eps* (at eps-max when unbroken) are saved and evaluated,
    and ``report["budget_search"]`` holds eps*, the rungs tried and their times.
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
    search = None
    if cfg.eps_auto:
        result, cfg, search = _search(ta, tb, H, cfg, ma, mb, progress)
    else:
        result = attack_pair(ta, tb, H, cfg, ma, mb, progress)
    report, (before, after) = evaluate_attack(ta, tb, result, H, cfg, opencv=opencv, seed=0 if seed is None else seed)
    if search is not None:
        report["budget_search"] = search
        report["seconds"] = search["seconds"]
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


def _search(ta: Any, tb: Any, H: Any, cfg: AttackConfig, ma: Any, mb: Any, progress: Any) -> tuple[Any, Any, dict]:
    """``--eps auto``: the budget search; returns the attack to save (at eps*, or at eps-max when unbroken), the
    config at that budget and the report's ``budget_search`` record."""
    from dataclasses import replace

    from gdvision.attack import AttackResult, search_budget

    found = search_budget(ta, tb, H, cfg, ma, mb, progress)
    top = int(round(cfg.eps_max * 255))
    level = found.level
    if level == 0:  # the clean pair is already broken (unmatch) / matched: nothing to change
        result = AttackResult(ta, tb, ta * 0, tb * 0, [], 0, 0.0)
    else:
        result = found.result if found.result is not None else found.last
    rec = {
        "eps_star_255": level,
        "eps_max_255": top,
        "verdict": f"eps* = {level}/255" if level is not None else f"unbroken at eps-max {top}/255",
        "rungs": found.rungs,
        "steps": found.steps,
        "seconds": found.seconds,
        "images_at": "eps*" if level is not None else "eps-max",
    }
    return result, replace(cfg, eps=(top if level is None else max(level, 1)) / 255.0, eps_auto=False), rec


def robustness_curve(levels: dict[str, int | None], top: int) -> dict[str, Any]:
    """The robustness curve of a run: the fraction of pairs broken at or below each budget 0..``top`` (8-bit levels).

    ``levels``: eps* in levels per pair id (None: unbroken at ``top``).

    >>> c = robustness_curve({"p1": 2, "p2": None, "p3": 0}, 4)
    >>> c["fraction_broken"], c["median_eps_star_255"]
    ([0.3333333333333333, 0.3333333333333333, 0.6666666666666666, 0.6666666666666666, 0.6666666666666666], 2)
    """
    n = max(len(levels), 1)
    known = [v for v in levels.values() if v is not None]
    frac = [sum(v <= k for v in known) / n for k in range(top + 1)]
    return {
        "eps_255": list(range(top + 1)),
        "fraction_broken": frac,
        "pairs": len(levels),
        "eps_star_255": levels,
        "median_eps_star_255": median_eps_star(levels.values()),
    }


def median_eps_star(levels: Iterable[int | None]) -> int | None:
    """The (lower) median of eps* over all pairs, an unbroken pair (None) counting as above every budget: None when
    half or more are unbroken, or there are no pairs.

    >>> median_eps_star([3, None, 5]), median_eps_star([2, None, None]), median_eps_star([4, 6])
    (5, None, 4)
    """
    vals = list(levels)
    ranked = sorted(v for v in vals if v is not None) + [None] * sum(v is None for v in vals)
    return ranked[(len(ranked) - 1) // 2] if ranked else None


def write_robustness(out_dir: Path, dest_json: Path, dest_png: Path | None) -> dict[str, Any] | None:
    """Gather eps* of every ``<out_dir>/<id>/report.json`` with a budget search, write the curve (JSON, and a plot
    when ``dest_png`` and matplotlib is importable); None when no report has one."""
    import json

    from gdvision.io.images import atomic_write_bytes, write_json

    levels: dict[str, int | None] = {}
    top = 0
    for rep_path in sorted(Path(out_dir).glob("*/report.json")):
        rep = json.loads(rep_path.read_text())
        bs = rep.get("budget_search")
        if bs:
            levels[rep_path.parent.name] = bs["eps_star_255"]
            top = max(top, int(bs["eps_max_255"]))
    if not levels:
        return None
    curve = robustness_curve(levels, top)
    write_json(dest_json, curve)
    if dest_png is not None:
        from gdvision.report.plots import step_curve

        try:
            png = step_curve(
                "robustness curve",
                curve["eps_255"],
                curve["fraction_broken"],
                "L-inf budget (8-bit levels)",
                "fraction of pairs broken",
            )
        except UsageError:  # matplotlib (the optional report extra) is not installed: the JSON is the result
            return curve
        atomic_write_bytes(dest_png, png)
    return curve


def attack_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The numbers of a report that a batch log keeps: success, inliers and corner error after, PSNR, L-inf.

    >>> rep = {"gdvision_after": {"success": True, "inliers": 31, "corner_error_px": 2.0}, "perturbation": {}}
    >>> attack_metrics(rep)
    {'success': 1.0, 'inliers_after': 31.0, 'corner_error_after_px': 2.0}
    """
    after = report["gdvision_after"]
    ok = report.get("success", after["success"])
    out: dict[str, float] = {"success": float(bool(ok)), "inliers_after": float(after["inliers"])}
    bs = report.get("budget_search")
    if bs:
        out["eps_star_255"] = float(bs["eps_max_255"] + 1 if bs["eps_star_255"] is None else bs["eps_star_255"])
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


__all__ = [
    "AttackJob",
    "attack_metrics",
    "output_files",
    "output_names",
    "median_eps_star",
    "robustness_curve",
    "run_attack",
    "write_robustness",
]
