"""The depth problem: per-level images and projections, the photometric cost, and the loss the optimiser descends.

Model: every reference pixel ``p`` has an inverse depth ``w = 1 / d``, bounded to
``[1 / max_depth, 1 / min_depth]`` through a sigmoid of the free parameter ``theta`` (one per pixel).
Each source view is sampled at ``p_i ~ K_i T_i T_ref^-1 (d K_ref^-1 p)`` (:mod:`gdvision.depth.warp`).

Loss at one pyramid level (all images in [0, 1]):

- per view ``i``: ``c_i = alpha (1 - SSIM(I_ref, I_i~)) / 2 + (1 - alpha) |I_ref - I_i~|`` (channel mean);
- combined per pixel by the **minimum over the views that see it** (occlusion in one view is explained by
  another); samples outside a source frame or behind its camera are masked, and pixels seen by no view
  do not count;
- plus ``smoothness * edge_aware_smoothness(w / mean(w), edge_gamma * I_ref)``, i.e.
  ``|dx w| exp(-gamma |dx I|) + |dy w| exp(-gamma |dy I|)`` on mean-normalised inverse depth.

:class:`DepthProblem` is the problem object of :func:`gdvision.optim.coarse_to_fine` (params = ``theta``
(1, 1, H_l, W_l) at level ``l``); :func:`build_levels` makes its pyramid of :class:`Level`.

Example:
    >>> import torch
    >>> K = torch.tensor([[50.0, 0, 19.5], [0, 50, 11.5], [0, 0, 1]]); T = torch.eye(4); T[0, 3] = -1.0
    >>> img = torch.rand(1, 1, 24, 40)
    >>> levels = build_levels(View(img, K, torch.eye(4)), [View(img, K, T)], 2, torch.device("cpu"))
    >>> prob = DepthProblem(levels, 0.02, 0.2, DepthConfig())
    >>> cost, seen = prob.cost(0, torch.full((1, 1, 24, 40), 0.1))
    >>> cost.shape, round(prob.parallax(0), 3)     # f * baseline * (w_max - w_min) = 50 * 0.18
    (torch.Size([1, 1, 24, 40]), 9.0)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from gdvision.coords import pixel_grid
from gdvision.depth.config import DepthConfig, View
from gdvision.depth.warp import project_points, relative_projection, sample_image, scale_intrinsics
from gdvision.losses import edge_aware_smoothness, masked_mean, ssim_map_to_reference, ssim_reference_stats
from gdvision.pyramid import downsample_mask, gaussian_pyramid

UNSEEN = 1e3  # cost of a hypothesis no view can see (larger than any real photometric cost, which is <= ~2)


def photometric_cost(
    ref_stats: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    warped: torch.Tensor,
    alpha: float,
    window: int,
    sigma: float,
) -> torch.Tensor:
    """Per-pixel ``alpha (1 - SSIM) / 2 + (1 - alpha) |ref - warped|`` (channel mean) -> (B, 1, H, W).

    ``ref_stats``: :func:`gdvision.losses.ssim_reference_stats` of the reference (1 or B, C, H, W);
    ``warped``: (B, C, H, W) in [0, 1]. 0 = identical; values lie in [0, 1].
    """
    l1 = (ref_stats[0] - warped).abs().mean(1, keepdim=True)
    if alpha <= 0:
        return l1
    ssim = ssim_map_to_reference(ref_stats, warped, window, sigma).mean(1, keepdim=True)
    return alpha * ((1.0 - ssim) * 0.5).clamp(0, 1) + (1.0 - alpha) * l1


@dataclass
class Level:
    """One pyramid level: the reference, its mask, the source views and the projections ``p_i ~ A p + b w``."""

    ref: torch.Tensor  # (1,C,H,W)
    ref_mask: torch.Tensor  # (1,1,H,W)
    srcs: list[torch.Tensor]
    src_masks: list[torch.Tensor | None]
    A: list[torch.Tensor]  # (1,3,3)
    b: list[torch.Tensor]  # (1,3)
    stats: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # SSIM statistics of ref
    gray_srcs: list[torch.Tensor] | None = None  # the sources' channel means (the sweeps' cost), made once

    def grey_sources(self) -> list[torch.Tensor]:
        """The source images' channel means (1, 1, h, w), computed once and shared with the level's strips."""
        if self.gray_srcs is None:
            self.gray_srcs = [s.mean(1, keepdim=True) for s in self.srcs]
        return self.gray_srcs

    def warped_views(
        self, w: torch.Tensor, srcs: Sequence[torch.Tensor] | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every source sampled at the reference pixels through inverse depth ``w`` (B, 1, H, W): per view
        ``(warped (B, C, H, W), ok (B, 1, H, W) bool)``, ok where the sample is inside the frame, in front of the
        camera and on a valid source pixel (mask > 0.999). ``srcs``: other images of the same views (e.g. grey)."""
        n = w.shape[0]
        for src, smask, A, b in zip(self.srcs if srcs is None else srcs, self.src_masks, self.A, self.b, strict=True):
            pts, front = project_points(A.expand(n, 3, 3), b.expand(n, 3), w)
            warped, inside = sample_image(src.expand(n, -1, -1, -1), pts)
            ok = (inside > 0) & front
            if smask is not None:
                sm, _ = sample_image(smask.expand(n, -1, -1, -1), pts)
                ok &= sm > 0.999
            yield warped, ok

    def rows(self, y0: int, y1: int) -> Level:
        """The level restricted to reference rows ``y0:y1`` (a strip): the projections shift with the crop.

        Reference pixel ``(x, y)`` of the strip is ``(x, y + y0)`` of the level, so ``A`` becomes ``A S`` with
        ``S`` the translation by ``y0``; the source views are shared.
        """
        if y0 == 0 and y1 == self.ref.shape[-2]:
            return self
        shift = torch.eye(3, dtype=self.A[0].dtype, device=self.A[0].device)
        shift[1, 2] = float(y0)
        return Level(
            self.ref[..., y0:y1, :],
            self.ref_mask[..., y0:y1, :],
            self.srcs,
            self.src_masks,
            [A @ shift for A in self.A],
            self.b,
            gray_srcs=self.grey_sources(),
        )


class DepthProblem:
    """Coarse-to-fine problem for :func:`gdvision.optim.coarse_to_fine`: params = theta (1, 1, H_l, W_l)."""

    def __init__(self, levels: list[Level], w_min: float, w_max: float, cfg: DepthConfig) -> None:
        self.lv = levels
        self.num_levels = len(levels)
        self.w_min = w_min
        self.w_max = w_max
        self.cfg = cfg

    def parallax(self, level: int) -> float:
        """Largest image motion (pixels of ``level``) over the inverse-depth range, over views and image corners."""
        L = self.lv[level]
        h, w = L.ref.shape[-2:]
        corners = torch.tensor([[0.0, 0.0], [w - 1.0, 0.0], [0.0, h - 1.0], [w - 1.0, h - 1.0], [w / 2, h / 2]])
        best = 1e-9
        for A, b in zip(L.A, L.b, strict=True):
            ph = torch.cat([corners, torch.ones(5, 1)], 1).to(torch.float64)
            q0 = ph @ A[0].to(torch.float64).T + self.w_min * b[0].to(torch.float64)
            q1 = ph @ A[0].to(torch.float64).T + self.w_max * b[0].to(torch.float64)
            z = torch.minimum(q0[:, 2], q1[:, 2])
            if bool((z <= 0).any()):
                continue
            move = (q1[:, :2] / q1[:, 2:] - q0[:, :2] / q0[:, 2:]).norm(dim=1).max()
            best = max(best, float(move))
        return best

    def inv_depth(self, theta: torch.Tensor) -> torch.Tensor:
        return self.w_min + (self.w_max - self.w_min) * torch.sigmoid(theta)

    def theta_of(self, w: torch.Tensor) -> torch.Tensor:
        s = ((w - self.w_min) / (self.w_max - self.w_min)).clamp(1e-4, 1 - 1e-4)
        return torch.log(s) - torch.log1p(-s)

    def cost(self, level: int, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Combined photometric cost (B,1,H,W) (min over seeing views) and its validity (B,1,H,W)."""
        L = self.lv[level]
        best: torch.Tensor | None = None
        seen: torch.Tensor | None = None
        for warped, ok in L.warped_views(w):
            m = ok.to(warped.dtype)
            if L.stats is None:
                L.stats = ssim_reference_stats(L.ref, self.cfg.ssim_window, self.cfg.ssim_sigma)
            c = photometric_cost(L.stats, warped, self.cfg.alpha, self.cfg.ssim_window, self.cfg.ssim_sigma)
            c = torch.where(m > 0, c, torch.full_like(c, UNSEEN))
            best = c if best is None else torch.minimum(best, c)
            seen = m if seen is None else torch.maximum(seen, m)
        assert best is not None and seen is not None
        return best, seen * L.ref_mask

    def loss(self, level: int) -> Callable[[torch.Tensor], torch.Tensor]:
        L = self.lv[level]
        lam = self.cfg.smoothness / (2.0**level)
        guide = L.ref * self.cfg.edge_gamma

        def fn(theta: torch.Tensor) -> torch.Tensor:
            w = self.inv_depth(theta)
            c, valid = self.cost(level, w)
            data = masked_mean(torch.where(valid > 0, c, torch.zeros_like(c)), valid)
            return data + lam * edge_aware_smoothness(w, guide, normalize=True)

        return fn

    def residuals(self, level: int):  # pragma: no cover - first-order only
        raise NotImplementedError

    def transfer(self, theta: torch.Tensor, from_level: int, to_level: int) -> torch.Tensor:
        h, w = self.lv[to_level].ref.shape[-2:]
        return upsample_to(theta, h, w, 2 ** (from_level - to_level))


def row_strips(h: int, keep: int, margin: int) -> list[tuple[int, int, int, int]]:
    """Strips of rows covering ``0..h``: ``(a, b, y0, y1)``, rows ``y0:y1`` kept (``keep`` rows, the last one
    shorter) and ``a:b`` the rows computed for them (``margin`` more on each side, clipped to the image), for
    windowed or aggregated work done strip by strip with :meth:`Level.rows`.

    Example:
        >>> row_strips(10, 4, 1)
        [(0, 5, 0, 4), (3, 9, 4, 8), (7, 10, 8, 10)]
    """
    out = []
    for y0 in range(0, h, max(1, keep)):
        y1 = min(h, y0 + max(1, keep))
        out.append((max(0, y0 - margin), min(h, y1 + margin), y0, y1))
    return out


def upsample_to(x: torch.Tensor, h: int, w: int, factor: int = 2) -> torch.Tensor:
    """Bilinear upsampling of a (B, C, h', w') map from a coarser pyramid level to (B, C, h, w).

    Uses the pyramid's pixel relation: fine pixel ``(x, y)`` sits at coarse ``(x / factor, y / factor)``;
    beyond the last coarse pixel centre the border value is repeated.
    """
    grid = pixel_grid(h, w, device=x.device, dtype=x.dtype) / factor
    out, _ = sample_image(x, grid.unsqueeze(0).expand(x.shape[0], -1, -1, -1))
    return out


def build_levels(ref: View, sources: Sequence[View], n_levels: int, device: torch.device) -> list[Level]:
    """The ``n_levels`` pyramid levels (finest first) of the views, as float32 on ``device``."""
    dtype = torch.float32
    ref_pyr = gaussian_pyramid(ref.image.to(device, dtype), n_levels)
    rm = ref.mask.to(device, dtype) if ref.mask is not None else torch.ones_like(ref_pyr[0][:, :1])
    ref_masks = [rm]
    for _ in range(n_levels - 1):
        ref_masks.append(downsample_mask(ref_masks[-1]))
    src_pyrs = [gaussian_pyramid(s.image.to(device, dtype), n_levels) for s in sources]
    src_mask_pyrs: list[list[torch.Tensor | None]] = []
    for s in sources:
        if s.mask is None:
            src_mask_pyrs.append([None] * n_levels)
        else:
            ms = [s.mask.to(device, dtype)]
            for _ in range(n_levels - 1):
                ms.append(downsample_mask(ms[-1]))
            src_mask_pyrs.append(list(ms))
    out = []
    for lvl in range(n_levels):
        As, bs = [], []
        Kr = scale_intrinsics(ref.K.to(torch.float64), lvl)
        for s in sources:
            A, b = relative_projection(
                Kr,
                ref.world_to_cam.to(torch.float64),
                scale_intrinsics(s.K.to(torch.float64), lvl),
                s.world_to_cam.to(torch.float64),
            )
            As.append(A.to(device, dtype)[None])
            bs.append(b.to(device, dtype)[None])
        out.append(
            Level(ref_pyr[lvl], ref_masks[lvl], [p[lvl] for p in src_pyrs], [m[lvl] for m in src_mask_pyrs], As, bs)
        )
    return out


__all__ = ["UNSEEN", "DepthProblem", "Level", "build_levels", "photometric_cost", "row_strips", "upsample_to"]
