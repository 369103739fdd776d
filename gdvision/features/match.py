"""Feature matching pipeline: image -> keypoints + SIFT descriptors -> matches -> robust model.

Two entry points:

- :func:`detect_and_describe`: (B, C, H, W) images -> :class:`Features` (positions, scales, angles,
  responses, 128-d descriptors). Differentiable: ``xy``, ``scale``, ``angle`` (within its histogram peak),
  ``response`` and ``desc`` carry gradients back to the image pixels (the discrete choices - which extrema,
  which histogram peak - do not).
- :func:`match_images`: two images -> :class:`MatchResult` with the homography A -> B (or fundamental matrix),
  the matches and the inlier flags; optionally refined photometrically by
  :func:`gdvision.register.solver.register_pair`.

Settings: :class:`~gdvision.features.config.FeatureConfig` and :class:`~gdvision.features.config.MatchConfig`
(re-exported here). Tensors in, tensors out: reading images and writing keypoint files, records and pictures
is :mod:`gdvision.tasks.features`, :mod:`gdvision.tasks.match` and :func:`gdvision.viz.draw_matches`.

Conventions: pixel coordinates, (0, 0) = centre of the top-left pixel; H maps A to B; angles in radians
clockwise on screen from +x (OpenCV's ``KeyPoint.angle`` in radians); ``scale`` is sigma in input pixels
(OpenCV's ``KeyPoint.size`` is about ``2 * scale``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from gdvision.color import to_gray
from gdvision.device import keep_freed_memory
from gdvision.errors import InputError, SolverError, UsageError
from gdvision.features.config import FeatureConfig, MatchConfig
from gdvision.features.descriptors import sift_descriptors
from gdvision.features.detectors import Keypoints, detect, spread_select
from gdvision.features.matching import match_descriptors
from gdvision.features.orientation import assign_orientations
from gdvision.features.scale_space import build_scale_space
from gdvision.geometry import ransac


@dataclass
class Features:
    """Keypoints and descriptors of a batch (N in all).

    Attributes:
        xy: (N, 2) pixel coordinates (x, y); scale: (N,) sigma in pixels; angle: (N,) radians;
        response: (N,) detector response; desc: (N, 128) unit descriptors; batch: (N,) image index;
        octave, level: (N,) long, where in the scale space the keypoint was found.
    """

    xy: torch.Tensor
    scale: torch.Tensor
    angle: torch.Tensor
    response: torch.Tensor
    desc: torch.Tensor
    batch: torch.Tensor
    octave: torch.Tensor
    level: torch.Tensor

    def __len__(self) -> int:
        return int(self.xy.shape[0])

    def image(self, b: int) -> Features:
        """The features of batch image ``b``."""
        sel = torch.nonzero(self.batch == b)[:, 0]
        return Features(*(getattr(self, f)[sel] for f in self.__dataclass_fields__))


def _as_gray(img: torch.Tensor) -> torch.Tensor:
    if img.dim() != 4:
        raise UsageError(f"expected a (B, C, H, W) image, got shape {tuple(img.shape)}")
    g = to_gray(img.float() if img.dtype not in (torch.float32, torch.float64) else img)
    return g


def detect_and_describe(img: torch.Tensor, config: FeatureConfig | None = None) -> Features:
    """Keypoints and SIFT descriptors of each image of a batch ``img`` (B, C, H, W) in [0, 1].

    Differentiable with respect to ``img`` through ``xy``, ``scale``, ``response`` and ``desc``.

    Example:
        >>> import torch
        >>> img = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 96, 96), 5, 1, 2)
        >>> f = detect_and_describe(img, FeatureConfig(max_features=50))
        >>> f.desc.shape[1], len(f) <= 50
        (128, True)
    """
    cfg = config or FeatureConfig()
    cfg.validate()
    gray = _as_gray(img)
    if gray.device.type == "cpu":
        keep_freed_memory()  # the octaves and patch stacks are re-allocated every call: no page faults each time
    h, w = gray.shape[-2:]
    if min(h, w) < 16:
        raise InputError(f"image too small for feature detection ({w}x{h}; need at least 16x16)")
    if cfg.layout == "opencv":  # the replica of OpenCV's SIFT
        from gdvision.features.opencv_layout import opencv_features

        kp, ang, desc = opencv_features(gray, cfg)
        return Features(kp.xy, kp.scale, ang, kp.response, desc, kp.batch, kp.octave, kp.level)
    # auto: the doubled octave's small scales at native resolution (fine_first), up to double_max_pixels
    fine = cfg.double_first is None and h * w <= cfg.double_max_pixels
    ss = build_scale_space(gray, cfg.sigma0, cfg.scales_per_octave, bool(cfg.double_first), fine_first=fine)
    n_max = cfg.max_features or None
    kp = detect(
        ss,
        cfg.detector,
        contrast_threshold=cfg.contrast_threshold,
        edge_threshold=cfg.edge_threshold,
        max_features=n_max,
        image_size=(w, h),
    )
    kp, ang = assign_orientations(ss, kp, max_orientations=cfg.max_orientations)
    if n_max is not None and len(kp) > n_max:
        keep = []
        for bi in torch.unique(kp.batch).tolist():
            sel = torch.nonzero(kp.batch == bi)[:, 0]
            keep.append(sel[spread_select(kp.xy[sel], kp.response[sel].detach(), n_max, w, h)])
        k = torch.cat(keep)
        kp, ang = kp.index(k), ang[k]
    desc = sift_descriptors(
        ss,
        kp.batch,
        kp.octave,
        kp.level,
        kp.xy,
        kp.scale,
        ang,
        patch_size=cfg.patch_size,
        root=cfg.root,
        chunk=cfg.chunk,
    )
    return Features(kp.xy, kp.scale, ang, kp.response, desc, kp.batch, kp.octave, kp.level)


def keypoints_of(f: Features) -> Keypoints:
    """The :class:`~gdvision.features.detectors.Keypoints` part of ``f``."""
    return Keypoints(f.batch, f.octave, f.level, f.xy, f.scale, f.response)


@dataclass
class MatchResult:
    """Result of :func:`match_images`.

    Attributes:
        model: (3, 3) float64: homography A -> B (pixels, ``H[2,2] = 1``) or fundamental matrix.
        model_type: ``homography`` or ``fundamental``.
        pts_a, pts_b: (K, 2) matched pixel coordinates; scores: (K,) matcher scores (lower is better);
        idx: (K, 2) indices into the features of A and B; inliers: (K,) bool; errors: (K,) residuals (px).
        features_a, features_b: the features of each image.
        iterations: RANSAC hypotheses drawn; refined: whether photometric refinement was applied.
        seconds: wall time.
    """

    model: torch.Tensor
    model_type: str
    pts_a: torch.Tensor
    pts_b: torch.Tensor
    scores: torch.Tensor
    idx: torch.Tensor
    inliers: torch.Tensor
    errors: torch.Tensor
    features_a: Features
    features_b: Features
    iterations: int = 0
    refined: bool = False
    seconds: float = 0.0


def match_features(fa: Features, fb: Features, config: MatchConfig, image_size_a: tuple[int, int]) -> MatchResult:
    """Match two feature sets and fit the model by RANSAC; ``image_size_a`` = (W, H) of A."""
    t0 = time.perf_counter()
    idx, score = match_descriptors(fa.desc.detach(), fb.desc.detach(), config.matcher, config.ratio)
    pa = fa.xy.detach()[idx[:, 0]].to(torch.float64)
    pb = fb.xy.detach()[idx[:, 1]].to(torch.float64)
    need = 4 if config.model == "homography" else 8
    if idx.shape[0] < need:
        raise SolverError(
            f"only {idx.shape[0]} matches ({len(fa)} and {len(fb)} keypoints): "
            f"need at least {need} to fit a {config.model}"
        )
    res = ransac(
        pa,
        pb,
        config.model,
        config.ransac_threshold,
        config.confidence,
        config.max_iters,
        seed=config.seed,
        image_size=(float(image_size_a[0]), float(image_size_a[1])),
    )
    if res.model is None or int(res.inliers.sum()) < need:
        raise SolverError(f"RANSAC found no consistent {config.model} among {idx.shape[0]} matches")
    return MatchResult(
        res.model,
        config.model,
        pa,
        pb,
        score,
        idx,
        res.inliers,
        res.errors,
        fa,
        fb,
        res.iterations,
        False,
        time.perf_counter() - t0,
    )


def match_images(a: torch.Tensor, b: torch.Tensor, config: MatchConfig | None = None) -> MatchResult:
    """Match image ``a`` (1, C, Ha, Wa) to ``b`` (1, C', Hb, Wb) in [0, 1]; raises SolverError when no model fits.

    Example:
        >>> import torch
        >>> from gdvision.warp import warp_perspective
        >>> a = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 160, 160), 5, 1, 2)
        >>> H = torch.tensor([[1.0, 0.05, 4.0], [-0.05, 1.0, 3.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
        >>> b, _ = warp_perspective(a, H, (160, 160))
        >>> res = match_images(a, b)
        >>> bool((res.model - H).abs().max() < 0.5)
        True
    """
    cfg = config or MatchConfig()
    cfg.validate()
    t0 = time.perf_counter()
    for name, x in (("A", a), ("B", b)):
        if x.dim() != 4 or x.shape[0] != 1:
            raise UsageError(f"image {name}: expected shape (1, C, H, W), got {tuple(x.shape)}")
        # a finite sum means every value is finite (one read-only pass); else the exact test (a sum may overflow)
        if not math.isfinite(float(x.sum())) and not bool(torch.isfinite(x).all()):
            raise InputError(f"image {name} contains NaN or infinite values")
    with torch.no_grad():
        if a.shape[-2:] == b.shape[-2:] and a.shape[1] == b.shape[1]:
            f = detect_and_describe(torch.cat([a, b]), cfg.features)
            fa, fb = f.image(0), f.image(1)
        else:
            fa = detect_and_describe(a, cfg.features)
            fb = detect_and_describe(b, cfg.features)
    res = match_features(fa, fb, cfg, (a.shape[-1], a.shape[-2]))
    if cfg.refine:
        from gdvision.register import RegisterConfig, register_pair

        reg = register_pair(a, b, RegisterConfig(model="homography", coarse_search=False), init=res.model[None])
        res.model = reg.H[0].to(torch.float64)
        res.refined = True
    res.seconds = time.perf_counter() - t0
    return res


__all__ = [
    "FeatureConfig",
    "Features",
    "MatchConfig",
    "MatchResult",
    "detect_and_describe",
    "keypoints_of",
    "match_features",
    "match_images",
]
