"""The pictures of one item of a run, as small embedded thumbnails, each with the file it comes from.

Per command (what a manifest run leaves, or what can be drawn from its record):

- ``register``: the checkerboard overlay of A warped by the found H into B (:func:`gdvision.viz.register_overlay`);
- ``match``: A and B side by side with lines from a grid of A's points to where the found H puts them in B (a
  manifest run keeps no list of matches; single-item ``--out-viz`` draws the matches themselves);
- ``depth``: the depth preview, the confidence, and with ground truth the relative error map;
- ``edges``: the input and the output;
- ``attack``: the original and the adversarial image, the perturbation, the before/after matches.

A file that is gone (deleted after the run) gives a :class:`Picture` with no data and a ``note`` that says so;
nothing here raises for a missing or unreadable file. Thumbnails are downscaled by block means to at most
``size`` pixels on their longer side and encoded as JPEG (:func:`thumbnail`).

Example:
    >>> import numpy as np
    >>> data = thumbnail(np.ones((600, 300, 3)), size=200)
    >>> import imageio.v3 as iio
    >>> iio.imread(data).shape
    (200, 100, 3)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gdvision.report.load import resolve_output

THUMB = 300  # longer side of a thumbnail, pixels
WIDE = 520  # longer side of a side-by-side picture


@dataclass
class Picture:
    """One thumbnail: ``data`` (JPEG bytes) or None with ``note`` saying why; ``link``: the file it shows."""

    label: str
    data: bytes | None = None
    link: Path | None = None
    note: str = ""


def _as_hwc(image: Any) -> np.ndarray:
    """(H, W, 1 or 3) float array of a (1, C, H, W) tensor or an (H, W) / (H, W, C) array."""
    if hasattr(image, "detach"):
        arr = image.detach().cpu().float().numpy()
        arr = (arr[0] if arr.ndim == 4 else arr).transpose(1, 2, 0)
    else:
        arr = np.asarray(image, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[..., None]
    return arr[..., :3] if arr.shape[2] >= 3 else arr[..., :1]


def shrink(arr: np.ndarray, size: int) -> tuple[np.ndarray, int]:
    """``arr`` (H, W, C) reduced by block means by the smallest integer factor ``k`` that fits ``size``: (small, k).

    >>> small, k = shrink(np.arange(16.0).reshape(4, 4, 1), 2)
    >>> k, small[..., 0].tolist()
    (2, [[2.5, 4.5], [10.5, 12.5]])
    """
    h, w = arr.shape[:2]
    k = max(1, math.ceil(max(h, w) / size))
    if k == 1:
        return arr, 1
    hh, ww = (h // k) * k, (w // k) * k
    return arr[:hh, :ww].reshape(hh // k, k, ww // k, k, -1).mean(axis=(1, 3)), k


def thumbnail(image: Any, size: int = THUMB) -> bytes:
    """JPEG bytes of ``image`` ((H, W), (H, W, C) or (1, C, H, W), values in [0, 1]) at most ``size`` px long."""
    import imageio.v3 as iio

    arr, _ = shrink(_as_hwc(image), size)
    arr = np.nan_to_num(arr, nan=0.0)
    u8 = (np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)
    if u8.shape[2] == 1:
        u8 = u8[..., 0]
    return iio.imwrite("<bytes>", u8, extension=".jpg", quality=82)


def _read(path: Path) -> np.ndarray:
    from gdvision.io.images import read_image

    return np.clip(read_image(path).array, 0, 1)


def file_picture(label: str, value: str | None, folder: Path, size: int = THUMB) -> Picture:
    """The thumbnail of the image file ``value`` (a record's path, see :func:`resolve_output`), or why there is none."""
    if not value:
        return Picture(label, note="not in the record")
    path = resolve_output(value, folder)
    if path is None:
        return Picture(label, note=f"file missing: {value}")
    try:
        return Picture(label, thumbnail(_read(path), size), path)
    except Exception as exc:  # noqa: BLE001 - the page says what could not be drawn
        return Picture(
            label, link=path, note=f"cannot read {path.name}: {str(exc).splitlines()[0] if str(exc) else exc}"
        )


def _scale_matrix(k: int) -> np.ndarray:
    """Full-size pixel -> block-mean pixel coordinates (centre of the top-left pixel at 0): x' = (x + 0.5) / k - 0.5."""
    s = 1.0 / k
    return np.array([[s, 0, (s - 1) / 2], [0, s, (s - 1) / 2], [0, 0, 1.0]])


def _pair(rec: dict[str, Any], folder: Path, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | str:
    """(small A, small B, H between the small images) of a register/match record, or why not."""
    inputs, result = rec.get("inputs") or {}, rec.get("result") or {}
    H = result.get("H")
    if H is None:
        return "no homography in the record (failed item or fundamental matrix)"
    paths = []
    for col in ("a", "b"):
        p = Path(inputs.get(col) or "")
        if not inputs.get(col) or not p.is_file():
            return f"input {col} missing: {inputs.get(col)}"
        paths.append(p)
    a, ka = shrink(_read(paths[0]), size)
    b, kb = shrink(_read(paths[1]), size)
    Hs = _scale_matrix(kb) @ np.asarray(H, dtype=np.float64) @ np.linalg.inv(_scale_matrix(ka))
    return a, b, Hs


def register_pictures(rec: dict[str, Any], folder: Path) -> list[Picture]:
    """The overlay of A warped into B by the record's H (checkerboard: broken edges show misalignment)."""
    out = (rec.get("outputs") or {}).get("json")
    link = resolve_output(out, folder) if out else None
    got = _pair(rec, folder, THUMB)
    if isinstance(got, str):
        return [Picture("overlay", link=link, note=got)]
    import torch

    from gdvision.viz import register_overlay, warp_into

    a, b, H = got
    ta = torch.from_numpy(a.transpose(2, 0, 1)[None].astype(np.float32))
    tb = torch.from_numpy(b.transpose(2, 0, 1)[None].astype(np.float32))
    warped, mask = warp_into(ta, torch.from_numpy(H), tuple(tb.shape[-2:]))
    return [Picture("overlay (A warped into B, checkerboard)", thumbnail(register_overlay(warped, mask, tb)), link)]


def match_pictures(rec: dict[str, Any], folder: Path) -> list[Picture]:
    """A | B with lines from a 5x5 grid of A to its image under the found H (green inside B, red outside)."""
    out = (rec.get("outputs") or {}).get("json")
    link = resolve_output(out, folder) if out else None
    got = _pair(rec, folder, WIDE // 2)
    if isinstance(got, str):
        return [Picture("A -> B under H", link=link, note=got)]
    import torch

    from gdvision.viz import draw_matches

    a, b, H = got
    ha, wa = a.shape[:2]
    gx, gy = np.meshgrid(np.linspace(0, wa - 1, 5), np.linspace(0, ha - 1, 5))
    pa = np.stack([gx.ravel(), gy.ravel(), np.ones(gx.size)], 1)
    q = pa @ H.T
    pb = q[:, :2] / np.where(np.abs(q[:, 2:]) < 1e-12, 1e-12, q[:, 2:])
    inside = (pb[:, 0] >= 0) & (pb[:, 0] <= b.shape[1] - 1) & (pb[:, 1] >= 0) & (pb[:, 1] <= b.shape[0] - 1)
    lines = _Lines(torch.from_numpy(pa[:, :2]), torch.from_numpy(pb), torch.from_numpy(inside))
    ta = torch.from_numpy(a.transpose(2, 0, 1)[None].astype(np.float32))
    tb = torch.from_numpy(b.transpose(2, 0, 1)[None].astype(np.float32))
    pic = draw_matches(ta, tb, lines)
    return [Picture("A -> B under the found H (grid points)", thumbnail(pic, WIDE), link)]


@dataclass
class _Lines:
    pts_a: Any
    pts_b: Any
    inliers: Any


def _truth_depth(rec: dict[str, Any], shape: tuple[int, ...]) -> np.ndarray | str:
    """The ground-truth depth of a depth record (disparity converted with the rectified pair), or why not."""
    inputs, params = rec.get("inputs") or {}, rec.get("params") or {}
    gt = inputs.get("gt")
    if not gt:
        return "no ground truth"
    from gdvision.tasks.depth import read_ground_truth

    g = read_ground_truth(Path(gt), shape)
    if (inputs.get("gt_kind") or params.get("gt_kind") or "depth") != "disparity":
        return g
    import torch

    import gdvision.depth.metrics as dm
    from gdvision.depth import View, rectified_pair
    from gdvision.io.cameras import cameras_for_views, read_cameras
    from gdvision.io.images import read_image

    views = [Path(v) for v in (inputs.get("views") or "").split(";") if v][:2]
    sizes = [(im.height, im.width) for im in (read_image(v) for v in views)]
    cams = cameras_for_views(read_cameras(Path(inputs["cameras"])), views, sizes)
    vs = [
        View(torch.zeros(1, 1, *s), torch.from_numpy(c.K), torch.from_numpy(c.world_to_cam))
        for c, s in zip(cams, sizes, strict=True)
    ]
    rect = rectified_pair(vs[0], vs[1]) if len(vs) == 2 else None
    if rect is None:
        return "disparity ground truth without a rectified pair"
    return dm.disparity_to_depth(g, *rect)


ERROR_SCALE = 0.25  # the error map's colour scale: 0 .. 25% relative error


def depth_pictures(rec: dict[str, Any], folder: Path) -> list[Picture]:
    """The depth preview and confidence the run wrote, and the relative error map ``|d - gt| / gt`` with gt."""
    outs = rec.get("outputs") or {}
    pics = [file_picture("depth preview", outs.get("depth_preview"), folder)]
    pics.append(file_picture("confidence", outs.get("confidence"), folder))
    if not (rec.get("inputs") or {}).get("gt"):
        return pics
    label = f"|depth - gt| / gt (0 .. {ERROR_SCALE:.0%}+; black: unknown)"
    dpath = resolve_output(outs.get("depth") or "", folder)
    if dpath is None:
        pics.append(Picture(label, note=f"file missing: {outs.get('depth')}"))
        return pics
    try:
        from gdvision.viz import colorize

        depth = np.load(dpath, allow_pickle=False).astype(np.float64)
        truth = _truth_depth(rec, depth.shape)
        if isinstance(truth, str):
            pics.append(Picture(label, link=dpath, note=truth))
            return pics
        with np.errstate(invalid="ignore", divide="ignore"):
            err = np.abs(depth - truth) / truth
        pics.append(Picture(label, thumbnail(colorize(err / ERROR_SCALE)), dpath))
    except Exception as exc:  # noqa: BLE001 - the page says what could not be drawn
        pics.append(Picture(label, link=dpath, note=f"cannot draw: {str(exc).splitlines()[0] if str(exc) else exc}"))
    return pics


def edges_pictures(rec: dict[str, Any], folder: Path) -> list[Picture]:
    """The input image and the edge image the run wrote."""
    image = (rec.get("inputs") or {}).get("image")
    return [
        file_picture("input", image, folder),
        file_picture("edges", (rec.get("outputs") or {}).get("edges"), folder),
    ]


def attack_pictures(rec: dict[str, Any], folder: Path) -> list[Picture]:
    """Before (the input) and after (the adversarial image), the perturbation and the before/after matches."""
    outs, inputs = rec.get("outputs") or {}, rec.get("inputs") or {}
    side = "a" if "adv_a" in outs or "adv_b" not in outs else "b"
    return [
        file_picture(f"before ({side})", inputs.get(side), folder),
        file_picture(f"after ({side}, adversarial)", outs.get(f"adv_{side}"), folder),
        file_picture(f"perturbation ({side})", outs.get(f"delta_{side}"), folder),
        file_picture("matches before / after", outs.get("matches"), folder, WIDE),
    ]


DRAWERS = {
    "register": register_pictures,
    "match": match_pictures,
    "depth": depth_pictures,
    "edges": edges_pictures,
    "attack": attack_pictures,
}


def item_pictures(command: str, rec: dict[str, Any], folder: Path) -> list[Picture]:
    """The pictures of one record of a ``command`` run in ``folder``; never raises (notes say what is missing)."""
    draw = DRAWERS.get(command)
    if draw is None:
        return [Picture("pictures", note=f"no pictures for a '{command}' run")]
    try:
        return draw(rec, folder)
    except Exception as exc:  # noqa: BLE001 - a broken input must not stop the page
        return [Picture("pictures", note=f"cannot draw: {str(exc).splitlines()[0] if str(exc) else exc}")]


__all__ = ["DRAWERS", "Picture", "file_picture", "item_pictures", "shrink", "thumbnail"]
