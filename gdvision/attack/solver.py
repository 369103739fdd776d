"""Adversarial perturbations against feature matching: make unrelated images match, or break a true match.

The attacked pipeline is :func:`gdvision.features.match.detect_and_describe` (Hessian keypoints + SIFT descriptors by
default, the top ``max_features`` of each image) followed by the ratio test and RANSAC. Keypoint positions,
scales, orientation angles (within their histogram peak) and descriptors are differentiable functions of the pixels,
so the pixels can be optimised by gradient descent (the shared loop :func:`gdvision.optim.minimize_first_order`,
Adam). The keypoint *selection* (and which orientation peak wins) is not differentiable: it is redone from the
current pixels at every step.

Modes (``H`` maps pixels of A to pixels of B, ``[xB, yB, 1]^T ~ H [xA, yA, 1]^T``):

- ``match`` (targeted): ``H`` is the target homography (identity by default). The default ``ratio`` loss works on
  Lowe's ratio test itself: for each keypoint ``p`` of A, its partner ``q`` is the most similar (descriptor) B
  keypoint within ``radius`` px of ``H(p)`` and ``n`` the most similar of the others; the loss is
  ``|H(p) - q|^2 / radius^2 + alpha relu(d(p, q) - 0.8 d(p, n) + margin)`` summed over the pairs that pass already
  and the ``focus_count`` closest to passing (concentrated effort: descriptor patches overlap, and gradients of many
  pairs on the same pixels cancel). ``paper`` is the Kornia paper's loss ``L_loc + alpha L_desc + beta L_reg``:
  nearest keypoints in (x, y, scale), ``L_desc`` the mean of ``1 + d(D_p, D_q) - d(D_p, D_neg)`` with hard
  negatives (with ``focus``, weighted by ``exp(-d^2 / 2 radius^2)``).
- ``unmatch`` (untargeted): ``H`` is the true homography. A ratio match of ``p`` to any B keypoint within
  ``kill_radius`` px of ``H(p)`` is a true match (it pulls RANSAC toward H); it cannot pass the ratio test once
  the nearest of those descriptors is farther than ``0.8`` times the nearest of the others. The loss sums
  ``relu(0.8 d_neg + margin - d_pos) + exp(-d^2 / kill_radius^2)`` over the keypoints where that fails, divided
  by the keypoint count of A. (``paper``: the same on the single nearest keypoint in (x, y, scale) within
  ``radius``.)

Every step re-detects the keypoints of the current 8-bit pixels (``quantize``: straight-through rounding), counts
the ratio matches near H, and (``keep_best``) the best step's images are returned, not the last one's: the
detector's discrete choices make the loss noisy, so the last step is often not the best. ``unmatch`` ranks the
steps first by how many of 3 seeded RANSAC runs (seeds 1-3; the evaluation's is 0) miss H, once few true matches
are left (``ransac_score``). The steps run as ``phases`` Adam runs, each restarted from the best pixels so far with
half the step size.

Start (``init``): ``zero``; ``blend`` moves the fine detail (gray image minus its 3 px Gaussian blur) of each
image toward the other's under H (``match``) or away from it (``unmatch``); ``texture`` (``match``, both images
perturbed) adds one shared random texture in the budget the blend leaves, at corresponding places of both images,
which plants identical keypoints and descriptors where both images are plain. Adam refines from there.

Budget: the perturbation of each image is ``delta = eps * tanh(z / eps) * mask`` with ``z`` the free parameters
(in intensity units, so ``lr`` is a step in intensity units while ``|delta| << eps``); pixels are
``clamp(x0 + delta, 0, 1)`` (with a straight-through gradient at the bounds). So ``|delta| <= eps`` everywhere and
``delta = 0`` outside the mask, by construction. The result is rounded to 8 bits by :func:`quantize_within_budget`,
which keeps the budget exactly; every figure of the report is computed on the quantised pixels.

Conventions: images (1, C, H, W) in [0, 1]; pixel coordinates with (0, 0) = centre of the top-left pixel.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from gdvision.coords import apply_homography, mean_corner_error
from gdvision.errors import InputError, SolverError, UsageError
from gdvision.features.match import FeatureConfig, Features, MatchConfig, detect_and_describe, match_features
from gdvision.features.matching import match_descriptors
from gdvision.geometry import homography_folds
from gdvision.optim import Progress, StepConfig, minimize_first_order

MODES = ("match", "unmatch")
PERTURB = ("a", "b", "both")
INITS = ("zero", "blend", "texture")
LOSSES = ("ratio", "paper")


def default_attack_features() -> FeatureConfig:
    """The features attacked (and evaluated, white-box) by default: the top 2500 Hessian keypoints, SIFT descriptors.

    As in the Kornia paper's experiment the top-K responses are kept with no contrast threshold (0), and without
    the doubled first octave (4x cheaper per step). ``gdvision match --detector hessian --max-features 2500
    --no-upsample --contrast-threshold 0`` runs the same pipeline.
    """
    return FeatureConfig(detector="hessian", max_features=2500, double_first=False, contrast_threshold=0.0)


@dataclass
class AttackConfig:
    """Settings of :func:`attack_pair`.

    Attributes:
        mode: ``match`` (targeted: make A and B match under the target H) or ``unmatch`` (untargeted: break the
            true H).
        eps: L-inf budget in [0, 1] intensity units (default 8/255); at least one 8-bit level (1/255).
        steps: Adam iterations; lr: Adam step (intensity units, see the module docstring).
        perturb: which image(s) to change: ``a``, ``b`` or ``both``.
        alpha: weight of the descriptor term; beta: weight of the pixel-change term (mean squared change).
        radius: ``match``: correspondence radius in pixels (distance to ``H(p)``; the paper loss adds scale).
        margin: margin of the descriptor hinges (descriptor distance units, descriptors have norm 1).
        features: the attacked detector/descriptor (default :func:`default_attack_features`).
        eval_every: count the ratio-test matches consistent with H (within ``ransac_threshold``) every this many
            steps for the progress report (0 = never; cheap, the features are already computed).
        ransac_threshold: RANSAC inlier threshold (px) of the evaluation.
        init: starting point: ``zero``, ``blend`` or ``texture`` (see the module docstring).
        focus: ``paper`` loss, ``match``: weight the descriptor term by geometric proximity (False: the plain mean).
        loss: ``ratio`` (default: hinges on Lowe's ratio test, see :func:`ratio_targeted_loss` and
            :func:`ratio_untargeted_loss`) or ``paper`` (the Kornia paper's triplet loss, :func:`targeted_loss`).
        kill_radius: ``unmatch``: a ratio match whose B point lies within this many px of ``H(p)`` still counts as
            a true match (it would pull RANSAC toward H), so the attack pushes all of them out.
        quantize: optimise the 8-bit pixels that will be saved (straight-through gradient), so every step's
            features are those of the output.
        keep_best: return the best step's images, by the white-box count (``match``: most ratio matches within
            ``ransac_threshold`` of H; ``unmatch``: fewest within ``kill_radius``), rather than the last step's.
        ransac_score: ``unmatch``: rank the steps first by how many of 3 seeded RANSAC runs (seeds 1-3, not the
            evaluation's 0) miss H (see :func:`ransac_failures`; run once at most 20 true matches are left).
        stop_inliers: ``match``: stop once that many ratio matches are H-consistent (0 = run every step).
            ``unmatch`` always stops once no ratio match is left within ``kill_radius`` of H.
        focus_count: ``ratio`` loss, ``match``: work on the pairs that pass already plus this many closest to
            passing (0 = every pair).
        phases: with ``keep_best``, the steps are split into this many Adam runs, each restarted from the best
            pixels so far with half the previous step size.

    Example:
        >>> AttackConfig(mode="unmatch", eps=4 / 255).validate()
    """

    mode: str = "match"
    eps: float = 8.0 / 255.0
    steps: int = 150
    lr: float = 0.003
    perturb: str = "both"
    alpha: float = 1.0
    beta: float = 1.0
    radius: float = 4.0
    margin: float = 0.05
    features: FeatureConfig = field(default_factory=default_attack_features)
    eval_every: int = 10
    ransac_threshold: float = 3.0
    init: str = "texture"
    focus: bool = True
    loss: str = "ratio"
    kill_radius: float = 10.0
    quantize: bool = True
    keep_best: bool = True
    stop_inliers: int = 0
    focus_count: int = 24
    phases: int = 3
    ransac_score: bool = True

    def validate(self) -> None:
        """UsageError naming the first setting that cannot work."""
        if self.mode not in MODES:
            raise UsageError(f"--mode must be one of {', '.join(MODES)}, got '{self.mode}'")
        if self.perturb not in PERTURB:
            raise UsageError(f"--perturb must be one of {', '.join(PERTURB)}, got '{self.perturb}'")
        if not (self.eps == self.eps) or self.eps <= 0 or self.eps > 1:
            raise UsageError(f"--eps must be in (0, 1] (intensity units, e.g. 0.0314 = 8/255), got {self.eps}")
        if self.eps < 1.0 / 255.0 - 1e-9:
            raise UsageError(
                f"--eps {self.eps:.5g} is below one 8-bit level (1/255 = 0.00392): the output cannot change"
            )
        if not 1 <= self.steps <= 100_000:
            raise UsageError(f"--steps must be in [1, 100000], got {self.steps}")
        if not (self.lr == self.lr) or not 0 < self.lr <= 1:
            raise UsageError(f"--lr must be in (0, 1], got {self.lr}")
        for name, v in (("alpha", self.alpha), ("beta", self.beta), ("margin", self.margin)):
            if not (v == v) or v < 0 or v > 1e6:
                raise UsageError(f"--{name} must be in [0, 1e6], got {v}")
        if not 0 < self.radius <= 1000:
            raise UsageError(f"--radius must be in (0, 1000] px, got {self.radius}")
        if self.loss not in LOSSES:
            raise UsageError(f"--loss must be one of {', '.join(LOSSES)}, got '{self.loss}'")
        if not 0 < self.kill_radius <= 1000:
            raise UsageError(f"kill radius must be in (0, 1000] px, got {self.kill_radius}")
        if not 1 <= self.phases <= 100:
            raise UsageError(f"phases must be in [1, 100], got {self.phases}")
        if self.focus_count < 0:
            raise UsageError(f"focus_count must be >= 0, got {self.focus_count}")
        if self.stop_inliers < 0:
            raise UsageError(f"--stop-inliers must be >= 0, got {self.stop_inliers}")
        if self.init not in INITS:
            raise UsageError(f"--init must be one of {', '.join(INITS)}, got '{self.init}'")
        if self.eval_every < 0:
            raise UsageError(f"eval_every must be >= 0, got {self.eval_every}")
        if not 0 < self.ransac_threshold <= 1000:
            raise UsageError(f"ransac threshold must be in (0, 1000] px, got {self.ransac_threshold}")
        self.features.validate()


@dataclass
class AttackProgress:
    """What the progress callback of :func:`attack_pair` receives after each step.

    ``consistent``: ratio-test matches A -> B within ``ransac_threshold`` of H at the last count (None before it).
    """

    iteration: int
    steps: int
    loss: float
    consistent: int | None


@dataclass
class AttackResult:
    """Outcome of :func:`attack_pair`.

    Attributes:
        adv_a, adv_b: (1, C, H, W) perturbed images, already quantised to 8 bits (values k/255), within budget.
        delta_a, delta_b: ``adv - original`` (1, C, H, W) (zero for an image that was not perturbed).
        losses: loss after each step; iterations: steps run; seconds: wall time of the optimisation.
        consistent: ratio-test matches A -> B within ``ransac_threshold`` of H: of the returned images with
            ``keep_best`` (and ``quantize``), else the last progress count (None if never counted).
        near: with ``keep_best``, the ratio-test matches of the returned images within ``kill_radius`` of H.
        stopped_early: the target (``stop_inliers``) was reached before ``steps``.
    """

    adv_a: torch.Tensor
    adv_b: torch.Tensor
    delta_a: torch.Tensor
    delta_b: torch.Tensor
    losses: list[float]
    iterations: int
    seconds: float
    consistent: int | None = None
    near: int | None = None
    stopped_early: bool = False


# ------------------------------------------------------------------------------------------- budget


def bounded_perturbation(z: torch.Tensor, eps: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``eps * tanh(z / eps) * mask``: a perturbation with ``|delta| <= eps`` (and 0 where ``mask`` is 0).

    ``z`` (B, C, H, W) in intensity units; ``mask`` (B or 1, 1, H, W) in [0, 1] or None.

    Example:
        >>> import torch
        >>> d = bounded_perturbation(torch.tensor([-5.0, 0.001, 5.0]), 0.03)
        >>> [round(v, 4) for v in d.tolist()]
        [-0.03, 0.001, 0.03]
    """
    d = eps * torch.tanh(z / eps)
    return d if mask is None else d * mask


def apply_perturbation(x0: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``clamp(x0 + delta, 0, 1)`` with a straight-through gradient (pixels stay in [0, 1], gradients flow).

    Example:
        >>> import torch
        >>> apply_perturbation(torch.tensor([0.0, 0.5, 1.0]), torch.tensor([-0.1, 0.1, 0.1])).tolist()
        [0.0, 0.6000000238418579, 1.0]
    """
    x = x0 + delta
    return x + (x.clamp(0.0, 1.0) - x).detach()


def quantize_within_budget(x: torch.Tensor, x0: torch.Tensor, eps: float) -> torch.Tensor:
    """Round ``x`` to 8-bit levels (k/255) while keeping ``|q - x0| <= eps`` and ``q`` in [0, 1].

    Each value is rounded to the nearest level, then clipped to the levels inside ``[x0 - eps, x0 + eps]``; where
    no level lies inside (a non-8-bit ``x0`` with ``eps`` under half a level) the level nearest ``x0`` is used.
    For 8-bit ``x0`` the result is always within the budget. Shapes as ``x``.

    Example:
        >>> import torch
        >>> x0 = torch.tensor([0.0, 100 / 255, 1.0])
        >>> q = quantize_within_budget(x0 + torch.tensor([-0.02, 0.0157, 0.004]), x0, 4 / 255)
        >>> (q * 255).round().tolist()
        [0.0, 104.0, 255.0]
    """
    x0d = x0.to(torch.float64)
    lo = torch.ceil(((x0d - eps) * 255.0 - 1e-6).clamp(0, 255))
    hi = torch.floor(((x0d + eps) * 255.0 + 1e-6).clamp(0, 255))
    q = torch.round(x.to(torch.float64) * 255.0).clamp(0, 255)
    q = torch.minimum(torch.maximum(q, lo), hi)
    empty = lo > hi
    if bool(empty.any()):
        q = torch.where(empty, torch.round(x0d * 255.0).clamp(0, 255), q)
    return (q / 255.0).to(x.dtype)


def perturbation_stats(x: torch.Tensor, x0: torch.Tensor) -> dict[str, float]:
    """L-inf, L2 (over all values) and PSNR (dB, peak 1) of ``x - x0`` for images in [0, 1].

    Example:
        >>> import torch
        >>> s = perturbation_stats(torch.full((1, 1, 4, 4), 0.1), torch.zeros(1, 1, 4, 4))
        >>> round(s["linf"], 3), round(s["l2"], 3), round(s["psnr_db"], 1)
        (0.1, 0.4, 20.0)
    """
    d = (x.to(torch.float64) - x0.to(torch.float64)).flatten()
    mse = float((d * d).mean()) if d.numel() else 0.0
    psnr = float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)
    return {
        "linf": float(d.abs().max()) if d.numel() else 0.0,
        "linf_255": float(d.abs().max()) * 255.0 if d.numel() else 0.0,
        "l2": float(d.norm()),
        "rmse": math.sqrt(mse),
        "psnr_db": psnr,
    }


# ------------------------------------------------------------------------------------------- losses


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


def ransac_failures(
    fa: Features,
    fb: Features,
    H: torch.Tensor,
    config: MatchConfig,
    image_size_a: tuple[int, int],
    seeds: tuple[int, ...] = (1, 2, 3),
    fail_error: float = 20.0,
) -> int:
    """How many RANSAC runs (one per seed) fail to recover ``H``: no model, or a mean corner error above
    ``fail_error`` px (the ``unmatch`` success test of :func:`success`). Seeds other than the evaluation's (0), so
    an attack scored by this does not hinge on one random draw. ``image_size_a`` = (W, H) of A."""
    from dataclasses import replace

    fails = 0
    for sd in seeds:
        try:
            res = match_features(fa, fb, replace(config, seed=sd), image_size_a)
        except SolverError:
            fails += 1
            continue
        M = res.model.detach().cpu().to(torch.float64)
        ce = float(mean_corner_error(M, H.detach().cpu().to(torch.float64), image_size_a[1], image_size_a[0]))
        fails += int(not ce <= fail_error)
    return fails


def consistent_matches(fa: Features, fb: Features, H: torch.Tensor, threshold: float, ratio: float = 0.8) -> int:
    """Ratio-test matches A -> B whose B point lies within ``threshold`` px of ``H(p)`` (a cheap inlier proxy)."""
    return match_counts(fa, fb, H, (threshold,), ratio)[0]


def match_counts(
    fa: Features, fb: Features, H: torch.Tensor, radii: tuple[float, ...], ratio: float = 0.8
) -> list[int]:
    """For each radius, the ratio-test matches A -> B whose B point lies within it (px) of ``H(p)``."""
    if len(fa) == 0 or len(fb) == 0:
        return [0] * len(radii)
    idx, _ = match_descriptors(fa.desc.detach(), fb.desc.detach(), "ratio", ratio)
    if idx.shape[0] == 0:
        return [0] * len(radii)
    pa = apply_homography(H.to(fa.xy.dtype), fa.xy.detach()[idx[:, 0]])
    d = (pa - fb.xy.detach()[idx[:, 1]]).norm(dim=1)
    return [int((d < r).sum()) for r in radii]


# ------------------------------------------------------------------------------------------- solver


def _initial_params(
    a0: torch.Tensor,
    b0: torch.Tensor,
    H: torch.Tensor,
    cfg: AttackConfig,
    use_a: bool,
    use_b: bool,
    sigma: float = 3.0,
    texture_sigma: float = 1.5,
    seed: int = 0,
) -> torch.Tensor:
    """Starting parameters (1, Na + Nb) of the ``blend`` / ``texture`` initialisations.

    ``blend``: move the fine detail (gray image minus its Gaussian blur, ``sigma`` px) of each image toward the
    other's under H (``match``) or away from it (``unmatch``), half the way each when both images are perturbed.
    ``texture`` (``match`` only, both images): blend, plus one shared random texture (noise blurred by
    ``texture_sigma`` px) in the budget the blend leaves, added at corresponding places (through H) of both images,
    which plants identical keypoints and descriptors where both images are plain.
    """
    from gdvision.filters.separable import gaussian_blur
    from gdvision.io.images import to_gray
    from gdvision.warp import warp_perspective

    def detail(x: torch.Tensor) -> torch.Tensor:
        g = to_gray(x)
        return g - gaussian_blur(g, sigma)

    Hf = H.to(a0.dtype)
    Hi = torch.linalg.inv(Hf)
    size_a, size_b = (a0.shape[-1], a0.shape[-2]), (b0.shape[-1], b0.shape[-2])
    b_in_a, va = warp_perspective(detail(b0), Hi, size_a)
    share = 0.5 if (use_a and use_b) else 1.0
    sign = 1.0 if cfg.mode == "match" else -1.0
    da = sign * share * (b_in_a - detail(a0)) * va  # A's change, A's frame
    db = -sign * share * (b_in_a - detail(a0)) * va  # B's change, A's frame
    if cfg.init == "texture" and cfg.mode == "match" and use_a and use_b:
        g = torch.Generator(device="cpu").manual_seed(seed)
        noise = torch.randn(1, 1, size_a[1], size_a[0], generator=g).to(a0)
        noise = gaussian_blur(noise, texture_sigma)
        noise = torch.tanh(2.0 * noise / noise.std().clamp_min(1e-12))
        room = (cfg.eps - torch.maximum(da.abs(), db.abs())).clamp_min(0.0)
        da = da + room * noise
        db = db + room * noise
    za = da.clamp(-cfg.eps, cfg.eps).expand_as(a0)
    zb = warp_perspective(db.clamp(-cfg.eps, cfg.eps), Hf, size_b)[0].expand_as(b0)
    parts = ([za.reshape(-1)] if use_a else []) + ([zb.reshape(-1)] if use_b else [])
    # z such that eps * tanh(z / eps) equals the wanted change (kept off the saturated ends)
    wanted = torch.cat(parts).clamp(-0.97 * cfg.eps, 0.97 * cfg.eps)
    return (cfg.eps * torch.atanh(wanted / cfg.eps))[None]


def _check_image(name: str, x: torch.Tensor) -> None:
    if x.dim() != 4 or x.shape[0] != 1:
        raise UsageError(f"image {name}: expected shape (1, C, H, W), got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise InputError(f"image {name} contains NaN or infinite values")
    if float(x.min()) < 0 or float(x.max()) > 1:
        raise InputError(f"image {name} has values outside [0, 1]")
    if min(x.shape[-2:]) < 16:
        raise InputError(f"image {name} is too small ({x.shape[-1]}x{x.shape[-2]}; need at least 16x16)")


def _check_mask(name: str, m: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    if m is None:
        return None
    if m.dim() == 2:
        m = m[None, None]
    if m.dim() != 4 or m.shape[0] != 1 or m.shape[1] != 1 or m.shape[-2:] != x.shape[-2:]:
        raise InputError(
            f"mask of {name}: expected {x.shape[-1]}x{x.shape[-2]} (the image's size), got shape {tuple(m.shape)}"
        )
    if not torch.isfinite(m).all():
        raise InputError(f"mask of {name} contains NaN or infinite values")
    m = m.to(dtype=x.dtype, device=x.device).clamp(0, 1)
    if float(m.max()) <= 0:
        raise InputError(f"mask of {name} is empty: nothing may change")
    return m


def attack_pair(
    a: torch.Tensor,
    b: torch.Tensor,
    H: torch.Tensor | None = None,
    config: AttackConfig | None = None,
    mask_a: torch.Tensor | None = None,
    mask_b: torch.Tensor | None = None,
    progress: Callable[[AttackProgress], None] | None = None,
) -> AttackResult:
    """Optimise the pixels of ``a`` and/or ``b`` ((1, C, H, W) in [0, 1]) to fool the matcher.

    Args:
        H: (3, 3) pixel homography A -> B: the target (``match``; default identity, which needs equal sizes) or the
            true one (``unmatch``; required).
        config: :class:`AttackConfig`.
        mask_a, mask_b: optional (1, 1, H, W) or (H, W) masks in [0, 1] limiting where each image may change.
        progress: called after each step with an :class:`AttackProgress`.

    Returns:
        :class:`AttackResult` with 8-bit-quantised adversarial images inside the budget.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> a = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 64, 64, generator=g), 5, 1, 2)
        >>> b = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 64, 64, generator=g), 5, 1, 2)
        >>> r = attack_pair(a, b, config=AttackConfig(steps=3, eps=4 / 255))
        >>> bool((r.adv_a - a).abs().max() <= 4 / 255 + 1e-6), r.iterations
        (True, 3)
    """
    cfg = config or AttackConfig()
    cfg.validate()
    _check_image("A", a)
    _check_image("B", b)
    if H is None:
        if cfg.mode == "unmatch":
            raise UsageError("the unmatch mode needs the true homography A -> B")
        if a.shape[-2:] != b.shape[-2:]:
            raise UsageError(
                f"A is {a.shape[-1]}x{a.shape[-2]} and B is {b.shape[-1]}x{b.shape[-2]}: give a target homography "
                "(--target-h) for images of different sizes"
            )
        H = torch.eye(3, dtype=torch.float64)
    H = torch.as_tensor(H, dtype=torch.float64).to(a.device)
    if H.shape != (3, 3) or not torch.isfinite(H).all() or abs(float(torch.linalg.det(H))) < 1e-12:
        raise InputError("the homography must be a finite, invertible 3x3 matrix")
    if bool(homography_folds(H[None], float(a.shape[-1]), float(a.shape[-2]))[0]):
        raise InputError("the homography folds image A (a corner goes behind the camera or the quad flips)")
    ma, mb = _check_mask("A", mask_a, a), _check_mask("B", mask_b, b)
    use_a, use_b = cfg.perturb in ("a", "both"), cfg.perturb in ("b", "both")
    a0, b0 = a.detach().float(), b.detach().float()
    na, nb = (a0.numel() if use_a else 0), (b0.numel() if use_b else 0)
    same = a0.shape == b0.shape
    state: dict[str, Any] = {"it": 0, "consistent": None, "best": None, "best_score": None}

    def images(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xa, xb = a0, b0
        if use_a:
            xa = apply_perturbation(a0, bounded_perturbation(p[0, :na].view_as(a0), cfg.eps, ma))
            if cfg.quantize:
                xa = _quantize_ste(xa, a0, cfg.eps, ma)
        if use_b:
            xb = apply_perturbation(b0, bounded_perturbation(p[0, na:].view_as(b0), cfg.eps, mb))
            if cfg.quantize:
                xb = _quantize_ste(xb, b0, cfg.eps, mb)
        return xa, xb

    def features(xa: torch.Tensor, xb: torch.Tensor) -> tuple[Features, Features]:
        if same:
            f = detect_and_describe(torch.cat([xa, xb]), cfg.features)
            return f.image(0), f.image(1)
        return detect_and_describe(xa, cfg.features), detect_and_describe(xb, cfg.features)

    def score(fa: Features, fb: Features, p: torch.Tensor, loss: float) -> None:
        """Count the H-consistent (and, unmatch, the near-H) ratio matches of the current pixels; keep the best
        (ties: the lower loss)."""
        cons, near = match_counts(fa, fb, H, (cfg.ransac_threshold, cfg.kill_radius))
        state["consistent"], state["near"] = cons, near
        if cfg.mode == "match":
            sc = (cons, 0, 0, -loss)
        else:  # first: how often RANSAC misses H (3 seeds; skipped while many true matches are left)
            fails = 0
            if cfg.ransac_score and near <= 20:
                fails = ransac_failures(fa, fb, H, mc, (a0.shape[-1], a0.shape[-2]))
            sc = (fails, -near, -cons, -loss)
        if state["best_score"] is None or sc > state["best_score"]:
            state["best_score"], state["best"] = sc, p.detach().clone()
            state["best_counts"] = (cons, near)

    def objective(xa: torch.Tensor, xb: torch.Tensor, fa: Features, fb: Features) -> torch.Tensor:
        """The attack loss plus ``beta`` times the mean squared change of each perturbed image (scalar)."""
        if cfg.loss == "paper":
            if cfg.mode == "match":
                main = targeted_loss(fa, fb, H, cfg.radius, cfg.alpha, cfg.focus)
            else:
                main = untargeted_loss(fa, fb, H, cfg.radius, cfg.alpha, cfg.margin)
        elif cfg.mode == "match":
            main = ratio_targeted_loss(fa, fb, H, cfg.radius, cfg.alpha, cfg.margin, focus=cfg.focus_count)
        else:
            main = ratio_untargeted_loss(fa, fb, H, cfg.kill_radius, cfg.alpha, cfg.margin)
        reg = xa.new_zeros(())
        if use_a:
            reg = reg + ((xa - a0) ** 2).mean()
        if use_b:
            reg = reg + ((xb - b0) ** 2).mean()
        return main + cfg.beta * reg

    def loss_fn(p: torch.Tensor) -> torch.Tensor:
        xa, xb = images(p)
        fa, fb = features(xa, xb)
        total = objective(xa, xb, fa, fb)
        state["it"] += 1
        if track or (cfg.eval_every and (state["it"] % cfg.eval_every == 1 or cfg.eval_every == 1)):
            score(fa, fb, p, float(total.detach()))
        return total.reshape(1)

    losses: list[float] = []

    def record(pr: Progress) -> None:
        losses.append(pr.loss)
        if progress is not None:
            progress(AttackProgress(state["it"], cfg.steps, pr.loss, state["consistent"]))
        best = state["best_score"]
        if best is not None and cfg.stop_inliers and cfg.mode == "match" and best[0] >= cfg.stop_inliers:
            raise _Stop
        if best is not None and cfg.mode == "unmatch" and best[1] == 0:
            raise _Stop  # no ratio match is left anywhere near H: nothing more to break

    track = cfg.keep_best or cfg.stop_inliers > 0 or cfg.mode == "unmatch"
    mc = match_config_for(cfg)
    p0 = torch.zeros(1, na + nb, dtype=a0.dtype, device=a0.device)
    if cfg.init != "zero":
        p0 = _initial_params(a0, b0, H, cfg, use_a, use_b)
    t0 = time.perf_counter()
    stopped = False
    p = p0
    # phases: Adam restarts from the best pixels so far with half the step (a ratchet: what passes stays)
    n_ph = max(1, min(cfg.phases, cfg.steps)) if cfg.keep_best else 1
    for ph in range(n_ph):
        iters_ph = cfg.steps // n_ph + (1 if ph < cfg.steps % n_ph else 0)
        step = StepConfig(method="adam", lr=cfg.lr * 0.5**ph, iters=iters_ph, tol=0.0, patience=iters_ph + 1)
        step.divergence_factor = 1e6
        try:
            p, _, _ = minimize_first_order(loss_fn, p, step, record)
        except _Stop:
            p, stopped = state["best"], True
            break
        except SolverError as exc:
            raise SolverError(f"attack failed: {exc}") from exc
        with torch.no_grad():
            if track:  # the last step's result was never scored
                xa, xb = images(p)
                fa, fb = features(xa, xb)
                score(fa, fb, p, float(objective(xa, xb, fa, fb)))
        if cfg.keep_best and state["best"] is not None:
            p = state["best"]
    iters = state["it"]
    with torch.no_grad():
        xa, xb = images(p)
        qa = quantize_within_budget(xa, a0, cfg.eps) if use_a else a0
        qb = quantize_within_budget(xb, b0, cfg.eps) if use_b else b0
        if ma is not None:
            qa = torch.where(ma > 0, qa, a0)
        if mb is not None:
            qb = torch.where(mb > 0, qb, b0)
    seconds = time.perf_counter() - t0
    cons, near = state["best_counts"] if cfg.keep_best and state["best"] is not None else (state["consistent"], None)
    return AttackResult(qa, qb, qa - a0, qb - b0, losses, iters, seconds, cons, near, stopped)


class _Stop(Exception):
    """Raised by the progress hook to end the optimisation early (the target was reached)."""


def _quantize_ste(x: torch.Tensor, x0: torch.Tensor, eps: float, mask: torch.Tensor | None) -> torch.Tensor:
    """The 8-bit pixels that will be saved (:func:`quantize_within_budget`), with a straight-through gradient."""
    q = quantize_within_budget(x.detach(), x0, eps)
    if mask is not None:
        q = torch.where(mask > 0, q, x0)
    return x + (q - x).detach()


# ------------------------------------------------------------------------------------------- evaluation


def evaluate_gdvision(
    a: torch.Tensor, b: torch.Tensor, H: torch.Tensor, config: MatchConfig
) -> tuple[dict[str, Any], Any]:
    """Match ``a`` to ``b`` as :func:`gdvision.features.match.match_images` does (no refinement): ``(record, result)``.

    ``result`` is the :class:`~gdvision.features.match.MatchResult`, or None when RANSAC found no model.

    The record holds ``matches``, ``inliers`` (0 when RANSAC finds nothing), ``corner_error_px`` of the RANSAC
    homography against ``H`` (None when there is none), ``consistent_inliers`` (RANSAC inliers within the threshold
    of ``H`` too) and ``error`` (the reason, when no model was found).
    """
    with torch.no_grad():
        if a.shape == b.shape:
            f = detect_and_describe(torch.cat([a, b]), config.features)
            fa, fb = f.image(0), f.image(1)
        else:
            fa, fb = detect_and_describe(a, config.features), detect_and_describe(b, config.features)
    n_matches = int(match_descriptors(fa.desc, fb.desc, config.matcher, config.ratio)[0].shape[0])
    try:
        res = match_features(fa, fb, config, (a.shape[-1], a.shape[-2]))
    except SolverError as exc:
        rec = {"matches": n_matches, "inliers": 0, "consistent_inliers": 0, "corner_error_px": None}
        rec["error"] = str(exc)
        return rec, None
    M = res.model.detach().cpu().to(torch.float64)
    Hc = H.detach().cpu().to(torch.float64)
    ce = float(mean_corner_error(M, Hc, a.shape[-2], a.shape[-1]))
    inl = res.inliers.cpu()
    pa, pb = res.pts_a.cpu()[inl], res.pts_b.cpu()[inl]
    cons = int(((apply_homography(Hc, pa) - pb).norm(dim=1) < config.ransac_threshold).sum()) if pa.numel() else 0
    rec = {
        "matches": int(res.idx.shape[0]),
        "inliers": int(inl.sum()),
        "consistent_inliers": cons,
        "corner_error_px": ce,
        "error": None,
    }
    return rec, res


def evaluate_opencv(a: torch.Tensor, b: torch.Tensor, H: torch.Tensor, threshold: float = 3.0) -> dict[str, Any] | None:
    """Transfer check with OpenCV SIFT + ratio test 0.8 + ``cv2.findHomography`` RANSAC; None without OpenCV.

    Images are converted to 8-bit gray (1, C, H, W) -> (H, W) uint8; the record is shaped like
    :func:`evaluate_gdvision`'s (plus ``keypoints_a``/``keypoints_b``).
    """
    try:
        import cv2  # optional: only for the transfer figures
    except ImportError:
        return None
    import numpy as np

    from gdvision.io.images import to_gray

    def u8(x: torch.Tensor) -> np.ndarray:
        g = to_gray(x.detach().cpu().float())[0, 0].numpy()
        return np.clip(np.rint(g * 255.0), 0, 255).astype(np.uint8)

    sift = cv2.SIFT_create()
    ka, da = sift.detectAndCompute(u8(a), None)
    kb, db = sift.detectAndCompute(u8(b), None)
    rec: dict[str, Any] = {"keypoints_a": len(ka), "keypoints_b": len(kb), "matches": 0, "inliers": 0}
    rec.update({"consistent_inliers": 0, "corner_error_px": None, "error": None})
    if da is None or db is None or len(kb) < 2:
        rec["error"] = "too few keypoints"
        return rec
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(da, db, k=2)
    good = [m[0] for m in pairs if len(m) == 2 and m[0].distance <= 0.8 * m[1].distance]
    rec["matches"] = len(good)
    if len(good) < 4:
        rec["error"] = f"only {len(good)} matches"
        return rec
    pa = np.float64([ka[m.queryIdx].pt for m in good])
    pb = np.float64([kb[m.trainIdx].pt for m in good])
    M, inl = cv2.findHomography(pa, pb, cv2.RANSAC, threshold)
    if M is None or inl is None:
        rec["error"] = "RANSAC found no homography"
        return rec
    inl = inl.ravel().astype(bool)
    Hc = H.detach().cpu().to(torch.float64)
    Mt = torch.from_numpy(M).to(torch.float64)
    rec["inliers"] = int(inl.sum())
    rec["corner_error_px"] = float(mean_corner_error(Mt, Hc, a.shape[-2], a.shape[-1]))
    mapped = apply_homography(Hc, torch.from_numpy(pa[inl]))
    rec["consistent_inliers"] = int(((mapped - torch.from_numpy(pb[inl])).norm(dim=1) < threshold).sum())
    return rec


def success(
    rec: dict[str, Any] | None, mode: str, min_inliers: int = 30, max_error: float = 5.0, fail_error: float = 20.0
):
    """Whether a match record counts as an attack success.

    ``match``: at least ``min_inliers`` RANSAC inliers and a corner error below ``max_error`` px against the target
    (a usable homography, not 4-8 folded "inliers"). ``unmatch``: no RANSAC model, or a corner error above
    ``fail_error`` px against the true H. None when ``rec`` is None.
    """
    if rec is None:
        return None
    ce = rec.get("corner_error_px")
    if mode == "match":
        return ce is not None and ce < max_error and rec.get("inliers", 0) >= min_inliers
    return ce is None or ce > fail_error


# ------------------------------------------------------------------------------------------- pictures


def perturbation_picture(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """The perturbation magnified to the full range: (1, C, H, W) -> (1, C, H, W) with ``0.5 + delta / (2 eps)``.

    Mid-gray is no change, white ``+eps``, black ``-eps``.

    Example:
        >>> import torch
        >>> perturbation_picture(torch.tensor([[[[-0.03, 0.0, 0.03]]]]), 0.03).flatten().tolist()
        [0.0, 0.5, 1.0]
    """
    return (0.5 + delta / (2.0 * eps)).clamp(0, 1)


def before_after_picture(top: torch.Tensor, bottom: torch.Tensor) -> torch.Tensor:
    """Stack two (1, 3, H, W) match pictures vertically with an 8-pixel white gap: (1, 3, H1 + 8 + H2, max W)."""
    w = max(top.shape[-1], bottom.shape[-1])
    out = torch.ones(1, 3, top.shape[-2] + 8 + bottom.shape[-2], w)
    out[..., : top.shape[-2], : top.shape[-1]] = top
    out[..., top.shape[-2] + 8 :, : bottom.shape[-1]] = bottom
    return out


def _empty_match() -> Any:
    """A MatchResult with no matches (to draw two images side by side when matching failed)."""
    from gdvision.features.match import MatchResult

    z2 = torch.zeros(0, 2, dtype=torch.float64)
    zf = torch.zeros(0)
    return MatchResult(
        torch.eye(3, dtype=torch.float64),
        "homography",
        z2,
        z2,
        zf,
        torch.zeros(0, 2, dtype=torch.long),
        torch.zeros(0, dtype=torch.bool),
        zf,
        None,
        None,
    )  # type: ignore[arg-type]


def match_config_for(config: AttackConfig, seed: int = 0) -> MatchConfig:
    """The white-box evaluation matcher of an attack: its features, ratio test 0.8, RANSAC (seeded)."""
    return MatchConfig(features=config.features, ransac_threshold=config.ransac_threshold, seed=seed)


def evaluate_attack(
    a0: torch.Tensor,
    b0: torch.Tensor,
    result: AttackResult,
    H: torch.Tensor | None,
    config: AttackConfig,
    opencv: bool = True,
    seed: int = 0,
) -> tuple[dict[str, Any], torch.Tensor]:
    """The report of an attack and its before/after match picture.

    Everything is measured on the quantised images ``result.adv_a`` / ``adv_b`` against the originals ``a0``,
    ``b0`` (1, C, H, W): per-image L-inf / L2 / PSNR, and before/after records of gdvision's matcher (white-box,
    :func:`match_config_for`) and, when ``opencv`` and OpenCV is importable, of OpenCV SIFT (transfer), each with
    its ``success`` flag (see :func:`success`). ``H``: the target (``match``, None = identity) or true homography.

    Returns ``(report, picture)``: picture (1, 3, 2 Hmax + 8, Wa + Wb), matches before (top) and after (bottom),
    RANSAC inliers green, other ratio-test matches red.
    """
    from gdvision.viz import draw_matches

    Ht = torch.eye(3, dtype=torch.float64) if H is None else torch.as_tensor(H, dtype=torch.float64)
    mc = match_config_for(config, seed)
    report: dict[str, Any] = {
        "mode": config.mode,
        "eps": config.eps,
        "eps_255": config.eps * 255.0,
        "steps": result.iterations,
        "lr": config.lr,
        "perturb": config.perturb,
        "alpha": config.alpha,
        "beta": config.beta,
        "init": config.init,
        "homography": Ht.tolist(),
        "homography_role": "target A -> B" if config.mode == "match" else "true A -> B",
        "features": {
            "detector": config.features.detector,
            "max_features": config.features.max_features,
            "upsample": config.features.double_first,
            "contrast_threshold": config.features.contrast_threshold,
        },
        "seconds": result.seconds,
        "loss_first": result.losses[0] if result.losses else None,
        "loss_last": result.losses[-1] if result.losses else None,
        "perturbation": {
            "a": perturbation_stats(result.adv_a, a0),
            "b": perturbation_stats(result.adv_b, b0),
        },
        "evaluated_on": "8-bit quantised images (the saved PNGs)",
    }
    pics = []
    for when, (xa, xb) in (("before", (a0, b0)), ("after", (result.adv_a, result.adv_b))):
        rec, res = evaluate_gdvision(xa, xb, Ht, mc)
        rec["success"] = success(rec, config.mode)
        report[f"gdvision_{when}"] = rec
        pics.append(draw_matches(xa, xb, res if res is not None else _empty_match()))
        if opencv:
            cv = evaluate_opencv(xa, xb, Ht, config.ransac_threshold)
            if cv is not None:
                cv["success"] = success(cv, config.mode)
                report[f"opencv_{when}"] = cv
    if opencv and "opencv_before" not in report:
        report["opencv"] = "not installed: transfer figures skipped"
    return report, before_after_picture(pics[0], pics[1])
