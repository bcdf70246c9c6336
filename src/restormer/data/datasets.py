"""The dataset types: image folders -> (input, target) float32 C x H x W pairs.

The three official types:

* ``Dataset_PairedImage``: an input folder (``dataroot_lq``) and a target folder
  (``dataroot_gt``) paired by name. Both are read as RGB (gray files repeated to 3 channels,
  alpha dropped), as OpenCV's ``IMREAD_COLOR`` reads them officially.
* ``Dataset_GaussianDenoising``: clean images only (``dataroot_gt``); the input is the target
  plus white Gaussian noise (:mod:`restormer.data.noise`). ``in_ch: 3`` reads RGB; ``in_ch: 1``
  reads grayscale: colour files are converted with ``cv2.cvtColor(RGB2GRAY)``, i.e.
  ``Y = 0.299 R + 0.587 G + 0.114 B`` rounded, the same formula as OpenCV's
  ``IMREAD_GRAYSCALE``. The official loader decodes straight to gray, which can differ by a
  level or so where the codec does it its own way (measured: at most 1 level on a PNG with
  gamma information, which libpng converts in linear light; up to 8 levels on 2% of a JPEG's
  pixels, which libjpeg takes from its luma plane before colour upsampling).
* ``Dataset_DefocusDeblur_DualPixel_16bit``: the left and right views (``dataroot_lqL``,
  ``dataroot_lqR``) concatenated on the channel axis, left first (6 channels), and the target.

and one of ours, for training on any folder of clean photos:

* ``Dataset_SyntheticDegradation``: clean images only (``dataroot_gt``); the input is made by
  :mod:`restormer.degradations` for the task named by ``degradation``. Channels follow the
  task: gray targets for ``gaussian-gray-denoising`` (colour files converted as for
  ``in_ch: 1`` above), a 6-channel input (left view, then right view) for
  ``dual-pixel-defocus-deblurring``, RGB otherwise. A training sample is cut ``context(task)``
  pixels larger on each side than the patch, flipped/rotated, degraded with the sample's own
  random stream and trimmed back, so that blur near the patch border sees real neighbours
  instead of a boundary; a ``clean_fraction`` of samples is left undegraded. Each validation
  image is degraded once, with ``np.random.default_rng([seed, index])``, and kept:
  validation numbers are comparable between runs (the official Gaussian validation instead
  adds the same seed-0 noise to every image, see :mod:`restormer.data.noise`).

Samples are scaled to [0, 1] by bit depth (uint8 / 255, uint16 / 65535), whatever the dataset
type; the official code assumes 8 bits except for dual-pixel, where it assumes 16.

All files are checked and decoded into the cache (:mod:`restormer.data.cache`) when the
dataset is built, so a corrupt, unpaired or mis-sized file stops the run before training
starts, not hours into it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from restormer.data.augment import (
    Window,
    crop,
    dihedral,
    draw_detailed_window,
    draw_scale,
    shrink,
    source_size,
)
from restormer.data.cache import DecodeCache, DecodedImage
from restormer.data.folders import pair_by_name, scan_images
from restormer.data.noise import add_training_noise, draw_sigma, validation_noise
from restormer.data.options import DatasetOptionError, DatasetOptions, parse_dataset_options
from restormer.io import ImageFileError, to_float, to_gray

__all__ = [
    "SyntheticTrainingSet",
    "SyntheticValidationSet",
    "TrainingSet",
    "ValidationSet",
    "build_training_set",
    "build_validation_set",
]

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class _Item:
    """One training/validation example: its input views (none for synthetic noise), target."""

    name: str
    inputs: tuple[DecodedImage, ...]
    target: DecodedImage


class _Dataset:
    """What training and validation sets share: the items and how pixels become floats."""

    def __init__(self, items: Sequence[_Item], options: DatasetOptions) -> None:
        self._items = tuple(items)
        self.options = options
        self._gray = options.in_ch == 1

    def __len__(self) -> int:
        return len(self._items)

    @property
    def names(self) -> list[str]:
        """Item names: the input file's stem (the target's for Gaussian denoising and
        synthetic degradations)."""
        return [item.name for item in self._items]

    @property
    def in_channels(self) -> int:
        """Channels of an input sample: 3 RGB, 1 gray, 6 dual-pixel (left then right)."""
        return self.out_channels * max(1, len(self.options.input_folders))

    @property
    def out_channels(self) -> int:
        """Channels of a target sample: 3, or 1 for gray (Gaussian) denoising."""
        return 1 if self._gray else 3

    def _float_chw(self, pixels: np.ndarray, mode: int = 0) -> np.ndarray:
        """H x W x C integer pixels -> the dataset's channels, transformed, float32 C x H x W."""
        converted = _channels(pixels, gray=self._gray)
        chw = dihedral(converted, mode).transpose(2, 0, 1)
        return to_float(np.ascontiguousarray(chw))

    def _float_hwc(self, pixels: np.ndarray, mode: int = 0) -> np.ndarray:
        """Like :meth:`_float_chw`, but H x W x C (the layout degradations work on)."""
        converted = _channels(pixels, gray=self._gray)
        return to_float(np.ascontiguousarray(dihedral(converted, mode)))


class TrainingSet(_Dataset):
    """Random training pairs from one dataset section; see :meth:`sample`.

    Safe to use from several threads: it holds no mutable state.
    """

    @property
    def loader_size(self) -> int | None:
        """The official loader's crop size (``gt_size``); windows are placed as in it."""
        return self.options.gt_size

    def sample(
        self, index: int, rng: np.random.Generator, patch: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(input, target) for item ``index``: float32 C x patch x patch arrays in [0, 1].

        A random window, aligned between input and target, placed as the official loader and
        progressive loop place it (:func:`restormer.data.augment.draw_window`); with
        ``geometric_augs`` one of the 8 flips/rotations, the same for input and target.
        Images smaller than the window are mirrored at the bottom/right, as the official
        ``padding`` does. With ``detail_candidates`` k > 1 the window is the most detailed of
        k such windows (:func:`restormer.data.augment.draw_detailed_window`). With
        ``downscale`` the window is cut 1/s times larger and shrunk to the patch
        (:func:`restormer.data.augment.shrink`). Gaussian denoising: the input is the target
        plus noise (not clipped; may leave [0, 1]). Randomness is drawn from ``rng`` only, in
        the order: (with ``downscale``: s,) window(s) with their flip/rotation, noise level,
        noise.
        """
        if isinstance(patch, bool) or not isinstance(patch, (int, np.integer)) or patch < 1:
            raise ValueError(f"patch must be a positive integer, not {patch!r}")
        item = self._items[index]
        window = self._window(item, rng, int(patch), self.loader_size)
        target = self._cut(item.target, window, int(patch))
        if self.options.sigma is not None:
            sigma = draw_sigma(self.options.sigma, rng)
            return add_training_noise(target, sigma, rng), target
        views = [self._cut(view, window, int(patch)) for view in item.inputs]
        return (views[0] if len(views) == 1 else np.concatenate(views, axis=0)), target

    def _window(
        self, item: _Item, rng: np.random.Generator, size: int, loader: int | None
    ) -> Window:
        """Where the sample of ``item`` is cut (``detail_candidates`` windows, the most
        detailed target kept): ``size`` pixels wide, or 1/s times that with ``downscale``."""
        if self.options.downscale is not None:
            scale = draw_scale(rng, *self.options.downscale)
            size = source_size(size, scale)
            loader = source_size(loader, scale) if loader else loader
        return draw_detailed_window(
            rng,
            item.target.pixels(),
            size,
            loader,
            self.options.geometric_augs,
            self.options.detail_candidates,
        )

    def _cut(self, image: DecodedImage, window: Window, patch: int) -> np.ndarray:
        """The window's pixels of ``image``, flipped/rotated, shrunk to ``patch``, as float32
        C x ``patch`` x ``patch``."""
        pixels = crop(image.pixels(), window.top, window.left, window.size)
        if window.size == patch:  # no downscale: convert the patch straight to C x P x P
            return self._float_chw(pixels, window.mode)
        return _as_chw(shrink(self._float_hwc(pixels, window.mode), patch))


class ValidationSet(_Dataset):
    """The whole validation images, in name order: iterate for (name, input, target).

    Inputs and targets are float32 C x H x W in [0, 1] (Gaussian inputs: plus the official,
    seed-0 noise, unclipped).
    """

    def __getitem__(self, index: int) -> tuple[str, np.ndarray, np.ndarray]:
        item = self._items[index]
        target = self._float_chw(np.asarray(item.target.pixels()))
        if self.options.sigma_test is not None:
            noisy = validation_noise(target.transpose(1, 2, 0), self.options.sigma_test)
            return item.name, np.ascontiguousarray(noisy.transpose(2, 0, 1)), target
        views = [self._float_chw(np.asarray(view.pixels())) for view in item.inputs]
        return item.name, (views[0] if len(views) == 1 else np.concatenate(views, axis=0)), target

    def __iter__(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        for index in range(len(self)):
            yield self[index]


# --------------------------------------------------------------------------- synthetic


_DEGRADATION_API = ("context", "degrade", "input_channels")


def _degradations() -> ModuleType:
    """:mod:`restormer.degradations`, imported when first needed (it is only needed here).

    Raises ImportError if it is missing, or lacks the functions used here.
    """
    from restormer import degradations

    missing = [name for name in _DEGRADATION_API if not hasattr(degradations, name)]
    if missing:
        raise ImportError(f"restormer.degradations has no {', '.join(missing)}")
    return degradations


def _as_chw(hwc: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(hwc, dtype=np.float32).transpose(2, 0, 1))


class SyntheticTrainingSet(TrainingSet):
    """Training pairs made from clean photos, degraded on the fly; see :meth:`sample`.

    Safe to use from several threads: it holds no mutable state.
    """

    def __init__(self, items: Sequence[_Item], options: DatasetOptions) -> None:
        super().__init__(items, options)
        if options.degradation is None:
            raise ValueError("SyntheticTrainingSet needs options with a degradation")
        self.task: str = options.degradation
        self.margin: int = int(_degradations().context(self.task))
        """Pixels cut beyond the patch on each side, read by the degradation, then trimmed."""

    @property
    def in_channels(self) -> int:
        """Channels of an input sample, as the task's degradation makes them (1, 3 or 6)."""
        return int(_degradations().input_channels(self.task))

    def sample(
        self, index: int, rng: np.random.Generator, patch: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(degraded input, clean target) for item ``index``: float32 C x patch x patch.

        A window of ``patch + 2 * margin`` pixels is placed as :class:`TrainingSet` places its
        patch (official loader crop of ``gt_size + 2 * margin``, progressive window inside
        it; images smaller than the window are mirrored at the bottom/right), the clean
        crop is flipped/rotated (``geometric_augs``), degraded with ``rng`` and trimmed by
        ``margin`` on each side. So the patch is exactly the centre of a degraded larger
        crop, and what a blur reads beyond the patch is real image, not padding.
        ``detail_candidates`` and ``downscale`` choose and shrink windows as for
        :class:`TrainingSet`. Randomness comes from ``rng`` only, in the order: (with
        ``downscale``: s,) window(s) with their flip/rotation, (with a ``clean_fraction``:
        whether to degrade,) degradation parameters, degradation.
        Gaussian tasks give unclipped inputs.
        """
        if isinstance(patch, bool) or not isinstance(patch, (int, np.integer)) or patch < 1:
            raise ValueError(f"patch must be a positive integer, not {patch!r}")
        patch, margin = int(patch), self.margin
        item = self._items[index]
        loader = self.loader_size + 2 * margin if self.loader_size else None
        window = self._window(item, rng, patch + 2 * margin, loader)
        clean = self._float_hwc(
            crop(item.target.pixels(), window.top, window.left, window.size), window.mode
        )
        clean = shrink(clean, patch + 2 * margin)
        degraded = _checked(self._degrade(clean, rng), clean, self)
        inner = slice(margin, margin + patch)
        return _as_chw(degraded[inner, inner]), _as_chw(clean[inner, inner])

    def _degrade(self, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One random degradation of ``clean``, or none for a ``clean_fraction`` of samples."""
        fraction = self.options.clean_fraction
        if fraction > 0 and rng.random() < fraction:
            return _degradations().undegraded(self.task, clean)
        return _degradations().degrade(self.task, clean, rng, **self.options.sampler_options)


class SyntheticValidationSet(ValidationSet):
    """Whole clean validation images and their synthetic degradations, in name order.

    Image ``i`` is degraded once, with ``np.random.default_rng([seed, i])``, the first time
    it is asked for, and the degraded input is kept (validation photos are small): every
    validation of a run, and every run with the same ``seed``, sees the same inputs.
    """

    def __init__(self, items: Sequence[_Item], options: DatasetOptions) -> None:
        super().__init__(items, options)
        if options.degradation is None:
            raise ValueError("SyntheticValidationSet needs options with a degradation")
        self.task: str = options.degradation
        self._inputs: list[np.ndarray | None] = [None] * len(self._items)

    @property
    def in_channels(self) -> int:
        """Channels of an input, as the task's degradation makes them (1, 3 or 6)."""
        return int(_degradations().input_channels(self.task))

    def __getitem__(self, index: int) -> tuple[str, np.ndarray, np.ndarray]:
        index = range(len(self._items))[index]  # negative indices, IndexError as usual
        item = self._items[index]
        clean = self._float_hwc(np.asarray(item.target.pixels()))
        kept = self._inputs[index]
        if kept is None:
            rng = np.random.default_rng([self.options.seed, index])
            kept = _as_chw(_checked(_degradations().degrade(self.task, clean, rng), clean, self))
            kept.flags.writeable = False  # shared by every validation of the run
            self._inputs[index] = kept
        return item.name, kept.copy(), _as_chw(clean)  # a copy: the caller may write to it


def _checked(degraded: np.ndarray, clean: np.ndarray, dataset: _Dataset) -> np.ndarray:
    """The degradation's output, after checking it has the size and channels promised."""
    out = np.asarray(degraded)
    expected = (*clean.shape[:2], dataset.in_channels)
    if out.shape != expected:
        raise RuntimeError(
            f"restormer.degradations returned a {out.shape} array for a {clean.shape} image; "
            f"expected {expected}"
        )
    return out


# --------------------------------------------------------------------------- building


def build_training_set(
    dataset_opt: Mapping[str, Any],
    *,
    key_prefix: str = "datasets.train",
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> TrainingSet:
    """Check ``dataset_opt`` (an official ``datasets.train`` dict), pair and decode the files.

    ``cache_dir``: where decoded images are kept (default :func:`default_cache_dir`).
    ``workers``: decoding threads (default up to 4). ``progress(done, total)`` after each file.
    Every problem is a :class:`DatasetOptionError` naming the option key.
    """
    options = parse_dataset_options(dataset_opt, key_prefix=key_prefix, phase="train")
    dataset_class = TrainingSet
    if options.degradation is not None:
        _require_degradations(options)
        dataset_class = SyntheticTrainingSet
    return dataset_class(_load_items(options, DecodeCache(cache_dir), workers, progress), options)


def build_validation_set(
    dataset_opt: Mapping[str, Any],
    *,
    key_prefix: str = "datasets.val",
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> ValidationSet:
    """Like :func:`build_training_set`, for an official ``datasets.val`` dict."""
    options = parse_dataset_options(dataset_opt, key_prefix=key_prefix, phase="val")
    dataset_class = ValidationSet
    if options.degradation is not None:
        _require_degradations(options)
        dataset_class = SyntheticValidationSet
    return dataset_class(_load_items(options, DecodeCache(cache_dir), workers, progress), options)


def _require_degradations(options: DatasetOptions) -> None:
    """Fail before decoding anything if the degradations package cannot be imported."""
    try:
        _degradations()
    except ImportError as exc:
        raise DatasetOptionError(
            f"{options.key('degradation')}: synthetic degradations need the "
            f"restormer.degradations package, which cannot be imported ({exc})"
        ) from None


def _load_items(
    options: DatasetOptions, cache: DecodeCache, workers: int | None, progress: Progress | None
) -> list[_Item]:
    """Scan, pair, decode (into the cache) and size-check every file of the dataset."""
    target_key = options.key("dataroot_gt")
    targets = scan_images(options.target_folder, target_key)
    folders: list[tuple[str, list[Path]]] = [(target_key, targets)]
    for name, folder in options.input_folders:
        key = options.key(name)
        found = scan_images(folder, key)
        paired = pair_by_name(
            targets, found, options.filename_tmpl, input_key=key, target_key=target_key
        )
        folders.append((key, paired))
    total = sum(len(paths) for _, paths in folders)
    decoded: list[list[DecodedImage]] = []
    for key, paths in folders:
        report = _offset_progress(progress, sum(len(d) for d in decoded), total)
        try:
            decoded.append(cache.get_all(paths, workers=workers, progress=report))
        except ImageFileError as exc:
            raise DatasetOptionError(f"{key}: {exc}") from None
    return _items(options, folders, decoded)


def _items(
    options: DatasetOptions,
    folders: list[tuple[str, list[Path]]],
    decoded: list[list[DecodedImage]],
) -> list[_Item]:
    target_key = folders[0][0]
    items = []
    for index, target in enumerate(decoded[0]):
        inputs = tuple(views[index] for views in decoded[1:])
        for (key, _), view in zip(folders[1:], inputs, strict=True):
            if view.shape[:2] != target.shape[:2]:
                raise DatasetOptionError(
                    f"{key}: '{view.source.name}' is {_size(view)} but its target "
                    f"'{target.source.name}' in {target_key} is {_size(target)}"
                )
        name = (inputs[0] if inputs else target).source.stem
        items.append(_Item(name=name, inputs=inputs, target=target))
    return items


def _offset_progress(progress: Progress | None, done: int, total: int) -> Progress | None:
    if progress is None:
        return None
    return lambda n, _: progress(done + n, total)


def _size(image: DecodedImage) -> str:
    return f"{image.width}x{image.height}"


def _channels(pixels: np.ndarray, *, gray: bool) -> np.ndarray:
    """H x W x {1,3} -> H x W x 1 (gray) or H x W x 3 (RGB), same dtype."""
    channels = pixels.shape[2]
    if gray and channels == 3:
        return to_gray(pixels)
    if not gray and channels == 1:
        return np.repeat(pixels, 3, axis=2)
    return pixels
