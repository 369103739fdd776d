"""The matching cost of the sweeps: box-window SSIM on grey images, the minimum over the source views.

The sweeps (:mod:`gdvision.depth.sweep`) evaluate many inverse-depth hypotheses per pixel, so their cost must be
cheap: grey images (channel mean), a ``(2r+1)`` x ``(2r+1)`` box window (each box mean is one ``avg_pool2d``) and
the reference's window statistics computed once. Per view ``i`` and hypothesis:

    c_i = (1 - SSIM_box(ref, warped_i)) / 2

and the pixel's cost is the minimum over the views that see the sample (inside the frame, in front of the
camera, on a valid source pixel); :data:`UNSEEN` where no view does. Values lie in [0, 1], 0 = identical.
Adding an absolute-difference term (``0.15 |ref - warped|`` as in the refinement loss) made the sweep slower and
worse on Middlebury Motorcycle (bad-2 9.19% vs 8.97%). The refinement (:mod:`gdvision.depth.problem`) keeps
the colour Gaussian-window SSIM + absolute difference.

Example:
    >>> import torch
    >>> K = torch.tensor([[50.0, 0, 19.5], [0, 50, 11.5], [0, 0, 1]]); T = torch.eye(4); T[0, 3] = -0.1
    >>> lv = build_levels(View(torch.rand(1, 3, 24, 40), K, torch.eye(4)), [View(torch.rand(1, 3, 24, 40), K, T)],
    ...                   1, torch.device("cpu"))[0]
    >>> cost = SweepCost(lv, radius=2)
    >>> cost(torch.full((3, 1, 24, 40), 0.5)).shape                  # 3 hypotheses
    torch.Size([3, 24, 40])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gdvision.depth.config import View  # noqa: F401  (doctest namespace)
from gdvision.depth.problem import UNSEEN, Level, build_levels  # noqa: F401

C1, C2 = 0.01**2, 0.03**2  # SSIM constants for images in [0, 1]


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a ``(2 radius + 1)`` square window of every (B, C, H, W) pixel (at borders: of the window's part
    inside the image).

    Example:
        >>> import torch
        >>> box_mean(torch.ones(1, 1, 4, 5), 1).unique().tolist()
        [1.0]
    """
    r = radius
    return F.avg_pool2d(F.pad(x, (r, r, r, r), mode="replicate"), 2 * r + 1, stride=1)


class SweepCost:
    """Cost of inverse-depth hypotheses at one pyramid :class:`~gdvision.depth.problem.Level` (see module doc).

    Shape:
        - call input: inverse depths (N, 1, H, W) of the level's reference pixels (N hypotheses);
        - output: (N, H, W) cost, :data:`UNSEEN` where no source view sees the sample.
    """

    def __init__(self, level: Level, radius: int = 2) -> None:
        self.level = level
        self.radius = radius
        g = level.ref.mean(1, keepdim=True)
        self.ref = g
        self.mu = box_mean(g, radius)
        self.var = box_mean(g * g, radius) - self.mu * self.mu
        self.srcs = level.grey_sources()

    def view_cost(self, warped: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) cost of grey samples ``warped`` (N, 1, H, W) against the reference."""
        r, ref, n = self.radius, self.ref, warped.shape[0]
        buf = torch.empty((3 * n, *warped.shape[1:]), dtype=warped.dtype, device=warped.device)
        buf[:n] = warped
        torch.mul(warped, warped, out=buf[n : 2 * n])
        torch.mul(warped, ref, out=buf[2 * n :])
        mw, ww, rw = torch.split(box_mean(buf, r), n, 0)
        vw = ww - mw * mw
        cov = rw - self.mu * mw
        ssim = (2 * self.mu * mw + C1) * (2 * cov + C2) / ((self.mu * self.mu + mw * mw + C1) * (self.var + vw + C2))
        return ((1.0 - ssim) * 0.5).clamp(0, 1)

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        best: torch.Tensor | None = None
        for warped, ok in self.level.warped_views(w, self.srcs):
            c = torch.where(ok, self.view_cost(warped), torch.full_like(warped, UNSEEN))
            best = c if best is None else torch.minimum(best, c)
        assert best is not None
        best = torch.where(self.level.ref_mask > 0, best, torch.full_like(best, UNSEEN))
        return best[:, 0]


__all__ = ["SweepCost", "box_mean"]
