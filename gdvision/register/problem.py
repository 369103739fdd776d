"""The registration problem: pyramids, pixel selection, residuals and losses for a batch of pairs.

:class:`Registration` implements :class:`gdvision.optim.CoarseToFineProblem`. Its motion lives in centred
coordinates (:mod:`gdvision.coords`): ``base`` (B, 3, 3) is the current centred motion A -> B, and a level's
parameters ``q`` describe an update ``M(q)`` (:mod:`gdvision.register.motion`) composed on its left. At pyramid
level ``l`` the pixel homography is ``L @ M(q) @ base @ R`` with ``L = S_l T^-1`` and ``R = T S_l^-1``
(``T`` the centring matrix of A, ``S_l`` the level scaling).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gdvision.color import to_gray
from gdvision.coords import centring_matrix, homography_from_centred
from gdvision.errors import InputError
from gdvision.filters.separable import central_gradient, gaussian_blur, sobel
from gdvision.losses import mutual_information, ssim_loss
from gdvision.pyramid import downsample_mask, gaussian_pyramid, num_levels
from gdvision.register.config import MIN_LEVEL_SIZE, RegisterConfig
from gdvision.register.motion import check_model, model_matrix, model_matrix_jacobian
from gdvision.warp import inside_mask, sample_points, stack_rows, warp_perspective

COARSE_PIXEL_DIVISOR = 4  # levels above the finest use max_pixels / this many pixels
MI_BINS = 24
MI_MAX_PIXELS = 8192
_JACOBIAN_CACHE: dict[tuple[str, torch.dtype, torch.device], torch.Tensor] = {}


def _grad_magnitude(x: torch.Tensor) -> torch.Tensor:
    gx, gy = sobel(x, border="replicate")
    return torch.sqrt(gx * gx + gy * gy + 1e-12) * 0.125


class Registration:
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
        self.base = base  # (B,3,3) float64 centred motion, composed at each transfer
        self.T = centring_matrix(ha, wa, torch.float64, a.device)
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
            bsz, _, h, w = bl.shape
            parts = torch.empty(bsz, 3 if self.mask_b is None else 4, h, w, dtype=bl.dtype, device=bl.device)
            parts[:, 0:1] = bl
            central_gradient(bl, out=(parts[:, 1:2], parts[:, 2:3]))  # written into the stack: no copies
            if self.mask_b is not None:
                parts[:, 3:4] = self.mask_b[level]
            self._stack_cache[level] = stack_rows(parts)
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
        # score: |central x difference| + |central y difference| inside, -1 on the 1-pixel frame and off the mask
        score = torch.full_like(al, -1.0)
        if block == 1:
            score[..., 1:-1, 1:-1] = 0.5
        else:
            inner = al[..., 1:-1, 2:] - al[..., 1:-1, :-2]
            inner.abs_().add_((al[..., 2:, 1:-1] - al[..., :-2, 1:-1]).abs_())
            score[..., 1:-1, 1:-1] = inner
        if self.mask_a is not None:
            score = torch.where(self.mask_a[level] > 0.5, score, torch.full_like(score, -1.0))
        if block == 1:
            idx = torch.arange(h * w, device=al.device).expand(bsz, -1)
            best = score.reshape(bsz, -1)
        else:
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
        # Points of A expressed in motion coordinates through the base motion: fixed within the level. Kept as
        # (B, 3, N) rows (structure of arrays): every per-point operation below runs on contiguous rows.
        y_all = ((base @ R).to(dtype) @ coords.transpose(1, 2)).contiguous()  # (B,3,N)
        model = self.stage_model
        loss = "ncc" if self.cfg.loss == "ssim" else self.cfg.loss  # ssim: NCC brings it close, see module doc
        n_p = check_model(model)
        linear = model != "euclidean"  # M(q) = I + sum_p q_p E_p: dM/dq is constant
        if linear:
            E = self._model_jacobian(torch.zeros(1, n_p, dtype=torch.float64, device=base.device))[0]  # (P,3,3)
            LE = (L @ E).reshape(n_p, 9)  # L M(q) = L + q @ LE
            K = LE.to(dtype)  # (P, 9), shared by all items
        # pixel -> grid_sample coordinates of the row-stacked B: u = x sx - 1, v = (y + item h) sy - 1
        total = stack.shape[-2]
        sx, sy = 2.0 / max(w - 1, 1), 2.0 / max(total - 1, 1)
        yoff = (pair_of.to(dtype) * h * sy - 1).unsqueeze(1)  # (B,1)

        def fn(q: torch.Tensor, index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            q64 = q.to(torch.float64)
            if index is None:
                y, a_val, a_w, off = y_all, a_all, w_all, yoff
            else:
                y, a_val, a_w, off = y_all[index], a_all[index], w_all[index], yoff[index]
            bsz = q.shape[0]
            if linear:
                LM = (L + (q64 @ LE).view(bsz, 3, 3)).to(dtype)
                Kb = K
            else:
                LM = (L @ model_matrix(q64, model)).to(dtype)  # (B,3,3)
                Kb = (L @ model_matrix_jacobian(q64, model)).to(dtype).reshape(bsz, n_p, 9)
            z = LM @ y  # (B,3,N)
            zz = z[:, 2]
            zz = torch.where(zz.abs() < 1e-9, 1e-9, zz)
            inv = zz.reciprocal()
            u, v = z[:, 0] * inv, z[:, 1] * inv
            grid = torch.stack([u * sx - 1, v * sy + off], dim=-1).view(1, 1, -1, 2)
            samp = F.grid_sample(stack, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
            samp = samp.view(stack.shape[1], bsz, -1)  # (3|4, B, N)
            s, bx, by = samp[0], samp[1], samp[2]
            inside = (u.clamp(0, w - 1) == u) & (v.clamp(0, h - 1) == v)  # NaN is outside
            if samp.shape[0] == 4:
                inside = inside & (samp[3] > 0.999)
            valid = a_w * inside
            # ds/dq_p = sum_kj gvec_k y_j (L dM_p)_kj with gvec = [bx, by, -(bx u + by v)] / z_z (chain rule
            # through the perspective division), evaluated as one (P, 9) x (9, N) product; the Jacobian is
            # returned as a (B, N, P) view of (B, P, N) rows.
            gx, gy = bx * inv, by * inv
            gvec = torch.stack([gx, gy, torch.addcmul(gx * u, gy, v).neg_()], dim=1)  # (B,3,N)
            outer = (gvec.unsqueeze(2) * y.unsqueeze(1)).view(bsz, 9, -1)
            ds = (Kb @ outer).transpose(1, 2)  # (B,N,P)
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
        return homography_from_centred(self.base, ha, wa)


__all__ = ["Registration"]
