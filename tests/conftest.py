"""Shared test fixtures: the reference data beside the checkout, tiny models, temp images."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from restormer.model import Restormer
from restormer.weights import save_weights

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REFERENCE = SHARED / "reference"

TINY = {"dim": 8, "num_blocks": (1, 1, 1, 1), "num_refinement_blocks": 1, "heads": (1, 1, 2, 2)}


def require_reference() -> Path:
    """The reference folder, or a skip (a failure where CI demands it)."""
    if not REFERENCE.is_dir():
        if os.environ.get("RESTORMER_REQUIRE_SHARED") == "1":
            pytest.fail(f"reference data missing at {REFERENCE}")
        pytest.skip(f"reference data not found at {REFERENCE}")
    return REFERENCE


@pytest.fixture
def reference() -> Path:
    return require_reference()


def tiny_model(seed: int = 0, **overrides: object) -> Restormer:
    """A small random Restormer in eval mode (fast enough for any test)."""
    torch.manual_seed(seed)
    return Restormer(**{**TINY, **overrides}).eval()


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny RGB, gray and dual-pixel models saved as files, for the command-line tests."""
    root = tmp_path_factory.mktemp("weights")
    return {
        "rgb": save_weights(tiny_model(seed=3), root / "rgb.pth"),
        "gray": save_weights(tiny_model(seed=4, inp_channels=1, out_channels=1), root / "gray.pth"),
        "dual": save_weights(
            tiny_model(seed=5, inp_channels=6, dual_pixel_task=True), root / "dual.safetensors"
        ),
    }


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models on two shared cores run much faster on one thread (no oversubscription).
    OMP_NUM_THREADS=1 too, so that the CLI's own thread choice (``set_threads``) keeps it, and
    so do the commands tests start as processes."""
    previous = torch.get_num_threads()
    previous_env = os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    torch.set_num_threads(previous)
    if previous_env is None:
        del os.environ["OMP_NUM_THREADS"]
    else:
        os.environ["OMP_NUM_THREADS"] = previous_env


@pytest.fixture
def shipped_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder standing in for the package's shipped models (``restormer.shipped``)."""
    import restormer.shipped

    folder = tmp_path / "shipped-models"
    folder.mkdir()
    monkeypatch.setattr(restormer.shipped, "SHIPPED_DIR", folder)
    monkeypatch.setattr(restormer.shipped, "QUALITY_FILE", folder / "quality.json")
    return folder
