"""Image files <-> numpy arrays, without silent quality loss.

Restoration output is only as good as its I/O, so this package is strict where Pillow or OpenCV
alone would be lax:

* the format is detected from the file content, never from the extension;
* 16-bit files stay 16-bit (Pillow silently reduces 16-bit colour PNG/TIFF to 8 bits, so those go
  through OpenCV or tifffile instead);
* EXIF orientation is applied, and the ICC profile is carried so that colours survive a round trip;
* decompression bombs are refused from the header, before any pixel is decoded;
* truncated or corrupt files are errors, never half-grey images;
* writes are atomic and never clobber an existing file unless asked to;
* memory stays close to the image itself: common files decode straight into the result array,
  and encoders stream into the output file instead of building it in memory.

Every problem a user can cause (bad path, bad file, existing output) is reported as a one-line
:class:`ImageFileError` that names the file. Programming errors (wrong array shape or dtype,
invalid arguments) raise plain :class:`ValueError`.

:mod:`restormer.io.read` decodes files (:func:`read_image`), :mod:`restormer.io.write` encodes
them (:func:`write_image`), and :mod:`restormer.io.images` holds what both share: the types,
the format constants, the pixel conversions and :func:`list_images`. Import from here.
"""

from __future__ import annotations

from restormer.io.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    ImageData,
    ImageFileError,
    as_gray,
    from_float,
    images_in,
    list_images,
    to_float,
    to_gray,
)
from restormer.io.read import read_image
from restormer.io.write import write_image

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "ImageData",
    "ImageFileError",
    "as_gray",
    "from_float",
    "images_in",
    "list_images",
    "read_image",
    "to_float",
    "to_gray",
    "write_image",
]
