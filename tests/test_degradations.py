"""Tests for restormer.degradations: seeded synthetic degradations, one per task.

Every image is generated here: "photos" are random shapes over smooth gradients with a fine
texture, enough structure for blur, rain and noise to show in PSNR the way they do on photos.
"""

from __future__ import annotations

import dataclasses
import json
import math

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from restormer import degradations as deg
from restormer.data.noise import add_training_noise
from restormer.degradations import blur, kernels, noise, rain
from restormer.degradations.colour import linear_to_srgb, quantise, srgb_to_linear
from restormer.tasks import TASKS

TASK_NAMES = list(deg.DEGRADATION_TASKS)
EIGHT_BIT = ["real-denoising", "deraining", "motion-deblurring", "defocus-deblurring"]
GAUSSIAN = ["gaussian-color-denoising", "gaussian-gray-denoising"]
DUAL = "dual-pixel-defocus-deblurring"

# --------------------------------------------------------------------------------------------
# helpers


def photo(seed: int, height: int = 96, width: int = 96, channels: int = 3) -> np.ndarray:
    """A deterministic photo-like float32 image in [0, 1]: gradient, shapes, fine texture."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    corners = rng.uniform(0.1, 0.9, (4, 3)).astype(np.float32)
    u, v = (xs / max(width - 1, 1))[..., None], (ys / max(height - 1, 1))[..., None]
    image = (
        corners[0] * (1 - u) * (1 - v)
        + corners[1] * u * (1 - v)
        + corners[2] * (1 - u) * v
        + corners[3] * u * v
    ).astype(np.float32)
    for _ in range(12):
        colour = tuple(float(c) for c in rng.uniform(0.05, 0.95, 3))
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        size = int(rng.integers(3, max(4, min(height, width) // 3)))
        if rng.random() < 0.5:
            cv2.circle(image, centre, size, colour, -1, cv2.LINE_AA)
        else:
            corner = (centre[0] + size, centre[1] + int(rng.integers(2, size + 3)))
            cv2.rectangle(image, centre, corner, colour, -1)
    texture = cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), 1)
    image += 0.04 * texture[..., None]
    image = np.clip(image, 0.0, 1.0)
    if channels == 1:
        image = image.mean(axis=2, keepdims=True)
    return np.ascontiguousarray(image, dtype=np.float32)


def clean_for(task: str, seed: int = 0, size: int = 64) -> np.ndarray:
    return photo(seed, size, size, deg.clean_channels(task))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10.0 * math.log10(1.0 / mse) if mse > 0 else math.inf


def is_quantised(image: np.ndarray, bits: int) -> bool:
    """Every sample a multiple of 1 / (2**bits - 1), up to float32 rounding."""
    levels = image.astype(np.float64) * (2**bits - 1)
    tolerance = 2**bits * 2.0**-23  # a float32 ulp of 1.0, in levels
    return bool(np.all(np.abs(levels - np.rint(levels)) < tolerance))


def centroid(kernel: np.ndarray) -> tuple[float, float]:
    ys, xs = np.mgrid[0 : kernel.shape[0], 0 : kernel.shape[1]]
    total = kernel.sum(dtype=np.float64)
    return float((kernel * ys).sum() / total), float((kernel * xs).sum() / total)


# --------------------------------------------------------------------------------------------
# the interface


def test_the_seven_tasks_are_the_toolkits_tasks() -> None:
    assert tuple(TASKS) == deg.DEGRADATION_TASKS
    assert len(deg.DEGRADATION_TASKS) == 7


@pytest.mark.parametrize("task", TASK_NAMES)
def test_output_shape_dtype_and_range(task: str) -> None:
    clean = photo(3, 40, 56, deg.clean_channels(task))
    out = deg.degrade(task, clean, np.random.default_rng(1))
    assert out.dtype == np.float32
    assert out.shape == (40, 56, deg.input_channels(task))
    assert np.all(np.isfinite(out))
    if task in GAUSSIAN:
        return  # unclipped by design
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert is_quantised(out, 16 if task == DUAL else 8)


def test_input_channels_and_clean_channels() -> None:
    expected = {task: 3 for task in TASK_NAMES}
    expected["gaussian-gray-denoising"] = 1
    expected[DUAL] = 6
    assert {task: deg.input_channels(task) for task in TASK_NAMES} == expected
    assert deg.clean_channels("gaussian-gray-denoising") == 1
    assert deg.clean_channels(DUAL) == 3


@pytest.mark.parametrize("task", TASK_NAMES)
def test_undegraded_is_the_photo_itself_as_the_model_input(task: str) -> None:
    clean = photo(4, 16, 20, deg.clean_channels(task))
    out = deg.undegraded(task, clean)
    assert out.shape == (16, 20, deg.input_channels(task)) and out.dtype == np.float32
    views = out.shape[2] // clean.shape[2]
    for view in range(views):  # dual-pixel: an in-focus pair, both views the photo
        assert np.array_equal(out[..., view * clean.shape[2] : (view + 1) * clean.shape[2]], clean)
    out[...] = 0
    assert clean.any()  # a copy, never the caller's array


def test_context_covers_the_largest_kernels() -> None:
    assert deg.context("gaussian-color-denoising") == deg.context("gaussian-gray-denoising") == 0
    assert deg.context("motion-deblurring") >= blur.MOTION_SIZE_RANGE[1] // 2 >= 17
    disk = kernels.disk_kernel(blur.DEFOCUS_RADIUS_RANGE[1], blur.SOFTNESS_RANGE[1])
    assert deg.context("defocus-deblurring") == deg.context(DUAL) >= disk.shape[0] // 2 >= 8
    assert deg.context("real-denoising") >= 2  # demosaicing reads the neighbours
    assert deg.context("deraining") == 0  # streaks are seeded beyond the borders instead


def test_context_makes_borders_realistic() -> None:
    """Degrading a crop grown by the context and trimming it matches degrading the whole image
    there (the blur reads only real pixels), for the same kernel."""
    big = photo(5, 120, 120)
    params = dataclasses.replace(
        deg.sample("motion-deblurring", np.random.default_rng(2)), noise_sigma=0.0, size=41
    )
    c = deg.context("motion-deblurring")
    whole = deg.apply("motion-deblurring", big, np.random.default_rng(0), params)
    crop = np.ascontiguousarray(big[30 - c : 90 + c, 30 - c : 90 + c])
    part = deg.apply("motion-deblurring", crop, np.random.default_rng(0), params)
    np.testing.assert_allclose(part[c:-c, c:-c], whole[30:90, 30:90], atol=1.5 / 255)


@pytest.mark.parametrize("task", TASK_NAMES)
def test_same_seed_same_output_and_different_seeds_differ(task: str) -> None:
    clean = clean_for(task)
    first = deg.degrade(task, clean, np.random.default_rng(7))
    again = deg.degrade(task, clean, np.random.default_rng(7))
    other = deg.degrade(task, clean, np.random.default_rng(8))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    params = deg.sample(task, np.random.default_rng(3))
    assert params == deg.sample(task, np.random.default_rng(3))
    a = deg.apply(task, clean, np.random.default_rng(4), params)
    b = deg.apply(task, clean, np.random.default_rng(4), params)
    np.testing.assert_array_equal(a, b)


def test_degrade_is_apply_of_sample() -> None:
    for task in TASK_NAMES:
        clean = clean_for(task, seed=1, size=32)
        rng = np.random.default_rng(11)
        expected = deg.apply(task, clean, rng, deg.sample(task, rng))
        np.testing.assert_array_equal(deg.degrade(task, clean, np.random.default_rng(11)), expected)


@pytest.mark.parametrize("task", TASK_NAMES)
def test_clean_is_never_modified(task: str) -> None:
    clean = clean_for(task)
    before = clean.copy()
    clean.flags.writeable = False  # an in-place write would raise
    for seed in range(3):
        deg.degrade(task, clean, np.random.default_rng(seed))
    np.testing.assert_array_equal(clean, before)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    task=st.sampled_from(TASK_NAMES),
    height=st.integers(1, 20),
    width=st.integers(1, 20),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_size_any_seed(task: str, height: int, width: int, seed: int) -> None:
    clean = photo(seed % 97, height, width, deg.clean_channels(task))
    out = deg.degrade(task, clean, np.random.default_rng(seed))
    assert out.shape == (height, width, deg.input_channels(task))
    assert out.dtype == np.float32
    assert np.all(np.isfinite(out))


def test_unknown_task_lists_the_valid_names() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown task 'denoise'") as error:
        deg.degrade("denoise", photo(0, 8, 8), rng)
    message = str(error.value)
    assert "\n" not in message
    assert all(task in message for task in TASK_NAMES)
    for function in (deg.context, deg.input_channels):
        with pytest.raises(ValueError, match="valid tasks"):
            function("rain")
    with pytest.raises(ValueError, match="valid tasks"):
        deg.sample("blur", rng)


@pytest.mark.parametrize(
    ("task", "clean", "match"),
    [
        ("deraining", photo(0, 8, 8).astype(np.float64), "float32"),
        ("deraining", (photo(0, 8, 8) * 255).astype(np.uint8), "float32"),
        ("deraining", photo(0, 8, 8, channels=1), "H x W x 3"),
        ("deraining", photo(0, 8, 8)[:, :, 0], "H x W x 3"),
        ("gaussian-gray-denoising", photo(0, 8, 8), "H x W x 1"),
        (DUAL, np.zeros((8, 8, 6), np.float32), "H x W x 3"),
        ("real-denoising", np.zeros((8, 8, 4), np.float32), "H x W x 3"),
        ("motion-deblurring", [[0.5]], "numpy array"),
    ],
)
def test_bad_clean_images_are_refused(task: str, clean: object, match: str) -> None:
    with pytest.raises(ValueError, match=match) as error:
        deg.degrade(task, clean, np.random.default_rng(0))  # type: ignore[arg-type]
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=match):
        deg.apply(task, clean, np.random.default_rng(0), deg.sample(task, np.random.default_rng(0)))


def test_parameters_of_another_degradation_are_refused() -> None:
    params = deg.sample("deraining", np.random.default_rng(0))
    with pytest.raises(TypeError, match="MotionBlurParams"):
        deg.apply("motion-deblurring", photo(0, 8, 8), np.random.default_rng(0), params)


@pytest.mark.parametrize("task", TASK_NAMES)
def test_parameters_are_frozen_dataclasses(task: str) -> None:
    params = deg.sample(task, np.random.default_rng(0))
    assert dataclasses.is_dataclass(params)
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.noise_sigma = 1.0  # type: ignore[misc,union-attr]
    hash(params)  # hashable: usable as a key, printable, comparable


@pytest.mark.parametrize("task", TASK_NAMES)
def test_parameters_are_plain_json(task: str) -> None:
    """``dataclasses.asdict`` of any draw holds only built-in numbers, strings, None and
    tuples, so a degraded set can record in JSON what made each image."""

    def leaves(value: object) -> list[object]:
        if isinstance(value, dict):
            return [leaf for v in value.values() for leaf in leaves(v)]
        if isinstance(value, tuple | list):
            return [leaf for v in value for leaf in leaves(v)]
        return [value]

    rng = np.random.default_rng(0)
    for _ in range(20):
        record = dataclasses.asdict(deg.sample(task, rng))
        json.dumps(record)  # no default=: numpy scalars would raise
        assert all(type(leaf) in (bool, int, float, str, type(None)) for leaf in leaves(record))


# --------------------------------------------------------------------------------------------
# colour


def test_srgb_curve_known_values_and_round_trip() -> None:
    x = np.linspace(-0.1, 1.2, 2001, dtype=np.float32)
    np.testing.assert_allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=2e-6)
    np.testing.assert_allclose(srgb_to_linear(np.float32([0.0, 0.5, 1.0])), [0, 0.21404, 1], 1e-4)
    assert srgb_to_linear(x).dtype == np.float32
    assert np.all(np.diff(srgb_to_linear(x)) > 0)


def test_quantise_clips_and_rounds() -> None:
    x = np.float32([-0.2, 0.1, 0.5, 1.3])
    assert is_quantised(quantise(x, 8), 8) and is_quantised(quantise(x, 16), 16)
    np.testing.assert_allclose(quantise(x, 8), [0, 26 / 255, 128 / 255, 1.0], atol=1e-7)


# --------------------------------------------------------------------------------------------
# Gaussian noise


def test_gaussian_noise_statistics_and_no_clipping() -> None:
    clean = np.full((256, 256, 3), 0.5, np.float32)
    clean[:, :128] = 0.02  # near black: negative values must survive
    clean[:, 200:] = 0.98  # near white: values above 1 too
    params = noise.GaussianNoiseParams(sigma=25.0)
    out = deg.apply("gaussian-color-denoising", clean, np.random.default_rng(0), params)
    residual = (out - clean).astype(np.float64)
    assert abs(residual.std() * 255 - 25.0) < 0.25
    assert abs(residual.mean() * 255) < 0.2
    assert out.min() < -0.1 and out.max() > 1.1
    assert not is_quantised(out, 8)
    gray = deg.apply("gaussian-gray-denoising", clean[:, :, :1], np.random.default_rng(0), params)
    assert gray.shape == (256, 256, 1)


def test_gaussian_noise_is_the_official_training_noise_bit_for_bit() -> None:
    clean = photo(2, 48, 48)
    ours = deg.apply(
        "gaussian-color-denoising",
        clean,
        np.random.default_rng(5),
        noise.GaussianNoiseParams(sigma=17.3),
    )
    official = add_training_noise(clean, 17.3, np.random.default_rng(5))
    np.testing.assert_array_equal(ours, official)


def test_gaussian_sigma_is_uniform_over_0_to_50() -> None:
    rng = np.random.default_rng(0)
    sigmas = np.array([deg.sample("gaussian-gray-denoising", rng).sigma for _ in range(2000)])
    assert sigmas.min() >= 0.0 and sigmas.max() <= 50.0
    assert sigmas.min() < 1.0 and sigmas.max() > 49.0
    assert abs(sigmas.mean() - 25.0) < 1.0
    assert np.histogram(sigmas, bins=5, range=(0, 50))[0].min() > 300


# --------------------------------------------------------------------------------------------
# camera noise


def camera(**changes: object) -> noise.CameraNoiseParams:
    plain = noise.CameraNoiseParams(
        shot=0.0,
        read=0.0,
        bayer=None,
        demosaic="bilinear",
        wb_gains=(1.0, 1.0, 1.0),
        ccm=((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
        jpeg_quality=None,
        jpeg_subsampling="420",
    )
    return dataclasses.replace(plain, **changes)


def test_camera_noise_variance_grows_with_signal_as_shot_plus_read() -> None:
    levels = np.float32([0.05, 0.2, 0.45, 0.7])  # linear light
    clean = np.repeat(linear_to_srgb(levels), 128 * 128).reshape(4, 128, 128)
    clean = np.ascontiguousarray(np.repeat(clean[..., None], 3, axis=3).reshape(512, 128, 3))
    params = camera(shot=0.004, read=2e-5)
    out = deg.apply("real-denoising", clean, np.random.default_rng(0), params)
    linear = srgb_to_linear(out).reshape(4, 128, 128, 3)
    variances = linear.astype(np.float64).var(axis=(1, 2)).mean(axis=1)
    assert np.all(np.diff(variances) > 0)
    expected = 0.004 * levels + 2e-5
    np.testing.assert_allclose(variances, expected, rtol=0.2)


def test_camera_noise_with_mosaic_and_colour_matrix_still_grows_with_signal() -> None:
    levels = np.float32([0.03, 0.15, 0.5])
    clean = np.repeat(linear_to_srgb(levels), 96 * 96).reshape(3, 96, 96)
    clean = np.ascontiguousarray(np.repeat(clean[..., None], 3, axis=3).reshape(288, 96, 3))
    ccm = ((1.6, -0.4, -0.2), (-0.3, 1.5, -0.2), (-0.1, -0.5, 1.6))
    params = camera(shot=0.01, read=1e-4, bayer="GBRG", demosaic="edge-aware", ccm=ccm)
    params = dataclasses.replace(params, wb_gains=(2.0, 1.0, 1.6))
    out = deg.apply("real-denoising", clean, np.random.default_rng(0), params)
    linear = srgb_to_linear(out).reshape(3, 96, 96, 3)[:, 8:-8, 8:-8]
    variances = linear.astype(np.float64).var(axis=(1, 2)).mean(axis=1)
    assert np.all(np.diff(variances) > 0)


def test_camera_pipeline_without_noise_gives_the_photo_back() -> None:
    """Unprocessing and processing are inverse: no noise, no mosaic, no JPEG -> the clean
    photo in 8 bits, whatever the colour matrix and white balance."""
    clean = photo(4, 48, 48)
    for seed in range(5):
        params = dataclasses.replace(
            noise.sample_camera_noise(np.random.default_rng(seed)),
            shot=0.0,
            read=0.0,
            bayer=None,
            jpeg_quality=None,
        )
        out = deg.apply("real-denoising", clean, np.random.default_rng(0), params)
        assert np.abs(out - clean).max() <= 0.5 / 255 + 1e-4


@pytest.mark.parametrize("pattern", noise.BAYER_PATTERNS)
@pytest.mark.parametrize("method", noise.DEMOSAIC_METHODS)
def test_mosaic_and_demosaic_keep_a_flat_colour(pattern: str, method: str) -> None:
    """The layout <-> OpenCV code mapping is right: a flat colour comes back unchanged."""
    colour = np.float32([0.8, 0.4, 0.15])
    flat = np.broadcast_to(colour, (16, 16, 3)).astype(np.float32)
    raw = noise.mosaic(flat, pattern)
    assert raw[0, 0] == colour["RGB".index(pattern[0])]
    assert raw[1, 1] == colour["RGB".index(pattern[3])]
    back = noise.demosaic(raw, pattern, method)
    np.testing.assert_allclose(back[2:-2, 2:-2], flat[2:-2, 2:-2], atol=1e-4)


def test_camera_noise_jpeg_changes_the_image_and_stays_8_bit() -> None:
    clean = photo(6, 64, 64)
    base = camera(shot=0.002, read=1e-5, bayer="RGGB")
    plain = deg.apply("real-denoising", clean, np.random.default_rng(0), base)
    for subsampling in noise.JPEG_SUBSAMPLING:
        params = dataclasses.replace(base, jpeg_quality=70, jpeg_subsampling=subsampling)
        jpeg = deg.apply("real-denoising", clean, np.random.default_rng(0), params)
        assert is_quantised(jpeg, 8)
        assert not np.array_equal(jpeg, plain)
        assert psnr(jpeg, plain) > 25


def test_camera_noise_sampling_covers_the_range() -> None:
    rng = np.random.default_rng(0)
    draws = [noise.sample_camera_noise(rng) for _ in range(600)]
    shots = np.array([d.shot for d in draws])
    assert shots.min() >= noise.SHOT_RANGE[0] and shots.max() <= noise.SHOT_RANGE[1]
    assert shots.min() < 2e-4 and shots.max() > 8e-3
    reads = np.array([d.read for d in draws])
    assert np.corrcoef(np.log(shots), np.log(reads))[0, 1] > 0.8  # read noise follows the gain
    assert {d.bayer for d in draws} == {None, *noise.BAYER_PATTERNS}
    assert {d.demosaic for d in draws} == set(noise.DEMOSAIC_METHODS)
    qualities = [d.jpeg_quality for d in draws if d.jpeg_quality is not None]
    assert 200 < len(qualities) < 400 and min(qualities) >= 60 and max(qualities) <= 97
    for d in draws:
        ccm = np.array(d.ccm)
        np.testing.assert_allclose(ccm.sum(axis=1), 1.0, atol=1e-9)
        assert np.all(ccm - np.diag(np.diag(ccm)) <= 0)


# --------------------------------------------------------------------------------------------
# rain


def test_rain_only_brightens() -> None:
    for seed in range(12):
        clean = photo(seed, 64, 64)
        out = deg.degrade("deraining", clean, np.random.default_rng(seed))
        assert np.all(out >= quantise(clean, 8) - 1e-6)
        assert np.any(out > quantise(clean, 8) + 1e-6)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), blend=st.sampled_from(rain.BLENDS))
def test_rain_only_brightens_any_seed_any_blend(seed: int, blend: str) -> None:
    clean = photo(seed % 13, 24, 24)
    params = dataclasses.replace(rain.sample_rain(np.random.default_rng(seed)), blend=blend)
    out = deg.apply("deraining", clean, np.random.default_rng(seed), params)
    assert np.all(out >= quantise(clean, 8) - 1e-6)


def test_rain_sampling_covers_angles_regimes_and_sizes() -> None:
    rng = np.random.default_rng(0)
    draws = [rain.sample_rain(rng) for _ in range(500)]
    angles = np.array([d.angle for d in draws])
    assert angles.min() < -35 and angles.max() > 35 and np.abs(angles).max() <= rain.MAX_ANGLE
    for d in draws:
        assert 1 <= len(d.layers) <= 3
        for layer in d.layers:
            assert abs(layer.angle - d.angle) <= rain.ANGLE_JITTER
        assert (d.haze > 0) == d.heavy
    heavy = [d for d in draws if d.heavy]
    assert 200 < len(heavy) < 300
    layers = [layer for d in draws for layer in d.layers]
    lengths = np.array([layer.length for layer in layers])
    widths = np.array([layer.width for layer in layers])
    assert lengths.min() < 12 and lengths.max() > 55
    assert widths.min() < 1.0 and widths.max() > 3.0
    assert {len(d.layers) for d in draws} == {1, 2, 3}
    assert {d.blend for d in draws} == set(rain.BLENDS)


@pytest.mark.parametrize("angle", [-40.0, -20.0, 0.0, 15.0, 35.0])
def test_streaks_run_along_their_angle(angle: float) -> None:
    kernel = rain.streak_kernel(40.0, 1.5, angle, blur=0.5, taper=0.3).astype(np.float64)
    assert kernel.shape[0] % 2 == 1 and kernel.shape[1] % 2 == 1
    np.testing.assert_allclose(kernel, kernel[::-1, ::-1], atol=1e-6)  # centrosymmetric
    ys, xs = np.mgrid[0 : kernel.shape[0], 0 : kernel.shape[1]]
    cy, cx = centroid(kernel)
    w = kernel / kernel.sum()
    cov_xx = (w * (xs - cx) ** 2).sum()
    cov_yy = (w * (ys - cy) ** 2).sum()
    cov_xy = (w * (xs - cx) * (ys - cy)).sum()
    # principal axis, as degrees from vertical (x grows with y for a positive angle)
    measured = math.degrees(0.5 * math.atan2(2 * cov_xy, cov_yy - cov_xx))
    assert abs(measured - angle) < 1.0
    assert kernel.max() <= 1.0 + 1e-6


def test_streak_length_and_width() -> None:
    kernel = rain.streak_kernel(30.0, 2.0, 0.0)
    column = kernel[:, kernel.shape[1] // 2]
    assert abs((column > 0.5).sum() - 30) <= 1
    row = kernel[kernel.shape[0] // 2]
    assert abs(row.sum() - 2.0) < 0.05


def test_rain_psnr_range_covers_light_and_heavy() -> None:
    values = {True: [], False: []}
    rng = np.random.default_rng(1)
    for i in range(40):
        clean = photo(i, 96, 96)
        params = rain.sample_rain(rng)
        out = deg.apply("deraining", clean, rng, params)
        values[params.heavy].append(psnr(out, clean))
    heavy, light = np.array(values[True]), np.array(values[False])
    assert heavy.min() > 9.0 and np.median(heavy) < 22.0
    assert np.median(light) > 22.0 and light.max() < 45.0
    assert np.median(light) > np.median(heavy) + 5


# --------------------------------------------------------------------------------------------
# motion blur


def test_motion_kernels_sum_to_one_are_centred_and_fill_their_size() -> None:
    rng = np.random.default_rng(0)
    for _ in range(60):
        params = blur.sample_motion_blur(rng)
        kernel = blur.motion_kernel(params)
        assert kernel.dtype == np.float32 and kernel.shape == (params.size, params.size)
        assert params.size % 2 == 1 and 7 <= params.size <= 41
        assert kernel.min() >= 0.0 and abs(kernel.sum(dtype=np.float64) - 1.0) < 1e-5
        half = params.size // 2
        cy, cx = centroid(kernel)
        assert abs(cy - half) < 1e-3 and abs(cx - half) < 1e-3
        ys, xs = np.nonzero(kernel)
        reach = max(np.abs(ys - half).max(), np.abs(xs - half).max())
        assert reach >= half - 1  # the blur's extent is the kernel's size


def test_motion_sizes_reach_at_least_35_and_both_kinds_occur() -> None:
    rng = np.random.default_rng(1)
    draws = [blur.sample_motion_blur(rng) for _ in range(400)]
    sizes = np.array([d.size for d in draws])
    assert sizes.min() == 7 and sizes.max() == 41
    assert (sizes >= 35).sum() > 30
    kinds = [d.kind for d in draws]
    assert 0.15 < kinds.count("linear") / len(kinds) < 0.35
    sigmas = np.array([d.noise_sigma for d in draws])
    assert sigmas.min() >= 0.0 and sigmas.max() <= 2.0


def test_log_uniform_motion_sizes_favour_small_blurs_and_uniform_is_the_default() -> None:
    def sizes(**options: str) -> np.ndarray:
        rng = np.random.default_rng(4)
        return np.array([deg.sample("motion-deblurring", rng, **options).size for _ in range(4000)])

    uniform, skewed = sizes(), sizes(size_distribution="log-uniform")
    assert np.array_equal(uniform, sizes(size_distribution="uniform"))
    assert skewed.min() == 7 and skewed.max() == 41
    assert 0.25 < (uniform <= 15).mean() < 0.31  # 5 of 18 sides
    assert 0.46 < (skewed <= 15).mean() < 0.54  # 1/size weights: half the draws
    assert (skewed == 7).mean() > 5 * (skewed == 41).mean()


@pytest.mark.parametrize(
    ("task", "options", "message"),
    [
        ("motion-deblurring", {"size_distribution": "gamma"}, "unknown size_distribution 'gamma'"),
        ("motion-deblurring", {"sizes": 3}, "motion-deblurring has no sampler option 'sizes'"),
        ("deraining", {"size_distribution": "uniform"}, "deraining has no sampler option"),
    ],
)
def test_bad_sampler_options_are_one_line_errors(
    task: str, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        deg.check_sampler_options(task, options)
    assert "\n" not in str(caught.value)
    deg.check_sampler_options("motion-deblurring", {"size_distribution": "log-uniform"})


def test_linear_motion_kernel_is_a_line() -> None:
    path = kernels.linear_motion_path(0.0)
    kernel = kernels.rasterise_path(path, 21)
    assert np.count_nonzero(kernel.sum(axis=1)) <= 2  # one row (two with sub-pixel spill)
    assert np.count_nonzero(kernel.sum(axis=0)) >= 19
    # constant speed spreads the weight evenly; a speed change piles it up at the slow end
    steady = kernel.sum(axis=0)[2:-2]
    assert steady.max() < 1.3 * steady.min()
    accelerating = kernels.rasterise_path(kernels.linear_motion_path(0.0, accel=0.9), 21)
    row = accelerating.sum(axis=0)
    inner = row[row > 0][1:-1]
    assert inner.max() > 3 * inner.min()
    assert np.argmax(row) < 10 or np.argmax(row) > 10


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**63 - 2), size=st.integers(1, 30).map(lambda n: 2 * n + 1))
def test_any_motion_kernel_is_a_normalised_centred_kernel(seed: int, size: int) -> None:
    for kind in kernels.MOTION_KINDS:
        kernel = blur.motion_kernel(blur.MotionBlurParams(kind, size, seed, 0.0))
        assert kernel.shape == (size, size) and kernel.min() >= 0
        assert abs(kernel.sum(dtype=np.float64) - 1.0) < 1e-5
        cy, cx = centroid(kernel)
        assert abs(cy - size // 2) < 1e-3 and abs(cx - size // 2) < 1e-3


def test_motion_blur_is_in_linear_light_and_keeps_flat_images_flat() -> None:
    params = blur.MotionBlurParams("shake", 21, 5, 0.0)
    flat = np.full((40, 40, 3), 0.3, np.float32)
    out = deg.apply("motion-deblurring", flat, np.random.default_rng(0), params)
    np.testing.assert_allclose(out, quantise(flat, 8), atol=1e-6)
    # half black, half white: the blurred edge's mean sits at the *linear* mean (0.5 linear)
    edge = np.zeros((64, 64, 3), np.float32)
    edge[:, 32:] = 1.0
    out = deg.apply(
        "motion-deblurring",
        edge,
        np.random.default_rng(0),
        blur.MotionBlurParams("linear", 41, 2, 0),
    )
    assert abs(float(srgb_to_linear(out).mean()) - 0.5) < 0.02
    assert float(out.mean()) > 0.55  # a blur of the encoded values would stay at 0.5


# --------------------------------------------------------------------------------------------
# defocus and dual pixel


@settings(max_examples=60, deadline=None)
@given(
    radius=st.floats(0.0, 14.0),
    softness=st.floats(0.5, 2.5),
    rim=st.floats(-0.5, 0.5),
    split=st.floats(0.3, 8.0),
)
def test_half_disks_mirror_each_other_and_sum_to_the_disk(
    radius: float, softness: float, rim: float, split: float
) -> None:
    disk = kernels.disk_kernel(radius, softness, rim)
    left, right = kernels.half_disk_kernels(radius, softness, rim, split)
    assert disk.shape == left.shape == right.shape
    assert disk.shape[0] == 2 * kernels.disk_radius_extent(radius, softness) + 1
    assert abs(disk.sum(dtype=np.float64) - 1.0) < 1e-5 and disk.min() >= 0
    np.testing.assert_array_equal(right, left[:, ::-1])
    np.testing.assert_allclose(left + right, disk, atol=1e-7)
    assert abs(left.sum(dtype=np.float64) - 0.5) < 1e-5
    np.testing.assert_allclose(disk, disk[::-1, ::-1], atol=1e-9)
    if radius >= 1.0:
        assert centroid(left)[1] < disk.shape[1] // 2 < centroid(right)[1]


@pytest.mark.parametrize("radius", [1.0, 2.5, 4.0, 8.0, 12.0])
def test_disk_has_its_radius(radius: float) -> None:
    kernel = kernels.disk_kernel(radius, softness=1.0)
    half = kernel.shape[0] // 2
    assert half == math.ceil(radius + 0.5)
    ys, xs = np.mgrid[-half : half + 1, -half : half + 1]
    dist = np.hypot(xs, ys)
    assert np.all(kernel[dist > radius + 0.5] == 0)
    inside = kernel[dist < radius - 0.5]
    np.testing.assert_allclose(inside, inside.max())  # flat inside
    assert abs(1.0 / inside.max() - math.pi * radius**2) < 0.05 * math.pi * radius**2 + 0.5


def test_defocus_radii_sampling() -> None:
    rng = np.random.default_rng(0)
    draws = [blur.sample_defocus(rng) for _ in range(600)]
    largest = np.array([max(abs(r) for r in d.radii) for d in draws])
    assert largest.min() >= 1.0 and largest.max() <= 12.0 and largest.max() > 11.0
    assert np.mean(largest >= 8.0) > 0.25
    counts = [len(d.radii) for d in draws]
    assert set(counts) == {1, 2, 3, 4} and 0.4 < counts.count(1) / len(counts) < 0.6
    signs = {r > 0 for d in draws for r in d.radii if abs(r) > 0.1}
    assert signs == {True, False}
    for d in draws:
        assert list(d.radii) == sorted(d.radii)
        assert abs(d.falloff) <= 0.12 and 0 <= d.noise_sigma <= 2


def test_defocus_is_the_mean_of_the_dual_pixel_views() -> None:
    rng = np.random.default_rng(3)
    for i in range(6):
        clean = photo(i, 64, 64)
        params = blur.sample_defocus(rng)
        single = deg.apply("defocus-deblurring", clean, np.random.default_rng(i), params)
        views = deg.apply(DUAL, clean, np.random.default_rng(i), params)
        centre = quantise(deg.combined_view(views), 8)
        assert np.abs(single - centre).max() <= 1 / 255 + 1e-6
        assert np.mean(single == centre) > 0.98
        assert is_quantised(views, 16)


def test_the_views_average_to_the_disk_blur_in_linear_light() -> None:
    """Without noise or falloff the combined view is the clean image blurred by the full disk
    in linear light, whatever the split and the sign; the falloff only perturbs it slightly."""
    clean = 0.1 + 0.7 * photo(7, 64, 64)
    for radius, falloff, tolerance in ((6.0, 0.0, 2e-5), (-3.5, 0.0, 2e-5), (5.0, 0.12, 0.03)):
        params = blur.DefocusParams((radius,), 1.3, 0.2, 2.5, falloff, 100.0, 1.0, 0.0)
        left, right = blur.dual_pixel_views(clean, np.random.default_rng(0), params)
        centre = deg.combined_view(np.concatenate([left, right], axis=2))
        disk = kernels.disk_kernel(radius, 1.3, 0.2)
        expected = linear_to_srgb(blur.convolve(srgb_to_linear(clean), disk))
        np.testing.assert_allclose(centre, expected, atol=tolerance)
        assert psnr(left, right) < 40  # the views do differ


def test_dual_pixel_views_shift_with_the_side_of_the_focal_plane() -> None:
    point = np.zeros((61, 61, 3), np.float32)
    point[30, 30] = 1.0
    for radius, left_side in ((8.0, -1), (-8.0, 1)):
        params = blur.DefocusParams((radius,), 1.0, 0.0, 1.0, 0.0, 100.0, 1.0, 0.0)
        views = srgb_to_linear(deg.apply(DUAL, point, np.random.default_rng(0), params))
        left_x = centroid(views[:, :, 0])[1] - 30
        right_x = centroid(views[:, :, 3])[1] - 30
        assert left_x * left_side > 2 and right_x * left_side < -2
        assert abs(left_x + right_x) < 1e-3  # mirror images


def test_spatially_varying_defocus_is_sharp_where_in_focus_and_flat_stays_flat() -> None:
    params = blur.DefocusParams((0.0, 10.0), 0.6, 0.0, 1.0, 0.0, 48.0, 12.0, 0.0)
    flat = np.full((96, 96, 3), 0.4, np.float32)
    out = deg.apply("defocus-deblurring", flat, np.random.default_rng(0), params)
    np.testing.assert_allclose(out, quantise(flat, 8), atol=1e-6)
    texture = photo(1, 192, 192)
    out = deg.apply("defocus-deblurring", texture, np.random.default_rng(0), params)
    error = np.abs(out - texture).mean(axis=2)
    tiles = error[: 192 // 16 * 16].reshape(12, 16, 12, 16).mean(axis=(1, 3))
    assert tiles.min() < 0.01 and tiles.max() > 0.04  # sharp and blurred regions in one image


def test_spectral_convolution_equals_filter2d() -> None:
    for shape in ((50, 37, 3), (3, 2, 3), (1, 1, 3)):
        image = photo(2, *shape[:2])
        kernel = 2.0 * kernels.half_disk_kernels(7.3, 1.5, 0.1, 2.0)[0]
        spectral = blur._Spectrum(image, 9).convolve(kernel)
        np.testing.assert_allclose(spectral, blur.convolve(image, kernel), atol=1e-5)


def test_combined_view_refuses_other_shapes() -> None:
    with pytest.raises(ValueError, match="H x W x 6"):
        deg.combined_view(np.zeros((4, 4, 3), np.float32))


# --------------------------------------------------------------------------------------------
# realistic strength over many samples


@pytest.mark.parametrize(
    ("task", "low", "high"),
    [
        ("real-denoising", (15.0, 27.0), (26.0, 45.0)),
        ("motion-deblurring", (12.0, 22.0), (20.0, 35.0)),
        ("defocus-deblurring", (14.0, 24.0), (22.0, 45.0)),
        ("deraining", (10.0, 20.0), (28.0, 45.0)),
    ],
)
def test_input_psnr_spans_a_realistic_range(
    task: str, low: tuple[float, float], high: tuple[float, float]
) -> None:
    """Weak and strong samples both occur: the 10th / 90th PSNR percentiles over 40 draws.

    The generated photos are busier than real ones (a dozen shapes in 80 x 80 px), so blur
    costs more PSNR here than on photos (on 256 px crops of photos motion blur spans about
    21-44 dB and defocus 19-44 dB between the same percentiles).
    """
    rng = np.random.default_rng(0)
    values = [psnr(deg.degrade(task, photo(i, 80, 80), rng), photo(i, 80, 80)) for i in range(40)]
    p10, p90 = np.percentile(values, [10, 90])
    assert low[0] < p10 < low[1], values
    assert high[0] < p90 < high[1], values
    assert p90 - p10 > 4.0


def test_gaussian_input_psnr_follows_sigma() -> None:
    clean = photo(0, 128, 128)
    for sigma in (5.0, 15.0, 50.0):
        params = noise.GaussianNoiseParams(sigma)
        out = deg.apply("gaussian-color-denoising", clean, np.random.default_rng(0), params)
        assert abs(psnr(out, clean) - 20 * math.log10(255 / sigma)) < 0.15
