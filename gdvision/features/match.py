"""Feature matching pipeline: image -> keypoints + SIFT descriptors -> matches -> robust model.

Two entry points:

- :func:`detect_and_describe`: (B, C, H, W) images -> :class:`Features` (positions, scales, angles,
  responses, 128-d descriptors). Differentiable: ``xy``, ``scale``, ``angle`` (within its histogram peak),
  ``response`` and ``desc`` carry gradients back to the image pixels (the discrete choices - which extrema,
  which histogram peak - do not).
- :func:`match_images`: two images -> :class:`MatchResult` with the homography A -> B (or fundamental matrix),
  the matches and the inlier flags; optionally refined photometrically by
  :func:`gdvision.register.solver.register_pair`.

Conventions: pixel coordinates, (0, 0) = centre of the top-left pixel; H maps A to B; angles in radians
clockwise on screen from +x (OpenCV's ``KeyPoint.angle`` in radians); ``scale`` is sigma in input pixels
(OpenCV's ``KeyPoint.size`` is about ``2 * scale``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from gdvision.errors import InputError, SolverError, UsageError
from gdvision.features.descriptors import sift_descriptors
from gdvision.features.detectors import DETECTORS, Keypoints, detect, spread_select
from gdvision.features.matching import MATCHERS, match_descriptors
from gdvision.features.orientation import assign_orientations
from gdvision.features.scale_space import build_scale_space
from gdvision.geometry import MODELS, ransac
from gdvision.io.images import to_gray


@dataclass
class FeatureConfig:
    """Detector/descriptor settings (defaults follow Lowe and OpenCV's SIFT).

    Attributes:
        detector: ``dog`` (difference of Gaussians) or ``hessian`` (determinant of Hessian).
        max_features: keep at most this many per image (strongest, spread over the image); 0 = all.
        contrast_threshold: Lowe's contrast threshold for [0, 1] images (0.04, OpenCV's default).
        edge_threshold: principal curvature ratio limit (10).
        sigma0: blur of each octave's first level (1.6); scales_per_octave: 3.
        double_first: True: upsample the input x2 for the first octave (Lowe's layout, about 2x slower);
            False: no scales below ``sigma0`` (fastest, fewer small keypoints); None = auto: the small scales at
            native resolution (``build_scale_space(fine_first=True)``: ``S`` extra levels from ``sigma0 / 2``,
            extrema re-fitted on a half-pixel grid) for images of at most ``double_max_pixels`` pixels, none above
            (memory stays bounded).
        root: RootSIFT descriptors.
        patch_size: descriptor samples per patch side; chunk: keypoints per descriptor chunk.
        max_orientations: orientations per keypoint (secondary peaks >= 0.8 of the highest).
    """

    detector: str = "dog"
    max_features: int = 4000
    contrast_threshold: float = 0.04
    edge_threshold: float = 10.0
    sigma0: float = 1.6
    scales_per_octave: int = 3
    double_first: bool | None = None
    double_max_pixels: int = 2_000_000
    root: bool = False
    patch_size: int = 16
    chunk: int = 2048
    max_orientations: int = 2

    def validate(self) -> None:
        """UsageError for settings that cannot work."""
        if self.detector not in DETECTORS:
            raise UsageError(f"unknown detector '{self.detector}': use one of {', '.join(DETECTORS)}")
        if self.max_features < 0 or self.max_features > 10_000_000:
            raise UsageError(f"--max-features must be between 0 and 10000000, got {self.max_features}")
        if not 0 <= self.contrast_threshold < 1:
            raise UsageError(f"contrast threshold must be in [0, 1), got {self.contrast_threshold}")
        if not self.edge_threshold > 1:
            raise UsageError(f"edge threshold must be > 1, got {self.edge_threshold}")
        if not 0.5 <= self.sigma0 <= 10:
            raise UsageError(f"sigma0 must be in [0.5, 10], got {self.sigma0}")
        if not 1 <= self.scales_per_octave <= 10:
            raise UsageError(f"scales per octave must be in [1, 10], got {self.scales_per_octave}")
        if not 4 <= self.patch_size <= 64:
            raise UsageError(f"patch size must be in [4, 64], got {self.patch_size}")


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
    h, w = gray.shape[-2:]
    if min(h, w) < 16:
        raise InputError(f"image too small for feature detection ({w}x{h}; need at least 16x16)")
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
class MatchConfig:
    """Settings of :func:`match_images`.

    Attributes:
        features: detector/descriptor settings.
        matcher: ``ratio`` (Lowe's test), ``mnn`` (mutual nearest neighbours) or ``smnn`` (both).
        ratio: ratio threshold (None: 0.8 for ratio, 0.9 for smnn).
        model: ``homography`` or ``fundamental``.
        ransac_threshold: inlier threshold in pixels.
        confidence, max_iters: RANSAC stopping rule and cap.
        seed: RANSAC seed (reproducible).
        refine: refine the homography photometrically with ``gdvision.register.solver`` (homography only).
    """

    features: FeatureConfig = field(default_factory=FeatureConfig)
    matcher: str = "ratio"
    ratio: float | None = None
    model: str = "homography"
    ransac_threshold: float = 3.0
    confidence: float = 0.999
    max_iters: int = 10000
    seed: int | None = 0
    refine: bool = False

    def validate(self) -> None:
        """UsageError for settings that cannot work."""
        self.features.validate()
        if self.matcher not in MATCHERS:
            raise UsageError(f"unknown matcher '{self.matcher}': use one of {', '.join(MATCHERS)}")
        if self.ratio is not None and not 0 < self.ratio <= 1:
            raise UsageError(f"--ratio must be in (0, 1], got {self.ratio}")
        if self.model not in MODELS:
            raise UsageError(f"unknown model '{self.model}': use one of {', '.join(MODELS)}")
        if not 0 < self.ransac_threshold <= 1000:
            raise UsageError(f"--ransac-threshold must be in (0, 1000] px, got {self.ransac_threshold}")
        if not 0 < self.confidence < 1:
            raise UsageError(f"confidence must be in (0, 1), got {self.confidence}")
        if not 1 <= self.max_iters <= 10_000_000:
            raise UsageError(f"max iterations must be in [1, 10000000], got {self.max_iters}")
        if self.refine and self.model != "homography":
            raise UsageError("--refine needs --model homography")


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
        if not torch.isfinite(x).all():
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
        from gdvision.register.solver import RegisterConfig, register_pair

        reg = register_pair(a, b, RegisterConfig(model="homography", coarse_search=False), init=res.model[None])
        res.model = reg.H[0].to(torch.float64)
        res.refined = True
    res.seconds = time.perf_counter() - t0
    return res


def describe_match(
    res: MatchResult,
    cfg: MatchConfig,
    size_a: tuple[int, int],
    size_b: tuple[int, int],
    device: torch.device | str,
    H_gt: torch.Tensor | None = None,
    paths: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The JSON record of a match (what ``--out`` and ``--json`` hold); sizes are (W, H).

    For a homography, ``H`` follows ``register``'s convention (pixels, A -> B); for a fundamental matrix the key is
    ``F`` (``xB^T F xA = 0``). With ``H_gt`` the mean corner error (px) is added.
    """
    M = res.model.detach().cpu().to(torch.float64)
    rec: dict[str, Any] = {}
    if res.model_type == "homography":
        rec["H"] = M.tolist()
        rec["convention"] = "pixel coordinates, (0,0) = centre of the top-left pixel; [xB, yB, 1]^T ~ H [xA, yA, 1]^T"
    else:
        rec["F"] = M.tolist()
        rec["convention"] = "pixel coordinates, (0,0) = centre of the top-left pixel; [xB, yB, 1] F [xA, yA, 1]^T = 0"
    if paths is not None:
        rec["a"], rec["b"] = paths
    rec.update(
        {
            "size_a": list(size_a),
            "size_b": list(size_b),
            "model": res.model_type,
            "detector": cfg.features.detector,
            "matcher": cfg.matcher,
            "keypoints_a": len(res.features_a),
            "keypoints_b": len(res.features_b),
            "matches": int(res.idx.shape[0]),
            "inliers": int(res.inliers.sum()),
            "ransac_iterations": res.iterations,
            "refined": res.refined,
            "seconds": res.seconds,
            "device": str(device),
        }
    )
    if H_gt is not None and res.model_type == "homography":
        from gdvision.coords import mean_corner_error

        rec["corner_error_px"] = float(mean_corner_error(M, H_gt.to(torch.float64), size_a[1], size_a[0]))
    return rec


def matches_record(res: MatchResult) -> dict[str, Any]:
    """JSON-able list of the matches: coordinates in A and B (pixels), matcher score, inlier flag, residual."""
    pa = res.pts_a.detach().cpu().tolist()
    pb = res.pts_b.detach().cpu().tolist()
    sc = res.scores.detach().cpu().tolist()
    inl = res.inliers.detach().cpu().tolist()
    err = res.errors.detach().cpu().tolist()
    return {
        "count": len(pa),
        "inliers": int(sum(inl)),
        "fields": "xa, ya, xb, yb: pixel coordinates; score: matcher score (lower is better); inlier; error: px",
        "matches": [
            {
                "xa": a[0],
                "ya": a[1],
                "xb": b[0],
                "yb": b[1],
                "score": s,
                "inlier": bool(i),
                "error": e if e == e and e != float("inf") else None,
            }
            for a, b, s, i, e in zip(pa, pb, sc, inl, err, strict=True)
        ],
    }


def draw_matches(a: torch.Tensor, b: torch.Tensor, res: MatchResult, max_lines: int = 2000) -> torch.Tensor:
    """Side-by-side RGB visualisation (1, 3, max(Ha, Hb), Wa + Wb): inliers green, outliers red.

    Example:
        >>> import torch
        >>> from gdvision.warp import warp_perspective
        >>> a = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 120, 120), 5, 1, 2)
        >>> b, _ = warp_perspective(a, torch.eye(3), (120, 120))
        >>> draw_matches(a, b, match_images(a, b)).shape
        torch.Size([1, 3, 120, 240])
    """
    ha, wa = a.shape[-2:]
    hb, wb = b.shape[-2:]
    canvas = torch.zeros(3, max(ha, hb), wa + wb)
    ga = to_gray(a.detach().cpu().float())[0, 0] if a.shape[1] != 3 else None
    gb = to_gray(b.detach().cpu().float())[0, 0] if b.shape[1] != 3 else None
    canvas[:, :ha, :wa] = a.detach().cpu().float()[0] if ga is None else ga
    canvas[:, :hb, wa:] = b.detach().cpu().float()[0] if gb is None else gb
    canvas *= 0.8  # dim the photos so the lines stand out
    pa = res.pts_a.detach().cpu().to(torch.float32)
    pb = res.pts_b.detach().cpu().to(torch.float32) + torch.tensor([float(wa), 0.0])
    inl = res.inliers.detach().cpu()
    order = torch.cat([torch.nonzero(~inl)[:, 0], torch.nonzero(inl)[:, 0]])[-max_lines:]  # inliers drawn last
    h, w = canvas.shape[-2:]
    for sel, colour in ((order[~inl[order]], (1.0, 0.15, 0.1)), (order[inl[order]], (0.1, 1.0, 0.2))):
        if sel.numel() == 0:
            continue
        p0, p1 = pa[sel], pb[sel]
        steps = int(torch.ceil((p1 - p0).norm(dim=1).max()).item()) + 1
        t = torch.linspace(0, 1, steps).view(1, -1, 1)
        pts = torch.round(p0.unsqueeze(1) + t * (p1 - p0).unsqueeze(1)).long().reshape(-1, 2)
        ok = (pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
        pts = pts[ok]
        for c in range(3):
            canvas[c, pts[:, 1], pts[:, 0]] = colour[c]
    return canvas.clamp(0, 1).unsqueeze(0)


def solve_match_pairs(group: list, cfg: MatchConfig, device: torch.device) -> list:
    """Match each loaded pair ``(item, image_a, image_b, H_gt or None)`` of ``group``; one Outcome per pair.

    For the batch engine (:class:`gdvision.tasks.match.MatchJob`).
    """
    from gdvision.errors import GdvisionError
    from gdvision.runs.engine import Outcome

    outcomes = []
    for item, img_a, img_b, gt in group:
        try:
            res = match_images(img_a.tensor(device), img_b.tensor(device), cfg)
            hgt = None if gt is None else torch.from_numpy(gt)
            rec = describe_match(
                res,
                cfg,
                (img_a.width, img_a.height),
                (img_b.width, img_b.height),
                device,
                hgt,
                (str(img_a.path), str(img_b.path)),
            )
            outcomes.append(Outcome(item, rec))
        except GdvisionError as exc:
            outcomes.append(Outcome(item, error=str(exc)))
    return outcomes


def features_to_set(f: Features):
    """The features of a single image as a :class:`gdvision.io.keypoints.KeypointSet` (numpy)."""
    from gdvision.io.keypoints import KeypointSet

    return KeypointSet(
        f.xy.detach().cpu().double().numpy(),
        f.scale.detach().cpu().double().numpy(),
        f.angle.detach().cpu().double().numpy(),
        f.desc.detach().cpu().double().numpy(),
    )
