"""Rain: streak layers composited onto a photo (``deraining``).

A falling drop crosses the field of view during the exposure and leaves a bright, thin, motion
blurred streak; drops at different depths give streaks of different length, width, sharpness
and brightness. Public deraining sets (Rain100L/H, Rain800, Rain1400/Rain13K) synthesise them
the same way at heart -- sparse random seeds smeared along a direction -- each with its own
ranges. To cover them and real rain, an image gets 1-3 layers, each:

* seeds (random points, Poisson count, random per-streak brightness) drawn over an area padded
  by the streak's reach, so streaks enter from beyond the borders as in a real photo;
* smeared by an anti-aliased line kernel 10-60 px long and 0.8-3.5 px wide (at least 6-8
  widths long: streaks, not drops), tapered towards its ends, at the image's dominant angle
  (within +-40 degrees of vertical) plus a small per-layer jitter (wind is shared);
* softened by a Gaussian (sigma 0-2 px: defocus and motion of near drops).

Two regimes are drawn 50/50: *light* (1-2 sparse layers of thin streaks, covering 1-8% of the
image each, no veil) and *heavy* (2-3 dense layers of long wide streaks covering 4-22% each,
plus a veil: the haze of distant rain accumulation). Rain only brightens: the layers are
composited with a screen or an additive (then clipped) blend, and the veil is a screen blend
towards a light grey airlight. Output quantised to 8 bits. Input PSNR on photos: about
13 dB (10th percentile, heavy) to 31 dB (90th, light).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from restormer.degradations.colour import quantise

__all__ = [
    "RainLayer",
    "RainParams",
    "apply_rain",
    "rain_layer",
    "sample_rain",
    "streak_kernel",
]

MAX_ANGLE = 40.0  # degrees from vertical, dominant direction
ANGLE_JITTER = 6.0  # degrees, per layer around the dominant direction
LENGTH_RANGE = (10.0, 60.0)
WIDTH_RANGE = (0.8, 3.5)
BLENDS = ("screen", "add")


@dataclass(frozen=True)
class RainLayer:
    """One depth layer of streaks.

    ``density``: streaks per pixel. ``length``, ``width``: streak size, px. ``angle``: degrees
    from vertical; a streak runs along (x, y) = (sin a, cos a) in image coordinates (y down), so
    a positive angle leans like a backslash (drops falling to the right). ``brightness``: peak
    opacity of the brightest streaks (each streak gets 40-100% of it). ``blur``: Gaussian sigma
    of the streaks, px. ``taper``: 0 uniform streaks .. 1 fading to zero at both ends.
    """

    density: float
    length: float
    width: float
    angle: float
    brightness: float
    blur: float
    taper: float


@dataclass(frozen=True)
class RainParams:
    """Rain on one image: its ``layers``, the dominant ``angle`` (degrees from vertical), the
    ``heavy`` regime flag, the streak ``colour`` (RGB, near white), the ``blend`` ("screen" or
    "add"), and the veil strength ``haze`` (0 when light, 0.05-0.25 heavy) and
    ``haze_colour`` (RGB airlight, light grey)."""

    heavy: bool
    angle: float
    layers: tuple[RainLayer, ...]
    colour: tuple[float, float, float]
    blend: str
    haze: float
    haze_colour: tuple[float, float, float]


def _near_white(rng: np.random.Generator, low: float) -> tuple[float, float, float]:
    grey = rng.uniform(low, 1.0)
    tint = rng.uniform(-0.04, 0.04, 3)
    r, g, b = np.clip(grey + tint, 0.0, 1.0)
    return float(r), float(g), float(b)


def sample_rain(rng: np.random.Generator) -> RainParams:
    """Heavy or light 50/50, dominant angle uniform in +-40 degrees, then the layers."""
    heavy = bool(rng.random() < 0.5)
    angle = float(rng.uniform(-MAX_ANGLE, MAX_ANGLE))
    count = int(rng.integers(2, 4)) if heavy else int(rng.integers(1, 3))
    layers = []
    for _ in range(count):
        if heavy:
            width = rng.uniform(1.2, WIDTH_RANGE[1])
            length = rng.uniform(max(20.0, 8.0 * width), LENGTH_RANGE[1])
            coverage = rng.uniform(0.04, 0.22)
            brightness = rng.uniform(0.3, 0.9)
            blur = rng.uniform(0.3, 2.0)
        else:
            width = rng.uniform(WIDTH_RANGE[0], 2.0)
            length = rng.uniform(max(LENGTH_RANGE[0], 6.0 * width), 40.0)
            coverage = rng.uniform(0.01, 0.08)
            brightness = rng.uniform(0.25, 0.8)
            blur = rng.uniform(0.0, 0.8)
        layers.append(
            RainLayer(
                density=float(coverage / (length * width)),
                length=float(length),
                width=float(width),
                angle=float(angle + rng.uniform(-ANGLE_JITTER, ANGLE_JITTER)),
                brightness=float(brightness),
                blur=float(blur),
                taper=float(rng.uniform(0.0, 1.0)),
            )
        )
    colour = _near_white(rng, 0.8)
    blend = BLENDS[0] if rng.random() < 0.6 else BLENDS[1]
    haze = float(rng.uniform(0.05, 0.25)) if heavy else 0.0
    return RainParams(heavy, angle, tuple(layers), colour, blend, haze, _near_white(rng, 0.7))


def streak_kernel(
    length: float, width: float, angle: float, blur: float = 0.0, taper: float = 0.0
) -> np.ndarray:
    """The image of one streak of unit brightness: float32, odd-sided, centrosymmetric.

    An anti-aliased segment (coverage ramps over 1 px across and at the ends) of ``length`` and
    ``width`` px at ``angle`` degrees from vertical, brightness ``1 - taper * u**2`` along it
    (u from -1 to 1), then Gaussian-blurred by ``blur`` px. Values are <= 1; the cross-section
    integrates to about ``width`` (blurring spreads, never adds, light).
    """
    theta = math.radians(angle)
    along_x, along_y = math.sin(theta), math.cos(theta)
    margin = width / 2.0 + 3.0 * blur + 1.5
    half_x = math.ceil(length / 2.0 * abs(along_x) + margin)
    half_y = math.ceil(length / 2.0 * abs(along_y) + margin)
    xs = np.arange(-half_x, half_x + 1, dtype=np.float32)[None, :]
    ys = np.arange(-half_y, half_y + 1, dtype=np.float32)[:, None]
    along = xs * along_x + ys * along_y
    across = np.abs(xs * along_y - ys * along_x)
    half_length = length / 2.0
    cover = np.clip(width / 2.0 - across + 0.5, 0.0, 1.0)
    cover *= np.clip(half_length - np.abs(along) + 0.5, 0.0, 1.0)
    u = np.clip(along / max(half_length, 1e-6), -1.0, 1.0)
    cover *= 1.0 - taper * u * u
    kernel = cover.astype(np.float32)
    if blur > 0.05:
        kernel = cv2.GaussianBlur(kernel, (0, 0), blur, borderType=cv2.BORDER_CONSTANT)
    return kernel


def rain_layer(shape: tuple[int, int], rng: np.random.Generator, layer: RainLayer) -> np.ndarray:
    """One layer's streak intensity, float32 H x W, >= 0 (overlapping streaks add up)."""
    height, width = shape
    kernel = streak_kernel(layer.length, layer.width, layer.angle, layer.blur, layer.taper)
    pad_y, pad_x = kernel.shape[0] // 2, kernel.shape[1] // 2
    padded = (height + 2 * pad_y, width + 2 * pad_x)
    count = int(rng.poisson(layer.density * padded[0] * padded[1]))
    index = rng.integers(0, padded[0] * padded[1], count)
    strength = rng.uniform(0.4 * layer.brightness, layer.brightness, count)
    seeds = np.bincount(index, weights=strength, minlength=padded[0] * padded[1])
    seeds = seeds.astype(np.float32).reshape(padded)
    streaks = cv2.filter2D(seeds, cv2.CV_32F, kernel, borderType=cv2.BORDER_CONSTANT)
    return streaks[pad_y : pad_y + height, pad_x : pad_x + width]


def apply_rain(clean: np.ndarray, rng: np.random.Generator, params: RainParams) -> np.ndarray:
    """Composite the rain of ``params`` onto ``clean`` (float32 H x W x 3 sRGB in [0, 1]):
    float32 H x W x 3 in [0, 1], multiples of 1/255, never darker than ``clean`` (up to the
    8-bit rounding)."""
    if params.blend not in BLENDS:
        raise ValueError(f"unknown rain blend {params.blend!r}; expected one of {BLENDS}")
    shape = clean.shape[:2]
    streaks = np.zeros(shape, dtype=np.float32)
    for layer in params.layers:
        streaks += rain_layer(shape, rng, layer)
    np.clip(streaks, 0.0, 1.0, out=streaks)
    rain = streaks[:, :, None] * np.asarray(params.colour, dtype=np.float32)
    base = np.clip(clean, 0.0, 1.0)
    out = 1.0 - (1.0 - base) * (1.0 - rain) if params.blend == "screen" else base + rain
    if params.haze > 0.0:
        veil = np.float32(params.haze) * np.asarray(params.haze_colour, dtype=np.float32)
        out = 1.0 - (1.0 - np.minimum(out, 1.0)) * (1.0 - veil)
    return quantise(out, 8)
