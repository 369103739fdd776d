"""Dense depth of a reference view from N >= 1 calibrated source views by coarse-to-fine gradient descent.

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

Solving: a Gaussian pyramid (finest first) of every image, whose coarsest level is the finest one with at
most ``sweep_max_pixels`` pixels (fine structures only show at fine levels); there a **plane sweep**
(``init="sweep"``: the combined cost at ``sweep_planes`` inverse depths uniform in ``[w_min, w_max]``,
aggregated semi-globally along 4 scanlines (:mod:`gdvision.depth.aggregate`), the winner with a parabolic
sub-plane fit, badly matched winners filled from the farthest reliable neighbour, median-filtered) or
``init="random"`` (uniform noise in ``theta``, as in Kornia's depth example) gives the start; then Adam
(:func:`gdvision.optim.coarse_to_fine`) refines ``theta`` level by level, upsampling bilinearly between
levels. Finally pixels that every source misses at their depth (out of frame, or occluded according to a
z-buffer of the map itself), and badly matched pixels of the border band that some depth of the range puts
out of frame, take the farther of their nearest reliable row neighbours (``final_fill``).

Output: depth (H, W) float32 in the cameras' length unit, NaN where unknown (masked reference pixels,
pixels that no source view can see at any depth in the range); a confidence in [0, 1] from the final
photometric cost, ``exp(-cost / confidence_scale)``, 0 where no view sees the pixel at the found depth.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from gdvision.coords import pixel_grid
from gdvision.depth.aggregate import sgm_aggregate
from gdvision.depth.warp import project_points, relative_projection, sample_image, scale_intrinsics
from gdvision.errors import InputError, UsageError
from gdvision.losses import edge_aware_smoothness, masked_mean, ssim_map_to_reference, ssim_reference_stats
from gdvision.optim import Progress, StepConfig, coarse_to_fine
from gdvision.pyramid import downsample_mask, gaussian_pyramid, num_levels

_BIG = 1e3  # cost of a hypothesis no view can see (larger than any real photometric cost, which is <= ~2)


@dataclass
class View:
    """One calibrated image.

    Attributes:
        image: (1, C, H, W) float tensor in [0, 1].
        K: (3, 3) intrinsics in pixels of this image (pixel centres at integers).
        world_to_cam: (4, 4) pose, ``X_cam = world_to_cam @ [X_world, 1]``.
        mask: optional (1, 1, H, W) validity (1 = usable pixel), e.g. from an alpha channel.
        name: a label for messages.

    Example:
        >>> import torch
        >>> v = View(torch.rand(1, 3, 48, 64), torch.tensor([[60.0, 0, 31.5], [0, 60, 23.5], [0, 0, 1]]), torch.eye(4))
    """

    image: torch.Tensor
    K: torch.Tensor
    world_to_cam: torch.Tensor
    mask: torch.Tensor | None = None
    name: str = "view"


@dataclass
class DepthConfig:
    """Settings of :func:`estimate_depth` (defaults tuned on the Middlebury Motorcycle pair).

    Attributes:
        min_depth, max_depth: depth bounds in the poses' length unit; ``None`` = :func:`auto_depth_range`.
        alpha: weight of the SSIM term vs the absolute difference (0.85 as in Monodepth/Kornia).
        ssim_window, ssim_sigma: Gaussian SSIM window (odd size, pixels of each level) and its std.
        smoothness: weight of the edge-aware smoothness of mean-normalised inverse depth at level 0;
            level ``l`` uses ``smoothness / 2^l``.
        edge_gamma: image-gradient sensitivity of the smoothness weights ``exp(-gamma |dI|)``.
        levels: pyramid levels (``None``: halve while the shorter side stays >= ``min_size``).
        min_size: shorter side of the coarsest level when ``levels`` is None.
        iters: Adam iterations per level (a sequence is indexed by level, 0 = finest; a single int is used
            for every level but the finest when ``finest_iters`` is set).
        finest_iters: Adam iterations at level 0 (the most expensive level) when ``iters`` is an int.
        lr: Adam step size in pixels of image motion of the level (converted to ``theta`` units with the
            largest parallax of the depth range), so one step moves a match by about ``lr`` pixels.
        init: ``"sweep"`` (plane sweep at the coarsest level), ``"random"`` or ``"constant"`` (mid-range).
        sweep_planes: number of inverse-depth planes of the sweep; ``None`` = two planes per pixel of the
            largest image motion over the depth range at the sweep level (clamped to 16..256).
        sweep_max_pixels: when ``levels`` is None, the pyramid stops at the finest level with at most this
            many pixels (but not finer than ``min_size`` allows), so the sweep, which sees fine structures
            only at fine levels, runs at the finest affordable level; ``None`` = always down to ``min_size``.
        sweep_fill: sweep winners whose cost exceeds ``sweep_fill`` x the median winning cost are treated as
            occluded/unmatched and replaced by the farthest reliable neighbour (:func:`fill_background`);
            ``None`` keeps them.
        sgm_p1, sgm_p2: semi-global aggregation of the sweep's cost volume
            (:func:`gdvision.depth.aggregate.sgm_aggregate`): penalty of a one-plane step and of a larger jump,
            in photometric-cost units; ``sgm_p1=None`` = plain winner-take-all.
        final_fill: after the last level, pixels that are occluded or out of frame in every source at their
            depth (:func:`occluded_mask`), or that some depth of the range puts out of every source's frame
            (:func:`fully_visible_mask`; the border band) and whose cost exceeds ``max(final_fill x median
            cost, final_fill_floor)``, take the farther of the nearest reliable inverse depths to their left and right
            (:func:`fill_rows_background`); ``None`` = no final fill.
        final_fill_floor: absolute photometric cost below which no pixel counts as badly matched (a clean
            image pair can have a tiny median cost; 0.05 is roughly SSIM 0.9).
        confidence_scale: photometric cost at which the confidence is ``1/e``.
        tol: relative loss change below which a level stops early (for ``patience`` iterations).
    """

    min_depth: float | None = None
    max_depth: float | None = None
    alpha: float = 0.85
    ssim_window: int = 7
    ssim_sigma: float = 1.5
    smoothness: float = 1.0
    edge_gamma: float = 10.0
    levels: int | None = None
    min_size: int = 200
    iters: int | Sequence[int] = 100
    finest_iters: int | None = 30
    lr: float = 0.1
    init: str = "sweep"
    sweep_planes: int | None = None
    sweep_max_pixels: int | None = 400_000
    sweep_fill: float | None = 2.0
    sgm_p1: float | None = 0.03
    sgm_p2: float = 0.3
    final_fill: float | None = 3.0
    final_fill_floor: float = 0.05
    confidence_scale: float = 0.1
    tol: float = 1e-5
    patience: int = 10

    def validate(self) -> None:
        """Raise UsageError for absurd settings."""
        for name in ("alpha",):
            v = getattr(self, name)
            if not (0.0 <= v <= 1.0):
                raise UsageError(f"{name} must be in [0, 1], got {v}")
        for name in ("smoothness", "edge_gamma"):
            v = getattr(self, name)
            if not (v >= 0 and math.isfinite(v)):
                raise UsageError(f"{name} must be finite and >= 0, got {v}")
        for name in ("lr", "confidence_scale", "ssim_sigma"):
            v = getattr(self, name)
            if not (v > 0 and math.isfinite(v)):
                raise UsageError(f"{name} must be finite and > 0, got {v}")
        if self.ssim_window < 1 or self.ssim_window % 2 == 0:
            raise UsageError(f"ssim_window must be odd and >= 1, got {self.ssim_window}")
        if self.init not in ("sweep", "random", "constant"):
            raise UsageError(f"init must be sweep, random or constant, got '{self.init}'")
        if self.sweep_planes is not None and self.sweep_planes < 2:
            raise UsageError(f"sweep_planes must be >= 2, got {self.sweep_planes}")
        for name in ("sweep_fill", "final_fill", "sgm_p1", "final_fill_floor"):
            v = getattr(self, name)
            if v is not None and not (v >= 0 and math.isfinite(v)):
                raise UsageError(f"{name} must be finite and >= 0, got {v}")
        if not (self.sgm_p2 >= 0 and math.isfinite(self.sgm_p2)):
            raise UsageError(f"sgm_p2 must be finite and >= 0, got {self.sgm_p2}")
        if self.sweep_max_pixels is not None and self.sweep_max_pixels < 1:
            raise UsageError(f"sweep_max_pixels must be >= 1, got {self.sweep_max_pixels}")
        if self.levels is not None and not (1 <= self.levels <= 10):
            raise UsageError(f"levels must be in 1..10, got {self.levels}")
        iters = [self.iters] if isinstance(self.iters, int) else list(self.iters)
        if self.finest_iters is not None:
            iters.append(self.finest_iters)
        if any(i < 0 for i in iters):
            raise UsageError(f"iters must be >= 0, got {self.iters}")
        for name in ("min_depth", "max_depth"):
            v = getattr(self, name)
            if v is not None and not (v > 0 and math.isfinite(v)):
                raise UsageError(f"{name} must be finite and > 0, got {v}")
        if self.min_depth is not None and self.max_depth is not None and self.min_depth >= self.max_depth:
            raise UsageError(f"min_depth ({self.min_depth}) must be smaller than max_depth ({self.max_depth})")


@dataclass
class DepthResult:
    """What :func:`estimate_depth` returns (tensors on the CPU).

    Attributes:
        depth: (H, W) float32, NaN where unknown.
        inv_depth: (H, W) float32 inverse depth (0 where unknown).
        confidence: (H, W) float32 in [0, 1].
        cost: (H, W) float32 final photometric cost (NaN where no view sees the pixel).
        min_depth, max_depth: the bounds used.
        levels: per-level iterations and final loss, coarsest first.
        seconds: wall time of the solve.
    """

    depth: torch.Tensor
    inv_depth: torch.Tensor
    confidence: torch.Tensor
    cost: torch.Tensor
    min_depth: float
    max_depth: float
    levels: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def camera_center(world_to_cam: torch.Tensor) -> torch.Tensor:
    """World position (3,) of a camera's centre: ``-R^T t``."""
    T = world_to_cam.to(torch.float64)
    return -T[:3, :3].T @ T[:3, 3]


def auto_depth_range(ref: View, sources: Sequence[View]) -> tuple[float, float]:
    """Depth bounds from the camera geometry alone (no scene points).

    With ``f`` the reference focal length, ``W`` its width and ``B`` the baselines to the sources:
    ``min_depth = f * max(B) / (W / 3)`` (at most a third of the image width of parallax) and
    ``max_depth = f * min(B) / 0.25`` (a quarter pixel of parallax), so the range spans everything the
    views can triangulate. Give explicit bounds when the scene extent is known: a tight range helps.

    Example:
        >>> import torch
        >>> K = torch.tensor([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]]); T = torch.eye(4); T[0, 3] = -1.0
        >>> auto_depth_range(View(torch.rand(1, 1, 80, 100), K, torch.eye(4)), [View(torch.rand(1, 1, 80, 100), K, T)])
        (3.0, 400.0)
    """
    c0 = camera_center(ref.world_to_cam)
    baselines = [float((camera_center(s.world_to_cam) - c0).norm()) for s in sources]
    f = float(ref.K[0, 0] + ref.K[1, 1]) / 2.0
    w = ref.image.shape[-1]
    return f * max(baselines) / (w / 3.0), f * min(baselines) / 0.25


def rectified_pair(ref: View, src: View, tol: float = 1e-6) -> tuple[float, float, float] | None:
    """``(f, baseline, doffs)`` when ``src`` is ``ref``'s rectified partner, else None.

    Rectified means: no relative rotation, a translation along the reference x axis only, equal focal
    lengths and equal ``cy``. Then the reference pixel ``(x, y)`` at depth ``Z`` matches the source pixel
    ``(x - d, y)`` with disparity ``d = f * baseline / Z - doffs`` and ``doffs = cx_src - cx_ref``
    (``baseline`` > 0 when the source camera sits to the right, as in a left-right pair).
    """
    rel = src.world_to_cam.to(torch.float64) @ torch.linalg.inv(ref.world_to_cam.to(torch.float64))
    R, t = rel[:3, :3], rel[:3, 3]
    Kr, Ks = ref.K.to(torch.float64), src.K.to(torch.float64)
    base = float(-t[0])
    if float((R - torch.eye(3, dtype=R.dtype)).abs().max()) > tol or abs(base) < 1e-12:
        return None
    if float(t[1:].abs().max()) > tol * abs(base):
        return None
    f = float(Kr[0, 0])
    if max(abs(float(Ks[0, 0]) - f), abs(float(Kr[1, 1]) - f), abs(float(Ks[1, 1]) - f)) > 1e-6 * f:
        return None
    if abs(float(Ks[1, 2] - Kr[1, 2])) > 1e-6 * f or abs(float(Kr[0, 1])) > 1e-9 or abs(float(Ks[0, 1])) > 1e-9:
        return None
    return f, base, float(Ks[0, 2] - Kr[0, 2])


def _check_views(ref: View, sources: Sequence[View]) -> None:
    if not sources:
        raise UsageError("depth needs at least one source view besides the reference")
    c0 = camera_center(ref.world_to_cam)
    for v in [ref, *sources]:
        if v.image.dim() != 4 or v.image.shape[0] != 1:
            raise InputError(f"view '{v.name}': expected a (1, C, H, W) image, got {tuple(v.image.shape)}")
        if v.image.shape[1] != ref.image.shape[1]:
            raise InputError(
                f"view '{v.name}' has {v.image.shape[1]} channels but the reference has {ref.image.shape[1]}"
            )
        for what, m in (("K", v.K), ("world_to_cam", v.world_to_cam)):
            if not bool(torch.isfinite(m).all()):
                raise InputError(f"view '{v.name}': field '{what}' contains non-finite numbers")
    scale = max(float((camera_center(s.world_to_cam) - c0).norm()) for s in sources) + 1e-12
    for s in sources:
        if float((camera_center(s.world_to_cam) - c0).norm()) <= 1e-9 * max(scale, 1.0):
            raise InputError(
                f"view '{s.name}' has the same camera centre as the reference '{ref.name}' "
                "(zero baseline): depth is unobservable"
            )


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
class _Level:
    ref: torch.Tensor  # (1,C,H,W)
    ref_mask: torch.Tensor  # (1,1,H,W)
    srcs: list[torch.Tensor]
    src_masks: list[torch.Tensor | None]
    A: list[torch.Tensor]  # (1,3,3)
    b: list[torch.Tensor]  # (1,3)
    stats: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # SSIM statistics of ref


class _DepthProblem:
    """Coarse-to-fine problem for :func:`gdvision.optim.coarse_to_fine`: params = theta (1, 1, H_l, W_l)."""

    def __init__(self, levels: list[_Level], w_min: float, w_max: float, cfg: DepthConfig) -> None:
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
        for src, smask, A, b in zip(L.srcs, L.src_masks, L.A, L.b, strict=True):
            pts, front = project_points(A.expand(w.shape[0], 3, 3), b.expand(w.shape[0], 3), w)
            warped, inside = sample_image(src.expand(w.shape[0], -1, -1, -1), pts)
            m = inside * front.to(inside.dtype)
            if smask is not None:
                sm, _ = sample_image(smask.expand(w.shape[0], -1, -1, -1), pts)
                m = m * (sm > 0.999).to(m.dtype)
            if L.stats is None:
                L.stats = ssim_reference_stats(L.ref, self.cfg.ssim_window, self.cfg.ssim_sigma)
            c = photometric_cost(L.stats, warped, self.cfg.alpha, self.cfg.ssim_window, self.cfg.ssim_sigma)
            c = torch.where(m > 0, c, torch.full_like(c, _BIG))
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


def upsample_to(x: torch.Tensor, h: int, w: int, factor: int = 2) -> torch.Tensor:
    """Bilinear upsampling of a (B, C, h', w') map from a coarser pyramid level to (B, C, h, w).

    Uses the pyramid's pixel relation: fine pixel ``(x, y)`` sits at coarse ``(x / factor, y / factor)``;
    beyond the last coarse pixel centre the border value is repeated.
    """
    grid = pixel_grid(h, w, device=x.device, dtype=x.dtype) / factor
    out, _ = sample_image(x, grid.unsqueeze(0).expand(x.shape[0], -1, -1, -1))
    return out


def neutral_unseen(vol: torch.Tensor) -> torch.Tensor:
    """Cost volume (P, H, W) with the hypotheses no view sees (cost ``_BIG``) set to a neutral value.

    The neutral value is the pixel's mean cost over its seen hypotheses (the median seen cost of the whole
    volume where a pixel sees none), so aggregation neither prefers nor avoids the out-of-frame hypotheses
    and the neighbours decide there.
    """
    seen = vol < _BIG
    n = seen.sum(0, keepdim=True)
    mean = torch.where(seen, vol, torch.zeros_like(vol)).sum(0, keepdim=True) / n.clamp_min(1)
    fallback = vol[seen].median() if bool(seen.any()) else torch.tensor(1.0, dtype=vol.dtype)
    mean = torch.where(n > 0, mean, fallback.to(vol.dtype))
    return torch.where(seen, vol, mean.expand_as(vol))


def plane_sweep(
    problem: _DepthProblem,
    level: int,
    planes: int,
    fill_factor: float | None = None,
    sgm_p1: float | None = None,
    sgm_p2: float = 0.3,
) -> torch.Tensor:
    """Winner-take-all inverse depth (1, 1, H, W) over ``planes`` fronto-parallel planes at ``level``.

    The planes are uniform in inverse depth over ``[w_min, w_max]``; the winner is refined by fitting a
    parabola through its cost and its two neighbours', and the map is median-filtered (3x3). Pixels that
    no view sees at any plane get the median inverse depth of the seen ones; with ``fill_factor``, winners
    costing more than ``fill_factor`` x the median winning cost are filled from the background
    (:func:`fill_background`).
    """
    h, w = problem.lv[level].ref.shape[-2:]
    ws = torch.linspace(problem.w_min, problem.w_max, planes, dtype=problem.lv[level].ref.dtype)
    costs = []
    with torch.no_grad():
        for chunk in torch.split(ws, 16):
            wmap = chunk.view(-1, 1, 1, 1).expand(-1, 1, h, w).to(problem.lv[level].ref.device)
            c, _ = problem.cost(level, wmap)
            costs.append(c[:, 0])
        vol = torch.cat(costs, 0)  # (P,H,W)
        agg = vol
        if sgm_p1 is not None:
            agg = sgm_aggregate(neutral_unseen(vol), problem.lv[level].ref, sgm_p1, sgm_p2, problem.cfg.edge_gamma)
        idx = agg.argmin(0)
        best = vol.gather(0, idx[None])[0]
        lo = agg.gather(0, (idx - 1).clamp(min=0)[None])[0]
        hi = agg.gather(0, (idx + 1).clamp(max=planes - 1)[None])[0]
        mid = agg.gather(0, idx[None])[0]
        denom = lo - 2 * mid + hi
        inner = (idx > 0) & (idx < planes - 1) & (denom > 1e-9) & (lo < _BIG) & (hi < _BIG)
        off = torch.where(inner, 0.5 * (lo - hi) / denom.clamp_min(1e-9), torch.zeros_like(best)).clamp(-0.5, 0.5)
        step = (problem.w_max - problem.w_min) / (planes - 1)
        wmap = problem.w_min + (idx.to(best.dtype) + off) * step
        seen = best < _BIG
        if bool(seen.any()):
            wmap = torch.where(seen, wmap, wmap[seen].median())
            if fill_factor is not None:
                bad = best > fill_factor * best[seen].median()
                wmap = fill_background(wmap[None, None], ~bad[None, None])[0, 0]
        wmap = median3x3(wmap[None, None])
    return wmap


def fill_background(w: torch.Tensor, good: torch.Tensor, max_steps: int = 200) -> torch.Tensor:
    """Replace the inverse depths (B, 1, H, W) where ``good`` is False by the smallest good inverse depth
    (the farthest surface) in a growing 3x3 neighbourhood: occluded pixels usually belong to the background.
    """
    big = torch.finfo(w.dtype).max
    cur = torch.where(good, w, torch.full_like(w, big))
    known = good.clone()
    for _ in range(max_steps):
        if bool(known.all()):
            break
        nb = -F.max_pool2d(-cur, 3, stride=1, padding=1)
        cur = torch.where(known, cur, nb)
        known = cur < big
    return torch.where(known, cur, w)


def fill_rows_background(w: torch.Tensor, good: torch.Tensor) -> torch.Tensor:
    """Fill the inverse depths (B, 1, H, W) where ``good`` is False along image rows, Middlebury style.

    Each bad pixel takes the smaller (farther) of the nearest good inverse depths to its left and to its
    right on the same row (only the one that exists at a row end); rows with no good pixel are kept.
    Occluded pixels and the band whose matches leave the source frame usually belong to the background.

    Example:
        >>> import torch
        >>> w = torch.tensor([[[[0.5, 9.0, 9.0, 0.25, 0.75]]]]); good = w < 1
        >>> fill_rows_background(w, good)[0, 0, 0].tolist()
        [0.5, 0.25, 0.25, 0.25, 0.75]
    """
    n = w.shape[-1]
    pos = torch.arange(n, device=w.device).expand_as(w)
    left = torch.where(good, pos, torch.full_like(pos, -1)).cummax(-1).values
    right = torch.where(good, pos, torch.full_like(pos, n)).flip(-1).cummin(-1).values.flip(-1)
    inf = torch.full_like(w, float("inf"))
    lv = torch.where(left >= 0, w.gather(-1, left.clamp(min=0)), inf)
    rv = torch.where(right < n, w.gather(-1, right.clamp(max=n - 1)), inf)
    fill = torch.minimum(lv, rv)
    return torch.where(good | torch.isinf(fill), w, fill)


def occluded_mask(problem: _DepthProblem, level: int, w: torch.Tensor, margin_px: float = 1.0) -> torch.Tensor:
    """(B, 1, H, W) bool: reference pixels that every source view misses at inverse depth ``w`` (B, 1, H, W).

    A view misses a pixel when its sample falls outside the source frame or behind the camera, or when
    the pixel is **occluded** there: a z-buffer splats every reference pixel's inverse depth into the
    source's pixel grid (nearest pixel, the largest inverse depth wins) and a pixel is occluded when the
    buffer at its own sample holds an inverse depth larger than its own by more than the change that moves
    a match by ``margin_px`` pixels (from :meth:`_DepthProblem.parallax`).
    """
    L = problem.lv[level]
    bsz = w.shape[0]
    tol = margin_px * (problem.w_max - problem.w_min) / problem.parallax(level)
    seen = torch.zeros_like(w, dtype=torch.bool)
    for src, A, b in zip(L.srcs, L.A, L.b, strict=True):
        hs, ws = src.shape[-2:]
        pts, front = project_points(A.expand(bsz, 3, 3), b.expand(bsz, 3), w)
        xi, yi = pts[..., 0].round(), pts[..., 1].round()
        inside = (xi >= 0) & (xi <= ws - 1) & (yi >= 0) & (yi <= hs - 1) & front[:, 0]
        flat = (yi.clamp(0, hs - 1) * ws + xi.clamp(0, ws - 1)).long().reshape(bsz, -1)
        vals = torch.where(inside, w[:, 0], torch.full_like(w[:, 0], -1.0)).reshape(bsz, -1)
        buf = torch.full((bsz, hs * ws), -1.0, dtype=w.dtype, device=w.device)
        buf = buf.scatter_reduce(1, flat, vals, reduce="amax")
        front_most = buf.gather(1, flat).reshape_as(w[:, 0]) <= w[:, 0] + tol
        seen |= (inside & front_most).unsqueeze(1)
    return ~seen


def median3x3(x: torch.Tensor) -> torch.Tensor:
    """3x3 median filter of (B, C, H, W) with replicated borders."""
    b, c, h, w = x.shape
    p = F.pad(x.reshape(b * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
    patches = F.unfold(p, 3)  # (BC, 9, HW)
    return patches.median(1).values.reshape(b, c, h, w)


def _build_levels(ref: View, sources: Sequence[View], n_levels: int, device: torch.device) -> list[_Level]:
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
            _Level(ref_pyr[lvl], ref_masks[lvl], [p[lvl] for p in src_pyrs], [m[lvl] for m in src_mask_pyrs], As, bs)
        )
    return out


def fully_visible_mask(problem: _DepthProblem, level: int = 0) -> torch.Tensor:
    """(1, 1, H, W) bool: reference pixels that some source sees at **every** depth of the range.

    The pixel's epipolar segment (its images at ``w_min`` and ``w_max``) is straight and the frame convex,
    so the whole segment lies inside the source's pixel-centre box iff both ends do (in front of the
    camera). Pixels outside this mask (e.g. the left band of a left-right pair) can be matched at a wrong
    depth simply because the right one leaves the frame.
    """
    L = problem.lv[level]
    h, w = L.ref.shape[-2:]
    full = torch.zeros(1, 1, h, w, dtype=torch.bool, device=L.ref.device)
    for src, A, b in zip(L.srcs, L.A, L.b, strict=True):
        hs, ws = src.shape[-2:]
        ok = torch.ones_like(full)
        for wv in (problem.w_min, problem.w_max):
            pts, front = project_points(A, b, torch.full((1, 1, h, w), wv, dtype=torch.float64, device=full.device))
            x, y = pts[..., 0], pts[..., 1]
            ok &= front & ((x >= 0) & (x <= ws - 1) & (y >= 0) & (y <= hs - 1)).unsqueeze(1)
        full |= ok
    return full & (L.ref_mask > 0)


def visible_mask(problem: _DepthProblem, level: int = 0) -> torch.Tensor:
    """(1, 1, H, W) bool: reference pixels that some source view sees at some depth in the range.

    As the inverse depth runs over ``[w_min, w_max]`` a reference pixel's image in a source view runs
    along a segment of its epipolar line; the pixel is visible when that segment (clipped to the part in
    front of the camera) meets the source's image area ``[-0.5, w - 0.5] x [-0.5, h - 0.5]`` (Liang-Barsky).
    """
    L = problem.lv[level]
    h, w = L.ref.shape[-2:]
    seen = torch.zeros(1, 1, h, w, dtype=torch.bool, device=L.ref.device)
    grid = pixel_grid(h, w, device=L.ref.device, dtype=torch.float64)
    ph = torch.cat([grid, torch.ones_like(grid[..., :1])], dim=-1)
    for src, A, b in zip(L.srcs, L.A, L.b, strict=True):
        hs, ws = src.shape[-2:]
        q0 = ph @ A[0].to(torch.float64).T + problem.w_min * b[0].to(torch.float64)  # (H,W,3) at w_min
        q1 = ph @ A[0].to(torch.float64).T + problem.w_max * b[0].to(torch.float64)
        # keep the part with z > eps: z is linear in w
        eps = 1e-9
        z0, z1 = q0[..., 2], q1[..., 2]
        ok = (z0 > eps) | (z1 > eps)
        s_cut = ((eps - z0) / (z1 - z0 + 1e-30)).clamp(0, 1)
        qa = torch.where((z0 > eps).unsqueeze(-1), q0, q0 + s_cut.unsqueeze(-1) * (q1 - q0))
        qb = torch.where((z1 > eps).unsqueeze(-1), q1, q0 + s_cut.unsqueeze(-1) * (q1 - q0))
        pa = qa[..., :2] / qa[..., 2:].clamp_min(eps)
        pb = qb[..., :2] / qb[..., 2:].clamp_min(eps)
        d = pb - pa
        t0 = torch.zeros_like(d[..., 0])
        t1 = torch.ones_like(d[..., 0])
        for axis, hi in ((0, ws - 0.5), (1, hs - 0.5)):  # the image area spans [-0.5, size - 0.5]
            for pp, qq in ((-d[..., axis], pa[..., axis] + 0.5), (d[..., axis], hi - pa[..., axis])):
                par = pp.abs() < 1e-12
                ok = ok & ~(par & (qq < 0))
                r = qq / torch.where(par, torch.ones_like(pp), pp)
                t0 = torch.where(~par & (pp < 0), torch.maximum(t0, r), t0)
                t1 = torch.where(~par & (pp > 0), torch.minimum(t1, r), t1)
        seen |= (ok & (t0 <= t1 + 1e-9))[None, None]
    return seen & (L.ref_mask > 0)


def estimate_depth(
    ref: View,
    sources: Sequence[View],
    config: DepthConfig | None = None,
    progress: Callable[[Progress], None] | None = None,
    device: str | torch.device = "cpu",
) -> DepthResult:
    """Dense depth of ``ref`` from calibrated ``sources`` (see the module docstring for the model).

    Args:
        ref: the reference view; its pixels get a depth.
        sources: N >= 1 source views (any sizes; same channel count as the reference).
        config: :class:`DepthConfig` (defaults if None).
        progress: called after every Adam iteration with a :class:`~gdvision.optim.Progress`.
        device: where to compute.

    Returns:
        :class:`DepthResult` (CPU tensors): depth (H, W) NaN where unknown, confidence, cost.

    Raises:
        UsageError: bad settings or no source view. InputError: non-finite cameras, zero baseline.
        SolverError: the optimisation diverged.

    Example:
        >>> import torch
        >>> K = torch.tensor([[60.0, 0, 31.5], [0, 60, 23.5], [0, 0, 1]]); T = torch.eye(4); T[0, 3] = -0.1
        >>> img = torch.rand(1, 1, 48, 64)
        >>> res = estimate_depth(View(img, K, torch.eye(4)), [View(img.roll(-3, -1), K, T)],
        ...                      DepthConfig(min_depth=1.0, max_depth=10.0, iters=5))
        >>> res.depth.shape
        torch.Size([48, 64])
    """
    cfg = config or DepthConfig()
    cfg.validate()
    _check_views(ref, sources)
    dev = torch.device(device)
    t0 = time.perf_counter()
    lo, hi = auto_depth_range(ref, sources)
    min_d = cfg.min_depth if cfg.min_depth is not None else lo
    max_d = cfg.max_depth if cfg.max_depth is not None else hi
    if cfg.min_depth is not None and cfg.max_depth is None and max_d <= min_d:
        max_d = min_d * 100.0
    if cfg.max_depth is not None and cfg.min_depth is None and min_d >= max_d:
        min_d = max_d / 100.0
    if not (0 < min_d < max_d):
        raise UsageError(f"invalid depth range [{min_d}, {max_d}]")
    h, w = ref.image.shape[-2:]
    if cfg.levels is not None:
        n_levels = cfg.levels
    else:
        n_levels = num_levels(h, w, cfg.min_size)
        if cfg.init == "sweep" and cfg.sweep_max_pixels is not None:
            while n_levels > 1 and math.ceil(h / 2 ** (n_levels - 2)) * math.ceil(w / 2 ** (n_levels - 2)) <= (
                cfg.sweep_max_pixels
            ):
                n_levels -= 1
    levels = _build_levels(ref, sources, n_levels, dev)
    problem = _DepthProblem(levels, 1.0 / max_d, 1.0 / min_d, cfg)

    top = n_levels - 1
    th, tw = levels[top].ref.shape[-2:]
    if cfg.init == "sweep":
        planes = cfg.sweep_planes
        if planes is None:
            planes = int(min(max(math.ceil(2.0 * problem.parallax(top)) + 1, 16), 256))
        theta0 = problem.theta_of(plane_sweep(problem, top, planes, cfg.sweep_fill, cfg.sgm_p1, cfg.sgm_p2))
    elif cfg.init == "random":
        theta0 = torch.randn(1, 1, th, tw, device=dev) * 1.0
    else:
        theta0 = torch.zeros(1, 1, th, tw, device=dev)

    if isinstance(cfg.iters, int):
        iters = [cfg.iters] * n_levels
        if cfg.finest_iters is not None:
            iters[0] = cfg.finest_iters
    else:
        iters = list(cfg.iters)
    if len(iters) < n_levels:
        iters = iters + [iters[-1]] * (n_levels - len(iters))
    configs = [
        StepConfig(
            method="adam",
            lr=cfg.lr * 4.0 / problem.parallax(lvl),
            iters=iters[lvl],
            tol=cfg.tol,
            patience=cfg.patience,
        )
        for lvl in range(n_levels)
    ]
    res = coarse_to_fine(problem, theta0, configs, progress)
    theta = res.params
    level_info = [{"level": r.level, "iterations": r.iterations, "loss": r.loss[0]} for r in res.levels]

    with torch.no_grad():
        wfin = problem.inv_depth(theta)
        cost, seen_now = problem.cost(0, wfin)
        if cfg.final_fill is not None:
            good = ~occluded_mask(problem, 0, wfin) & (seen_now > 0)
            if bool(good.any()):
                thr = max(cfg.final_fill * float(cost[good].median()), cfg.final_fill_floor)
                good &= (cost <= thr) | fully_visible_mask(problem, 0)
            wfin = fill_rows_background(wfin, good)
            cost, seen_now = problem.cost(0, wfin)
        known = visible_mask(problem, 0)
        depth = torch.where(known, 1.0 / wfin, torch.full_like(wfin, float("nan")))
        conf = torch.where(seen_now > 0, torch.exp(-cost / cfg.confidence_scale), torch.zeros_like(cost))
        cost = torch.where(seen_now > 0, cost, torch.full_like(cost, float("nan")))
        inv = torch.where(known, wfin, torch.zeros_like(wfin))
    return DepthResult(
        depth=depth[0, 0].float().cpu(),
        inv_depth=inv[0, 0].float().cpu(),
        confidence=conf[0, 0].float().cpu(),
        cost=cost[0, 0].float().cpu(),
        min_depth=float(min_d),
        max_depth=float(max_d),
        levels=level_info,
        seconds=time.perf_counter() - t0,
    )
