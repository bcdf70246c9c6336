"""``restormer evaluate`` end to end on tiny generated test sets, and every bad input."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from restormer import evaluate as E
from restormer.cli import app
from restormer.inference import restore
from restormer.io import from_float, read_image, write_image
from restormer.metrics import score
from restormer.weights import load_model

from .conftest import tiny_model

runner = CliRunner()


def _image(
    h: int = 20, w: int = 27, c: int = 3, dtype: type = np.uint8, seed: int = 0
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 0.5 + 0.3 * np.sin(x / 4.0 + seed)[..., None] * np.cos(y / 3.0)[..., None]
    img = np.clip(base + 0.05 * rng.standard_normal((h, w, c)), 0, 1)
    return np.round(img * np.iinfo(dtype).max).astype(dtype)


def _paired(
    root: Path,
    names: tuple[str, ...] = ("a", "b"),
    inputs: tuple[str, ...] = ("input",),
    **kw: object,
) -> Path:
    """A test set: ``inputs`` folders and target/ with one image per name."""
    for i, name in enumerate(names):
        for folder in (*inputs, "target"):
            (root / folder).mkdir(parents=True, exist_ok=True)
            write_image(root / folder / f"{name}.png", _image(seed=i + len(folder), **kw))
    return root


def _run(*args: object) -> tuple[int, str]:
    result = runner.invoke(app, ["evaluate", *(str(a) for a in args)])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- layouts


def test_paired_layout_scores_csv_json_and_images(tmp_path: Path, models: dict[str, Path]) -> None:
    data = _paired(tmp_path / "Rain100L")
    saved = tmp_path / "restored"
    code, text = _run(
        "--task", "deraining", "--dataset", data, "-w", models["rgb"], "--save-images", saved
    )
    assert code == 0, text
    assert "per image" in text and "mean" in text
    model = load_model(models["rgb"])
    rows = _csv(saved / "results.csv")
    assert [r["image"] for r in rows] == ["a", "b"]
    document = json.loads((saved / "results.json").read_text())
    assert document["task"] == "deraining" and document["metrics"] == ["psnr", "ssim"]
    for row, entry in zip(rows, document["images"], strict=True):
        name = row["image"]
        inputs = read_image(data / "input" / f"{name}.png").pixels
        target = read_image(data / "target" / f"{name}.png").pixels
        restored = restore(inputs, model)
        expected = score("deraining", restored, target)
        assert float(row["psnr"]) == expected["psnr"] and float(row["ssim"]) == expected["ssim"]
        assert entry == {"image": name, **expected}
        assert np.array_equal(read_image(saved / f"{name}.png").pixels, from_float(restored, 8))
    (summary,) = document["summary"]
    assert summary["group"] == "all" and summary["images"] == 2
    assert summary["psnr"] == pytest.approx(np.mean([float(r["psnr"]) for r in rows]), abs=1e-12)


def test_default_output_folder_and_overwrite(
    tmp_path: Path, models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _paired(tmp_path / "GoPro", names=("x",))
    monkeypatch.chdir(tmp_path)
    args = ("--task", "motion-deblurring", "--dataset", data, "-w", models["rgb"])
    assert _run(*args)[0] == 0
    results = tmp_path / "evaluation" / "motion-deblurring"
    assert sorted(p.name for p in results.iterdir()) == ["results.csv", "results.json"]
    before = (results / "results.json").read_bytes()
    code, text = _run(*args)
    assert code != 0 and "already exists" in text and "--overwrite" in text
    assert (results / "results.json").read_bytes() == before
    code, text = _run(*args, "--overwrite")
    assert code == 0, text
    code, text = _run(*args, "--output", tmp_path / "elsewhere", "--limit", 1)
    assert code == 0 and (tmp_path / "elsewhere" / "results.csv").exists()


def test_saved_images_are_never_silently_replaced(tmp_path: Path, models: dict[str, Path]) -> None:
    data = _paired(tmp_path / "set", names=("a",))
    saved = tmp_path / "out"
    saved.mkdir()
    (saved / "a.png").write_bytes(b"keep")
    code, text = _run(
        "--task",
        "deraining",
        "--dataset",
        data,
        "-w",
        models["rgb"],
        "--save-images",
        saved,
        "-o",
        tmp_path / "res",
    )
    assert code != 0 and "a.png" in text and "already exists" in text
    assert (saved / "a.png").read_bytes() == b"keep"
    assert not (tmp_path / "res").exists()


def test_dpdd_dual_pixel_and_single_image(tmp_path: Path, models: dict[str, Path]) -> None:
    data = _paired(
        tmp_path / "DPDD",
        names=("s1", "s2"),
        inputs=("inputC", "inputL", "inputR"),
        dtype=np.uint16,
    )
    saved = tmp_path / "dual"
    code, text = _run(
        "--task",
        "dual-pixel-defocus-deblurring",
        "--dataset",
        data,
        "-w",
        models["dual"],
        "--save-images",
        saved,
    )
    assert code == 0, text
    model = load_model(models["dual"])
    rows = _csv(saved / "results.csv")
    assert [r["image"] for r in rows] == ["s1", "s2"] and set(rows[0]) == {
        "image",
        "psnr",
        "ssim",
        "mae",
    }
    left = read_image(data / "inputL" / "s1.png").pixels
    right = read_image(data / "inputR" / "s1.png").pixels
    target = read_image(data / "target" / "s1.png").pixels
    restored = restore(np.concatenate([left, right], axis=2), model)
    expected = score("dual-pixel-defocus-deblurring", restored, target)
    assert {k: float(rows[0][k]) for k in expected} == expected
    stored = cv2.imread(str(saved / "s1.png"), cv2.IMREAD_UNCHANGED)
    assert stored.dtype == np.uint16 and np.array_equal(stored[..., ::-1], from_float(restored, 16))

    code, text = _run(
        "--task",
        "defocus-deblurring",
        "--dataset",
        data,
        "-w",
        models["rgb"],
        "-o",
        tmp_path / "single",
    )
    assert code == 0, text
    single = _csv(tmp_path / "single" / "results.csv")
    inputs = read_image(data / "inputC" / "s2.png").pixels
    target = read_image(data / "target" / "s2.png").pixels
    expected = score("defocus-deblurring", restore(inputs, load_model(models["rgb"])), target)
    assert {k: float(single[1][k]) for k in expected} == expected


def test_gaussian_noise_is_the_official_noise() -> None:
    clean = _image(13, 17)
    for sigma in (15, 25, 50):
        np.random.seed(0)  # the official script, verbatim in effect
        official = np.float32(clean) / 255.0
        official += np.random.normal(0, sigma / 255.0, official.shape)
        ours = E.add_gaussian_noise(clean, sigma)
        assert ours.dtype == np.float32 and np.array_equal(ours, official)
    np.random.seed(123)
    state = np.random.get_state()[1].copy()
    E.add_gaussian_noise(clean, 25)
    assert np.array_equal(np.random.get_state()[1], state)  # the global generator is untouched


def test_gaussian_color_all_sigmas(tmp_path: Path, models: dict[str, Path]) -> None:
    clean = tmp_path / "CBSD68"
    clean.mkdir()
    for i in range(2):
        write_image(clean / f"{i}.png", _image(seed=i))
    write_image(clean / "2.png", _image(c=1, seed=2))  # gray file: replicated like cv2.imread
    saved = tmp_path / "saved"
    code, text = _run(
        "--task",
        "gaussian-color-denoising",
        "--dataset",
        clean,
        "-w",
        models["rgb"],
        "--save-images",
        saved,
        "--limit",
        2,
    )
    assert code == 0, text
    rows = _csv(saved / "results.csv")
    assert [(r["image"], r["sigma"]) for r in rows] == [
        (n, s) for s in ("15", "25", "50") for n in ("0", "1")
    ]
    summary = json.loads((saved / "results.json").read_text())["summary"]
    assert [g["group"] for g in summary] == ["sigma=15", "sigma=25", "sigma=50"]
    target = read_image(clean / "1.png").pixels
    restored = restore(E.add_gaussian_noise(target, 25), load_model(models["rgb"]))
    assert float(rows[3]["psnr"]) == score("gaussian-color-denoising", restored, target)["psnr"]
    assert (saved / "sigma25" / "1.png").exists() and (saved / "sigma50" / "0.png").exists()
    assert "sigma=50" in text
    # a gray clean image goes through the colour model as three equal channels
    samples = E.discover_samples("gaussian-color-denoising", clean, sigmas=[15])
    _noisy, target = samples[2].load()
    assert target.shape[2] == 3 and (target == target[..., :1]).all()


def test_gaussian_gray_reads_gray_like_opencv(tmp_path: Path, models: dict[str, Path]) -> None:
    data = tmp_path / "Set12"
    (data / "target").mkdir(parents=True)
    colour = _image(seed=7)
    write_image(data / "target" / "c.png", colour)
    write_image(data / "target" / "g.png", _image(c=1, seed=8))
    code, text = _run(
        "--task",
        "gaussian-gray-denoising",
        "--dataset",
        data,
        "-w",
        models["gray"],
        "--sigma",
        15,
        "--sigma",
        50,
        "-o",
        tmp_path / "r",
    )
    assert code == 0, text
    assert len(_csv(tmp_path / "r" / "results.csv")) == 4
    _, target = E.discover_samples("gaussian-gray-denoising", data, sigmas=[15])[0].load()
    official = cv2.imread(str(data / "target" / "c.png"), cv2.IMREAD_GRAYSCALE)[..., None]
    assert np.array_equal(target, official)


def _sidd(root: Path, blocks: tuple[int, int] = (2, 3)) -> Path:
    scipy_io = pytest.importorskip("scipy.io")
    root.mkdir()
    rng = np.random.default_rng(0)
    gt = rng.integers(40, 200, (*blocks, 16, 16, 3), dtype=np.uint8)
    noisy = np.clip(gt.astype(int) + rng.integers(-20, 21, gt.shape), 0, 255).astype(np.uint8)
    scipy_io.savemat(root / "ValidationNoisyBlocksSrgb.mat", {"ValidationNoisyBlocksSrgb": noisy})
    scipy_io.savemat(root / "ValidationGtBlocksSrgb.mat", {"ValidationGtBlocksSrgb": gt})
    return root


def test_sidd_mat_files(tmp_path: Path, models: dict[str, Path]) -> None:
    data = _sidd(tmp_path / "SIDD")
    saved = tmp_path / "png"
    code, text = _run(
        "--task", "real-denoising", "--dataset", data, "-w", models["rgb"], "--save-images", saved
    )
    assert code == 0, text
    rows = _csv(saved / "results.csv")
    assert [r["image"] for r in rows] == [
        "0001_01",
        "0001_02",
        "0001_03",
        "0002_01",
        "0002_02",
        "0002_03",
    ]
    import scipy.io

    noisy = scipy.io.loadmat(data / "ValidationNoisyBlocksSrgb.mat")["ValidationNoisyBlocksSrgb"]
    gt = scipy.io.loadmat(data / "ValidationGtBlocksSrgb.mat")["ValidationGtBlocksSrgb"]
    restored = restore(noisy[1, 2], load_model(models["rgb"]))
    assert {k: float(rows[5][k]) for k in ("psnr", "ssim")} == score(
        "real-denoising", restored, gt[1, 2]
    )
    assert read_image(saved / "0002_03.png").pixels.dtype == np.uint8


def test_sidd_without_scipy(
    tmp_path: Path, models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "SIDD"
    data.mkdir()
    (data / "ValidationNoisyBlocksSrgb.mat").write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # import fails as if scipy were missing
    code, text = _run("--task", "real-denoising", "--dataset", data, "-w", models["rgb"])
    assert code != 0 and "restormer[eval]" in text and len(text.strip().splitlines()) == 1


def test_sidd_bad_files(tmp_path: Path, models: dict[str, Path]) -> None:
    data = _sidd(tmp_path / "SIDD")
    (data / "ValidationGtBlocksSrgb.mat").unlink()
    code, text = _run("--task", "real-denoising", "--dataset", data, "-w", models["rgb"])
    assert code != 0 and "ValidationGtBlocksSrgb.mat" in text
    (data / "ValidationGtBlocksSrgb.mat").write_bytes(b"garbage")
    code, text = _run("--task", "real-denoising", "--dataset", data, "-w", models["rgb"])
    assert code != 0 and "ValidationGtBlocksSrgb.mat" in text


# --------------------------------------------------------------------------- errors


def _error(*args: object) -> str:
    code, text = _run(*args)
    assert code != 0, text
    assert text.startswith("error:") and len(text.strip().splitlines()) == 1, text
    return text


def test_unknown_task_and_shipped_model(tmp_path: Path, shipped_dir: Path) -> None:
    data = _paired(tmp_path / "set")
    assert "unknown task 'denoise'" in _error("--task", "denoise", "--dataset", data)
    assert "no shipped model" in _error(
        "--task", "deraining", "--dataset", data, "-o", tmp_path / "r"
    )


def test_layout_errors(tmp_path: Path, models: dict[str, Path]) -> None:
    w = ("-w", models["rgb"], "-o", tmp_path / "r")
    assert "no such folder" in _error("--task", "deraining", "--dataset", tmp_path / "nope", *w)
    (tmp_path / "empty" / "input").mkdir(parents=True)
    assert "missing target/" in _error("--task", "deraining", "--dataset", tmp_path / "empty", *w)
    (tmp_path / "empty" / "target").mkdir()
    assert "no images found" in _error("--task", "deraining", "--dataset", tmp_path / "empty", *w)
    dpdd = _paired(tmp_path / "dpdd", inputs=("inputL",), dtype=np.uint16)
    assert "inputR/" in _error(
        "--task", "dual-pixel-defocus-deblurring", "--dataset", dpdd, "-w", models["dual"]
    )


def test_mismatched_names_are_listed(tmp_path: Path, models: dict[str, Path]) -> None:
    data = _paired(tmp_path / "set", names=("a", "b", "c", "d", "e", "f", "g"))
    for name in "bcdefg":
        (data / "target" / f"{name}.png").rename(data / "target" / f"{name}_gt.png")
    text = _error("--task", "deraining", "--dataset", data, "-w", models["rgb"])
    assert (
        "6 image(s) in input/" in text and "b.png, c.png, d.png, e.png, f.png (and 1 more)" in text
    )


def test_size_mismatch(tmp_path: Path, models: dict[str, Path]) -> None:
    data = _paired(tmp_path / "set", names=("a",))
    write_image(data / "target" / "a.png", _image(21, 27), overwrite=True)
    text = _error(
        "--task", "deraining", "--dataset", data, "-w", models["rgb"], "-o", tmp_path / "r"
    )
    assert "27x20 pixels but its target" in text and "27x21" in text
    assert not (tmp_path / "r").exists()


def test_wrong_channel_count_for_the_model(tmp_path: Path, models: dict[str, Path]) -> None:
    data = _paired(tmp_path / "set", names=("a",))
    text = _error("--task", "deraining", "--dataset", data, "-w", models["gray"])
    assert "3 channel(s) but the model takes 1" in text
    dpdd = _paired(tmp_path / "dpdd", names=("a",), inputs=("inputL", "inputR"), dtype=np.uint16)
    text = _error("--task", "dual-pixel-defocus-deblurring", "--dataset", dpdd, "-w", models["rgb"])
    assert "6 channel(s) but the model takes 3" in text


def test_sigma_only_for_gaussian_tasks(tmp_path: Path, models: dict[str, Path]) -> None:
    data = _paired(tmp_path / "set", names=("a",))
    text = _error("--task", "deraining", "--dataset", data, "-w", models["rgb"], "--sigma", 25)
    assert "Gaussian" in text


def test_corrupt_image(tmp_path: Path, models: dict[str, Path]) -> None:
    data = _paired(tmp_path / "set", names=("a",))
    (data / "target" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    text = _error(
        "--task", "deraining", "--dataset", data, "-w", models["rgb"], "-o", tmp_path / "r"
    )
    assert "a.png" in text


# --------------------------------------------------------------------------- Python API


def test_python_api(tmp_path: Path) -> None:
    data = _paired(tmp_path / "set")
    samples = E.discover_samples("motion-deblurring", data)
    calls: list[tuple[int, int]] = []
    results = E.evaluate_samples(
        tiny_model(seed=3),
        "motion-deblurring",
        samples,
        tile=16,
        tile_overlap=4,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls == [(1, 2), (2, 2)]
    assert [r.name for r in results] == ["a", "b"] and set(results[0].scores) == {"psnr", "ssim"}
    summary = E.summarize(results)
    assert summary[0]["images"] == 2
    _, json_path = E.write_results(
        tmp_path / "out", results, summary, {"task": "motion-deblurring"}
    )
    assert json.loads(json_path.read_text())["task"] == "motion-deblurring"
    with pytest.raises(E.EvaluationError, match="already exists"):
        E.write_results(tmp_path / "out", results, summary, {})


def test_infinite_psnr_is_null_in_json(tmp_path: Path) -> None:
    results = [E.ImageResult("same", None, {"psnr": math.inf, "ssim": 1.0})]
    csv_path, json_path = E.write_results(tmp_path, results, E.summarize(results), {})
    assert _csv(csv_path)[0]["psnr"] == "inf"
    document = json.loads(json_path.read_text())
    assert document["images"][0]["psnr"] is None and document["summary"][0]["psnr"] is None
