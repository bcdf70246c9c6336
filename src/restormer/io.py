"""Image files <-> numpy arrays, without silent quality loss.

Restoration output is only as good as its I/O, so this module is strict where Pillow or OpenCV
alone would be lax:

* the format is detected from the file content, never from the extension;
* 16-bit files stay 16-bit (Pillow silently reduces 16-bit colour PNG/TIFF to 8 bits, so those go
  through OpenCV or tifffile instead);
* EXIF orientation is applied, and the ICC profile is carried so that colours survive a round trip;
* decompression bombs are refused from the header, before any pixel is decoded;
* truncated or corrupt files are errors, never half-grey images;
* writes are atomic and never clobber an existing file unless asked to.

Every problem a user can cause (bad path, bad file, existing output) is reported as a one-line
:class:`ImageFileError` that names the file. Programming errors (wrong array shape or dtype,
invalid arguments) raise plain :class:`ValueError`.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import struct
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import tifffile
from PIL import ExifTags, Image, UnidentifiedImageError

from restormer.files import write_atomically

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "ImageData",
    "ImageFileError",
    "from_float",
    "list_images",
    "read_image",
    "to_float",
    "write_image",
]

DEFAULT_MAX_PIXELS: int = 300_000_000
"""Largest image (width * height) read_image accepts unless told otherwise."""

_SUFFIX_FORMATS: dict[str, str] = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".bmp": "BMP",
}
IMAGE_SUFFIXES: frozenset[str] = frozenset(_SUFFIX_FORMATS)
"""Lower-case file suffixes that list_images picks up and write_image can write."""

_SUFFIX_LIST = ", ".join(_SUFFIX_FORMATS)  # for messages, in a stable, readable order
_READ_FORMATS = ("PNG", "JPEG", "TIFF", "WEBP", "BMP")  # Pillow plugins read_image may use
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (_PNG_SIGNATURE, "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
    (b"BM", "BMP"),
)

# Exceptions that Pillow, OpenCV, tifffile and numpy raise on malformed input. Pillow in
# particular uses SyntaxError, struct.error, IndexError, ... for broken files.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    struct.error,
    zlib.error,
    cv2.error,
    tifffile.TiffFileError,
)

# Pillow modes converted to a supported mode before reading the pixels.
_PILLOW_CONVERSIONS = {
    "1": "L",  # 1-bit -> 0/255 gray
    "CMYK": "RGB",
    "YCbCr": "RGB",
    "RGBX": "RGB",
    "RGBa": "RGBA",
    "La": "LA",
    "PA": "RGBA",
}
_UINT16_GRAY_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
_MODE_DESCRIPTIONS = {
    "F": "32-bit floating-point samples",
    "I": "32-bit integer samples",
    "LAB": "CIELAB colour",
    "HSV": "HSV colour",
}


class ImageFileError(ValueError):
    """One-line, user-facing error naming the file and what is wrong.

    ``str(e)`` reads e.g. ``"photo.png: truncated or corrupt image file"``; a CLI can print it
    as is, without a traceback.
    """


def _error(name: str, problem: str) -> ImageFileError:
    return ImageFileError(f"{name}: {problem}")


@dataclass(eq=False)  # element-wise array comparison makes a generated __eq__ meaningless
class ImageData:
    """A decoded image: pixels at their native bit depth plus what must survive a rewrite."""

    pixels: np.ndarray
    """H x W x C, C in {1, 3}, dtype uint8 or uint16."""
    alpha: np.ndarray | None
    """H x W, same dtype as pixels, or None."""
    icc_profile: bytes | None
    """Embedded ICC profile to carry to the output (None for CMYK sources after conversion)."""
    format: str
    """Container format: "PNG", "JPEG", "TIFF", "WEBP" or "BMP"."""

    @property
    def bit_depth(self) -> int:
        """8 or 16, from the pixel dtype."""
        return 16 if self.pixels.dtype == np.uint16 else 8


# --------------------------------------------------------------------------------------------
# float conversion


def _max_value(bit_depth: int) -> int:
    if bit_depth == 8:
        return 255
    if bit_depth == 16:
        return 65535
    raise ValueError(f"bit_depth must be 8 or 16, not {bit_depth!r}")


def to_float(pixels: np.ndarray) -> np.ndarray:
    """Scale integer samples to float32 in [0, 1] (uint8 / 255, uint16 / 65535).

    Float input passes through as float32, so callers can apply this unconditionally.
    """
    arr = np.asarray(pixels)
    if arr.dtype == np.uint8 or arr.dtype == np.uint16:
        out = arr.astype(np.float32)
        out /= np.float32(_max_value(8 * arr.dtype.itemsize))
        return out
    if np.issubdtype(arr.dtype, np.floating):
        return arr.astype(np.float32, copy=False)
    raise ValueError(f"to_float expects uint8, uint16 or float samples, not {arr.dtype}")


def from_float(x: np.ndarray, bit_depth: int) -> np.ndarray:
    """Quantise float samples in [0, 1] to uint8 (bit_depth 8) or uint16 (bit_depth 16).

    NaN becomes 0 and values outside [0, 1] are clipped, so network output that overshoots
    cannot wrap around. Rounding is half to even, exactly like ``np.round``.
    """
    max_value = _max_value(bit_depth)
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"from_float expects float samples, not {arr.dtype}")
    # float16 cannot hold 65535; float64 input keeps its precision.
    work = arr.astype(np.float64 if arr.dtype.itemsize >= 8 else np.float32)
    work[np.isnan(work)] = 0.0
    np.clip(work, 0.0, 1.0, out=work)
    work *= max_value
    np.rint(work, out=work)
    return work.astype(np.uint8 if bit_depth == 8 else np.uint16)


def _convert_depth(samples: np.ndarray, bit_depth: int) -> np.ndarray:
    """Bring uint8/uint16 samples to the requested depth (x * 257, or x / 257 rounded)."""
    if bit_depth == 8 and samples.dtype == np.uint16:
        # (x + 128) // 257 is round(x / 257): x / 257 is never exactly halfway for integer x.
        return ((samples.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if bit_depth == 16 and samples.dtype == np.uint8:
        return samples.astype(np.uint16) * np.uint16(257)
    return samples


# --------------------------------------------------------------------------------------------
# reading


class _PillowBombCheckSuspender:
    """Turn off Pillow's global decompression-bomb check while any read_image call runs.

    read_image enforces its own, configurable limit from the header before decoding, so Pillow's
    fixed limit (about 179 MP, with a warning above 89 MP) must not get in the way. A reference
    count under a lock lets concurrent reads overlap and restores the caller's setting when the
    last one finishes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._saved: int | None = None

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                self._saved = Image.MAX_IMAGE_PIXELS
                Image.MAX_IMAGE_PIXELS = None
            self._depth += 1

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                Image.MAX_IMAGE_PIXELS = self._saved


_PILLOW_BOMB_CHECK_SUSPENDED = _PillowBombCheckSuspender()


def read_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageData:
    """Decode an image file at its native bit depth, upright, with its ICC profile.

    Reads PNG, JPEG, TIFF, WebP and BMP, whatever the file is called. Images larger than
    ``max_pixels`` are refused from the header, before decoding. Every failure is an
    :class:`ImageFileError` whose message names ``path``.
    """
    name = str(path)
    data = _read_bytes(Path(path), name)
    try:
        with _PILLOW_BOMB_CHECK_SUSPENDED:
            return _decode(data, name, max_pixels)
    except ImageFileError:
        raise
    except MemoryError as exc:
        raise _error(name, "not enough memory to decode this image") from exc
    except Image.DecompressionBombError as exc:  # only if another thread re-enabled the check
        raise _error(name, "image too large (Pillow's decompression-bomb check)") from exc
    except _DECODE_ERRORS as exc:
        raise _error(name, "truncated or corrupt image file") from exc


def _read_bytes(path: Path, name: str) -> bytes:
    """Read the whole file, turning every OS-level failure into a one-line error."""
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise _error(name, "is a directory")
        if not stat.S_ISREG(mode):  # a FIFO or device could block or never end
            raise _error(name, "not a regular file")
        with open(path, "rb") as file:
            data = file.read()
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise _error(name, "no such file") from exc
    except IsADirectoryError as exc:
        raise _error(name, "is a directory") from exc
    except PermissionError as exc:
        raise _error(name, "permission denied") from exc
    except OSError as exc:
        raise _error(name, f"cannot read: {exc.strerror or exc}") from exc
    if not data:
        raise _error(name, "empty file")
    return data


def _sniff(data: bytes) -> str | None:
    """The format named by the file's magic number, if it is one read_image supports."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for signature, fmt in _SIGNATURES:
        if data.startswith(signature):
            return fmt
    return None


def _decode(data: bytes, name: str, max_pixels: int) -> ImageData:
    """Pick the decoder for ``data``; Pillow parses the header in every case it can."""
    try:
        im = Image.open(io.BytesIO(data), formats=_READ_FORMATS)
    except UnidentifiedImageError:
        sniffed = _sniff(data)
        if sniffed == "TIFF":  # e.g. 16-bit gray+alpha or float RGB, which Pillow cannot open
            return _decode_tiff(data, name, max_pixels)
        if sniffed is not None:
            raise _error(name, "truncated or corrupt image file") from None
        raise _unrecognised(data, name) from None
    with im:
        if im.format == "TIFF" and _is_16bit_colour_tiff(im):
            return _decode_tiff(data, name, max_pixels)
        return _decode_opened(im, data, name, max_pixels)


def _decode_opened(im: Image.Image, data: bytes, name: str, max_pixels: int) -> ImageData:
    """Decode an image Pillow has opened: with Pillow, or OpenCV for 16-bit colour PNG."""
    _check_pixel_limit(im.width, im.height, max_pixels, name)
    with_cv2 = im.format == "PNG" and _is_16bit_colour_png(data)
    decoder = _decode_png_with_cv2 if with_cv2 else _decode_with_pillow
    if im.format == "PNG" and "exif" not in im.info and b"eXIf" in data:
        # eXIf after the image data: Pillow finds it only by loading the image.
        pixels, alpha = decoder(im, data, name)
        orientation = _exif_orientation(im.getexif)
    else:
        # Before decoding, because Pillow closes a TIFF file once its pixels are loaded.
        # The base-class getexif() reads only parsed metadata; PNG's override would decode.
        orientation = _exif_orientation(lambda: Image.Image.getexif(im))
        pixels, alpha = decoder(im, data, name)
        if im.format == "TIFF" and ExifTags.Base.Orientation not in im.tag_v2:
            orientation = 1  # recent Pillow rotates TIFF pixels while loading, then drops the tag
    icc = None if im.mode == "CMYK" else im.info.get("icc_profile") or None
    fmt = "JPEG" if im.format == "MPO" else str(im.format)
    return _oriented(pixels, alpha, icc, fmt, orientation)


def _unrecognised(data: bytes, name: str) -> ImageFileError:
    """Name the format if Pillow knows it (so "GIF" is not called "not an image")."""
    other = None
    # Diagnostics only (header parsing, no decoding): any failure just means "unknown".
    with contextlib.suppress(Exception), Image.open(io.BytesIO(data)) as im:
        other = im.format
    if other:
        expected = "PNG, JPEG, TIFF, WebP or BMP"
        return _error(name, f"unsupported image format {other} (expected {expected})")
    return _error(name, "not an image file (unrecognised format)")


def _check_pixel_limit(width: int, height: int, max_pixels: int, name: str) -> None:
    pixels = width * height
    if pixels > max_pixels:
        raise _error(
            name,
            f"{pixels:,} pixels exceeds the limit of {max_pixels:,} (raise it with --max-pixels)",
        )


def _is_16bit_colour_png(data: bytes) -> bool:
    """True for 16-bit RGB, RGBA or gray+alpha PNG, which Pillow would reduce to 8 bits.

    IHDR is always the first chunk: byte 24 is the bit depth, byte 25 the colour type (2 RGB,
    4 gray+alpha, 6 RGBA). Pillow reads 16-bit plain gray (type 0) exactly.
    """
    return data[24] == 16 and data[25] in (2, 4, 6)


def _is_16bit_colour_tiff(im: Image.Image) -> bool:
    """True for a 16-bit colour TIFF, which Pillow would reduce to 8 bits."""
    if im.mode not in ("RGB", "RGBA", "RGBa", "RGBX", "LA"):
        return False
    bits = im.tag_v2.get(258, 1)  # BitsPerSample: an int or one value per sample
    return max(bits if isinstance(bits, tuple) else (bits,)) == 16


def _decode_with_pillow(
    im: Image.Image, data: bytes, name: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode with Pillow, converting exotic modes to gray/RGB (+ alpha). ``data`` is unused."""
    im.load()
    mode = im.mode
    if mode in _UINT16_GRAY_MODES:
        return np.asarray(im).astype(np.uint16)[..., None], None
    target = _PILLOW_CONVERSIONS.get(mode, mode)
    if mode == "P":
        target = "RGBA" if "transparency" in im.info else "RGB"
    elif mode in ("L", "RGB") and "transparency" in im.info:  # colour-key transparency
        target = "LA" if mode == "L" else "RGBA"
    if target not in ("L", "LA", "RGB", "RGBA"):
        description = _MODE_DESCRIPTIONS.get(mode, "pixel layout")
        raise _error(name, f"unsupported pixel format: {description} (Pillow mode {mode})")
    arr = _pillow_pixels(im if target == mode else im.convert(target))
    return _split_alpha(arr, has_alpha=target[-1] == "A")


def _pillow_pixels(im: Image.Image, rows_per_strip: int = 256) -> np.ndarray:
    """H x W x C array of a loaded 8-bit Pillow image, copied strip by strip.

    ``np.asarray(im)`` goes through ``tobytes()``, which holds two more full copies of the
    pixels while it works; strips keep the extra memory to a few rows.
    """
    channels = len(im.getbands())
    arr = np.empty((im.height, im.width, channels), dtype=np.uint8)
    for top in range(0, im.height, rows_per_strip):
        bottom = min(top + rows_per_strip, im.height)
        strip = np.asarray(im.crop((0, top, im.width, bottom)))
        arr[top:bottom] = strip.reshape(bottom - top, im.width, channels)
    return arr


def _split_alpha(arr: np.ndarray, *, has_alpha: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """H x W x C (alpha last when present) -> contiguous pixels, alpha."""
    if not has_alpha:
        return np.ascontiguousarray(arr), None
    return np.ascontiguousarray(arr[..., :-1]), np.ascontiguousarray(arr[..., -1])


def _imdecode_16bit(
    data: bytes, size: tuple[int, int], channels: tuple[int, ...], name: str
) -> np.ndarray:
    """OpenCV decode of 16-bit colour samples as H x W x C RGB(A) (bytes: any path works)."""
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if (
        arr is None
        or arr.dtype != np.uint16
        or arr.ndim != 3
        or arr.shape[:2] != size
        or arr.shape[2] not in channels
    ):
        raise _error(name, "truncated or corrupt image file")
    return np.concatenate([arr[..., 2::-1], arr[..., 3:]], axis=2)  # BGR(A) -> RGB(A)


def _decode_png_with_cv2(
    im: Image.Image, data: bytes, name: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """16-bit colour PNG. OpenCV expands gray+alpha to RGBA and a colour key to alpha."""
    arr = _imdecode_16bit(data, (im.height, im.width), (3, 4), name)
    if data[25] == 4:  # gray+alpha source: the three colour channels are equal
        arr = arr[..., [0, 3]]
    return _split_alpha(arr, has_alpha=arr.shape[2] in (2, 4))


def _decode_tiff(data: bytes, name: str, max_pixels: int) -> ImageData:
    """A TIFF that Pillow would reduce to 8 bits or cannot open; or why it is unsupported."""
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages.first
        _check_pixel_limit(page.imagewidth, page.imagelength, max_pixels, name)
        _check_tiff_layout(page, name)
        arr = _tiff_samples(page, data, name)
        orientation = page.tags.valueof(274, 1)
        icc = page.tags.valueof(34675)
    pixels, alpha = _split_alpha(arr, has_alpha=arr.shape[2] in (2, 4))
    return _oriented(pixels, alpha, bytes(icc) if icc else None, "TIFF", orientation)


def _check_tiff_layout(page: tifffile.TiffPage, name: str) -> None:
    """Accept 8/16-bit gray, gray+alpha, RGB, RGBA; name anything else precisely."""
    photometric = tifffile.PHOTOMETRIC(page.photometric)
    samples = page.samplesperpixel
    allowed = (1, 2) if photometric == tifffile.PHOTOMETRIC.MINISBLACK else (3, 4)
    if (
        page.dtype not in (np.uint8, np.uint16)
        or photometric not in (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.RGB)
        or samples not in allowed
    ):
        raise _error(
            name,
            f"unsupported pixel format: {samples} x {page.dtype} samples per pixel "
            f"({photometric.name.lower()} TIFF)",
        )


def _tiff_samples(page: tifffile.TiffPage, data: bytes, name: str) -> np.ndarray:
    """H x W x S samples: tifffile when it has the codec, else OpenCV (e.g. LZW colour)."""
    shape = (page.imagelength, page.imagewidth, page.samplesperpixel)
    try:
        tifffile.TIFF.DECOMPRESSORS[page.compression]  # KeyError: needs imagecodecs
    except KeyError:
        if page.samplesperpixel < 3 or page.planarconfig != tifffile.PLANARCONFIG.CONTIG:
            raise _error(
                name, f"unsupported TIFF compression {page.compression.name} for this pixel format"
            ) from None
        return _imdecode_16bit(data, shape[:2], shape[2:], name)
    arr = page.asarray()
    if page.axes.startswith("S"):  # planar configuration: samples first
        arr = np.moveaxis(arr, 0, -1)
    return arr.reshape(shape)


def _exif_orientation(getexif: Callable[[], Image.Exif]) -> int:
    """EXIF (or XMP) orientation 1-8 from ``getexif()``; 1 when absent or unreadable."""
    try:
        orientation = int(getexif().get(ExifTags.Base.Orientation, 1))
    except _DECODE_ERRORS:  # corrupt metadata must not make good pixels unreadable
        return 1
    return orientation if 1 <= orientation <= 8 else 1


def _apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored rows/columns into display orientation (EXIF tag 0x0112 semantics)."""
    if orientation == 2:
        arr = arr[:, ::-1]
    elif orientation == 3:
        arr = arr[::-1, ::-1]
    elif orientation == 4:
        arr = arr[::-1]
    elif orientation == 5:
        arr = arr.swapaxes(0, 1)
    elif orientation == 6:
        arr = np.rot90(arr, -1)
    elif orientation == 7:
        arr = arr[::-1, ::-1].swapaxes(0, 1)
    elif orientation == 8:
        arr = np.rot90(arr, 1)
    return np.ascontiguousarray(arr)


def _oriented(
    pixels: np.ndarray,
    alpha: np.ndarray | None,
    icc: bytes | None,
    fmt: str,
    orientation: int,
) -> ImageData:
    return ImageData(
        pixels=_apply_orientation(pixels, orientation),
        alpha=None if alpha is None else _apply_orientation(alpha, orientation),
        icc_profile=icc,
        format=fmt,
    )


# --------------------------------------------------------------------------------------------
# writing


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
    try:
        payload = _encode(fmt, samples, alpha, icc_profile, quality)
    except (OSError, ValueError, cv2.error, struct.error) as exc:  # e.g. WebP wider than 16383
        detail = " ".join(str(exc).split()) or type(exc).__name__  # one line, even from OpenCV
        raise _error(name, f"cannot encode as {fmt}: {detail}") from exc
    _write_atomically(target, payload, overwrite=overwrite, name=name)
    return target


def _resolve_bit_depth(pixels: np.ndarray, bit_depth: int | None) -> int:
    dtype = np.asarray(pixels).dtype
    if bit_depth is None:
        if np.issubdtype(dtype, np.floating):
            raise ValueError("bit_depth is required when pixels are float")
        bit_depth = 16 if dtype == np.uint16 else 8
    _max_value(bit_depth)  # validates
    return bit_depth


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


def _encode(
    fmt: str, samples: np.ndarray, alpha: np.ndarray | None, icc: bytes | None, quality: int
) -> bytes:
    """Encode to bytes in memory; publishing the file is a separate, atomic step."""
    if samples.dtype == np.uint16 and fmt == "PNG":
        return _encode_png16(samples, alpha, icc)
    if samples.dtype == np.uint16:
        return _encode_tiff16(samples, alpha, icc)
    return _encode_with_pillow(fmt, samples, alpha, icc, quality)


def _encode_with_pillow(
    fmt: str, samples: np.ndarray, alpha: np.ndarray | None, icc: bytes | None, quality: int
) -> bytes:
    """8-bit output for every format. BMP alpha is dropped: Pillow cannot read it back."""
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
    buffer = io.BytesIO()
    im.save(buffer, fmt, **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC-32 over type + data."""
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _iccp_chunk(profile: bytes) -> bytes:
    """iCCP chunk: profile name, NUL, compression method 0 (zlib), compressed profile."""
    return _png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(profile))


def _insert_after_ihdr(png: bytes, chunk: bytes) -> bytes:
    """Insert ``chunk`` right after IHDR (signature 8 + IHDR 25 bytes), where iCCP belongs."""
    if not png.startswith(_PNG_SIGNATURE) or png[12:16] != b"IHDR":
        raise ValueError("not a PNG stream starting with IHDR")
    end_of_ihdr = 8 + 8 + struct.unpack(">I", png[8:12])[0] + 4
    return png[:end_of_ihdr] + chunk + png[end_of_ihdr:]


def _encode_png16(samples: np.ndarray, alpha: np.ndarray | None, icc: bytes | None) -> bytes:
    """16-bit PNG via OpenCV (Pillow cannot write it), plus the ICC profile as iCCP."""
    if alpha is not None and samples.shape[2] == 1:
        png = _encode_png16_gray_alpha(samples[..., 0], alpha)  # OpenCV cannot write 2 channels
    else:
        arr = samples[..., 0] if samples.shape[2] == 1 else samples[..., ::-1]  # RGB -> BGR
        if alpha is not None:
            arr = np.concatenate([arr, alpha[..., None]], axis=2)
        ok, encoded = cv2.imencode(".png", np.ascontiguousarray(arr))
        if not ok:
            raise ValueError("OpenCV failed to encode the PNG")
        png = encoded.tobytes()
    return _insert_after_ihdr(png, _iccp_chunk(icc)) if icc else png


def _encode_png16_gray_alpha(gray: np.ndarray, alpha: np.ndarray) -> bytes:
    """Minimal 16-bit gray+alpha PNG (colour type 4), each row with the "Up" filter."""
    height, width = gray.shape
    rows = np.stack([gray, alpha], axis=2).astype(">u2").reshape(height, -1).view(np.uint8)
    filtered = rows.copy()
    filtered[1:] -= rows[:-1]  # "Up" filter (type 2), wrapping modulo 256 as PNG specifies
    scanlines = np.empty((height, filtered.shape[1] + 1), np.uint8)
    scanlines[:, 0] = 2  # the row above the first one counts as zeros
    scanlines[:, 1:] = filtered
    header = struct.pack(">IIBBBBB", width, height, 16, 4, 0, 0, 0)
    return (
        _PNG_SIGNATURE
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(scanlines.tobytes(), 6))
        + _png_chunk(b"IEND", b"")
    )


def _encode_tiff16(samples: np.ndarray, alpha: np.ndarray | None, icc: bytes | None) -> bytes:
    """16-bit TIFF via tifffile (uncompressed, unassociated alpha, ICC tag).

    Uncompressed on purpose: without a predictor (which needs the optional imagecodecs
    package) deflate saves only a few percent on 16-bit photographs and costs seconds.
    """
    arr = samples if alpha is None else np.concatenate([samples, alpha[..., None]], axis=2)
    if arr.shape[2] == 1:
        arr = arr[..., 0]
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer,
        arr,
        photometric="rgb" if samples.shape[2] == 3 else "minisblack",
        extrasamples=["unassalpha"] if alpha is not None else None,
        iccprofile=icc or None,
    )
    return buffer.getvalue()


def _write_atomically(target: Path, payload: bytes, *, overwrite: bool, name: str) -> None:
    """Publish ``payload`` as ``target`` atomically, mapping failures to one-line errors."""
    try:
        write_atomically(target, payload, overwrite=overwrite)
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


# --------------------------------------------------------------------------------------------
# listing


def list_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Expand files and directories into the list of images to process.

    A file is taken whatever its extension (read_image judges the content). A directory
    contributes its non-hidden files with an image suffix (case-insensitive, not recursive,
    sorted by name). Duplicates are dropped, keeping the first occurrence's order.
    """
    found: list[Path] = []
    seen: set[Path] = set()
    for item in inputs:
        for path in _expand_input(Path(item), str(item)):
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                found.append(path)
    return found


def _expand_input(path: Path, name: str) -> list[Path]:
    try:
        if not path.is_dir():
            if not path.exists():
                raise _error(name, "no such file or directory")
            return [path]
        images = sorted(
            (
                child
                for child in path.iterdir()
                if not child.name.startswith(".")
                and child.suffix.lower() in IMAGE_SUFFIXES
                and child.is_file()
            ),
            key=lambda child: child.name,
        )
    except PermissionError as exc:
        raise _error(name, "permission denied") from exc
    except OSError as exc:
        raise _error(name, f"cannot list: {(exc.strerror or str(exc)).lower()}") from exc
    if not images:
        raise _error(name, f"no images found (looked for {_SUFFIX_LIST})")
    return images
