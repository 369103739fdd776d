"""A small PNG codec: 16-bit colour images (which Pillow, behind imageio, mishandles) and fast 8/16-bit writing.

Pillow decodes 16-bit RGB/RGBA PNGs to 8 bits and cannot encode them, so gdvision reads those itself. Writing
(8 or 16 bits, gray, gray+alpha, RGB, RGBA) is done here too: one vectorised Up filter and zlib, which at level 1
with zlib's run-length strategy (what ``cv2.imwrite`` uses) is about 4x faster than Pillow's encoder at its
level 1, for files no bigger. Only non-interlaced, non-palette PNGs are decoded here; everything else goes through
imageio.

Decoding obeys the pixel limit of the 8-bit path (:func:`pixel_limit`, Pillow's decompression-bomb limit): the
header is checked before anything is allocated, and the compressed data is inflated only up to the size the
header announces, so a small file that declares a huge image, or inflates to more than it declares, fails fast.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

_SIG = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


def png_header(data: bytes) -> tuple[int, int, int, int, int] | None:
    """``(width, height, bit_depth, color_type, interlace)`` from PNG bytes, or None if not a PNG."""
    if len(data) < 33 or data[:8] != _SIG or data[12:16] != b"IHDR":
        return None
    w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    return w, h, depth, ctype, interlace


def pixel_limit() -> int | None:
    """The largest image (in pixels) any decoder accepts: twice ``PIL.Image.MAX_IMAGE_PIXELS``, None for no limit.

    That is where Pillow, which decodes 8-bit images, refuses a file as a decompression bomb; setting
    ``PIL.Image.MAX_IMAGE_PIXELS`` changes the limit for every format alike.

    Example:
        >>> pixel_limit() is None or pixel_limit() >= 100_000_000
        True
    """
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    return None if limit is None else 2 * int(limit)


def check_pixels(width: int, height: int) -> None:
    """ValueError when a ``width`` x ``height`` image exceeds :func:`pixel_limit` (call it before allocating).

    Example:
        >>> check_pixels(60000, 60000)
        Traceback (most recent call last):
        ...
        ValueError: image size 60000x60000 (3600000000 pixels) exceeds the limit of 178956970 pixels
    """
    limit = pixel_limit()
    if limit is not None and width * height > limit:
        raise ValueError(f"image size {width}x{height} ({width * height} pixels) exceeds the limit of {limit} pixels")


def needs_own_decoder(data: bytes) -> bool:
    """True for 16-bit colour or gray+alpha PNGs (the cases Pillow truncates to 8 bits)."""
    hdr = png_header(data)
    return hdr is not None and hdr[2] == 16 and hdr[3] in (2, 4, 6) and hdr[4] == 0


def _unfilter_rows(rows: np.ndarray, bpp: int) -> np.ndarray:
    """Undo the per-row filters of rows without Average or Paeth ones: (H, 1 + stride) -> (H, stride) uint8."""
    h, stride = rows.shape[0], rows.shape[1] - 1
    out = np.zeros((h, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.uint8)
    for y in range(h):
        ftype, filt = rows[y, 0], rows[y, 1:]
        if ftype == 0:
            cur = filt
        elif ftype == 1:  # Sub: running sum over pixels, per byte position, modulo 256
            cur = (np.cumsum(filt.reshape(-1, bpp).astype(np.int64), axis=0) & 0xFF).astype(np.uint8).reshape(-1)
        else:  # Up
            cur = filt + prev  # uint8 arithmetic wraps modulo 256
        out[y] = cur
        prev = out[y]
    return out


def _unfilter_wavefront(rows: np.ndarray, bpp: int) -> np.ndarray:
    """Undo any mix of the five PNG filters: (H, 1 + stride) -> (H, stride) uint8.

    A pixel depends on its left, upper and upper-left neighbours only, so every anti-diagonal of pixels is decoded
    at once: H + W - 1 vectorised steps instead of a Python loop over every pixel of the Average and Paeth rows.
    """
    h = rows.shape[0]
    w = (rows.shape[1] - 1) // bpp
    ftype = rows[:, 0].astype(np.int16)
    filt = rows[:, 1:].reshape(h, w, bpp).astype(np.int16)
    out = np.zeros((h + 1, w + 1, bpp), dtype=np.int16)  # a zero row above and a zero column to the left
    ys_all = np.arange(h)
    for t in range(h + w - 1):
        ys = ys_all[max(0, t - w + 1) : min(h, t + 1)]
        xs = t - ys
        a, b, c = out[ys + 1, xs], out[ys, xs + 1], out[ys, xs]  # left, up, up-left
        p = a + b - c
        pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        ft = ftype[ys, None]
        pred = np.select([ft == 1, ft == 2, ft == 3, ft == 4], [a, b, (a + b) >> 1, paeth], 0)
        out[ys + 1, xs + 1] = (filt[ys, xs] + pred) & 0xFF
    return out[1:, 1:].astype(np.uint8).reshape(h, w * bpp)


def decode_png16(data: bytes) -> np.ndarray:
    """Decode a 16-bit non-interlaced PNG to a uint16 array (H, W, C). Raises ValueError on bad data."""
    hdr = png_header(data)
    if hdr is None:
        raise ValueError("not a PNG file")
    w, h, depth, ctype, interlace = hdr
    if depth != 16 or ctype not in _CHANNELS or interlace:
        raise ValueError("only 16-bit, non-interlaced, non-palette PNGs are handled here")
    if w == 0 or h == 0:
        raise ValueError(f"bad PNG size {w}x{h}")
    check_pixels(w, h)
    pos, idat = 8, []
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            idat.append(data[pos + 8 : pos + 8 + length])
        elif kind == b"IEND":
            break
        pos += 12 + length
    c = _CHANNELS[ctype]
    bpp = 2 * c
    stride = w * bpp
    expected = h * (stride + 1)
    # inflate no more than the header announces (one byte more tells an over-long stream)
    raw = np.frombuffer(zlib.decompressobj().decompress(b"".join(idat), expected + 1), dtype=np.uint8)
    if raw.size < expected:
        raise ValueError("truncated PNG data")
    if raw.size > expected:
        raise ValueError("PNG data longer than its header announces")
    rows = raw.reshape(h, stride + 1)
    if rows[:, 0].max() > 4:
        raise ValueError(f"bad PNG filter type {rows[:, 0].max()}")
    out = _unfilter_wavefront(rows, bpp) if rows[:, 0].max() >= 3 else _unfilter_rows(rows, bpp)
    return out.view(">u2").reshape(h, w, c).astype(np.uint16)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def encode_png_array(arr: np.ndarray, level: int = 6) -> bytes:
    """Encode a uint8 or uint16 array (H, W) or (H, W, C) with C in 1..4 as an 8- or 16-bit PNG.

    Every row gets the Up filter. ``level`` is zlib's 0-9; at level 1 zlib's run-length strategy is used
    (like ``cv2.imwrite``'s default), otherwise its default strategy.

    Example:
        >>> encode_png_array(np.zeros((4, 5, 3), np.uint8))[:8] == _SIG
        True
    """
    a = np.asarray(arr)
    if a.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"PNG arrays must be uint8 or uint16, not {a.dtype}")
    if a.ndim == 2:
        a = a[:, :, None]
    h, w, c = a.shape
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    depth = 8 * a.dtype.itemsize
    rows = np.ascontiguousarray(a.astype(">u2") if depth == 16 else a).view(np.uint8).reshape(h, -1)
    filtered = np.empty((h, rows.shape[1] + 1), np.uint8)
    filtered[:, 0] = 2
    filtered[0, 0] = 0
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # uint8 arithmetic wraps modulo 256, as PNG wants
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0)
    z = zlib.compressobj(level, zlib.DEFLATED, 15, 8, zlib.Z_RLE if level == 1 else zlib.Z_DEFAULT_STRATEGY)
    idat = z.compress(filtered.data) + z.flush()
    return _SIG + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
