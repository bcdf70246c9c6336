"""What reading and writing image files share: :class:`ImageFileError`, :class:`ImageData`,
the suffix and format constants, the pixel conversions (gray, float) and :func:`list_images`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

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
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_STRIP_BYTES = 1 << 18
"""Working-set size of the strip-by-strip loops (channel moves, PNG filters): small next to any
photo, large enough that numpy's per-call overhead does not show."""


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


def to_gray(pixels: np.ndarray) -> np.ndarray:
    """H x W x 3 RGB -> H x W x 1 luma ``0.299 R + 0.587 G + 0.114 B`` (OpenCV's ``RGB2GRAY``,
    rounded for integer samples), same dtype: how the gray models' training data is made."""
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"to_gray expects H x W x 3 pixels, not shape {pixels.shape}")
    return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY)[..., None]


def as_gray(image: ImageData) -> ImageData:
    """The colour ``image`` as one luma channel, alpha kept; its ICC profile (a colour
    profile, which a gray file cannot carry) is dropped."""
    return ImageData(to_gray(image.pixels), image.alpha, None, image.format)


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


# --------------------------------------------------------------------------------------------
# listing


def images_in(folder: Path) -> list[Path]:
    """The non-hidden files directly in ``folder`` with an image suffix (any case), by name.

    Listing errors (``OSError``) are the caller's to word: the CLI and the option files name
    the folder differently.
    """
    return sorted(
        (
            child
            for child in folder.iterdir()
            if not child.name.startswith(".")
            and child.suffix.lower() in IMAGE_SUFFIXES
            and child.is_file()
        ),
        key=lambda child: child.name,
    )


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
        images = images_in(path)
    except PermissionError as exc:
        raise _error(name, "permission denied") from exc
    except OSError as exc:
        raise _error(name, f"cannot list: {(exc.strerror or str(exc)).lower()}") from exc
    if not images:
        raise _error(name, f"no images found (looked for {_SUFFIX_LIST})")
    return images
