"""Image registration: the transform mapping image A onto image B, by coarse-to-fine optimisation.

Convention: the result ``H`` (3x3, float64) maps pixel coordinates of A to pixel coordinates of B
(``[xB, yB, 1]^T ~ H [xA, yA, 1]^T``, pixel centres at integers, OpenCV's convention), so
``cv2.warpPerspective(A, H, (wB, hB))`` approximates B and ``B(H x) ~ A(x)``.

Method. Both images are converted to luminance (see :func:`gdvision.io.images.to_gray`) and put in Gaussian
pyramids. The motion is parameterised compositionally in normalized coordinates (:mod:`gdvision.register.motion`),
so parameters mean the same at every level. At the coarsest level a global translation search (phase
correlation) and a ladder of simpler models (``gdvision.register.motion.LADDER``: translation, then affine, then the
requested one) give a start; every level is then refined by the shared coarse-to-fine loop (:mod:`gdvision.optim`):

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

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from gdvision.coords import mean_corner_error
from gdvision.errors import InputError, SolverError, UsageError
from gdvision.filters.separable import central_gradient, gaussian_blur, sobel
from gdvision.geometry import homography_folds
from gdvision.io.images import LoadedImage, to_gray
from gdvision.losses import mutual_information, ssim_loss
from gdvision.optim import ProgressFn, StepConfig, coarse_to_fine, minimize_lm
from gdvision.pyramid import downsample_mask, gaussian_pyramid, num_levels
from gdvision.register.motion import (
    LADDER,
    check_model,
    model_matrix,
    model_matrix_jacobian,
    motion_to_pixel,
    normalizer,
)
from gdvision.runs.engine import Outcome
from gdvision.viz import checkerboard
from gdvision.warp import inside_mask, sample_points, stack_rows, warp_perspective

LOSSES = ("ncc", "l1", "grad", "ssim", "mi")
LEAST_SQUARES = ("ncc", "l1", "grad")
MIN_LEVEL_SIZE = 8
STEP_PX_FINE = 0.01  # LM stops the finest level when an update moves A's corners by less (pixels)
STEP_PX = 0.1  # the same for coarser levels, in pixels of that level
COARSE_PIXEL_DIVISOR = 4  # levels above the finest use max_pixels / this many pixels
FIRST_ORDER_ITERS = 20  # L-BFGS iterations per level (each may evaluate the loss twice)
MI_BINS = 24
MI_MAX_PIXELS = 8192
_JACOBIAN_CACHE: dict[tuple[str, torch.dtype, torch.device], torch.Tensor] = {}


@dataclass
class RegisterConfig:
    """Registration settings; the defaults work without tuning on natural images.

    Attributes:
        model: translation | euclidean | similarity | affine | homography.
        loss: ncc | l1 | grad | ssim | mi (see the module docstring).
        levels: pyramid levels (None: as many as keep the coarsest side >= ``min_size``).
        min_size: smallest side of the coarsest level when ``levels`` is None.
        iters: iteration cap per level.
        lr: Adam learning rate in normalized units (``ssim``/``mi`` only; 1e-3 ~ 0.3 px on a 640 px image).
        tol: stop a level when an accepted step lowers the loss by less than this fraction.
        max_pixels: least-squares losses use at most this many pixels of A per level (strongest gradients).
        coarse_search: try a phase-correlation translation at the coarsest level (ignored with ``init``).
    """

    model: str = "homography"
    loss: str = "ncc"
    levels: int | None = None
    min_size: int = 12
    iters: int = 50
    lr: float = 2e-3
    tol: float = 1e-5
    max_pixels: int = 20000
    coarse_search: bool = True

    def validate(self) -> None:
        """Raise UsageError for values that cannot work."""
        try:
            check_model(self.model)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if self.loss not in LOSSES:
            raise UsageError(f"unknown loss '{self.loss}': use one of {', '.join(LOSSES)}")
        if self.levels is not None and not 1 <= self.levels <= 12:
            raise UsageError(f"--levels must be between 1 and 12, got {self.levels}")
        if self.iters < 1 or self.iters > 100000:
            raise UsageError(f"--iters must be between 1 and 100000, got {self.iters}")
        if not (self.lr > 0 and math.isfinite(self.lr)) or self.lr > 1:
            raise UsageError(f"--lr must be in (0, 1], got {self.lr}")
        if not (self.tol >= 0 and math.isfinite(self.tol)) or self.tol >= 1:
            raise UsageError(f"--tol must be in [0, 1), got {self.tol}")
        if self.max_pixels < 64:
            raise UsageError(f"max_pixels must be >= 64, got {self.max_pixels}")


@dataclass
class RegistrationResult:
    """Result for a batch of B pairs.

    Attributes:
        H: (B, 3, 3) float64 pixel homographies A -> B (``H[2, 2] = 1``).
        level_loss: per level (coarsest first) the final loss of each item.
        iterations: total iterations run (all levels).
        failed: (B,) bool, True where no valid solution was found (no overlap, folded warp, non-finite).
        seconds: wall time of the solve.
    """

    H: torch.Tensor
    level_loss: list[list[float]] = field(default_factory=list)
    iterations: int = 0
    failed: torch.Tensor | None = None
    seconds: float = 0.0


def _grad_magnitude(x: torch.Tensor) -> torch.Tensor:
    gx, gy = sobel(x, border="replicate")
    return torch.sqrt(gx * gx + gy * gy + 1e-12) * 0.125


class _Registration:
    """The coarse-to-fine problem (see :class:`gdvision.optim.CoarseToFineProblem`) for a batch of pairs."""

    def __init__(
        self,
        a: torch.Tensor,
        b: torch.Tensor,
        mask_a: torch.Tensor | None,
        mask_b: torch.Tensor | None,
        base: torch.Tensor,
        config: RegisterConfig,
    ) -> None:
        self.cfg = config
        self.model = config.model
        ha, wa = a.shape[-2:]
        hb, wb = b.shape[-2:]
        self.size_a = (ha, wa)
        levels = config.levels or min(num_levels(ha, wa, config.min_size), num_levels(hb, wb, config.min_size))
        coarse = min(ha, wa, hb, wb) / 2 ** (levels - 1)
        if coarse < MIN_LEVEL_SIZE:
            raise InputError(
                f"images of {wa}x{ha} and {wb}x{hb} are too small for {levels} pyramid levels "
                f"(coarsest side {coarse:.0f} px < {MIN_LEVEL_SIZE}); use fewer --levels"
            )
        self.num_levels = levels
        ga, gb = to_gray(a), to_gray(b)
        self.pyr_a = gaussian_pyramid(ga, levels)
        self.pyr_b = gaussian_pyramid(gb, levels)
        if config.loss == "grad":
            self.pyr_a = [_grad_magnitude(x) for x in self.pyr_a]
            self.pyr_b = [_grad_magnitude(x) for x in self.pyr_b]
        elif config.loss == "mi":
            # A light blur removes the interpolation artefact of MI (a false optimum at whole-pixel shifts).
            self.pyr_a = [gaussian_blur(x, 1.0) for x in self.pyr_a]
            self.pyr_b = [gaussian_blur(x, 1.0) for x in self.pyr_b]
        self.mask_a = self._mask_pyramid(mask_a, a, levels)
        self.mask_b = self._mask_pyramid(mask_b, b, levels)
        self.base = base  # (B,3,3) float64 normalized motion, composed at each transfer
        self.T = normalizer(ha, wa, torch.float64, a.device)
        self.Ti = torch.linalg.inv(self.T)
        self.stage_model = config.model
        self._stack_cache: dict[int, torch.Tensor] = {}
        self._pixel_cache: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    @staticmethod
    def _mask_pyramid(mask: torch.Tensor | None, img: torch.Tensor, levels: int) -> list[torch.Tensor] | None:
        if mask is None:
            return None
        out = [mask.to(img.dtype).expand(img.shape[0], 1, -1, -1)]
        for _ in range(levels - 1):
            out.append(downsample_mask(out[-1]))
        return out

    # -- per-level data -----------------------------------------------------------------------------
    def _level_matrices(self, level: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``L = S_l T^-1`` and ``R = T S_l^-1``: pixel map at level l is ``L @ Hn @ R``."""
        f = 2.0**level
        S = torch.diag(torch.tensor([1 / f, 1 / f, 1.0], dtype=torch.float64, device=self.T.device))
        Si = torch.diag(torch.tensor([f, f, 1.0], dtype=torch.float64, device=self.T.device))
        return S @ self.Ti, self.T @ Si

    def _b_stack(self, level: int) -> torch.Tensor:
        """B at ``level`` with its x/y derivatives (and validity mask if any), rows stacked: (1, 3|4, B*h, w)."""
        if level not in self._stack_cache:
            bl = self.pyr_b[level]
            gx, gy = central_gradient(bl)
            parts = [bl, gx, gy] if self.mask_b is None else [bl, gx, gy, self.mask_b[level]]
            self._stack_cache[level] = stack_rows(torch.cat(parts, dim=1))
        return self._stack_cache[level]

    def _pixels(self, level: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Selected pixels of A at ``level``: homogeneous coords (B,N,3), values (B,N), weights (B,N).

        The image is cut into square blocks, as many as the pixel budget allows, and each block contributes
        its pixel with the strongest gradient: informative pixels, spread over the whole image. Blocks with
        no valid pixel get weight 0. The finest level sets the accuracy and gets ``max_pixels``; coarser
        levels only need to land in its basin and get a quarter of that.
        """
        if level in self._pixel_cache:
            return self._pixel_cache[level]
        al = self.pyr_a[level]
        bsz, _, h, w = al.shape
        budget = self.cfg.max_pixels if level == 0 else self.cfg.max_pixels // COARSE_PIXEL_DIVISOR
        block = max(1, round(math.sqrt(h * w / budget)))
        valid = torch.ones(bsz, 1, h, w, dtype=torch.bool, device=al.device)
        if self.mask_a is not None:
            valid = self.mask_a[level] > 0.5
        valid[..., :1, :] = False
        valid[..., -1:, :] = False
        valid[..., :, :1] = False
        valid[..., :, -1:] = False
        if block == 1:
            score = valid.to(al.dtype) - 0.5
            idx = torch.arange(h * w, device=al.device).expand(bsz, -1)
            best = score.reshape(bsz, -1)
        else:
            gx = al[..., :, 2:] - al[..., :, :-2]
            gy = al[..., 2:, :] - al[..., :-2, :]
            score = torch.zeros_like(al)
            score[..., :, 1:-1] += gx.abs()
            score[..., 1:-1, :] += gy.abs()
            score = torch.where(valid, score, torch.full_like(score, -1.0))
            best, idx = F.max_pool2d(score, block, stride=block, ceil_mode=True, return_indices=True)
            best, idx = best.reshape(bsz, -1), idx.reshape(bsz, -1)
        xs = (idx % w).to(al.dtype)
        ys = torch.div(idx, w, rounding_mode="floor").to(al.dtype)
        coords = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1)
        values = torch.gather(al.reshape(bsz, -1), 1, idx)
        weights = (best >= 0).to(al.dtype)
        self._pixel_cache[level] = (coords, values, weights)
        return self._pixel_cache[level]

    # -- CoarseToFineProblem ------------------------------------------------------------------------
    def transfer(self, params: torch.Tensor, from_level: int, to_level: int) -> torch.Tensor:
        self.commit(params)
        return torch.zeros_like(params)

    def commit(self, params: torch.Tensor) -> None:
        """Compose the update ``M(q)`` into the base motion."""
        self.base = model_matrix(params.to(torch.float64), self.stage_model) @ self.base
        self.base = self.base / self.base[:, 2:3, 2:3]

    def _model_jacobian(self, q: torch.Tensor) -> torch.Tensor:
        """``dM/dq`` (B,P,3,3); constant for the models linear in q, so computed once for those."""
        if self.stage_model == "euclidean":
            return model_matrix_jacobian(q, "euclidean")
        key = (self.stage_model, q.dtype, q.device)
        if key not in _JACOBIAN_CACHE:
            _JACOBIAN_CACHE[key] = model_matrix_jacobian(torch.zeros_like(q[:1]), self.stage_model)
        return _JACOBIAN_CACHE[key].expand(q.shape[0], -1, -1, -1)

    def residuals(self, level: int, bases: torch.Tensor | None = None):
        """LM residuals at ``level`` (see :func:`gdvision.optim.minimize_lm`).

        ``bases`` (K*B, 3, 3) optionally replaces the current base motion by K candidate starts per item
        (item ``i`` of the result is pair ``i % B``), so several starts run as one batch.
        """
        L, R = self._level_matrices(level)
        coords, a_all, w_all = self._pixels(level)
        stack = self._b_stack(level)
        h, w = self.pyr_b[level].shape[-2:]
        base = self.base if bases is None else bases
        pair_of = torch.arange(base.shape[0], device=base.device) % coords.shape[0]  # item -> pair
        if base.shape[0] != coords.shape[0]:
            coords, a_all, w_all = coords[pair_of], a_all[pair_of], w_all[pair_of]
        dtype = a_all.dtype
        # Points of A expressed in motion coordinates through the base motion: fixed within the level.
        y_all = coords @ (base @ R).transpose(1, 2).to(dtype)  # (B,N,3)
        model = self.stage_model
        loss = "ncc" if self.cfg.loss == "ssim" else self.cfg.loss  # ssim: NCC brings it close, see module doc
        n_p = check_model(model)
        linear = model != "euclidean"  # M(q) = I + sum_p q_p E_p: dM/dq is constant
        if linear:
            E = self._model_jacobian(torch.zeros(1, n_p, dtype=torch.float64, device=base.device))[0]  # (P,3,3)
            LE = (L @ E).reshape(n_p, 9)  # L M(q) = L + q @ LE
            K = LE.T.to(dtype)  # (9, P), shared by all items
        # pixel -> grid_sample coordinates of the row-stacked B: u = x sx - 1, v = (y + item h) sy - 1
        total = stack.shape[-2]
        gscale = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(total - 1, 1)], dtype=dtype, device=base.device)
        goffset = torch.stack([-torch.ones_like(pair_of, dtype=dtype), pair_of.to(dtype) * h * gscale[1] - 1], -1)
        goffset = goffset.unsqueeze(1)  # (B,1,2)
        limit = torch.tensor([w - 1, h - 1], dtype=dtype, device=base.device)

        def fn(q: torch.Tensor, index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            q64 = q.to(torch.float64)
            if index is None:
                y, a_val, a_w, off = y_all, a_all, w_all, goffset
            else:
                y, a_val, a_w, off = y_all[index], a_all[index], w_all[index], goffset[index]
            bsz = q.shape[0]
            if linear:
                LM = (L + (q64 @ LE).view(bsz, 3, 3)).to(dtype)
                Kb = K
            else:
                LM = (L @ model_matrix(q64, model)).to(dtype)  # (B,3,3)
                Kb = (L @ model_matrix_jacobian(q64, model)).to(dtype).reshape(bsz, n_p, 9).transpose(1, 2)
            z = y @ LM.transpose(1, 2)  # (B,N,3)
            zz = z[..., 2:3]
            zz = torch.where(zz.abs() < 1e-9, torch.full_like(zz, 1e-9), zz)
            pts = z[..., :2] / zz
            grid = (pts * gscale + off).view(1, 1, -1, 2)
            samp = F.grid_sample(stack, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
            samp = samp.view(stack.shape[1], bsz, -1)  # (3|4, B, N)
            s, sx, sy = samp[0], samp[1], samp[2]
            inside = ((pts >= 0) & (pts <= limit)).all(-1)
            if samp.shape[0] == 4:
                inside = inside & (samp[3] > 0.999)
            valid = a_w * inside.to(dtype)
            # ds/dq_p = sum_kj gvec_k y_j (L dM_p)_kj with gvec = [sx, sy, -(sx u + sy v)] / z_z (chain rule
            # through the perspective division), evaluated as one (N, 9) x (9, P) product.
            gvec = torch.stack([sx, sy, -(sx * pts[..., 0] + sy * pts[..., 1])], dim=-1) / zz  # (B,N,3)
            outer = (gvec.unsqueeze(-1) * y.unsqueeze(-2)).view(bsz, -1, 9)
            ds = outer @ Kb  # (B,N,P)
            if loss == "l1":
                r = a_val - s
                return r, -ds, valid / torch.sqrt(r * r + 1e-4)
            # ncc / grad: fit a gain and offset a ~ g s + o on the valid pixels (variable projection)
            n = valid.sum(1, keepdim=True).clamp_min(1.0)
            cs = s - (valid * s).sum(1, keepdim=True) / n
            ca = a_val - (valid * a_val).sum(1, keepdim=True) / n
            vcs = valid * cs
            var_s = (vcs * cs).sum(1, keepdim=True)
            g = (vcs * ca).sum(1, keepdim=True) / var_s.clamp_min(1e-10)
            g = torch.where((var_s > 1e-10 * n) & (g.abs() > 1e-6), g, torch.ones_like(g))
            # r = ca - g cs with dr/dq = -g ds, written as r' = cs - ca / g, J' = ds, w' = w g^2: the same
            # cost and normal equations without scaling the (N, P) Jacobian.
            return cs - ca / g, ds, valid * g * g

        return fn

    def loss(self, level: int):
        L, R = self._level_matrices(level)
        al = self.pyr_a[level]
        h, w = al.shape[-2:]
        bl = self.pyr_b[level]
        stack = torch.cat([bl, torch.ones_like(bl) if self.mask_b is None else self.mask_b[level]], dim=1)
        model = self.stage_model
        if self.cfg.loss == "mi":
            # Mutual information on a fixed regular subset of A's pixels (deterministic, so L-BFGS applies).
            coords, a_val, a_w = self._grid_pixels(level)

            def mi_fn(q: torch.Tensor) -> torch.Tensor:
                Hpix = (L @ model_matrix(q.to(torch.float64), model) @ self.base @ R).to(al.dtype)
                pts = coords @ Hpix.transpose(1, 2)
                pts = pts[..., :2] / pts[..., 2:3]
                samp = sample_points(stack, pts)
                valid = a_w * inside_mask(pts, bl.shape[-2], bl.shape[-1]) * (samp[:, 1] > 0.999).to(al.dtype)
                mi = mutual_information(
                    a_val[:, None, :, None],
                    samp[:, :1, :, None],
                    valid[:, None, :, None],
                    bins=MI_BINS,
                    normalized=True,
                )
                return -mi

            return mi_fn
        mask_a = torch.ones_like(al) if self.mask_a is None else self.mask_a[level]

        def ssim_fn(q: torch.Tensor) -> torch.Tensor:
            Hpix = L @ model_matrix(q.to(torch.float64), model) @ self.base @ R
            warped, inside = warp_perspective(stack, Hpix, (w, h), inverse_map=True)
            mask = inside * mask_a * (warped[:, 1:2] > 0.999).to(al.dtype)
            return ssim_loss(al, warped[:, :1], mask)

        return ssim_fn

    def _grid_pixels(self, level: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A regular subset of A's pixels at ``level`` (at most ``max_pixels``): coords (B,N,3), values, weights."""
        al = self.pyr_a[level]
        bsz, _, h, w = al.shape
        stride = max(1, math.ceil(math.sqrt(h * w / min(self.cfg.max_pixels, MI_MAX_PIXELS))))
        ys = torch.arange(0, h, stride, device=al.device)
        xs = torch.arange(0, w, stride, device=al.device)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        vals = al[:, 0][:, gy, gx].reshape(bsz, -1)
        weights = torch.ones_like(vals)
        if self.mask_a is not None:
            weights = (self.mask_a[level][:, 0][:, gy, gx].reshape(bsz, -1) > 0.5).to(al.dtype)
        coords = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).reshape(1, -1, 3).to(al.dtype).expand(bsz, -1, -1)
        return coords, vals, weights

    def pixel_homography(self) -> torch.Tensor:
        ha, wa = self.size_a
        return motion_to_pixel(self.base, ha, wa)


def _phase_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Integer shift (B, 2) = (dx, dy) with ``b(x + d) ~ a(x)``, by phase correlation (Hann-windowed)."""
    h = max(a.shape[-2], b.shape[-2])
    w = max(a.shape[-1], b.shape[-1])

    def prep(x: torch.Tensor) -> torch.Tensor:
        x = x[:, 0] - x[:, 0].mean((-2, -1), keepdim=True)
        win = torch.outer(torch.hann_window(x.shape[-2], dtype=x.dtype), torch.hann_window(x.shape[-1], dtype=x.dtype))
        x = x * win.to(x.device)
        return torch.nn.functional.pad(x, (0, w - x.shape[-1], 0, h - x.shape[-2]))

    fa = torch.fft.rfft2(prep(a))
    fb = torch.fft.rfft2(prep(b))
    cross = fb * fa.conj()
    corr = torch.fft.irfft2(cross / (cross.abs() + 1e-9), s=(h, w))
    idx = corr.reshape(corr.shape[0], -1).argmax(1)
    dy = (idx // w).to(torch.float64)
    dx = (idx % w).to(torch.float64)
    dy = torch.where(dy > h / 2, dy - h, dy)
    dx = torch.where(dx > w / 2, dx - w, dx)
    return torch.stack([dx, dy], dim=1)


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
        if not torch.isfinite(x).all():
            raise InputError(f"image {name} contains NaN or infinite values")
    bsz = a.shape[0]
    ha, wa = a.shape[-2:]
    dev = a.device
    if init is not None:
        init = init.to(device=dev, dtype=torch.float64)
        init = init.expand(bsz, 3, 3) if init.dim() == 2 else init
        if not torch.isfinite(init).all() or (torch.linalg.det(init).abs() < 1e-12).any():
            raise InputError("the initial homography is singular or not finite")
        T = normalizer(ha, wa, torch.float64, dev)
        base = T @ init @ torch.linalg.inv(T)
    else:
        base = torch.eye(3, dtype=torch.float64, device=dev).expand(bsz, 3, 3).clone()
    prob = _Registration(a, b, mask_a, mask_b, base, cfg)
    coarse = prob.num_levels - 1
    # LM stops a level once its update moves A's corners by less than `step_px` pixels of that level.
    scale = max(ha, wa) / 2.0
    lm_levels = [
        StepConfig(
            method="lm", iters=cfg.iters, tol=cfg.tol, xtol=(STEP_PX_FINE if lv == 0 else STEP_PX) * 2**lv / scale
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
            _coarse_translation(prob, coarse)
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


def _coarse_translation(prob: _Registration, level: int) -> None:
    """Start from the better of the current motion and a phase-correlation translation, each refined by a
    translation-only LM at the coarsest level (both starts run as one batch)."""
    a = prob.pyr_a[level]
    b = prob.pyr_b[level]
    bsz = a.shape[0]
    shift = _phase_correlation(a, b) * 2.0**level  # full-resolution pixels
    ha, wa = prob.size_a
    s = max(ha, wa) / 2.0
    cand = torch.eye(3, dtype=torch.float64, device=a.device).repeat(bsz, 1, 1)
    cand[:, 0, 2] = shift[:, 0] / s
    cand[:, 1, 2] = shift[:, 1] / s
    bases = torch.cat([prob.base, cand @ prob.base])
    saved_model = prob.stage_model
    prob.stage_model = "translation"
    q0 = torch.zeros(2 * bsz, 2, dtype=torch.float64, device=a.device)
    cfg = StepConfig(method="lm", iters=10, tol=1e-4, xtol=1e-3)
    q, cost, _ = minimize_lm(prob.residuals(level, bases), q0, cfg)
    moved = model_matrix(q, "translation") @ bases
    pick = (cost[bsz:] < cost[:bsz]).view(-1, 1, 1)
    prob.base = torch.where(pick, moved[bsz:], moved[:bsz])
    prob.base = prob.base / prob.base[:, 2:3, 2:3]
    prob.stage_model = saved_model


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


def describe_result(
    res: RegistrationResult,
    k: int,
    cfg: RegisterConfig,
    img_a: LoadedImage,
    img_b: LoadedImage,
    device: torch.device,
    H_gt: torch.Tensor | None = None,
    seconds: float | None = None,
) -> dict[str, Any]:
    """The JSON record of item ``k`` of a result (what ``--out`` and ``--json`` hold)."""
    H = res.H[k].detach().cpu().to(torch.float64)
    record: dict[str, Any] = {
        "H": H.tolist(),
        "convention": "pixel coordinates, (0,0) = centre of the top-left pixel; [xB, yB, 1]^T ~ H [xA, yA, 1]^T",
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
    if H_gt is not None:
        record["corner_error_px"] = float(mean_corner_error(H, H_gt.to(torch.float64), img_a.height, img_a.width))
    return record


def warp_to_b(a: torch.Tensor, b: torch.Tensor, H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A (1, C, Ha, Wa) warped into B's frame by H (A -> B), and a checkerboard overlay with B (1, 3, Hb, Wb)."""
    hb, wb = b.shape[-2:]
    warped, mask = warp_perspective(a, H.to(a.device), (wb, hb))
    ga = to_gray(warped) if warped.shape[1] != b.shape[1] else warped
    gb = to_gray(b) if warped.shape[1] != b.shape[1] else b
    return warped, checkerboard(ga, gb, 8, mask)


def solve_loaded_pairs(group: list, cfg: RegisterConfig, device: torch.device) -> list[Outcome]:
    """Register loaded pairs ``(item, image_a, image_b, H_gt or None)`` of equal sizes as one batch.

    For the batch engine (:class:`gdvision.tasks.register.RegisterJob`); one
    :class:`gdvision.runs.engine.Outcome` per pair.
    Pairs are converted to luminance so that gray and colour images batch together; alpha masks apply.
    """
    items = [g[0] for g in group]
    a = torch.cat([to_gray(g[1].tensor(device)) for g in group])
    b = torch.cat([to_gray(g[2].tensor(device)) for g in group])
    ma = _stack_masks([g[1] for g in group], device)
    mb = _stack_masks([g[2] for g in group], device)
    res = register_batch(a, b, cfg, ma, mb)
    per_pair = res.seconds / len(group)
    outcomes = []
    for k, g in enumerate(group):
        if res.failed is not None and bool(res.failed[k]):
            outcomes.append(Outcome(items[k], error="registration failed: no valid overlap or a folded transform"))
            continue
        hgt = None if g[3] is None else torch.from_numpy(g[3])
        outcomes.append(Outcome(items[k], describe_result(res, k, cfg, g[1], g[2], device, hgt, per_pair)))
    return outcomes


def _stack_masks(images: list[LoadedImage], device: torch.device) -> torch.Tensor | None:
    if all(im.mask is None for im in images):
        return None
    out = []
    for im in images:
        m = im.mask_tensor(device)
        out.append(torch.ones(1, 1, im.height, im.width, device=device) if m is None else m)
    return torch.cat(out)
