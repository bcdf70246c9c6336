"""benchmarks/result_file.py: where benchmark results go, written whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .script_modules import load_script


def test_a_named_run_gets_its_own_file(monkeypatch: pytest.MonkeyPatch) -> None:
    result_file = load_script("benchmarks/result_file.py", monkeypatch)
    assert result_file.result_path("gpu_step", None).name == "gpu_step.json"
    assert result_file.result_path("gpu_step", "h200").name == "gpu_step-h200.json"
    assert result_file.result_path("gpu_step").parent == result_file.RESULTS


def test_results_replace_the_file_in_one_step(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result_file = load_script("benchmarks/result_file.py", monkeypatch)
    monkeypatch.setattr(result_file, "RESULTS", tmp_path / "results")
    path = result_file.write_result("tlc_cost", "x", {"rows": [1]})
    path = result_file.write_result("tlc_cost", "x", {"rows": [2], "σ": 25})
    assert json.loads(path.read_text(encoding="utf-8")) == {"rows": [2], "σ": 25}
    assert [p.name for p in path.parent.iterdir()] == ["tlc_cost-x.json"]  # no partial file
    assert "wrote" in capsys.readouterr().out
