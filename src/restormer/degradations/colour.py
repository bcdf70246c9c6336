"""sRGB transfer function and quantisation: where a degradation happens in the light.

Cameras add noise to, and lenses blur, *linear* light (photon counts); photos store it through
the sRGB transfer curve (about gamma 1/2.2). Degrading in linear light is what makes a blurred
highlight bloom and dark noise look dark-noise-like, instead of the flat look of blurring the
encoded values. Encoded outputs are then quantised to the bit depth the real data has (8-bit
photos, 16-bit dual-pixel PNGs).
"""

from __future__ import annotations

import numpy as np

__all__ = ["linear_to_srgb", "quantise", "srgb_to_linear"]

_SRGB_KNEE = np.float32(0.04045)  # encoded value where the curve changes from linear to power
_LINEAR_KNEE = np.float32(0.0031308)  # the same point in linear light


def srgb_to_linear(encoded: np.ndarray) -> np.ndarray:
    """The sRGB (IEC 61966-2-1) decoding curve, float32, a new array.

    Values below the knee (including negatives, e.g. after noise) follow the linear segment, so
    the curve is defined and monotonic on the whole real line.
    """
    x = np.asarray(encoded, dtype=np.float32)
    power = np.maximum(x, _SRGB_KNEE)
    power += np.float32(0.055)
    power *= np.float32(1 / 1.055)
    np.power(power, np.float32(2.4), out=power)
    linear = np.where(x <= _SRGB_KNEE, x * np.float32(1 / 12.92), power)
    return linear.astype(np.float32, copy=False)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """The sRGB encoding curve (inverse of :func:`srgb_to_linear`), float32, a new array."""
    y = np.asarray(linear, dtype=np.float32)
    power = np.maximum(y, _LINEAR_KNEE)
    np.power(power, np.float32(1 / 2.4), out=power)
    power *= np.float32(1.055)
    power -= np.float32(0.055)
    encoded = np.where(y <= _LINEAR_KNEE, y * np.float32(12.92), power)
    return encoded.astype(np.float32, copy=False)


def quantise(image: np.ndarray, bits: int = 8) -> np.ndarray:
    """Clip to [0, 1] and round to the nearest of ``2**bits - 1`` levels, float32, a new array.

    This is what storing the image as an 8- or 16-bit file does; outputs are exact multiples of
    ``1 / (2**bits - 1)`` up to float32 rounding.
    """
    levels = np.float32(2**bits - 1)
    out = np.clip(image, 0.0, 1.0).astype(np.float32, copy=True)
    out *= levels
    np.rint(out, out=out)
    out /= levels
    return out
