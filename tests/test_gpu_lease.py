"""scripts/gpu_lease.py: the speed-ups a probe justifies, and the bursts it starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from .script_modules import ROOT, load_script

lease = load_script("scripts/gpu_lease.py")


def _row(rung: str, step_ms: float, first_loss: float = 0.1, first_step_s: float = 1.0) -> dict:
    return {"rung": rung, "step_ms": step_ms, "first_loss": first_loss} | {
        "first_step_s": first_step_s
    }


def test_bf16_and_compiling_are_kept_only_where_they_pay() -> None:
    eager, bf16 = _row("eager", 200.0), _row("bf16", 100.0)
    compiled = _row("compile", 50.0, first_step_s=60.0)
    assert lease.choose_flags([eager, bf16, compiled], 480) == [
        "--precision", "bf16", "--compile", "default"
    ]  # fmt: skip
    # Compiling saves 240 s of a 480-s burst: not worth 2 x 150 s of compiling.
    slow_compile = _row("compile", 50.0, first_step_s=150.0)
    assert lease.choose_flags([eager, bf16, slow_compile], 480) == ["--precision", "bf16"]
    assert lease.choose_flags([eager, _row("bf16", 190.0), compiled], 480) == []  # too little
    assert lease.choose_flags([eager, _row("bf16", 100.0, first_loss=0.2)], 480) == []
    assert lease.choose_flags([], 480) == []  # no GPU, no probe


def test_each_task_bursts_with_its_shape_from_the_packed_photos(tmp_path: Path) -> None:
    command = lease.burst_command(
        "motion-deblurring", 7.25, tmp_path, ".gpu/photos/train", 3, ["--precision", "bf16"]
    )
    assert command[1:] == [
        str(ROOT / "scripts" / "gpu_burst.py"), "motion-deblurring",
        "--minutes", "7.25", "--batch", "32", "--patch", "192", "--lr", "0.0003",
        "--photos", ".gpu/photos/train", "--out", str(tmp_path / "bursts"),
        "--workers", "3", "--precision", "bf16",
    ]  # fmt: skip
    assert lease.burst_shape("deraining") == (64, 128)


def test_a_lease_without_a_gpu_runs_its_bursts_and_records_them(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (160, 160, 3), dtype=np.uint8)).save(
            photos / f"{name}.jpg"
        )
    out = tmp_path / "out"
    task = "gaussian-gray-denoising"
    command = [sys.executable, str(ROOT / "scripts" / "gpu_lease.py"), task]
    command += ["--minutes", "0.001", "--out", str(out), "--photos", str(photos)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads((out / "lease.json").read_text())
    assert record["probe"] == [] and record["flags"] == []
    assert record["bursts"][task]["status"] == 0
    assert (out / "bursts" / f"{task}.state").is_file()
    assert (out / "logs" / f"{task}.log").is_file()


def test_a_lease_without_photos_says_how_to_make_them(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "scripts" / "gpu_lease.py"), "deraining"]
    command += ["--out", str(tmp_path), "--photos", str(tmp_path / "none")]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().startswith("error: no photos at") and "--pack-photos" in done.stderr
