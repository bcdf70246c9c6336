"""Blur kernels: camera-shake trajectories, near-linear motion, lens defocus disks and the
dual-pixel half-disks.

Every kernel is a float32 odd-sided square, non-negative, summing to 1 (each half-disk sums to
1/2), centred: the kernel's centre of mass is the centre pixel, so blurring does not shift the
image against its sharp target.

Motion: a camera-shake kernel is the path the image of a point light draws on the sensor during
the exposure, weighted by the time spent at each place. Following the idea of Boracchi & Foi
(*Modeling the Performance of Image Restoration From Motion Blur*, TIP 2012) -- a point with
inertia, random acceleration and occasional jerks -- ours is a damped oscillator (hand tremor:
a spring pulling back to the start, so the path turns and slows at its ends, which gives real
shake kernels their bright dots) driven by white random forces and rare impulsive kicks, added
to a steady drift (the photographer's sweep). A near-linear kernel is a straight or slightly
bent segment crossed at a varying speed (acceleration), the classic object or panning blur.
The path is rasterised with sub-pixel accuracy: densely resampled (about 1/8 px steps) and
scaled so its extent fills the kernel, then bilinearly splatted.

Defocus: the image of a point out of focus is the lens aperture, a disk whose radius grows with
the distance from the focal plane. Ours has an anti-aliased edge of adjustable softness (lens
aberrations, diffraction) and an optional radial profile (bright rim or soft centre-weighted
bokeh). A dual-pixel sensor splits each pixel into a left and right photodiode that see the left
and right halves of the aperture: the two views are blurred by the two half-disks (mirror images
of each other, summing to the full disk), whose roles swap when the point is in front of instead
of behind the focal plane.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "MOTION_KINDS",
    "disk_kernel",
    "disk_radius_extent",
    "half_disk_kernels",
    "linear_motion_path",
    "rasterise_path",
    "shake_path",
]

MOTION_KINDS = ("shake", "linear")


def shake_path(
    rng: np.random.Generator,
    *,
    drift: float,
    cycles: float,
    jerk: float,
    steps: int = 192,
) -> np.ndarray:
    """A camera-shake trajectory: ``steps`` complex positions at equal time intervals.

    ``drift`` in [0, 1]: share of steady linear motion (0 = pure tremor, 1 = straight sweep).
    ``cycles``: tremor oscillations during the exposure (about 0.3 to 2.5).
    ``jerk`` in [0, 1]: rate of impulsive kicks (3 * ``jerk`` expected per exposure).
    The scale is arbitrary (the rasteriser fits the path to the kernel).
    """
    omega = 2.0 * math.pi * cycles / steps
    stiffness = omega * omega
    damping = omega * rng.uniform(0.05, 0.6)
    forces = rng.standard_normal(steps) + 1j * rng.standard_normal(steps)
    kicks = (rng.random(steps) < 3.0 * jerk / steps) * np.exp(2j * math.pi * rng.random(steps))
    forces = forces * stiffness * 4.0 + kicks * 4.0 * omega
    position = 0j
    velocity = omega * np.exp(2j * math.pi * rng.random())
    tremor = np.empty(steps, dtype=np.complex128)
    for t in range(steps):
        velocity += forces[t] - stiffness * position - damping * velocity
        position += velocity
        tremor[t] = position
    tremor -= tremor.mean()
    tremor /= max(float(np.abs(tremor).max()), 1e-12)
    time = np.linspace(0.0, 1.0, steps)
    sweep = time * np.exp(2j * math.pi * rng.random())
    return drift * sweep + (1.0 - drift) * tremor


def linear_motion_path(
    angle: float, *, accel: float = 0.0, bend: float = 0.0, steps: int = 64
) -> np.ndarray:
    """A straight (``bend`` = 0) or slightly curved segment at angle ``angle`` radians.

    ``accel`` in [-1, 1]: speed change during the exposure (the time density, hence the kernel
    weight, piles up at the slow end). ``bend``: sideways bow as a fraction of the length.
    """
    t = np.linspace(0.0, 1.0, steps)
    along = t + accel * (t * t - t)
    across = bend * 4.0 * (t * t - t)
    return (along + 1j * across) * np.exp(1j * angle)


def rasterise_path(path: np.ndarray, size: int) -> np.ndarray:
    """Time-weighted kernel of an odd ``size`` from equally timed complex positions.

    The path is resampled linearly at equal times, about 1/8 px apart on average (well under
    a pixel where it moves fastest), centred on its time-weighted centroid, scaled so that its
    farthest point from the centroid (per axis) reaches half a pixel inside the border, and
    splatted bilinearly. Sums to 1, centroid at the centre pixel.
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd integer, got {size}")
    half = (size - 1) / 2.0
    path = np.asarray(path, dtype=np.complex128)
    if size == 1 or path.size < 2:
        return _centre_impulse(size)
    span = max(float(np.ptp(path.real)), float(np.ptp(path.imag)), 1e-12)
    length = float(np.abs(np.diff(path)).sum()) / span  # path length in units of its extent
    dense = max(path.size, math.ceil(8.0 * length * size) + 1)
    t_old = np.linspace(0.0, 1.0, path.size)
    t_new = np.linspace(0.0, 1.0, dense)
    points = np.interp(t_new, t_old, path.real) + 1j * np.interp(t_new, t_old, path.imag)
    points -= points.mean()
    reach = max(float(np.abs(points.real).max()), float(np.abs(points.imag).max()))
    if reach < 1e-12:
        return _centre_impulse(size)
    points *= max(half - 0.5, 0.0) / reach
    x = np.clip(points.real + half, 0.0, size - 1.0)
    y = np.clip(points.imag + half, 0.0, size - 1.0)
    return _splat(x, y, size)


def _centre_impulse(size: int) -> np.ndarray:
    kernel = np.zeros((size, size), np.float32)
    kernel[size // 2, size // 2] = 1.0
    return kernel


def _splat(x: np.ndarray, y: np.ndarray, size: int) -> np.ndarray:
    """Bilinear splat of equally weighted points into a size x size kernel summing to 1."""
    x0 = np.minimum(np.floor(x).astype(np.int64), size - 2)
    y0 = np.minimum(np.floor(y).astype(np.int64), size - 2)
    fx = x - x0
    fy = y - y0
    flat = y0 * size + x0
    weights = np.concatenate([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy])
    index = np.concatenate([flat, flat + 1, flat + size, flat + size + 1])
    kernel = np.bincount(index, weights=weights, minlength=size * size).reshape(size, size)
    return (kernel / kernel.sum()).astype(np.float32)


def disk_radius_extent(radius: float, softness: float) -> int:
    """Half side of the disk kernel: the disk with its soft edge fits in 2 * extent + 1."""
    return max(0, math.ceil(abs(radius) + softness / 2.0 - 1e-9))


def disk_kernel(radius: float, softness: float = 1.0, rim: float = 0.0) -> np.ndarray:
    """A defocus disk (pillbox) of ``radius`` px with an anti-aliased edge, summing to 1.

    The weight is the disk's coverage, ramping linearly from 1 to 0 over ``softness`` px around
    the rim (1 px = ordinary anti-aliasing, 2 px = a soft, aberrated edge). ``rim`` in
    [-0.5, 0.5] tilts the radial profile: > 0 brighter at the edge (soap-bubble bokeh), < 0
    brighter in the centre (apodised bokeh). The side is ``2 * ceil(radius + softness/2) + 1``;
    a radius near 0 gives (nearly) the identity. Exactly symmetric under x -> -x and y -> -y.
    """
    radius = abs(float(radius))
    softness = max(float(softness), 1e-3)
    half = disk_radius_extent(radius, softness)
    coords = np.arange(-half, half + 1, dtype=np.float64)
    dist = np.hypot(coords[None, :], coords[:, None])
    weight = np.clip((radius - dist) / softness + 0.5, 0.0, 1.0)
    if rim and radius > 0.5:
        profile = 1.0 + rim * (2.0 * np.minimum(dist / radius, 1.0) ** 2 - 1.0)
        weight *= np.maximum(profile, 0.0)
    return (weight / weight.sum()).astype(np.float32)


def half_disk_kernels(
    radius: float, softness: float = 1.0, rim: float = 0.0, split: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """The (left, right) dual-pixel kernels of a defocus disk: its left and right halves.

    The disk is cut along the vertical axis with a soft transition ``split`` px wide (the
    photodiodes' angular responses overlap): the left weight falls linearly from 1 to 0 across
    ``x`` in [-split/2, split/2] (1/2 on the central column). ``right`` is ``left`` mirrored
    left-right, and ``left + right`` is :func:`disk_kernel` (so each sums to 1/2).
    """
    disk = disk_kernel(radius, softness, rim)
    half = disk.shape[1] // 2
    x = np.arange(-half, half + 1, dtype=np.float64)
    left_weight = np.clip(0.5 - x / max(float(split), 1e-3), 0.0, 1.0)
    left = (disk * left_weight[None, :]).astype(np.float32)
    right = np.ascontiguousarray(left[:, ::-1])
    return left, right
