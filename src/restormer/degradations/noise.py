"""Noise: the official additive white Gaussian noise, and realistic camera noise.

Gaussian (``gaussian-color-denoising``, ``gaussian-gray-denoising``): ``clean + N(0, 1) * sigma
/ 255`` in float32, neither clipped nor quantised, one sigma per image drawn uniformly from
[0, 50] 8-bit levels -- exactly what the official ``Dataset_GaussianDenoising`` feeds the
blind Gaussian models.

Camera (``real-denoising``): the photo is "unprocessed" back to what a sensor saw, noise is added
there, and the photo is processed forward again, the idea of Brooks et al., *Unprocessing Images
for Learned Raw Denoising* (CVPR 2019), with our own ranges:

1. sRGB -> linear light (the sRGB curve), then an inverse colour matrix (camera RGB is less
   saturated than sRGB; the forward matrix later amplifies and colour-correlates the noise),
   then division by white-balance gains (a raw red/blue channel is darker than the white-balanced
   one, so it is noisier after the gains are applied again).
2. Optionally a Bayer mosaic (one of the four 2 x 2 layouts), one sample per pixel.
3. Heteroscedastic Gaussian noise of variance ``shot * x + read`` in raw units (x in [0, 1],
   1 = white level): photon shot noise (variance proportional to signal) plus read noise. The
   shot gain is log-uniform from base-ISO DSLR (1e-4) to high-ISO phone (1.2e-2); the read
   variance follows from it physically: ``read = (sigma_e * shot)**2 + sigma_adc**2`` with a
   read noise of ``sigma_e`` electrons before the amplifier (so it grows with the square of
   the gain, the log-linear slope of 2 that fitted camera noise profiles show) and a small ISO
   independent ADC noise.
4. Raw clipped at the white level, demosaiced (OpenCV bilinear or edge-aware), white balance
   and colour matrix applied, linear -> sRGB, 8-bit quantisation and optionally JPEG.

Over the range the input PSNR runs from about 20 dB (high-ISO phone, shadows) to about 40 dB.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from restormer.degradations.colour import linear_to_srgb, quantise, srgb_to_linear

__all__ = [
    "BAYER_PATTERNS",
    "CameraNoiseParams",
    "GaussianNoiseParams",
    "apply_camera_noise",
    "apply_gaussian_noise",
    "demosaic",
    "mosaic",
    "sample_camera_noise",
    "sample_gaussian_noise",
]

GAUSSIAN_SIGMA_RANGE = (0.0, 50.0)  # 8-bit levels, the official blind range
SHOT_RANGE = (1e-4, 1.2e-2)  # raw variance per unit signal: base-ISO DSLR .. high-ISO phone
READ_ELECTRONS_RANGE = (0.5, 2.5)  # pre-amplifier read noise, electrons (std)
ADC_NOISE_RANGE = (1e-4, 6e-4)  # post-amplifier read noise, fraction of white level (std)
JPEG_QUALITY_RANGE = (60, 97)

BAYER_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
"""Bayer layouts, named by the colours of the top-left 2 x 2 block read row by row."""

# OpenCV's legacy codes name a layout by the second row's second and third pixels; the mapping
# below is checked by the tests (a flat colour survives the mosaic and demosaic).
_DEMOSAIC_CODES = {
    ("RGGB", "bilinear"): cv2.COLOR_BayerBG2RGB,
    ("BGGR", "bilinear"): cv2.COLOR_BayerRG2RGB,
    ("GRBG", "bilinear"): cv2.COLOR_BayerGB2RGB,
    ("GBRG", "bilinear"): cv2.COLOR_BayerGR2RGB,
    ("RGGB", "edge-aware"): cv2.COLOR_BayerBG2RGB_EA,
    ("BGGR", "edge-aware"): cv2.COLOR_BayerRG2RGB_EA,
    ("GRBG", "edge-aware"): cv2.COLOR_BayerGB2RGB_EA,
    ("GBRG", "edge-aware"): cv2.COLOR_BayerGR2RGB_EA,
}
DEMOSAIC_METHODS = ("bilinear", "edge-aware")
JPEG_SUBSAMPLING = ("420", "422", "444")
_JPEG_SAMPLING_FLAGS = {
    "420": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
    "422": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
    "444": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
}
_RAW_FOOT = 0.25  # negative raw headroom kept through the 16-bit demosaic (a black level)

Matrix3 = tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]


# --------------------------------------------------------------------------------- Gaussian


@dataclass(frozen=True)
class GaussianNoiseParams:
    """Additive white Gaussian noise of standard deviation ``sigma`` 8-bit levels (0-50)."""

    sigma: float


def sample_gaussian_noise(rng: np.random.Generator) -> GaussianNoiseParams:
    """Sigma uniform in [0, 50] levels: the official blind training range."""
    return GaussianNoiseParams(sigma=float(rng.uniform(*GAUSSIAN_SIGMA_RANGE)))


def apply_gaussian_noise(
    clean: np.ndarray, rng: np.random.Generator, params: GaussianNoiseParams
) -> np.ndarray:
    """``clean + N(0, 1) * sigma / 255`` in float32, unclipped and unquantised (a new array).

    Bit for bit what ``restormer.data.noise.add_training_noise`` (the official training noise)
    computes from the same generator state.
    """
    level = np.float32(params.sigma) / np.float32(255.0)
    noisy = rng.standard_normal(clean.shape, dtype=np.float32)
    noisy *= level
    noisy += clean
    return noisy


# ----------------------------------------------------------------------------------- camera


@dataclass(frozen=True)
class CameraNoiseParams:
    """One camera and exposure: the noise model and the processing around it.

    ``shot`` and ``read``: raw noise variance ``shot * x + read`` (x linear, 1 = white level).
    ``bayer``: mosaic layout (one of :data:`BAYER_PATTERNS`) or None for noise on full RGB.
    ``demosaic``: "bilinear" or "edge-aware" (OpenCV's Bayer interpolations).
    ``wb_gains``: per-channel white-balance gains (R, G, B), G = 1, R and B 1-2.6: the raw is
    divided by them before the noise and multiplied after.
    ``ccm``: 3 x 3 camera RGB -> linear sRGB matrix, rows summing to 1 (white stays white),
    non-positive off-diagonal entries (it saturates, as real colour matrices do).
    ``jpeg_quality``: None (no JPEG) or a quality 60-97; ``jpeg_subsampling``: chroma
    subsampling "420", "422" or "444".
    """

    shot: float
    read: float
    bayer: str | None
    demosaic: str
    wb_gains: tuple[float, float, float]
    ccm: Matrix3
    jpeg_quality: int | None
    jpeg_subsampling: str


def _random_ccm(rng: np.random.Generator) -> Matrix3:
    """A plausible camera -> sRGB colour matrix: identity 20% of the time, else off-diagonal
    entries in [-0.6, 0] and the diagonal making each row sum to 1 (diagonal ~1.1-2.2)."""
    if rng.random() < 0.2:
        return ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    off = -rng.uniform(0.0, 0.6, size=(3, 3)) * rng.uniform(0.2, 1.0)
    np.fill_diagonal(off, 0.0)
    matrix = off + np.diag(1.0 - off.sum(axis=1))
    return tuple(tuple(float(v) for v in row) for row in matrix)  # type: ignore[return-value]


def sample_camera_noise(rng: np.random.Generator) -> CameraNoiseParams:
    """Draw a camera: log-uniform shot gain over 1e-4..1.2e-2 (about ISO 100 on a full-frame
    DSLR to ISO 3200+ on a phone), read noise from the gain (0.5-2.5 electrons, plus ADC noise),
    a Bayer mosaic 75% of the time, white-balance gains 85% of the time, a random colour matrix,
    JPEG 50% of the time."""
    shot = float(np.exp(rng.uniform(np.log(SHOT_RANGE[0]), np.log(SHOT_RANGE[1]))))
    electrons = np.exp(rng.uniform(*np.log(READ_ELECTRONS_RANGE)))
    adc = np.exp(rng.uniform(*np.log(ADC_NOISE_RANGE)))
    read = float((electrons * shot) ** 2 + adc**2)
    bayer = BAYER_PATTERNS[int(rng.integers(4))] if rng.random() < 0.75 else None
    method = DEMOSAIC_METHODS[int(rng.integers(2))]
    if rng.random() < 0.85:
        wb = (float(rng.uniform(1.3, 2.6)), 1.0, float(rng.uniform(1.2, 2.4)))
    else:
        wb = (1.0, 1.0, 1.0)
    ccm = _random_ccm(rng)
    quality = int(rng.integers(JPEG_QUALITY_RANGE[0], JPEG_QUALITY_RANGE[1] + 1))
    jpeg = quality if rng.random() < 0.5 else None
    subsampling = JPEG_SUBSAMPLING[int(rng.integers(3))]
    return CameraNoiseParams(shot, read, bayer, method, wb, ccm, jpeg, subsampling)


def mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """H x W x 3 -> H x W: keep, at each pixel, the one colour the Bayer layout samples there."""
    index = {"R": 0, "G": 1, "B": 2}
    raw = np.empty(rgb.shape[:2], dtype=rgb.dtype)
    for dy in range(2):
        for dx in range(2):
            raw[dy::2, dx::2] = rgb[dy::2, dx::2, index[pattern[2 * dy + dx]]]
    return raw


def demosaic(raw: np.ndarray, pattern: str, method: str = "bilinear") -> np.ndarray:
    """Interpolate an H x W float mosaic (values in [-0.25, 1]) to H x W x 3 with OpenCV.

    OpenCV demosaics 8/16-bit integers only, so the raw goes through 16 bits with a foot of
    0.25 below zero (a black level), which keeps negative noise excursions unbiased.
    """
    if (pattern, method) not in _DEMOSAIC_CODES:
        raise ValueError(f"unknown Bayer pattern/method {pattern!r}/{method!r}")
    scale = np.float32(65535.0 / (1.0 + _RAW_FOOT))
    coded = np.clip(raw, -_RAW_FOOT, 1.0) + np.float32(_RAW_FOOT)
    coded *= scale
    rgb = cv2.cvtColor(np.rint(coded).astype(np.uint16), _DEMOSAIC_CODES[(pattern, method)])
    out = rgb.astype(np.float32)
    out /= scale
    out -= np.float32(_RAW_FOOT)
    return out


def _jpeg(image8: np.ndarray, quality: int, subsampling: str) -> np.ndarray:
    """Round-trip an H x W x 3 RGB uint8 image through an in-memory JPEG."""
    flags = [
        cv2.IMWRITE_JPEG_QUALITY,
        int(quality),
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
        _JPEG_SAMPLING_FLAGS[subsampling],
    ]
    ok, buffer = cv2.imencode(".jpg", np.ascontiguousarray(image8[:, :, ::-1]), flags)
    if not ok:  # pragma: no cover - libjpeg does not fail on valid uint8 input
        raise RuntimeError("JPEG encoding failed")
    return cv2.imdecode(buffer, cv2.IMREAD_COLOR)[:, :, ::-1]


def apply_camera_noise(
    clean: np.ndarray, rng: np.random.Generator, params: CameraNoiseParams
) -> np.ndarray:
    """Noisy sRGB photo as the camera would have produced it: float32 H x W x 3 in [0, 1],
    multiples of 1/255 (after JPEG too). ``clean`` is float32 H x W x 3 sRGB in [0, 1]."""
    ccm = np.asarray(params.ccm, dtype=np.float32)
    gains = np.asarray(params.wb_gains, dtype=np.float32)
    # Unprocess: camera RGB = ccm^-1 @ linear sRGB (non-negative: ccm is an M-matrix), / gains.
    linear = srgb_to_linear(np.clip(clean, 0.0, 1.0))
    camera = cv2.transform(linear, np.linalg.inv(ccm).astype(np.float32))
    camera /= gains
    np.clip(camera, 0.0, 1.0, out=camera)
    raw = mosaic(camera, params.bayer) if params.bayer is not None else camera
    std = np.sqrt(np.maximum(raw, 0.0) * np.float32(params.shot) + np.float32(params.read))
    noise = rng.standard_normal(raw.shape, dtype=np.float32)
    noise *= std
    raw = raw + noise
    np.minimum(raw, 1.0, out=raw)  # the sensor saturates at the white level
    camera = demosaic(raw, params.bayer, params.demosaic) if params.bayer is not None else raw
    # Process: white balance, colour matrix, clip, sRGB, 8 bits, JPEG.
    camera *= gains
    linear = cv2.transform(camera, ccm)
    np.clip(linear, 0.0, 1.0, out=linear)
    noisy = quantise(linear_to_srgb(linear), 8)
    if params.jpeg_quality is None:
        return noisy
    image8 = np.rint(noisy * 255.0).astype(np.uint8)
    decoded = _jpeg(image8, params.jpeg_quality, params.jpeg_subsampling)
    return decoded.astype(np.float32) / np.float32(255.0)
