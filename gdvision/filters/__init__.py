"""Separable filters equal to OpenCV's (Gaussian, Sobel, Scharr, Laplacian), Canny and edge maps: the public API.

Modules: :mod:`~gdvision.filters.config` (choices and :class:`EdgeConfig`, no torch),
:mod:`~gdvision.filters.kernels` (1-D taps), :mod:`~gdvision.filters.blocks` (borders and the CPU block loop),
:mod:`~gdvision.filters.passes` (the 1-D passes in OpenCV's order of additions),
:mod:`~gdvision.filters.separable` (the filters), :mod:`~gdvision.filters.canny_edges`, :mod:`~gdvision.filters.edges`.

The names below are imported on first use, so that ``from gdvision.filters import EdgeConfig`` does not import
torch (a command line checks its options before paying for it).

Example:
    >>> from gdvision.filters import sobel
    >>> import torch
    >>> sobel(torch.arange(8.0).expand(1, 1, 8, 8))[0][0, 0, 3, 3].item()
    8.0
"""

from __future__ import annotations

from gdvision._lazy import lazy_exports

__getattr__, __dir__, _HOMES = lazy_exports(
    __name__,
    {
        "config": ("BORDERS", "GRADIENT_OPS", "NORMS", "OPS", "WHATS", "EdgeConfig"),
        "kernels": ("deriv_kernel1d", "gaussian_kernel1d", "gaussian_taps"),
        "blocks": ("pad",),
        "separable": (
            "central_gradient",
            "derivative",
            "gaussian_blur",
            "gradient",
            "gradient_magnitude",
            "laplacian",
            "magnitude",
            "orientation",
            "scharr",
            "separable_filter",
            "sobel",
        ),
        "canny_edges": ("canny", "canny_candidates", "hysteresis"),
        "edges": ("edge_map", "to_unit_range", "unit_step_response"),
    },
)

__all__ = sorted(_HOMES)
