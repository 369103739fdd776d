"""Adversarial perturbations against feature matching: make unrelated images match, or break a true match.

The attacked pipeline is :func:`gdvision.features.detect_and_describe` with each target's settings
(:mod:`gdvision.attack.targets`: by default exactly ``gdvision match``'s DoG + SIFT; an ensemble sums the targets'
losses) followed by the ratio test and RANSAC. Keypoint positions,
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
  negatives (with ``focus``, weighted by ``exp(-d^2 / 2 radius^2)``). See :mod:`gdvision.attack.losses`.
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

The start (``init``) is described in :mod:`gdvision.attack.start`, the budget (``|delta| <= eps``, masks, 8-bit
rounding) in :mod:`gdvision.attack.budget`; every figure of the report (:mod:`gdvision.attack.evaluation`) is
computed on the quantised pixels.

Conventions: images (1, C, H, W) in [0, 1]; pixel coordinates with (0, 0) = centre of the top-left pixel.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from gdvision._checks import check_image
from gdvision.attack.budget import (
    apply_perturbation,
    bounded_perturbation,
    check_mask,
    quantize_ste,
    quantize_within_budget,
)
from gdvision.attack.config import AttackConfig
from gdvision.attack.evaluation import match_configs_for, match_counts, ransac_failures
from gdvision.attack.losses import attack_loss
from gdvision.attack.start import initial_params
from gdvision.device import keep_freed_memory  # every step re-allocates the octaves: keep freed blocks
from gdvision.errors import InputError, SolverError, UsageError
from gdvision.features import Features, detect_and_describe
from gdvision.geometry import homography_folds
from gdvision.optim import Progress, StepConfig, minimize_first_order


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


class _Stop(Exception):
    """Raised by the progress hook to end the optimisation early (the target was reached)."""


class _Attack:
    """The attack of one pair as an optimisation problem over the parameters ``p`` (1, Na + Nb).

    ``p`` holds the free parameters of A's perturbation (first ``Na`` values, when A is perturbed) and of B's;
    :meth:`images` turns them into the (8-bit, straight-through) pixels, :meth:`loss` is the objective Adam
    minimises, :meth:`score` ranks the steps (the best one is kept), :meth:`solve` runs the phases.
    """

    def __init__(
        self,
        a0: torch.Tensor,
        b0: torch.Tensor,
        H: torch.Tensor,
        cfg: AttackConfig,
        mask_a: torch.Tensor | None,
        mask_b: torch.Tensor | None,
        progress: Callable[[AttackProgress], None] | None,
        start: tuple[torch.Tensor, torch.Tensor] | None = None,
        stop_check: Callable[[torch.Tensor, torch.Tensor], bool] | None = None,
    ) -> None:
        self.a0, self.b0, self.H, self.cfg = a0, b0, H, cfg
        self.warm, self.stop_check = start, stop_check
        self.checked: tuple | None = None  # the best score the stop check last looked at
        self.mask_a, self.mask_b = mask_a, mask_b
        self.progress = progress
        self.use_a, self.use_b = cfg.perturb in ("a", "both"), cfg.perturb in ("b", "both")
        self.na = a0.numel() if self.use_a else 0
        self.nb = b0.numel() if self.use_b else 0
        self.same = a0.shape == b0.shape
        # score every step when the best step is kept, or something stops on a count
        self.track = cfg.keep_best or cfg.stop_inliers > 0 or cfg.mode == "unmatch"
        self.mcs = match_configs_for(cfg)  # (name, white-box MatchConfig) per target
        self.it = 0
        self.consistent: int | None = None
        self.losses: list[float] = []
        self.best: torch.Tensor | None = None
        self.best_score: tuple | None = None
        self.best_counts: tuple[int, int] | None = None

    # -- pixels, features, objective -----------------------------------------------------------------
    def images(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pixels of A and B for parameters ``p`` (the clean image where one is not perturbed)."""
        cfg, a0, b0 = self.cfg, self.a0, self.b0
        xa, xb = a0, b0
        if self.use_a:
            xa = apply_perturbation(a0, bounded_perturbation(p[0, : self.na].view_as(a0), cfg.eps, self.mask_a))
            if cfg.quantize:
                xa = quantize_ste(xa, a0, cfg.eps, self.mask_a)
        if self.use_b:
            xb = apply_perturbation(b0, bounded_perturbation(p[0, self.na :].view_as(b0), cfg.eps, self.mask_b))
            if cfg.quantize:
                xb = quantize_ste(xb, b0, cfg.eps, self.mask_b)
        return xa, xb

    def features(self, xa: torch.Tensor, xb: torch.Tensor) -> list[tuple[Features, Features]]:
        """Per target, the attacked features of both images (one batched call when they have the same shape)."""
        out = []
        for _, mc in self.mcs:
            if self.same:
                f = detect_and_describe(torch.cat([xa, xb]), mc.features)
                out.append((f.image(0), f.image(1)))
            else:
                out.append((detect_and_describe(xa, mc.features), detect_and_describe(xb, mc.features)))
        return out

    def objective(self, xa: torch.Tensor, xb: torch.Tensor, feats: list[tuple[Features, Features]]) -> torch.Tensor:
        """The attack losses of the targets, summed, plus ``beta`` times the mean squared change of each perturbed
        image (scalar)."""
        main = sum((attack_loss(self.cfg, fa, fb, self.H) for fa, fb in feats), xa.new_zeros(()))
        reg = xa.new_zeros(())
        if self.use_a:
            reg = reg + ((xa - self.a0) ** 2).mean()
        if self.use_b:
            reg = reg + ((xb - self.b0) ** 2).mean()
        return main + self.cfg.beta * reg

    # -- ranking the steps ---------------------------------------------------------------------------
    def score(self, feats: list[tuple[Features, Features]], p: torch.Tensor, loss: float) -> None:
        """Count the H-consistent (and, unmatch, the near-H) ratio matches of the current pixels; keep the best
        (ties: the lower loss). With several targets: the weakest target's counts (fewest consistent, most near,
        fewest RANSAC failures)."""
        cfg = self.cfg
        counts = [match_counts(fa, fb, self.H, (cfg.ransac_threshold, cfg.kill_radius)) for fa, fb in feats]
        cons, near = min(c[0] for c in counts), max(c[1] for c in counts)
        self.consistent = cons
        if cfg.mode == "match":
            sc = (cons, 0, 0, -loss)
        else:  # first: how often RANSAC misses H (3 seeds; skipped while many true matches are left)
            fails = 0
            if cfg.ransac_score and near <= 20:
                size = (self.a0.shape[-1], self.a0.shape[-2])
                fails = min(
                    ransac_failures(fa, fb, self.H, mc, size) for (fa, fb), (_, mc) in zip(feats, self.mcs, strict=True)
                )
            sc = (fails, -near, -cons, -loss)
        if self.best_score is None or sc > self.best_score:
            self.best_score, self.best = sc, p.detach().clone()
            self.best_counts = (cons, near)

    def score_params(self, p: torch.Tensor) -> None:
        """:meth:`score` of the pixels of ``p`` (the last step of a phase, which the loss never saw)."""
        with torch.no_grad():
            xa, xb = self.images(p)
            feats = self.features(xa, xb)
            self.score(feats, p, float(self.objective(xa, xb, feats)))

    # -- the optimisation ----------------------------------------------------------------------------
    def loss(self, p: torch.Tensor) -> torch.Tensor:
        """The objective at ``p`` (shape (1,)); scores the step when asked to (``track`` or ``eval_every``)."""
        xa, xb = self.images(p)
        feats = self.features(xa, xb)
        total = self.objective(xa, xb, feats)
        self.it += 1
        every = self.cfg.eval_every
        if self.track or (every and (self.it % every == 1 or every == 1)):
            self.score(feats, p, float(total.detach()))
        return total.reshape(1)

    def record(self, pr: Progress) -> None:
        """Progress hook of the Adam loop: keep the loss, report, stop once the target is reached."""
        cfg = self.cfg
        self.losses.append(pr.loss)
        if self.progress is not None:
            self.progress(AttackProgress(self.it, cfg.steps, pr.loss, self.consistent))
        best = self.best_score
        if best is not None and cfg.stop_inliers and cfg.mode == "match" and best[0] >= cfg.stop_inliers:
            raise _Stop
        if best is not None and cfg.mode == "unmatch" and best[1] == 0:
            raise _Stop  # no ratio match is left anywhere near H: nothing more to break
        if self.stop_check is not None and best is not None and self.it % cfg.stop_check_every == 0:
            if best != self.checked:  # evaluate the best pixels so far once
                self.checked = best
                with torch.no_grad():
                    qa, qb = self.output(self.best)
                if self.stop_check(qa, qb):
                    raise _Stop

    def start(self) -> torch.Tensor:
        """The starting parameters (``cfg.init``)."""
        p0 = torch.zeros(1, self.na + self.nb, dtype=self.a0.dtype, device=self.a0.device)
        if self.warm is not None:  # a previous budget's perturbation, projected into this one
            eps = self.cfg.eps
            parts = [d.reshape(-1) for d, use in zip(self.warm, (self.use_a, self.use_b), strict=True) if use]
            wanted = torch.cat(parts).to(p0).clamp(-0.97 * eps, 0.97 * eps)
            return (eps * torch.atanh(wanted / eps))[None]
        if self.cfg.init != "zero":
            p0 = initial_params(self.a0, self.b0, self.H, self.cfg, self.use_a, self.use_b)
        return p0

    def solve(self) -> AttackResult:
        """Run the phases and return the (best) quantised images."""
        cfg = self.cfg
        p = self.start()
        t0 = time.perf_counter()
        if self.a0.device.type == "cpu":
            keep_freed_memory()
        stopped = False
        # phases: Adam restarts from the best pixels so far with half the step (a ratchet: what passes stays)
        n_ph = max(1, min(cfg.phases, cfg.steps)) if cfg.keep_best else 1
        for ph in range(n_ph):
            iters_ph = cfg.steps // n_ph + (1 if ph < cfg.steps % n_ph else 0)
            step = StepConfig(method="adam", lr=cfg.lr * 0.5**ph, iters=iters_ph, tol=0.0, patience=iters_ph + 1)
            step.divergence_factor = 1e6
            try:
                p, _, _ = minimize_first_order(self.loss, p, step, self.record)
            except _Stop:
                p, stopped = self.best, True
                break
            except SolverError as exc:
                raise SolverError(f"attack failed: {exc}") from exc
            if self.track:  # the last step's result was never scored
                self.score_params(p)
            if cfg.keep_best and self.best is not None:
                p = self.best
        qa, qb = self.output(p)
        seconds = time.perf_counter() - t0
        if cfg.keep_best and self.best is not None:
            cons, near = self.best_counts
        else:
            cons, near = self.consistent, None
        return AttackResult(qa, qb, qa - self.a0, qb - self.b0, self.losses, self.it, seconds, cons, near, stopped)

    def output(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The 8-bit images of ``p``, within the budget, unchanged off the masks."""
        cfg, a0, b0 = self.cfg, self.a0, self.b0
        with torch.no_grad():
            xa, xb = self.images(p)
            qa = quantize_within_budget(xa, a0, cfg.eps) if self.use_a else a0
            qb = quantize_within_budget(xb, b0, cfg.eps) if self.use_b else b0
            if self.mask_a is not None:
                qa = torch.where(self.mask_a > 0, qa, a0)
            if self.mask_b is not None:
                qb = torch.where(self.mask_b > 0, qb, b0)
        return qa, qb


def _check_image(name: str, x: torch.Tensor) -> None:
    check_image(x, f"image {name}", batch=1, min_size=16)
    if float(x.min()) < 0 or float(x.max()) > 1:
        raise InputError(f"image {name} has values outside [0, 1]")


def _homography(H: torch.Tensor | None, a: torch.Tensor, b: torch.Tensor, mode: str) -> torch.Tensor:
    """The (3, 3) float64 homography of the attack on ``a``'s device (identity for ``match`` without one)."""
    if H is None:
        if mode == "unmatch":
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
    return H


def attack_pair(
    a: torch.Tensor,
    b: torch.Tensor,
    H: torch.Tensor | None = None,
    config: AttackConfig | None = None,
    mask_a: torch.Tensor | None = None,
    mask_b: torch.Tensor | None = None,
    progress: Callable[[AttackProgress], None] | None = None,
    start: tuple[torch.Tensor, torch.Tensor] | None = None,
    stop_check: Callable[[torch.Tensor, torch.Tensor], bool] | None = None,
) -> AttackResult:
    """Optimise the pixels of ``a`` and/or ``b`` ((1, C, H, W) in [0, 1]) to fool the matcher.

    Args:
        H: (3, 3) pixel homography A -> B: the target (``match``; default identity, which needs equal sizes) or the
            true one (``unmatch``; required).
        config: :class:`~gdvision.attack.config.AttackConfig` (its per-mode defaults filled by ``resolved()``).
        mask_a, mask_b: optional (1, 1, H, W) or (H, W) masks in [0, 1] limiting where each image may change.
        progress: called after each step with an :class:`AttackProgress`.
        start: ``(delta_a, delta_b)`` to start from (a previous budget's perturbation; clipped into this budget)
            instead of ``cfg.init``.
        stop_check: ``stop_check(adv_a, adv_b)`` on the best 8-bit pixels so far, every ``cfg.stop_check_every``
            steps (when they changed); True ends the attack. Default (``cfg.stop_on_success``): the success rule
            under every attacked target.

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
    cfg = cfg.resolved()
    _check_image("A", a)
    _check_image("B", b)
    Hm = _homography(H, a, b, cfg.mode)
    if stop_check is None and cfg.stop_on_success:
        from gdvision.attack.evaluation import judge_members

        def stop_check(xa: torch.Tensor, xb: torch.Tensor) -> bool:
            return judge_members(xa, xb, Hm, cfg)[0]

    ma, mb = check_mask("A", mask_a, a), check_mask("B", mask_b, b)
    problem = _Attack(a.detach().float(), b.detach().float(), Hm, cfg, ma, mb, progress, start, stop_check)
    return problem.solve()


__all__ = ["AttackProgress", "AttackResult", "attack_pair", "keep_freed_memory"]
