"""Tests for restormer.data: official dataset options -> deterministic training batches.

Every image is generated here. Many use 16-bit "coordinate" images whose samples encode their
own position (value = 256 * row + column + 20000 * channel), so a crop, a flip or a
misalignment can be read straight off the pixels.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from restormer import data as rdata
from restormer.data import (
    DatasetOptionError,
    Mixup,
    StageSchedule,
    TrainingData,
    TrainingSet,
    build_training_set,
    build_validation_set,
    default_cache_dir,
)
from restormer.data.augment import crop, dihedral, draw_window, source_origin
from restormer.io import write_image

from .conftest import require_reference

CHANNEL_STEP = 20000  # coordinate images: channel c adds c * CHANNEL_STEP
INPUT_SHIFT = 3000  # paired inputs are the target + this (and + 2 * this for the right view)

# --------------------------------------------------------------------------------------------
# helpers


def coordinates(height: int, width: int, shift: int = 0) -> np.ndarray:
    """uint16 H x W x 3 whose samples encode (row, column, channel)."""
    rows, cols = np.mgrid[0:height, 0:width]
    base = rows * 256 + cols + shift
    return np.stack([base + c * CHANNEL_STEP for c in range(3)], axis=2).astype(np.uint16)


def as_levels(x: np.ndarray | torch.Tensor, depth: int = 16) -> np.ndarray:
    """Float samples in [0, 1] back to integer levels."""
    return np.rint(np.asarray(x, dtype=np.float64) * (2**depth - 1)).astype(np.int64)


def random_rgb(seed: int, height: int, width: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


SIZES = [(40, 48), (36, 52), (44, 40), (12, 14)]  # the last one is smaller than most patches


def make_paired(root: Path, tmpl: str = "{}", input_suffix: str = ".png") -> dict[str, Any]:
    """target/ and input/ folders of coordinate images (input = target + INPUT_SHIFT)."""
    (root / "target").mkdir(parents=True)
    (root / "input").mkdir()
    for i, (h, w) in enumerate(SIZES):
        write_image(root / "target" / f"img{i}.png", coordinates(h, w))
        name = tmpl.format(f"img{i}") + input_suffix
        write_image(root / "input" / name, coordinates(h, w, INPUT_SHIFT))
    return official_train(
        "Dataset_PairedImage",
        dataroot_gt=str(root / "target"),
        dataroot_lq=str(root / "input"),
        filename_tmpl=tmpl,
    )


def make_dual_pixel(root: Path) -> dict[str, Any]:
    for sub in ("target", "inputL", "inputR"):
        (root / sub).mkdir(parents=True)
    for i, (h, w) in enumerate(SIZES[:3]):
        write_image(root / "target" / f"{i}.png", coordinates(h, w))
        write_image(root / "inputL" / f"{i}.png", coordinates(h, w, INPUT_SHIFT))
        write_image(root / "inputR" / f"{i}.png", coordinates(h, w, 2 * INPUT_SHIFT))
    return official_train(
        "Dataset_DefocusDeblur_DualPixel_16bit",
        dataroot_gt=str(root / "target"),
        dataroot_lqL=str(root / "inputL"),
        dataroot_lqR=str(root / "inputR"),
        filename_tmpl="{}",
    )


def make_clean(root: Path, count: int = 5, size: tuple[int, int] = (40, 44)) -> Path:
    root.mkdir(parents=True)
    for i in range(count):
        write_image(root / f"clean{i}.png", random_rgb(i, *size))
    return root


def official_train(kind: str, **keys: Any) -> dict[str, Any]:
    """A ``datasets.train`` section shaped like the official option files."""
    return {
        "name": "TrainSet",
        "type": kind,
        **keys,
        "geometric_augs": True,
        "io_backend": {"type": "disk"},
        "use_shuffle": True,
        "num_worker_per_gpu": 8,
        "batch_size_per_gpu": 8,
        "mini_batch_sizes": [8, 5, 4, 2, 1, 1],
        "iters": [92000, 64000, 48000, 36000, 36000, 24000],
        "gt_size": 384,
        "gt_sizes": [128, 160, 192, 256, 320, 384],
        "dataset_enlarge_ratio": 1,
        "prefetch_mode": None,
    }


def gaussian_train(folder: Path, **overrides: Any) -> dict[str, Any]:
    opt = official_train(
        "Dataset_GaussianDenoising",
        sigma_type="random",
        sigma_range=[0, 50],
        in_ch=3,
        dataroot_gt=str(folder),
        dataroot_lq="none",
        filename_tmpl="{}",
    )
    opt.update(overrides)
    return opt


def small_schedule(batch: int = 2, patch: int = 16) -> StageSchedule:
    return StageSchedule([3, 4], [patch, patch + 8], [batch, max(1, batch // 2)])


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def paired(tmp_path: Path, cache: Path) -> TrainingSet:
    opt = make_paired(tmp_path / "paired")
    opt["gt_size"] = 24
    return build_training_set(opt, cache_dir=cache)


# --------------------------------------------------------------------------------------------
# official option dicts build


def test_paired_official_dict(paired: TrainingSet) -> None:
    assert len(paired) == len(SIZES)
    assert (paired.in_channels, paired.out_channels) == (3, 3)
    assert paired.names == [f"img{i}" for i in range(len(SIZES))]
    inp, tgt = paired.sample(0, np.random.default_rng(0), 16)
    assert inp.shape == tgt.shape == (3, 16, 16)
    assert inp.dtype == tgt.dtype == np.float32
    assert tgt.min() >= 0 and tgt.max() <= 1


def test_gaussian_official_dict(tmp_path: Path, cache: Path) -> None:
    train = build_training_set(gaussian_train(make_clean(tmp_path / "c")), cache_dir=cache)
    assert (len(train), train.in_channels, train.out_channels) == (5, 3, 3)
    inp, tgt = train.sample(3, np.random.default_rng(1), 32)
    assert inp.shape == tgt.shape == (3, 32, 32) and inp.dtype == np.float32


def test_dual_pixel_official_dict(tmp_path: Path, cache: Path) -> None:
    train = build_training_set(make_dual_pixel(tmp_path / "dp"), cache_dir=cache)
    assert (train.in_channels, train.out_channels) == (6, 3)
    inp, tgt = train.sample(1, np.random.default_rng(0), 16)
    assert inp.shape == (6, 16, 16) and tgt.shape == (3, 16, 16)


# --------------------------------------------------------------------------------------------
# option errors


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda opt: opt.pop(key)


def _set(key: str, value: object) -> Callable[[dict[str, Any]], None]:
    return lambda opt: opt.__setitem__(key, value)


PAIRED_ERRORS = [
    (_drop("type"), "datasets.train.type: required"),
    (_set("type", "Dataset_Nope"), "datasets.train.type: unknown dataset type"),
    (_set("gt_szie", 128), "datasets.train.gt_szie: unknown option"),
    (_set("sigma_type", "random"), "datasets.train.sigma_type: unknown option"),
    (_set("meta_info_file", "m.txt"), "datasets.train.meta_info_file: "),
    (_set("mean", [0.5]), "datasets.train.mean: "),
    (_set("io_backend", {"type": "lmdb"}), "datasets.train.io_backend.type: only 'disk'"),
    (_set("io_backend", "disk"), "datasets.train.io_backend: expected a mapping"),
    (_set("scale", 2), "datasets.train.scale: must be 1"),
    (_drop("dataroot_gt"), "datasets.train.dataroot_gt: required"),
    (_set("dataroot_gt", 3), "datasets.train.dataroot_gt: expected a folder path"),
    (_set("dataroot_gt", "/no/such/dir"), "datasets.train.dataroot_gt: no such folder"),
    (_drop("dataroot_lq"), "datasets.train.dataroot_lq: required"),
    (_set("filename_tmpl", "x"), "datasets.train.filename_tmpl: expected a template"),
    (_set("filename_tmpl", "{0}{1}"), "datasets.train.filename_tmpl: expected a template"),
    (_set("filename_tmpl", 7), "datasets.train.filename_tmpl: expected a string"),
    (_set("geometric_augs", "yes"), "datasets.train.geometric_augs: expected true or false"),
    (_set("gt_size", 0), "datasets.train.gt_size: must be at least 1"),
    (_set("gt_size", "big"), "datasets.train.gt_size: expected a whole number"),
    (_set("gt_size", 12.5), "datasets.train.gt_size: expected a whole number"),
]


@pytest.mark.parametrize(("change", "message"), PAIRED_ERRORS)
def test_paired_option_errors(
    tmp_path: Path, cache: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    opt = make_paired(tmp_path / "p")
    change(opt)
    with pytest.raises(DatasetOptionError) as info:
        build_training_set(opt, cache_dir=cache)
    assert str(info.value).startswith(message), str(info.value)


GAUSSIAN_ERRORS = [
    (_set("in_ch", 2), "datasets.train.in_ch: must be 1"),
    (_set("in_ch", True), "datasets.train.in_ch: must be 1"),
    (_drop("sigma_type"), "datasets.train.sigma_type: required"),
    (_set("sigma_type", "uniform"), "datasets.train.sigma_type: required, one of"),
    (_drop("sigma_range"), "datasets.train.sigma_range: required"),
    (_set("sigma_range", [50, 0]), "datasets.train.sigma_range: expected [low, high]"),
    (_set("sigma_range", [0, 300]), "datasets.train.sigma_range[1]: noise level must be"),
    (_set("sigma_range", [0, 10, 20]), "datasets.train.sigma_range: expected [low, high]"),
    (_set("sigma_range", "0-50"), "datasets.train.sigma_range: expected [low, high]"),
    (_set("sigma_range", [-1, 5]), "datasets.train.sigma_range[0]: noise level must be"),
]


@pytest.mark.parametrize(("change", "message"), GAUSSIAN_ERRORS)
def test_gaussian_option_errors(
    tmp_path: Path, cache: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    opt = gaussian_train(make_clean(tmp_path / "c", count=1))
    change(opt)
    with pytest.raises(DatasetOptionError) as info:
        build_training_set(opt, cache_dir=cache)
    assert str(info.value).startswith(message), str(info.value)


@pytest.mark.parametrize(
    ("sigma_type", "sigma_range", "message"),
    [
        ("constant", -5, "noise level must be"),
        ("constant", "25", "expected a number"),
        ("choice", [], "expected a non-empty list"),
        ("choice", [15, 500], "sigma_range[1]: noise level must be"),
    ],
)
def test_sigma_errors(
    tmp_path: Path, cache: Path, sigma_type: str, sigma_range: object, message: str
) -> None:
    opt = gaussian_train(make_clean(tmp_path / "c", count=1))
    opt.update(sigma_type=sigma_type, sigma_range=sigma_range)
    with pytest.raises(DatasetOptionError, match=r"^datasets\.train\.sigma_range") as info:
        build_training_set(opt, cache_dir=cache)
    assert message in str(info.value)


def test_validation_option_errors(tmp_path: Path, cache: Path) -> None:
    folder = make_clean(tmp_path / "c", count=1)
    val = {
        "name": "ValSet",
        "type": "Dataset_GaussianDenoising",
        "in_ch": 3,
        "dataroot_gt": str(folder),
        "dataroot_lq": "none",
        "io_backend": {"type": "disk"},
    }
    with pytest.raises(DatasetOptionError, match=r"^datasets\.val\.sigma_test: required"):
        build_validation_set(val, cache_dir=cache)
    with pytest.raises(DatasetOptionError, match=r"^datasets\.val\.sigma_test: noise level"):
        build_validation_set({**val, "sigma_test": 300}, cache_dir=cache)
    with pytest.raises(DatasetOptionError, match=r"^my\.val: expected a mapping"):
        build_validation_set([val], key_prefix="my.val", cache_dir=cache)  # type: ignore[arg-type]


def test_folder_errors(tmp_path: Path, cache: Path) -> None:
    opt = make_paired(tmp_path / "p")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    cases = {
        str(tmp_path / "empty"): "datasets.train.dataroot_lq: no images in",
        str(tmp_path / "empty" / "notes.txt"): "datasets.train.dataroot_lq: '",
    }
    for folder, message in cases.items():
        with pytest.raises(DatasetOptionError) as info:
            build_training_set({**opt, "dataroot_lq": folder}, cache_dir=cache)
        assert str(info.value).startswith(message), str(info.value)


def test_unpaired_names_listed(tmp_path: Path, cache: Path) -> None:
    opt = make_paired(tmp_path / "p")
    target = Path(opt["dataroot_gt"])
    for i in range(7):
        write_image(target / f"extra{i}.png", coordinates(8, 8))
    with pytest.raises(DatasetOptionError) as info:
        build_training_set(opt, cache_dir=cache)
    message = str(info.value)
    assert message.startswith("datasets.train.dataroot_lq: no input for 7 of 11 targets")
    assert "extra0.png, extra1.png, extra2.png, extra3.png, extra4.png, ... (2 more)" in message


def test_input_without_target(tmp_path: Path, cache: Path) -> None:
    opt = make_paired(tmp_path / "p")
    write_image(Path(opt["dataroot_lq"]) / "stray.png", coordinates(8, 8))
    with pytest.raises(DatasetOptionError, match=r"dataroot_lq: 1 images have no target.*stray"):
        build_training_set(opt, cache_dir=cache)


def test_ambiguous_input_name(tmp_path: Path, cache: Path) -> None:
    opt = make_paired(tmp_path / "p")
    write_image(Path(opt["dataroot_lq"]) / "img0.tif", coordinates(40, 48))
    with pytest.raises(DatasetOptionError, match=r"dataroot_lq: several files share a name"):
        build_training_set(opt, cache_dir=cache)


def test_size_mismatch(tmp_path: Path, cache: Path) -> None:
    opt = make_paired(tmp_path / "p")
    write_image(Path(opt["dataroot_lq"]) / "img1.png", coordinates(30, 30), overwrite=True)
    with pytest.raises(DatasetOptionError) as info:
        build_training_set(opt, cache_dir=cache)
    assert str(info.value) == (
        "datasets.train.dataroot_lq: 'img1.png' is 30x30 but its target 'img1.png' "
        "in datasets.train.dataroot_gt is 52x36"
    )


def test_corrupt_file_names_key_and_file(tmp_path: Path, cache: Path) -> None:
    opt = make_paired(tmp_path / "p")
    (Path(opt["dataroot_gt"]) / "img2.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(DatasetOptionError, match=r"^datasets\.train\.dataroot_gt: .*img2\.png: "):
        build_training_set(opt, cache_dir=cache)


# --------------------------------------------------------------------------------------------
# pairing, alignment, augmentation


def test_pairing_by_name_with_template(tmp_path: Path, cache: Path) -> None:
    opt = make_paired(tmp_path / "p", tmpl="{}_rain", input_suffix=".tif")
    opt["gt_size"] = 16
    train = build_training_set(opt, cache_dir=cache)
    assert train.names == [f"img{i}_rain" for i in range(len(SIZES))]
    for index in range(len(train)):
        inp, tgt = train.sample(index, np.random.default_rng(index), 8)
        assert (as_levels(inp) == as_levels(tgt) + INPUT_SHIFT).all()


def test_crops_aligned_including_padding(paired: TrainingSet) -> None:
    for seed in range(60):
        index = seed % len(paired)
        patch = (8, 16, 24, 20)[seed % 4]
        inp, tgt = paired.sample(index, np.random.default_rng(seed), patch)
        assert inp.shape == tgt.shape == (3, patch, patch)
        assert (as_levels(inp) == as_levels(tgt) + INPUT_SHIFT).all()
        levels = as_levels(tgt)
        assert (levels[1] - levels[0] == CHANNEL_STEP).all()  # channel order kept


OFFICIAL_MODES = {  # basicsr/data/transforms.py data_augmentation, written out
    0: lambda a: a,
    1: np.flipud,
    2: np.rot90,
    3: lambda a: np.flipud(np.rot90(a)),
    4: lambda a: np.rot90(a, k=2),
    5: lambda a: np.flipud(np.rot90(a, k=2)),
    6: lambda a: np.rot90(a, k=3),
    7: lambda a: np.flipud(np.rot90(a, k=3)),
}


def test_eight_distinct_dihedral_transforms() -> None:
    image = random_rgb(0, 9, 9)
    results = [dihedral(image, mode) for mode in range(8)]
    for mode, result in enumerate(results):
        assert np.array_equal(result, OFFICIAL_MODES[mode](image))
    assert len({r.tobytes() for r in results}) == 8
    with pytest.raises(ValueError):
        dihedral(image, 8)


def test_source_origin_matches_transform_then_crop() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        size = int(rng.integers(2, 20))
        patch = int(rng.integers(1, size + 1))
        top, left = (int(v) for v in rng.integers(0, size - patch + 1, 2))
        mode = int(rng.integers(0, 8))
        square = rng.integers(0, 1000, (size, size, 1))
        row, col = source_origin(mode, size, top, left, patch)
        expected = dihedral(square, mode)[top : top + patch, left : left + patch]
        assert np.array_equal(
            dihedral(square[row : row + patch, col : col + patch], mode), expected
        )


def test_crop_pads_like_cv2_reflect() -> None:
    image = random_rgb(3, 5, 7)
    padded = cv2.copyMakeBorder(image, 0, 30, 0, 30, cv2.BORDER_REFLECT)
    for top, left, size in [(0, 0, 5), (2, 3, 9), (4, 6, 20), (0, 0, 31)]:
        assert np.array_equal(
            crop(image, top, left, size), padded[top : top + size, left : left + size]
        )


def official_two_step(
    image: np.ndarray, rng: np.random.Generator, gt_size: int, patch: int
) -> np.ndarray:
    """The official loader (pad, gt_size crop, augmentation) + progressive window, fed the
    same random draws as draw_window makes."""
    h, w = image.shape[:2]
    padded = cv2.copyMakeBorder(
        image, 0, max(0, gt_size - h), 0, max(0, gt_size - w), cv2.BORDER_REFLECT
    )
    top = int(rng.integers(0, padded.shape[0] - gt_size + 1))
    left = int(rng.integers(0, padded.shape[1] - gt_size + 1))
    loaded = padded[top : top + gt_size, left : left + gt_size]
    y0, x0 = (int(v) for v in rng.integers(0, gt_size - patch, 2))
    loaded = OFFICIAL_MODES[int(rng.integers(0, 8))](loaded)
    return loaded[y0 : y0 + patch, x0 : x0 + patch]


def test_windows_equal_official_two_step_crop(paired: TrainingSet) -> None:
    assert paired.loader_size == 24
    for seed in range(80):
        index = seed % len(paired)
        patch = (8, 12, 16, 20)[seed % 4]
        _, tgt = paired.sample(index, np.random.default_rng(seed), patch)
        source = coordinates(*SIZES[index])
        expected = official_two_step(source, np.random.default_rng(seed), 24, patch)
        assert np.array_equal(as_levels(tgt), expected.transpose(2, 0, 1))


def test_window_offsets_never_reach_the_last_position() -> None:
    # int((G - P) * random.random()) < G - P: officially the window never touches the far edge
    tops = {draw_window(np.random.default_rng(s), 10, 10, 4, 10, False).top for s in range(400)}
    assert tops == set(range(6))


def detect_mode(levels: np.ndarray) -> int:
    """Which flip/rotation produced a (non-padded) coordinate patch."""
    plane = levels[0]
    top, left = divmod(int(plane.min()), 256)
    size = plane.shape[0]
    window = coordinates(top + size, left + size)[top:, left:, 0].astype(np.int64)
    matches = [m for m in range(8) if np.array_equal(dihedral(window, m), plane)]
    assert len(matches) == 1
    return matches[0]


@pytest.mark.parametrize("augs", [True, False])
def test_geometric_augs_use_all_eight_or_none(tmp_path: Path, cache: Path, augs: bool) -> None:
    opt = make_paired(tmp_path / "p")
    opt.update(geometric_augs=augs, gt_size=12)
    train = build_training_set(opt, cache_dir=cache)
    modes = {
        detect_mode(as_levels(train.sample(0, np.random.default_rng(s), 12)[1])) for s in range(120)
    }
    assert modes == (set(range(8)) if augs else {0})


# --------------------------------------------------------------------------------------------
# Gaussian noise, gray, dual-pixel, validation


def test_gaussian_noise_statistics_and_no_clipping(tmp_path: Path, cache: Path) -> None:
    folder = tmp_path / "black"
    folder.mkdir()
    write_image(folder / "black.png", np.zeros((64, 64, 3), np.uint8))
    opt = gaussian_train(folder, sigma_type="constant", sigma_range=25, gt_size=64)
    train = build_training_set(opt, cache_dir=cache)
    residuals = [np.subtract(*train.sample(0, np.random.default_rng(s), 64)) for s in range(8)]
    noise = np.concatenate([r.ravel() for r in residuals])
    assert noise.std() == pytest.approx(25 / 255, rel=0.01)
    assert abs(noise.mean()) < 0.002
    assert noise.min() < 0  # negative inputs: no clipping
    assert all(r.dtype == np.float32 for r in residuals)


def test_gaussian_sigma_types(tmp_path: Path, cache: Path) -> None:
    folder = make_clean(tmp_path / "c", count=1, size=(64, 64))

    def stds(**sigma: Any) -> np.ndarray:
        train = build_training_set(gaussian_train(folder, **sigma), cache_dir=cache)
        samples = [train.sample(0, np.random.default_rng(s), 64) for s in range(40)]
        return np.array([np.std(inp - tgt) * 255 for inp, tgt in samples])

    chosen = stds(sigma_type="choice", sigma_range=[15, 50])
    near = np.minimum(abs(chosen - 15), abs(chosen - 50))
    assert near.max() < 1.5 and (chosen < 30).any() and (chosen > 30).any()
    drawn = stds(sigma_type="random", sigma_range=[10, 20])
    assert drawn.min() > 9 and drawn.max() < 21 and drawn.std() > 1
    assert abs(stds(sigma_type="constant", sigma_range=[15]) - 15).max() < 1


def test_gaussian_gray_converts_like_cvtcolor(tmp_path: Path, cache: Path) -> None:
    folder = make_clean(tmp_path / "c", count=2, size=(32, 32))
    opt = gaussian_train(folder, in_ch=1, sigma_type="constant", sigma_range=0, gt_size=32)
    opt["geometric_augs"] = False
    train = build_training_set(opt, cache_dir=cache)
    assert (train.in_channels, train.out_channels) == (1, 1)
    inp, tgt = train.sample(1, np.random.default_rng(0), 32)
    assert inp.shape == tgt.shape == (1, 32, 32)
    expected = cv2.cvtColor(random_rgb(1, 32, 32), cv2.COLOR_RGB2GRAY)
    assert np.array_equal(as_levels(tgt, 8)[0], expected)


def test_gray_file_repeated_for_rgb(tmp_path: Path, cache: Path) -> None:
    folder = tmp_path / "g"
    folder.mkdir()
    gray = random_rgb(0, 20, 20)[..., :1]
    write_image(folder / "g.png", gray)
    opt = gaussian_train(folder, sigma_type="constant", sigma_range=0, gt_size=20)
    _, tgt = build_training_set(opt, cache_dir=cache).sample(0, np.random.default_rng(0), 20)
    assert tgt.shape == (3, 20, 20) and (tgt[0] == tgt[1]).all() and (tgt[1] == tgt[2]).all()


def test_dual_pixel_scaling_and_channel_order(tmp_path: Path, cache: Path) -> None:
    opt = make_dual_pixel(tmp_path / "dp")
    train = build_training_set(opt, cache_dir=cache)
    for seed in range(10):
        inp, tgt = train.sample(seed % 3, np.random.default_rng(seed), 16)
        target = as_levels(tgt)
        assert (as_levels(inp[:3]) == target + INPUT_SHIFT).all()  # left view first
        assert (as_levels(inp[3:]) == target + 2 * INPUT_SHIFT).all()
    val = build_validation_set({**opt, "name": "ValSet"}, cache_dir=cache)
    name, inp, tgt = next(iter(val))
    assert name == "0"
    full = coordinates(*SIZES[0]).transpose(2, 0, 1)
    # uint16 / 65535 in float32, as the official imfrombytesDP scales
    assert np.array_equal(tgt, full.astype(np.float32) / np.float32(65535))
    assert np.array_equal(inp[3:], (full + 2 * INPUT_SHIFT).astype(np.float32) / np.float32(65535))
    assert inp.shape == (6, *SIZES[0])


def test_validation_paired_whole_images(tmp_path: Path, cache: Path) -> None:
    opt = make_paired(tmp_path / "p")
    val_opt = {
        "name": "ValSet",
        "type": "Dataset_PairedImage",
        "io_backend": {"type": "disk"},
        "dataroot_gt": opt["dataroot_gt"],
        "dataroot_lq": opt["dataroot_lq"],
    }
    val = build_validation_set(val_opt, cache_dir=cache)
    items = list(val)
    assert len(val) == len(items) == len(SIZES)
    for (_, inp, tgt), (h, w) in zip(items, SIZES, strict=True):
        assert tgt.shape == (3, h, w) and inp.dtype == np.float32
        assert (as_levels(inp) == as_levels(tgt) + INPUT_SHIFT).all()
    assert [item[0] for item in items] == val.names


def test_gaussian_validation_noise_is_official(tmp_path: Path, cache: Path) -> None:
    folder = make_clean(tmp_path / "c", count=2, size=(20, 24))
    val_opt = {
        "name": "ValSet",
        "type": "Dataset_GaussianDenoising",
        "sigma_test": 25,
        "in_ch": 3,
        "dataroot_gt": str(folder),
        "dataroot_lq": "none",
        "io_backend": {"type": "disk"},
    }
    val = build_validation_set(val_opt, cache_dir=cache)
    for index, (name, inp, tgt) in enumerate(val):
        img = random_rgb(index, 20, 24).astype(np.float32) / 255.0
        np.random.seed(seed=0)  # what the official validation branch does per image
        img += np.random.normal(0, 25 / 255.0, img.shape)
        assert name == f"clean{index}"
        assert np.array_equal(inp, img.transpose(2, 0, 1))
        assert np.array_equal(tgt, random_rgb(index, 20, 24).transpose(2, 0, 1) / np.float32(255))


# --------------------------------------------------------------------------------------------
# progressive schedule


def test_stage_schedule_matches_reference() -> None:
    reference = json.loads((require_reference() / "progressive_schedule.json").read_text())
    opt = official_train("Dataset_PairedImage")
    schedule = StageSchedule.from_options(opt)
    assert list(schedule.iters) == reference["iters"]
    assert list(schedule.gt_sizes) == reference["gt_sizes"]
    assert list(schedule.mini_batch_sizes) == reference["mini_batch_sizes"]
    assert opt["batch_size_per_gpu"] == reference["loader_batch_size_per_gpu"]
    assert opt["gt_size"] == reference["loader_gt_size"]
    for iteration, expected in reference["stage_at_iteration"].items():
        i = int(iteration)
        assert schedule.stage(i) == expected["stage"]
        assert schedule.patch(i) == expected["patch"]
        assert schedule.batch(i) == expected["mini_batch_per_gpu"]


def test_samples_before() -> None:
    schedule = StageSchedule.from_options(official_train("Dataset_PairedImage"))
    assert schedule.samples_before(1) == 0
    assert schedule.samples_before(2) == 8
    assert schedule.samples_before(92001) == 92000 * 8
    assert schedule.samples_before(92002) == 92000 * 8 + 5
    assert schedule.samples_before(300001) == 92000 * 8 + 64000 * 5 + 48000 * 4 + 36000 * 2 + 60000
    assert schedule.samples_before(300011) == schedule.samples_before(300001) + 10  # past the end
    small = StageSchedule([3, 5, 2], [8, 16, 24], [4, 2, 1])
    total = 0
    for i in range(1, 20):
        assert small.samples_before(i) == total
        total += small.batch(i)


def test_stage_schedule_single_stage_and_errors() -> None:
    single = StageSchedule.from_options({"gt_size": 128, "batch_size_per_gpu": 8})
    assert (single.patch(1), single.batch(1), single.patch(10**6), single.batch(10**6)) == (
        128,
        8,
        128,
        8,
    )
    assert single.samples_before(11) == 80
    with pytest.raises(DatasetOptionError, match=r"^datasets\.train\.mini_batch_sizes: required"):
        StageSchedule.from_options({"iters": [5], "gt_sizes": [64]})
    with pytest.raises(
        DatasetOptionError, match=r"^datasets\.train\.mini_batch_sizes: .*one entry"
    ):
        StageSchedule.from_options({"iters": [5], "gt_sizes": [64], "mini_batch_sizes": [1, 2]})
    with pytest.raises(DatasetOptionError, match=r"^x\.gt_sizes\[1\]: must be at least 1"):
        StageSchedule.from_options(
            {"iters": [5, 5], "gt_sizes": [64, 0], "mini_batch_sizes": [1, 2]}, key_prefix="x"
        )
    with pytest.raises(DatasetOptionError, match=r"^datasets\.train\.batch_size_per_gpu: required"):
        StageSchedule.from_options({"gt_size": 64})
    with pytest.raises(ValueError, match="counts from 1"):
        single.stage(0)
    with pytest.raises(ValueError, match="differ in length"):
        StageSchedule([1, 2], [8], [1])


# --------------------------------------------------------------------------------------------
# the sample stream: purity, DDP composition, mixup


def test_batches_are_pure(paired: TrainingSet) -> None:
    data = TrainingData(paired, small_schedule(), seed=7)
    forward = [data.batch(i) for i in range(1, 10)]
    fresh = TrainingData(paired, small_schedule(), seed=7)  # as after a resume
    backward = {i: fresh.batch(i) for i in range(9, 0, -1)}
    for i, (inp, tgt) in enumerate(forward, start=1):
        assert torch.equal(inp, data.batch(i)[0]) and torch.equal(tgt, data.batch(i)[1])
        assert torch.equal(inp, backward[i][0]) and torch.equal(tgt, backward[i][1])
    assert forward[0][0].shape == (2, 3, 16, 16) and forward[5][0].shape == (1, 3, 24, 24)
    other = TrainingData(paired, small_schedule(), seed=8).batch(1)[1]
    assert not torch.equal(other, forward[0][1])


def test_ddp_ranks_compose_to_one_big_batch(paired: TrainingSet) -> None:
    """Ranks 0 and 1 of 2 with batch b == one process with batch 2b, iteration by iteration
    (through a stage change and several epochs: 4 items, 4 or 2 samples per iteration)."""
    small = StageSchedule([3, 4], [8, 12], [2, 1])
    big = StageSchedule([3, 4], [8, 12], [4, 2])
    ranks = [TrainingData(paired, small, seed=3, rank=r, world_size=2) for r in range(2)]
    single = TrainingData(paired, big, seed=3)
    for i in range(1, 10):
        parts = [rank.batch(i) for rank in ranks]
        whole = single.batch(i)
        assert torch.equal(torch.cat([p[0] for p in parts]), whole[0])
        assert torch.equal(torch.cat([p[1] for p in parts]), whole[1])
        assert not torch.equal(parts[0][1], parts[1][1])


def test_epochs_visit_every_item_once(paired: TrainingSet) -> None:
    data = TrainingData(paired, StageSchedule([1], [8], [1]), seed=11)
    epochs = [[data.item_at(p) for p in range(e * 4, e * 4 + 4)] for e in range(5)]
    assert all(sorted(epoch) == [0, 1, 2, 3] for epoch in epochs)
    assert len({tuple(epoch) for epoch in epochs}) > 1  # reshuffled between epochs


def test_training_data_argument_errors(paired: TrainingSet) -> None:
    schedule = small_schedule()
    with pytest.raises(ValueError, match="rank must be below"):
        TrainingData(paired, schedule, seed=0, rank=2, world_size=2)
    with pytest.raises(ValueError, match="seed must be"):
        TrainingData(paired, schedule, seed=-1)
    with pytest.raises(ValueError, match="counts from 1"):
        TrainingData(paired, schedule, seed=0).batch(0)
    with pytest.raises(ValueError, match="patch must be"):
        paired.sample(0, np.random.default_rng(0), 0)


def mixed(mixup: Mixup, seed: int, size: int = 10) -> tuple[bool, float, bool]:
    """(identity?, lam, target mixed like input?) for one draw on one-hot rows.

    A moved row i becomes lam * e_i + (1 - lam) * e_r(i), so its diagonal entry is lam."""
    x = np.eye(size, dtype=np.float64)
    inp, tgt = mixup(x, 10 * x, np.random.default_rng(seed))
    if np.array_equal(inp, x):
        return True, 1.0, np.array_equal(tgt, 10 * x)
    diagonal = np.diag(inp)
    lam = float(diagonal[diagonal < 1 - 1e-12].min())  # rows that were mixed with another
    return False, lam, np.allclose(tgt, 10 * inp)


def test_mixup_identity_half_and_beta_lambda() -> None:
    draws = [mixed(Mixup(beta=1.2, use_identity=True), seed) for seed in range(3000)]
    identity = np.mean([d[0] for d in draws])
    assert identity == pytest.approx(0.5, abs=0.04)
    assert all(d[2] for d in draws)
    lams = np.array([d[1] for d in draws if not d[0]])
    # Beta(1.2, 1.2): mean 1/2, variance a*b / ((a+b)^2 (a+b+1)) = 0.0735
    assert lams.mean() == pytest.approx(0.5, abs=0.02)
    assert lams.var() == pytest.approx(1.44 / (2.4**2 * 3.4), rel=0.1)
    always = [mixed(Mixup(use_identity=False), seed) for seed in range(200)]
    assert not any(d[0] for d in always)
    with pytest.raises(ValueError):
        Mixup(beta=0)


def test_mixup_in_training_data(paired: TrainingSet) -> None:
    plain = TrainingData(paired, small_schedule(4), seed=5)
    mix = TrainingData(paired, small_schedule(4), seed=5, mixup=Mixup(use_identity=False))
    a, b = plain.batch(1), mix.batch(1)
    assert not torch.equal(a[0], b[0])
    assert b[0].dtype == b[1].dtype == torch.float32
    assert torch.allclose(a[0].sum(0), b[0].sum(0), atol=1e-5)  # a permutation mix keeps sums
    assert torch.equal(mix.batch(1)[0], b[0])  # still pure
    rank1 = TrainingData(
        paired, small_schedule(4), seed=5, world_size=2, rank=1, mixup=Mixup(use_identity=False)
    )
    assert rank1.batch(1)[0].shape == (4, 3, 16, 16)


# --------------------------------------------------------------------------------------------
# cache


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    from restormer.data import cache as cache_module

    decoded: list[Path] = []
    real = cache_module.read_image

    def counting(path: Any, **kwargs: Any) -> Any:
        decoded.append(Path(path))
        return real(path, **kwargs)

    monkeypatch.setattr(cache_module, "read_image", counting)
    return decoded


def test_cache_reused_and_invalidated(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opt = make_paired(tmp_path / "p")
    decoded = count_decodes(monkeypatch)
    build_training_set(opt, cache_dir=cache)
    assert len(decoded) == 2 * len(SIZES)
    decoded.clear()
    again = build_training_set(opt, cache_dir=cache)
    assert decoded == []
    changed = Path(opt["dataroot_lq"]) / "img0.png"
    write_image(changed, coordinates(40, 48, INPUT_SHIFT + 1), overwrite=True)
    stamp = changed.stat().st_mtime_ns + 10**9
    os.utime(changed, ns=(stamp, stamp))
    rebuilt = build_training_set(opt, cache_dir=cache)
    assert decoded == [changed]
    for train, shift in [(again, INPUT_SHIFT), (rebuilt, INPUT_SHIFT + 1)]:
        inp, tgt = train.sample(0, np.random.default_rng(0), 8)
        assert (as_levels(inp) == as_levels(tgt) + shift).all()


def test_damaged_cache_entry_is_rebuilt(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_clean(tmp_path / "c", count=1)
    opt = gaussian_train(folder)
    build_training_set(opt, cache_dir=cache)
    (entry,) = cache.glob("*.npy")
    entry.write_bytes(entry.read_bytes()[:-10])  # truncated
    decoded = count_decodes(monkeypatch)
    train = build_training_set(opt, cache_dir=cache)
    assert len(decoded) == 1
    train.sample(0, np.random.default_rng(0), 16)


def test_default_cache_dir_honours_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "restormer" / "decoded"
    build_training_set(gaussian_train(make_clean(tmp_path / "c", count=2)))
    assert len(list((tmp_path / "xdg" / "restormer" / "decoded").glob("*.npy"))) == 2
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "restormer" / "decoded"


def test_unwritable_cache_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    opt = gaussian_train(make_clean(tmp_path / "c", count=1))
    with pytest.raises(DatasetOptionError, match=r"^cache_dir: cannot create"):
        build_training_set(opt, cache_dir=blocker / "sub")


# --------------------------------------------------------------------------------------------
# prefetch


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "restormer-prefetch"]


def test_prefetch_yields_the_batches(paired: TrainingSet) -> None:
    data = TrainingData(paired, small_schedule(), seed=1)
    got = list(data.prefetch(2, 6))
    assert [g[0] for g in got] == [2, 3, 4, 5, 6]  # both ends included
    for current_iter, inp, tgt in got:
        expected = data.batch(current_iter)
        assert torch.equal(inp, expected[0]) and torch.equal(tgt, expected[1])
    assert prefetch_threads() == []


def test_prefetch_stops_cleanly(paired: TrainingSet) -> None:
    data = TrainingData(paired, small_schedule(), seed=1)
    unstarted = data.prefetch(1, 10**6)
    assert prefetch_threads() == []  # nothing runs before the first next()
    del unstarted
    for current_iter, _, _ in data.prefetch(1, 10**6, depth=3):
        if current_iter == 3:
            break
    deadline = time.monotonic() + 5
    while prefetch_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert prefetch_threads() == []
    stream = data.prefetch(1, 10**6)
    next(stream)
    stream.close()
    assert prefetch_threads() == []


def test_prefetch_propagates_errors(paired: TrainingSet) -> None:
    class Failing(TrainingData):
        def batch(self, current_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
            if current_iter == 3:
                raise OSError("disk gone")
            return super().batch(current_iter)

    data = Failing(paired, small_schedule(), seed=1)
    seen = []
    with pytest.raises(OSError, match="disk gone"):
        for current_iter, _, _ in data.prefetch(1, 10):
            seen.append(current_iter)
    assert seen == [1, 2]
    assert prefetch_threads() == []


def test_public_api() -> None:
    for name in (
        "DatasetOptionError",
        "build_training_set",
        "build_validation_set",
        "TrainingData",
        "Mixup",
        "StageSchedule",
        "TrainingSet",
        "ValidationSet",
    ):
        assert name in rdata.__all__
    assert issubclass(DatasetOptionError, ValueError)
