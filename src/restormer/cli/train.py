"""``restormer train``: official option files, resumable, single- or multi-process."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from restormer.cli.common import Device, app, fail, out


@app.command()
def train(
    options_file: Annotated[Path, typer.Argument(help="Option file (official BasicSR YAML).")],
    resume: Annotated[
        str | None,
        typer.Option(help="'auto' (newest state of this experiment, if any) or a .state file."),
    ] = None,
    set_options: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override an option: KEY=VALUE, e.g. train.total_iter=1000."),
    ] = None,
    max_hours: Annotated[
        float | None, typer.Option(help="Stop cleanly, with a checkpoint, after this long.")
    ] = None,
    device: Annotated[
        Device | None, typer.Option(help="Train on this device (default: CUDA if available).")
    ] = None,
    experiments_root: Annotated[Path, typer.Option(help="Where experiment folders go.")] = Path(
        "experiments"
    ),
    keep_states: Annotated[
        int | None, typer.Option(help="Keep only the newest N training states.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train a Restormer from an official option file (also under torchrun or srun)."""
    from restormer.data import DatasetOptionError
    from restormer.train import CheckpointError, OptionError, RunSettings, load_options
    from restormer.train import train as run_training

    if max_hours is not None and max_hours <= 0:
        fail("--max-hours must be positive")
    if device == Device.cuda:
        import torch

        if not torch.cuda.is_available():
            fail("--device cuda: no CUDA device is available")
    try:
        options = load_options(options_file, set_options or [])
        settings = RunSettings(
            resume=resume,
            max_hours=max_hours,
            experiments_root=experiments_root,
            device=device.value if device is not None else None,
            show_progress=progress,
            keep_states=keep_states,
        )
        result = run_training(options, settings)
    except (OptionError, DatasetOptionError, CheckpointError) as e:
        fail(str(e))
    state = "finished" if result.finished else "stopped early"
    out.print(f"{state} at iteration {result.iteration:,}; weights: {result.weights}")
