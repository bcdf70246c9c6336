"""The ``restormer`` command: restore photos, inspect and convert weights.

Every user error ends as one line on stderr and a non-zero exit, never a traceback
(set ``RESTORMER_DEBUG=1`` to see one). One photo's path is a straight line:
``io.read_image -> inference.restore_into -> io.write_image``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, NoReturn

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from restormer import __version__
from restormer.io import (
    DEFAULT_MAX_PIXELS,
    ImageData,
    ImageFileError,
    list_images,
    read_image,
    write_image,
)
from restormer.tasks import TASKS

app = typer.Typer(
    name="restormer",
    help="Restormer image restoration: restore photos, inspect and convert weights.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


class OutputFormat(str, Enum):
    png = "png"
    jpg = "jpg"
    tif = "tif"
    webp = "webp"
    bmp = "bmp"


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


class UserError(Exception):
    """A problem the user can fix; its message is printed as one line."""


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", markup=True)
    raise typer.Exit(code)


@dataclass
class Job:
    """One output to produce: its input file(s) and where the result goes."""

    inputs: tuple[Path, ...]  # one file, or (left, right) for dual-pixel
    output: Path

    @property
    def name(self) -> str:
        return (
            str(self.inputs[0]) if len(self.inputs) == 1 else f"{self.inputs[0]} + {self.inputs[1]}"
        )


def _version(value: bool) -> None:
    if value:
        out.print(f"restormer {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Restormer image restoration (Zamir et al., CVPR 2022)."""


# --------------------------------------------------------------------------- restore


@app.command()
def restore(
    inputs: Annotated[
        list[Path] | None, typer.Argument(help="Image files or folders.", show_default=False)
    ] = None,
    output_dir: Annotated[
        Path, typer.Option("--output", "-o", help="Folder for the results.")
    ] = ...,  # type: ignore[assignment]
    weights: Annotated[
        Path | None, typer.Option("--weights", "-w", help="Weights file (.pth or .safetensors).")
    ] = None,
    task: Annotated[
        str | None, typer.Option("--task", "-t", help=f"Shipped model: {', '.join(TASKS)}.")
    ] = None,
    left: Annotated[Path | None, typer.Option(help="Dual-pixel left view.")] = None,
    right: Annotated[Path | None, typer.Option(help="Dual-pixel right view.")] = None,
    tile: Annotated[
        int | None, typer.Option(help="Restore in N x N tiles (multiple of 8); default: auto.")
    ] = None,
    tile_overlap: Annotated[int, typer.Option(help="Overlap between tiles, in pixels.")] = 32,
    ensemble: Annotated[
        bool, typer.Option("--ensemble", help="x8 self-ensemble (8x slower).")
    ] = False,
    device: Annotated[Device, typer.Option(help="Where to run the model.")] = Device.cpu,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="Output file format.")
    ] = OutputFormat.png,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing outputs.")
    ] = False,
    max_pixels: Annotated[
        int, typer.Option(help="Refuse images with more pixels than this.")
    ] = DEFAULT_MAX_PIXELS,
) -> None:
    """Restore photos: INPUT... (files or folders) -> OUTPUT/<name>.<format>."""
    if (weights is None) == (task is None):
        fail("give exactly one of --weights FILE or --task NAME")
    if task is not None and task not in TASKS:
        fail(f"unknown task '{task}'; choose one of: {', '.join(TASKS)}")
    if (left is None) != (right is None):
        fail("dual-pixel input needs both --left and --right")
    model = _load(weights if weights is not None else task, device.value)  # type: ignore[arg-type]
    jobs, problems = _plan_jobs(inputs or [], left, right, output_dir, output_format.value, model)
    if not jobs and not problems:
        fail("no input images given")
    _prepare_output_dir(output_dir)
    failures = len(problems)
    for message in problems:
        err.print(f"[bold red]error:[/] {message}", markup=True)
    ok = _run_jobs(jobs, model, tile, tile_overlap, ensemble, overwrite, max_pixels)
    failures += len(jobs) - ok
    total = len(jobs) + len(problems)
    summary = f"restored {ok} of {total} image{'s' if total != 1 else ''} into {output_dir}"
    (err if failures else out).print(summary)
    if failures:
        raise typer.Exit(1)


def _load(source: str | Path, device: str):  # type: ignore[no-untyped-def]
    from restormer.weights import WeightsError, load_model

    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            fail("--device cuda: no CUDA device is available")
    try:
        return load_model(source, device=device)
    except WeightsError as e:
        fail(str(e))


def _plan_jobs(
    inputs: list[Path],
    left: Path | None,
    right: Path | None,
    output_dir: Path,
    suffix: str,
    model,  # type: ignore[no-untyped-def]
) -> tuple[list[Job], list[str]]:
    """Every output to make, plus one message per input that cannot even be listed."""
    problems: list[str] = []
    groups: list[tuple[Path, ...]] = []
    if model.dual_pixel_task:
        if left is not None and right is not None:
            groups.append((left, right))
        for folder in inputs:
            pairs, missing = _dual_pixel_pairs(folder)
            groups += pairs
            problems += missing
    else:
        if left is not None:
            problems.append("--left/--right are for a dual-pixel model; these weights are not one")
        for item in inputs:
            try:
                groups += [(p,) for p in list_images([item])]
            except ImageFileError as e:
                problems.append(str(e))
    jobs, seen = [], {}
    for group in groups:
        target = output_dir / f"{group[0].stem}.{suffix}"
        if target in seen:
            problems.append(f"{group[0]}: same output name as {seen[target]} ({target}); skipped")
            continue
        seen[target] = group[0]
        jobs.append(Job(group, target))
    return jobs, problems


def _dual_pixel_pairs(folder: Path) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(left, right) pairs from a DPDD-style folder (``inputL/``, ``inputR/``), by file name."""
    lefts, rights = folder / "inputL", folder / "inputR"
    if not (lefts.is_dir() and rights.is_dir()):
        return [], [
            f"{folder}: a dual-pixel model needs --left/--right, or a folder with inputL/, inputR/"
        ]
    try:
        left_files = {p.name: p for p in list_images([lefts])}
        right_files = {p.name: p for p in list_images([rights])}
    except ImageFileError as e:
        return [], [str(e)]
    pairs = [(left_files[n], right_files[n]) for n in sorted(left_files) if n in right_files]
    missing = [
        f"{lefts / n}: no matching file in {rights}"
        for n in sorted(left_files)
        if n not in right_files
    ]
    missing += [
        f"{rights / n}: no matching file in {lefts}"
        for n in sorted(right_files)
        if n not in left_files
    ]
    return pairs, missing


def _prepare_output_dir(output_dir: Path) -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fail(f"{output_dir}: cannot create the output folder ({e.strerror or e})")
    try:  # a real probe: permissions alone miss read-only mounts and root's special folders
        with tempfile.TemporaryFile(dir=output_dir):
            pass
    except OSError as e:
        fail(f"{output_dir}: the output folder is not writable ({e.strerror or e})")


def _run_jobs(
    jobs: list[Job],
    model,  # type: ignore[no-untyped-def]
    tile: int | None,
    tile_overlap: int,
    ensemble: bool,
    overwrite: bool,
    max_pixels: int,
) -> int:
    """Restore every job, reporting failures as they happen; returns how many succeeded."""
    ok = 0
    with _progress() as progress:
        images = progress.add_task("images", total=len(jobs))
        for job in jobs:
            try:
                _restore_one(
                    job, model, tile, tile_overlap, ensemble, overwrite, max_pixels, progress
                )
                ok += 1
            except UserError as e:
                progress.console.print(f"[bold red]error:[/] {e}", markup=True)
            progress.advance(images)
    return ok


def _restore_one(
    job: Job,
    model,  # type: ignore[no-untyped-def]
    tile: int | None,
    tile_overlap: int,
    ensemble: bool,
    overwrite: bool,
    max_pixels: int,
    progress: Progress,
) -> None:
    from restormer.inference import InferenceError, plan_tile, restore_into

    if job.output.exists() and not overwrite:
        raise UserError(f"{job.output}: already exists (use --overwrite)")
    try:
        image = _read_job(job, max_pixels)
    except ImageFileError as e:
        raise UserError(str(e)) from e
    pixels = image.pixels
    h, w = pixels.shape[:2]
    try:
        if tile is None and (tile := plan_tile(model, h, w)) is not None:
            progress.console.print(
                f"note: {job.name}: {h * w / 1e6:.1f} MP exceeds the memory budget for a full "
                f"frame; restoring in {tile}x{tile} tiles"
            )
        channels = model.out_channels if model.dual_pixel_task else pixels.shape[2]
        if channels == pixels.shape[2] and pixels.flags.writeable:
            result = pixels  # restored in place: one whole-image buffer instead of two
        else:
            result = np.empty((h, w, channels), dtype=pixels.dtype)
        tiles = progress.add_task(f"  {Path(job.name).name}", total=None)

        def on_tile(done: int, total: int) -> None:
            progress.update(tiles, completed=done, total=total)

        restore_into(pixels, model, result, tile=tile, tile_overlap=tile_overlap,
                     ensemble=ensemble, progress=on_tile)  # fmt: skip
        progress.remove_task(tiles)
    except InferenceError as e:
        raise UserError(f"{job.name}: {e}") from e
    try:
        write_image(job.output, result, alpha=image.alpha, icc_profile=image.icc_profile,
                    overwrite=overwrite)  # fmt: skip
    except ImageFileError as e:
        raise UserError(str(e)) from e


def _read_job(job: Job, max_pixels: int) -> ImageData:
    """The job's image; for dual-pixel, left and right stacked into 6 channels."""
    if len(job.inputs) == 1:
        return read_image(job.inputs[0], max_pixels=max_pixels)
    left, right = (read_image(p, max_pixels=max_pixels) for p in job.inputs)
    for view, path in ((left, job.inputs[0]), (right, job.inputs[1])):
        if view.pixels.shape[2] != 3:
            raise ImageFileError(f"{path}: a dual-pixel view must be an RGB image")
    if left.pixels.shape != right.pixels.shape or left.pixels.dtype != right.pixels.dtype:
        raise ImageFileError(
            f"{job.inputs[1]}: size or bit depth differs from the left view {job.inputs[0]}"
        )
    return ImageData(np.concatenate([left.pixels, right.pixels], axis=2), None,
                     left.icc_profile, left.format)  # fmt: skip


@contextmanager
def _progress() -> Iterator[Progress]:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(elapsed_when_finished=True),
        console=err,
        transient=True,
    ) as progress:
        yield progress


# --------------------------------------------------------------------------- evaluate


@app.command("evaluate")
def evaluate_command(
    task: Annotated[
        str, typer.Option("--task", "-t", help=f"Task protocol: {', '.join(TASKS)}.")
    ] = ...,  # type: ignore[assignment]
    dataset: Annotated[
        Path, typer.Option("--dataset", "-d", help="Test-set folder, in the official layout.")
    ] = ...,  # type: ignore[assignment]
    weights: Annotated[
        Path | None,
        typer.Option("--weights", "-w", help="Weights file; default: the task's shipped model."),
    ] = None,
    save_images: Annotated[
        Path | None, typer.Option("--save-images", help="Also save the restored images here.")
    ] = None,
    output_dir: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Folder for results.csv and results.json "
            "(default: the --save-images folder, else ./evaluation/TASK).",
            show_default=False,
        ),
    ] = None,
    sigma: Annotated[
        list[int] | None,
        typer.Option(help="Gaussian noise level, repeatable (default: 15, 25 and 50)."),
    ] = None,
    tile: Annotated[
        int | None, typer.Option(help="Restore in N x N tiles (multiple of 8); default: auto.")
    ] = None,
    tile_overlap: Annotated[int, typer.Option(help="Overlap between tiles, in pixels.")] = 32,
    device: Annotated[Device, typer.Option(help="Where to run the model.")] = Device.cpu,
    limit: Annotated[
        int | None, typer.Option(help="Evaluate only the first N images.", min=1)
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing results and images.")
    ] = False,
) -> None:
    """Benchmark a model on an official test set, scored exactly as in the paper."""
    import contextlib

    from rich.markup import escape

    from restormer import evaluate as evaluation

    if task not in TASKS:
        fail(f"unknown task '{task}'; choose one of: {', '.join(TASKS)}")
    results_dir = output_dir or save_images or Path("evaluation") / task
    try:
        samples = evaluation.discover_samples(task, dataset, sigmas=sigma, limit=limit)
        evaluation.check_outputs(samples, results_dir, save_images, overwrite=overwrite)
    except evaluation.EvaluationError as e:
        fail(escape(str(e)))  # file names may hold [brackets]
    model = _load(weights if weights is not None else task, device.value)
    try:
        # A bar only on a terminal: in logs it is noise (and would leave a blank line).
        with _progress() if err.is_terminal else contextlib.nullcontext() as progress:
            results = evaluation.evaluate_samples(
                model, task, samples, tile=tile, tile_overlap=tile_overlap,
                save_dir=save_images, overwrite=overwrite,
                progress=_image_bar(progress, len(samples)),
            )  # fmt: skip
        summary = evaluation.summarize(results)
        metrics = list(results[0].scores)
        out.print(evaluation.results_table(results, metrics))
        out.print(evaluation.summary_table(summary, metrics))
        metadata = {
            "task": task,
            "dataset": str(dataset),
            "weights": str(weights) if weights is not None else f"shipped model for {task}",
            "device": device.value,
            "tile": tile,
        }
        csv_path, json_path = evaluation.write_results(
            results_dir, results, summary, metadata, overwrite=overwrite
        )
    except evaluation.EvaluationError as e:
        fail(escape(str(e)))  # file names may hold [brackets]
    out.print(f"wrote {csv_path} and {json_path}")


def _image_bar(progress: Progress | None, total: int):  # type: ignore[no-untyped-def]
    """A ``progress(done, total)`` callback advancing an "evaluating" bar (None: no bar)."""
    if progress is None:
        return None
    bar = progress.add_task("evaluating", total=total)
    return lambda done, _total: progress.update(bar, completed=done)


# --------------------------------------------------------------------------- weights


@app.command()
def info(
    weights: Annotated[Path, typer.Argument(help="Weights file (.pth or .safetensors).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the configuration inferred from a weights file, its size and its cost."""
    from restormer.weights import WeightsError, describe

    try:
        facts = describe(weights)
    except WeightsError as e:
        fail(str(e))
    macs = facts.pop("macs_256")
    if as_json:
        facts["gmacs_256"] = {
            "convolutions": macs.convolutions / 1e9,
            "attention": macs.attention / 1e9,
        }
        out.print_json(json.dumps(facts))
        return
    cfg = facts["config"]
    layout = facts["official_layout"]
    lines = [
        f"file            {facts['file']}",
        f"format          {facts['format']} ({facts['dtype']})",
        *(f"  {k:<22}{v}" for k, v in cfg.items()),
        f"parameters      {facts['parameters']:,} ({facts['parameters'] / 1e6:.2f} M)",
        f"GMACs @256x256  {macs.convolutions / 1e9:.2f} convolutions (as the paper counts) "
        f"+ {macs.attention / 1e9:.2f} attention = {macs.total / 1e9:.2f}",
        "official layout "
        + (
            f"{layout} (as {', '.join(facts['official_checkpoints'])})"
            if layout
            else "none (a custom configuration)"
        ),
    ]
    lines += [f"metadata        {k} = {v}" for k, v in facts["metadata"].items()]
    out.print("\n".join(lines))


@app.command()
def convert(
    source: Annotated[Path, typer.Argument(help="Input weights (.pth or .safetensors).")],
    target: Annotated[
        Path, typer.Argument(help="Output: .safetensors, or .pth (official format).")
    ],
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing output.")
    ] = False,
) -> None:
    """Convert weights: official .pth <-> .safetensors with the configuration as metadata."""
    from restormer.weights import WeightsError, load_model, save_weights

    try:
        model = load_model(source)
        save_weights(model, target, overwrite=overwrite)
    except WeightsError as e:
        fail(str(e))
    out.print(f"wrote {target}")


# --------------------------------------------------------------------------- train


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


def main() -> None:
    """Entry point: run the app, turning anything unexpected into one line."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as e:  # a bug, not a user error: still no traceback unless asked
        if os.environ.get("RESTORMER_DEBUG"):
            raise
        err.print(f"error: {type(e).__name__}: {e} (set RESTORMER_DEBUG=1 for a traceback)")
        sys.exit(3)
