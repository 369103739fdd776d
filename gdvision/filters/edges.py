"""Edge maps of image batches: the map an :class:`EdgeConfig` asks for, and its scaling to [0, 1] for images.

:func:`edge_map` turns a (B, C, H, W) batch in [0, 1] into the requested map (raw values, image units);
:func:`to_unit_range` maps it to [0, 1] for image output (:func:`unit_step_response` is the scale). Files are
read and written by :mod:`gdvision.tasks.edges`, not here.

Example:
    >>> cfg = EdgeConfig(op="sobel")
    >>> step = torch.zeros(1, 1, 8, 8)
    >>> step[..., 4:] = 1.0
    >>> to_unit_range(edge_map(step, cfg), cfg)[0, 0, 4].tolist()
    [0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0]
"""

from __future__ import annotations

import math

import torch

from gdvision.filters.canny_edges import canny
from gdvision.filters.config import EdgeConfig
from gdvision.filters.kernels import deriv_kernel1d
from gdvision.filters.separable import gradient, gradient_magnitude, laplacian, orientation


def edge_map(x: torch.Tensor, cfg: EdgeConfig) -> torch.Tensor:
    """The edge map of a (B, C, H, W) batch in [0, 1], in image units.

    Returns (B, C, H', W') for sobel/scharr/laplacian (H' = H unless ``border='valid'``) and (B, 1, H, W)
    of 0/1 for canny. Example:
        >>> edge_map(torch.rand(2, 3, 32, 32), EdgeConfig(op="scharr", what="dx")).shape
        torch.Size([2, 3, 32, 32])
    """
    if cfg.op == "canny":
        return canny(x, cfg.low, cfg.high, cfg.ksize, cfg.norm == "l2", cfg.sigma)
    if cfg.op == "laplacian":
        return laplacian(x, cfg.ksize, cfg.border)
    if cfg.what == "magnitude":
        return gradient_magnitude(x, cfg.op, cfg.ksize, cfg.border, cfg.norm)
    gx, gy = gradient(x, cfg.op, cfg.ksize, cfg.border)
    if cfg.what == "dx":
        return gx
    if cfg.what == "dy":
        return gy
    return orientation(gx, gy)


def unit_step_response(cfg: EdgeConfig) -> float:
    """The largest response of the chosen filter to a unit step edge (used to scale PNG output).

    Example:
        >>> unit_step_response(EdgeConfig(op="sobel", ksize=3))
        4.0
    """
    if cfg.op == "laplacian":
        if cfg.ksize == 1:
            return 4.0
        if cfg.ksize == 3:
            return 8.0
        d2, s = deriv_kernel1d(2, cfg.ksize), deriv_kernel1d(0, cfg.ksize)
        return 2.0 * sum(v for v in d2 if v > 0) * sum(s)
    size = -1 if cfg.op == "scharr" else cfg.ksize
    d, s = deriv_kernel1d(1, size), deriv_kernel1d(0, size)
    return sum(v for v in d if v > 0) * sum(s)


def to_unit_range(y: torch.Tensor, cfg: EdgeConfig) -> torch.Tensor:
    """Map an :func:`edge_map` result to [0, 1] for image output.

    magnitude: ``y / s`` (s = :func:`unit_step_response`, so a unit step reads 1), clipped;
    dx, dy, laplacian: ``0.5 + 0.5 * y / s`` (0.5 = no change), clipped; orientation: ``angle / (2*pi)``;
    canny: unchanged (0 or 1).

    Example:
        >>> to_unit_range(torch.tensor([-4.0, 0.0, 8.0]), EdgeConfig(what="dx")).tolist()
        [0.0, 0.5, 1.0]
    """
    if cfg.op == "canny":
        return y
    if cfg.op != "laplacian" and cfg.what == "orientation":
        return y / (2.0 * math.pi)
    s = unit_step_response(cfg)
    if cfg.op != "laplacian" and cfg.what == "magnitude":
        return (y / s).clamp(0.0, 1.0)
    return (0.5 + 0.5 * y / s).clamp(0.0, 1.0)


__all__ = ["EdgeConfig", "edge_map", "to_unit_range", "unit_step_response"]
