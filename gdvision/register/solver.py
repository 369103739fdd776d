"""Image registration: the transform mapping image A onto image B, by coarse-to-fine optimisation.

Convention: the result ``H`` (3x3, float64) maps pixel coordinates of A to pixel coordinates of B
(``[xB, yB, 1]^T ~ H [xA, yA, 1]^T``, pixel centres at integers, OpenCV's convention), so
``cv2.warpPerspective(A, H, (wB, hB))`` approximates B and ``B(H x) ~ A(x)``.

Method. Both images are converted to luminance (see :func:`gdvision.color.to_gray`) and put in Gaussian
pyramids. The motion is parameterised compositionally in centred coordinates (:mod:`gdvision.coords`,
:mod:`gdvision.register.motion`), so parameters mean the same at every level. At the coarsest level a global
translation search (phase correlation, :mod:`gdvision.register.search`) and a ladder of simpler models
(``gdvision.register.motion.LADDER``: translation, then affine, then the requested one) give a start; every
level is then refined by the shared coarse-to-fine loop (:mod:`gdvision.optim`) on the problem of
:mod:`gdvision.register.problem`:

- ``ncc`` (default), ``l1`` and ``grad`` are least-squares objectives solved by batched Levenberg-Marquardt
  on a subset of informative pixels of A (the ``max_pixels`` with the strongest gradients). The Jacobian
  chains B's image gradient at the warped points with ``d(point)/d(params)`` from forward-mode autograd.
  ``ncc`` fits a gain and an offset between A and warped B at every evaluation (variable projection), so
  it is invariant to exposure changes; ``l1`` is a robust Charbonnier loss (by IRLS) on raw intensities;
  ``grad`` compares Sobel gradient magnitudes with a fitted gain (insensitive to offsets and gains).
- ``ssim`` runs the ``ncc`` pipeline down to the second-finest level, then polishes with L-BFGS on the
  full-image SSIM at the finest level. ``mi`` (normalized mutual information, for different modalities)
  uses L-BFGS at every level on a regular grid of A's pixels, after a light blur that removes the
  interpolation artefact of MI (a false optimum at whole-pixel shifts).
"""

from __future__ import annotations

import time

import torch

from gdvision.coords import homography_to_centred
from gdvision.errors import InputError, SolverError, UsageError
from gdvision.geometry import homography_folds
from gdvision.optim import ProgressFn, StepConfig, coarse_to_fine, minimize_lm
from gdvision.register.config import LEAST_SQUARES, RegisterConfig, RegistrationResult
from gdvision.register.motion import LADDER, check_model
from gdvision.register.problem import Registration
from gdvision.register.search import coarse_translation

STEP_PX_FINE = 0.01  # LM stops the finest level when an update moves A's corners by less (pixels)
STEP_PX = 0.2  # the same for coarser levels, in pixels of that level
FIRST_ORDER_ITERS = 20  # L-BFGS iterations per level (each may evaluate the loss twice)


def register_batch(
    a: torch.Tensor,
    b: torch.Tensor,
    config: RegisterConfig | None = None,
    mask_a: torch.Tensor | None = None,
    mask_b: torch.Tensor | None = None,
    init: torch.Tensor | None = None,
    progress: ProgressFn | None = None,
) -> RegistrationResult:
    """Register B pairs of equal-size images at once.

    Args:
        a: (B, C, Ha, Wa) images A in [0, 1] (any channel count; luminance is used).
        b: (B, C', Hb, Wb) images B in [0, 1], on the same device.
        config: :class:`RegisterConfig` (defaults if None).
        mask_a, mask_b: optional (B or 1, 1, H, W) validity masks (1 = use the pixel).
        init: optional (B, 3, 3) or (3, 3) pixel homographies A -> B to start from.
        progress: optional callback receiving :class:`gdvision.optim.Progress` after each iteration.

    Returns:
        :class:`RegistrationResult` with ``H`` (B, 3, 3) pixel homographies A -> B.

    Example:
        >>> import torch
        >>> from gdvision.warp import warp_perspective
        >>> a = torch.rand(1, 1, 96, 128)
        >>> a = torch.nn.functional.avg_pool2d(a, 5, 1, 2)  # some texture
        >>> H = torch.tensor([[1.0, 0.0, 3.0], [0.0, 1.0, -2.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
        >>> b, _ = warp_perspective(a, H, (128, 96))
        >>> res = register_batch(a, b, RegisterConfig(model="translation"))
        >>> [round(v, 1) for v in res.H[0, :2, 2].tolist()]
        [3.0, -2.0]
    """
    cfg = config or RegisterConfig()
    cfg.validate()
    t0 = time.perf_counter()
    if a.dim() != 4 or b.dim() != 4 or a.shape[0] != b.shape[0]:
        raise UsageError(f"expected (B,C,H,W) batches of equal B, got {tuple(a.shape)} and {tuple(b.shape)}")
    for name, x in (("A", a), ("B", b)):
        # max and min propagate NaN and show an infinity: two cheap reductions instead of a mask of the image
        if x.numel() and not torch.isfinite(torch.stack([x.amax(), x.amin()])).all():
            raise InputError(f"image {name} contains NaN or infinite values")
    bsz = a.shape[0]
    ha, wa = a.shape[-2:]
    dev = a.device
    if init is not None:
        init = init.to(device=dev, dtype=torch.float64)
        init = init.expand(bsz, 3, 3) if init.dim() == 2 else init
        if not torch.isfinite(init).all() or (torch.linalg.det(init).abs() < 1e-12).any():
            raise InputError("the initial homography is singular or not finite")
        base = homography_to_centred(init, ha, wa)
    else:
        base = torch.eye(3, dtype=torch.float64, device=dev).expand(bsz, 3, 3).clone()
    prob = Registration(a, b, mask_a, mask_b, base, cfg)
    coarse = prob.num_levels - 1
    # LM stops a level once its update moves A's corners by less than `step_px` pixels of that level.
    scale = max(ha, wa) / 2.0
    lm_levels = [
        StepConfig(
            method="lm",
            iters=cfg.iters,
            tol=cfg.tol,
            xtol=(STEP_PX_FINE if lv == 0 else STEP_PX) * 2**lv / scale,
            accept_small=True,
        )
        for lv in range(prob.num_levels)
    ]
    lm = lm_levels[coarse]
    iterations = 0
    level_loss: list[list[float]] = []
    if cfg.loss != "mi":
        # Global start at the coarsest level with the least-squares machinery (for ssim too: NCC is the
        # least-squares loss closest to it); mutual information starts where it is (other modality).
        ladder = LADDER[cfg.model][:-1]
        if init is None and cfg.coarse_search:
            coarse_translation(prob, coarse)
            ladder = [m for m in ladder if m != "translation"]
        for stage in ladder:
            prob.stage_model = stage
            q0 = torch.zeros(bsz, check_model(stage), dtype=torch.float64, device=dev)
            q, _, it = minimize_lm(prob.residuals(coarse), q0, lm, progress, coarse, prob.num_levels)
            prob.commit(q)
            iterations += it
        prob.stage_model = cfg.model
    if cfg.loss in LEAST_SQUARES:
        configs: StepConfig | list[StepConfig] = lm_levels
    else:
        lbfgs = StepConfig(method="lbfgs", iters=min(cfg.iters, FIRST_ORDER_ITERS), tol=1e-7)
        # ssim: LM on NCC down to level 1, then L-BFGS on SSIM at the finest level; mi: L-BFGS everywhere.
        configs = [lbfgs] + (lm_levels[1:] if cfg.loss == "ssim" else [lbfgs] * (prob.num_levels - 1))
    q0 = torch.zeros(bsz, check_model(cfg.model), dtype=torch.float64, device=dev)
    out = coarse_to_fine(prob, q0, configs, progress)
    prob.commit(out.params)
    iterations += sum(lv.iterations for lv in out.levels)
    level_loss = [lv.loss for lv in out.levels]
    H = prob.pixel_homography()
    failed = homography_folds(H, wa, ha) | ~torch.isfinite(H).flatten(1).all(1)
    if out.failed is not None:
        failed = failed | out.failed
    if a.device.type != "cpu":
        torch.cuda.synchronize(a.device) if a.device.type == "cuda" else None
    return RegistrationResult(H, level_loss, iterations, failed, time.perf_counter() - t0)


def register_pair(
    a: torch.Tensor,
    b: torch.Tensor,
    config: RegisterConfig | None = None,
    mask_a: torch.Tensor | None = None,
    mask_b: torch.Tensor | None = None,
    init: torch.Tensor | None = None,
    progress: ProgressFn | None = None,
) -> RegistrationResult:
    """Register one pair: ``a`` (1, C, Ha, Wa) onto ``b`` (1, C', Hb, Wb); raises SolverError on failure.

    See :func:`register_batch` for the arguments; the result's ``H`` is (1, 3, 3).
    """
    res = register_batch(a, b, config, mask_a, mask_b, init, progress)
    if res.failed is not None and bool(res.failed[0]):
        raise SolverError("registration failed: no valid overlap or a folded/degenerate transform was found")
    return res


__all__ = ["register_batch", "register_pair"]
