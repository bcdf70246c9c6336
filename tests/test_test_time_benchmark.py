"""benchmarks/test_time.py: measuring TLC and the self-ensemble per case, and the rule."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from .conftest import tiny_model

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def test_time(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    _load("quality", monkeypatch)
    return _load("test_time", monkeypatch)


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
