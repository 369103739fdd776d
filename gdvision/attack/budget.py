"""The attack's budget: perturbations bounded in L-inf, kept off masked-out pixels, rounded to 8 bits within it.

The perturbation of an image is ``delta = eps * tanh(z / eps) * mask`` with ``z`` the free parameters (in intensity
units, so an Adam step ``lr`` is a step in intensity units while ``|delta| << eps``); pixels are
``clamp(x0 + delta, 0, 1)`` (with a straight-through gradient at the bounds). So ``|delta| <= eps`` everywhere and
``delta = 0`` outside the mask, by construction. The result is rounded to 8 bits by :func:`quantize_within_budget`,
which keeps the budget exactly.

Conventions: images (B, C, H, W) in [0, 1]; masks (B or 1, 1, H, W) in [0, 1], nonzero = may change.

Example:
    >>> import torch
    >>> x0 = torch.full((1, 1, 2, 2), 128 / 255)
    >>> x = apply_perturbation(x0, bounded_perturbation(torch.full_like(x0, 9.0), 4 / 255))
    >>> (quantize_within_budget(x, x0, 4 / 255) * 255).round().flatten().tolist()
    [132.0, 132.0, 132.0, 132.0]
"""

from __future__ import annotations

import math

import torch

from gdvision.errors import InputError


def bounded_perturbation(z: torch.Tensor, eps: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``eps * tanh(z / eps) * mask``: a perturbation with ``|delta| <= eps`` (and 0 where ``mask`` is 0).

    ``z`` (B, C, H, W) in intensity units; ``mask`` (B or 1, 1, H, W) in [0, 1] or None.

    Example:
        >>> import torch
        >>> d = bounded_perturbation(torch.tensor([-5.0, 0.001, 5.0]), 0.03)
        >>> [round(v, 4) for v in d.tolist()]
        [-0.03, 0.001, 0.03]
    """
    d = eps * torch.tanh(z / eps)
    return d if mask is None else d * mask


def apply_perturbation(x0: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``clamp(x0 + delta, 0, 1)`` with a straight-through gradient (pixels stay in [0, 1], gradients flow).

    Example:
        >>> import torch
        >>> apply_perturbation(torch.tensor([0.0, 0.5, 1.0]), torch.tensor([-0.1, 0.1, 0.1])).tolist()
        [0.0, 0.6000000238418579, 1.0]
    """
    x = x0 + delta
    return x + (x.clamp(0.0, 1.0) - x).detach()


def quantize_within_budget(x: torch.Tensor, x0: torch.Tensor, eps: float) -> torch.Tensor:
    """Round ``x`` to 8-bit levels (k/255) while keeping ``|q - x0| <= eps`` and ``q`` in [0, 1].

    Each value is rounded to the nearest level, then clipped to the levels inside ``[x0 - eps, x0 + eps]``; where
    no level lies inside (a non-8-bit ``x0`` with ``eps`` under half a level) the level nearest ``x0`` is used.
    For 8-bit ``x0`` the result is always within the budget. Shapes as ``x``.

    Example:
        >>> import torch
        >>> x0 = torch.tensor([0.0, 100 / 255, 1.0])
        >>> q = quantize_within_budget(x0 + torch.tensor([-0.02, 0.0157, 0.004]), x0, 4 / 255)
        >>> (q * 255).round().tolist()
        [0.0, 104.0, 255.0]
    """
    x0d = x0.to(torch.float64)
    lo = torch.ceil(((x0d - eps) * 255.0 - 1e-6).clamp(0, 255))
    hi = torch.floor(((x0d + eps) * 255.0 + 1e-6).clamp(0, 255))
    q = torch.round(x.to(torch.float64) * 255.0).clamp(0, 255)
    q = torch.minimum(torch.maximum(q, lo), hi)
    empty = lo > hi
    if bool(empty.any()):
        q = torch.where(empty, torch.round(x0d * 255.0).clamp(0, 255), q)
    return (q / 255.0).to(x.dtype)


def quantize_ste(x: torch.Tensor, x0: torch.Tensor, eps: float, mask: torch.Tensor | None) -> torch.Tensor:
    """The 8-bit pixels that will be saved (:func:`quantize_within_budget`, ``x0`` where ``mask`` is 0), with a
    straight-through gradient (the values of the rounding, the gradient of ``x``). Shapes as ``x``.

    Example:
        >>> import torch
        >>> x = torch.tensor([100.3 / 255], requires_grad=True)
        >>> q = quantize_ste(x, torch.tensor([100 / 255]), 4 / 255, None)
        >>> round(float(q.detach()) * 255, 3), torch.autograd.grad(q.sum(), x)[0].tolist()
        (100.0, [1.0])
    """
    q = quantize_within_budget(x.detach(), x0, eps)
    if mask is not None:
        q = torch.where(mask > 0, q, x0)
    return x + (q - x).detach()


def check_mask(name: str, m: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """The mask of image ``name`` as (1, 1, H, W) in [0, 1] with ``x``'s dtype and device (None passes);
    InputError when its size differs from ``x``'s, it is not finite, or it is empty (nothing may change).

    ``m``: (H, W) or (1, 1, H, W); ``x``: the image (1, C, H, W).

    >>> import torch
    >>> check_mask("A", torch.ones(4, 4), torch.zeros(1, 3, 4, 4)).shape
    torch.Size([1, 1, 4, 4])
    """
    if m is None:
        return None
    if m.dim() == 2:
        m = m[None, None]
    if m.dim() != 4 or m.shape[0] != 1 or m.shape[1] != 1 or m.shape[-2:] != x.shape[-2:]:
        raise InputError(
            f"mask of {name}: expected {x.shape[-1]}x{x.shape[-2]} (the image's size), got shape {tuple(m.shape)}"
        )
    if not torch.isfinite(m).all():
        raise InputError(f"mask of {name} contains NaN or infinite values")
    m = m.to(dtype=x.dtype, device=x.device).clamp(0, 1)
    if float(m.max()) <= 0:
        raise InputError(f"mask of {name} is empty: nothing may change")
    return m


def perturbation_stats(x: torch.Tensor, x0: torch.Tensor) -> dict[str, float]:
    """L-inf (also in 8-bit levels), L2 (over all values), RMSE and PSNR (dB, peak 1) of ``x - x0`` for images in
    [0, 1].

    Example:
        >>> import torch
        >>> s = perturbation_stats(torch.full((1, 1, 4, 4), 0.1), torch.zeros(1, 1, 4, 4))
        >>> round(s["linf"], 3), round(s["l2"], 3), round(s["psnr_db"], 1)
        (0.1, 0.4, 20.0)
    """
    d = (x.to(torch.float64) - x0.to(torch.float64)).flatten()
    mse = float((d * d).mean()) if d.numel() else 0.0
    psnr = float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)
    return {
        "linf": float(d.abs().max()) if d.numel() else 0.0,
        "linf_255": float(d.abs().max()) * 255.0 if d.numel() else 0.0,
        "l2": float(d.norm()),
        "rmse": math.sqrt(mse),
        "psnr_db": psnr,
    }


__all__ = [
    "apply_perturbation",
    "bounded_perturbation",
    "check_mask",
    "perturbation_stats",
    "quantize_ste",
    "quantize_within_budget",
]
