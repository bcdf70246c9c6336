"""The metrics against the official golden values, independent formulas and scikit-image."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from restormer import metrics as M
from restormer.io import read_image
from restormer.tasks import TASKS

from .conftest import require_reference

# --------------------------------------------------------------------------- golden values


def _golden() -> list[tuple[str, str, float]]:
    reference = require_reference()
    values = json.loads((reference / "metrics_golden.json").read_text())["values"]
    return [(pair, key, value) for pair, keys in values.items() for key, value in keys.items()]


def _golden_params() -> list[object]:
    try:
        return [pytest.param(*case, id=f"{case[0]}-{case[1]}") for case in _golden()]
    except BaseException:  # reference missing: one case that skips (or fails, if required)
        return [pytest.param(None, None, None, id="reference")]


def _pair(reference: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The golden images as the reference says: PNG pixels as loaded (RGB or gray)."""
    folder = reference / "golden" / "metrics"
    return read_image(folder / f"{name}_a.png").pixels, read_image(folder / f"{name}_b.png").pixels


def _tolerance(key: str, golden: float) -> float:
    """How close each golden value is reproduced (measured: see the metrics module notes).

    float64 results: 1e-12 (measured: PSNR identical; the Y-channel SSIM within 2.5e-14, as
    OpenCV's FFT filtering rounds differently between builds). float32 results (RGB SSIM via
    torch Conv3d, Y-channel PSNR): one float32 ulp (measured: SSIM identical; one Y PSNR
    of four is one ulp off, from numpy's machine-dependent float32 log10).
    """
    float32_result = "test_y_channel=True" in key and "psnr" in key
    float32_result |= "ssim" in key and "test_y_channel=False" in key
    return float(np.spacing(np.float32(golden))) if float32_result else 1e-12


@pytest.mark.parametrize(("pair", "key", "golden"), _golden_params())
def test_golden_values(pair: str, key: str, golden: float) -> None:
    reference = require_reference()
    if pair == "rgb16_noise":  # 16-bit PNGs as [0, 1] floats, the DPDD-style PSNR
        a, b = _pair(reference, pair)
        ours = M.psnr_float(a / 65535, b / 65535)
        assert ours == golden
        return
    match = re.fullmatch(
        r"(calculate_psnr|calculate_ssim)\(crop_border=(\d+),test_y_channel=(\w+)\)", key
    )
    assert match, key
    function = getattr(M, match[1])
    a, b = _pair(reference, pair)
    ours = function(a, b, crop_border=int(match[2]), test_y_channel=match[3] == "True")
    assert isinstance(ours, float)
    assert abs(ours - golden) <= _tolerance(key, golden), (ours, golden)


def test_y_channel_takes_bgr_order(reference: Path) -> None:
    """basicsr weighs channel 0 as blue: the golden values are those of the RGB arrays as
    loaded, and reversing the channels (the true BGR order) gives a different number."""
    a, b = _pair(reference, "rgb8_noise")
    as_loaded = M.calculate_psnr(a, b, test_y_channel=True)
    reversed_order = M.calculate_psnr(a[..., ::-1], b[..., ::-1], test_y_channel=True)
    assert abs(as_loaded - 35.0088005065918) < 1e-5
    assert abs(as_loaded - reversed_order) > 0.01


# --------------------------------------------------------------------------- properties


def _images(shape: tuple[int, ...] = (29, 33, 3), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: shape[0], : shape[1]]
    base = 128 + 90 * np.sin(x / 5.0) * np.cos(y / 4.0)
    a = np.clip(
        base[..., None] + rng.normal(0, 8, shape if len(shape) == 3 else (*shape, 1)), 0, 255
    )
    a = np.round(a).astype(np.uint8).reshape(shape)
    b = np.clip(a.astype(int) + rng.integers(-25, 26, shape), 0, 255).astype(np.uint8)
    return a, b


def test_identical_images() -> None:
    a, _ = _images()
    for psnr in (
        M.calculate_psnr(a, a),
        M.calculate_psnr(a, a, test_y_channel=True),
        M.psnr(a, a),
        M.psnr_float(a / 255, a / 255),
    ):
        assert psnr == math.inf
    for ssim in (
        M.calculate_ssim(a, a),
        M.calculate_ssim(a, a, test_y_channel=True),
        M.ssim_3d(a, a),
        M.ssim_index_matlab(a[..., 0], a[..., 0]),
        M.ssim_skimage(a / 255, a / 255),
    ):
        assert ssim == pytest.approx(1.0, abs=1e-12)
    assert M.mae(a, a) == 0.0
    scores = M.score("deraining", a, a)
    assert scores["psnr"] == math.inf and scores["ssim"] == pytest.approx(1.0)


def test_symmetry() -> None:
    a, b = _images()
    fa, fb = a / 255, b / 255
    for f in (M.calculate_psnr, M.calculate_ssim, M.psnr, M.ssim_3d):
        assert f(a, b) == pytest.approx(f(b, a), abs=1e-12), f.__name__
    for f in (M.psnr_float, M.ssim_skimage, M.mae):
        assert f(fa, fb) == pytest.approx(f(fb, fa), abs=1e-12), f.__name__
    ya, yb = M.rgb_to_y_matlab(a), M.rgb_to_y_matlab(b)
    assert M.ssim_index_matlab(ya, yb) == pytest.approx(M.ssim_index_matlab(yb, ya), abs=1e-12)


def test_crop_border_drops_the_border() -> None:
    a, b = _images()
    for f in (M.calculate_psnr, M.calculate_ssim):
        for y in (False, True):
            cropped = f(a[3:-3, 3:-3], b[3:-3, 3:-3], test_y_channel=y)
            assert f(a, b, crop_border=3, test_y_channel=y) == cropped
    assert M.calculate_psnr(a, b, crop_border=3) != M.calculate_psnr(a, b)


def test_psnr_formulas() -> None:
    a = np.full((12, 14, 3), 100, np.uint8)
    b = a + np.uint8(5)
    expected = 20 * math.log10(255 / 5)
    assert M.psnr(a, b) == pytest.approx(expected, abs=1e-12)
    assert M.calculate_psnr(a, b) == pytest.approx(expected, abs=1e-12)
    assert M.psnr_float(a / 255, b / 255) == pytest.approx(expected, abs=1e-9)
    assert M.psnr(a / 255, b / 255, data_range=1.0) == pytest.approx(expected, abs=1e-9)
    # the official peak rule: images in [0, 1] have peak 1
    assert M.calculate_psnr(a / 255, b / 255) == pytest.approx(expected, abs=1e-9)
    assert M.mae(a / 255, b / 255) == pytest.approx(5 / 255, abs=1e-15)


def test_gray_images_accept_two_or_three_dimensions() -> None:
    a, b = _images((30, 31))
    assert M.calculate_psnr(a, b) == M.calculate_psnr(a[..., None], b[..., None])
    assert M.calculate_ssim(a, b) == M.calculate_ssim(a[..., None], b[..., None])
    assert M.ssim_3d(a, b) == M.ssim_3d(a[..., None], b[..., None])


def test_mismatched_shapes_are_refused() -> None:
    a, b = _images()
    for f in (M.calculate_psnr, M.calculate_ssim, M.psnr, M.ssim_3d, M.ssim_skimage, M.mae):
        with pytest.raises(ValueError, match="shape"):
            f(a, b[:-1])


def test_rgb_to_y_matlab() -> None:
    rgb = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
    # 16 + (65.481, 128.553, 24.966) * 255 / 255, rounded
    assert M.rgb_to_y_matlab(rgb).tolist() == [[16, 235, 81, 145, 41]]
    a, _ = _images()
    exact = (65.481 * a[..., 0] + 128.553 * a[..., 1] + 24.966 * a[..., 2]) / 255 + 16
    assert np.abs(M.rgb_to_y_matlab(a) - exact).max() <= 0.5 + 1e-9
    with pytest.raises(ValueError):
        M.rgb_to_y_matlab(a.astype(np.uint16))


def _brute_force_filter(x: np.ndarray, kernel: np.ndarray, pad_mode: str | None) -> np.ndarray:
    """Correlation with an N-D kernel by explicit shifts; 'valid' when pad_mode is None."""
    r = [k // 2 for k in kernel.shape]
    padded = x if pad_mode is None else np.pad(x, [(ri, ri) for ri in r], mode=pad_mode)
    out_shape = tuple(p - k + 1 for p, k in zip(padded.shape, kernel.shape, strict=True))
    out = np.zeros(out_shape)
    for index in np.ndindex(kernel.shape):
        window = tuple(slice(i, i + n) for i, n in zip(index, out_shape, strict=True))
        out += kernel[index] * padded[window]
    return out


def _reference_ssim(
    x: np.ndarray, y: np.ndarray, kernel: np.ndarray, mode: str | None, L: float
) -> float:
    x, y = x.astype(np.float64), y.astype(np.float64)

    def f(v: np.ndarray) -> np.ndarray:
        return _brute_force_filter(v, kernel, mode)

    mx, my = f(x), f(y)
    vx, vy, cxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean())


def test_ssim_3d_is_a_3d_gaussian_window_with_replicated_borders() -> None:
    a, b = _images((17, 19, 3))
    g = cv2.getGaussianKernel(11, 1.5)[:, 0]
    kernel = g[:, None, None] * g[None, :, None] * g[None, None, :]
    for data_range, (x, y) in ((255.0, (a, b)), (1.0, (a / 255, b / 255))):
        expected = _reference_ssim(x, y, kernel, "edge", data_range)
        assert M.ssim_3d(x, y, data_range) == pytest.approx(expected, abs=1e-12)
    # the official float32 computation agrees to float32 accuracy
    assert M.calculate_ssim(a, b) == pytest.approx(M.ssim_3d(a, b), abs=1e-4)


def test_ssim_index_matlab_is_valid_gaussian_filtering() -> None:
    a, b = _images((23, 26, 3))
    ya, yb = M.rgb_to_y_matlab(a), M.rgb_to_y_matlab(b)
    g = cv2.getGaussianKernel(11, 1.5)[:, 0]
    expected = _reference_ssim(ya, yb, np.outer(g, g), None, 255.0)
    assert M.ssim_index_matlab(ya, yb) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="11 x 11"):
        M.ssim_index_matlab(ya[:10], yb[:10])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(19, 23, 3), (40, 31), (8, 9, 1)])
def test_ssim_skimage_equals_scikit_image(dtype: type, shape: tuple[int, ...]) -> None:
    skimage_metrics = pytest.importorskip("skimage.metrics")
    a, b = _images(shape, seed=len(shape))
    x, y = (a / 255).astype(dtype), (b / 255).astype(dtype)
    channel_axis = -1 if len(shape) == 3 else None
    theirs = skimage_metrics.structural_similarity(x, y, data_range=1, channel_axis=channel_axis)
    assert M.ssim_skimage(x, y, 1.0) == float(theirs)


def test_ssim_skimage_window_size_limit() -> None:
    a, b = _images((6, 20, 3))
    with pytest.raises(ValueError, match="7 x 7"):
        M.ssim_skimage(a / 255, b / 255)


# --------------------------------------------------------------------------- protocols


def test_every_task_has_a_protocol() -> None:
    assert set(M.PROTOCOLS) == set(TASKS)
    a, b = _images((24, 24, 3))
    for task, protocol in M.PROTOCOLS.items():
        scores = M.score(task, a / 255, b)
        assert tuple(scores) == protocol.metrics
        assert all(isinstance(v, float) and math.isfinite(v) for v in scores.values())
    with pytest.raises(ValueError, match="unknown task"):
        M.score("super-resolution", a, b)


def test_protocol_arithmetic() -> None:
    a, b = _images((24, 26, 3))
    restored = (a / 255).astype(np.float32) + np.float32(0.3 / 255)  # rounds back to a
    target16 = b.astype(np.uint16) * 257
    assert M.score("deraining", restored, b) == {
        "psnr": M.psnr(M.rgb_to_y_matlab(a), M.rgb_to_y_matlab(b)),
        "ssim": M.ssim_index_matlab(M.rgb_to_y_matlab(a), M.rgb_to_y_matlab(b)),
    }
    assert M.score("motion-deblurring", restored, b) == {
        "psnr": M.psnr(a, b),
        "ssim": M.ssim_3d(a, b),
    }
    assert M.score("gaussian-color-denoising", restored, b) == {"psnr": M.psnr(a, b)}
    dpdd = M.score("defocus-deblurring", restored, target16)
    r64, t64 = restored.astype(np.float64), target16 / 65535
    assert dpdd == {
        "psnr": M.psnr_float(r64, t64),
        "ssim": M.ssim_skimage(r64, t64, 1.0),
        "mae": M.mae(r64, t64),
    }
    sidd = M.score("real-denoising", restored, b)
    assert sidd == {"psnr": M.psnr(r64, t64, 1.0), "ssim": M.ssim_3d(r64, t64, 1.0)}
    # restored floats are clipped like the official torch.clamp
    over = restored.copy()
    over[0, 0] = 1.7
    clipped = np.clip(over, 0, 1)
    assert M.score("real-denoising", over, b) == M.score("real-denoising", clipped, b)


def test_protocol_input_checks() -> None:
    a, b = _images((24, 24, 3))
    with pytest.raises(ValueError, match="8-bit"):
        M.score("deraining", a, b.astype(np.uint16))
    with pytest.raises(ValueError, match="restored"):
        M.score("motion-deblurring", a[:-1], b)
