"""Additive white Gaussian noise, as the official ``Dataset_GaussianDenoising`` adds it.

Training: one noise level per patch (``sigma_type`` random / constant / choice), noise
``randn * sigma / 255`` in float32, added to the clean [0, 1] patch without clipping or
quantisation. Validation: the official code calls ``np.random.seed(0)`` then
``img += np.random.normal(0, sigma_test / 255, img.shape)`` on each H x W x C float32 image, so
every validation image gets the same, reproducible noise field (drawn in float64, added to
float32 in place). :func:`validation_noise` reproduces that bit for bit.
"""

from __future__ import annotations

import numpy as np

from restormer.data.options import SigmaOptions

__all__ = ["add_training_noise", "draw_sigma", "validation_noise"]


def draw_sigma(options: SigmaOptions, rng: np.random.Generator) -> float:
    """One noise level (8-bit units) as ``sigma_type`` prescribes."""
    if options.kind == "random":
        low, high = options.values
        return float(rng.uniform(low, high))
    if options.kind == "choice":
        return options.values[int(rng.integers(0, len(options.values)))]
    return options.values[0]


def add_training_noise(clean: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``clean + N(0, 1) * sigma / 255`` in float32, unclipped (a new array)."""
    level = np.float32(sigma) / np.float32(255.0)  # torch.FloatTensor([sigma]) / 255.0
    noise = rng.standard_normal(clean.shape, dtype=np.float32)
    noise *= level
    noise += clean
    return noise


def validation_noise(clean_hwc: np.ndarray, sigma_test: float) -> np.ndarray:
    """The official validation input for a clean H x W x C float32 image (a new array)."""
    noise = np.random.RandomState(0).normal(0, sigma_test / 255.0, clean_hwc.shape)
    noisy = clean_hwc.astype(np.float32, copy=True)
    noisy += noise  # float32 += float64: computed in float64, stored as float32, as officially
    return noisy
