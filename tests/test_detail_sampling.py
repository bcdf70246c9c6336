"""``detail_candidates``: training windows drawn several times, the most detailed one kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from restormer.data import DatasetOptionError, build_training_set, build_validation_set
from restormer.data.augment import crop, detail, dihedral, draw_detailed_window, draw_window
from restormer.io import write_image

from .test_data import gaussian_train, make_paired
from .test_synthetic_dataset import section

PATCH = 16


def half_flat(height: int = 64, width: int = 128) -> np.ndarray:
    """A uint8 RGB image: flat grey on the left half, random texture on the right half."""
    image = np.full((height, width, 3), 128, dtype=np.uint8)
    texture = np.random.default_rng(0).integers(0, 256, (height, width // 2, 3), dtype=np.uint8)
    image[:, width // 2 :] = texture
    return image


def test_detail_is_zero_for_flat_content_and_ignores_flips_and_rotations() -> None:
    assert detail(np.full((9, 7, 3), 200, dtype=np.uint8)) == 0
    assert detail(np.zeros((1, 1))) == 0
    image = half_flat()[:, 40:90]
    assert detail(image) > 0
    for mode in range(8):
        assert detail(dihedral(image, mode)) == pytest.approx(detail(image), rel=1e-6)
    ramp = np.tile(np.arange(8, dtype=np.uint8), (8, 1))  # no uint8 wrap-around in differences
    assert detail(ramp[:, ::-1]) == detail(ramp) == 1


def test_one_candidate_is_the_plain_window_random_numbers_included() -> None:
    image = half_flat()
    for seed in range(50):
        plain, detailed = np.random.default_rng(seed), np.random.default_rng(seed)
        assert draw_detailed_window(detailed, image, PATCH, 32, True, 1) == draw_window(
            plain, 64, 128, PATCH, 32, True
        )
        assert detailed.random() == plain.random()  # the stream is left where it was


def test_the_most_detailed_of_the_candidates_is_kept() -> None:
    image = half_flat()
    for seed in range(50):
        replay = np.random.default_rng(seed)
        drawn = [draw_window(replay, 64, 128, PATCH, None, True) for _ in range(3)]
        scores = [detail(crop(image, w.top, w.left, w.size)) for w in drawn]
        chosen = draw_detailed_window(np.random.default_rng(seed), image, PATCH, None, True, 3)
        assert chosen == drawn[int(np.argmax(scores))]


def test_more_candidates_draw_flat_content_less_often_but_still_draw_it() -> None:
    image = half_flat()

    def flat_share(candidates: int) -> float:
        rng = np.random.default_rng(1)
        windows = [
            draw_detailed_window(rng, image, PATCH, None, False, candidates) for _ in range(400)
        ]
        return float(np.mean([w.left + w.size <= 64 for w in windows]))

    one, four = flat_share(1), flat_share(4)
    assert 0.3 < one < 0.6  # windows wholly in the flat half: (64 - 16 + 1) / (128 - 16 + 1)
    assert 0 < four < one / 4  # best of 4 draws a wholly flat one only if all four are


def _clean_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    write_image(root / "half.png", half_flat())
    return root


def _flat_share(train: Any, samples: int = 120) -> float:
    """Share of target patches that are flat (all one value)."""
    rng = np.random.default_rng(4)
    flat = 0
    for _ in range(samples):
        _, target = train.sample(0, rng, PATCH)
        flat += int(np.ptp(target) == 0)
    return flat / samples


@pytest.mark.parametrize("kind", ["gaussian", "synthetic"])
def test_training_sets_sample_detailed_windows(tmp_path: Path, kind: str) -> None:
    folder = _clean_folder(tmp_path / "clean")
    if kind == "gaussian":
        opt: dict[str, Any] = gaussian_train(folder, gt_size=None)
        opt.pop("gt_size")
    else:
        opt = section(folder, "gaussian-color-denoising", gt_size=None)
        opt.pop("gt_size")
    plain = build_training_set(opt, cache_dir=tmp_path / "cache")
    detailed = build_training_set({**opt, "detail_candidates": 4}, cache_dir=tmp_path / "cache")
    assert plain.options.detail_candidates == 1 and detailed.options.detail_candidates == 4
    assert _flat_share(plain) > 0.25
    assert _flat_share(detailed) < 0.1


def test_paired_windows_stay_aligned(tmp_path: Path) -> None:
    opt = make_paired(tmp_path / "p")
    train = build_training_set({**opt, "detail_candidates": 3}, cache_dir=tmp_path / "cache")
    rng = np.random.default_rng(0)
    for index in range(len(train)):
        lq, gt = train.sample(index, rng, 8)
        assert lq.shape == gt.shape == (3, 8, 8)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "datasets.train.detail_candidates: must be at least 1, got 0"),
        ("many", "datasets.train.detail_candidates: expected a whole number"),
        (True, "datasets.train.detail_candidates: expected a whole number"),
        (2.5, "datasets.train.detail_candidates: expected a whole number"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, value: object, message: str) -> None:
    opt = gaussian_train(_clean_folder(tmp_path / "clean"), detail_candidates=value)
    with pytest.raises(DatasetOptionError) as caught:
        build_training_set(opt, cache_dir=tmp_path / "cache")
    assert str(caught.value).startswith(message)


def test_validation_sets_refuse_it(tmp_path: Path) -> None:
    folder = _clean_folder(tmp_path / "clean")
    val = {**section(folder, "deraining"), "detail_candidates": 2}
    with pytest.raises(DatasetOptionError, match=r"^datasets\.val\.detail_candidates: only for"):
        build_validation_set(val, cache_dir=tmp_path / "cache")
