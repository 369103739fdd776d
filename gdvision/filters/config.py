"""The filters' choices (borders, operators, norms) and :class:`EdgeConfig`; imports no torch.

Kept free of torch so that a command line can check its option values before paying for the torch import.

Example:
    >>> EdgeConfig(op="canny", ksize=5).validate()
    >>> EdgeConfig(ksize=4).validate()
    Traceback (most recent call last):
    ...
    gdvision.errors.UsageError: ksize for sobel must be one of 1, 3, 5, 7, got 4
    >>> EdgeConfig(border="wrap").validate(names={"border": "--border"})
    Traceback (most recent call last):
    ...
    gdvision.errors.UsageError: unknown --border 'wrap': use one of reflect101, replicate, constant, valid
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gdvision._checks import check_choice, check_number
from gdvision.errors import UsageError

BORDERS = ("reflect101", "replicate", "constant", "valid")
GRADIENT_OPS = ("sobel", "scharr")
NORMS = ("l1", "l2")
OPS = ("sobel", "scharr", "laplacian", "canny")
WHATS = ("magnitude", "dx", "dy", "orientation")
KSIZES = {"sobel": (1, 3, 5, 7), "scharr": (1, 3, 5, 7), "laplacian": (1, 3, 5, 7), "canny": (3, 5, 7)}


@dataclass
class EdgeConfig:
    """What to compute. ``what`` applies to sobel/scharr; thresholds and ``sigma`` to canny.

    Attributes:
        op: 'sobel', 'scharr', 'laplacian' or 'canny'.
        what: 'magnitude', 'dx', 'dy' or 'orientation' (radians in [0, 2*pi), 0 = +x, pi/2 = +y i.e. down).
        ksize: Sobel aperture 1/3/5/7 (canny 3/5/7), Laplacian 1/3/5/7; ignored by scharr.
        border: 'reflect101', 'replicate', 'constant' or 'valid' (canny always uses replicate).
        norm: magnitude norm 'l2' or 'l1' (canny: L2gradient when 'l2').
        low, high: canny hysteresis thresholds in 8-bit units (OpenCV's), finite and >= 0.
        sigma: canny Gaussian pre-smoothing in pixels, in (0, 50], or None.
    """

    op: str = "sobel"
    what: str = "magnitude"
    ksize: int = 3
    border: str = "reflect101"
    norm: str = "l2"
    low: float = 50.0
    high: float = 150.0
    sigma: float | None = None

    def validate(self, names: Mapping[str, str] | None = None) -> None:
        """UsageError naming the first invalid field; ``names`` maps field names to how the caller shows them
        (a command line passes its flags, e.g. ``{"ksize": "--ksize"}``)."""

        def name(field: str) -> str:
            return (names or {}).get(field, field)

        check_choice(self.op, name("op"), OPS)
        check_choice(self.what, name("what"), WHATS)
        check_choice(self.norm, name("norm"), NORMS)
        check_choice(self.border, name("border"), BORDERS)
        allowed = KSIZES[self.op]
        if isinstance(self.ksize, bool) or self.ksize not in allowed:
            shown = ", ".join(map(str, allowed))
            raise UsageError(f"{name('ksize')} for {self.op} must be one of {shown}, got {self.ksize}")
        if self.op == "canny":
            check_number(self.low, name("low"), low=0.0)
            check_number(self.high, name("high"), low=0.0)
            check_number(self.sigma, name("sigma"), low=0.0, high=50.0, low_open=True)


__all__ = ["BORDERS", "GRADIENT_OPS", "KSIZES", "NORMS", "OPS", "WHATS", "EdgeConfig"]
