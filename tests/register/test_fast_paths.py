"""The speed paths of registration give the same answers as the straightforward code they replace."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gdvision.filters.separable import central_gradient
from gdvision.optim import StepConfig, minimize_lm
from gdvision.register import RegisterConfig
from gdvision.register.problem import COARSE_PIXEL_DIVISOR, Registration


def _reference_pixels(reg: Registration, level: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pixel selection written plainly: gradient score, max_pool2d with indices over the blocks."""
    al = reg.pyr_a[level]
    bsz, _, h, w = al.shape
    budget = reg.cfg.max_pixels if level == 0 else reg.cfg.max_pixels // COARSE_PIXEL_DIVISOR
    block = max(1, round((h * w / budget) ** 0.5))
    valid = torch.ones(bsz, 1, h, w, dtype=torch.bool)
    if reg.mask_a is not None:
        valid = reg.mask_a[level] > 0.5
    valid[..., :1, :] = valid[..., -1:, :] = False
    valid[..., :, :1] = valid[..., :, -1:] = False
    score = torch.zeros_like(al)
    score[..., :, 1:-1] += (al[..., :, 2:] - al[..., :, :-2]).abs()
    score[..., 1:-1, :] += (al[..., 2:, :] - al[..., :-2, :]).abs()
    score = torch.where(valid, score if block > 1 else torch.zeros_like(score), torch.full_like(score, -1.0))
    best, idx = F.max_pool2d(score, block, stride=block, ceil_mode=True, return_indices=True)
    best, idx = best.reshape(bsz, -1), idx.reshape(bsz, -1)
    xs, ys = (idx % w).to(al.dtype), torch.div(idx, w, rounding_mode="floor").to(al.dtype)
    coords = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1)
    return coords, torch.gather(al.reshape(bsz, -1), 1, idx), (best >= 0).to(al.dtype)


def test_pixel_selection_and_b_gradients_match_the_plain_code():
    torch.manual_seed(0)
    for h, w, masked, quantized in [(240, 320, False, False), (97, 131, True, False), (61, 83, True, True)]:
        a = F.avg_pool2d(torch.rand(2, 1, h, w), 3, 1, 1)
        if quantized:  # many ties: the first maximum in row-major order must win, as in max_pool2d
            a = (a * 8).round() / 8
        b = torch.rand(2, 1, h, w)
        mask = (torch.rand(2, 1, h, w) > 0.1).float() if masked else None
        base = torch.eye(3, dtype=torch.float64).expand(2, 3, 3)
        for max_pixels in (20000, 2000, 300):
            reg = Registration(a, b, mask, mask, base, RegisterConfig(max_pixels=max_pixels))
            for level in range(reg.num_levels):
                for got, want in zip(reg._pixels(level), _reference_pixels(reg, level), strict=True):
                    assert torch.equal(got, want), (h, w, max_pixels, level)
                stack = reg._b_stack(level)
                gx, gy = central_gradient(reg.pyr_b[level])
                want = torch.cat([reg.pyr_b[level], gx, gy, reg.mask_b[level]], 1) if masked else None
                if not masked:
                    want = torch.cat([reg.pyr_b[level], gx, gy], 1)
                assert torch.equal(stack, want.permute(1, 0, 2, 3).reshape(1, want.shape[1], -1, want.shape[-1]))


def _line_fit(x: torch.Tensor, y: torch.Tensor, calls: list[int]):
    """Residuals of y ~ p0 + p1 x + p2 x^2 (linear least squares: LM converges in one step)."""

    def fn(p: torch.Tensor, index: torch.Tensor | None):
        calls[0] += 1
        xx, yy = (x, y) if index is None else (x[index], y[index])
        basis = torch.stack([torch.ones_like(xx), xx, xx * xx], -1)  # (b, N, 3)
        r = (basis @ p.unsqueeze(-1))[..., 0] - yy
        return r, basis, torch.ones_like(r)

    return fn


def test_accept_small_skips_the_last_evaluation_and_stays_within_xtol():
    torch.manual_seed(1)
    x = torch.linspace(-1, 1, 50, dtype=torch.float64).expand(3, -1).contiguous()
    truth = torch.tensor([[0.5, -1.0, 2.0], [0.0, 3.0, -1.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    y = truth[:, :1] + truth[:, 1:2] * x + truth[:, 2:] * x * x + 0.01 * torch.randn(3, 50, dtype=torch.float64)
    start = torch.zeros(3, 3, dtype=torch.float64)
    basis = torch.stack([torch.ones_like(x[2]), x[2], x[2] * x[2]], -1)
    start[2] = torch.linalg.lstsq(basis, y[2:3].T).solution[:, 0]  # item 2 is solved: it stops first, the others go on
    runs = {}
    for accept_small in (False, True):
        calls = [0]
        cfg = StepConfig(iters=20, tol=0.0, xtol=1e-3, accept_small=accept_small)
        p, cost, _ = minimize_lm(_line_fit(x, y, calls), start, cfg)
        runs[accept_small] = (p, cost, calls[0])
    (p0, _, n0), (p1, c1, n1) = runs[False], runs[True]
    assert n1 < n0  # the evaluations of the final tiny steps are skipped
    assert (p1 - p0).abs().max() < 1e-3  # the answer moves by less than xtol
    assert torch.isfinite(c1).all()
    # batched == one item at a time (the whole-batch fast path and the gather/scatter path agree)
    for k in range(3):
        calls = [0]
        cfg = StepConfig(iters=20, tol=0.0, xtol=1e-3, accept_small=True)
        pk, _, _ = minimize_lm(_line_fit(x[k : k + 1], y[k : k + 1], calls), start[k : k + 1], cfg)
        assert torch.allclose(pk[0], p1[k], atol=1e-12)
