"""Reading image files: :func:`read_image` and its decoding helpers (format sniffing,
Pillow/OpenCV/tifffile decoding, EXIF orientation, the decompression-bomb check).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import stat
import struct
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
import tifffile
from PIL import ExifTags, Image, UnidentifiedImageError

from restormer.io.images import (
    _PNG_SIGNATURE,
    _STRIP_BYTES,
    DEFAULT_MAX_PIXELS,
    ImageData,
    ImageFileError,
    _error,
)

_READ_FORMATS = ("PNG", "JPEG", "TIFF", "WEBP", "BMP")  # Pillow plugins read_image may use
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


_HEAD_BYTES = 64
"""How much of the file start read_image keeps: magic numbers and the PNG IHDR (33 bytes)."""


def _opencv_version() -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", cv2.__version__)
    return (int(match[1]), int(match[2])) if match else (0, 0)


_OPENCV_ALLOCATES_WITH_NUMPY = _opencv_version() >= (4, 10)
"""OpenCV 4.10 added ``imread(filename, dst, flags)``; with ``dst=None`` the decoder writes into an
array numpy allocated. The classic ``imread(filename, flags)`` decodes into OpenCV's own buffer,
which the Python binding then copies: two whole images at the peak instead of one."""


@dataclass(frozen=True)
class _Source:
    """An image file being read: the open file, its path and name, and its first bytes."""

    file: BinaryIO
    path: Path
    name: str
    head: bytes


def read_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageData:
    """Decode an image file at its native bit depth, upright, with its ICC profile.

    Reads PNG, JPEG, TIFF, WebP and BMP, whatever the file is called. Images larger than
    ``max_pixels`` are refused from the header, before decoding. Every failure is an
    :class:`ImageFileError` whose message names ``path``.

    Memory: the file is never held in memory as a whole. 8/16-bit PNG and JPEG (gray, RGB,
    RGBA) decode straight into the returned array (OpenCV, verified to give Pillow's samples),
    so reading them takes about one image's worth of memory; other layouts and formats go
    through Pillow or tifffile.
    """
    name = str(path)
    with _open_for_reading(Path(path), name) as source:
        try:
            with _PILLOW_BOMB_CHECK_SUSPENDED:
                return _decode(source, max_pixels)
        except ImageFileError:
            raise
        except MemoryError as exc:
            raise _error(name, "not enough memory to decode this image") from exc
        except Image.DecompressionBombError as exc:  # only if another thread re-enabled the check
            raise _error(name, "image too large (Pillow's decompression-bomb check)") from exc
        except _DECODE_ERRORS as exc:
            raise _error(name, "truncated or corrupt image file") from exc


@contextlib.contextmanager
def _open_for_reading(path: Path, name: str) -> Iterator[_Source]:
    """Open the file and read its first bytes, turning every OS-level failure into one line."""
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise _error(name, "is a directory")
        if not stat.S_ISREG(mode):  # a FIFO or device could block or never end
            raise _error(name, "not a regular file")
        file = open(path, "rb")  # noqa: SIM115 (closed by the with statement below)
    except OSError as exc:
        raise _read_error(name, exc) from exc
    with file:
        try:
            head = file.read(_HEAD_BYTES)
        except OSError as exc:
            raise _read_error(name, exc) from exc
        if not head:
            raise _error(name, "empty file")
        yield _Source(file, path, name, head)


def _read_error(name: str, exc: OSError) -> ImageFileError:
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return _error(name, "no such file")
    if isinstance(exc, IsADirectoryError):
        return _error(name, "is a directory")
    if isinstance(exc, PermissionError):
        return _error(name, "permission denied")
    return _error(name, f"cannot read: {exc.strerror or exc}")


def _sniff(head: bytes) -> str | None:
    """The format named by the file's magic number, if it is one read_image supports."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    for signature, fmt in _SIGNATURES:
        if head.startswith(signature):
            return fmt
    return None


def _decode(src: _Source, max_pixels: int) -> ImageData:
    """Pick the decoder; Pillow parses the header (only the header) in every case it can."""
    src.file.seek(0)
    try:
        im = Image.open(src.file, formats=_READ_FORMATS)
    except UnidentifiedImageError:
        sniffed = _sniff(src.head)
        if sniffed == "TIFF":  # e.g. 16-bit gray+alpha or float RGB, which Pillow cannot open
            return _decode_tiff(src, max_pixels)
        if sniffed is not None:
            raise _error(src.name, "truncated or corrupt image file") from None
        raise _unrecognised(src) from None
    with im:  # a file object Pillow did not open stays open
        if im.format == "TIFF" and _is_16bit_colour_tiff(im):
            return _decode_tiff(src, max_pixels)
        return _decode_opened(im, src, max_pixels)


_Decoder = Callable[[Image.Image, _Source], tuple[np.ndarray, np.ndarray | None]]


def _decode_opened(im: Image.Image, src: _Source, max_pixels: int) -> ImageData:
    """Decode an image Pillow has opened, with OpenCV where it is exact and leaner, else Pillow."""
    _check_pixel_limit(im.width, im.height, max_pixels, src.name)
    chunks = _png_chunk_types(src.file) if im.format == "PNG" else None
    # eXIf after the image data: Pillow finds it only by loading the image. Unknown (None) for a
    # PNG whose chunk structure is broken; decoding will tell.
    exif_after_pixels = (
        im.format == "PNG" and "exif" not in im.info and (chunks is None or b"eXIf" in chunks)
    )
    decoder = _pick_decoder(im, src, chunks, exif_after_pixels)
    if exif_after_pixels:
        pixels, alpha = decoder(im, src)
        orientation = _exif_orientation(im.getexif)  # loads the image if the decoder did not
    else:
        # Before decoding, because Pillow closes a TIFF file once its pixels are loaded.
        # The base-class getexif() reads only parsed metadata; PNG's override would decode.
        orientation = _exif_orientation(lambda: Image.Image.getexif(im))
        pixels, alpha = decoder(im, src)
        if im.format == "TIFF" and ExifTags.Base.Orientation not in im.tag_v2:
            orientation = 1  # recent Pillow rotates TIFF pixels while loading, then drops the tag
    icc = None if im.mode == "CMYK" else im.info.get("icc_profile") or None
    fmt = "JPEG" if im.format == "MPO" else str(im.format)
    return _oriented(pixels, alpha, icc, fmt, orientation)


def _pick_decoder(
    im: Image.Image, src: _Source, chunks: frozenset[bytes] | None, exif_after_pixels: bool
) -> _Decoder:
    """OpenCV for 16-bit colour PNG (Pillow would reduce it to 8 bits) and, unless Pillow must
    load the image anyway for its metadata, for the layouts where it gives Pillow's samples."""
    if im.format == "PNG" and _is_16bit_colour_png(src.head):
        return _decode_png_with_cv2
    channels = None if exif_after_pixels else _opencv_channels(im, src, chunks)
    if channels is None:
        return _decode_with_pillow
    return functools.partial(_decode_with_opencv, channels=channels)


def _opencv_channels(im: Image.Image, src: _Source, chunks: frozenset[bytes] | None) -> int | None:
    """Channels OpenCV decodes this file to, when it gives exactly Pillow's result; else None.

    Only plain layouts qualify: 8/16-bit gray and 8-bit RGB/RGBA PNG, gray and RGB (YCbCr)
    JPEG. Palettes, colour keys, 1/2/4-bit samples, animated PNG (which frame is "the image"
    differs between libraries) and CMYK stay with Pillow, as do files whose structure is
    visibly incomplete: a PNG chunk list without IEND, a JPEG without its end marker. libjpeg
    would fill a truncated JPEG with grey where Pillow reports it, and Pillow names the
    problem without libpng's messages on stderr.
    """
    if "transparency" in im.info:
        return None
    if im.format == "PNG":
        depth, colour_type = src.head[24], src.head[25]
        if chunks is None or b"IDAT" not in chunks or b"acTL" in chunks:  # acTL: animated
            return None
        if colour_type == 0 and depth in (8, 16):
            return 1
        if colour_type in (2, 6) and depth == 8:
            return 3 if colour_type == 2 else 4
        return None
    if im.format in ("JPEG", "MPO") and im.mode in ("L", "RGB") and _ends_with_jpeg_eoi(src.file):
        return 1 if im.mode == "L" else 3
    return None


def _png_chunk_types(file: BinaryIO) -> frozenset[bytes] | None:
    """Types of the chunks of a PNG file, from their headers alone; None unless the chain of
    chunks reaches IEND within the file (truncated or mangled structure)."""
    file.seek(0, os.SEEK_END)
    size = file.tell()
    position, kinds = len(_PNG_SIGNATURE), set()
    while position + 12 <= size:
        file.seek(position)
        length, kind = struct.unpack(">I4s", file.read(8))
        kinds.add(kind)
        position += 12 + length  # length, type, data, CRC
        if kind == b"IEND":
            return frozenset(kinds) if position <= size else None
    return None


def _ends_with_jpeg_eoi(file: BinaryIO) -> bool:
    """True if the file's last two bytes are JPEG's end-of-image marker.

    Entropy-coded data escapes every 0xFF byte, so a file cut short does not end in FF D9;
    files with data after the marker (some cameras add trailers) are left to Pillow.
    """
    file.seek(0, os.SEEK_END)
    if file.tell() < 4:
        return False
    file.seek(-2, os.SEEK_END)
    return file.read(2) == b"\xff\xd9"


def _unrecognised(src: _Source) -> ImageFileError:
    """Name the format if Pillow knows it (so "GIF" is not called "not an image")."""
    other = None
    # Diagnostics only (header parsing, no decoding): any failure just means "unknown".
    with contextlib.suppress(Exception):
        src.file.seek(0)
        with Image.open(src.file) as im:
            other = im.format
    if other:
        expected = "PNG, JPEG, TIFF, WebP or BMP"
        return _error(src.name, f"unsupported image format {other} (expected {expected})")
    return _error(src.name, "not an image file (unrecognised format)")


def _check_pixel_limit(width: int, height: int, max_pixels: int, name: str) -> None:
    pixels = width * height
    if pixels > max_pixels:
        raise _error(
            name,
            f"{pixels:,} pixels exceeds the limit of {max_pixels:,} (raise it with --max-pixels)",
        )


def _is_16bit_colour_png(head: bytes) -> bool:
    """True for 16-bit RGB, RGBA or gray+alpha PNG, which Pillow would reduce to 8 bits.

    IHDR is always the first chunk: byte 24 is the bit depth, byte 25 the colour type (2 RGB,
    4 gray+alpha, 6 RGBA). Pillow reads 16-bit plain gray (type 0) exactly.
    """
    return len(head) > 25 and head[24] == 16 and head[25] in (2, 4, 6)


def _is_16bit_colour_tiff(im: Image.Image) -> bool:
    """True for a 16-bit colour TIFF, which Pillow would reduce to 8 bits."""
    if im.mode not in ("RGB", "RGBA", "RGBa", "RGBX", "LA"):
        return False
    bits = im.tag_v2.get(258, 1)  # BitsPerSample: an int or one value per sample
    return max(bits if isinstance(bits, tuple) else (bits,)) == 16


def _decode_with_pillow(im: Image.Image, src: _Source) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode with Pillow, converting exotic modes to gray/RGB (+ alpha)."""
    im.load()
    mode = im.mode
    if mode in _UINT16_GRAY_MODES:
        return _pillow_pixels(im, np.uint16), None
    target = _PILLOW_CONVERSIONS.get(mode, mode)
    if mode == "P":
        target = "RGBA" if "transparency" in im.info else "RGB"
    elif mode in ("L", "RGB") and "transparency" in im.info:  # colour-key transparency
        target = "LA" if mode == "L" else "RGBA"
    if target not in ("L", "LA", "RGB", "RGBA"):
        description = _MODE_DESCRIPTIONS.get(mode, "pixel layout")
        raise _error(src.name, f"unsupported pixel format: {description} (Pillow mode {mode})")
    arr = _pillow_pixels(im if target == mode else im.convert(target), np.uint8)
    if target[-1] != "A":
        return arr, None
    return _separate_alpha(arr, range(arr.shape[2] - 1))


def _pillow_pixels(im: Image.Image, dtype: type[np.unsignedinteger]) -> np.ndarray:
    """H x W x C array of a loaded Pillow image, copied strip by strip.

    ``np.asarray(im)`` goes through ``tobytes()``, which holds two more full copies of the
    pixels while it works; strips keep the extra memory to a few rows. 16-bit gray modes
    (``I;16``, ``I;16B``, ...) come out as native uint16.
    """
    channels = len(im.getbands())
    arr = np.empty((im.height, im.width, channels), dtype=dtype)
    rows = max(1, _STRIP_BYTES // max(1, arr[0].nbytes))
    for top in range(0, im.height, rows):
        bottom = min(top + rows, im.height)
        strip = np.asarray(im.crop((0, top, im.width, bottom)))
        arr[top:bottom] = strip.reshape(bottom - top, im.width, channels)
    return arr


def _separate_alpha(arr: np.ndarray, colour: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
    """H x W x C samples, alpha last -> (H x W x K pixels of the ``colour`` channels in that
    order, H x W alpha), both packed into ``arr``'s own buffer.

    Two fresh arrays would hold the image twice at the peak; here the colour samples move to
    the front of the buffer a strip at a time (each strip is copied before it is written, and
    it only overwrites samples already moved) and alpha goes behind them, so the peak is the
    image plus one alpha plane.
    """
    index = list(colour)
    height, width, channels = arr.shape
    kept = len(index)
    if kept + 1 > channels:
        raise ValueError(f"cannot keep {kept} colour channels and alpha of {channels}")
    arr = np.ascontiguousarray(arr)  # a no-op for decoder output; planar TIFF is copied
    alpha = arr[..., -1].copy()
    count = height * width
    flat = arr.reshape(-1)
    samples = arr.reshape(count, channels)
    packed = flat[: count * kept].reshape(count, kept)
    step = max(1, _STRIP_BYTES // max(1, samples[0].nbytes))
    for start in range(0, count, step):
        stop = min(start + step, count)
        packed[start:stop] = samples[start:stop, index]  # fancy indexing: a copy of the strip
    behind = flat[count * kept : count * (kept + 1)]
    behind[:] = alpha.reshape(-1)
    return packed.reshape(height, width, kept), behind.reshape(height, width)


def _reverse_colour_channels(arr: np.ndarray) -> None:
    """B, G, R (channels 0-2, OpenCV's order) -> R, G, B in place, a strip of rows at a time."""
    rows = max(1, _STRIP_BYTES // max(1, arr[0].nbytes))
    for top in range(0, arr.shape[0], rows):
        strip = arr[top : top + rows, :, :3]
        strip[...] = strip[..., ::-1]  # numpy copies an operand that overlaps the target


def _opencv_read(src: _Source, dtype: type[np.unsignedinteger]) -> np.ndarray | None:
    """H x W x C samples as stored (B, G, R(, A) or gray), no EXIF rotation; None on failure.

    OpenCV reads the file by name, straight into a numpy array where it can (see
    _OPENCV_ALLOCATES_WITH_NUMPY). A name it cannot open (it takes UTF-8) goes through the
    file's bytes instead, which costs the encoded file on top.
    """
    try:
        if _opencv_can_open(src.path):
            if _OPENCV_ALLOCATES_WITH_NUMPY:
                arr = cv2.imread(str(src.path), None, cv2.IMREAD_UNCHANGED)
            else:
                arr = cv2.imread(str(src.path), cv2.IMREAD_UNCHANGED)
        else:
            src.file.seek(0)
            data = np.frombuffer(src.file.read(), np.uint8)
            arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
            del data
    except cv2.error:
        return None
    if arr is None or arr.dtype != dtype or arr.ndim not in (2, 3):
        return None
    return arr[..., None] if arr.ndim == 2 else arr


def _opencv_can_open(path: Path) -> bool:
    """Whether OpenCV can open ``path`` by name: it passes the UTF-8 bytes of the name on."""
    name = str(path)
    if name.isascii():
        return True
    try:
        return os.name == "posix" and os.fsencode(name) == name.encode("utf-8")
    except UnicodeError:
        return False


def _from_opencv(
    arr: np.ndarray, *, gray_alpha: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """OpenCV's B, G, R(, A) or gray samples -> RGB or gray pixels and alpha, in place."""
    channels = arr.shape[2]
    if channels == 4:
        return _separate_alpha(arr, (0,) if gray_alpha else (2, 1, 0))
    if channels == 3:
        _reverse_colour_channels(arr)
    return arr, None


def _decode_with_opencv(
    im: Image.Image, src: _Source, *, channels: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Plain PNG and JPEG straight into the result array, or Pillow if OpenCV fails.

    Pillow would hold RGB at 4 bytes per pixel and the array would be a copy on top of that.
    A file OpenCV cannot decode (corrupt, beyond its own size limits) is left to Pillow, which
    decodes it or names the problem.
    """
    dtype = np.uint16 if im.format == "PNG" and src.head[24] == 16 else np.uint8
    arr = _opencv_read(src, dtype)
    if arr is not None and arr.shape == (im.height, im.width, channels):
        return _from_opencv(arr)
    del arr
    return _decode_with_pillow(im, src)


def _decode_png_with_cv2(im: Image.Image, src: _Source) -> tuple[np.ndarray, np.ndarray | None]:
    """16-bit colour PNG. OpenCV expands gray+alpha to BGRA and a colour key to alpha."""
    arr = _opencv_read(src, np.uint16)
    if arr is None or arr.shape[:2] != (im.height, im.width) or arr.shape[2] not in (3, 4):
        raise _error(src.name, "truncated or corrupt image file")
    return _from_opencv(arr, gray_alpha=src.head[25] == 4)  # gray+alpha: B = G = R


def _decode_tiff(src: _Source, max_pixels: int) -> ImageData:
    """A TIFF that Pillow would reduce to 8 bits or cannot open; or why it is unsupported."""
    src.file.seek(0)
    with tifffile.TiffFile(src.file) as tif:
        page = tif.pages.first
        _check_pixel_limit(page.imagewidth, page.imagelength, max_pixels, src.name)
        _check_tiff_layout(page, src.name)
        arr = _tiff_samples(page, src)
        orientation = page.tags.valueof(274, 1)
        icc = page.tags.valueof(34675)
    if arr.shape[2] in (2, 4):
        pixels, alpha = _separate_alpha(arr, range(arr.shape[2] - 1))
    else:
        pixels, alpha = np.ascontiguousarray(arr), None
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


def _tiff_samples(page: tifffile.TiffPage, src: _Source) -> np.ndarray:
    """H x W x S samples: tifffile when it has the codec, else OpenCV (e.g. LZW colour)."""
    shape = (page.imagelength, page.imagewidth, page.samplesperpixel)
    try:
        tifffile.TIFF.DECOMPRESSORS[page.compression]  # KeyError: needs imagecodecs
    except KeyError:
        if page.samplesperpixel < 3 or page.planarconfig != tifffile.PLANARCONFIG.CONTIG:
            raise _error(
                src.name,
                f"unsupported TIFF compression {page.compression.name} for this pixel format",
            ) from None
        arr = _opencv_read(src, page.dtype.type)
        if arr is None or arr.shape != shape:
            raise _error(src.name, "truncated or corrupt image file") from None
        _reverse_colour_channels(arr)  # B, G, R(, A) -> R, G, B(, A)
        return arr
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
