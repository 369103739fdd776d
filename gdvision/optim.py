"""The shared coarse-to-fine optimisation loop.

A problem is solved level by level, coarsest first; the parameters found at one level are carried to the
next by the problem's ``transfer`` (identity for a homography in level-independent coordinates, an
upsampling for a depth map). At each level one of three step rules runs:

- ``"lm"``: Levenberg-Marquardt on a least-squares objective ``sum_i w_i r_i(p)^2`` (``r``: residuals,
  ``J = dr/dp``: their Jacobian, ``w``: per-residual weights). For small parameter vectors (a homography),
  batched over independent problems (B, P). Converges quadratically near the optimum.
- ``"adam"`` / ``"sgd"``: first-order steps on a scalar-per-item loss (B,) via autograd, for large
  parameter tensors (a depth map) or non-least-squares objectives (mutual information).

Each level stops at its iteration cap, or early when the relative loss change falls below ``tol``.
A non-finite loss or a loss growing past ``divergence_factor`` x its starting value raises
:class:`~gdvision.errors.SolverError` (first-order) or marks the item failed (LM, batched).
A ``progress`` callback receives a :class:`Progress` after every iteration.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from gdvision.errors import SolverError


@dataclass
class Progress:
    """What the progress callback receives after each iteration (level 0 = finest)."""

    level: int
    num_levels: int
    iteration: int
    max_iterations: int
    loss: float


ProgressFn = Callable[[Progress], None]


@dataclass
class StepConfig:
    """Settings of one level's minimisation.

    Attributes:
        method: ``"lm"``, ``"adam"``, ``"sgd"`` or ``"lbfgs"``.
        lr: learning rate (first-order methods only).
        iters: iteration cap for the level.
        tol: early stop when the relative loss decrease of an iteration is below ``tol``
            (for first-order methods: ``patience`` iterations in a row).
        xtol: LM also stops an item when its largest parameter update is below ``xtol``.
        accept_small: LM takes an update below ``xtol`` as the item's last step without evaluating it
            (saves one evaluation per level; the result moves by less than ``xtol``).
        patience: consecutive small-change iterations before a first-order level stops.
        divergence_factor: a first-order loss above ``divergence_factor`` x its initial value is divergence.
        momentum: SGD momentum.
    """

    method: str = "lm"
    lr: float = 1e-2
    iters: int = 50
    tol: float = 1e-6
    xtol: float = 1e-7
    accept_small: bool = False
    patience: int = 5
    divergence_factor: float = 1e3
    momentum: float = 0.9


@dataclass
class LevelResult:
    """Outcome of one level: level index (0 = finest), final loss per item, iterations run."""

    level: int
    loss: list[float]
    iterations: int


@dataclass
class OptimResult:
    """Final parameters (B, ...), per-level history, and a (B,) bool tensor of failed items."""

    params: torch.Tensor
    levels: list[LevelResult] = field(default_factory=list)
    failed: torch.Tensor | None = None


ResidualFn = Callable[[torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
LossFn = Callable[[torch.Tensor], torch.Tensor]


class CoarseToFineProblem(Protocol):
    """What :func:`coarse_to_fine` needs from a problem."""

    num_levels: int

    def transfer(self, params: torch.Tensor, from_level: int, to_level: int) -> torch.Tensor:
        """Carry parameters from one level to the next finer one."""
        ...

    def residuals(self, level: int) -> ResidualFn:
        """For ``lm``: a function ``(p (b,P), index) -> (r (b,N), J (b,N,P), w (b,N))`` at ``level``."""
        ...

    def loss(self, level: int) -> LossFn:
        """For first-order methods: a differentiable function ``p -> loss (B,)`` at ``level``."""
        ...


def _weighted_cost(r: torch.Tensor, w: torch.Tensor, min_weight: float) -> torch.Tensor:
    """Mean of ``w r^2`` over the residuals with ``w > 0`` (inf when fewer than ``min_weight`` of them)."""
    count = (w > 0).to(r.dtype).sum(1)
    cost = (w * r * r).sum(1) / count.clamp_min(1.0)
    bad = (count < min_weight) | ~torch.isfinite(cost)
    return torch.where(bad, torch.full_like(cost, float("inf")), cost)


def minimize_lm(
    fn: ResidualFn,
    params: torch.Tensor,
    config: StepConfig,
    progress: ProgressFn | None = None,
    level: int = 0,
    num_levels: int = 1,
    min_weight: float = 16.0,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Batched Levenberg-Marquardt: minimise the mean of ``w r^2`` over the residuals with ``w > 0``, per item.

    Robust losses fit this form by iteratively reweighted least squares: a residual function that returns
    ``w = rho'(r) / r`` makes ``w r^2`` approximate ``rho(r)`` and the step a Gauss-Newton step on ``rho``.
    Items stop independently (relative cost decrease below ``tol`` on an accepted step, an update below
    ``xtol``, or a damping factor past 1e8), and only the items still running are evaluated.

    Args:
        fn: ``fn(p, index) -> (r (b, N), J (b, N, P), w (b, N))`` for the items ``index`` (a LongTensor of
            b item indices, or None for all B items) at parameters ``p`` (b, P); ``w`` are non-negative
            weights (0 = ignore the residual).
        params: starting parameters (B, P).
        config: iteration cap ``iters``, relative cost tolerance ``tol``, step tolerance ``xtol``.
        min_weight: an evaluation with fewer than this many positive weights is invalid (infinite cost).

    Returns:
        ``(params, cost, iterations)``: final parameters (B, P), final cost (B,) (inf for items that never
        had a valid evaluation), and the number of iterations run.
    """
    p = params.detach().clone()
    b, n_p = p.shape
    r, J, w = fn(p, None)
    cost = _weighted_cost(r, w, min_weight)
    lam = torch.full((b,), 1e-4, dtype=p.dtype, device=p.device)
    active = torch.isfinite(cost)
    eye = torch.eye(n_p, dtype=torch.float64, device=p.device)
    # normal equations of the current point of every item
    A = torch.zeros(b, n_p, n_p, dtype=torch.float64, device=p.device)
    g = torch.zeros(b, n_p, dtype=torch.float64, device=p.device)

    def normal_equations(r: torch.Tensor, J: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        wJ = J * w.unsqueeze(-1)
        return (wJ.transpose(1, 2) @ J).to(torch.float64), (wJ * r.unsqueeze(-1)).sum(1).to(torch.float64)

    A[:], g[:] = normal_equations(r, J, w)
    del r, J, w
    tiny = 1e-12 * eye
    it = 0
    for it in range(1, config.iters + 1):  # noqa: B007 - `it` is reported after the loop
        idx = active.nonzero().flatten()
        if idx.numel() == 0:
            it -= 1
            break
        # every item running (always so for a single pair): whole tensors, no gathers and scatters
        full = idx.numel() == b
        Ai, gi, lami = (A, g, lam) if full else (A[idx], g[idx], lam[idx])
        diag = torch.diagonal(Ai, dim1=1, dim2=2).clamp_min(1e-12)
        M = Ai + lami.view(-1, 1, 1).to(torch.float64) * torch.diag_embed(diag) + tiny
        delta = -torch.linalg.solve(M, gi.unsqueeze(-1))[..., 0]
        delta = torch.where(torch.isfinite(delta), delta, torch.zeros_like(delta)).to(p.dtype)
        p_new = (p if full else p[idx]) + delta
        if config.accept_small:
            small = delta.abs().amax(1) < config.xtol
            if bool(small.any()):  # the last steps: taken without an evaluation, the items stop
                p[idx[small]] = p_new[small]
                active[idx[small]] = False
                idx, p_new, delta, lami = idx[~small], p_new[~small], delta[~small], lami[~small]
                full = False
                if idx.numel() == 0:
                    break
        r2, J2, w2 = fn(p_new, None if full else idx)
        cost2 = _weighted_cost(r2, w2, min_weight)
        old = cost if full else cost[idx]
        accept = cost2 <= old
        rel = (old - cost2) / old.clamp_min(1e-30)
        small = delta.abs().amax(1) < config.xtol
        A2, g2 = normal_equations(r2, J2, w2)
        lam_new = torch.where(accept, (lami * 0.25).clamp_min(1e-9), lami * 8.0)
        done = (accept & (rel < config.tol)) | small | (lam_new > 1e8)
        if full:
            keep = accept.view(-1, 1)
            p = torch.where(keep, p_new, p)
            cost = torch.where(accept, cost2, cost)
            A = torch.where(keep.view(-1, 1, 1), A2, A)
            g = torch.where(keep, g2, g)
            lam = lam_new
            active = active & ~done
        else:
            acc = idx[accept]
            p[acc] = p_new[accept]
            cost[acc] = cost2[accept]
            A[acc] = A2[accept]
            g[acc] = g2[accept]
            lam[idx] = lam_new
            active[idx[done]] = False
        if progress is not None:
            finite = cost[torch.isfinite(cost)]
            mean = float(finite.mean()) if finite.numel() else float("nan")
            progress(Progress(level, num_levels, it, config.iters, mean))
    return p, cost, it


def minimize_first_order(
    fn: LossFn,
    params: torch.Tensor,
    config: StepConfig,
    progress: ProgressFn | None = None,
    level: int = 0,
    num_levels: int = 1,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Adam, SGD or L-BFGS on ``fn(p) -> loss (B,)`` (the sum over items is minimised; items stay independent).

    L-BFGS (``method="lbfgs"``) suits small parameter vectors with a smooth, deterministic loss (e.g. a
    homography under mutual information); ``lr`` is unused there.

    Stops after ``config.iters`` iterations or when the relative change of the summed loss stays below
    ``config.tol`` for ``config.patience`` iterations. Raises SolverError on a non-finite loss or divergence.

    Returns ``(params, loss (B,), iterations)``; ``params`` is detached.
    """
    p = params.detach().clone().requires_grad_(True)
    if config.method == "lbfgs":
        return _minimize_lbfgs(fn, p, config, progress, level, num_levels)
    if config.method not in ("adam", "sgd"):
        raise ValueError(f"unknown first-order method '{config.method}'")
    step = _AdamStep(p, config.lr) if config.method == "adam" else _SgdStep(p, config.lr, config.momentum)
    first: float | None = None
    prev: float | None = None
    calm = 0
    loss = torch.zeros(p.shape[0])
    it = 0
    for it in range(1, config.iters + 1):  # noqa: B007
        p.grad = None
        loss = fn(p)
        total = loss.sum()
        value = float(total.detach())
        if not torch.isfinite(total):
            raise SolverError(f"optimisation produced a non-finite loss at level {level}, iteration {it}")
        if first is None:
            first = value
        elif abs(value) > config.divergence_factor * max(abs(first), 1e-12):
            raise SolverError(f"optimisation diverged at level {level} (loss {value:.3g} from {first:.3g})")
        total.backward()
        step()
        if progress is not None:
            progress(Progress(level, num_levels, it, config.iters, value / max(p.shape[0], 1)))
        if prev is not None and abs(prev - value) <= config.tol * max(abs(prev), 1e-12):
            calm += 1
            if calm >= config.patience:
                break
        else:
            calm = 0
        prev = value
    return p.detach(), loss.detach(), it


class _AdamStep:
    """Adam (Kingma & Ba) updating ``p`` in place from ``p.grad``.

    Written here rather than taken from ``torch.optim``, whose first use imports TorchDynamo (seconds of
    start-up that a command-line run would pay every time).
    """

    def __init__(self, p: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.p, self.lr, self.b1, self.b2, self.eps = p, lr, betas[0], betas[1], eps
        self.m = torch.zeros_like(p)
        self.v = torch.zeros_like(p)
        self.t = 0

    @torch.no_grad()
    def __call__(self) -> None:
        g = self.p.grad
        if g is None:
            return
        self.t += 1
        self.m.mul_(self.b1).add_(g, alpha=1 - self.b1)
        self.v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
        m_hat = self.m / (1 - self.b1**self.t)
        v_hat = self.v / (1 - self.b2**self.t)
        self.p.sub_(self.lr * m_hat / (v_hat.sqrt() + self.eps))


class _SgdStep:
    """SGD with (heavy-ball) momentum updating ``p`` in place from ``p.grad``."""

    def __init__(self, p: torch.Tensor, lr: float, momentum: float) -> None:
        self.p, self.lr, self.momentum = p, lr, momentum
        self.buf = torch.zeros_like(p)

    @torch.no_grad()
    def __call__(self) -> None:
        if self.p.grad is None:
            return
        self.buf.mul_(self.momentum).add_(self.p.grad)
        self.p.sub_(self.lr * self.buf)


def _minimize_lbfgs(
    fn: LossFn, p: torch.Tensor, config: StepConfig, progress: ProgressFn | None, level: int, num_levels: int
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """L-BFGS (two-loop recursion, 10 pairs of history, Armijo backtracking) on the summed loss.

    Works in float64 on the flattened parameters; stops after ``config.iters`` iterations, when the
    relative decrease of an iteration falls below ``config.tol``, or when no step along the search
    direction lowers the loss.
    """
    shape = p.shape
    x = p.detach().to(torch.float64).flatten()
    evals = 0

    def evaluate(v: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
        nonlocal evals
        q = v.to(p.dtype).view(shape).requires_grad_(True)
        loss = fn(q)
        total = loss.sum()
        if not torch.isfinite(total):
            raise SolverError(f"optimisation produced a non-finite loss at level {level}")
        (grad,) = torch.autograd.grad(total, q)
        evals += 1
        return float(total.detach()), grad.detach().to(torch.float64).flatten(), loss.detach()

    f, g, loss = evaluate(x)
    hist_s: list[torch.Tensor] = []
    hist_y: list[torch.Tensor] = []
    it = 0
    for it in range(1, config.iters + 1):  # noqa: B007
        # two-loop recursion: d = -H g
        d = -g.clone()
        alphas = []
        for s_k, y_k in zip(reversed(hist_s), reversed(hist_y), strict=True):
            a_k = float(s_k @ d) / float(y_k @ s_k)
            alphas.append(a_k)
            d -= a_k * y_k
        if hist_s:
            d *= float(hist_s[-1] @ hist_y[-1]) / float(hist_y[-1] @ hist_y[-1])
        for (s_k, y_k), a_k in zip(zip(hist_s, hist_y, strict=True), reversed(alphas), strict=True):
            b_k = float(y_k @ d) / float(y_k @ s_k)
            d += (a_k - b_k) * s_k
        slope = float(g @ d)
        if slope >= 0:  # not a descent direction: restart from steepest descent
            hist_s.clear()
            hist_y.clear()
            d = -g
            slope = float(g @ d)
        step = 1.0 if hist_s else min(1.0, 1e-3 / max(float(g.abs().max()), 1e-30))
        accepted = False
        for _ in range(30):
            x_new = x + step * d
            f_new, g_new, loss_new = evaluate(x_new)
            if f_new <= f + 1e-4 * step * slope:
                accepted = True
                break
            step *= 0.5
        if not accepted:
            break
        s_k, y_k = x_new - x, g_new - g
        if float(s_k @ y_k) > 1e-12:
            hist_s.append(s_k)
            hist_y.append(y_k)
            if len(hist_s) > 10:
                hist_s.pop(0)
                hist_y.pop(0)
        rel = (f - f_new) / max(abs(f), 1e-12)
        x, f, g, loss = x_new, f_new, g_new, loss_new
        if progress is not None:
            progress(Progress(level, num_levels, it, config.iters, f / max(shape[0], 1)))
        if rel < config.tol:
            break
    return x.to(p.dtype).view(shape), loss, evals


def coarse_to_fine(
    problem: CoarseToFineProblem,
    params: torch.Tensor,
    configs: StepConfig | Sequence[StepConfig],
    progress: ProgressFn | None = None,
    start_level: int | None = None,
) -> OptimResult:
    """Run ``problem`` from its coarsest level (``num_levels - 1``) to level 0 (finest).

    Args:
        problem: see :class:`CoarseToFineProblem`.
        params: starting parameters at the coarsest level (B, ...).
        configs: one :class:`StepConfig` for all levels, or one per level indexed by level (0 = finest).
        progress: optional callback, called after every iteration.
        start_level: level to start at (default: the coarsest).

    Returns:
        :class:`OptimResult` with the finest-level parameters; ``failed`` marks items whose final cost is
        not finite (LM only; first-order failures raise SolverError).
    """
    n = problem.num_levels
    cfgs = [configs] * n if isinstance(configs, StepConfig) else list(configs)
    if len(cfgs) != n:
        raise ValueError(f"need {n} step configs, got {len(cfgs)}")
    level = n - 1 if start_level is None else start_level
    p = params
    result = OptimResult(params=p)
    failed = torch.zeros(p.shape[0], dtype=torch.bool, device=p.device)
    while level >= 0:
        cfg = cfgs[level]
        if cfg.method == "lm":
            p, cost, iters = minimize_lm(problem.residuals(level), p, cfg, progress, level, n)
            failed = ~torch.isfinite(cost)
        else:
            p, cost, iters = minimize_first_order(problem.loss(level), p, cfg, progress, level, n)
        result.levels.append(LevelResult(level, [float(c) for c in cost.detach().cpu()], iters))
        if level > 0:
            p = problem.transfer(p, level, level - 1)
        level -= 1
    result.params = p
    result.failed = failed
    return result
