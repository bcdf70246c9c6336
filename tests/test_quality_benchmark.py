"""benchmarks/quality.py: several degradations per photo, the sampling error it reports."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from .conftest import tiny_model
from .script_modules import load_script

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def quality(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return load_script("benchmarks/quality.py", monkeypatch)


class RecordingBaseline:
    """Stands in for BM3D: a fixed PSNR, and the cache keys it was asked for."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def psnr(self, key: str, noisy: np.ndarray, clean: np.ndarray, sigma: float) -> float:
        self.keys.append(key)
        return 20.0


def _photos() -> list[tuple[str, np.ndarray]]:
    ramp = np.linspace(0.2, 0.8, 32, dtype=np.float32)
    first = np.stack([*np.meshgrid(ramp, ramp), np.full((32, 32), 0.5, np.float32)], axis=-1)
    return [("a.png", first), ("b.png", first[::-1].copy())]


def test_every_photo_is_degraded_draws_times_with_distinct_seeds(quality) -> None:
    drawn = [(c, p, d) for c in range(2) for p in range(3) for d in range(4)]
    assert len({tuple(quality._draw_seed(2026, *index)) for index in drawn}) == len(drawn)
    # the first draw is the one single-draw runs made, so BM3D's cached results still apply
    assert quality._draw_seed(2026, 1, 2, 0) == [2026, 1, 2]


def test_cases_average_all_draws_and_report_the_standard_error(quality) -> None:
    baseline = RecordingBaseline()
    result = quality.evaluate_task(
        "gaussian-color-denoising", tiny_model(), _photos(), 7, baseline, {}, draws=3
    )
    rows = {row["case"]: row for row in result["cases"]}
    sigma_25 = rows["sigma 25"]
    assert sigma_25["samples"] == 2 * 3
    assert sigma_25["baseline"] == 20.0
    assert sigma_25["ours_se"] is not None and sigma_25["ours_se"] > 0
    # BM3D is asked once per photo and draw; the first draw keeps the single-draw cache key
    keys = [key for key in baseline.keys if key.endswith("|25.0") or "|25.0|" in key]
    assert len(keys) == len(set(keys)) == 2 * 3
    assert sum(key.endswith("|25.0") for key in keys) == 2
    assert rows["clean photo"]["samples"] == 2 and rows["clean photo"]["ours_se"] is None


def test_the_standard_error_is_that_of_the_mean(quality) -> None:
    assert quality._standard_error(np.array([1.0, 3.0])) == pytest.approx(1.0)
    assert quality._standard_error(np.array([2.0])) is None


def test_tables_show_the_standard_error_beside_ours(quality) -> None:
    row = {"ours": 31.864, "ours_se": 0.0449}
    assert quality._ours(row) == "31.86 ±0.04"
    assert quality._ours({"ours": 47.9, "ours_se": None}) == "47.90"
