"""README's promises that can be checked mechanically."""

from __future__ import annotations

import re
from pathlib import Path

from .script_modules import load_script

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_ci_runs_exactly_the_readme_test_command() -> None:
    test_command = _bash_blocks()[1].strip()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines


def test_the_first_command_uses_files_in_the_repository() -> None:
    first = _bash_blocks()[0]
    for name in re.findall(r"examples/\S+", first):
        assert (ROOT / name).is_file(), name


def test_the_first_command_restores_with_a_shipped_model_as_claimed() -> None:
    """The first command names a shipped model, and its result has the PSNR README states."""
    import numpy as np

    from restormer import load_model, restore
    from restormer.io import read_image
    from restormer.metrics import calculate_psnr
    from restormer.shipped import shipped_path

    from .conftest import SHARED, require_reference

    first = _bash_blocks()[0]
    task = re.search(r"--task (\S+)", first)
    assert task is not None, "the first command must use a shipped model (--task NAME)"
    assert shipped_path(task.group(1)).is_file()
    require_reference()  # the clean original lives in ../shared
    claimed = re.search(r"comes back at (\d+\.\d\d) dB", (ROOT / "README.md").read_text())
    assert claimed is not None
    noisy = read_image(ROOT / "examples" / "noisy.png").pixels
    clean = read_image(SHARED / "data" / "photos" / "photo_030.png").pixels
    restored = np.round(restore(noisy, load_model(task.group(1))) * 255)
    psnr = calculate_psnr(restored, clean.astype(np.float64))
    assert f"{psnr:.2f}" == claimed.group(1)


def test_where_they_stand_shows_the_numbers_the_package_records(monkeypatch) -> None:
    """README's quality table is what ``benchmarks/quality.py --markdown`` prints now: no
    number in it is older than the shipped models and their recorded measurements."""
    quality = load_script("benchmarks/quality.py", monkeypatch)
    assert quality.markdown_table() in (ROOT / "README.md").read_text()
