"""Where an attack starts (``AttackConfig.init``): the clean pixels, or a blend of the two images' fine detail.

- ``zero``: the clean images (parameters 0).
- ``blend``: move the fine detail (gray image minus its Gaussian blur, ``sigma`` px) of each image toward the
  other's under H (``match``) or away from it (``unmatch``), half the way each when both images are perturbed.
- ``texture`` (``match`` only, both images): blend, plus one shared random texture (noise blurred by
  ``texture_sigma`` px, seeded) in the budget the blend leaves, added at corresponding places (through H) of both
  images, which plants identical keypoints and descriptors where both images are plain (for detectors without a
  contrast threshold, e.g. the ``hessian`` target: under DoG's 0.04 / 3 a +-8/255 texture alone makes no keypoint,
  since the largest DoG response +-8/255 can produce is about 0.0131).

The result is in the solver's parameters ``z`` (see :mod:`gdvision.attack.budget`): the change wanted, capped at
0.97 eps, mapped through ``eps * atanh(. / eps)``.

Example:
    >>> import torch
    >>> from gdvision.attack.config import AttackConfig
    >>> a = torch.rand(1, 1, 24, 24, generator=torch.Generator().manual_seed(0))
    >>> z = initial_params(a, a.flip(-1), torch.eye(3), AttackConfig(eps=4 / 255).resolved(), True, True)
    >>> tuple(z.shape), bool(z.abs().max() <= 4 / 255 * 2.1)
    ((1, 1152), True)
"""

from __future__ import annotations

import torch

from gdvision.attack.config import AttackConfig
from gdvision.color import to_gray
from gdvision.filters.separable import gaussian_blur
from gdvision.warp import warp_perspective


def initial_params(
    a0: torch.Tensor,
    b0: torch.Tensor,
    H: torch.Tensor,
    cfg: AttackConfig,
    use_a: bool,
    use_b: bool,
    sigma: float = 3.0,
    texture_sigma: float = 1.5,
    seed: int = 0,
) -> torch.Tensor:
    """Starting parameters (1, Na + Nb) of the ``blend`` / ``texture`` starts (see the module docstring).

    ``a0``, ``b0``: (1, C, H, W) clean images; ``H`` (3, 3) A -> B in pixels; ``cfg``: a resolved config;
    ``use_a``/``use_b``: which images are perturbed (their parameters are concatenated, A's first).
    """

    def detail(x: torch.Tensor) -> torch.Tensor:
        g = to_gray(x)
        return g - gaussian_blur(g, sigma)

    Hf = H.to(a0.dtype)
    Hi = torch.linalg.inv(Hf)
    size_a, size_b = (a0.shape[-1], a0.shape[-2]), (b0.shape[-1], b0.shape[-2])
    b_in_a, va = warp_perspective(detail(b0), Hi, size_a)
    share = 0.5 if (use_a and use_b) else 1.0
    sign = 1.0 if cfg.mode == "match" else -1.0
    da = sign * share * (b_in_a - detail(a0)) * va  # A's change, A's frame
    db = -sign * share * (b_in_a - detail(a0)) * va  # B's change, A's frame
    if cfg.init == "texture" and cfg.mode == "match" and use_a and use_b:
        g = torch.Generator(device="cpu").manual_seed(seed)
        noise = torch.randn(1, 1, size_a[1], size_a[0], generator=g).to(a0)
        noise = gaussian_blur(noise, texture_sigma)
        noise = torch.tanh(2.0 * noise / noise.std().clamp_min(1e-12))
        room = (cfg.eps - torch.maximum(da.abs(), db.abs())).clamp_min(0.0)
        da = da + room * noise
        db = db + room * noise
    za = da.clamp(-cfg.eps, cfg.eps).expand_as(a0)
    zb = warp_perspective(db.clamp(-cfg.eps, cfg.eps), Hf, size_b)[0].expand_as(b0)
    parts = ([za.reshape(-1)] if use_a else []) + ([zb.reshape(-1)] if use_b else [])
    # z such that eps * tanh(z / eps) equals the wanted change (kept off the saturated ends)
    wanted = torch.cat(parts).clamp(-0.97 * cfg.eps, 0.97 * cfg.eps)
    return (cfg.eps * torch.atanh(wanted / cfg.eps))[None]


__all__ = ["initial_params"]
