"""Writing image files: :func:`write_image` and its encoding helpers (the streamed PNG
writer and its chunks, the ICC chunk, the 16-bit TIFF writer, the atomic write and its errors).
"""

from __future__ import annotations

import functools
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
import tifffile
from PIL import Image

from restormer.files import write_atomically
from restormer.io.images import (
    _PNG_SIGNATURE,
    _STRIP_BYTES,
    _SUFFIX_FORMATS,
    _SUFFIX_LIST,
    ImageFileError,
    _error,
    _max_value,
    from_float,
)


def write_image(
    path: str | Path,
    pixels: np.ndarray,
    *,
    alpha: np.ndarray | None = None,
    icc_profile: bytes | None = None,
    bit_depth: int | None = None,
    overwrite: bool = False,
    quality: int = 95,
) -> Path:
    """Encode ``pixels`` (and ``alpha``) in the format named by the suffix, atomically.

    ``pixels`` is H x W or H x W x C (C 1 or 3), uint8, uint16 or float in [0, 1]; float needs
    ``bit_depth``. 16 bits are kept for PNG and TIFF, other formats get 8. JPEG (and BMP) drop
    the alpha channel. The file appears complete or not at all, and an existing file is only
    replaced when ``overwrite`` is true. ``quality`` (1-100) applies to JPEG and WebP.
    Returns the path written.

    The encoder streams into the temporary file rather than building the file in memory; PNG
    (every depth and layout) and 16-bit TIFF are encoded a strip of rows at a time, so writing
    them needs no memory in proportion to the image beyond ``pixels`` itself.
    """
    target = Path(path)
    name = str(path)
    fmt = _SUFFIX_FORMATS.get(target.suffix.lower())
    if fmt is None:
        raise _error(name, f"unsupported output format '{target.suffix}' (use {_SUFFIX_LIST})")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be between 1 and 100, not {quality}")
    depth = _resolve_bit_depth(pixels, bit_depth)
    if fmt not in ("PNG", "TIFF"):
        depth = 8
    samples = _prepare_pixels(pixels, depth)
    if alpha is not None:
        alpha = _prepare_alpha(alpha, depth, samples.shape[:2])
    if not overwrite and os.path.lexists(target):
        raise _error(name, "already exists (use --overwrite)")
    if target.is_dir():
        raise _error(name, "is a directory")
    encoder = _encode(fmt, samples, alpha, icc_profile, quality)
    _write_atomically(target, encoder, fmt=fmt, overwrite=overwrite, name=name)
    return target


def _resolve_bit_depth(pixels: np.ndarray, bit_depth: int | None) -> int:
    dtype = np.asarray(pixels).dtype
    if bit_depth is None:
        if np.issubdtype(dtype, np.floating):
            raise ValueError("bit_depth is required when pixels are float")
        bit_depth = 16 if dtype == np.uint16 else 8
    _max_value(bit_depth)  # validates
    return bit_depth


def _convert_depth(samples: np.ndarray, bit_depth: int) -> np.ndarray:
    """Bring uint8/uint16 samples to the requested depth (x * 257, or x / 257 rounded)."""
    if bit_depth == 8 and samples.dtype == np.uint16:
        # (x + 128) // 257 is round(x / 257): x / 257 is never exactly halfway for integer x.
        return ((samples.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if bit_depth == 16 and samples.dtype == np.uint8:
        return samples.astype(np.uint16) * np.uint16(257)
    return samples


def _to_depth(arr: np.ndarray, bit_depth: int, what: str) -> np.ndarray:
    if np.issubdtype(arr.dtype, np.floating):
        return from_float(arr, bit_depth)
    if arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{what} must be uint8, uint16 or float, not {arr.dtype}")
    return _convert_depth(arr, bit_depth)


def _prepare_pixels(pixels: np.ndarray, bit_depth: int) -> np.ndarray:
    """Validate and normalise to H x W x C (C 1 or 3) at ``bit_depth``."""
    arr = np.asarray(pixels)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3) or 0 in arr.shape:
        raise ValueError(f"pixels must be H x W or H x W x C with C 1 or 3, not {arr.shape}")
    return _to_depth(arr, bit_depth, "pixels")


def _prepare_alpha(alpha: np.ndarray, bit_depth: int, size: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(alpha)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.shape != size:
        raise ValueError(f"alpha must be H x W = {size}, not {arr.shape}")
    return _to_depth(arr, bit_depth, "alpha")


class _EncodeError(Exception):
    """An encoder failed while streaming into the file (as opposed to the file's own I/O)."""


def _encode(
    fmt: str, samples: np.ndarray, alpha: np.ndarray | None, icc: bytes | None, quality: int
) -> Callable[[BinaryIO], None]:
    """The function that writes the encoded file into a (temporary) file object.

    Nothing is encoded in memory first; publishing the file is a separate, atomic step. Inside,
    an OSError with an errno is the file's (disk full, I/O error) and passes through; anything
    else an encoder raises becomes an _EncodeError.
    """
    if fmt == "PNG":
        body = functools.partial(_write_png, samples=samples, alpha=alpha, icc=icc)
    elif samples.dtype == np.uint16:
        body = functools.partial(_write_tiff16, samples=samples, alpha=alpha, icc=icc)
    else:
        body = functools.partial(
            _write_with_pillow, fmt=fmt, samples=samples, alpha=alpha, icc=icc, quality=quality
        )

    def write(file: BinaryIO) -> None:
        try:
            body(file)
        except OSError as exc:
            if exc.errno is not None:
                raise
            raise _EncodeError(_one_line(exc)) from exc
        except (ValueError, cv2.error, struct.error, zlib.error) as exc:
            raise _EncodeError(_one_line(exc)) from exc

    return write


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__  # one line, even from OpenCV


def _write_with_pillow(
    file: BinaryIO,
    *,
    fmt: str,
    samples: np.ndarray,
    alpha: np.ndarray | None,
    icc: bytes | None,
    quality: int,
) -> None:
    """8-bit JPEG, WebP, BMP and TIFF. BMP alpha is dropped: Pillow cannot read it back.

    Pillow holds RGB at 4 bytes per pixel, a copy this cannot avoid; it writes into the file
    as it encodes (WebP excepted, whose encoder returns the whole file).
    """
    if alpha is not None and fmt not in ("JPEG", "BMP"):
        arr = np.concatenate([samples, alpha[..., None]], axis=2)
    else:
        arr = samples
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
    im = Image.fromarray(arr[..., 0] if mode == "L" else arr, mode)
    options: dict[str, object] = {}
    if icc:
        options["icc_profile"] = icc
    if fmt == "JPEG":
        options.update(quality=quality, subsampling=0)  # 4:4:4: no colour bleeding in outputs
    elif fmt == "WEBP":
        options.update(quality=quality)
    elif fmt == "TIFF":
        options.update(compression="tiff_adobe_deflate")
    im.save(file, fmt, **options)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC-32 over type + data."""
    crc = zlib.crc32(payload, zlib.crc32(kind))
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _iccp_chunk(profile: bytes) -> bytes:
    """iCCP chunk: profile name, NUL, compression method 0 (zlib), compressed profile."""
    return _png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(profile))


_PNG_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # samples per pixel -> gray, gray+alpha, RGB, RGBA
# zlib settings: libpng's defaults for 8 bits (what Pillow used here before), OpenCV's faster
# ones for 16 bits (what OpenCV used here before), where level 6 gains next to nothing.
_PNG_ZLIB = {1: (6, zlib.Z_FILTERED), 2: (1, zlib.Z_RLE)}


def _write_png(
    file: BinaryIO, *, samples: np.ndarray, alpha: np.ndarray | None, icc: bytes | None
) -> None:
    """PNG of any depth and layout (ICC profile in iCCP), encoded a strip of rows at a time.

    Each row gets the PNG filter that minimises the sum of its absolute (signed) bytes, libpng's
    and Pillow's heuristic, so files come out as small as theirs.
    """
    height, width, colour = samples.shape
    channels = colour + (alpha is not None)
    item = samples.dtype.itemsize
    header = struct.pack(">IIBBBBB", width, height, 8 * item, _PNG_COLOUR_TYPES[channels], 0, 0, 0)
    file.write(_PNG_SIGNATURE + _png_chunk(b"IHDR", header))
    if icc:
        file.write(_iccp_chunk(icc))
    level, strategy = _PNG_ZLIB[item]
    compressor = zlib.compressobj(level, zlib.DEFLATED, 15, 8, strategy)
    pixel_bytes = channels * item
    rows = max(1, _STRIP_BYTES // (width * pixel_bytes))
    above = np.zeros((1, width * pixel_bytes), np.uint8)  # the row above the first counts as 0
    for top in range(0, height, rows):
        raw = _png_rows(samples, alpha, top, top + rows)
        data = compressor.compress(_png_filter(raw, above, pixel_bytes))
        if data:
            file.write(_png_chunk(b"IDAT", data))
        above = raw[-1:]
    file.write(_png_chunk(b"IDAT", compressor.flush()) + _png_chunk(b"IEND", b""))


def _png_rows(samples: np.ndarray, alpha: np.ndarray | None, top: int, bottom: int) -> np.ndarray:
    """Rows ``top:bottom`` as PNG stores them: n x row-bytes, alpha interleaved, big-endian."""
    block = samples[top:bottom]
    if alpha is not None:
        block = np.concatenate([block, alpha[top:bottom, :, None]], axis=2)
    block = np.ascontiguousarray(block, dtype=">u2" if samples.dtype == np.uint16 else np.uint8)
    return block.reshape(block.shape[0], -1).view(np.uint8)


def _png_filter(raw: np.ndarray, above: np.ndarray, pixel_bytes: int) -> np.ndarray:
    """Filtered scanlines (n x (1 + row bytes), filter type first) of ``raw`` rows.

    All five PNG filters are computed for the whole strip with numpy (bytes modulo 256, the
    left neighbour ``pixel_bytes`` back, ``above`` the row before the strip), then each row
    keeps the one with the smallest sum of absolute values, bytes read as signed.
    """
    n, length = raw.shape
    up = np.empty_like(raw)
    up[0] = above[0]
    up[1:] = raw[:-1]
    left = np.zeros_like(raw)
    left[:, pixel_bytes:] = raw[:, :-pixel_bytes]
    up_left = np.zeros_like(raw)
    up_left[:, pixel_bytes:] = up[:, :-pixel_bytes]
    a, b, c = (x.astype(np.int16) for x in (left, up, up_left))
    dist_a, dist_b, dist_c = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
    paeth = np.where(
        (dist_a <= dist_b) & (dist_a <= dist_c), left, np.where(dist_b <= dist_c, up, up_left)
    )
    average = ((a + b) >> 1).astype(np.uint8)
    candidates = (raw, raw - left, raw - up, raw - average, raw - paeth)  # types 0-4
    costs = np.stack(
        [np.minimum(f, np.negative(f)).sum(axis=1, dtype=np.int64) for f in candidates]
    )
    best = costs.argmin(axis=0)
    out = np.empty((n, length + 1), np.uint8)
    out[:, 0] = best
    for kind, filtered in enumerate(candidates):
        chosen = best == kind
        if chosen.any():
            out[chosen, 1:] = filtered[chosen]
    return out


def _write_tiff16(
    file: BinaryIO, *, samples: np.ndarray, alpha: np.ndarray | None, icc: bytes | None
) -> None:
    """16-bit TIFF via tifffile (uncompressed, unassociated alpha, ICC tag), into the file.

    Uncompressed on purpose: without a predictor (which needs the optional imagecodecs
    package) deflate saves only a few percent on 16-bit photographs and costs seconds. The
    pixels are written straight from the array; with alpha, strips are interleaved one at a
    time instead of concatenating a whole RGBA copy.
    """
    height, width, colour = samples.shape
    photometric = "rgb" if colour == 3 else "minisblack"
    # tifffile takes a stream's name for its own; a file opened from a descriptor has an int.
    handle = tifffile.FileHandle(file, name="image.tif")
    if alpha is None:
        tifffile.imwrite(
            handle,
            samples[..., 0] if colour == 1 else samples,
            photometric=photometric,
            iccprofile=icc or None,
        )
        return
    rows = max(1, _STRIP_BYTES // (width * (colour + 1) * 2))
    strips = (
        np.concatenate([samples[top : top + rows], alpha[top : top + rows, :, None]], axis=2)
        .astype(np.uint16, copy=False)
        .tobytes()
        for top in range(0, height, rows)
    )
    tifffile.imwrite(
        handle,
        strips,
        shape=(height, width, colour + 1),
        dtype=np.uint16,
        rowsperstrip=rows,
        photometric=photometric,
        planarconfig="contig",
        extrasamples=["unassalpha"],
        iccprofile=icc or None,
    )


def _write_atomically(
    target: Path, write: Callable[[BinaryIO], None], *, fmt: str, overwrite: bool, name: str
) -> None:
    """Publish the encoder's output as ``target`` atomically, mapping failures to one line."""
    try:
        write_atomically(target, write, overwrite=overwrite)
    except _EncodeError as exc:  # e.g. WebP wider than 16383
        raise _error(name, f"cannot encode as {fmt}: {exc}") from exc.__cause__
    except FileExistsError as exc:
        raise _error(name, "already exists (use --overwrite)") from exc
    except OSError as exc:
        raise _write_error(name, target, exc) from exc


def _write_error(name: str, target: Path, exc: OSError) -> ImageFileError:
    directory = str(target.parent)
    if isinstance(exc, FileNotFoundError):
        return _error(name, f"cannot write: no such directory '{directory}'")
    if isinstance(exc, NotADirectoryError):
        return _error(name, f"cannot write: '{directory}' is not a directory")
    if isinstance(exc, IsADirectoryError):
        return _error(name, "cannot write: is a directory")
    if isinstance(exc, PermissionError):
        return _error(name, f"cannot write: permission denied in '{directory}'")
    return _error(name, f"cannot write: {(exc.strerror or str(exc)).lower()}")
