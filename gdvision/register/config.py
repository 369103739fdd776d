"""Registration settings and result types (no torch import: the CLI validates options before loading torch).

:class:`RegisterConfig` owns the defaults and the validation of every setting; its errors name the config field
(``iters must be >= 1, got 0``) and the CLI maps field names to its flags.

Example:
    >>> RegisterConfig(model="affine").validate().model
    'affine'
    >>> RegisterConfig(iters=0).validate()
    Traceback (most recent call last):
    ...
    gdvision.errors.UsageError: iters must be >= 1, got 0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gdvision._checks import check_choice, check_number

if TYPE_CHECKING:
    import torch

#: Motion models and their number of parameters (see :mod:`gdvision.register.motion`).
MODELS: dict[str, int] = {"translation": 2, "euclidean": 3, "similarity": 4, "affine": 6, "homography": 8}
#: Photometric losses (see :mod:`gdvision.register.solver`).
LOSSES = ("ncc", "l1", "grad", "ssim", "mi")
LEAST_SQUARES = ("ncc", "l1", "grad")
MIN_LEVEL_SIZE = 8  # smallest side of the coarsest pyramid level, in pixels


@dataclass
class RegisterConfig:
    """Registration settings; the defaults work without tuning on natural images.

    Attributes:
        model: translation | euclidean | similarity | affine | homography.
        loss: ncc | l1 | grad | ssim | mi (see :mod:`gdvision.register.solver`).
        levels: pyramid levels (None: as many as keep the coarsest side >= ``min_size``).
        min_size: smallest side of the coarsest level when ``levels`` is None.
        iters: iteration cap per level.
        lr: initial step scale of the first-order losses in centred units (``ssim``/``mi`` only).
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

    def validate(self) -> RegisterConfig:
        """``self`` if every field is usable; UsageError naming the field otherwise."""
        check_choice(self.model, "model", tuple(MODELS))
        check_choice(self.loss, "loss", LOSSES)
        check_number(self.levels, "levels", low=1, high=12, integer=True)
        check_number(self.min_size, "min_size", low=MIN_LEVEL_SIZE, integer=True)
        check_number(self.iters, "iters", low=1, high=100000, integer=True)
        check_number(self.lr, "lr", low=0.0, high=1.0, low_open=True)
        check_number(self.tol, "tol", low=0.0, high=1.0, high_open=True)
        check_number(self.max_pixels, "max_pixels", low=64, integer=True)
        return self


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


__all__ = ["LOSSES", "MODELS", "RegisterConfig", "RegistrationResult"]
