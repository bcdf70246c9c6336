"""Random crops and the 8 flips/rotations, exactly as the official pipeline distributes them.

The official training pipeline cuts each training patch in two steps. The data loader pads an
image smaller than ``gt_size`` (G) at the bottom/right by reflection (``cv2.BORDER_REFLECT``),
cuts a G x G square at a uniformly random place and, with ``geometric_augs``, applies one of 8
flips/rotations (``data_augmentation`` modes 0-7, equally likely). The progressive-learning
loop then cuts the stage's P x P window out of that square at offsets
``int((G - P) * random.random())``, i.e. uniform over ``0 .. G-P-1`` on each axis.

:func:`draw_window` draws the same random variables but computes where the final P x P window
lies in the *original* image, so only P x P pixels are ever read: the result is identical,
pixel for pixel, to transforming the G x G square and then cutting the window from it. Note
that the position is *not* uniform over the image: it is the sum of two uniform offsets, which
makes the image borders a little rarer than the middle when G > P. This is reproduced rather
than "improved", so that training sees the official distribution of patches.

One difference remains: the official loop uses the same window offsets for every image of a
batch, this pipeline draws them per image (each sample must depend on its own random stream
only, see :mod:`restormer.data.sampling`). Each sample's distribution is unchanged.

:func:`draw_detailed_window` is ours: it draws several such windows and keeps the one with the
most :func:`detail`, for training photos whose random crops are mostly flat.
:func:`draw_scale` and :func:`shrink` are ours too: a window cut 1/s times larger and shrunk
by s, so that a patch holds more (and cleaner) detail than the photo has per pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "NUM_MODES",
    "Window",
    "crop",
    "detail",
    "dihedral",
    "draw_detailed_window",
    "draw_scale",
    "draw_window",
    "shrink",
    "source_origin",
    "source_size",
]

NUM_MODES = 8
"""Flips/rotations: mode = 2 * k + flip -> ``rot90`` k times (counter-clockwise), then ``flipud``
if flip; the official numbering (0 identity, 1 flip up-down, 2 rotate 90, ...)."""


def dihedral(image: np.ndarray, mode: int) -> np.ndarray:
    """Apply flip/rotation ``mode`` (0-7) to an H x W (x C) array; returns a view."""
    if not 0 <= mode < NUM_MODES:
        raise ValueError(f"mode must be 0..7, not {mode}")
    turns, flip = divmod(mode, 2)
    out = np.rot90(image, turns, axes=(0, 1)) if turns else image
    return np.flipud(out) if flip else out


def source_origin(mode: int, size: int, top: int, left: int, patch: int) -> tuple[int, int]:
    """Where, before ``dihedral(., mode)``, lies the patch at (top, left) of the result.

    For a ``size`` x ``size`` square S: ``dihedral(S, mode)[top:top+patch, left:left+patch]``
    equals ``dihedral(S[r:r+patch, c:c+patch], mode)`` for the returned (r, c).
    """
    first = _source_point(mode, size, top, left)
    last = _source_point(mode, size, top + patch - 1, left + patch - 1)
    return min(first[0], last[0]), min(first[1], last[1])


def _source_point(mode: int, size: int, row: int, col: int) -> tuple[int, int]:
    """The input pixel that ``dihedral`` moves to (row, col) of a size x size square."""
    turns, flip = divmod(mode, 2)
    if flip:  # flipud: out[r, c] = in[n-1-r, c]
        row = size - 1 - row
    for _ in range(turns):  # rot90: out[r, c] = in[c, n-1-r]
        row, col = col, size - 1 - row
    return row, col


@dataclass(frozen=True)
class Window:
    """A square crop of the (reflect-padded) image, and the transform applied after cutting."""

    top: int
    left: int
    size: int
    mode: int


def draw_window(
    rng: np.random.Generator,
    height: int,
    width: int,
    patch: int,
    loader_size: int | None,
    augment: bool,
) -> Window:
    """Draw a training window as the official loader + progressive loop would place it.

    ``loader_size`` is the official ``gt_size`` (None or smaller than ``patch``: the patch
    itself, i.e. a plain uniform crop). Draw order: loader row, loader column, window row,
    window column, mode.
    """
    size = max(loader_size or patch, patch)
    loader_top = int(rng.integers(0, max(height, size) - size + 1))
    loader_left = int(rng.integers(0, max(width, size) - size + 1))
    if size > patch:
        top, left = (int(v) for v in rng.integers(0, size - patch, size=2))
    else:
        top = left = 0
    mode = int(rng.integers(0, NUM_MODES)) if augment else 0
    row, col = source_origin(mode, size, top, left, patch)
    return Window(loader_top + row, loader_left + col, patch, mode)


def draw_detailed_window(
    rng: np.random.Generator,
    image: np.ndarray,
    patch: int,
    loader_size: int | None,
    augment: bool,
    candidates: int,
) -> Window:
    """The most detailed of ``candidates`` windows drawn by :func:`draw_window` from the
    H x W (x C) ``image``, scored by :func:`detail` (flips and rotations do not change it).

    With one candidate this is :func:`draw_window`, random numbers included. With k, a patch
    is as detailed as the best of k plain ones: the flattest content is drawn less often,
    never excluded. Draw order: each candidate's window as :func:`draw_window` draws it.
    """
    height, width = image.shape[:2]
    windows = [
        draw_window(rng, height, width, patch, loader_size, augment) for _ in range(candidates)
    ]
    if candidates == 1:
        return windows[0]
    scores = [detail(crop(image, w.top, w.left, w.size)) for w in windows]
    return windows[int(np.argmax(scores))]


def detail(pixels: np.ndarray) -> float:
    """How much there is to restore in an H x W (x C) crop: the mean absolute difference
    between vertically and between horizontally neighbouring values (0 for a flat crop), in
    the pixels' own units."""
    values = np.asarray(pixels, dtype=np.float32)
    vertical = np.abs(np.diff(values, axis=0)).mean() if values.shape[0] > 1 else 0.0
    horizontal = np.abs(np.diff(values, axis=1)).mean() if values.shape[1] > 1 else 0.0
    return float(vertical + horizontal)


def draw_scale(rng: np.random.Generator, low: float, high: float) -> float:
    """A shrink factor, log-uniform in [``low``, ``high``] (each halving equally likely); one
    random number drawn, even when ``low == high``."""
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def source_size(size: int, scale: float) -> int:
    """The side of the window that :func:`shrink` makes ``size`` pixels at ``scale``."""
    return max(size, int(np.ceil(size / scale - 1e-9)))


def shrink(image: np.ndarray, size: int) -> np.ndarray:
    """The square H x W x C float ``image`` resized to ``size`` x ``size`` by area averaging
    (``cv2.INTER_AREA``: each output pixel the mean of the input pixels it covers, so no
    aliasing and less of the photo's own noise); returned as is when already that size."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    out = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return out.reshape(size, size, *image.shape[2:])


def crop(image: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    """Copy of ``image[top:top+size, left:left+size]``; rows/columns outside the image (past
    the bottom/right edge, or before the top/left one for a negative ``top``/``left``) are
    mirrored as ``cv2.copyMakeBorder(..., cv2.BORDER_REFLECT)`` pads them."""
    height, width = image.shape[:2]
    if top >= 0 and left >= 0 and top + size <= height and left + size <= width:
        return np.array(image[top : top + size, left : left + size])
    rows = _reflect(top, size, height)
    cols = _reflect(left, size, width)
    return np.asarray(image[np.ix_(rows, cols)])


def _reflect(start: int, count: int, extent: int) -> np.ndarray:
    """Indices start..start+count-1 folded into 0..extent-1 as BORDER_REFLECT ("dcba|abcd|dcba")."""
    index = np.arange(start, start + count) % (2 * extent)
    return np.where(index < extent, index, 2 * extent - 1 - index)
