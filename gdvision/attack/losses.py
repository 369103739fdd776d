"""The attack losses: scalar functions of the two images' features that the pixels are optimised to lower.

``fa``, ``fb``: :class:`~gdvision.features.Features` of A and B (keypoint positions, scales and descriptors are
differentiable functions of the pixels); ``H`` (3, 3): the homography A -> B in pixels, the target (``match``) or
the true one (``unmatch``). Descriptors have norm 1, so descriptor distances lie in [0, 2].

- ``ratio`` (default): :func:`ratio_targeted_loss` (``match``) and :func:`ratio_untargeted_loss` (``unmatch``),
  hinges on Lowe's ratio test itself.
- ``paper``: :func:`targeted_loss` / :func:`untargeted_loss`, the Kornia paper's ``L_loc + alpha L_desc`` with
  nearest keypoints in (x, y, scale) and hard negatives.

:func:`attack_loss` picks the one an :class:`~gdvision.attack.config.AttackConfig` names.

Example:
    >>> import torch
    >>> from gdvision.features import Features
    >>> xy = torch.tensor([[10.0, 10.0], [40.0, 30.0]])
    >>> desc = torch.eye(2, 128)
    >>> z, zl = torch.zeros(2), torch.zeros(2, dtype=torch.long)
    >>> f = Features(xy, torch.full((2,), 1.6), z, z, desc, zl, zl, zl)
    >>> float(ratio_untargeted_loss(f, f, torch.eye(3, dtype=torch.float64), 10.0, 1.0, 0.05)) > 0
    True
"""

from __future__ import annotations

import torch

from gdvision.attack.config import AttackConfig
from gdvision.coords import apply_homography
from gdvision.features import Features


def _zero(fa: Features, fb: Features) -> torch.Tensor:
    """A scalar 0 attached to both feature sets' graphs (a loss with nothing to push still backpropagates)."""
    return fa.xy.sum() * 0.0 + fb.xy.sum() * 0.0


def _correspondents(fa: Features, fb: Features, H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each keypoint of A: index of the B keypoint nearest to ``H(p)`` in (x, y, scale), the squared distance
    (px^2, differentiable) and the (Na, Nb) detached squared-distance matrix."""
    Hd = H.to(fa.xy.dtype)
    pa = apply_homography(Hd, fa.xy)
    # local scale change of H at p: sqrt |det J|
    eps_px = 0.5
    px = apply_homography(Hd, fa.xy + fa.xy.new_tensor([eps_px, 0.0]))
    py = apply_homography(Hd, fa.xy + fa.xy.new_tensor([0.0, eps_px]))
    jx, jy = (px - pa) / eps_px, (py - pa) / eps_px
    sH = (jx[:, 0] * jy[:, 1] - jx[:, 1] * jy[:, 0]).abs().clamp_min(1e-6).sqrt().detach()
    ta = torch.cat([pa, (fa.scale * sH).unsqueeze(1)], 1)
    tb = torch.cat([fb.xy, fb.scale.unsqueeze(1)], 1)
    with torch.no_grad():
        D = torch.cdist(ta.detach(), tb.detach()) ** 2
        j = torch.argmin(D, 1)
    d2 = ((ta - tb[j]) ** 2).sum(1)
    return j, d2, D


def _hardest_negative(fa: Features, fb: Features, D: torch.Tensor, radius: float) -> torch.Tensor:
    """(Na,) differentiable descriptor distance from each A keypoint to its nearest B descriptor among the B
    keypoints farther than ``radius`` from ``H(p)`` (D: detached squared geometric distances)."""
    with torch.no_grad():
        dd = torch.cdist(fa.desc.detach(), fb.desc.detach())
        dd = torch.where(D > radius * radius, dd, torch.full_like(dd, float("inf")))
        k = torch.argmin(dd, 1)
    return (fa.desc - fb.desc[k]).norm(dim=1)


def targeted_loss(
    fa: Features, fb: Features, H: torch.Tensor, radius: float, alpha: float, focus: bool = False
) -> torch.Tensor:
    """``L_loc + alpha L_desc`` of the ``match`` mode (scalar); see the module docstring.

    ``fa``, ``fb``: features of one image each; ``H`` (3, 3) target homography A -> B in pixels.
    """
    if len(fa) == 0 or len(fb) < 2:
        return _zero(fa, fb) + 2.0
    j, d2, D = _correspondents(fa, fb, H)
    r2 = radius * radius
    loc = (r2 * d2 / (d2 + r2)).mean()  # soft cap: pairs far apart pull with bounded force
    d_pos = (fa.desc - fb.desc[j]).norm(dim=1)
    d_neg = _hardest_negative(fa, fb, D, radius)
    if focus:  # weight the descriptor term by geometric proximity: far pairs cannot become inliers soon
        w = torch.exp(-d2.detach() / (2 * r2))
        desc = ((1.0 + d_pos - d_neg) * w).sum() / w.sum().clamp_min(1e-6)
    else:
        desc = (1.0 + d_pos - d_neg).mean()
    return loc / r2 + alpha * desc


def untargeted_loss(
    fa: Features, fb: Features, H: torch.Tensor, radius: float, alpha: float, margin: float, ratio: float = 0.8
) -> torch.Tensor:
    """``L_loc + alpha L_desc`` of the ``unmatch`` mode (scalar, >= 0); see the module docstring.

    ``H`` (3, 3) is the true homography A -> B in pixels. Only the pairs that would still pass the ratio test
    with ``margin`` to spare (``d_pos < ratio d_neg + margin``) count, so the effort goes to the surviving matches.
    """
    zero = _zero(fa, fb)
    if len(fa) == 0 or len(fb) < 2:
        return zero
    j, d2, D = _correspondents(fa, fb, H)
    r2 = radius * radius
    d_pos = (fa.desc - fb.desc[j]).norm(dim=1)
    d_neg = _hardest_negative(fa, fb, D, radius)
    hinge = torch.relu(margin + ratio * d_neg - d_pos)
    active = (d2.detach() < r2) & (hinge.detach() > 0)
    if not bool(active.any()):
        return zero
    desc = hinge[active].sum() / max(len(fa), 1)
    loc = torch.exp(-d2 / r2)[active].sum() / max(len(fa), 1)
    return loc + alpha * desc


def _mapped(
    fa: Features, fb: Features, H: torch.Tensor, radius: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``H(p)`` of A's keypoints (Na, 2, differentiable), the detached (Na, Nb) mask of B keypoints within
    ``radius`` px of it, and the detached descriptor distances (Na, Nb)."""
    pa = apply_homography(H.to(fa.xy.dtype), fa.xy)
    with torch.no_grad():
        near = torch.cdist(pa.detach(), fb.xy.detach()) ** 2 < radius * radius
        dd = torch.cdist(fa.desc.detach(), fb.desc.detach())
    return pa, near, dd


def _pair_terms(
    fa: Features, fb: Features, pa: torch.Tensor, ia: torch.Tensor, j: torch.Tensor, k: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For the A keypoints ``ia`` with partner ``j`` and ratio-test runner-up ``k`` in B: the differentiable
    descriptor distances to both and the squared pixel distance from ``H(p)`` (``pa``) to the partner."""
    d_pos = (fa.desc[ia] - fb.desc[j]).norm(dim=1)
    d_neg = (fa.desc[ia] - fb.desc[k]).norm(dim=1)
    return d_pos, d_neg, ((pa[ia] - fb.xy[j]) ** 2).sum(1)


def _per_keypoint(fa: Features, *terms: torch.Tensor) -> torch.Tensor:
    """The summed ``terms`` divided by the keypoint count of A (a loss that does not grow with the count)."""
    n = max(len(fa), 1)
    return sum((t.sum() for t in terms), fa.xy.new_zeros(())) / n


def ratio_targeted_loss(
    fa: Features,
    fb: Features,
    H: torch.Tensor,
    radius: float,
    alpha: float,
    margin: float,
    ratio: float = 0.8,
    focus: int = 0,
) -> torch.Tensor:
    """Ratio-test-aware targeted loss (scalar): for each keypoint ``p`` of A with B keypoints within ``radius`` px
    of ``H(p)``, the most similar of them (descriptor) is its partner ``q``; the loss is the mean squared distance
    ``|H(p) - q|^2 / radius^2`` plus ``alpha`` times the summed hinge ``relu(d(p, q) - ratio d(p, n) + margin)``
    over the keypoints of A, ``n`` the nearest descriptor of B other than ``q`` (the runner-up of the ratio test),
    divided by the keypoint count of A. Exactly the condition for ``p -> q`` to pass Lowe's ratio test.

    ``focus`` > 0: only the pairs that pass already and the ``focus`` closest to passing (smallest
    ``d(p, q) - ratio d(p, n)``) count. Descriptor patches overlap, so spreading the effort over every pair makes
    their pixel gradients cancel; concentrated, each chosen pair gets the whole budget of its patch."""
    if len(fa) == 0 or len(fb) < 2:
        return _zero(fa, fb)
    pa, near, dd = _mapped(fa, fb, H, radius)
    has = near.any(1)
    if not bool(has.any()):
        return _zero(fa, fb)
    inf = torch.full_like(dd, float("inf"))
    j = torch.argmin(torch.where(near, dd, inf), 1)
    # the runner-up of the ratio test: the nearest descriptor of B other than q (near H(p) or not)
    k = torch.argmin(dd.scatter(1, j[:, None], float("inf")), 1)
    ia = torch.nonzero(has)[:, 0]
    j, k = j[ia], k[ia]
    if focus > 0:
        gap = dd[ia, j] - ratio * dd[ia, k]
        passing = gap < 0
        rest = torch.nonzero(~passing)[:, 0]
        nxt = rest[torch.argsort(gap[rest])[:focus]]
        keep = torch.cat([torch.nonzero(passing)[:, 0], nxt])
        ia, j, k = ia[keep], j[keep], k[keep]
    d_pos, d_neg, sq = _pair_terms(fa, fb, pa, ia, j, k)
    hinge = torch.relu(d_pos - ratio * d_neg + margin)
    return _per_keypoint(fa, sq / (radius * radius), alpha * hinge)


def ratio_untargeted_loss(
    fa: Features,
    fb: Features,
    H: torch.Tensor,
    radius: float,
    alpha: float,
    margin: float,
    ratio: float = 0.8,
) -> torch.Tensor:
    """Ratio-test-aware untargeted loss (scalar, >= 0): for each keypoint ``p`` of A, ``d_pos`` is its smallest
    descriptor distance to the B keypoints within ``radius`` px of ``H(p)`` and ``d_neg`` to the others; a match of
    ``p`` to any B keypoint near ``H(p)`` fails the ratio test once ``d_pos >= ratio d_neg``, so the loss is the
    summed hinge ``relu(ratio d_neg + margin - d_pos)`` (plus ``exp(-d^2 / radius^2)`` of the partner, pushing it
    away), divided by the keypoint count of A."""
    if len(fa) == 0 or len(fb) < 2:
        return _zero(fa, fb)
    pa, near, dd = _mapped(fa, fb, H, radius)
    inf = torch.full_like(dd, float("inf"))
    pos = torch.where(near, dd, inf)
    neg = torch.where(near, inf, dd)
    dp, j = pos.min(1)
    dn, k = neg.min(1)
    active = torch.isfinite(dp) & torch.isfinite(dn) & (ratio * dn + margin > dp)
    if not bool(active.any()):
        return _zero(fa, fb)
    ia = torch.nonzero(active)[:, 0]
    j, k = j[ia], k[ia]
    d_pos, d_neg, sq = _pair_terms(fa, fb, pa, ia, j, k)
    hinge = torch.relu(ratio * d_neg + margin - d_pos)
    return _per_keypoint(fa, torch.exp(-sq / (radius * radius)), alpha * hinge)


def attack_loss(cfg: AttackConfig, fa: Features, fb: Features, H: torch.Tensor) -> torch.Tensor:
    """The loss ``cfg`` names (``cfg.loss`` for ``cfg.mode``, with its weights and radii): a scalar tensor."""
    if cfg.loss == "paper":
        if cfg.mode == "match":
            return targeted_loss(fa, fb, H, cfg.radius, cfg.alpha, cfg.focus)
        return untargeted_loss(fa, fb, H, cfg.radius, cfg.alpha, cfg.margin)
    if cfg.mode == "match":
        return ratio_targeted_loss(fa, fb, H, cfg.radius, cfg.alpha, cfg.margin, focus=cfg.focus_count)
    return ratio_untargeted_loss(fa, fb, H, cfg.kill_radius, cfg.alpha, cfg.margin)


__all__ = ["attack_loss", "ratio_targeted_loss", "ratio_untargeted_loss", "targeted_loss", "untargeted_loss"]
