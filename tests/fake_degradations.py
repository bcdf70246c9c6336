"""A tiny stand-in for :mod:`restormer.degradations`, with the same public interface.

Non-Gaussian tasks: a box blur of a drawn radius (at most :data:`CONTEXT`) and a drawn gain,
quantised to 8 bits (16 for dual-pixel, whose right view uses the widest blur). The blur sums
integer levels, so it is exact and independent of the array's size and orientation: degrading
a larger crop and trimming it must give exactly the pixels of the whole degraded image.
Gaussian tasks: unclipped white noise of a drawn level. Tests install it with
:func:`install`.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import restormer
from restormer.tasks import TASKS

DEGRADATION_TASKS: tuple[str, ...] = tuple(TASKS)
CONTEXT = 2


@dataclass(frozen=True)
class FakeParams:
    """What :func:`sample` draws."""

    radius: int
    gain: float
    sigma: float


def _check(task: str) -> None:
    if task not in DEGRADATION_TASKS:
        raise ValueError(f"unknown task {task!r}")


def context(task: str) -> int:
    _check(task)
    return CONTEXT


def input_channels(task: str) -> int:
    _check(task)
    if task == "dual-pixel-defocus-deblurring":
        return 6
    return 1 if task == "gaussian-gray-denoising" else 3


def sample(task: str, rng: np.random.Generator) -> FakeParams:
    _check(task)
    radius = int(rng.integers(1, CONTEXT + 1))
    gain = float(rng.uniform(0.7, 1.0))
    sigma = float(rng.uniform(5, 50)) / 255 if task.startswith("gaussian-") else 0.0
    return FakeParams(radius, gain, sigma)


def _box(levels: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window of integer levels, mirrored at the borders (exact sums)."""
    height, width = levels.shape[:2]
    padded = np.pad(levels, ((radius, radius), (radius, radius), (0, 0)), mode="symmetric")
    total = np.zeros_like(levels)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            total += padded[dy : dy + height, dx : dx + width]
    return total / (2 * radius + 1) ** 2


def _quantised(x: np.ndarray, levels: int) -> np.ndarray:
    return (np.rint(np.clip(x, 0, 1) * levels) / levels).astype(np.float32)


def apply(task: str, clean: np.ndarray, rng: np.random.Generator, params: FakeParams) -> np.ndarray:
    _check(task)
    if task.startswith("gaussian-"):
        noise = rng.standard_normal(clean.shape).astype(np.float32) * np.float32(params.sigma)
        return clean + noise
    levels = np.rint(clean.astype(np.float64) * 255)  # the tests' photos are 8-bit
    if task == "dual-pixel-defocus-deblurring":
        left = _box(levels, params.radius) * params.gain / 255
        right = _box(levels, CONTEXT) * params.gain / 255
        return _quantised(np.concatenate([left, right], axis=2), 65535)
    return _quantised(_box(levels, params.radius) * params.gain / 255, 255)


def degrade(task: str, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return apply(task, clean, rng, sample(task, rng))


def check_sampler_options(task: str, options: dict[str, object]) -> None:
    for name in options:  # the fake samplers take no options
        raise ValueError(f"{task} has no sampler option {name!r} (options: none)")


def undegraded(task: str, clean: np.ndarray) -> np.ndarray:
    copies = input_channels(task) // clean.shape[2]
    return np.concatenate([clean] * copies, axis=2)


def install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``from restormer import degradations`` give this module (undone after the test)."""
    module = sys.modules[__name__]
    monkeypatch.setitem(sys.modules, "restormer.degradations", module)
    monkeypatch.setattr(restormer, "degradations", module, raising=False)


REAL_PACKAGE = (Path(restormer.__path__[0]) / "degradations" / "__init__.py").is_file()
"""Whether the real ``restormer.degradations`` has landed; tests then run against it too."""
BACKENDS = ("fake", "real")


def use_backend(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Install the fake (``"fake"``) or import the real package; skip if it is not there."""
    if name == "fake":
        install(monkeypatch)
        return sys.modules[__name__]
    if not REAL_PACKAGE:
        pytest.skip("restormer.degradations has not landed yet")
    return importlib.import_module("restormer.degradations")
