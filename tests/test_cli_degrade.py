"""``restormer degrade``: clean photos -> a paired set that ``restormer evaluate`` reads.

Against a tiny fake of :mod:`restormer.degradations` (``fake_degradations``); tests taking
``backend`` also run against the real package once it exists.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from restormer.cli import app
from restormer.io import from_float, read_image, to_float, write_image

from . import fake_degradations as fake
from .train_fixtures import make_photos

runner = CliRunner()
NAMES = ["img_00", "img_01", "img_02"]
PAIRED = ["deraining", "motion-deblurring", "defocus-deblurring", "real-denoising"]


@pytest.fixture(params=fake.BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The fake degradations, then the real package (skipped until it lands)."""
    return fake.use_backend(request.param, monkeypatch)


@pytest.fixture
def fake_backend(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return fake.use_backend("fake", monkeypatch)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 40 x 48 RGB photos."""
    return make_photos(tmp_path_factory.mktemp("clean") / "photos", 3, size=(40, 48))


def _run(*args: object) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def _degrade(task: str, out: Path, *inputs: object, seed: int = 0) -> tuple[int, str]:
    return _run("degrade", "--task", task, *inputs, "-o", out, "--seed", seed)


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative name -> content)."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- layouts


EXPECTED = {  # task -> {folder: (dtype, channels)}
    **{task: {"input": (np.uint8, 3), "target": (np.uint8, 3)} for task in PAIRED},
    "dual-pixel-defocus-deblurring": {
        folder: (np.uint16, 3) for folder in ("inputL", "inputR", "inputC", "target")
    },
    "gaussian-color-denoising": {"input": (np.uint16, 3), "target": (np.uint8, 3)},
    "gaussian-gray-denoising": {"input": (np.uint16, 1), "target": (np.uint8, 1)},
}


@pytest.mark.parametrize("task", list(EXPECTED))
def test_layout_of_every_task(tmp_path: Path, photos: Path, backend: ModuleType, task: str) -> None:
    out = tmp_path / "set"
    code, text = _degrade(task, out, photos)
    assert code == 0, text
    assert "degraded 3 of 3 images" in text
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == sorted(EXPECTED[task])
    for folder, (dtype, channels) in EXPECTED[task].items():
        assert sorted(p.stem for p in (out / folder).iterdir()) == NAMES
        for name in NAMES:
            pixels = read_image(out / folder / f"{name}.png").pixels
            assert pixels.dtype == dtype and pixels.shape == (40, 48, channels)
    clean = read_image(photos / "img_01.png").pixels
    target = read_image(out / "target" / "img_01.png").pixels
    if task == "gaussian-gray-denoising":
        assert np.array_equal(target[..., 0], cv2.cvtColor(clean, cv2.COLOR_RGB2GRAY))
    elif task == "dual-pixel-defocus-deblurring":
        assert np.array_equal(target, clean.astype(np.uint16) * 257)
    else:
        assert np.array_equal(target, clean)
    metadata = json.loads((out / "degradations.json").read_text())
    assert metadata["task"] == task and metadata["seed"] == 0
    assert sorted(metadata["images"]) == [f"{name}.png" for name in NAMES]
    for index, name in enumerate(NAMES):
        entry = metadata["images"][f"{name}.png"]
        assert entry["index"] == index and entry["seed"] == 0 and entry["task"] == task
        assert entry["source"] == str(photos / f"{name}.png")
        params = backend.sample(task, np.random.default_rng([0, index]))
        assert entry["params"] == json.loads(json.dumps(_plain(dataclasses.asdict(params))))


def _plain(value: object) -> object:
    """Numpy values as JSON has them (what the command records)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def test_inputs_are_the_degradation_with_the_per_image_stream(
    tmp_path: Path, photos: Path, backend: ModuleType
) -> None:
    """Image i's input is ``apply(sample(rng), rng)`` with ``rng = default_rng([seed, i])``."""
    for task in ("motion-deblurring", "dual-pixel-defocus-deblurring", "gaussian-color-denoising"):
        out = tmp_path / task
        assert _degrade(task, out, photos, seed=11)[0] == 0
        rng = np.random.default_rng([11, 2])
        target = read_image(out / "target" / "img_02.png").pixels
        expected = backend.degrade(task, to_float(target), rng)
        if task == "dual-pixel-defocus-deblurring":
            left = read_image(out / "inputL" / "img_02.png").pixels
            right = read_image(out / "inputR" / "img_02.png").pixels
            centre = read_image(out / "inputC" / "img_02.png").pixels
            assert np.array_equal(left, from_float(expected[..., :3], 16))
            assert np.array_equal(right, from_float(expected[..., 3:], 16))
            if hasattr(backend, "combined_view"):  # the package's mean, in linear light
                mean = from_float(backend.combined_view(expected), 16)
            else:  # the mean of the stored levels
                mean = np.rint((left.astype(np.float64) + right) / 2).astype(np.uint16)
            assert np.array_equal(centre, mean)
            low = np.minimum(left, right).astype(np.int64) - 1
            high = np.maximum(left, right).astype(np.int64) + 1
            assert ((low <= centre) & (centre <= high)).all()  # between the views
        else:  # 8 bits; Gaussian noise clipped to [0, 1] in 16 bits
            stored = read_image(out / "input" / "img_02.png").pixels
            depth = 16 if task.startswith("gaussian-") else 8
            assert np.array_equal(stored, from_float(expected, depth))


# --------------------------------------------------------------------------- round trips


def test_paired_round_trip_through_evaluate(
    tmp_path: Path, photos: Path, models: dict[str, Path], backend: ModuleType
) -> None:
    out = tmp_path / "Rain"
    assert _degrade("deraining", out, photos)[0] == 0
    code, text = _run(
        "evaluate", "-t", "deraining", "-w", models["rgb"], "-d", out, "-o", tmp_path / "r"
    )
    assert code == 0, text
    assert [row["image"] for row in _csv(tmp_path / "r" / "results.csv")] == NAMES


def test_dual_pixel_round_trip_through_evaluate(
    tmp_path: Path, photos: Path, models: dict[str, Path], backend: ModuleType
) -> None:
    out = tmp_path / "DPDD"
    assert _degrade("dual-pixel-defocus-deblurring", out, photos)[0] == 0
    task = "dual-pixel-defocus-deblurring"
    code, text = _run("evaluate", "-t", task, "-w", models["dual"], "-d", out, "-o", tmp_path / "d")
    assert code == 0, text
    rows = _csv(tmp_path / "d" / "results.csv")
    assert [row["image"] for row in rows] == NAMES and "mae" in rows[0]
    code, text = _run(  # the single-image task reads inputC/ of the same set
        "evaluate", "-t", "defocus-deblurring", "-w", models["rgb"], "-d", out, "-o", tmp_path / "s"
    )
    assert code == 0, text


def test_gaussian_gray_round_trip_through_evaluate(
    tmp_path: Path, photos: Path, models: dict[str, Path], fake_backend: ModuleType
) -> None:
    out = tmp_path / "Set12"
    assert _degrade("gaussian-gray-denoising", out, photos)[0] == 0
    code, text = _run(
        "evaluate", "-t", "gaussian-gray-denoising", "-w", models["gray"], "-d", out,
        "--sigma", "25", "-o", tmp_path / "g",
    )  # fmt: skip
    assert code == 0, text
    rows = _csv(tmp_path / "g" / "results.csv")
    assert [row["image"] for row in rows] == NAMES and {row["sigma"] for row in rows} == {"25"}


# --------------------------------------------------------------------------- reproducibility


def test_rerun_reproduces_the_set_whatever_the_argument_order(
    tmp_path: Path, photos: Path, backend: ModuleType
) -> None:
    files = [photos / f"{name}.png" for name in NAMES]
    assert _degrade("real-denoising", tmp_path / "a", photos, seed=3)[0] == 0
    assert _degrade("real-denoising", tmp_path / "b", *reversed(files), seed=3)[0] == 0
    assert _degrade("real-denoising", tmp_path / "c", photos, seed=4)[0] == 0
    a, b, c = (_files(tmp_path / name) for name in "abc")
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a if k != "degradations.json")
    first, second = (json.loads(x["degradations.json"]) for x in (a, b))
    assert first == second  # same sources (as given), indices, parameters
    assert a["target/img_00.png"] == c["target/img_00.png"]
    assert a["input/img_00.png"] != c["input/img_00.png"]  # another seed, another degradation


# --------------------------------------------------------------------------- refusals


def test_existing_files_are_never_replaced_without_overwrite(
    tmp_path: Path, photos: Path, fake_backend: ModuleType
) -> None:
    out = tmp_path / "set"
    assert _degrade("deraining", out, photos)[0] == 0
    before = _files(out)
    code, text = _degrade("deraining", out, photos, seed=1)
    assert code == 2 and "already exists" in text and "--overwrite" in text
    assert text.strip().count("\n") == 0
    assert _files(out) == before
    (out / "degradations.json").unlink()  # a single existing image is enough to refuse
    code, text = _degrade("deraining", out, photos / "img_02.png", seed=1)
    assert code == 2 and "img_02.png: already exists" in text
    assert not (out / "degradations.json").exists()
    code, text = _run("degrade", "-t", "deraining", photos, "-o", out, "--seed", 1, "--overwrite")
    assert code == 0, text
    after = _files(out)
    assert after["input/img_00.png"] != before["input/img_00.png"]
    assert json.loads(after["degradations.json"])["seed"] == 1


def test_bad_inputs_are_reported_and_the_rest_is_done(
    tmp_path: Path, photos: Path, fake_backend: ModuleType
) -> None:
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in NAMES:
        (mixed / f"{name}.png").write_bytes((photos / f"{name}.png").read_bytes())
    (mixed / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (mixed / "empty.jpg").write_bytes(b"")
    out = tmp_path / "set"
    code, text = _degrade("deraining", out, mixed, tmp_path / "missing.png")
    assert code == 1
    lines = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(lines) == 3
    assert any("broken.png" in line and "corrupt" in line for line in lines)
    assert any("empty.jpg" in line and "empty file" in line for line in lines)
    assert any("missing.png" in line and "no such file" in line for line in lines)
    assert "degraded 3 of 6 images" in text
    assert sorted(p.name for p in (out / "input").iterdir()) == [f"{n}.png" for n in NAMES]
    assert sorted(p.name for p in (out / "target").iterdir()) == [f"{n}.png" for n in NAMES]
    images = json.loads((out / "degradations.json").read_text())["images"]
    assert sorted(images) == [f"{n}.png" for n in NAMES]
    # Indices follow the sorted files, failed ones included: fixing a file changes nothing else.
    assert [images[f"{n}.png"]["index"] for n in NAMES] == [2, 3, 4]


def test_no_empty_folders_are_left_when_every_photo_fails(
    tmp_path: Path, fake_backend: ModuleType
) -> None:
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    code, text = _degrade("deraining", tmp_path / "new" / "set", tmp_path / "broken.png")
    assert code == 1 and "corrupt" in text and "degraded 0 of 1 image (nothing written)" in text
    assert not (tmp_path / "new").exists()  # the parents it made go too
    (tmp_path / "mine").mkdir()  # a folder the user made stays; the run's subfolders go
    code, _ = _degrade("deraining", tmp_path / "mine", tmp_path / "broken.png")
    assert code == 1 and list((tmp_path / "mine").iterdir()) == []


def test_gray_and_sixteen_bit_photos_are_converted(
    tmp_path: Path, fake_backend: ModuleType
) -> None:
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (20, 24, 1), dtype=np.uint8)
    deep = rng.integers(0, 65536, (20, 24, 3), dtype=np.uint16)
    write_image(tmp_path / "gray.png", gray)
    write_image(tmp_path / "deep.png", deep)
    out = tmp_path / "set"
    code, text = _degrade("deraining", out, tmp_path / "gray.png", tmp_path / "deep.png")
    assert code == 0, text
    assert np.array_equal(read_image(out / "target" / "gray.png").pixels, np.repeat(gray, 3, 2))
    eight = ((deep.astype(np.uint32) + 128) // 257).astype(np.uint8)
    assert np.array_equal(read_image(out / "target" / "deep.png").pixels, eight)


def test_same_output_name_twice_is_reported(
    tmp_path: Path, photos: Path, fake_backend: ModuleType
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "img_00.png").write_bytes((photos / "img_01.png").read_bytes())
    code, text = _degrade("deraining", tmp_path / "set", photos, other / "img_00.png")
    assert code == 1 and "same output name" in text and "degraded 3 of 4 images" in text


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--task", "rain"], "unknown task 'rain'; choose one of: deraining"),
        (["--task", "deraining", "--seed", "-1"], "Invalid value for '--seed'"),
    ],
)
def test_bad_options(
    tmp_path: Path, photos: Path, fake_backend: ModuleType, args: list[str], expected: str
) -> None:
    code, text = _run("degrade", *args, photos, "-o", tmp_path / "set")
    assert code == 2 and expected in text
    assert not (tmp_path / "set").exists()


def test_empty_folder(tmp_path: Path, fake_backend: ModuleType) -> None:
    (tmp_path / "empty").mkdir()
    code, text = _degrade("deraining", tmp_path / "set", tmp_path / "empty")
    assert code == 1 and "no images found" in text
    assert not (tmp_path / "set").exists()
