"""``gdvision features`` as a task: keypoints and SIFT descriptors of images, one keypoint file per image.

Output names: with ``--out`` the one image's file is that path; with ``--out-dir`` each image ``<stem>.<ext>``
becomes ``<out_dir>/<stem>.sift`` (Lowe's format, the default) or ``<stem>.txt`` (``vlfeat``). Two inputs that
would get one name (``in/a.png`` and ``in/a.jpg``, or one image given twice) are refused before anything is
computed (exit 2, naming both): run them into different folders. Every output is claimed through the
run's :class:`~gdvision.tasks.outputs.OutputPolicy` first: never an input, never outside ``--out-dir``, an
existing file only with ``--overwrite``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gdvision.errors import GdvisionError, UsageError
from gdvision.features.config import FeatureConfig
from gdvision.io.images import read_image
from gdvision.io.keypoints import KeypointSet, format_keypoints, guess_format, write_keypoints
from gdvision.tasks.outputs import OutputPolicy, real_path


def features_to_set(f: Any) -> KeypointSet:
    """The :class:`~gdvision.features.match.Features` of one image as a :class:`KeypointSet` (numpy, float64)."""
    return KeypointSet(
        f.xy.detach().cpu().double().numpy(),
        f.scale.detach().cpu().double().numpy(),
        f.angle.detach().cpu().double().numpy(),
        f.desc.detach().cpu().double().numpy(),
    )


def output_suffix(fmt: str | None) -> str:
    """The file suffix ``--out-dir`` gives a keypoint file in ``fmt`` (None = lowe): ``.sift`` or ``.txt``.

    >>> output_suffix(None), output_suffix("vlfeat")
    ('.sift', '.txt')
    """
    return ".sift" if (fmt or "lowe") == "lowe" else ".txt"


def output_paths(images: Sequence[Path], out: Path | None, out_dir: Path | None, fmt: str | None) -> list[Path]:
    """Where each image's keypoints go; UsageError when two images would get one file (naming both).

    >>> output_paths([Path("in/a.png"), Path("in/b.jpg")], None, Path("ft"), None)
    [PosixPath('ft/a.sift'), PosixPath('ft/b.sift')]
    >>> output_paths([Path("in/a.png"), Path("in/a.jpg")], None, Path("ft"), None)
    Traceback (most recent call last):
    ...
    gdvision.errors.UsageError: inputs 'in/a.png' and 'in/a.jpg' would both write 'ft/a.sift': ...
    """
    if out is not None:
        if len(images) != 1:
            raise UsageError(f"--out takes one image, got {len(images)}: use --out-dir")
        return [out]
    if out_dir is None:
        raise UsageError("give --out FILE (one image) or --out-dir DIR")
    targets = [out_dir / (p.stem + output_suffix(fmt)) for p in images]
    first: dict[Path, int] = {}
    for i, t in enumerate(targets):
        j = first.setdefault(real_path(t), i)
        if j != i:
            raise UsageError(
                f"inputs '{images[j]}' and '{images[i]}' would both write '{t}': give each its own --out-dir "
                "(or --out) so neither is lost"
            )
    return targets


def run_features(
    images: Sequence[Path],
    cfg: FeatureConfig,
    device: Any = "cpu",
    out: Path | None = None,
    out_dir: Path | None = None,
    fmt: str | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Detect and describe each image, write its keypoint file; returns ``(results, failures)``.

    All output paths are planned and claimed before the first image is read (UsageError, exit 2, on a name clash,
    an output that is an input, or an existing output without ``overwrite``). With several images a failing one
    is recorded in ``failures`` (``{"image", "error"}``) and the others go on; a single image's error is raised.
    ``results``: ``{"image", "out", "keypoints"}`` per written file. ``progress(done, total)`` after each image.
    ``device``: a device or its name (``auto``, ``cpu``, ``cuda:1``...).

    With neither ``out`` nor ``out_dir`` one image's keypoints are not written anywhere: its result carries them as
    ``"text"`` (the file's contents in ``fmt``, default ``lowe``) with ``"out": None``, for the CLI to print.
    """
    if out is None and out_dir is None:
        if len(images) != 1:
            raise UsageError(f"give --out-dir DIR for {len(images)} images (one image without --out prints to stdout)")
        return [_to_text(images[0], cfg, device, fmt or "lowe")], []
    targets = output_paths(images, out, out_dir, fmt)
    policy = OutputPolicy(out_dir, inputs=images, overwrite=overwrite)
    policy.check_out_dir()
    claimed = [policy.claim(t, owner=f"'{img}'") for img, t in zip(images, targets, strict=True)]
    from gdvision.device import resolve_device  # torch is imported from here on, after the usage checks
    from gdvision.features.match import detect_and_describe

    device = resolve_device(str(device))
    results: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    for i, (img, target, path) in enumerate(zip(images, targets, claimed, strict=True)):
        try:
            f = detect_and_describe(read_image(img).tensor(device), cfg)
            write_keypoints(path, features_to_set(f), fmt or guess_format(target))
            results.append({"image": str(img), "out": str(target), "keypoints": len(f)})
        except GdvisionError as exc:
            if len(images) == 1:
                raise
            failures.append({"image": str(img), "error": str(exc)})
        if progress is not None:
            progress(i + 1, len(images))
    return results, failures


def _to_text(image: Path, cfg: FeatureConfig, device: Any, fmt: str) -> dict[str, Any]:
    """One image's keypoints as the text of a keypoint file in ``fmt`` (nothing written)."""
    from gdvision.device import resolve_device
    from gdvision.features.match import detect_and_describe

    f = detect_and_describe(read_image(image).tensor(resolve_device(str(device))), cfg)
    return {"image": str(image), "out": None, "keypoints": len(f), "text": format_keypoints(features_to_set(f), fmt)}


__all__ = ["features_to_set", "output_paths", "output_suffix", "run_features"]
