"""The experiment folder and its checkpoints, laid out as BasicSR lays them out.

``experiments/<name>/models/net_g_<iter>.pth`` holds the weights in the official format
(``{'params': state_dict}``, plus ``params_ema`` when EMA is on), loadable by the official
code and by :func:`restormer.load_model`; ``training_states/<iter>.state`` holds everything
needed to continue: weights, optimizer, EMA, iteration, RNG states. Every file is written
atomically, so a state that exists is complete, whenever the process was killed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from restormer.files import write_atomically

_STATE_NAME = re.compile(r"^(\d+)\.state$")


class CheckpointError(RuntimeError):
    """A training state that cannot be used, as one line."""


@dataclass(frozen=True)
class ExperimentDir:
    """Paths inside ``experiments/<name>/``."""

    root: Path

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def states(self) -> Path:
        return self.root / "training_states"

    @property
    def tb_logger(self) -> Path:
        return self.root / "tb_logger"

    @property
    def visualization(self) -> Path:
        return self.root / "visualization"

    def log_file(self, name: str) -> Path:
        return self.root / f"train_{name}.log"

    def create(self) -> None:
        for folder in (self.models, self.states):
            folder.mkdir(parents=True, exist_ok=True)

    def state_files(self) -> list[tuple[int, Path]]:
        """Saved training states, oldest first."""
        if not self.states.is_dir():
            return []
        found = [
            (int(m.group(1)), p) for p in self.states.iterdir() if (m := _STATE_NAME.match(p.name))
        ]
        return sorted(found)


def save_weights_file(
    path: Path,
    params: Mapping[str, torch.Tensor],
    params_ema: Mapping[str, torch.Tensor] | None = None,
) -> None:
    """Weights in the official format (CPU tensors), atomically, replacing any older file."""
    payload = {"params": _cpu(params)}
    if params_ema is not None:
        payload["params_ema"] = _cpu(params_ema)
    write_atomically(path, partial(torch.save, payload), overwrite=True)


def save_state(
    experiment: ExperimentDir, iteration: int, state: dict[str, Any], keep: int | None = None
) -> Path:
    """Write ``training_states/<iteration>.state`` atomically; keep only the newest ``keep``."""
    path = experiment.states / f"{iteration}.state"
    write_atomically(path, partial(torch.save, state), overwrite=True)
    if keep is not None:
        for _, old in experiment.state_files()[:-keep]:
            old.unlink(missing_ok=True)
    return path


def load_state(path: Path) -> dict[str, Any]:
    """A training state, loaded safely (``weights_only``: no code from the file runs)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such training state") from None
    except Exception as e:  # truncated, corrupt, or not a state at all
        raise CheckpointError(f"{path}: not a readable training state ({e})") from None
    if not isinstance(state, dict) or not {"iter", "model", "optimizer"} <= state.keys():
        raise CheckpointError(f"{path}: not a training state of this trainer")
    return state


def newest_state(experiment: ExperimentDir) -> Path | None:
    """The newest saved state, or None. Files are only ever published complete."""
    states = experiment.state_files()
    return states[-1][1] if states else None


def _cpu(params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in params.items()}
