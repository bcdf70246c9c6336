"""Blur: camera shake (``motion-deblurring``), defocus (``defocus-deblurring``) and the
dual-pixel views of defocus (``dual-pixel-defocus-deblurring``).

All blurs act on linear light (sRGB decoded, convolved, encoded again), because a lens and a
moving sensor integrate photons, not encoded values: blurred highlights spread and stay bright
as in real photos. Borders are reflected (``cv2.BORDER_REFLECT_101``); a training crop is cut
:func:`restormer.degradations.context` pixels larger on each side and trimmed afterwards, so the
reflection never shows in training. A little sensor noise (0-2 8-bit levels) is added after the
blur, then the result is quantised: 8 bits for single images, 16 bits for the dual-pixel views
(the DPDD dataset's 16-bit PNGs).

Defocus and dual pixel share one parameter type and one code path: the single defocused image
is the combined (centre) view, the mean *in linear light* of the left and right views -- what
the sensor records when it sums the two photodiodes of each pixel -- quantised to 8 bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from restormer.degradations.colour import linear_to_srgb, quantise, srgb_to_linear
from restormer.degradations.kernels import (
    MOTION_KINDS,
    disk_kernel,
    disk_radius_extent,
    half_disk_kernels,
    linear_motion_path,
    rasterise_path,
    shake_path,
)

__all__ = [
    "DefocusParams",
    "MotionBlurParams",
    "apply_defocus",
    "apply_dual_pixel",
    "apply_motion_blur",
    "combined_view",
    "convolve",
    "defocus_kernel",
    "dual_pixel_views",
    "motion_kernel",
    "sample_defocus",
    "sample_motion_blur",
]

MOTION_SIZE_RANGE = (7, 41)  # odd kernel sides, px
MOTION_SIZE_DISTRIBUTIONS = ("uniform", "log-uniform")
SENSOR_NOISE_RANGE = (0.0, 2.0)  # 8-bit levels
DEFOCUS_RADIUS_RANGE = (1.0, 12.0)  # px, largest blur of an image
SOFTNESS_RANGE = (0.6, 2.0)  # px, width of the disk's edge ramp
MAX_MOTION_CONTEXT = MOTION_SIZE_RANGE[1] // 2
MAX_DEFOCUS_CONTEXT = disk_radius_extent(DEFOCUS_RADIUS_RANGE[1], SOFTNESS_RANGE[1])


def convolve(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """True convolution (kernel flipped, centred) with reflected borders, float32, new array."""
    if kernel.shape == (1, 1):
        return image * np.float32(kernel[0, 0])
    flipped = np.ascontiguousarray(kernel[::-1, ::-1], dtype=np.float32)
    out = cv2.filter2D(image, cv2.CV_32F, flipped, borderType=cv2.BORDER_REFLECT_101)
    return out.reshape(image.shape)


class _Spectrum:
    """One image's reflect-padded Fourier spectrum, to convolve it with many kernels.

    Equal to :func:`convolve` (up to float rounding) for kernels reaching at most ``reach`` px,
    at about a third of the cost when an image is blurred by several kernels (one forward
    transform per channel, then one product and one inverse per kernel and channel).
    """

    def __init__(self, image: np.ndarray, reach: int) -> None:
        self.height, self.width = image.shape[:2]
        self.reach = reach
        padded = cv2.copyMakeBorder(image, reach, reach, reach, reach, cv2.BORDER_REFLECT_101)
        padded = padded.reshape(padded.shape[0], padded.shape[1], -1)
        self.rows = cv2.getOptimalDFTSize(padded.shape[0])
        self.cols = cv2.getOptimalDFTSize(padded.shape[1])
        self.spectra = []
        for channel in range(padded.shape[2]):
            plane = np.zeros((self.rows, self.cols), np.float32)
            plane[: padded.shape[0], : padded.shape[1]] = padded[:, :, channel]
            self.spectra.append(cv2.dft(plane))

    def convolve(self, kernel: np.ndarray) -> np.ndarray:
        """True convolution with an odd-sided ``kernel``, float32 H x W x C."""
        half_y, half_x = kernel.shape[0] // 2, kernel.shape[1] // 2
        if max(half_y, half_x) > self.reach:
            raise ValueError(f"kernel {kernel.shape} reaches beyond the padding {self.reach}")
        plane = np.zeros((self.rows, self.cols), np.float32)
        plane[: kernel.shape[0], : kernel.shape[1]] = kernel
        plane = np.roll(plane, (-half_y, -half_x), axis=(0, 1))  # kernel centre at the origin
        transfer = cv2.dft(plane)
        r = self.reach
        out = np.empty((self.height, self.width, len(self.spectra)), np.float32)
        for channel, spectrum in enumerate(self.spectra):
            product = cv2.mulSpectrums(spectrum, transfer, 0)
            full = cv2.idft(product, flags=cv2.DFT_SCALE | cv2.DFT_REAL_OUTPUT)
            out[:, :, channel] = full[r : r + self.height, r : r + self.width]
        return out


def _noise_and_quantise(
    srgb: np.ndarray, rng: np.random.Generator, sigma: float, bits: int
) -> np.ndarray:
    noise = rng.standard_normal(srgb.shape, dtype=np.float32)
    noise *= np.float32(sigma / 255.0)
    noise += srgb
    return quantise(noise, bits)


# ------------------------------------------------------------------------------------ motion


@dataclass(frozen=True)
class MotionBlurParams:
    """Camera-shake blur.

    ``kind``: "shake" (random hand-tremor trajectory) or "linear" (near-straight motion).
    ``size``: odd kernel side in px, 7-41: the extent of the motion. ``kernel_seed`` fixes the
    trajectory (and for "linear" its angle, speed change and bend), so the parameters alone
    determine the kernel (:func:`motion_kernel`). ``noise_sigma``: sensor noise, 8-bit levels.
    """

    kind: str
    size: int
    kernel_seed: int
    noise_sigma: float


def sample_motion_blur(
    rng: np.random.Generator, size_distribution: str = "uniform"
) -> MotionBlurParams:
    """Shake 75% / near-linear 25%; size over the odd sides 7-41 (small shakes of a steady
    hand to the 40-px blurs of GoPro-style and long-exposure photos); noise 0-2 levels.

    ``size_distribution``: "uniform" over the odd sides (the benchmark's draw), or
    "log-uniform" (chance proportional to 1 / size: half the draws at 15 px or less, against
    28%), a training option for models that would otherwise sharpen small blurs as if they
    were large.
    """
    if size_distribution not in MOTION_SIZE_DISTRIBUTIONS:
        raise ValueError(
            f"unknown size_distribution {size_distribution!r}; "
            f"expected one of {', '.join(MOTION_SIZE_DISTRIBUTIONS)}"
        )
    kind = MOTION_KINDS[0] if rng.random() < 0.75 else MOTION_KINDS[1]
    sides = np.arange(MOTION_SIZE_RANGE[0], MOTION_SIZE_RANGE[1] + 1, 2)
    if size_distribution == "uniform":
        size = int(sides[rng.integers(0, len(sides))])
    else:
        size = int(rng.choice(sides, p=(1 / sides) / (1 / sides).sum()))
    seed = int(rng.integers(0, 2**63 - 1))
    sigma = float(rng.uniform(*SENSOR_NOISE_RANGE))
    return MotionBlurParams(kind, size, seed, sigma)


def motion_kernel(params: MotionBlurParams) -> np.ndarray:
    """The ``size`` x ``size`` kernel of ``params`` (sums to 1, centroid at the centre).

    "shake": drift share 0-0.6, 0.3-2.5 tremor cycles, jerk rate 0-1 (see
    :func:`~restormer.degradations.kernels.shake_path`). "linear": any angle, speed change
    -0.9..0.9, bend up to 8% of the length.
    """
    if params.kind not in MOTION_KINDS:
        raise ValueError(f"unknown motion kind {params.kind!r}; expected one of {MOTION_KINDS}")
    rng = np.random.default_rng(params.kernel_seed)
    if params.kind == "shake":
        path = shake_path(
            rng,
            drift=float(rng.uniform(0.0, 0.6)),
            cycles=float(rng.uniform(0.3, 2.5)),
            jerk=float(rng.uniform(0.0, 1.0)),
        )
    else:
        path = linear_motion_path(
            float(rng.uniform(0.0, math.pi)),
            accel=float(rng.uniform(-0.9, 0.9)),
            bend=float(rng.uniform(-0.08, 0.08)),
        )
    return rasterise_path(path, params.size)


def apply_motion_blur(
    clean: np.ndarray, rng: np.random.Generator, params: MotionBlurParams
) -> np.ndarray:
    """Blur in linear light with :func:`motion_kernel`, add sensor noise, 8 bits."""
    blurred = convolve(srgb_to_linear(clean), motion_kernel(params))
    return _noise_and_quantise(linear_to_srgb(blurred), rng, params.noise_sigma, 8)


# ----------------------------------------------------------------------------------- defocus


@dataclass(frozen=True)
class DefocusParams:
    """Lens defocus, seen as one image or as the two dual-pixel views.

    ``radii``: signed blur radii in px, one for a uniform blur (``|r|`` 1-12), 2-4 ascending
    for a spatially varying one (a smooth random map over the image picks and blends between
    them; ``|r|`` 0-12, the largest >= 1). The sign is the side of the focal plane: > 0 behind
    it (left view blurred by the left half-disk), < 0 in front (halves swapped); r = 0 is in
    focus. ``softness`` (px) and ``rim``: disk edge and profile (:func:`disk_kernel`).
    ``split``: width of the soft left/right cut of the dual-pixel halves, px. ``falloff``: the
    halves' opposite intensity ramps across the image (left view gains ``1 + falloff * t``, the
    right ``1 - falloff * t``, t from -1 at the left edge to 1 at the right), |falloff| <= 0.12.
    ``map_cell`` (px) and ``map_steepness``: size of the blur map's blobs and how abruptly it
    switches levels (1 smooth depth ramps .. 12 near-binary object boundaries).
    ``noise_sigma``: sensor noise per view, 8-bit levels.
    """

    radii: tuple[float, ...]
    softness: float
    rim: float
    split: float
    falloff: float
    map_cell: float
    map_steepness: float
    noise_sigma: float


def sample_defocus(rng: np.random.Generator) -> DefocusParams:
    """Uniform blur 50% of the time, else 2-4 levels; largest radius uniform in 1-12 px; one
    side of the focal plane for the whole image 70% of the time, else signs per level."""
    largest = float(rng.uniform(*DEFOCUS_RADIUS_RANGE))
    sign = 1.0 if rng.random() < 0.5 else -1.0
    if rng.random() < 0.5:
        radii: tuple[float, ...] = (sign * largest,)
    else:
        levels = int(rng.integers(2, 5))
        magnitudes = np.concatenate([[largest], rng.uniform(0.0, largest, levels - 1)])
        signs = np.full(levels, sign) if rng.random() < 0.7 else rng.choice([-1.0, 1.0], levels)
        radii = tuple(sorted(float(s * m) for s, m in zip(signs, magnitudes, strict=True)))
    softness = float(rng.uniform(*SOFTNESS_RANGE))
    rim = float(rng.uniform(-0.35, 0.35))
    split = float(rng.uniform(0.5, 0.5 + 0.5 * largest))
    falloff = float(rng.uniform(-0.12, 0.12))
    cell = float(np.exp(rng.uniform(np.log(64.0), np.log(384.0))))
    steepness = float(np.exp(rng.uniform(0.0, np.log(12.0))))
    sigma = float(rng.uniform(*SENSOR_NOISE_RANGE))
    return DefocusParams(radii, softness, rim, split, falloff, cell, steepness, sigma)


def defocus_kernel(params: DefocusParams, level: int = -1) -> np.ndarray:
    """The full disk of one blur level (default: the last, largest positive radius)."""
    return disk_kernel(params.radii[level], params.softness, params.rim)


def _blur_map(rng: np.random.Generator, shape: tuple[int, int], cell: float, steep: float):
    """A smooth random field in [0, 1] with blobs about ``cell`` px across (bicubic
    interpolation of a random grid at a random phase), pushed towards 0 and 1 by a sigmoid of
    slope ``steep``."""
    height, width = shape
    step = max(round(cell), 2)
    grid = rng.random((height // step + 3, width // step + 3), dtype=np.float32)
    size = (grid.shape[1] * step, grid.shape[0] * step)
    smooth = cv2.resize(grid, size, interpolation=cv2.INTER_CUBIC)
    oy, ox = (int(v) for v in rng.integers(0, step, 2))
    field = smooth[oy : oy + height, ox : ox + width]
    ends = 1.0 / (1.0 + np.exp(-steep * np.array([-0.5, 0.5])))
    field = 1.0 / (1.0 + np.exp(-steep * (field - 0.5)))
    field = (field - ends[0]) / (ends[1] - ends[0])
    return np.clip(field, 0.0, 1.0).astype(np.float32)


def dual_pixel_views(
    clean: np.ndarray, rng: np.random.Generator, params: DefocusParams
) -> tuple[np.ndarray, np.ndarray]:
    """The left and right views, float32 sRGB H x W x 3 in [0, 1], noisy, not quantised.

    Each blur level blurs the linear image with twice its half-disks (each view's kernel sums
    to 1); the levels are blended with hat weights of the blur map (which sum to 1), so the
    linear mean of the views is exactly the disk-blurred image before noise and clipping. The
    falloff gains are opposite (``1 +- g``), so in the mean they leave only ``g * (L - R) / 2``,
    a small term where the views differ (edges), as in a real combined dual-pixel image.
    """
    linear = srgb_to_linear(clean)
    height, width = clean.shape[:2]
    levels = len(params.radii)
    if levels == 1:
        weights = [None]
    else:
        position = _blur_map(rng, (height, width), params.map_cell, params.map_steepness)
        position *= np.float32(levels - 1)
        weights = [np.clip(1.0 - np.abs(position - k), 0.0, 1.0) for k in range(levels)]
    left = np.zeros_like(linear)
    right = np.zeros_like(linear)
    reach = max(disk_radius_extent(r, params.softness) for r in params.radii)
    spectrum = _Spectrum(linear, reach)
    for radius, weight in zip(params.radii, weights, strict=True):
        if weight is not None and not weight.any():
            continue
        kernel_left, kernel_right = half_disk_kernels(
            radius, params.softness, params.rim, params.split
        )
        if radius < 0:
            kernel_left, kernel_right = kernel_right, kernel_left
        view_left = spectrum.convolve(2.0 * kernel_left)
        view_right = spectrum.convolve(2.0 * kernel_right)
        if weight is None:
            left, right = view_left, view_right
        else:
            view_left *= weight[:, :, None]
            view_right *= weight[:, :, None]
            left += view_left
            right += view_right
    if params.falloff:
        ramp = np.linspace(-1.0, 1.0, width, dtype=np.float32) if width > 1 else np.zeros(1)
        gain = (np.float32(params.falloff) * ramp.astype(np.float32))[None, :, None]
        left = left * (1.0 + gain)
        right = right * (1.0 - gain)
    views = []
    for view in (left, right):
        noise = rng.standard_normal(view.shape, dtype=np.float32)
        noise *= np.float32(params.noise_sigma / 255.0)
        noise += linear_to_srgb(view)
        views.append(np.clip(noise, 0.0, 1.0))
    return views[0], views[1]


def combined_view(views: np.ndarray) -> np.ndarray:
    """The centre view of dual-pixel views (H x W x 6, left RGB then right RGB, sRGB): their
    mean in linear light, sRGB float32 H x W x 3 (not quantised)."""
    if views.ndim != 3 or views.shape[2] != 6:
        raise ValueError(f"dual-pixel views must be H x W x 6, got shape {views.shape}")
    linear = srgb_to_linear(views)
    mean = linear[:, :, :3] + linear[:, :, 3:]
    mean *= np.float32(0.5)
    return linear_to_srgb(mean)


def apply_dual_pixel(
    clean: np.ndarray, rng: np.random.Generator, params: DefocusParams
) -> np.ndarray:
    """H x W x 6 float32: left then right view, quantised to 16 bits (multiples of 1/65535)."""
    left, right = dual_pixel_views(clean, rng, params)
    return quantise(np.concatenate([left, right], axis=2), 16)


def apply_defocus(clean: np.ndarray, rng: np.random.Generator, params: DefocusParams) -> np.ndarray:
    """H x W x 3 float32: the combined view of :func:`dual_pixel_views`, quantised to 8 bits.

    With the same generator state and parameters this is :func:`combined_view` of the
    dual-pixel output, up to the 16-bit quantisation of the views (< 1/255 apart).
    """
    left, right = dual_pixel_views(clean, rng, params)
    return quantise(combined_view(np.concatenate([left, right], axis=2)), 8)
