"""Test-time defaults carried by a weights file (TLC window, x8 self-ensemble)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from restormer import load_model, restore
from restormer.cli import app
from restormer.restore_defaults import RESTORE_DEFAULTS_METADATA_KEY, RestoreDefaults
from restormer.weights import WeightsError, save_weights

from .conftest import tiny_model

runner = CliRunner()


def _weights(path: Path, **defaults: object) -> Path:
    metadata = RestoreDefaults(**defaults).to_metadata() if defaults else {}  # type: ignore[arg-type]
    return save_weights(tiny_model(seed=4), path, metadata=metadata)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).random((45, 61, 3)).astype(np.float32)


def test_metadata_round_trip_and_description() -> None:
    defaults = RestoreDefaults(tlc=192, ensemble=True, measured="+0.1 dB")
    assert RestoreDefaults.from_metadata(defaults.to_metadata()) == defaults
    assert RestoreDefaults.from_metadata({}) == RestoreDefaults()
    assert RestoreDefaults(tlc=0) == RestoreDefaults()  # 0 is off, as everywhere
    assert defaults.describe() == "TLC 192, x8"
    assert RestoreDefaults(tlc=128).describe() == "TLC 128"
    assert RestoreDefaults().describe() == "-"
    flips = RestoreDefaults(ensemble=True, ensemble_transforms="flips")
    assert RestoreDefaults.from_metadata(flips.to_metadata()) == flips
    assert flips.describe() == "x4 flips"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"tlc": 8}', "at least 16"),
        ('{"ensemble": "yes"}', "true or false"),
        ('{"ensemble": true, "ensemble_transforms": "rot45"}', "unknown ensemble 'rot45'"),
        ("not json", RESTORE_DEFAULTS_METADATA_KEY),
    ],
)
def test_bad_metadata_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = save_weights(
        tiny_model(), tmp_path / "m.safetensors", metadata={RESTORE_DEFAULTS_METADATA_KEY: text}
    )
    with pytest.raises(WeightsError, match=message) as caught:
        load_model(path)
    assert "\n" not in str(caught.value)


def test_load_model_applies_the_files_defaults(tmp_path: Path, image: np.ndarray) -> None:
    plain = load_model(_weights(tmp_path / "plain.safetensors"))
    assert plain.local_attention is None and plain.self_ensemble is False
    model = load_model(_weights(tmp_path / "tuned.safetensors", tlc=16, ensemble=True))
    assert model.local_attention is not None and model.local_attention.window == 16
    assert model.self_ensemble is True

    expected = restore(image, plain, tlc=16, ensemble=True)
    assert np.array_equal(restore(image, model), expected)  # the defaults, untold
    assert np.array_equal(restore(image, model, tlc=0, ensemble=False), restore(image, plain))
    assert np.array_equal(restore(image, model, tlc=0), restore(image, plain, ensemble=True))
    assert model.local_attention.window == 16  # a call's own choice does not stick


def test_cli_uses_the_defaults_unless_told(tmp_path: Path) -> None:
    weights = _weights(tmp_path / "tuned.safetensors", tlc=16)
    plain = load_model(_weights(tmp_path / "plain.safetensors"))
    pixels = (np.random.default_rng(1).random((45, 61, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in.png")
    args = ["restore", str(tmp_path / "in.png"), "-w", str(weights)]
    for extra, options in (
        ([], {"tlc": 16}),
        (["--tlc", "0"], {}),
        (["--no-ensemble"], {"tlc": 16}),
    ):
        out = tmp_path / f"out{len(extra)}{extra[-1] if extra else ''}"
        result = runner.invoke(app, [*args, "-o", str(out), *extra])
        assert result.exit_code == 0, result.output
        expected = np.round(restore(pixels, plain, **options) * 255).astype(np.uint8)
        assert np.array_equal(np.asarray(Image.open(out / "in.png")), expected), extra


def test_models_table_and_json_show_the_defaults(shipped_dir: Path) -> None:
    model = tiny_model(seed=7)
    metadata = RestoreDefaults(tlc=192, measured="+0.12 dB").to_metadata()
    save_weights(model, shipped_dir / "deraining.safetensors", metadata=metadata)
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "deraining" in line)
    assert "TLC 192" in row
    rows = json.loads(runner.invoke(app, ["models", "--json"]).output)
    assert rows["deraining"]["restore_defaults"] == {
        "tlc": 192,
        "ensemble": False,
        "ensemble_transforms": None,
        "measured": "+0.12 dB",
    }
