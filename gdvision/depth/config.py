"""Settings, inputs and result of the depth solver: :class:`DepthConfig`, :class:`View`, :class:`DepthResult`.

Importing this module does not import torch (the CLI validates its options through :meth:`DepthConfig.validate`
before paying for torch). Errors name the config fields (``min_depth``, ``sweep_planes``...); the CLI maps
them to its flags.

Example:
    >>> DepthConfig(min_depth=2.0, max_depth=8.0).validate()
    >>> DepthConfig(alpha=1.5).validate()
    Traceback (most recent call last):
    ...
    gdvision.errors.UsageError: alpha must be <= 1, got 1.5
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gdvision._checks import check_choice, check_number
from gdvision.errors import UsageError

if TYPE_CHECKING:
    import torch

INITS = ("sweep", "random", "constant")
QUALITIES = ("fast", "default", "best")
MAX_ITERS = 100_000  # per level
MAX_PLANES = 4096
# Depth bounds beyond these are not a scene but a typo (their inverse leaves float32's comfortable range).
DEPTH_LIMITS = (1e-12, 1e15)


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
    """Settings of :func:`gdvision.depth.estimate_depth` (defaults tuned on the Middlebury Motorcycle pair).

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
        finest_iters: Adam iterations at level 0 (the most expensive level) when ``iters`` is an int; after the
            sweep the only Adam iterations (0 by default: measured not to pay, see ``bench/README.md``); with
            ``init`` random/constant, 0 or None means ``iters``.
        lr: Adam step size in pixels of image motion of the level (converted to ``theta`` units with the
            largest parallax of the depth range), so one step moves a match by about ``lr`` pixels.
        init: ``"sweep"`` (the coarse-to-fine sweep of :mod:`gdvision.depth.sweep`, then ``finest_iters`` Adam
            steps at full size), ``"random"`` or ``"constant"`` (mid-range; then Adam on every level).
        sweep_planes: number of inverse-depth planes of the full-range sweep at the coarsest level; ``None`` =
            two planes per pixel of the largest image motion over the depth range there (clamped to 16..256).
        sweep_max_pixels: with ``init="sweep"`` and ``levels`` None, the coarsest level (where the full-range
            sweep runs) is the finest one with at most this many pixels; ``None`` = down to ``min_size``.
        band_radius, band_step: at every finer level each pixel tests ``2 band_radius + 1`` inverse depths
            ``band_step`` pixels of image motion apart around its start from the coarser level.
        band_max_pixels: the band sweeps run in strips of at most this many pixels (bounds the memory).
        cost_radius: the sweeps' matching cost (:mod:`gdvision.depth.matching_cost`) uses a
            ``(2 cost_radius + 1)`` square window on grey images.
        sweep_fill: sweep winners whose cost exceeds ``sweep_fill`` x the median winning cost are treated as
            occluded/unmatched and replaced by the farthest reliable neighbour (:func:`fill_background`);
            ``None`` keeps them.
        quality: the preset these settings came from (:meth:`for_quality`; informational).
        sgm_p1, sgm_p2: semi-global aggregation of the sweep's cost volume
            (:func:`gdvision.depth.aggregate.sgm_aggregate`): penalty of a one-plane step and of a larger jump,
            in photometric-cost units; ``sgm_p1=None`` = plain winner-take-all.
        final_fill: after the last level, a pixel is matched when its sweep cost is at most ``max(final_fill x
            median cost, final_fill_floor)``; pixels hidden or out of frame in every source at their depth
            (:func:`occluded_mask`), and badly matched pixels that the fill value puts out of every source's
            frame, take the farther of the nearest reliable inverse depths both ways along their epipolar line
            (:func:`gdvision.depth.fill.fill_occluded`; the row rule on a rectified pair); ``None`` = no fill.
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
    finest_iters: int | None = 0
    lr: float = 0.1
    init: str = "sweep"
    sweep_planes: int | None = None
    sweep_max_pixels: int | None = 100_000
    band_radius: int = 6
    band_step: float = 0.5
    band_max_pixels: int = 1_000_000
    cost_radius: int = 2
    sweep_fill: float | None = 2.0
    sgm_p1: float | None = 0.03
    sgm_p2: float = 0.3
    final_fill: float | None = 3.0
    final_fill_floor: float = 0.05
    confidence_scale: float = 0.1
    tol: float = 1e-5
    patience: int = 10
    quality: str = "default"

    @classmethod
    def for_quality(cls, quality: str = "default", **overrides: object) -> DepthConfig:
        """The settings of a speed/quality preset (``fast``, ``default``, ``best``), then ``overrides``.

        ``default`` is the class defaults; ``fast`` sweeps a coarser band with fewer hypotheses; ``best`` tests
        a wider, finer band and adds Adam refinement at full size (see ``bench/README.md`` for the measured curve).

        Example:
            >>> DepthConfig.for_quality("fast", min_depth=1.0).band_radius
            3
        """
        check_choice(quality, "quality", QUALITIES)
        return cls(**{**QUALITY_PRESETS[quality], **overrides, "quality": quality})  # type: ignore[arg-type]

    def validate(self) -> None:
        """Raise UsageError, naming the field, for a setting that cannot work."""
        check_number(self.alpha, "alpha", 0.0, 1.0)
        for name in ("smoothness", "edge_gamma", "sgm_p2", "tol", "sweep_fill", "final_fill", "sgm_p1"):
            check_number(getattr(self, name), name, low=0.0)
        check_number(self.final_fill_floor, "final_fill_floor", low=0.0)
        for name in ("lr", "confidence_scale", "ssim_sigma"):
            check_number(getattr(self, name), name, low=0.0, low_open=True)
        check_number(self.ssim_window, "ssim_window", low=1, integer=True)
        if self.ssim_window % 2 == 0:
            raise UsageError(f"ssim_window must be odd, got {self.ssim_window}")
        check_choice(self.init, "init", INITS)
        check_number(self.sweep_planes, "sweep_planes", 2, MAX_PLANES, integer=True)
        check_number(self.sweep_max_pixels, "sweep_max_pixels", low=1, integer=True)
        check_number(self.band_radius, "band_radius", 1, 64, integer=True)
        check_number(self.band_step, "band_step", low=0.0, low_open=True)
        check_number(self.band_max_pixels, "band_max_pixels", low=1024, integer=True)
        check_number(self.cost_radius, "cost_radius", 1, 10, integer=True)
        check_choice(self.quality, "quality", QUALITIES)
        check_number(self.levels, "levels", 1, 10, integer=True)
        check_number(self.min_size, "min_size", low=1, integer=True)
        check_number(self.patience, "patience", low=0, integer=True)
        iters = [self.iters] if isinstance(self.iters, int) else list(self.iters)
        if not iters:
            raise UsageError("iters must not be empty")
        for v in iters:
            check_number(v, "iters", 0, MAX_ITERS, integer=True)
        check_number(self.finest_iters, "finest_iters", 0, MAX_ITERS, integer=True)
        lo, hi = DEPTH_LIMITS
        for name in ("min_depth", "max_depth"):
            v = check_number(getattr(self, name), name, low=0.0, low_open=True)
            if v is not None and not (lo <= v <= hi):
                raise UsageError(f"{name} must be between {lo:g} and {hi:g}, got {v}")
        if self.min_depth is not None and self.max_depth is not None and self.min_depth >= self.max_depth:
            raise UsageError(f"min_depth ({self.min_depth}) must be smaller than the maximum depth ({self.max_depth})")


QUALITY_PRESETS: dict[str, dict[str, object]] = {
    "fast": {"band_radius": 3, "band_step": 1.0, "sweep_max_pixels": 50_000},
    "default": {},
    "best": {"band_radius": 8, "finest_iters": 20},
}


@dataclass
class DepthResult:
    """What :func:`gdvision.depth.estimate_depth` returns (tensors on the CPU).

    Attributes:
        depth: (H, W) float32, NaN where unknown.
        inv_depth: (H, W) float32 inverse depth (0 where unknown).
        confidence: (H, W) float32 in [0, 1].
        cost: (H, W) float32 final photometric cost (NaN where no view sees the pixel).
        min_depth, max_depth: the bounds used.
        levels: per-level iterations and final loss, coarsest first.
        seconds: wall time of the solve.
        stages: wall seconds per stage (``pyramid``, ``sweep``, ``aggregation``, ``band``, ``refinement``,
            ``fill``).
    """

    depth: torch.Tensor
    inv_depth: torch.Tensor
    confidence: torch.Tensor
    cost: torch.Tensor
    min_depth: float
    max_depth: float
    levels: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)


__all__ = ["DEPTH_LIMITS", "INITS", "QUALITIES", "QUALITY_PRESETS", "DepthConfig", "DepthResult", "View"]
