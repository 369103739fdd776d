"""Is a registration an answer? Quality measures that need no ground truth, and the verdict drawn from them.

A direct solver always returns *some* transform, also for a constant image or two unrelated photos. The verdict
judges it with measures computed after the solve, in A's frame (B warped onto A by the result):

- ``overlap``: the smaller of the fraction of A's valid pixels that land on B's valid pixels and the fraction
  of B's valid pixels covered by A. A transform that pushes A off B (or shrinks it to a spot) has no support.
- ``gradient_agreement``: how well the edges of A and warped B line up, whatever their contrast:
  ``sum w cos(2 d) / sum w`` over the overlap, with ``d`` the angle between the two image gradients (of the
  images blurred by a Gaussian of sigma :data:`BLUR` px, which makes it robust to noise) and
  ``w = |grad A| |grad B|``. It is 1 when every edge coincides (also with inverted contrast, as between MRI T1
  and PD, so it suits every loss including ``mi``), about 0 for unrelated content.
- ``ncc``: normalised cross-correlation of the intensities over the overlap (reported; not decisive, because
  it stays high on images dominated by a large uniform background even when they are misaligned).

Before the solve, :func:`texture` (the standard deviation of the luminance over the valid pixels) refuses images
with nothing to align (:data:`MIN_TEXTURE`).

Calibration (synthetic pairs with known truth, 320x240 crops of the six photos in sample_data/natural):

- solver results, 116 in all: bench-style pairs (noise sigma 0.01, 0.03, 0.06; B blurred by sigma 1.5), 30 pairs
  rotated up to 35 degrees and scaled 0.7-1.4, the bench's six 640x480 pairs, the ITK brain pairs (T1 vs PD with
  ``mi``, ``ncc`` and ``grad``) and the coffee pair with every loss, 30 unrelated pairs with every loss and model.
  The 80 results within 3 px of the truth: ``gradient_agreement`` >= 0.599 (the worst under noise sigma 0.06,
  15/255; without that noise >= 0.79), all accepted. The 30 unrelated pairs: <= 0.283 (or rejected by overlap or
  the solver), all rejected; the 4 gross failures of the rotated set (113-320 px): <= 0.461, all rejected.
  Not caught: T1 vs PD registered with the unsuited ``ncc`` (36 px off, 0.761) and ``grad`` (4 px off, 0.891).
- the true H moved by 6 px at every corner: 19 of 34 caught; by 3 px: 4 of 25. Finer errors (a few pixels) are
  not what this verdict detects: it tells an answer from a non-answer.

Wide baselines (``bench/register_wide.py``: rotations of 30-90 degrees, scales 0.5-2, perspective): the measures
above caught 45 of the 46 direct results > 3 px off (the miss: 21 px off with ``gradient_agreement`` 0.664;
in the quick set two misses at 0.642 and 0.774) and rejected none of 14 good ones. ``--init auto`` adds
:func:`feature_check`, a measure independent of the photometric solve (agreement with the RANSAC inliers of
``match``'s features), applied when the direct result is rejected or below :data:`SUSPECT_AGREEMENT`: with it,
46 of 46 caught and none of 60 good results rejected; on 150 pairs of 320x240 (+ 40 near pairs), 151 of 152
caught and none of 187 good results rejected (the miss: a 716 px result that 7 of 12 spurious inliers agree with).

Example:
    >>> import torch
    >>> a = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 64, 80), 3, 1, 1)
    >>> v = judge(a, a, torch.eye(3, dtype=torch.float64).expand(1, 3, 3))[0]
    >>> v.ok, round(v.measures["gradient_agreement"], 3), round(v.measures["overlap"], 3)
    (True, 1.0, 1.0)
    >>> texture(torch.full((1, 1, 8, 8), 0.5)).tolist()
    [0.0]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from gdvision.color import to_gray
from gdvision.filters.separable import gaussian_blur, sobel
from gdvision.losses import ncc
from gdvision.pyramid import downsample_mask, pyr_down
from gdvision.warp import warp_perspective

#: Smallest luminance standard deviation (intensity in [0, 1]) of an image worth registering (half an 8-bit step).
MIN_TEXTURE = 0.002
#: Smallest ``overlap`` of an accepted result.
MIN_OVERLAP = 0.1
#: Smallest ``gradient_agreement`` of an accepted result.
MIN_GRADIENT_AGREEMENT = 0.55
#: ``--init auto`` checks an accepted direct result against feature matches below this ``gradient_agreement``.
SUSPECT_AGREEMENT = 0.9
#: A feature check of a direct result decides only when RANSAC kept at least this many inliers.
MIN_FEATURE_INLIERS = 8
#: The same for a result refined from those very matches (it must not leave the inliers it started from).
MIN_START_INLIERS = 4
#: Smallest ``feature_agreement`` (share of the feature inliers mapped within FEATURE_PX) of an accepted result.
MIN_FEATURE_AGREEMENT = 0.5
#: Distance (pixels of B) within which a result agrees with a feature match.
FEATURE_PX = 3.0
#: Gaussian blur (sigma, pixels of the working level) before the gradients of ``gradient_agreement``.
BLUR = 1.0
#: The measures are computed at the finest pyramid level with at most this many pixels (bounded cost).
MAX_PIXELS = 1 << 20


@dataclass
class Verdict:
    """The judgement of one registration.

    Attributes:
        ok: the result is accepted.
        measures: every measure by name (floats), see the module docstring.
        decided_by: the measure that rejected the result (None when accepted).
        reason: one line naming that measure, its value and the threshold (None when accepted).
    """

    ok: bool
    measures: dict[str, float] = field(default_factory=dict)
    decided_by: str | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, object]:
        """The verdict as a JSON-ready dict: ``ok``, ``measures``, and ``decided_by``/``reason`` when rejected."""
        out: dict[str, object] = {"ok": self.ok, "measures": dict(self.measures)}
        if not self.ok:
            out["decided_by"], out["reason"] = self.decided_by, self.reason
        return out


def texture(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(B,) standard deviation of the luminance of ``x`` (B, C, H, W) over the pixels where ``mask`` is set."""
    g = to_gray(x).to(torch.float64).flatten(1)
    m = torch.ones_like(g) if mask is None else (mask.to(torch.float64).expand(x.shape[0], 1, -1, -1) > 0.5)
    m = m.flatten(1).to(torch.float64)
    n = m.sum(1).clamp_min(1.0)
    mean = (g * m).sum(1) / n
    return torch.sqrt((((g - mean[:, None]) ** 2) * m).sum(1) / n)


def textureless(x: torch.Tensor, mask: torch.Tensor | None = None) -> list[str | None]:
    """Per item, None if the image has texture to align, else a one-line reason naming the measure."""
    t = texture(x, mask).tolist()
    return [
        None if v >= MIN_TEXTURE else f"no texture: luminance standard deviation {v:.4g} < {MIN_TEXTURE:g}" for v in t
    ]


def _level(h: int, w: int) -> int:
    level = 0
    while (h >> level) * (w >> level) > MAX_PIXELS and min(h >> level, w >> level) > 16:
        level += 1
    return level


def _down(x: torch.Tensor, m: torch.Tensor, level: int) -> tuple[torch.Tensor, torch.Tensor]:
    for _ in range(level):
        x, m = pyr_down(x), downsample_mask(m)
    return x, m


def _erode3(m: torch.Tensor) -> torch.Tensor:
    """Minimum over each pixel's 3x3 neighbourhood inside the image (``-max_pool2d(-m, 3, 1, 1)``)."""
    r = m.clone()
    torch.minimum(r[..., :, 1:], m[..., :, :-1], out=r[..., :, 1:])
    torch.minimum(r[..., :, :-1], m[..., :, 1:], out=r[..., :, :-1])
    out = r.clone()
    torch.minimum(out[..., 1:, :], r[..., :-1, :], out=out[..., 1:, :])
    torch.minimum(out[..., :-1, :], r[..., 1:, :], out=out[..., :-1, :])
    return out


def measure(
    a: torch.Tensor,
    b: torch.Tensor,
    H: torch.Tensor,
    mask_a: torch.Tensor | None = None,
    mask_b: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The quality measures (each (B,)) of homographies ``H`` (B, 3, 3) A -> B for images ``a``, ``b``."""
    bsz = a.shape[0]
    ga, gb = to_gray(a).float(), to_gray(b).float()
    ma = torch.ones_like(ga) if mask_a is None else mask_a.float().expand(bsz, 1, -1, -1)
    mb = torch.ones_like(gb) if mask_b is None else mask_b.float().expand(bsz, 1, -1, -1)
    level = max(_level(*ga.shape[-2:]), _level(*gb.shape[-2:]))
    ga, ma = _down(ga, ma, level)
    gb, mb = _down(gb, mb, level)
    f = 2.0**level
    S = torch.diag(torch.tensor([1 / f, 1 / f, 1.0], dtype=torch.float64, device=H.device))
    Si = torch.diag(torch.tensor([f, f, 1.0], dtype=torch.float64, device=H.device))
    Hl = S @ H.to(torch.float64) @ Si
    (ha, wa), (hb, wb) = ga.shape[-2:], gb.shape[-2:]
    # one warp of B, its mask and its blurred copy (the coordinates are the costly part: computed once)
    warped, inside = warp_perspective(torch.cat([gb, mb, gaussian_blur(gb, BLUR)], 1), Hl, (wa, ha), inverse_map=True)
    valid = ((inside * ma * (warped[:, 1:2] > 0.999)) > 0.5).float()
    cover, inside_b = warp_perspective(ma, torch.linalg.inv(Hl), (wb, hb), inverse_map=True)
    covered = ((inside_b * (cover > 0.999) * mb) > 0.5).float()
    frac_a = valid.flatten(1).sum(1) / ma.flatten(1).sum(1).clamp_min(1.0)
    frac_b = covered.flatten(1).sum(1) / mb.flatten(1).sum(1).clamp_min(1.0)
    wb_ = warped[:, :1]
    smooth = warped[:, 2:3]
    ax, ay = sobel(gaussian_blur(ga, BLUR), border="replicate")
    bx, by = sobel(smooth, border="replicate")
    interior = _erode3(valid)  # gradients need valid neighbours
    dot = ax * bx + ay * by
    nn = torch.sqrt((ax * ax + ay * ay) * (bx * bx + by * by) + 1e-12)
    # |a||b| cos(2d) = (2 (a.b)^2 - |a|^2 |b|^2) / (|a||b|)
    agree = ((2 * dot * dot / nn - nn) * interior).flatten(1).sum(1)
    weight = (nn * interior).flatten(1).sum(1)
    agreement = torch.where(weight > 1e-9, agree / weight.clamp_min(1e-9), torch.zeros_like(weight))
    return {
        "overlap": torch.minimum(frac_a, frac_b).double(),
        "gradient_agreement": agreement.double(),
        "ncc": ncc(ga, wb_, valid).double(),
    }


def judge(
    a: torch.Tensor,
    b: torch.Tensor,
    H: torch.Tensor,
    mask_a: torch.Tensor | None = None,
    mask_b: torch.Tensor | None = None,
    failed: torch.Tensor | None = None,
) -> list[Verdict]:
    """One :class:`Verdict` per item of homographies ``H`` (B, 3, 3) A -> B (``failed``: the solver's own flags)."""
    with torch.no_grad():
        finite = torch.isfinite(H).flatten(1).all(1)
        safe = torch.where(finite.view(-1, 1, 1), H, torch.eye(3, dtype=H.dtype, device=H.device))
        m = {k: v.tolist() for k, v in measure(a, b, safe, mask_a, mask_b).items()}
    out = []
    for k in range(H.shape[0]):
        vals = {name: float(v[k]) for name, v in m.items()}
        v = Verdict(True, vals)
        if not bool(finite[k]) or (failed is not None and bool(failed[k])):
            v = Verdict(False, vals, "solver", "no valid overlap or a folded/degenerate transform was found")
        elif vals["overlap"] < MIN_OVERLAP:
            v = Verdict(False, vals, "overlap", f"overlap {vals['overlap']:.3f} < {MIN_OVERLAP:g}")
        elif vals["gradient_agreement"] < MIN_GRADIENT_AGREEMENT:
            g = vals["gradient_agreement"]
            v = Verdict(False, vals, "gradient_agreement", f"gradient agreement {g:.3f} < {MIN_GRADIENT_AGREEMENT:g}")
        out.append(v)
    return out


def feature_check(
    verdict: dict[str, object],
    H: torch.Tensor,
    pts_a: torch.Tensor,
    pts_b: torch.Tensor,
    min_inliers: int = MIN_FEATURE_INLIERS,
) -> dict[str, object]:
    """``verdict`` (a :meth:`Verdict.as_dict`) with the feature measures added and applied; a new dict.

    A measure independent of the photometric solve: ``feature_agreement`` is the share of the feature matches
    ``pts_a`` -> ``pts_b`` (N, 2) pixels (RANSAC inliers, or their images under the fitted model) that ``H``
    (3, 3) A -> B maps within :data:`FEATURE_PX` px; ``feature_inliers`` is N. An accepted verdict is
    rejected (``decided_by: feature_agreement``) when N >= ``min_inliers`` (:data:`MIN_FEATURE_INLIERS`, or
    :data:`MIN_START_INLIERS` for a result started from these matches) and the share is below
    :data:`MIN_FEATURE_AGREEMENT`.

    Example:
        >>> import torch
        >>> pa = torch.rand(20, 2) * 100
        >>> v = {"ok": True, "measures": {}}
        >>> feature_check(v, torch.eye(3, dtype=torch.float64), pa, pa + 10)["decided_by"]
        'feature_agreement'
        >>> feature_check(v, torch.eye(3, dtype=torch.float64), pa, pa + 1)["ok"]
        True
    """
    from gdvision.geometry import transfer_error

    n = int(pts_a.shape[0])
    err = transfer_error(H.detach().cpu().to(torch.float64)[None], pts_a.cpu(), pts_b.cpu())[0]
    share = float((err < FEATURE_PX).to(torch.float64).mean()) if n else 0.0
    out = {**verdict, "measures": {**verdict["measures"], "feature_agreement": share, "feature_inliers": n}}  # type: ignore[dict-item]
    if out["ok"] and n >= min_inliers and share < MIN_FEATURE_AGREEMENT:
        out.update(
            ok=False,
            decided_by="feature_agreement",
            reason=f"feature agreement {share:.3f} < {MIN_FEATURE_AGREEMENT:g} ({n} feature inliers)",
        )
    return out


__all__ = [
    "FEATURE_PX",
    "MIN_FEATURE_AGREEMENT",
    "MIN_FEATURE_INLIERS",
    "SUSPECT_AGREEMENT",
    "feature_check",
    "MIN_GRADIENT_AGREEMENT",
    "MIN_OVERLAP",
    "MIN_START_INLIERS",
    "MIN_TEXTURE",
    "Verdict",
    "judge",
    "measure",
    "texture",
]
