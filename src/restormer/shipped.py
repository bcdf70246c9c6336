"""The models that ship inside the package: one safetensors file per task, trained here.

``src/restormer/models/<task>.safetensors`` holds the weights (half precision: they are
stored as float16 and computed in float32, which changes no printed PSNR digit) with three
metadata entries: the network configuration (as every safetensors file of ours has);
``restormer_training``, a JSON record of how the model was made: training iterations, CPU
hours and minutes on a lent GPU summed over every run that led to it, the data, the option
file and the command that reproduces it; and ``restormer_restore_defaults``, the test-time
options measured to help it (:mod:`restormer.restore_defaults`). ``models/quality.json``
holds the held-out quality numbers measured by ``benchmarks/quality.py`` (input, classical
baseline and ours per case).

Nothing here downloads anything: a task whose file is not in the package is reported as not
shipped, in one line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from restormer.restore_defaults import RestoreDefaults
from restormer.tasks import TASKS

__all__ = [
    "QUALITY_FILE",
    "SHIPPED_DIR",
    "TRAINING_METADATA_KEY",
    "ShippedModel",
    "TrainingRecord",
    "quality_results",
    "shipped_model",
    "shipped_models",
    "shipped_path",
]

SHIPPED_DIR = Path(__file__).resolve().parent / "models"
QUALITY_FILE = SHIPPED_DIR / "quality.json"
TRAINING_METADATA_KEY = "restormer_training"


@dataclass(frozen=True)
class TrainingRecord:
    """How a shipped model was trained, summed over all the runs that led to it."""

    iterations: int = 0
    hours: float = 0.0
    gpu_minutes: float = 0.0  # on a lent GPU (scripts/gpu_burst.py), not in ``hours``
    data: str = ""
    options: str = ""
    command: str = ""
    validation_psnr: float | None = None  # on the held-out photos, as the training run validates

    @classmethod
    def from_json(cls, text: str | None) -> TrainingRecord:
        """The record in a file's metadata (an empty record for files without one)."""
        if not text:
            return cls()
        raw = json.loads(text)
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        return cls(**known)

    def gpu_minutes_cell(self) -> str:
        """``gpu_minutes`` for a table: whole minutes, ``-`` for none."""
        return f"{self.gpu_minutes:.0f}" if self.gpu_minutes else "-"

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


@dataclass(frozen=True)
class ShippedModel:
    """One shipped model: its task, file, size and training record."""

    task: str
    path: Path
    parameters: int
    config: dict[str, Any]
    training: TrainingRecord = field(default_factory=TrainingRecord)
    defaults: RestoreDefaults = field(default_factory=RestoreDefaults)
    """The test-time options :func:`restormer.load_model` applies (TLC, self-ensemble)."""


def shipped_path(task: str) -> Path:
    """Where the model of ``task`` lives in the package (whether or not it is there)."""
    if task not in TASKS:
        raise ValueError(f"unknown task '{task}'; choose one of: {', '.join(TASKS)}")
    return SHIPPED_DIR / f"{task}.safetensors"


def shipped_model(task: str) -> ShippedModel | None:
    """The shipped model of ``task``, or None when this install has none for it."""
    path = shipped_path(task)
    if not path.is_file():
        return None
    from safetensors import safe_open

    from restormer.weights import CONFIG_METADATA_KEY

    with safe_open(path, framework="pt", device="cpu") as f:
        metadata = dict(f.metadata() or {})
        parameters = sum(_numel(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118
    return ShippedModel(
        task=task,
        path=path,
        parameters=parameters,
        config=json.loads(metadata.get(CONFIG_METADATA_KEY, "{}")),
        training=TrainingRecord.from_json(metadata.get(TRAINING_METADATA_KEY)),
        defaults=RestoreDefaults.from_metadata(metadata, str(path)),
    )


def shipped_models() -> dict[str, ShippedModel | None]:
    """Every task, in the order of :data:`restormer.tasks.TASKS`, with its model or None."""
    return {task: shipped_model(task) for task in TASKS}


def quality_results() -> dict[str, Any]:
    """The held-out quality numbers per task (``benchmarks/quality.py``), {} if not measured."""
    if not QUALITY_FILE.is_file():
        return {}
    return dict(json.loads(QUALITY_FILE.read_text()).get("tasks", {}))


def _numel(shape: list[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n
