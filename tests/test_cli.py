"""The ``restormer`` command end to end: results, outputs, and every bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from restormer.cli import app
from restormer.cli.common import idle_cores
from restormer.inference import restore
from restormer.io import to_float, to_gray
from restormer.weights import load_model

runner = CliRunner()


def _photo(
    h: int = 45, w: int = 61, c: int = 3, dtype: type = np.uint8, seed: int = 0
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 0.5 + 0.3 * np.sin(x / 7.0)[..., None] * np.cos(y / 5.0)[..., None]
    img = np.clip(base + 0.05 * rng.standard_normal((h, w, c)), 0, 1)
    scale = np.iinfo(dtype).max
    return np.round(img * scale).astype(dtype).squeeze()


def _save(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels).save(path)
    return path


def _run(*args: object) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    text = result.output  # stdout and stderr, interleaved as a terminal shows them
    assert "Traceback" not in text
    return result.exit_code, text


def _official(model_path: Path, image: np.ndarray) -> np.ndarray:
    """What the official test scripts produce: reflect pad to x8, forward, crop, clip, round."""
    model = load_model(model_path)
    x = torch.from_numpy(image.astype(np.float32) / 255).permute(2, 0, 1)[None]
    h, w = x.shape[-2:]
    with torch.inference_mode():
        y = model(F.pad(x, (0, -w % 8, 0, -h % 8), mode="reflect"))[..., :h, :w]
    y = y.clamp(0, 1)[0].permute(1, 2, 0).numpy()
    return np.round(y * 255).astype(np.uint8)


def test_restore_equals_the_official_test_script(tmp_path: Path, models: dict[str, Path]) -> None:
    photo = _photo()
    src = _save(tmp_path / "in.png", photo)
    code, text = _run("restore", src, "-o", tmp_path / "out", "--weights", models["rgb"])
    assert code == 0, text
    result = np.asarray(Image.open(tmp_path / "out" / "in.png"))
    diff = np.abs(result.astype(int) - _official(models["rgb"], photo).astype(int))
    assert diff.max() <= 1


def test_folders_formats_and_bit_depths(tmp_path: Path, models: dict[str, Path]) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    _save(folder / "a.png", _photo(seed=1))
    _save(folder / "b.jpg", _photo(seed=2))
    Image.fromarray(_photo(c=1, dtype=np.uint16)).save(folder / "c16.png")
    rgba = np.dstack([_photo(seed=3), np.full((45, 61), 77, np.uint8)])
    _save(folder / "d.png", rgba)
    code, text = _run("restore", folder, "-o", tmp_path / "out", "-w", models["rgb"])
    assert code == 0, text
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["a.png", "b.png", "c16.png", "d.png"]
    gray16 = Image.open(tmp_path / "out" / "c16.png")
    assert gray16.mode.startswith("I") and np.asarray(gray16).max() > 255  # stays gray, 16-bit
    with_alpha = np.asarray(Image.open(tmp_path / "out" / "d.png"))
    assert with_alpha.shape == (45, 61, 4) and (with_alpha[..., 3] == 77).all()
    code, _ = _run(
        "restore", folder / "a.png", "-o", tmp_path / "jpg", "-w", models["rgb"], "--format", "jpg"
    )
    assert code == 0 and (tmp_path / "jpg" / "a.jpg").exists()


def test_gray_model_restores_a_colour_photo_as_its_luma(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    colour = _photo()
    gray = _save(tmp_path / "g.png", _photo(c=1))
    rgb = _save(tmp_path / "rgb.png", colour)
    code, text = _run("restore", gray, rgb, "-o", tmp_path / "out", "-w", models["gray"])
    assert code == 0, text
    assert "rgb.png: colour photo, grayscale model" in text
    written = Image.open(tmp_path / "out" / "rgb.png")
    assert written.mode == "L" and "icc_profile" not in written.info
    expected = restore(to_float(to_gray(colour)), load_model(models["gray"]))
    assert np.abs(np.asarray(written).astype(int) - np.round(expected[..., 0] * 255)).max() <= 1
    assert (tmp_path / "out" / "g.png").exists()


def test_tiled_restore_uses_the_tiles_asked_for(tmp_path: Path, models: dict[str, Path]) -> None:
    photo = _photo(100, 90)
    src = _save(tmp_path / "in.png", photo)
    args = ("--tile", "64", "--tile-overlap", "16")
    code, text = _run("restore", src, "-o", tmp_path / "tiled", "-w", models["rgb"], *args)
    assert code == 0, text
    expected = restore(photo, load_model(models["rgb"]), tile=64, tile_overlap=16)
    tiled = np.asarray(Image.open(tmp_path / "tiled" / "in.png")).astype(int)
    assert np.abs(tiled - np.round(expected * 255)).max() <= 1


def test_ensemble_runs(tmp_path: Path, models: dict[str, Path]) -> None:
    src = _save(tmp_path / "in.png", _photo(24, 32))
    assert _run("restore", src, "-o", tmp_path / "out", "-w", models["rgb"], "--ensemble")[0] == 0


def test_ensemble_transforms_chosen(tmp_path: Path, models: dict[str, Path]) -> None:
    photo = _photo(24, 32)
    src = _save(tmp_path / "in.png", photo)
    base = ("restore", src, "-w", models["rgb"], "--ensemble-transforms")
    code, text = _run(*base, "flips", "-o", tmp_path / "out")
    assert code == 0, text
    expected = restore(photo, load_model(models["rgb"]), ensemble="flips")
    flipped = np.asarray(Image.open(tmp_path / "out" / "in.png")).astype(int)
    assert np.abs(flipped - np.round(expected * 255)).max() <= 1
    code, text = _run(*base, "rot45", "-o", tmp_path / "bad")
    assert code == 2 and "--ensemble-transforms: unknown ensemble 'rot45'" in text
    code, text = _run(*base, "flips", "--no-ensemble", "-o", tmp_path / "both")
    assert code == 2 and "give one" in text
    assert not (tmp_path / "bad").exists() and not (tmp_path / "both").exists()


def test_dual_pixel_pairs_and_folders(tmp_path: Path, models: dict[str, Path]) -> None:
    root = tmp_path / "dpdd"
    for side, seed in (("inputL", 1), ("inputR", 2)):
        (root / side).mkdir(parents=True)
        rgb16 = _photo(seed=seed, dtype=np.uint16)
        cv2.imwrite(str(root / side / "scene.png"), np.ascontiguousarray(rgb16[..., ::-1]))
    code, text = _run("restore", root, "-o", tmp_path / "out", "-w", models["dual"])
    assert code == 0, text
    result = cv2.imread(str(tmp_path / "out" / "scene.png"), cv2.IMREAD_UNCHANGED)
    assert result.shape == (45, 61, 3) and result.dtype == np.uint16
    left, right = root / "inputL/scene.png", root / "inputR/scene.png"
    pair = ["-o", tmp_path / "pair", "-w", models["dual"], "--left", left, "--right", right]
    code, text = _run("restore", *pair)
    assert code == 0, text
    assert (tmp_path / "pair" / "scene.png").exists()


def test_existing_output_is_kept_unless_overwrite(tmp_path: Path, models: dict[str, Path]) -> None:
    src = _save(tmp_path / "in.png", _photo())
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "in.png").write_bytes(b"precious")
    code, text = _run("restore", src, "-o", tmp_path / "out", "-w", models["rgb"])
    assert code != 0 and "already exists" in text
    assert (tmp_path / "out" / "in.png").read_bytes() == b"precious"
    code, _ = _run("restore", src, "-o", tmp_path / "out", "-w", models["rgb"], "--overwrite")
    assert code == 0
    assert Image.open(tmp_path / "out" / "in.png").size == (61, 45)


def test_mixed_batch_reports_each_bad_file(tmp_path: Path, models: dict[str, Path]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    _save(folder / "good.png", _photo())
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not an image\n")
    data = (folder / "good.png").read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    code, text = _run(
        "restore", folder, tmp_path / "missing.png", "-o", tmp_path / "out", "-w", models["rgb"]
    )
    assert code == 1
    for name in ("empty.png", "text.jpg", "truncated.png", "missing.png"):
        lines = [line for line in text.splitlines() if name in line]
        assert len(lines) == 1, (name, text)
    assert "restored 1 of 5" in text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.png"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--weights", "{tmp}/nope.pth"], "no such file"),
        (["--weights", "{tmp}/bad.pth"], "not a weights file"),
        (["--task", "dehazing"], "unknown task"),
        ([], "exactly one of --weights"),
    ],
)
def test_bad_weights_and_options(tmp_path: Path, args: list[str], expected: str) -> None:
    (tmp_path / "bad.pth").write_text("garbage")
    src = _save(tmp_path / "in.png", _photo())
    args = [a.format(tmp=tmp_path) for a in args]
    code, text = _run("restore", src, "-o", tmp_path / "out", *args)
    assert code != 0 and expected in text
    assert len([line for line in text.splitlines() if line.strip()]) == 1


@pytest.mark.parametrize(
    ("cores", "load", "expected"),
    [(2, 0.1, 2), (2, 0.6, 1), (2, 1.4, 1), (2, 3.0, 1), (16, 3.2, 13)],
)
def test_idle_cores_leave_busy_ones_alone(cores: int, load: float, expected: int) -> None:
    assert idle_cores(cores, load) == expected


def test_threads_option_and_its_default(
    tmp_path: Path, models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--threads wins; without it OMP_NUM_THREADS is kept; without that, the idle cores."""
    src = _save(tmp_path / "in.png", _photo())
    seen: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", seen.append)
    code, _ = _run("restore", src, "-o", tmp_path / "a", "-w", models["rgb"], "--threads", 3)
    assert code == 0 and seen == [3]
    code, _ = _run("restore", src, "-o", tmp_path / "b", "-w", models["rgb"])  # OMP_NUM_THREADS=1
    assert code == 0 and seen == [3]
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.2, 1.0, 1.0))
    code, _ = _run("restore", src, "-o", tmp_path / "c", "-w", models["rgb"])
    assert code == 0 and seen == [3, 1]
    code, text = _run("restore", src, "-o", tmp_path / "d", "-w", models["rgb"], "--threads", 0)
    assert code != 0 and "--threads" in text


def test_empty_folder(tmp_path: Path, models: dict[str, Path]) -> None:
    (tmp_path / "empty").mkdir()
    code, text = _run("restore", tmp_path / "empty", "-o", tmp_path / "out", "-w", models["rgb"])
    assert code != 0 and "no images" in text


def test_an_output_folder_is_not_left_empty_when_every_image_fails(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    (tmp_path / "junk.png").write_text("this is not an image\n")
    out = tmp_path / "out" / "a" / "b"
    code, text = _run("restore", tmp_path / "junk.png", "-o", out, "-w", models["rgb"])
    assert code == 1 and "not an image" in text
    assert "restored 0 of 1 image (nothing written)" in text
    assert not (tmp_path / "out").exists()  # the parents it made go too
    (tmp_path / "mine").mkdir()  # a folder the user made stays, empty or not
    code, _ = _run("restore", tmp_path / "junk.png", "-o", tmp_path / "mine", "-w", models["rgb"])
    assert code == 1 and (tmp_path / "mine").is_dir()


def test_only_missing_inputs_give_one_line_and_no_output_folder(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    code, text = _run(
        "restore", tmp_path / "nothere.png", "-o", tmp_path / "out", "-w", models["rgb"]
    )
    assert code == 1 and "nothere.png" in text and "no such file" in text
    assert len([line for line in text.splitlines() if line.strip()]) == 1
    assert not (tmp_path / "out").exists()


def test_unwritable_output_folder(tmp_path: Path, models: dict[str, Path]) -> None:
    if os.geteuid() == 0:  # root ignores permission bits; /sys is read-only even for root
        locked = Path("/sys/kernel")
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
    src = _save(tmp_path / "in.png", _photo())
    code, text = _run("restore", src, "-o", locked, "-w", models["rgb"])
    assert code != 0 and "not writable" in text
    assert not (locked / "in.png").exists()


def test_output_folder_that_is_a_file(tmp_path: Path, models: dict[str, Path]) -> None:
    (tmp_path / "file").write_text("x")
    src = _save(tmp_path / "in.png", _photo())
    code, text = _run("restore", src, "-o", tmp_path / "file", "-w", models["rgb"])
    assert code != 0 and "output folder" in text


def test_info_and_convert(tmp_path: Path, models: dict[str, Path]) -> None:
    code, text = _run("info", models["rgb"])
    assert code == 0 and "dim" in text and "GMACs" in text and "official layout" in text
    code, text = _run("convert", models["rgb"], tmp_path / "w.safetensors")
    assert code == 0, text
    code, text = _run("convert", tmp_path / "w.safetensors", tmp_path / "back.pth")
    assert code == 0, text
    a, b = (
        torch.load(models["rgb"], weights_only=True),
        torch.load(tmp_path / "back.pth", weights_only=True),
    )
    assert all(torch.equal(a["params"][k], b["params"][k]) for k in a["params"])
    code, text = _run("convert", models["rgb"], tmp_path / "back.pth")
    assert code != 0 and "already exists" in text
    code, text = _run("info", tmp_path / "nothing.pth")
    assert code != 0 and "no such file" in text


def test_real_process_exit_codes_and_no_traceback(tmp_path: Path, models: dict[str, Path]) -> None:
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "restormer",
            "restore",
            str(tmp_path / "bad.png"),
            "-o",
            str(tmp_path / "out"),
            "-w",
            str(models["rgb"]),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "bad.png" in proc.stderr
