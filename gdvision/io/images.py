"""Image and result I/O.

Reading returns float32 tensors shaped (B=1, C, H, W) with values in [0, 1]:

- PNG, JPEG, TIFF, PGM/PPM/PNM, BMP: 8-bit images are divided by 255, 16-bit ones by 65535.
- Gray images give C=1, RGB C=3. RGBA gives C=3 plus a validity mask (1,1,H,W) = alpha > 0;
  gray+alpha gives C=1 plus the mask.
- ``.npy`` arrays (H,W) or (H,W,C): integer arrays are scaled by their dtype's maximum, float arrays are
  taken as they are (they must be finite; they are not clipped, so multispectral reflectances survive).
- Multi-page TIFFs become one channel per page (never alpha); a single-page TIFF's last sample is alpha only
  when the file says so (ExtraSamples).
- Images over :func:`gdvision.io.png16.pixel_limit` pixels (Pillow's decompression-bomb limit) are refused
  before they are decoded (PNG of any depth, JPEG, TIFF, ...).

Every write is atomic: the bytes go to a temporary file in the destination folder, which is then renamed
over the target, so a crash never leaves a half-written result and readers never see one.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gdvision.color import to_gray  # noqa: F401  (re-exported: callers import it from here too)
from gdvision.errors import InputError, UsageError

if TYPE_CHECKING:
    import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm", ".ppm", ".pnm", ".pbm", ".bmp", ".npy")


@dataclass
class LoadedImage:
    """An image as loaded from disk.

    Attributes:
        array: float32 array (H, W, C) in [0, 1] (float ``.npy`` inputs keep their values).
        mask: float32 array (H, W) of 0/1 validity from an alpha channel, or None.
        bit_depth: bits per sample of the source (8, 16, 32 for float arrays, 1 for bilevel).
        path: the file it came from.
    """

    array: np.ndarray
    mask: np.ndarray | None
    bit_depth: int
    path: Path

    @property
    def height(self) -> int:
        return int(self.array.shape[0])

    @property
    def width(self) -> int:
        return int(self.array.shape[1])

    @property
    def channels(self) -> int:
        return int(self.array.shape[2])

    def tensor(self, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> torch.Tensor:
        """The image as a (1, C, H, W) tensor on ``device``."""
        import torch

        t = torch.from_numpy(np.ascontiguousarray(self.array.transpose(2, 0, 1)))[None]
        return t.to(device=device, dtype=dtype or torch.float32)

    def mask_tensor(self, device: str | torch.device = "cpu") -> torch.Tensor | None:
        """The alpha validity mask as a (1, 1, H, W) float tensor, or None."""
        if self.mask is None:
            return None
        import torch

        return torch.from_numpy(np.ascontiguousarray(self.mask))[None, None].to(device)


def _scale_integers(arr: np.ndarray) -> tuple[np.ndarray, int]:
    if arr.dtype == np.bool_:
        return arr.astype(np.float32), 1
    if arr.dtype in (np.uint8, np.uint16):
        # float32 division gives k / 255 and k / 65535 correctly rounded, the same values as the float64 quotient
        # rounded to float32 below (checked for every k in the tests), in one pass instead of three
        peak = 255 if arr.dtype == np.uint8 else 65535
        return np.divide(arr, np.float32(peak), dtype=np.float32), 8 if peak == 255 else 16
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        bits = 16 if info.max > 255 else 8
        if info.max > 65535:
            bits = info.bits
        return (arr.astype(np.float64) / float(info.max)).astype(np.float32), bits
    if np.issubdtype(arr.dtype, np.floating):
        return arr.astype(np.float32), 32
    raise InputError(f"unsupported pixel type {arr.dtype}")


_TIFF_ALPHA = (1, 2)  # ExtraSamples values: associated and unassociated alpha


def _decode_tiff(path: Path) -> tuple[np.ndarray, bool]:
    """Pages of a TIFF as channels (H, W, C), and whether the last channel is alpha.

    Every page of a multi-page TIFF is one channel (or its samples, for pages with several), never alpha; reduced
    resolution pages (thumbnails, pyramid levels) are skipped. A single page keeps its samples, and its last one
    is alpha only when the file declares it (ExtraSamples).
    """
    import tifffile

    from gdvision.io.png16 import check_pixels

    with tifffile.TiffFile(path) as tif:
        pages = [pg for pg in tif.pages if not getattr(pg, "is_reduced", False)]
        if not pages:
            raise ValueError("no image pages")
        first = pages[0]
        size, dtype = (first.imagelength, first.imagewidth), first.dtype
        for k, pg in enumerate(pages):
            if (pg.imagelength, pg.imagewidth) != size or pg.dtype != dtype:
                raise ValueError(
                    f"page {k + 1} is {pg.imagewidth}x{pg.imagelength} {pg.dtype}, page 1 is "
                    f"{size[1]}x{size[0]} {dtype}: the pages of a multi-page TIFF must match"
                )
        check_pixels(size[1], size[0])
        channels = []
        for pg in pages:
            arr = pg.asarray()
            if pg.axes == "SYX":
                arr = np.moveaxis(arr, 0, -1)
            elif arr.ndim == 2:
                arr = arr[:, :, None]
            if arr.ndim != 3 or arr.shape[:2] != size:
                raise ValueError(f"unsupported TIFF page layout {pg.axes} {tuple(arr.shape)}")
            channels.append(arr)
        extra = tuple(first.extrasamples)
        alpha = len(pages) == 1 and bool(extra) and extra[-1] in _TIFF_ALPHA
    return (channels[0] if len(channels) == 1 else np.concatenate(channels, axis=2)), alpha


def _decode(path: Path) -> tuple[np.ndarray, bool]:
    """The decoded array of ``path`` and whether its last channel is an alpha channel."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False), False
        except Exception as exc:  # noqa: BLE001 - any decoder failure is an input error
            raise InputError(f"cannot read array '{path}': {exc}") from None
    from gdvision.io.png16 import decode_png16, needs_own_decoder

    try:
        if suffix in (".tif", ".tiff"):
            return _decode_tiff(path)
        if suffix == ".png":
            data = path.read_bytes()
            arr = decode_png16(data) if needs_own_decoder(data) else _plain_png(data)
            if arr is None:
                arr = _imageio_read(path)
        else:
            arr = _imageio_read(path)
        return arr, arr.ndim == 3 and arr.shape[2] in (2, 4)  # gray+alpha or RGBA
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"cannot read image '{path}': {_decoder_reason(exc, path)}") from None


def _imageio_read(path: Path) -> np.ndarray:
    """``imageio.v3.imread(path)``, imported on first use (0.15 s that a folder of plain PNGs never needs)."""
    import imageio.v3 as iio

    return iio.imread(path)


def _plain_png(data: bytes) -> np.ndarray | None:
    """Pillow's decode of a single-frame L, LA, RGB or RGBA PNG from its bytes, as ``imageio.v3.imread`` gives it.

    Saves imageio's per-file overhead (about 0.8 ms of 2.6 ms for a 256x256 RGB file). None for any other mode
    (palette, 1-bit, 16-bit gray, animated), which imageio decodes.
    """
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        if im.mode not in ("L", "LA", "RGB", "RGBA") or getattr(im, "n_frames", 1) != 1:
            return None
        return np.asarray(im)


def _decoder_reason(exc: BaseException, path: Path) -> str:
    """A decoder's failure in the project's words: no quoting of the path again, no stray backticks.

    Example:
        >>> _decoder_reason(OSError("Could not find a backend to open `x.png`` with iomode `r`."), Path("x.png"))
        'not a readable image (unknown or corrupt format)'
        >>> _decoder_reason(OSError("image file is truncated"), Path("x.png"))
        'image file is truncated'
    """
    text = str(exc).strip().splitlines()[0].strip() if str(exc).strip() else type(exc).__name__
    unknown = ("could not find a backend", "cannot identify image file", "requires a buffer of at least")
    if any(s in text.lower() for s in unknown):
        return "not a readable image (unknown or corrupt format)"
    for name in (str(path), path.name):
        text = text.replace(f"`{name}`", "the file").replace(f"'{name}'", "the file")
    return text.replace("`", "'")


def read_image(path: str | os.PathLike[str]) -> LoadedImage:
    """Read an image or array file into a :class:`LoadedImage` (H, W, C) float32 in [0, 1].

    Raises:
        UsageError: the file does not exist or is a folder.
        InputError: the file cannot be decoded, is empty, or holds non-finite values.

    Example:
        >>> img = read_image("sample_data/chelsea.png")  # doctest: +SKIP
        >>> img.tensor().shape  # (1, 3, 300, 451)  # doctest: +SKIP
    """
    p = Path(path)
    if not p.exists():
        raise UsageError(f"file not found: '{p}'")
    if p.is_dir():
        raise UsageError(f"expected an image file, got a folder: '{p}'")
    if p.stat().st_size == 0:
        raise InputError(f"empty file: '{p}'")
    raw, has_alpha = _decode(p)
    if raw.ndim == 2:
        raw = raw[:, :, None]
    if raw.ndim != 3 or raw.shape[0] == 0 or raw.shape[1] == 0 or raw.shape[2] == 0:
        raise InputError(f"'{p}': unsupported image shape {tuple(raw.shape)}")
    arr, bits = _scale_integers(raw)
    if bits == 32 and not np.isfinite(arr).all():  # only float sources can hold them
        raise InputError(f"'{p}': image contains NaN or infinite values")
    mask = None
    if has_alpha and arr.shape[2] > 1:  # gray+alpha or RGBA: alpha becomes the validity mask
        mask = (arr[:, :, -1] > 0).astype(np.float32)
        arr = arr[:, :, :-1]
    return LoadedImage(np.ascontiguousarray(arr), mask, bits, p)


# ----------------------------------------------------------------------------------------- writing


def _umask() -> int:
    """The process umask (read once: setting it to read it is not thread-safe)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


_UMASK: int | None = None


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename).

    A new file gets the normal mode (0666 less the umask: 0644 under umask 022); a replaced file keeps its mode.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = os.stat(p).st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return p


def _as_hwc(image: Any) -> np.ndarray:
    """Accept a tensor or array shaped (1,C,H,W), (C,H,W) with C<=4, (H,W,C) or (H,W); return (H,W,C)."""
    if hasattr(image, "detach"):
        image = image.detach().float().cpu().numpy()
    arr = np.asarray(image)
    if arr.ndim == 4:
        if arr.shape[0] != 1:
            raise ValueError(f"expected a single image, got batch of {arr.shape[0]}")
        arr = arr[0].transpose(1, 2, 0)
    elif arr.ndim == 3 and arr.shape[0] in (1, 2, 3, 4) and arr.shape[2] not in (1, 2, 3, 4):
        arr = arr.transpose(1, 2, 0)
    elif arr.ndim == 2:
        arr = arr[:, :, None]
    return arr


def encode_png(image: Any, bits: int = 8, compress_level: int | None = None) -> bytes:
    """Encode an image in [0, 1] as PNG bytes (8 or 16 bits; values are clipped and rounded).

    ``compress_level`` 0-9 (zlib; None: 6). 1 is several times faster (zlib's run-length strategy, as
    ``cv2.imwrite`` uses) for files about as small on filtered images.
    """
    from gdvision.io.png16 import encode_png_array

    if bits not in (8, 16):
        raise UsageError(f"PNG bit depth must be 8 or 16, not {bits}")
    arr = _as_hwc(image)
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float32)
    elif not np.isfinite(arr).all():
        arr = np.nan_to_num(arr, nan=0.0, posinf=1.0, neginf=0.0)
    peak = 255 if bits == 8 else 65535
    q = np.clip(np.rint(arr * np.float32(peak)), 0, peak).astype(np.uint8 if bits == 8 else np.uint16)
    return encode_png_array(q, 6 if compress_level is None else compress_level)


def write_png(path: str | os.PathLike[str], image: Any, bits: int = 8) -> Path:
    """Atomically write ``image`` (values in [0, 1]) as an 8- or 16-bit PNG."""
    return atomic_write_bytes(path, encode_png(image, bits))


def write_npy(path: str | os.PathLike[str], array: Any) -> Path:
    """Atomically write an array (or tensor) as ``.npy``."""
    import io as _io

    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    buf = _io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return atomic_write_bytes(path, buf.getvalue())


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (NaN/inf become null)."""
    return atomic_write_bytes(path, (dumps_json(obj, indent=2) + "\n").encode())


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, np.generic):
        return _clean(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "detach"):
        return _clean(obj.detach().cpu().tolist())
    return obj


def dumps_json(obj: Any, indent: int | None = None) -> str:
    """JSON text for ``obj``; numpy/torch values are converted, non-finite floats become null."""
    return json.dumps(_clean(obj), indent=indent, allow_nan=False)


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a UTF-8 JSON file (a leading byte-order mark is allowed) with one-line errors.

    Raises:
        UsageError: the file does not exist or is a folder.
        InputError: it cannot be read, or is not valid JSON.
    """
    p = Path(path)
    if not p.exists():
        raise UsageError(f"file not found: '{p}'")
    if p.is_dir():
        raise UsageError(f"expected a JSON file, got a folder: '{p}'")
    try:
        return json.loads(p.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"'{p}' is not valid JSON: {exc}") from None
    except OSError as exc:
        raise InputError(f"cannot read '{p}': {exc.strerror or exc}") from None


def read_homography(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a 3x3 homography from a JSON file ``{"H": [[...],[...],[...]]}`` (or a bare 3x3 list).

    Raises InputError when the matrix is missing, not 3x3, non-finite or singular.
    """
    data = read_json(path)
    mat = data.get("H") if isinstance(data, dict) else data
    try:
        h = np.asarray(mat, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"'{path}': field 'H' is not a 3x3 numeric matrix") from None
    if h.shape != (3, 3):
        raise InputError(f"'{path}': field 'H' must be 3x3, got shape {h.shape}")
    if not np.isfinite(h).all():
        raise InputError(f"'{path}': field 'H' contains non-finite values")
    if abs(np.linalg.det(h)) < 1e-12 * max(1.0, np.abs(h).max() ** 3):
        raise InputError(f"'{path}': field 'H' is singular")
    return h / h[2, 2] if abs(h[2, 2]) > 1e-12 else h


def list_images(inputs: list[str]) -> list[Path]:
    """Expand files, folders (non-recursive, sorted) and glob patterns into a list of image paths."""
    import glob

    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file()))
        elif any(ch in item for ch in "*?["):
            out.extend(sorted(Path(g) for g in glob.glob(item, recursive=True) if Path(g).is_file()))
        else:
            out.append(p)
    return out
