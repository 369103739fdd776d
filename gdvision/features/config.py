"""Settings of the feature pipeline: :class:`FeatureConfig` (detector, descriptor) and :class:`MatchConfig`.

The configs own their defaults and their validation: :meth:`FeatureConfig.validate` and
:meth:`MatchConfig.validate` raise :class:`~gdvision.errors.UsageError` naming the field (``ratio must be <= 1,
got 1.5``); the CLI maps field names to its flags. This module does not import torch, so a bad option value is
reported before torch is loaded.

Example:
    >>> MatchConfig(matcher="smnn").validate()
    >>> MatchConfig(ratio=1.5).validate()
    Traceback (most recent call last):
    ...
    gdvision.errors.UsageError: ratio must be <= 1, got 1.5
    >>> FeatureConfig(detector="harris").validate()
    Traceback (most recent call last):
    ...
    gdvision.errors.UsageError: unknown detector 'harris': use one of dog, hessian
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gdvision._checks import check_choice, check_number
from gdvision.errors import UsageError

DETECTORS = ("dog", "hessian")
MATCHERS = ("ratio", "mnn", "smnn")
MATCH_MODELS = ("homography", "fundamental")
LAYOUTS = ("gdvision", "opencv")


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
        layout: ``gdvision`` (the pipeline above) or ``opencv``: a differentiable replica of OpenCV's SIFT
            (:mod:`gdvision.features.opencv_layout`: its doubled octave, pixel-grid orientation histogram and
            descriptor layout; uses ``contrast_threshold``, ``edge_threshold``, ``sigma0``, ``scales_per_octave``
            and ``max_features``, 0 = all as OpenCV's ``nfeatures=0``; DoG only).
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
    layout: str = "gdvision"

    def validate(self) -> None:
        """UsageError naming the first field that cannot work."""
        check_choice(self.detector, "detector", DETECTORS)
        check_number(self.max_features, "max_features", low=0, high=10_000_000, integer=True)
        check_number(self.contrast_threshold, "contrast_threshold", low=0, high=1, high_open=True)
        check_number(self.edge_threshold, "edge_threshold", low=1, low_open=True, high=1e6)
        check_number(self.sigma0, "sigma0", low=0.5, high=10)
        check_number(self.scales_per_octave, "scales_per_octave", low=1, high=10, integer=True)
        check_number(self.double_max_pixels, "double_max_pixels", low=0, integer=True)
        check_number(self.patch_size, "patch_size", low=4, high=64, integer=True)
        check_number(self.chunk, "chunk", low=1, integer=True)
        check_number(self.max_orientations, "max_orientations", low=1, high=8, integer=True)
        check_choice(self.layout, "layout", LAYOUTS)
        if self.layout == "opencv" and self.detector != "dog":
            raise UsageError(f"layout opencv works only with detector dog, got {self.detector}")


@dataclass
class MatchConfig:
    """Settings of :func:`gdvision.features.match.match_images`.

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
        """UsageError naming the first field that cannot work (the features' fields first)."""
        self.features.validate()
        check_choice(self.matcher, "matcher", MATCHERS)
        check_number(self.ratio, "ratio", low=0, low_open=True, high=1)
        check_choice(self.model, "model", MATCH_MODELS)
        check_number(self.ransac_threshold, "ransac_threshold", low=0, low_open=True, high=1000)
        check_number(self.confidence, "confidence", low=0, low_open=True, high=1, high_open=True)
        check_number(self.max_iters, "max_iters", low=1, high=10_000_000, integer=True)
        check_number(self.seed, "seed", integer=True)
        if self.refine and self.model != "homography":
            raise UsageError(f"refine works only with model homography, got {self.model}")


__all__ = ["DETECTORS", "LAYOUTS", "MATCHERS", "MATCH_MODELS", "FeatureConfig", "MatchConfig"]
