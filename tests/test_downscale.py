"""``downscale``: training windows cut larger and shrunk, for more detail per patch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from restormer.data import DatasetOptionError, build_training_set, build_validation_set
from restormer.data.augment import detail, draw_scale, shrink, source_size
from restormer.io import write_image

from .test_data import gaussian_train, make_paired
from .test_synthetic_dataset import section

PATCH = 16


def ramp_folder(root: Path, size: int = 120) -> Path:
    """One RGB photo whose values rise by one level per pixel down and across."""
    root.mkdir(parents=True)
    rows, cols = np.mgrid[0:size, 0:size]
    write_image(root / "ramp.png", np.repeat((rows + cols)[..., None], 3, 2).astype(np.uint8))
    return root


def training_set(tmp_path: Path, kind: str, **keys: Any) -> Any:
    folder = ramp_folder(tmp_path / "clean")
    if kind == "gaussian":
        opt = gaussian_train(folder, sigma_type="constant", sigma_range=0, **keys)
    else:
        opt = section(folder, "gaussian-color-denoising", **keys)
    opt.pop("gt_size")
    return build_training_set(opt, cache_dir=tmp_path / "cache")


def test_scales_are_log_uniform_within_the_range() -> None:
    rng = np.random.default_rng(0)
    scales = np.array([draw_scale(rng, 0.25, 1.0) for _ in range(4000)])
    assert scales.min() >= 0.25 and scales.max() <= 1.0
    assert np.mean(scales < 0.5) == pytest.approx(0.5, abs=0.03)  # each halving equally likely
    fixed, plain = np.random.default_rng(1), np.random.default_rng(1)
    assert draw_scale(fixed, 0.5, 0.5) == pytest.approx(0.5)
    plain.random()
    assert fixed.random() == plain.random()  # one number drawn even for a fixed scale


def test_source_size_covers_the_patch() -> None:
    assert source_size(16, 1.0) == 16
    assert source_size(16, 0.5) == 32
    assert source_size(16, 0.7) == 23  # ceil(22.86)
    assert source_size(16, 1 / 3) == 48  # no rounding up past an exact ratio


def test_shrink_averages_blocks_and_keeps_the_layout() -> None:
    image = np.random.default_rng(0).random((8, 8, 3)).astype(np.float32)
    blocks = image.reshape(4, 2, 4, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(shrink(image, 4), blocks, atol=1e-6)
    gray = image[..., :1]
    assert shrink(gray, 4).shape == (4, 4, 1)
    assert shrink(image, 8) is image


@pytest.mark.parametrize("kind", ["gaussian", "synthetic"])
def test_shrunk_patches_hold_more_detail(tmp_path: Path, kind: str) -> None:
    plain = training_set(tmp_path / "plain", kind)
    halved = training_set(tmp_path / "halved", kind, downscale=[0.5, 0.5])
    assert plain.options.downscale is None and halved.options.downscale == (0.5, 0.5)
    rng = np.random.default_rng(3)
    for _ in range(10):
        for train, slope in ((plain, 1), (halved, 2)):
            noisy, target = train.sample(0, rng, PATCH)
            assert noisy.shape == target.shape == (3, PATCH, PATCH)
            assert detail(target.transpose(1, 2, 0)) == pytest.approx(2 * slope / 255, rel=1e-3)


def test_noise_is_added_after_shrinking(tmp_path: Path) -> None:
    folder = tmp_path / "black"
    folder.mkdir()
    write_image(folder / "black.png", np.zeros((64, 64, 3), np.uint8))
    opt = gaussian_train(folder, sigma_type="constant", sigma_range=25, downscale=[0.4, 0.6])
    opt.pop("gt_size")
    train = build_training_set(opt, cache_dir=tmp_path / "cache")
    rng = np.random.default_rng(0)
    noise = np.concatenate([np.subtract(*train.sample(0, rng, 32)).ravel() for _ in range(8)])
    assert noise.std() == pytest.approx(25 / 255, rel=0.02)  # full strength, not averaged away


@pytest.mark.parametrize(
    "value", [[0, 1], [0.8, 0.5], [0.5, 1.5], "half", [0.5], [True, 1], [-0.5, 0.5], [0.5, "1"]]
)
def test_bad_ranges_name_the_key(tmp_path: Path, value: object) -> None:
    opt = gaussian_train(ramp_folder(tmp_path / "clean"), downscale=value)
    with pytest.raises(DatasetOptionError) as caught:
        build_training_set(opt, cache_dir=tmp_path / "cache")
    assert str(caught.value).startswith(
        "datasets.train.downscale: expected [low, high] with 0 < low <= high <= 1"
    )


def test_paired_and_validation_sets_refuse_it(tmp_path: Path) -> None:
    paired = {**make_paired(tmp_path / "p"), "downscale": [0.5, 1]}
    with pytest.raises(DatasetOptionError, match=r"^datasets\.train\.downscale: only for sets"):
        build_training_set(paired, cache_dir=tmp_path / "cache")
    val = {**section(ramp_folder(tmp_path / "clean"), "deraining"), "downscale": [0.5, 1]}
    with pytest.raises(DatasetOptionError, match=r"^datasets\.val\.downscale: only for training"):
        build_validation_set(val, cache_dir=tmp_path / "cache")
