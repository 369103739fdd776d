"""``gdvision register`` as a task: read a pair, solve, judge, write the outputs, return the record.

Single-item mode (:func:`register_files`) and manifest mode (:class:`RegisterJob`) share every step:

1. outputs are claimed through the run's :class:`~gdvision.tasks.outputs.OutputPolicy` before anything is solved
   (single mode: ``--out``, ``--out-warped``, ``--out-overlay``; inputs are never replaced);
2. the inputs are read and checked (masks against their image's size, ``--init`` and ``--gt`` as invertible
   3x3 matrices, a ``--gt`` record's image sizes against the images) and each image must have texture
   (:func:`gdvision.register.verdict.textureless`), all before the solve;
3. pairs of equal sizes are solved as one batch (:func:`gdvision.register.register_batch`);
4. every result is judged (:func:`gdvision.register.verdict.judge`); with ``--init auto`` a pair whose direct
   result is rejected is solved again from a feature start (:func:`feature_start`: ``match``'s defaults, RANSAC,
   the model fitted to the inliers); a result still rejected is a failure that names the measure that decided
   it, and its files are not written; the record's ``start`` says ``direct``, ``features`` or ``file``;
5. :func:`build_record` makes the JSON record (``H`` A -> B, conventions, the verdict and its measures, the corner
   error against ``--gt``), which :func:`write_outputs` writes with the pictures.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gdvision._checks import check_choice, check_matrix
from gdvision.errors import InputError, SolverError
from gdvision.io.images import LoadedImage, read_homography, read_image, read_json, write_json, write_png
from gdvision.register.config import RegisterConfig, RegistrationResult
from gdvision.tasks.outputs import OutputPolicy
from gdvision.tasks.pairs import PairJob
from gdvision.tasks.protocol import Item, Outcome

PathLike = str | os.PathLike[str]

#: ``--init`` values that are not a file: ``auto`` (direct, then a feature start when rejected), ``none``.
INIT_MODES = ("auto", "none")


class RegistrationRejected(SolverError):
    """A registration whose verdict rejected it (exit 1); ``record`` holds what was found and the measures."""

    def __init__(self, message: str, record: dict[str, Any]) -> None:
        super().__init__(message)
        self.record = record


@dataclass
class Pair:
    """One loaded pair: images, validity masks (alpha and mask files combined), start and ground truth."""

    a: LoadedImage
    b: LoadedImage
    mask_a: torch.Tensor | None = None
    mask_b: torch.Tensor | None = None
    init: np.ndarray | None = None
    gt: np.ndarray | None = None


# --------------------------------------------------------------------------------------------- reading


def read_matrix(path: PathLike, flag: str) -> np.ndarray:
    """A homography file checked as an invertible, finite 3x3 matrix; one-line InputError naming ``flag``."""
    try:
        with np.errstate(all="ignore"):  # extreme entries: a clean error below, not numpy warnings
            h = read_homography(path)
    except InputError as exc:
        raise InputError(f"{flag} {exc}") from None
    check_matrix(h, f"{flag} '{path}'", invertible=True)
    return h


def split_init(init: PathLike | None) -> tuple[str, PathLike | None]:
    """``(init_mode, file)`` of an ``--init`` value: ``auto``/``none`` are modes, anything else a file.

    >>> split_init("auto"), split_init(None), split_init("H.json")
    (('auto', None), ('none', None), ('none', 'H.json'))
    """
    if init is None or str(init) in INIT_MODES:
        return ("none" if init is None else str(init)), None
    return "none", init


def read_gt(path: PathLike, a: LoadedImage, b: LoadedImage) -> np.ndarray:
    """The true H from ``path``; a register record's ``size_a``/``size_b`` must match the images (InputError)."""
    h = read_matrix(path, "--gt")
    data = read_json(path)
    if isinstance(data, dict):
        for key, img in (("size_a", a), ("size_b", b)):
            size = data.get(key)
            if size is not None and list(size) != [img.width, img.height]:
                raise InputError(
                    f"--gt '{path}' is for images of {key} {size[0]}x{size[1]}, but '{img.path}' is "
                    f"{img.width}x{img.height}"
                )
    return h


def read_mask(path: PathLike | None, img: LoadedImage, device: torch.device) -> torch.Tensor | None:
    """A validity mask file (nonzero = valid) combined with the image's own alpha; None if neither exists."""
    m = img.mask_tensor(device)
    if path is None:
        return m
    mk = read_image(path)
    if (mk.height, mk.width) != (img.height, img.width):
        raise InputError(f"mask '{path}' is {mk.width}x{mk.height}, image is {img.width}x{img.height}")
    t = torch.from_numpy(mk.array.max(axis=2) > 0).float()[None, None].to(device)
    return t if m is None else t * m


def check_texture(pair: Pair, device: torch.device) -> str | None:
    """None if both images have texture to align; else why not, naming the image."""
    from gdvision.register.verdict import textureless

    for img, mask in ((pair.a, pair.mask_a), (pair.b, pair.mask_b)):
        why = textureless(img.tensor(device), mask)[0]
        if why is not None:
            return f"image '{img.path}' has {why}"
    return None


# --------------------------------------------------------------------------------------------- solving


def _stack_masks(pairs: list[Pair], side: str, device: torch.device) -> torch.Tensor | None:
    masks = [getattr(p, f"mask_{side}") for p in pairs]
    if all(m is None for m in masks):
        return None
    out = []
    for p, m in zip(pairs, masks, strict=True):
        img = getattr(p, side)
        out.append(torch.ones(1, 1, img.height, img.width, device=device) if m is None else m.to(device))
    return torch.cat(out)


def _solve(
    pairs: list[Pair], cfg: RegisterConfig, device: torch.device, progress: Callable[[Any], None] | None = None
) -> list[dict[str, Any]]:
    """One batched solve of pairs of equal sizes from their ``init`` (None: the direct start), each result judged."""
    from gdvision.color import to_gray
    from gdvision.register import judge, register_batch

    a = torch.cat([to_gray(p.a.tensor(device)) for p in pairs])
    b = torch.cat([to_gray(p.b.tensor(device)) for p in pairs])
    ma, mb = _stack_masks(pairs, "a", device), _stack_masks(pairs, "b", device)
    init = None
    if any(p.init is not None for p in pairs):
        init = torch.from_numpy(np.stack([np.eye(3) if p.init is None else p.init for p in pairs]))
    res = register_batch(a, b, cfg, ma, mb, init, progress)
    verdicts = judge(a, b, res.H, ma, mb, res.failed)
    per_pair = res.seconds / len(pairs)
    return [
        build_record(res, k, cfg, p.a, p.b, device, p.gt, per_pair, verdicts[k].as_dict()) for k, p in enumerate(pairs)
    ]


@dataclass
class FeatureStart:
    """What :func:`feature_start` found: the start ``H`` (None when matching failed), ``info`` for the record,
    and the matches that check a result (:func:`gdvision.register.verdict.feature_check`): the RANSAC inliers
    ``pts_a`` and, in B, their matches (homography) or their images under the fitted model (simpler models)."""

    H: np.ndarray | None
    info: dict[str, Any]
    pts_a: torch.Tensor | None = None
    pts_b: torch.Tensor | None = None


def feature_start(pair: Pair, model: str, device: torch.device) -> FeatureStart:
    """A start A -> B from ``match``'s default pipeline (features, ratio test, RANSAC homography).

    For a model other than ``homography`` the model is fitted by least squares to the RANSAC inliers
    (:func:`gdvision.register.motion.fit_motion`). ``info``: ``matches``, ``inliers``, ``seconds``, and
    ``error`` when matching finds no model.
    """
    import time

    from gdvision.features import MatchConfig, match_images
    from gdvision.register.motion import fit_motion

    t0 = time.perf_counter()
    try:
        res = match_images(pair.a.tensor(device), pair.b.tensor(device), MatchConfig())
    except SolverError as exc:
        return FeatureStart(None, {"error": str(exc), "seconds": time.perf_counter() - t0})
    inl = res.inliers
    pa, pb = res.pts_a[inl].cpu().double(), res.pts_b[inl].cpu().double()
    Ht = res.model if model == "homography" else fit_motion(pa, pb, model)
    Ht = Ht.detach().cpu().to(torch.float64)
    if model != "homography":  # the matches as the model sees them (a similarity cannot follow a perspective)
        q = torch.cat([pa, torch.ones_like(pa[:, :1])], 1) @ Ht.T
        pb = q[:, :2] / q[:, 2:3]
    info = {"matches": int(inl.numel()), "inliers": int(inl.sum()), "seconds": time.perf_counter() - t0}
    H = Ht.numpy()
    if not np.isfinite(H).all() or abs(np.linalg.det(H)) < 1e-12:
        return FeatureStart(None, {**info, "error": f"the {model} fitted to the feature matches is degenerate"})
    return FeatureStart(H, info, pa, pb)


def _with_features(record: dict[str, Any], fs: FeatureStart, started_there: bool = False) -> dict[str, Any]:
    """The record with its verdict checked against the feature matches of ``fs`` (``started_there``: the result
    was refined from them, so fewer matches decide, see :data:`~gdvision.register.verdict.MIN_START_INLIERS`)."""
    from gdvision.register import verdict as vd

    H = torch.tensor(record["H"], dtype=torch.float64)
    n = vd.MIN_START_INLIERS if started_there else vd.MIN_FEATURE_INLIERS
    return {**record, "verdict": vd.feature_check(record["verdict"], H, fs.pts_a, fs.pts_b, n)}


def solve_pairs(
    pairs: list[Pair],
    cfg: RegisterConfig,
    device: torch.device,
    progress: Callable[[Any], None] | None = None,
    init_mode: str = "none",
) -> list[dict[str, Any]]:
    """Register pairs of equal sizes as one batch and judge each result: one record per pair (see build_record).

    Images are converted to luminance so that gray and colour images batch together. Each record's ``start``
    says where the solve started: ``file`` (the pair's ``init``), ``direct`` or ``features``.
    ``init_mode="none"``: the direct solve only. ``init_mode="auto"``: for a pair without ``init`` whose direct
    result the verdict rejects, or whose ``gradient_agreement`` is below
    :data:`~gdvision.register.verdict.SUSPECT_AGREEMENT`, features are matched (:func:`feature_start`) and the
    direct result is also judged by its agreement with them (:func:`~gdvision.register.verdict.feature_check`);
    if that rejects it, the pair is solved again from the feature start, and that result, judged the same way,
    is the answer (``start: features``; the direct verdict is kept under ``direct_verdict``).
    """
    from gdvision.register.verdict import SUSPECT_AGREEMENT

    check_choice(init_mode, "init_mode", INIT_MODES)
    records = _solve(pairs, cfg, device, progress)
    for p, rec in zip(pairs, records, strict=True):
        rec["start"] = "file" if p.init is not None else "direct"
    if init_mode != "auto":
        return records
    starts: dict[int, FeatureStart] = {}
    for k, (p, rec) in enumerate(zip(pairs, records, strict=True)):
        v = rec["verdict"]
        if p.init is None and (not v["ok"] or v["measures"]["gradient_agreement"] < SUSPECT_AGREEMENT):
            fs = starts[k] = feature_start(p, cfg.model, device)
            records[k] = {**(_with_features(rec, fs) if fs.H is not None else rec), "features": fs.info}
    todo = [k for k, fs in starts.items() if fs.H is not None and not records[k]["verdict"]["ok"]]
    if not todo:
        return records
    again = _solve([dataclasses.replace(pairs[k], init=starts[k].H) for k in todo], cfg, device, progress)
    for k, rec in zip(todo, again, strict=True):
        fs = starts[k]
        rec = _with_features(rec, fs, started_there=True)
        rec["seconds"] += records[k]["seconds"] + fs.info["seconds"]
        records[k] = {**rec, "start": "features", "features": fs.info, "direct_verdict": records[k]["verdict"]}
    return records


def build_record(
    res: RegistrationResult,
    k: int,
    cfg: RegisterConfig,
    img_a: LoadedImage,
    img_b: LoadedImage,
    device: torch.device,
    H_gt: np.ndarray | None = None,
    seconds: float | None = None,
    verdict: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON record of item ``k`` of a result (what ``--out`` and ``--json`` hold)."""
    from gdvision.coords import H_CONVENTION, H_DIRECTION, mean_corner_error

    H = res.H[k].detach().cpu().to(torch.float64)
    record: dict[str, Any] = {
        "H": H.tolist(),
        "direction": H_DIRECTION,
        "convention": H_CONVENTION,
        "a": str(img_a.path),
        "b": str(img_b.path),
        "size_a": [img_a.width, img_a.height],
        "size_b": [img_b.width, img_b.height],
        "model": cfg.model,
        "loss": cfg.loss,
        "level_loss": [lv[k] for lv in res.level_loss],
        "iterations": res.iterations,
        "seconds": res.seconds if seconds is None else seconds,
        "device": str(device),
    }
    if verdict is not None:
        record["verdict"] = verdict
    if H_gt is not None:
        gt = torch.from_numpy(H_gt).to(torch.float64)
        record["corner_error_px"] = float(mean_corner_error(H, gt, img_a.height, img_a.width))
    return record


def rejection(record: dict[str, Any]) -> str | None:
    """None if the record's verdict accepts it, else the one-line reason (naming the measure and its value)."""
    v = record.get("verdict")
    if v is None or v["ok"]:
        return None
    msg = f"registration rejected: {v['reason']}"
    if record.get("start") == "features":
        msg += f" (from the feature start; the direct start: {record['direct_verdict'].get('reason')})"
    elif "error" in record.get("features", {}):
        msg += f" (no feature start: {record['features']['error']})"
    return msg


# --------------------------------------------------------------------------------------------- writing


def write_outputs(
    record: dict[str, Any],
    out: Path | None = None,
    out_warped: Path | None = None,
    out_overlay: Path | None = None,
    pair: Pair | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, str]:
    """Write the record (``out``) and the pictures of A warped into B's frame; the written paths by kind.

    Paths must have been claimed through the run's output policy.
    """
    written: dict[str, str] = {}
    if out is not None:
        write_json(out, record)
        written["json"] = str(out)
    if (out_warped is not None or out_overlay is not None) and pair is not None:
        from gdvision.viz import register_overlay, warp_into

        a, b = pair.a.tensor(device), pair.b.tensor(device)
        H = torch.tensor(record["H"], dtype=torch.float64)
        warped, mask = warp_into(a, H, b.shape[-2:])
        if out_warped is not None:
            write_png(out_warped, warped, bits=16 if pair.a.bit_depth == 16 else 8)
            written["warped"] = str(out_warped)
        if out_overlay is not None:
            write_png(out_overlay, register_overlay(warped, mask, b))
            written["overlay"] = str(out_overlay)
    return written


# --------------------------------------------------------------------------------------------- single item


def register_files(
    a: PathLike,
    b: PathLike,
    cfg: RegisterConfig,
    device: torch.device,
    *,
    mask_a: PathLike | None = None,
    mask_b: PathLike | None = None,
    init: PathLike | None = None,
    gt: PathLike | None = None,
    out: PathLike | None = None,
    out_warped: PathLike | None = None,
    out_overlay: PathLike | None = None,
    overwrite: bool = False,
    progress: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """``gdvision register A B``: the record of one pair, its files written; RegistrationRejected if judged wrong.

    ``init``: ``"auto"`` (a feature start when the direct result is rejected, see :func:`solve_pairs`),
    ``"none"`` or None (the direct solve only), or a homography file A -> B to start from.

    Outputs are claimed before anything is read or solved: an output that is an input of the run, or that
    exists without ``overwrite``, is a UsageError (exit 2) and nothing is written.
    """
    init_mode, init = split_init(init)
    policy = OutputPolicy(None, inputs=[a, b, mask_a, mask_b, init, gt], overwrite=overwrite)
    claimed = policy.claim_all({"--out": out, "--out-warped": out_warped, "--out-overlay": out_overlay})
    img_a, img_b = read_image(a), read_image(b)
    pair = Pair(img_a, img_b, read_mask(mask_a, img_a, device), read_mask(mask_b, img_b, device))
    pair.init = read_matrix(init, "--init") if init is not None else None
    pair.gt = read_gt(gt, img_a, img_b) if gt is not None else None
    why = check_texture(pair, device)
    if why is not None:
        raise InputError(why)
    record = solve_pairs([pair], cfg, device, progress, init_mode)[0]
    reason = rejection(record)
    if reason is not None:
        raise RegistrationRejected(reason, record)
    write_outputs(record, claimed.get("--out"), claimed.get("--out-warped"), claimed.get("--out-overlay"), pair, device)
    return record


# --------------------------------------------------------------------------------------------- manifest


class RegisterJob(PairJob):
    """``gdvision register --manifest``: batched registration of pairs of equal sizes and options."""

    name = "register"
    optional = ("gt", "model", "loss")
    metric_keys = ("corner_error_px", "iterations")

    def __init__(self, cfg: RegisterConfig, device: torch.device, init_mode: str = "none") -> None:
        super().__init__(cfg, device)
        self.init_mode = check_choice(init_mode, "init_mode", INIT_MODES)

    def load(self, item: Item) -> Pair:
        a, b = read_image(item.path("a")), read_image(item.path("b"))
        gt = item.get("gt")
        return Pair(a, b, a.mask_tensor(), b.mask_tensor(), None, read_gt(gt, a, b) if gt else None)

    def batch_key(self, item: Item, loaded: Any) -> Hashable:
        a, b = loaded.a, loaded.b
        return (a.height, a.width, b.height, b.width, item.get("model"), item.get("loss"))

    def solve(self, group: list[tuple[Item, Any]]) -> list[Outcome]:
        item0 = group[0][0]
        overrides = {k: item0.get(k) for k in ("model", "loss") if item0.get(k)}
        cfg = dataclasses.replace(self.cfg, **overrides).validate()
        outcomes: dict[int, Outcome] = {}
        todo = []
        for n, (item, pair) in enumerate(group):
            why = check_texture(pair, self.device)
            if why is not None:
                outcomes[n] = Outcome(item, error=why)
            else:
                todo.append(n)
        if todo:
            records = solve_pairs([group[n][1] for n in todo], cfg, self.device, init_mode=self.init_mode)
            for n, record in zip(todo, records, strict=True):
                reason = rejection(record)
                outcomes[n] = Outcome(group[n][0], record if reason is None else None, reason)
        return self.finish([outcomes[n] for n in range(len(group))])


__all__ = [
    "Pair",
    "RegisterJob",
    "RegistrationRejected",
    "INIT_MODES",
    "build_record",
    "FeatureStart",
    "feature_start",
    "read_gt",
    "read_mask",
    "read_matrix",
    "register_files",
    "solve_pairs",
    "split_init",
    "write_outputs",
]
