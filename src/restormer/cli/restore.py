"""``restormer restore``: photos in, restored photos out, every failure one line.

One photo's path is a straight line: ``io.read_image -> inference.restore_into ->
io.write_image``. Jobs are planned before any work, so bad inputs are reported up front.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.progress import Progress

from restormer.cli.common import (
    Device,
    DeviceOption,
    OutputFormat,
    Precision,
    PrecisionOption,
    ThreadsOption,
    TlcOption,
    UserError,
    app,
    err,
    fail,
    load_model_or_fail,
    prepare_output_dir,
    print_summary,
    progress_bar,
    remove_empty_folders,
    set_threads,
)
from restormer.ensemble import ENSEMBLES, check_ensemble
from restormer.io import (
    DEFAULT_MAX_PIXELS,
    ImageData,
    ImageFileError,
    as_gray,
    list_images,
    read_image,
    write_image,
)
from restormer.local_attention import check_window
from restormer.tasks import TASKS


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
        bool | None,
        typer.Option(
            "--ensemble/--no-ensemble",
            help="Self-ensemble: the mean over the 8 flips/rotations, 8x slower (a dual-pixel "
            "pair: its 4 flips, 4x). Default: the model's own.",
            show_default=False,
        ),
    ] = None,
    ensemble_transforms: Annotated[
        str | None,
        typer.Option(
            "--ensemble-transforms",
            help=f"Self-ensemble over these copies ({', '.join(ENSEMBLES)}): 'flips' for rain, "
            "whose streaks a quarter turn lays across. Default: the model's own.",
            show_default=False,
        ),
    ] = None,
    tlc: TlcOption = None,
    device: DeviceOption = Device.cpu,
    precision: PrecisionOption = Precision.fp32,
    threads: ThreadsOption = None,
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
    chosen_ensemble: bool | str | None = ensemble
    if ensemble_transforms is not None:
        if ensemble is False:
            fail("--no-ensemble and --ensemble-transforms: give one")
        try:
            chosen_ensemble = check_ensemble(ensemble_transforms)
        except ValueError as e:
            fail(f"--ensemble-transforms: {e}")
    try:
        window = check_window(tlc) if tlc is not None else None
    except ValueError as e:
        fail(f"--tlc: {e}")
    set_threads(threads)
    model = load_model_or_fail(
        weights if weights is not None else task, device.value, precision.value
    )  # type: ignore[arg-type]
    if tlc is not None:  # every forward of this command, tiles and ensemble too
        model.set_local_attention(window)
    jobs, problems = _plan_jobs(inputs or [], left, right, output_dir, output_format.value, model)
    if not jobs and not problems:
        fail("no input images given")
    for message in problems:
        err.print(f"[bold red]error:[/] {message}", markup=True)
    if not jobs:  # nothing to restore: the errors say it all, and no output folder is made
        raise typer.Exit(1)
    created = prepare_output_dir(output_dir)
    failures = len(problems)
    ok = _run_jobs(jobs, model, tile, tile_overlap, chosen_ensemble, overwrite, max_pixels)
    if ok == 0:  # every image failed: leave no empty folder behind
        remove_empty_folders(created)
    failures += len(jobs) - ok
    total = len(jobs) + len(problems)
    print_summary("restored", ok, total, output_dir, failed=failures > 0)
    if failures:
        raise typer.Exit(1)


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


def _run_jobs(
    jobs: list[Job],
    model,  # type: ignore[no-untyped-def]
    tile: int | None,
    tile_overlap: int,
    ensemble: bool | str | None,
    overwrite: bool,
    max_pixels: int,
) -> int:
    """Restore every job, reporting failures as they happen; returns how many succeeded."""
    ok = 0
    with progress_bar() as progress:
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
    ensemble: bool | str | None,
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
    if image.pixels.shape[2] == 3 and int(model.inp_channels) == 1:
        image = as_gray(image)
        progress.console.print(
            f"note: {job.name}: colour photo, grayscale model: restoring its luma, written as gray"
        )
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
