"""The global start at the coarsest level: phase correlation for a translation, kept when it fits better."""

from __future__ import annotations

import torch

from gdvision.optim import StepConfig, minimize_lm
from gdvision.register.motion import model_matrix
from gdvision.register.problem import Registration


def phase_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Integer shift (B, 2) = (dx, dy) with ``b(x + d) ~ a(x)``, by phase correlation (Hann-windowed)."""
    h = max(a.shape[-2], b.shape[-2])
    w = max(a.shape[-1], b.shape[-1])

    def prep(x: torch.Tensor) -> torch.Tensor:
        x = x[:, 0] - x[:, 0].mean((-2, -1), keepdim=True)
        win = torch.outer(torch.hann_window(x.shape[-2], dtype=x.dtype), torch.hann_window(x.shape[-1], dtype=x.dtype))
        x = x * win.to(x.device)
        return torch.nn.functional.pad(x, (0, w - x.shape[-1], 0, h - x.shape[-2]))

    fa = torch.fft.rfft2(prep(a))
    fb = torch.fft.rfft2(prep(b))
    cross = fb * fa.conj()
    corr = torch.fft.irfft2(cross / (cross.abs() + 1e-9), s=(h, w))
    idx = corr.reshape(corr.shape[0], -1).argmax(1)
    dy = (idx // w).to(torch.float64)
    dx = (idx % w).to(torch.float64)
    dy = torch.where(dy > h / 2, dy - h, dy)
    dx = torch.where(dx > w / 2, dx - w, dx)
    return torch.stack([dx, dy], dim=1)


def coarse_translation(prob: Registration, level: int) -> None:
    """Start from the better of the current motion and a phase-correlation translation, each refined by a
    translation-only LM at the coarsest level (both starts run as one batch)."""
    a = prob.pyr_a[level]
    b = prob.pyr_b[level]
    bsz = a.shape[0]
    shift = phase_correlation(a, b) * 2.0**level  # full-resolution pixels
    ha, wa = prob.size_a
    s = max(ha, wa) / 2.0
    cand = torch.eye(3, dtype=torch.float64, device=a.device).repeat(bsz, 1, 1)
    cand[:, 0, 2] = shift[:, 0] / s
    cand[:, 1, 2] = shift[:, 1] / s
    bases = torch.cat([prob.base, cand @ prob.base])
    saved_model = prob.stage_model
    prob.stage_model = "translation"
    q0 = torch.zeros(2 * bsz, 2, dtype=torch.float64, device=a.device)
    cfg = StepConfig(method="lm", iters=10, tol=1e-4, xtol=1e-2, accept_small=True)
    q, cost, _ = minimize_lm(prob.residuals(level, bases), q0, cfg)
    moved = model_matrix(q, "translation") @ bases
    pick = (cost[bsz:] < cost[:bsz]).view(-1, 1, 1)
    prob.base = torch.where(pick, moved[bsz:], moved[:bsz])
    prob.base = prob.base / prob.base[:, 2:3, 2:3]
    prob.stage_model = saved_model


__all__ = ["coarse_translation", "phase_correlation"]
