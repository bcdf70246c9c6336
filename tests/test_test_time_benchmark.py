"""benchmarks/test_time.py: measuring TLC and the self-ensemble per case, and the rule."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest

from .conftest import tiny_model
from .script_modules import load_script


@pytest.fixture
def test_time(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    load_script("benchmarks/quality.py", monkeypatch)  # fresh, for test_time to import
    return load_script("benchmarks/test_time.py", monkeypatch)


def test_a_gray_task_is_measured_on_gray_photos_and_the_rule_decides(test_time) -> None:
    ramp = np.linspace(0.2, 0.8, 32, dtype=np.float32)
    photo = np.stack([*np.meshgrid(ramp, ramp), np.full((32, 32), 0.5, np.float32)], axis=-1)
    model = tiny_model(inp_channels=1, out_channels=1)
    task = "gaussian-gray-denoising"
    rows = test_time.measure_task(task, model, [("a.png", photo)], 7, [16], 1)
    assert [row["case"] for row in rows][-1] == "clean photo"
    for row in rows:
        assert {"plain", "TLC 16", "plain (subset)", "ensemble (subset)"} <= set(row)
        assert all(np.isfinite(value) for key, value in row.items() if key != "case")
    defaults = test_time.choose(task, rows, [16])
    assert defaults.tlc in (None, 16)
    assert "TLC 16" in defaults.measured
