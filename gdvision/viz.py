"""Pictures that show alignment quality.

:func:`checkerboard` interleaves tiles of two aligned images; misalignment shows as broken edges at tile
borders. :func:`color_blend` puts one image in magenta and the other in green; aligned structure turns gray.
Both take (1, C, H, W) tensors in [0, 1] of the same size and return (1, 3, H, W).
:func:`draw_matches` puts two images side by side with a line per keypoint match (inliers green).
"""

from __future__ import annotations

from typing import Any

import torch


def _rgb(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 3:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1)
    return x.mean(1, keepdim=True).expand(-1, 3, -1, -1)


def checkerboard(a: torch.Tensor, b: torch.Tensor, tiles: int = 8, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Checkerboard of ``a`` and ``b`` with ``tiles`` tiles along the longer side.

    Where ``mask`` (1, 1, H, W) is 0 (e.g. outside a warped image), ``b`` is shown.

    Example:
        >>> import torch
        >>> checkerboard(torch.zeros(1, 1, 8, 8), torch.ones(1, 1, 8, 8), tiles=2)[0, 0, :, 0].tolist()
        [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    """
    h, w = a.shape[-2:]
    size = max(1, max(h, w) // tiles)
    ys = torch.arange(h, device=a.device) // size
    xs = torch.arange(w, device=a.device) // size
    pick = ((ys[:, None] + xs[None, :]) % 2 == 0).to(a.dtype)[None, None]
    if mask is not None:
        pick = pick * mask
    return _rgb(a) * pick + _rgb(b) * (1 - pick)


def color_blend(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Magenta/green blend: ``a`` in red and blue, ``b`` in green (luminance of each)."""
    ga = _rgb(a).mean(1, keepdim=True)
    gb = _rgb(b).mean(1, keepdim=True)
    return torch.cat([ga, gb, ga], dim=1)


def warp_into(a: torch.Tensor, H: torch.Tensor, size_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """A (1, C, Ha, Wa) warped by ``H`` (A -> B) into B's frame of ``size_hw = (Hb, Wb)``: (warped, inside mask).

    Example:
        >>> import torch
        >>> w, m = warp_into(torch.ones(1, 1, 4, 4), torch.eye(3), (4, 6))
        >>> tuple(w.shape), m[0, 0, 0].tolist()
        ((1, 1, 4, 6), [1.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    """
    from gdvision.warp import warp_perspective

    hb, wb = size_hw
    return warp_perspective(a, H.to(a.device), (wb, hb))


def register_overlay(warped: torch.Tensor, mask: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Checkerboard (8 tiles) of A warped into B's frame and B, (1, 3, Hb, Wb); B shows where A does not reach.

    Images with different channel counts are compared in luminance.
    """
    from gdvision.color import to_gray

    ga = to_gray(warped) if warped.shape[1] != b.shape[1] else warped
    gb = to_gray(b) if warped.shape[1] != b.shape[1] else b
    return checkerboard(ga, gb, 8, mask)


def pick_matches(inliers: torch.Tensor, max_lines: int) -> torch.Tensor:
    """Indices (drawing order) of at most ``max_lines`` matches to draw: inliers first, then outliers with what is left.

    ``inliers``: (K,) bool. When a group has more matches than its share, an evenly spaced subset (in the matches'
    order) is kept, so the lines spread over the picture instead of piling up at one end. The outliers come first
    in the result (drawn first, under the inliers).

    Example:
        >>> import torch
        >>> pick_matches(torch.tensor([True, False, True, True, False]), 2).tolist()
        [0, 3]
        >>> pick_matches(torch.tensor([True, False, True, False]), 3).tolist()
        [1, 0, 2]
    """
    cap = max(int(max_lines), 0)
    inl, out = torch.nonzero(inliers)[:, 0], torch.nonzero(~inliers)[:, 0]

    def spread(idx: torch.Tensor, n: int) -> torch.Tensor:
        if idx.numel() <= n:
            return idx
        if n <= 0:
            return idx[:0]
        return idx[torch.linspace(0, idx.numel() - 1, n).round().long()]

    keep_in = spread(inl, cap)
    return torch.cat([spread(out, cap - keep_in.numel()), keep_in])


def draw_matches(a: torch.Tensor, b: torch.Tensor, res: Any, max_lines: int = 200) -> torch.Tensor:
    """Matches of ``a`` (1, C, Ha, Wa) and ``b`` (1, C', Hb, Wb) side by side, (1, 3, max(Ha, Hb), Wa + Wb).

    ``res`` holds the matches as a :class:`gdvision.features.match.MatchResult` does: ``pts_a``, ``pts_b`` (K, 2)
    pixel coordinates and ``inliers`` (K,) bool. Inliers are drawn green (last, on top), outliers red; at most
    ``max_lines`` lines, inliers first (:func:`pick_matches`), so a pair with thousands of matches stays readable.
    The photos are dimmed to 80% so the lines stand out; colour images stay in colour.

    Example:
        >>> import torch
        >>> from types import SimpleNamespace
        >>> m = SimpleNamespace(pts_a=torch.tensor([[1.0, 1.0]]), pts_b=torch.tensor([[1.0, 1.0]]),
        ...                     inliers=torch.tensor([True]))
        >>> pic = draw_matches(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), m)
        >>> tuple(pic.shape), pic[0, :, 1, 3].tolist()
        ((1, 3, 4, 8), [0.10000000149011612, 1.0, 0.20000000298023224])
    """
    ha, wa = a.shape[-2:]
    hb, wb = b.shape[-2:]
    canvas = torch.zeros(3, max(ha, hb), wa + wb)
    canvas[:, :ha, :wa] = _rgb(a.detach().cpu().float())[0]
    canvas[:, :hb, wa:] = _rgb(b.detach().cpu().float())[0]
    canvas *= 0.8  # dim the photos so the lines stand out
    pa = res.pts_a.detach().cpu().to(torch.float32)
    pb = res.pts_b.detach().cpu().to(torch.float32) + torch.tensor([float(wa), 0.0])
    inl = res.inliers.detach().cpu().bool()
    order = pick_matches(inl, max_lines)  # outliers first, inliers drawn last (on top)
    h, w = canvas.shape[-2:]
    for sel, colour in ((order[~inl[order]], (1.0, 0.15, 0.1)), (order[inl[order]], (0.1, 1.0, 0.2))):
        if sel.numel() == 0:
            continue
        p0, p1 = pa[sel], pb[sel]
        steps = int(torch.ceil((p1 - p0).norm(dim=1).max()).item()) + 1
        t = torch.linspace(0, 1, steps).view(1, -1, 1)
        pts = torch.round(p0.unsqueeze(1) + t * (p1 - p0).unsqueeze(1)).long().reshape(-1, 2)
        ok = (pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
        pts = pts[ok]
        for c in range(3):
            canvas[c, pts[:, 1], pts[:, 0]] = colour[c]
    return canvas.clamp(0, 1).unsqueeze(0)


# ------------------------------------------------------------------------------------------------ depth pictures
# Anchor colours of a turbo-like ramp (dark blue -> blue -> cyan -> green -> yellow -> orange -> dark red).
_DEPTH_RAMP = (
    (0.19, 0.07, 0.23),
    (0.27, 0.45, 0.93),
    (0.10, 0.80, 0.86),
    (0.40, 0.98, 0.38),
    (0.88, 0.87, 0.20),
    (0.98, 0.47, 0.09),
    (0.48, 0.02, 0.01),
)
# 3x5 bitmap glyphs (rows of 3 pixels, top to bottom) for the depth legend's labels.
_GLYPHS = {
    "0": "111101101101111",
    "1": "010110010010111",
    "2": "111001111100111",
    "3": "111001111001111",
    "4": "101101111001001",
    "5": "111100111001111",
    "6": "111100111101111",
    "7": "111001010010010",
    "8": "111101111101111",
    "9": "111101111001111",
    ".": "000000000000010",
    "-": "000000111000000",
    "e": "000111101110011",
    "+": "000010111010000",
    "p": "110101110100100",
    " ": "000000000000000",
}


def colorize(values: Any) -> Any:
    """Turbo-like colours (H, W, 3) numpy in [0, 1] of ``values`` (H, W) in [0, 1] (NaN -> black).

    Example:
        >>> import numpy as np
        >>> colorize(np.array([[0.0, np.nan]])).tolist()
        [[[0.19, 0.07, 0.23], [0.0, 0.0, 0.0]]]
    """
    import numpy as np

    ramp = np.array(_DEPTH_RAMP)
    v = np.asarray(values, dtype=np.float64)
    nan = ~np.isfinite(v)
    t = np.clip(np.nan_to_num(v), 0, 1) * (len(ramp) - 1)
    i0 = np.minimum(np.floor(t).astype(int), len(ramp) - 2)
    f = (t - i0)[..., None]
    rgb = ramp[i0] * (1 - f) + ramp[i0 + 1] * f
    rgb[nan] = 0.0
    return rgb


def _format_depth(v: float) -> str:
    import numpy as np

    if not np.isfinite(v):
        return "-"
    if v == 0 or 1e-2 <= abs(v) < 1e5:
        s = f"{v:.4g}"
        return s if "e" not in s else f"{v:.3e}"
    return f"{v:.2e}"


def _draw_text(canvas: Any, text: str, x: int, y: int, scale: int = 2) -> None:
    for ch in text:
        g = _GLYPHS.get(ch, _GLYPHS[" "])
        for r in range(5):
            for c in range(3):
                if g[r * 3 + c] == "1":
                    y0, x0 = y + r * scale, x + c * scale
                    canvas[y0 : y0 + scale, x0 : x0 + scale] = 1.0
        x += 4 * scale


def depth_preview(
    depth: Any,
    min_depth: float | None = None,
    max_depth: float | None = None,
    percentiles: tuple[float, float] = (2.0, 98.0),
) -> Any:
    """RGB preview (H + legend, W, 3) numpy in [0, 1] of a depth map (H, W) (NaN = unknown, shown black).

    Colours run on inverse depth between the range's ends: ``min_depth`` and ``max_depth`` when given, else robust
    ``percentiles`` of the known depths (default the 2nd and 98th, so a few wild pixels or a wide search range do
    not wash the picture out; depths beyond them take the end colours). The legend is a colour bar (near = red on
    the right, far = blue on the left) with the far, middle (in inverse depth) and near depths printed under it;
    an end taken from a percentile is labelled so (``p98 4823`` ... ``p2 2177``) where the width allows.

    Example:
        >>> import numpy as np
        >>> depth_preview(np.linspace(1, 2, 64 * 48).reshape(48, 64)).shape
        (78, 64, 3)
    """
    import numpy as np

    d = np.asarray(depth, dtype=np.float64)
    known = np.isfinite(d) & (d > 0)
    lo_p, hi_p = percentiles
    tags = ["" if max_depth is not None else f"p{hi_p:g} ", "", "" if min_depth is not None else f"p{lo_p:g} "]
    if min_depth is None or max_depth is None:
        if known.any():
            lo, hi = np.percentile(d[known], [lo_p, hi_p])
        else:
            lo, hi = 1.0, 2.0
        min_depth = min_depth if min_depth is not None else float(lo)
        max_depth = max_depth if max_depth is not None else float(hi)
    if not max_depth > min_depth:
        max_depth = min_depth * 1.001 + 1e-9
    inv_lo, inv_hi = 1.0 / max_depth, 1.0 / min_depth
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(known, (1.0 / d - inv_lo) / (inv_hi - inv_lo), np.nan)
    img = colorize(t)
    h, w = d.shape
    bar_h, text_h = 12, 18
    legend = np.zeros((bar_h + text_h, w, 3))
    legend[:bar_h] = colorize(np.linspace(0, 1, w)[None].repeat(bar_h, 0))
    mid = 2.0 / (inv_lo + inv_hi)
    values = [_format_depth(max_depth), _format_depth(mid), _format_depth(min_depth)]
    labels = [tag + v for tag, v in zip(tags, values, strict=True)]
    if sum(len(s) * 8 for s in labels) + 8 > w:  # too narrow for the percentile tags: the numbers only
        labels = values
    canvas = np.zeros((text_h, w))
    widths = [len(s) * 8 for s in labels]
    xs = [2, max((w - widths[1]) // 2, 0), max(w - widths[2] - 2, 0)]
    for s, x in zip(labels, xs, strict=True):
        if x + len(s) * 8 <= w:
            _draw_text(canvas, s, x, 4)
    legend[bar_h:] = canvas[..., None]
    return np.concatenate([img, legend], axis=0)


def confidence_picture(confidence: Any) -> Any:
    """Gray picture (H, W) numpy in [0, 1] of a confidence map (1 = white = sure; NaN -> black).

    Example:
        >>> import torch
        >>> confidence_picture(torch.tensor([[0.25, float("nan"), 2.0]])).tolist()
        [[0.25, 0.0, 1.0]]
    """
    import numpy as np

    c = np.asarray(confidence.detach().cpu() if hasattr(confidence, "detach") else confidence, dtype=np.float32)
    return np.clip(np.nan_to_num(c, nan=0.0), 0.0, 1.0)


# ------------------------------------------------------------------------------------------- attack pictures


def perturbation_picture(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """An attack's perturbation magnified to the full range: (1, C, H, W) -> (1, C, H, W), ``0.5 + delta / (2 eps)``.

    Mid-gray is no change, white ``+eps``, black ``-eps``.

    Example:
        >>> import torch
        >>> perturbation_picture(torch.tensor([[[[-0.03, 0.0, 0.03]]]]), 0.03).flatten().tolist()
        [0.0, 0.5, 1.0]
    """
    return (0.5 + delta / (2.0 * eps)).clamp(0, 1)


def before_after_picture(top: torch.Tensor, bottom: torch.Tensor) -> torch.Tensor:
    """Stack two (1, 3, H, W) pictures vertically with an 8-pixel white gap: (1, 3, H1 + 8 + H2, max W).

    Example:
        >>> import torch
        >>> tuple(before_after_picture(torch.zeros(1, 3, 2, 4), torch.zeros(1, 3, 3, 5)).shape)
        (1, 3, 13, 5)
    """
    w = max(top.shape[-1], bottom.shape[-1])
    out = torch.ones(1, 3, top.shape[-2] + 8 + bottom.shape[-2], w)
    out[..., : top.shape[-2], : top.shape[-1]] = top
    out[..., top.shape[-2] + 8 :, : bottom.shape[-1]] = bottom
    return out


def before_after_matches(before: tuple[Any, Any, Any], after: tuple[Any, Any, Any]) -> torch.Tensor:
    """An attack's match picture: :func:`draw_matches` of the clean pair (top) and of the perturbed pair (bottom).

    ``before``, ``after``: ``(a, b, result)`` with (1, C, H, W) images and a match result (``pts_a``, ``pts_b``,
    ``inliers``), or None where matching failed (the two images are shown without lines).
    Returns (1, 3, 2 max(Ha, Hb) + 8, Wa + Wb).

    Example:
        >>> import torch
        >>> z = torch.zeros(1, 1, 4, 4)
        >>> tuple(before_after_matches((z, z, None), (z, z, None)).shape)
        (1, 3, 16, 8)
    """
    from types import SimpleNamespace

    pics = []
    for a, b, res in (before, after):
        if res is None:
            z2 = torch.zeros(0, 2, dtype=torch.float64)
            res = SimpleNamespace(pts_a=z2, pts_b=z2, inliers=torch.zeros(0, dtype=torch.bool))
        pics.append(draw_matches(a, b, res))
    return before_after_picture(pics[0], pics[1])
