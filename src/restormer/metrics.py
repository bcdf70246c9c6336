"""Image-quality metrics with the exact arithmetic of the Restormer paper's evaluations.

Each task of the paper was scored by its own script, and the scripts do not agree on colour
space, bit depth, window or even float precision. A number is only comparable with the paper's
tables when all of that matches, so this module reproduces each one:

=============================  ===========================================================
function                       what it reproduces
=============================  ===========================================================
:func:`calculate_psnr`,        ``basicsr/metrics/psnr_ssim.py`` of the official repository
:func:`calculate_ssim`         (used for validation during training), bit for bit
:func:`psnr`                   ``20·log10(R/√MSE)``: ``Denoising/utils.calculate_psnr``,
                               the deraining script's ``compute_psnr``, MATLAB ``psnr``
:func:`psnr_float`             ``10·log10(1/MSE)`` on [0, 1] floats (DPDD scripts)
:func:`rgb_to_y_matlab`        MATLAB ``rgb2ycbcr`` luma of uint8 RGB, rounded to uint8
:func:`ssim_index_matlab`      Wang et al.'s 2003 ``SSIM_index`` (deraining)
:func:`ssim_3d`                MATLAB ``ssim`` on an H×W×C array: one 3-D Gaussian window
:func:`ssim_skimage`           scikit-image ``structural_similarity`` defaults (DPDD)
:func:`mae`                    the DPDD scripts' mean absolute error
:func:`score`                  one task's whole protocol for one (restored, target) pair
=============================  ===========================================================

Everything is numpy (float64 unless the reproduced code itself works in float32) plus OpenCV;
:func:`calculate_ssim` on colour images uses torch, because the official function runs a
float32 ``Conv3d`` and only the same operation gives the same bits.

Known limits of exactness (measured against ``metrics_golden.json`` of the reference data):

* ``calculate_psnr(..., test_y_channel=True)`` is a float32 number in the official code, and
  its last step is numpy's float32 ``log10``, which is not correctly rounded and not the same
  everywhere: numpy uses Intel's SIMD library on AVX-512 machines and the C library elsewhere.
  This module makes the same call, so it agrees with the official code run on the same
  machine. On an AVX2 machine, one of the four golden values differs by one float32 ulp
  (3.8e-6 dB, a log10 rounding) and the other three are identical.
* ``calculate_ssim(..., test_y_channel=True)`` filters with ``cv2.filter2D``, which runs an
  FFT for an 11×11 kernel; different OpenCV builds round differently (up to ~3e-14).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from restormer.io import from_float
from restormer.tasks import TASKS

__all__ = [
    "PROTOCOLS",
    "Protocol",
    "calculate_psnr",
    "calculate_ssim",
    "mae",
    "psnr",
    "psnr_float",
    "rgb_to_y_matlab",
    "score",
    "score_defocus_deblurring",
    "score_deraining",
    "score_gaussian_denoising",
    "score_motion_deblurring",
    "score_real_denoising",
    "ssim_3d",
    "ssim_index_matlab",
    "ssim_skimage",
]

# BT.601 luma weights of basicsr's bgr2ycbcr, applied to channels in B, G, R order.
_BASICSR_BGR_TO_Y = np.array([24.966, 128.553, 65.481])
# MATLAB rgb2ycbcr, first row of its matrix, for R, G, B (before the division by 255).
_MATLAB_RGB_TO_Y = (65.481, 128.553, 24.966)

_GAUSS_SIZE = 11
_GAUSS_SIGMA = 1.5
_K1, _K2 = 0.01, 0.03
_SKIMAGE_WIN = 7


def _gaussian_1d() -> np.ndarray:
    """The normalised 11-tap, sigma-1.5 Gaussian every SSIM variant here uses (11 x 1)."""
    return cv2.getGaussianKernel(_GAUSS_SIZE, _GAUSS_SIGMA)


# --------------------------------------------------------------------------- basicsr


def _basicsr_pair(
    img1: np.ndarray, img2: np.ndarray, crop_border: int, input_order: str
) -> tuple[np.ndarray, np.ndarray]:
    """Both images as float64 H x W x C, border-cropped, as the official functions see them."""
    a, b = np.asarray(img1), np.asarray(img2)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} and {b.shape}")
    if input_order not in ("HWC", "CHW"):
        raise ValueError(f"input_order must be 'HWC' or 'CHW', not {input_order!r}")
    pair = []
    for img in (a, b):
        if img.ndim == 2:
            img = img[..., None]
        elif input_order == "CHW":
            img = img.transpose(1, 2, 0)
        if img.ndim != 3:
            raise ValueError(f"expected an H x W or H x W x C image, got shape {img.shape}")
        img = img.astype(np.float64)
        if crop_border:
            img = img[crop_border:-crop_border, crop_border:-crop_border, ...]
        pair.append(img)
    return pair[0], pair[1]


def _basicsr_y(img: np.ndarray) -> np.ndarray:
    """basicsr's ``to_y_channel``: float32 BT.601 Y in [16, 235], not rounded, H x W x 1.

    The channels are taken as **B, G, R** (basicsr reads images with OpenCV). A 1-channel
    image only goes through the same float32 round trip.
    """
    x = img.astype(np.float32) / np.float32(255.0)
    if x.ndim == 3 and x.shape[2] == 3:
        y = np.dot(x, _BASICSR_BGR_TO_Y) + 16.0  # float64, as numpy promotes the weights
        y /= 255.0
        x = y.astype(np.float32)[..., None]
    return x * np.float32(255.0)


def _float32_psnr(mse: np.float32, max_value: float) -> float:
    """``20 * log10(max / sqrt(mse))`` all in float32, as numpy 2 evaluates the official line
    when ``mse`` is float32 (written out so that numpy 1.x gives the same)."""
    ratio = np.float32(max_value) / np.sqrt(mse)
    return float(np.float32(20.0) * np.log10(ratio))


def calculate_psnr(
    img1: np.ndarray,
    img2: np.ndarray,
    crop_border: int = 0,
    test_y_channel: bool = False,
    input_order: str = "HWC",
) -> float:
    """PSNR in dB exactly as the official ``basicsr.metrics.calculate_psnr`` computes it.

    ``img1`` and ``img2`` are H x W x C (or H x W) arrays in [0, 255] (or [0, 1]); the peak is
    1 when ``img1.max() <= 1``, else 255. ``crop_border`` pixels are dropped on every side.
    With ``test_y_channel`` the score is on basicsr's float32 Y channel, whose weights expect
    the channels in **BGR** order (the order OpenCV loads and training validation passes);
    RGB arrays give a slightly different number, which is what ``metrics_golden.json`` holds.
    Identical images give ``inf``. Used by the training validation (PSNR of every task).
    """
    a, b = _basicsr_pair(img1, img2, crop_border, input_order)
    if test_y_channel:
        a, b = _basicsr_y(a), _basicsr_y(b)
    mse = np.mean((a - b) ** 2)
    if mse == 0:
        return math.inf
    max_value = 1.0 if a.max() <= 1 else 255.0
    if mse.dtype == np.float32:
        return _float32_psnr(mse, max_value)
    return float(20.0 * np.log10(max_value / np.sqrt(mse)))


def _ssim_map_mean(
    mu1: np.ndarray,
    mu2: np.ndarray,
    e11: np.ndarray,
    e22: np.ndarray,
    e12: np.ndarray,
    c1: float,
    c2: float,
) -> np.ndarray:
    """SSIM map from local means ``mu`` and local second moments ``e`` (E[x²], E[y²], E[xy])."""
    mu1_sq, mu2_sq, mu1_mu2 = mu1**2, mu2**2, mu1 * mu2
    sigma1_sq = e11 - mu1_sq
    sigma2_sq = e22 - mu2_sq
    sigma12 = e12 - mu1_mu2
    return ((2 * mu1_mu2 + c1) * (2 * sigma12 + c2)) / (
        (mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2)
    )


def _ssim_basicsr_2d(img1: np.ndarray, img2: np.ndarray) -> float:
    """basicsr's one-channel SSIM (``_ssim_cly``): float64, 11x11 Gaussian, replicated borders,
    the map averaged over the whole image (no 'valid' crop), L = 255."""
    window = _gaussian_1d() @ _gaussian_1d().T
    a, b = img1.astype(np.float64), img2.astype(np.float64)

    def filt(x: np.ndarray) -> np.ndarray:
        return cv2.filter2D(x, -1, window, borderType=cv2.BORDER_REPLICATE)

    c1, c2 = (_K1 * 255) ** 2, (_K2 * 255) ** 2
    ssim_map = _ssim_map_mean(filt(a), filt(b), filt(a**2), filt(b**2), filt(a * b), c1, c2)
    return float(ssim_map.mean())


def _gaussian_3d_torch():  # type: ignore[no-untyped-def]
    """The official 11x11x11 window (outer product of three 1-D Gaussians) as a float32
    Conv3d weight, 1 x 1 x 11 x 11 x 11."""
    import torch

    g = _gaussian_1d()
    window = g @ g.T
    kernel = np.stack([window * k for k in g], axis=0)  # float64, as the official builds it
    return torch.from_numpy(kernel).float()[None, None]


def _ssim_basicsr_3d(img1: np.ndarray, img2: np.ndarray, max_value: int) -> float:
    """basicsr's ``_ssim_3d``: the H x W x C array as one volume, filtered in float32 by an
    11x11x11 Gaussian ``Conv3d`` with replicated borders (also along the channel axis)."""
    import torch
    import torch.nn.functional as F

    weight = _gaussian_3d_torch()

    def filt(t: torch.Tensor) -> torch.Tensor:
        padded = F.pad(t[None, None], (5, 5, 5, 5, 5, 5), mode="replicate")
        return F.conv3d(padded, weight)[0, 0]

    c1, c2 = (_K1 * max_value) ** 2, (_K2 * max_value) ** 2
    with torch.no_grad():
        a = torch.from_numpy(np.ascontiguousarray(img1, dtype=np.float64)).float()
        b = torch.from_numpy(np.ascontiguousarray(img2, dtype=np.float64)).float()
        ssim_map = _ssim_map_mean(filt(a), filt(b), filt(a**2), filt(b**2), filt(a * b), c1, c2)
        return float(ssim_map.mean())


def calculate_ssim(
    img1: np.ndarray,
    img2: np.ndarray,
    crop_border: int = 0,
    test_y_channel: bool = False,
    input_order: str = "HWC",
) -> float:
    """SSIM exactly as the official ``basicsr.metrics.calculate_ssim`` computes it.

    Arguments as in :func:`calculate_psnr`. Without ``test_y_channel`` the whole H x W x C
    array is one volume under an 11x11x11 Gaussian window (MATLAB ``ssim`` on a colour image,
    as the motion-deblurring and SIDD evaluations use it), computed in float32 with torch on
    the CPU; the dynamic range is 1 when ``img1.max() <= 1``, else 255. This costs about 20 s
    for a 1280x720 image on two cores; :func:`ssim_3d` is the fast float64 equivalent (the
    float32 rounding makes the two differ by up to ~1e-5). With ``test_y_channel`` it is a
    2-D SSIM of basicsr's Y channel (channels read as BGR, see :func:`calculate_psnr`), in
    float64.
    """
    a, b = _basicsr_pair(img1, img2, crop_border, input_order)
    if test_y_channel:
        return _ssim_basicsr_2d(_basicsr_y(a)[..., 0], _basicsr_y(b)[..., 0])
    max_value = 1 if a.max() <= 1 else 255
    return _ssim_basicsr_3d(a, b, max_value)


# --------------------------------------------------------------------------- PSNR, MAE


def _hwc_pair(img1: np.ndarray, img2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays as float64 H x W x C (an H x W image gets one channel); shapes must match."""
    a, b = np.asarray(img1), np.asarray(img2)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} and {b.shape}")
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    if a.ndim != 3:
        raise ValueError(f"expected an H x W or H x W x C image, got shape {a.shape}")
    return a.astype(np.float64), b.astype(np.float64)


def psnr(img1: np.ndarray, img2: np.ndarray, data_range: float = 255.0) -> float:
    """PSNR in dB, ``20 * log10(data_range / sqrt(MSE))``, in float64.

    This is ``Denoising/utils.calculate_psnr`` (Gaussian denoising, ``data_range`` 255) and the
    deraining script's ``compute_psnr`` (on the Y channel); MATLAB's ``psnr`` (motion
    deblurring, SIDD) writes it as ``10 * log10(R² / MSE)``, equal up to rounding (~1e-14).
    Identical images give ``inf``.
    """
    a, b = _hwc_pair(img1, img2)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0:
        return math.inf
    return 20 * math.log10(data_range / math.sqrt(mse))


def psnr_float(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of [0, 1] images as the DPDD scripts compute it: ``10 * log10(1 / MSE)``.

    Computed in float64 (the golden ``psnr_float_unit_range`` value; the official script's
    float32 inputs differ by ~1e-7 dB). Identical images give ``inf`` where the official
    script substitutes 100.
    """
    x, y = _hwc_pair(a, b)
    mse = float(np.mean((x - y) ** 2))
    if mse == 0:
        return math.inf
    return 10 * math.log10(1 / mse)


def mae(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute error as the DPDD scripts compute it: the mean over channels of each
    channel's mean ``|a - b|`` (sklearn ``mean_absolute_error`` per channel), in float64."""
    x, y = _hwc_pair(a, b)
    per_channel = np.abs(x - y).mean(axis=(0, 1))
    return float(per_channel.mean())


# --------------------------------------------------------------------------- MATLAB


def rgb_to_y_matlab(rgb_uint8: np.ndarray) -> np.ndarray:
    """Luma of an 8-bit RGB image as MATLAB ``rgb2ycbcr`` returns it: uint8 Y in [16, 235].

    ``Y = round(65.481/255 * R + 128.553/255 * G + 24.966/255 * B + 16)`` in double, rounded
    half away from zero and saturated like MATLAB's integer conversion. ``rgb_uint8`` is
    H x W x 3 uint8 in **RGB** order.
    """
    rgb = np.asarray(rgb_uint8)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected H x W x 3 uint8 RGB, got {rgb.shape} {rgb.dtype}")
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    wr, wg, wb = (w / 255 for w in _MATLAB_RGB_TO_Y)
    y = wr * r + wg * g + wb * b + 16
    return np.clip(np.floor(y + 0.5), 0, 255).astype(np.uint8)


def _valid_gaussian(x: np.ndarray) -> np.ndarray:
    """MATLAB ``filter2(window, x, 'valid')`` with the normalised 11x11, sigma-1.5 Gaussian."""
    g = _gaussian_1d()
    full = cv2.sepFilter2D(x, cv2.CV_64F, g, g, borderType=cv2.BORDER_REPLICATE)
    r = _GAUSS_SIZE // 2
    return full[r:-r, r:-r]


def ssim_index_matlab(img1: np.ndarray, img2: np.ndarray) -> float:
    """Mean SSIM of two gray images as Wang et al.'s ``SSIM_index.m`` (2003) computes it.

    11x11 Gaussian window (sigma 1.5), K = (0.01, 0.03), L = 255, 'valid' filtering (the map
    is 10 pixels smaller in each dimension), float64. The deraining evaluation applies it to
    :func:`rgb_to_y_matlab` luma. Images must be at least 11 x 11.
    """
    a, b = np.asarray(img1), np.asarray(img2)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"expected two H x W images of one shape, got {a.shape} and {b.shape}")
    if min(a.shape) < _GAUSS_SIZE:
        raise ValueError(f"SSIM_index needs images of at least 11 x 11 pixels, not {a.shape}")
    x, y = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (_K1 * 255) ** 2, (_K2 * 255) ** 2
    f = _valid_gaussian
    return float(_ssim_map_mean(f(x), f(y), f(x * x), f(y * y), f(x * y), c1, c2).mean())


def _replicate_filter_matrix(length: int) -> np.ndarray:
    """``length x length`` matrix of the 11-tap Gaussian along an axis of that length with
    replicated borders: row ``i`` holds the weight each sample gets in output ``i``."""
    g = _gaussian_1d()[:, 0]
    r = _GAUSS_SIZE // 2
    matrix = np.zeros((length, length))
    for i in range(length):
        for offset, weight in enumerate(g):
            matrix[i, min(max(i + offset - r, 0), length - 1)] += weight
    return matrix


def _gaussian_3d(x: np.ndarray) -> np.ndarray:
    """11-tap sigma-1.5 Gaussian along all three axes of H x W x C, replicated borders."""
    g = _gaussian_1d()
    spatial = cv2.sepFilter2D(x, cv2.CV_64F, g, g, borderType=cv2.BORDER_REPLICATE)
    spatial = spatial.reshape(x.shape)  # OpenCV drops a single channel axis
    return spatial @ _replicate_filter_matrix(x.shape[2]).T


def ssim_3d(img1: np.ndarray, img2: np.ndarray, data_range: float = 255.0) -> float:
    """Mean SSIM with one 3-D Gaussian window over an H x W x C array, in float64.

    This is MATLAB ``ssim`` on a colour image (``imgaussfilt3``, sigma 1.5, 11 taps,
    replicated borders, K = (0.01, 0.03), L = ``data_range``) as the GoPro/HIDE and SIDD
    evaluations call it, and the float64 counterpart of :func:`calculate_ssim` on RGB (which
    the official Python code computes in float32, rounding variances of 8-bit data to ~4e-3:
    the two differ by up to ~1e-5).
    """
    a, b = _hwc_pair(img1, img2)
    c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2
    f = _gaussian_3d
    return float(_ssim_map_mean(f(a), f(b), f(a * a), f(b * b), f(a * b), c1, c2).mean())


# --------------------------------------------------------------------------- scikit-image


def _uniform_1d(x: np.ndarray, size: int, axis: int) -> np.ndarray:
    """``scipy.ndimage.uniform_filter1d`` (mode 'reflect'), bit for bit.

    scipy keeps a running float64 sum along each line (add the entering sample, subtract the
    leaving one) and divides it by ``size``; a sequential cumulative sum is the same
    sequence of roundings. The result has the input's dtype.
    """
    line = np.moveaxis(x, axis, -1).astype(np.float64)
    before = size // 2
    pad = [(0, 0)] * (line.ndim - 1) + [(before, size - 1 - before)]
    padded = np.pad(line, pad, mode="symmetric")  # scipy 'reflect' repeats the edge sample
    first = np.cumsum(padded[..., :size], axis=-1)[..., -1:]
    steps = padded[..., size:] - padded[..., :-size]
    running = np.cumsum(np.concatenate([first, steps], axis=-1), axis=-1)
    return np.moveaxis((running / size).astype(x.dtype), -1, axis)


def _uniform(x: np.ndarray, size: int) -> np.ndarray:
    """``scipy.ndimage.uniform_filter``: the 1-D filter along each axis in turn."""
    for axis in range(x.ndim):
        x = _uniform_1d(x, size, axis)
    return x


def _ssim_skimage_2d(x: np.ndarray, y: np.ndarray, data_range: float) -> np.floating:
    """One channel of ``structural_similarity`` with its defaults (7x7 uniform window, sample
    covariance), in the dtype of ``x`` and ``y``, the map mean taken in float64."""
    np_ = _SKIMAGE_WIN**2
    cov_norm = np_ / (np_ - 1)
    ux, uy = _uniform(x, _SKIMAGE_WIN), _uniform(y, _SKIMAGE_WIN)
    uxx, uyy = _uniform(x * x, _SKIMAGE_WIN), _uniform(y * y, _SKIMAGE_WIN)
    uxy = _uniform(x * y, _SKIMAGE_WIN)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2
    a1, a2 = 2 * ux * uy + c1, 2 * vxy + c2
    b1, b2 = ux**2 + uy**2 + c1, vx + vy + c2
    s = (a1 * a2) / (b1 * b2)
    pad = (_SKIMAGE_WIN - 1) // 2
    return s[pad:-pad, pad:-pad].mean(dtype=np.float64)


def ssim_skimage(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """scikit-image ``structural_similarity(a, b, data_range=..., channel_axis=-1)``.

    The defaults of scikit-image (also of the DPDD scripts' ``multichannel=True``): per
    channel, a 7x7 uniform window with ``scipy.ndimage`` 'reflect' borders, sample covariance
    (49/48), K = (0.01, 0.03), the map mean over the interior (3 pixels cropped per side),
    then the mean over channels. Like scikit-image, float32 inputs are computed in float32 and
    everything else in float64, so the result equals scikit-image's to the last bit.
    ``a`` and ``b`` are H x W x C, or H x W for one channel; each side needs 7 pixels.
    """
    x, y = np.asarray(a), np.asarray(b)
    if x.shape != y.shape:
        raise ValueError(f"image shapes differ: {x.shape} and {y.shape}")
    if x.ndim not in (2, 3) or min(x.shape[:2]) < _SKIMAGE_WIN:
        raise ValueError(f"expected H x W (x C) images of at least 7 x 7 pixels, got {x.shape}")
    both32 = x.dtype == np.float32 and y.dtype == np.float32
    dtype = np.float32 if both32 else np.float64
    if x.ndim == 2:  # no channel loop: the float64 mean is returned as it is
        return float(_ssim_skimage_2d(x.astype(dtype), y.astype(dtype), data_range))
    per_channel = np.empty(x.shape[2], dtype=dtype)  # channel results stored in this dtype
    for c in range(x.shape[2]):
        xc, yc = x[..., c].astype(dtype), y[..., c].astype(dtype)
        per_channel[c] = _ssim_skimage_2d(xc, yc, data_range)
    return float(per_channel.mean())


# --------------------------------------------------------------------------- protocols


def _hwc(x: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise ValueError(f"{what}: expected an H x W or H x W x C image, got shape {arr.shape}")
    return arr


def _as_uint8(x: np.ndarray, what: str) -> np.ndarray:
    """8-bit samples: uint8 as is, floats clipped to [0, 1] and rounded like ``img_as_ubyte``."""
    arr = _hwc(x, what)
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        return from_float(arr, 8)
    raise ValueError(f"{what}: this protocol scores 8-bit images, got {arr.dtype} samples")


def _as_unit_float(x: np.ndarray, what: str, *, clip: bool) -> np.ndarray:
    """float64 in [0, 1]: uint8 / 255, uint16 / 65535, floats as they are (``clip``: clipped)."""
    arr = _hwc(x, what)
    if arr.dtype == np.uint8 or arr.dtype == np.uint16:
        return arr.astype(np.float64) / np.iinfo(arr.dtype).max
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{what}: expected uint8, uint16 or float samples, got {arr.dtype}")
    out = arr.astype(np.float64)
    return np.clip(out, 0.0, 1.0) if clip else out


def _same_shape(restored: np.ndarray, target: np.ndarray) -> None:
    if restored.shape != target.shape:
        raise ValueError(f"restored image is {restored.shape}, its target {target.shape}")


def score_deraining(restored: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Deraining (Rain100H/L, Test100/1200/2800; ``Deraining/evaluate_PSNR_SSIM.m``).

    The restored image is saved as an 8-bit PNG (so quantised here the same way), both images
    are reduced to MATLAB's uint8 Y (:func:`rgb_to_y_matlab`; gray images as they are), then
    ``psnr`` is ``20 * log10(255 / rmse)`` and ``ssim`` is :func:`ssim_index_matlab`.
    """
    r, t = _as_uint8(restored, "restored"), _as_uint8(target, "target")
    _same_shape(r, t)
    if r.shape[2] == 3:
        yr, yt = rgb_to_y_matlab(r), rgb_to_y_matlab(t)
    else:
        yr, yt = r[..., 0], t[..., 0]
    return {"psnr": psnr(yr, yt, 255.0), "ssim": ssim_index_matlab(yr, yt)}


def score_motion_deblurring(restored: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Motion deblurring on GoPro and HIDE (``Motion_Deblurring/evaluate_gopro_hide.m``).

    8-bit RGB (the restored image saved as PNG first); MATLAB ``psnr`` and ``ssim`` on the
    H x W x 3 uint8 arrays: :func:`psnr` with peak 255 and :func:`ssim_3d` with L = 255.
    RealBlur is evaluated differently (ECC alignment to the target, a validity mask, masked
    PSNR/SSIM); that protocol is not implemented here.
    """
    r, t = _as_uint8(restored, "restored"), _as_uint8(target, "target")
    _same_shape(r, t)
    return {"psnr": psnr(r, t, 255.0), "ssim": ssim_3d(r, t, 255.0)}


def score_defocus_deblurring(restored: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Defocus deblurring on DPDD, single-image and dual-pixel (``test_*_defocus_deblur.py``).

    Unquantised: the restored [0, 1] floats (clipped) against the 16-bit target / 65535, all
    in float64: :func:`psnr_float`, :func:`ssim_skimage` (data range 1) and :func:`mae`. The
    official single-image script actually reads the 16-bit PNGs as 8-bit (OpenCV's default);
    like its dual-pixel script, this scores at full 16-bit precision. LPIPS (AlexNet) is not
    computed: it needs a learned network outside this package.
    """
    r = _as_unit_float(restored, "restored", clip=True)
    t = _as_unit_float(target, "target", clip=False)
    _same_shape(r, t)
    return {"psnr": psnr_float(r, t), "ssim": ssim_skimage(r, t, 1.0), "mae": mae(r, t)}


def score_gaussian_denoising(restored: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Gaussian denoising, colour or gray (``Denoising/evaluate_gaussian_*_denoising.py``).

    The restored image is saved as an 8-bit PNG, then ``Denoising/utils.calculate_psnr``
    compares it with the clean 8-bit image: :func:`psnr` with peak 255, no border. The paper
    reports no SSIM for this task.
    """
    r, t = _as_uint8(restored, "restored"), _as_uint8(target, "target")
    _same_shape(r, t)
    return {"psnr": psnr(r, t, 255.0)}


def score_real_denoising(restored: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Real denoising on SIDD (``test_real_denoising_sidd.py`` + ``evaluate_sidd.m``).

    Unquantised: the restored [0, 1] floats (clipped; the script stores them in a .mat file)
    against the 8-bit ground truth / 255; MATLAB ``psnr`` and ``ssim`` with a peak of 1:
    :func:`psnr` and :func:`ssim_3d` with data range 1, in float64 (MATLAB works in single
    precision there; the difference is ~1e-6). DND is scored by its online server only.
    """
    r = _as_unit_float(restored, "restored", clip=True)
    t = _as_unit_float(target, "target", clip=False)
    _same_shape(r, t)
    return {"psnr": psnr(r, t, 1.0), "ssim": ssim_3d(r, t, 1.0)}


@dataclass(frozen=True)
class Protocol:
    """How one task is scored, and how its restored images are stored by the official code."""

    task: str
    metrics: tuple[str, ...]
    """Names of the numbers :func:`score` returns, in table order."""
    saved_bit_depth: int
    """Bit depth of the restored PNGs the official test script writes (8 or 16)."""
    scorer: Callable[[np.ndarray, np.ndarray], dict[str, float]]


PROTOCOLS: dict[str, Protocol] = {
    "deraining": Protocol("deraining", ("psnr", "ssim"), 8, score_deraining),
    "motion-deblurring": Protocol(
        "motion-deblurring", ("psnr", "ssim"), 8, score_motion_deblurring
    ),
    "defocus-deblurring": Protocol(
        "defocus-deblurring", ("psnr", "ssim", "mae"), 16, score_defocus_deblurring
    ),
    "dual-pixel-defocus-deblurring": Protocol(
        "dual-pixel-defocus-deblurring", ("psnr", "ssim", "mae"), 16, score_defocus_deblurring
    ),
    "gaussian-color-denoising": Protocol(
        "gaussian-color-denoising", ("psnr",), 8, score_gaussian_denoising
    ),
    "gaussian-gray-denoising": Protocol(
        "gaussian-gray-denoising", ("psnr",), 8, score_gaussian_denoising
    ),
    "real-denoising": Protocol("real-denoising", ("psnr", "ssim"), 8, score_real_denoising),
}
"""The protocol of each of the seven tasks (keys as in :data:`restormer.tasks.TASKS`)."""


def score(task: str, restored: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Score one restored image against its target with ``task``'s paper protocol.

    ``restored`` is the model output (float in [0, 1], as :func:`restormer.inference.restore`
    returns it, or already-saved uint8/uint16 samples); ``target`` is the ground truth as read
    from disk (uint8, uint16 or float in [0, 1]); both H x W x C or H x W of the same shape.
    Returns the protocol's numbers by name (see :data:`PROTOCOLS`); PSNR is ``inf`` for
    identical images. Raises ValueError for an unknown task or incompatible arrays.
    """
    protocol = PROTOCOLS.get(task)
    if protocol is None:
        raise ValueError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    return protocol.scorer(restored, target)
