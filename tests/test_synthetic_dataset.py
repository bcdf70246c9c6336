"""``Dataset_SyntheticDegradation``: clean photos degraded on the fly, for training and validation.

Every test runs against a tiny fake of :mod:`restormer.degradations` (``fake_degradations``);
those taking ``backend`` also run against the real package once it exists.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from restormer.cli import app
from restormer.data import (
    DatasetOptionError,
    StageSchedule,
    SyntheticTrainingSet,
    SyntheticValidationSet,
    TrainingData,
    build_training_set,
    build_validation_set,
)
from restormer.data.augment import crop, dihedral, draw_window
from restormer.io import read_image, to_float, write_image
from restormer.tasks import TASKS

from . import fake_degradations as fake
from .train_fixtures import OPTIONS, make_photos

PATCH = 24


@pytest.fixture(params=fake.BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The fake degradations, then the real package (skipped until it lands)."""
    return fake.use_backend(request.param, monkeypatch)


@pytest.fixture
def fake_backend(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return fake.use_backend("fake", monkeypatch)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 56 x 64 RGB photos and one 12 x 14 photo (smaller than a padded window)."""
    folder = make_photos(tmp_path_factory.mktemp("synthetic") / "photos", 3)
    small = np.random.default_rng(9).integers(0, 256, (12, 14, 3), dtype=np.uint8)
    write_image(folder / "tiny.png", small)
    return folder


def section(photos: Path, task: str = "deraining", **extra: Any) -> dict[str, Any]:
    """A ``datasets.train`` / ``datasets.val`` dict of the new type."""
    return {
        "name": "Synthetic",
        "type": "Dataset_SyntheticDegradation",
        "dataroot_gt": str(photos),
        "degradation": task,
        "geometric_augs": True,
        "gt_size": 32,
        "io_backend": {"type": "disk"},
        "use_shuffle": True,
        "num_worker_per_gpu": 2,
        "batch_size_per_gpu": 2,
        **extra,
    }


def hwc(chw: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(chw.transpose(1, 2, 0))


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("phase", "change", "message"),
    [
        ("train", {"degradation": None}, "datasets.train.degradation: required (one of deraining"),
        ("train", {"degradation": "rain"}, "datasets.train.degradation: unknown task 'rain'"),
        ("train", {"degradation": 3}, "datasets.train.degradation: unknown task 3"),
        ("train", {"seed": 1}, "datasets.train.seed: only for validation sets"),
        ("val", {"seed": -1}, "datasets.val.seed: must be at least 0"),
        ("val", {"seed": "one"}, "datasets.val.seed: expected a whole number"),
        ("train", {"clean_fraction": 1}, "datasets.train.clean_fraction: expected a number in"),
        ("train", {"clean_fraction": -0.1}, "datasets.train.clean_fraction: expected a number"),
        ("train", {"clean_fraction": "some"}, "datasets.train.clean_fraction: expected a number"),
        ("val", {"clean_fraction": 0.1}, "datasets.val.clean_fraction: only for training sets"),
        ("val", {"sampler_options": {"x": 1}}, "datasets.val.sampler_options: only for training"),
        ("train", {"sampler_options": [1]}, "datasets.train.sampler_options: expected a mapping"),
        (
            "train",
            {"sampler_options": {"x": 1}},
            "datasets.train.sampler_options: deraining has no",
        ),
        ("train", {"in_ch": 1}, "datasets.train.in_ch: unknown option"),
        ("train", {"dataroot_lq": "x"}, "datasets.train.dataroot_lq: unknown option"),
        ("train", {"sigma_range": [0, 50]}, "datasets.train.sigma_range: unknown option"),
        ("train", {"dataroot_gt": None}, "datasets.train.dataroot_gt: required"),
        ("train", {"geometric_augs": "yes"}, "datasets.train.geometric_augs: expected true"),
        ("train", {"gt_size": 0}, "datasets.train.gt_size: must be at least 1"),
        ("train", {"dataroot_gt": "/no/such/folder"}, "datasets.train.dataroot_gt: no such folder"),
    ],
)
def test_option_errors_name_the_key(
    tmp_path: Path,
    photos: Path,
    fake_backend: ModuleType,
    phase: str,
    change: dict[str, Any],
    message: str,
) -> None:
    opt = {k: v for k, v in {**section(photos), **change}.items() if v is not None}
    build = build_training_set if phase == "train" else build_validation_set
    with pytest.raises(DatasetOptionError) as caught:
        build(opt, key_prefix=f"datasets.{phase}", cache_dir=tmp_path)
    text = str(caught.value)
    assert text.startswith(message) and "\n" not in text
    if "unknown task" in message or "required (one of" in message:
        assert all(task in text for task in TASKS)  # the message lists the seven tasks


def test_missing_degradations_package_is_one_line(
    tmp_path: Path, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    import restormer

    monkeypatch.setitem(sys.modules, "restormer.degradations", None)  # import fails
    monkeypatch.delattr(restormer, "degradations", raising=False)
    with pytest.raises(DatasetOptionError, match=r"^datasets.train.degradation: synthetic"):
        build_training_set(section(photos), cache_dir=tmp_path)


def test_seed_default_and_value(tmp_path: Path, photos: Path, fake_backend: ModuleType) -> None:
    assert build_validation_set(section(photos), cache_dir=tmp_path).options.seed == 0
    val = build_validation_set(section(photos, seed=7), cache_dir=tmp_path)
    assert val.options.seed == 7 and isinstance(val, SyntheticValidationSet)


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("task", list(TASKS))
def test_shapes_and_channels_for_every_task(
    tmp_path: Path, photos: Path, backend: ModuleType, task: str
) -> None:
    train = build_training_set(section(photos, task), cache_dir=tmp_path)
    val = build_validation_set(section(photos, task), cache_dir=tmp_path)
    assert isinstance(train, SyntheticTrainingSet)
    channels = 1 if task == "gaussian-gray-denoising" else 3
    inputs = int(backend.input_channels(task))
    assert inputs == {"dual-pixel-defocus-deblurring": 6}.get(task, channels)
    assert (train.in_channels, train.out_channels) == (inputs, channels)
    assert (val.in_channels, val.out_channels) == (inputs, channels)
    assert train.margin == backend.context(task)
    gaussian = task.startswith("gaussian-")
    for index in range(len(train)):  # includes the 12 x 14 photo, mirrored up to the window
        x, y = train.sample(index, np.random.default_rng(index), PATCH)
        assert x.shape == (inputs, PATCH, PATCH) and y.shape == (channels, PATCH, PATCH)
        assert x.dtype == y.dtype == np.float32
        assert x.flags.c_contiguous and y.flags.c_contiguous
        assert y.min() >= 0 and y.max() <= 1 and np.isfinite(x).all()
        if not gaussian:
            assert x.min() >= 0 and x.max() <= 1
    name, x, y = val[0]
    assert name == "img_00"
    assert x.shape == (inputs, 56, 64) and y.shape == (channels, 56, 64)
    assert x.dtype == y.dtype == np.float32


def test_gray_task_converts_colour_files_like_the_gaussian_gray_path(
    tmp_path: Path, photos: Path, fake_backend: ModuleType
) -> None:
    val = build_validation_set(section(photos, "gaussian-gray-denoising"), cache_dir=tmp_path)
    rgb = read_image(photos / "img_01.png").pixels
    expected = to_float(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    name, _, target = val[1]
    assert name == "img_01" and np.array_equal(target[0], expected)
    gaussian_gray = build_validation_set(
        {
            "type": "Dataset_GaussianDenoising",
            "dataroot_gt": str(photos),
            "in_ch": 1,
            "sigma_test": 15,
        },
        cache_dir=tmp_path,
    )
    assert np.array_equal(gaussian_gray[1][2], target)


# --------------------------------------------------------------------------- margins


@pytest.mark.parametrize("task", ["deraining", "dual-pixel-defocus-deblurring"])
@pytest.mark.parametrize("augment", [False, True])
def test_patch_equals_the_whole_degraded_image_there(
    tmp_path: Path, photos: Path, fake_backend: ModuleType, task: str, augment: bool
) -> None:
    """The trimmed margin is exactly the context: the patch is the whole image's degradation.

    The fake blur reads up to ``context`` pixels and is exact, so degrading a crop that is
    ``context`` larger on each side and trimming it gives the very pixels that degrading the
    whole photo gives at that place; a margin too small would differ near the patch border.
    """
    train = build_training_set(section(photos, task, geometric_augs=augment), cache_dir=tmp_path)
    margin = fake.CONTEXT
    for seed in range(6):
        index = seed % 3  # the 56 x 64 photos: the window always lies inside them
        x, y = train.sample(index, np.random.default_rng(seed), PATCH)
        replay = np.random.default_rng(seed)
        window = draw_window(replay, 56, 64, PATCH + 2 * margin, 32 + 2 * margin, augment)
        params = fake.sample(task, replay)
        clean = to_float(read_image(photos / f"img_{index:02d}.png").pixels)
        whole = fake.apply(task, clean, replay, params)
        top, left = window.top + margin, window.left + margin
        expected_x = dihedral(whole[top : top + PATCH, left : left + PATCH], window.mode)
        expected_y = dihedral(clean[top : top + PATCH, left : left + PATCH], window.mode)
        assert np.array_equal(hwc(x), expected_x)
        assert np.array_equal(hwc(y), expected_y)


def test_patch_is_the_centre_of_a_degraded_larger_crop(
    tmp_path: Path, photos: Path, backend: ModuleType
) -> None:
    """The documented recipe, replayed step by step with the same random stream."""
    for task in ("deraining", "dual-pixel-defocus-deblurring", "gaussian-color-denoising"):
        train = build_training_set(section(photos, task), cache_dir=tmp_path)
        margin = int(backend.context(task))
        for index in (0, 3):  # a photo larger than the window, and one smaller
            x, y = train.sample(index, np.random.default_rng(40 + index), PATCH)
            replay = np.random.default_rng(40 + index)
            pixels = read_image(photos / f"{train.names[index]}.png").pixels
            h, w = pixels.shape[:2]
            window = draw_window(replay, h, w, PATCH + 2 * margin, 32 + 2 * margin, True)
            larger = to_float(
                np.ascontiguousarray(
                    dihedral(crop(pixels, window.top, window.left, window.size), window.mode)
                )
            )
            degraded = backend.degrade(task, larger, replay)
            inner = slice(margin, margin + PATCH)
            assert np.array_equal(hwc(x), degraded[inner, inner])
            assert np.array_equal(hwc(y), larger[inner, inner])


def test_small_photo_is_mirrored_at_the_bottom_right(
    tmp_path: Path, photos: Path, fake_backend: ModuleType
) -> None:
    """Rows/columns past the edge repeat the image backwards (``cv2.BORDER_REFLECT``)."""
    train = build_training_set(section(photos, geometric_augs=False), cache_dir=tmp_path)
    margin = fake.CONTEXT
    for seed in range(4):
        _, target = train.sample(3, np.random.default_rng(seed), PATCH)  # the 12 x 14 photo
        window = draw_window(
            np.random.default_rng(seed), 12, 14, PATCH + 2 * margin, 32 + 2 * margin, False
        )
        small = to_float(read_image(photos / "tiny.png").pixels)
        mirrored = np.pad(small, ((0, 60), (0, 60), (0, 0)), mode="symmetric")
        top, left = window.top + margin, window.left + margin
        assert np.array_equal(hwc(target), mirrored[top : top + PATCH, left : left + PATCH])


# --------------------------------------------------------------------------- determinism


def test_training_samples_are_a_function_of_the_random_stream(
    tmp_path: Path, photos: Path, backend: ModuleType
) -> None:
    for task in ("real-denoising", "gaussian-gray-denoising"):
        opt = section(photos, task, mini_batch_sizes=[2], iters=[3], gt_sizes=[PATCH])
        train = build_training_set(opt, cache_dir=tmp_path)
        again = build_training_set(opt, cache_dir=tmp_path)
        a = train.sample(1, np.random.default_rng(5), PATCH)
        b = again.sample(1, np.random.default_rng(5), PATCH)
        c = train.sample(1, np.random.default_rng(6), PATCH)
        assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
        assert not np.array_equal(a[0], c[0])
        data = TrainingData(train, StageSchedule.from_options(opt), seed=3)
        first, second = data.batch(2), data.batch(2)
        assert first[0].shape == (2, train.in_channels, PATCH, PATCH)
        assert all(p.equal(q) for p, q in zip(first, second, strict=True))


@pytest.mark.parametrize("task", ["deraining", "dual-pixel-defocus-deblurring"])
def test_clean_fraction_leaves_that_share_of_samples_undegraded(
    tmp_path: Path, photos: Path, backend: ModuleType, task: str
) -> None:
    assert build_training_set(section(photos, task), cache_dir=tmp_path).options.clean_fraction == 0
    train = build_training_set(section(photos, task, clean_fraction=0.25), cache_dir=tmp_path)
    rng = np.random.default_rng(2)
    undegraded = 0
    for _ in range(200):
        degraded, clean = train.sample(0, rng, PATCH)
        views = np.split(degraded, degraded.shape[0] // clean.shape[0])
        undegraded += all(np.array_equal(view, clean) for view in views)
    assert 30 <= undegraded <= 70  # 50 expected


def test_sampler_options_reshape_the_training_draw(tmp_path: Path, photos: Path) -> None:
    from restormer import degradations

    task, options = "motion-deblurring", {"size_distribution": "log-uniform"}
    train = build_training_set(section(photos, task, sampler_options=options), cache_dir=tmp_path)
    assert train.options.sampler_options == options
    seen: list[dict[str, object]] = []
    real = degradations.degrade

    def spy(task: str, clean: np.ndarray, rng: np.random.Generator, **kw: object) -> np.ndarray:
        seen.append(kw)
        return real(task, clean, rng, **kw)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(degradations, "degrade", spy)
        train.sample(0, np.random.default_rng(0), PATCH)
    assert seen == [options]


def test_validation_is_degraded_once_with_its_own_seed(
    tmp_path: Path, photos: Path, backend: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = "motion-deblurring"
    calls: list[tuple[int, ...]] = []
    degrade = backend.degrade

    def counted(task: str, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        calls.append(clean.shape)
        return degrade(task, clean, rng)

    val = build_validation_set(section(photos, task, seed=4), cache_dir=tmp_path)
    rerun = build_validation_set(section(photos, task, seed=4), cache_dir=tmp_path)
    other = build_validation_set(section(photos, task, seed=5), cache_dir=tmp_path)
    monkeypatch.setattr(backend, "degrade", counted)
    first = list(val)
    assert [name for name, _, _ in first] == ["img_00", "img_01", "img_02", "tiny"]
    second = list(val)
    assert len(calls) == 4  # each image degraded once, then kept
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(first, second, strict=True))
    monkeypatch.setattr(backend, "degrade", degrade)
    for index, (name, inputs, target) in enumerate(first):
        clean = to_float(read_image(photos / f"{name}.png").pixels)
        expected = backend.degrade(task, clean, np.random.default_rng([4, index]))
        assert np.array_equal(hwc(inputs), expected) and np.array_equal(hwc(target), clean)
        assert np.array_equal(rerun[index][1], inputs)  # another run: the same inputs
    first[0][1][:] = 0  # what a caller does to its copy does not reach the kept input
    assert not np.array_equal(val[0][1], first[0][1])
    assert not np.array_equal(other[0][1], first[0][1])
    assert np.array_equal(val[-1][1], first[-1][1])


# --------------------------------------------------------------------------- training


def _option_file(tmp: Path, task: str, photos: Path, **network: Any) -> Path:
    opt = yaml.safe_load(OPTIONS.format(name="synthetic", photos=photos, val_photos=photos))
    common = {"type": "Dataset_SyntheticDegradation", "dataroot_gt": str(photos)}
    opt["datasets"]["train"] = {
        **common,
        "name": "TrainSet",
        "degradation": task,
        "geometric_augs": True,
        "gt_size": 48,
        "gt_sizes": [32, 48],
        "mini_batch_sizes": [2, 1],
        "iters": [2, 2],
        "batch_size_per_gpu": 2,
        "use_shuffle": True,
    }
    opt["datasets"]["val"] = {**common, "name": "ValSet", "degradation": task, "seed": 1}
    opt["train"]["total_iter"] = 4
    opt["train"]["scheduler"]["periods"] = [2, 2]
    opt["val"]["val_freq"] = 2
    opt["logger"]["use_tb_logger"] = False
    opt["network_g"].update(network)
    path = tmp / "synthetic.yml"
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return path


@pytest.fixture
def one_backend(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The real package once it has landed, the fake until then."""
    return fake.use_backend("real" if fake.REAL_PACKAGE else "fake", monkeypatch)


def test_restormer_train_end_to_end(
    tmp_path: Path, one_backend: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    photos = make_photos(tmp_path / "clean", 3, size=(40, 48))
    options = _option_file(tmp_path, "deraining", photos)
    result = CliRunner().invoke(
        app,
        ["train", str(options), "--no-progress", "--experiments-root", str(tmp_path / "exp")],
    )
    assert result.exit_code == 0, result.output
    experiment = tmp_path / "exp" / "synthetic"
    assert (experiment / "models" / "net_g_4.pth").exists()
    log = (experiment / "train_synthetic.log").read_text()
    assert log.count("validation: psnr") == 2  # iterations 2 and 4


def test_network_channels_must_match_the_task(
    tmp_path: Path, fake_backend: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    photos = make_photos(tmp_path / "clean", 1, size=(40, 48))
    options = _option_file(tmp_path, "dual-pixel-defocus-deblurring", photos)
    result = CliRunner().invoke(
        app, ["train", str(options), "--experiments-root", str(tmp_path / "exp")]
    )
    assert result.exit_code == 2
    assert "network_g.inp_channels: 3, but datasets.train gives 6-channel inputs" in result.output
    assert result.output.strip().count("\n") == 0
    assert not (tmp_path / "exp").exists()
