"""Realistic, seeded synthetic degradations of clean photos, one per restoration task.

They make training pairs on the fly from clean photos (a crop is cut :func:`context` pixels
larger on each side, degraded, then trimmed, so its borders are realistic) and back the
``restormer degrade`` command. Each task draws its parameters over a wide, realistic range
(:func:`sample`), because the models are judged on degradations synthesised by other people or
captured by real cameras; :func:`apply` then degrades deterministically given the generator
state and the parameters::

    rng = np.random.default_rng(seed)
    degraded = degrade("deraining", clean, rng)   # = apply(task, clean, rng, sample(task, rng))

``clean`` is float32 H x W x C in [0, 1], C = 1 for ``gaussian-gray-denoising`` and 3 for the
others; it is never modified. The output is float32 H x W x :func:`input_channels`, and all
randomness comes from ``rng``.

Per task (module): output channels, storage.

* ``gaussian-color-denoising`` / ``gaussian-gray-denoising`` (noise): white Gaussian noise,
  sigma 0-50 levels, the official recipe; 3 / 1 channels, float, unclipped.
* ``real-denoising`` (noise): unprocess to raw, optional Bayer mosaic, shot + read noise,
  demosaic, white balance, colour matrix, sRGB, optional JPEG; 3 channels, 8 bits.
* ``deraining`` (rain): 1-3 layers of rain streaks, light or heavy (with a veil); 3, 8 bits.
* ``motion-deblurring`` (kernels, blur): camera-shake or near-linear kernels 7-41 px in linear
  light; 3, 8 bits.
* ``defocus-deblurring`` (kernels, blur): disk blur of radius 1-12 px, uniform or varying
  over the image, in linear light; 3, 8 bits. It is the combined view of the dual-pixel pair.
* ``dual-pixel-defocus-deblurring`` (kernels, blur): the left and right views through the two
  half-disks of the same blur; 6 (left RGB, right RGB), 16 bits.

Modules: :mod:`~restormer.degradations.colour` (sRGB <-> linear light, quantisation),
:mod:`~restormer.degradations.noise` (Gaussian and camera noise),
:mod:`~restormer.degradations.kernels` (motion trajectories, disks, half-disks),
:mod:`~restormer.degradations.blur` (motion, defocus and dual-pixel blurring) and
:mod:`~restormer.degradations.rain` (rain streaks).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

from restormer.degradations.blur import (
    MAX_DEFOCUS_CONTEXT,
    MAX_MOTION_CONTEXT,
    DefocusParams,
    MotionBlurParams,
    apply_defocus,
    apply_dual_pixel,
    apply_motion_blur,
    combined_view,
    sample_defocus,
    sample_motion_blur,
)
from restormer.degradations.noise import (
    CameraNoiseParams,
    GaussianNoiseParams,
    apply_camera_noise,
    apply_gaussian_noise,
    sample_camera_noise,
    sample_gaussian_noise,
)
from restormer.degradations.rain import RainParams, apply_rain, sample_rain
from restormer.tasks import TASKS

__all__ = [
    "DEGRADATION_TASKS",
    "CameraNoiseParams",
    "DefocusParams",
    "GaussianNoiseParams",
    "MotionBlurParams",
    "Params",
    "RainParams",
    "apply",
    "check_sampler_options",
    "clean_channels",
    "combined_view",
    "context",
    "degrade",
    "input_channels",
    "sample",
    "undegraded",
]

Params: TypeAlias = (
    GaussianNoiseParams | CameraNoiseParams | RainParams | MotionBlurParams | DefocusParams
)
"""The parameters of one degradation: a frozen dataclass, its type depending on the task."""

DEGRADATION_TASKS: tuple[str, ...] = tuple(TASKS)
"""The seven task names, as :data:`restormer.tasks.TASKS`."""

# A camera pipeline reads a pixel's neighbours through demosaicing (2 px) and JPEG blocks (8 px).
_CAMERA_CONTEXT = 8


@dataclass(frozen=True)
class _Degradation:
    sample: Callable[..., Any]  # (rng, **options) -> parameters
    apply: Callable[[np.ndarray, np.random.Generator, Any], np.ndarray]
    params: type
    clean_channels: int
    output_channels: int
    context: int


# Rain reads no neighbouring pixels: its streaks are seeded beyond the borders already.
_TABLE: dict[str, _Degradation] = {
    "deraining": _Degradation(sample_rain, apply_rain, RainParams, 3, 3, 0),
    "motion-deblurring": _Degradation(
        sample_motion_blur, apply_motion_blur, MotionBlurParams, 3, 3, MAX_MOTION_CONTEXT
    ),
    "defocus-deblurring": _Degradation(
        sample_defocus, apply_defocus, DefocusParams, 3, 3, MAX_DEFOCUS_CONTEXT
    ),
    "dual-pixel-defocus-deblurring": _Degradation(
        sample_defocus, apply_dual_pixel, DefocusParams, 3, 6, MAX_DEFOCUS_CONTEXT
    ),
    "gaussian-color-denoising": _Degradation(
        sample_gaussian_noise, apply_gaussian_noise, GaussianNoiseParams, 3, 3, 0
    ),
    "gaussian-gray-denoising": _Degradation(
        sample_gaussian_noise, apply_gaussian_noise, GaussianNoiseParams, 1, 1, 0
    ),
    "real-denoising": _Degradation(
        sample_camera_noise, apply_camera_noise, CameraNoiseParams, 3, 3, _CAMERA_CONTEXT
    ),
}
assert set(_TABLE) == set(DEGRADATION_TASKS)


def _entry(task: str) -> _Degradation:
    try:
        return _TABLE[task]
    except (KeyError, TypeError):
        valid = ", ".join(DEGRADATION_TASKS)
        raise ValueError(f"unknown task {task!r}; valid tasks: {valid}") from None


def sample(task: str, rng: np.random.Generator, **options: Any) -> Params:
    """Draw the parameters of one degradation for ``task`` over its realistic range.

    ``options``: keyword arguments of the task's sampler that reshape the draw for training
    (``motion-deblurring``: ``size_distribution``); none gives the benchmark's draw.
    """
    return _entry(task).sample(rng, **options)


def check_sampler_options(task: str, options: Mapping[str, Any]) -> None:
    """Raise ValueError, in one line, when ``options`` are not valid for ``task``'s sampler."""
    accepted = list(inspect.signature(_entry(task).sample).parameters)[1:]
    for name in options:
        if name not in accepted:
            known = ", ".join(accepted) if accepted else "none"
            raise ValueError(f"{task} has no sampler option {name!r} (options: {known})")
    sample(task, np.random.default_rng(0), **options)  # invalid values raise here


def apply(task: str, clean: np.ndarray, rng: np.random.Generator, params: Params) -> np.ndarray:
    """Degrade ``clean`` (float32 H x W x C in [0, 1], untouched) with ``params``; the noise
    and other per-pixel randomness come from ``rng``. Float32 H x W x ``input_channels(task)``.
    """
    entry = _entry(task)
    _check_clean(task, clean, entry.clean_channels)
    if not isinstance(params, entry.params):
        raise TypeError(
            f"{task} takes {entry.params.__name__} parameters, got {type(params).__name__}"
        )
    return entry.apply(clean, rng, params)


def degrade(task: str, clean: np.ndarray, rng: np.random.Generator, **options: Any) -> np.ndarray:
    """``apply(task, clean, rng, sample(task, rng, **options))``: one random degradation of
    ``clean``."""
    entry = _entry(task)
    _check_clean(task, clean, entry.clean_channels)
    return entry.apply(clean, rng, entry.sample(rng, **options))


def undegraded(task: str, clean: np.ndarray) -> np.ndarray:
    """The input an undegraded photo gives ``task``'s model: a copy of ``clean``, or for
    ``dual-pixel-defocus-deblurring`` the photo as both views (an in-focus pair).

    Training on some of these teaches a model to leave clean content alone.
    """
    entry = _entry(task)
    _check_clean(task, clean, entry.clean_channels)
    copies = entry.output_channels // entry.clean_channels
    return np.concatenate([clean] * copies, axis=2) if copies > 1 else clean.copy()


def context(task: str) -> int:
    """Pixels beyond a pixel that its degradation reads (half the largest kernel): cut a
    training crop this much larger on each side, degrade it, then trim it."""
    return _entry(task).context


def input_channels(task: str) -> int:
    """Channels of the degraded image (the model's input): 6 for dual pixel (left RGB, right
    RGB), 1 for ``gaussian-gray-denoising``, 3 otherwise."""
    return _entry(task).output_channels


def clean_channels(task: str) -> int:
    """Channels of the clean image a task degrades: 1 for ``gaussian-gray-denoising``, else 3."""
    return _entry(task).clean_channels


def _check_clean(task: str, clean: object, channels: int) -> None:
    if not isinstance(clean, np.ndarray):
        raise ValueError(f"clean image must be a numpy array, got {type(clean).__name__}")
    if clean.dtype != np.float32:
        raise ValueError(f"clean image must be float32 in [0, 1], got {clean.dtype}")
    if clean.ndim != 3 or clean.shape[2] != channels:
        raise ValueError(
            f"{task} needs a clean H x W x {channels} image, got shape {tuple(clean.shape)}"
        )
    if clean.shape[0] < 1 or clean.shape[1] < 1:
        raise ValueError(f"clean image is empty: shape {tuple(clean.shape)}")
