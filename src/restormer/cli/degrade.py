"""``restormer degrade``: clean photos in, a paired test set in the official layout out.

Each photo is degraded by :mod:`restormer.degradations` for one task and written, with its
clean original, where ``restormer evaluate`` (:func:`restormer.evaluate.discover_samples`)
looks for that task's test set:

* deraining, motion-deblurring, defocus-deblurring, real-denoising: ``OUT/input/NAME.png``
  (degraded) and ``OUT/target/NAME.png`` (clean), 8-bit RGB;
* dual-pixel-defocus-deblurring: ``OUT/inputL/``, ``OUT/inputR/`` (the two views),
  ``OUT/inputC/`` (their mean, in linear light where the degradations package provides
  ``combined_view``; for single-image defocus models) and ``OUT/target/``, all 16-bit RGB
  PNG as in DPDD;
* gaussian-color-denoising, gaussian-gray-denoising: ``OUT/target/`` (clean, 8-bit; gray for
  the gray task), to which ``restormer evaluate`` adds the official noise itself, and
  ``OUT/input/`` with this command's noisy image, clipped to [0, 1] and stored as 16-bit PNG:
  :func:`restormer.io.read_image` does not read floating-point TIFF, so an unclipped float
  file could not be read back by the rest of the toolkit.

The photos are taken in sorted order (by output name, then path) and photo ``i`` is degraded
with ``np.random.default_rng([seed, i])``, so running the command again on the same photos
with the same ``--seed`` reproduces the set bit for bit. ``OUT/degradations.json`` records, per
image, its source, index, seed, task and the sampled parameters
(``dataclasses.asdict`` of what ``degradations.sample`` drew).

Like ``restore``: every file is written atomically, nothing existing is replaced without
``--overwrite`` (checked for the whole set before any work), and a bad photo gets one line
naming it while the others are still processed, with a non-zero exit at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import numpy as np
import typer
from rich.markup import escape

from restormer.cli.common import (
    UserError,
    app,
    err,
    fail,
    prepare_output_dir,
    print_summary,
    progress_bar,
    remove_empty_folders,
)
from restormer.files import write_atomically
from restormer.io import (
    ImageFileError,
    from_float,
    list_images,
    read_image,
    to_float,
    to_gray,
    write_image,
)
from restormer.tasks import TASKS

__all__ = ["LAYOUTS", "METADATA_FILE", "Layout", "degrade"]

METADATA_FILE = "degradations.json"


@dataclass(frozen=True)
class Layout:
    """Where one task's images go: the input folder(s) and the bit depth of every file."""

    inputs: tuple[str, ...]
    """Folders of the degraded image: one, or ``inputL``, ``inputR``, ``inputC``."""
    bit_depth: int
    """Of the degraded input(s); targets are 8-bit except for dual-pixel (16-bit)."""
    target_bit_depth: int = 8


_PAIRED = Layout(("input",), 8)
LAYOUTS: dict[str, Layout] = {
    "deraining": _PAIRED,
    "motion-deblurring": _PAIRED,
    "defocus-deblurring": _PAIRED,
    "real-denoising": _PAIRED,
    "dual-pixel-defocus-deblurring": Layout(("inputL", "inputR", "inputC"), 16, 16),
    # Noisy inputs are unclipped floats; 16 bits keep them to 1/65535, clipped to [0, 1].
    "gaussian-color-denoising": Layout(("input",), 16),
    "gaussian-gray-denoising": Layout(("input",), 16),
}
"""The official test-set layout of each task (see the module notes)."""


@dataclass(frozen=True)
class _Job:
    """One photo to degrade: its rng index, source file and output name (``NAME.png``)."""

    index: int
    source: Path
    name: str


_HELP = (
    "Make a paired test set from clean photos (IN: files or folders), in the layout "
    "`restormer evaluate` reads for the task.\n\n"
    "deraining, motion-deblurring, defocus-deblurring, real-denoising: OUT/input/ (degraded) "
    "and OUT/target/ (clean), 8-bit PNG.\n\n"
    "dual-pixel-defocus-deblurring: OUT/inputL/, OUT/inputR/, OUT/inputC/ (the views' mean, "
    "in linear light) and OUT/target/, 16-bit PNG.\n\n"
    "gaussian-color-denoising, gaussian-gray-denoising: OUT/target/ (clean, 8-bit; gray for "
    "the gray task), to which evaluate adds the official noise itself, and OUT/input/ with "
    "this command's noisy image, clipped to [0, 1] and stored as 16-bit PNG (restormer cannot "
    "read float TIFF back).\n\n"
    "Photo i (sorted by name) is degraded with np.random.default_rng([SEED, i]): the same "
    "photos and --seed reproduce the set exactly. OUT/degradations.json records each image's "
    "seed and sampled parameters."
)


@app.command(help=_HELP)
def degrade(
    inputs: Annotated[
        list[Path],
        typer.Argument(help="Clean photos: files or folders.", metavar="IN", show_default=False),
    ],
    output_dir: Annotated[
        Path, typer.Option("--output", "-o", help="Folder for the paired set.")
    ] = ...,  # type: ignore[assignment]
    task: Annotated[
        str, typer.Option("--task", "-t", help=f"Degradation: {', '.join(TASKS)}.")
    ] = ...,  # type: ignore[assignment]
    seed: Annotated[
        int, typer.Option(help="Photo i is degraded with np.random.default_rng([SEED, i]).", min=0)
    ] = 0,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing outputs.")
    ] = False,
) -> None:
    """Degrade photos for ``task`` into a paired set in OUT (see the module notes)."""
    if task not in TASKS:
        fail(f"unknown task '{task}'; choose one of: {', '.join(TASKS)}")
    degradations = _import_degradations()
    jobs, problems = _plan_jobs(inputs)
    if not jobs and not problems:
        fail("no input images given")
    layout = LAYOUTS[task]
    if jobs and not overwrite:
        _refuse_existing(jobs, layout, output_dir)
    created: list[Path] = []
    if jobs:  # nothing to do: no folders made
        created += prepare_output_dir(output_dir)
        for folder in (*layout.inputs, "target"):
            created += prepare_output_dir(output_dir / folder)
    for message in problems:
        err.print(f"[bold red]error:[/] {escape(message)}", markup=True)
    records: dict[str, dict[str, Any]] = {}
    with progress_bar() as progress:
        bar = progress.add_task("degrading", total=len(jobs))
        for job in jobs:
            try:
                records[job.name] = _degrade_one(
                    job, task, seed, output_dir, overwrite, degradations
                )
            except UserError as e:
                progress.console.print(f"[bold red]error:[/] {escape(str(e))}", markup=True)
            progress.advance(bar)
    failures = len(problems) + len(jobs) - len(records)
    if not records:  # every photo failed: leave no empty folders behind
        remove_empty_folders(created)
    else:
        try:
            _write_metadata(output_dir / METADATA_FILE, task, seed, records, overwrite)
        except UserError as e:
            err.print(f"[bold red]error:[/] {escape(str(e))}", markup=True)
            failures += 1
    total = len(jobs) + len(problems)
    print_summary("degraded", len(records), total, output_dir, failed=failures > 0)
    if failures:
        raise typer.Exit(1)


def _import_degradations() -> ModuleType:
    """:mod:`restormer.degradations`, or a one-line failure if it is missing or incomplete."""
    try:
        from restormer import degradations
    except ImportError as e:
        fail(f"the restormer.degradations package cannot be imported ({e})")
    missing = [
        name for name in ("sample", "apply", "input_channels") if not hasattr(degradations, name)
    ]
    if missing:
        fail(f"the restormer.degradations package is incomplete (no {', '.join(missing)})")
    return degradations


# --------------------------------------------------------------------------- planning


def _plan_jobs(inputs: list[Path]) -> tuple[list[_Job], list[str]]:
    """The photos in sorted order, each with its rng index; plus one line per bad input."""
    problems: list[str] = []
    files: list[Path] = []
    for item in inputs:
        try:
            files += list_images([item])
        except ImageFileError as e:
            problems.append(str(e))
    unique: dict[Path, Path] = {}  # the same file named twice is one photo
    for path in files:
        unique.setdefault(path.resolve(), path)
    jobs: list[_Job] = []
    taken: dict[str, Path] = {}
    for path in sorted(unique.values(), key=lambda p: (p.stem, str(p))):
        name = f"{path.stem}.png"
        if name in taken:
            problems.append(f"{path}: same output name as {taken[name]} ({name}); skipped")
            continue
        taken[name] = path
        jobs.append(_Job(len(jobs), path, name))
    return jobs, problems


def _outputs(job: _Job, layout: Layout, output_dir: Path) -> list[Path]:
    return [output_dir / folder / job.name for folder in (*layout.inputs, "target")]


def _refuse_existing(jobs: list[_Job], layout: Layout, output_dir: Path) -> None:
    """Fail before any work if the set would replace a file (without --overwrite)."""
    planned = [output_dir / METADATA_FILE]
    planned += [path for job in jobs for path in _outputs(job, layout, output_dir)]
    existing = [path for path in planned if path.exists()]
    if existing:
        more = f" ({len(existing) - 1} more outputs too)" if len(existing) > 1 else ""
        fail(escape(f"{existing[0]}: already exists{more}; use --overwrite to replace"))


# --------------------------------------------------------------------------- one photo


def _degrade_one(
    job: _Job,
    task: str,
    seed: int,
    output_dir: Path,
    overwrite: bool,
    degradations: ModuleType,
) -> dict[str, Any]:
    """Degrade and write one photo; returns its record for ``degradations.json``."""
    layout = LAYOUTS[task]
    try:
        pixels = read_image(job.source).pixels
    except ImageFileError as e:
        raise UserError(str(e)) from e
    target = _clean_pixels(pixels, gray=task == "gaussian-gray-denoising",
                           bit_depth=layout.target_bit_depth)  # fmt: skip
    clean = to_float(target)
    rng = np.random.default_rng([seed, job.index])
    params = degradations.sample(task, rng)
    degraded = np.asarray(degradations.apply(task, clean, rng, params))
    channels = int(degradations.input_channels(task))
    if degraded.shape != (*clean.shape[:2], channels):
        raise RuntimeError(
            f"restormer.degradations returned a {degraded.shape} array for the "
            f"{clean.shape} image {job.source}; expected {(*clean.shape[:2], channels)}"
        )
    views = _input_images(degraded, layout, getattr(degradations, "combined_view", None))
    images = dict(zip(layout.inputs, views, strict=True))
    images["target"] = target
    _write_all(job, images, output_dir, overwrite)
    return {
        "source": str(job.source),
        "index": job.index,
        "seed": seed,
        "task": task,
        "params": _plain(_as_dict(params)),
    }


def _clean_pixels(pixels: np.ndarray, *, gray: bool, bit_depth: int) -> np.ndarray:
    """The clean target: ``bit_depth`` bits, gray (one channel) or RGB, as the task needs.

    16-bit photos for an 8-bit set are rounded to 8 bits first (``round(x / 257)``); gray
    conversion is OpenCV's ``RGB2GRAY``, as the gray training datasets convert colour files.
    """
    if bit_depth == 8 and pixels.dtype == np.uint16:
        pixels = ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif bit_depth == 16 and pixels.dtype == np.uint8:
        pixels = pixels.astype(np.uint16) * np.uint16(257)
    if gray and pixels.shape[2] == 3:
        return to_gray(pixels)
    if not gray and pixels.shape[2] == 1:
        return np.repeat(pixels, 3, axis=2)
    return np.ascontiguousarray(pixels)


def _input_images(
    degraded: np.ndarray, layout: Layout, combined_view: Callable[[np.ndarray], np.ndarray] | None
) -> list[np.ndarray]:
    """The degraded image(s) to write: one, or the left, right and centre views.

    The centre view is the mean of the two views: in linear light with the degradations'
    own ``combined_view`` (as a sensor sums the two half-pixels, and as the package makes
    its single-image defocus blur), or of the stored levels where it has none.
    """
    if len(layout.inputs) == 1:
        return [from_float(degraded, layout.bit_depth)]
    left = from_float(degraded[..., :3], layout.bit_depth)
    right = from_float(degraded[..., 3:], layout.bit_depth)
    if combined_view is not None:
        centre = from_float(combined_view(np.ascontiguousarray(degraded)), layout.bit_depth)
    else:
        centre = np.rint((left.astype(np.float64) + right) / 2).astype(left.dtype)
    return [left, right, centre]


def _write_all(job: _Job, images: dict[str, np.ndarray], output_dir: Path, overwrite: bool) -> None:
    """Write every file of one photo; if one fails, remove the others (no half pairs)."""
    written: list[Path] = []
    try:
        for folder, pixels in images.items():
            written.append(write_image(output_dir / folder / job.name, pixels, overwrite=overwrite))
    except ImageFileError as e:
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
        raise UserError(f"{job.source}: {e}") from e


# --------------------------------------------------------------------------- metadata


def _as_dict(params: object) -> object:
    """The sampled parameters as a dict (``dataclasses.asdict`` for a dataclass)."""
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        return dataclasses.asdict(params)
    return params


def _plain(value: object) -> object:
    """``value`` with numpy scalars/arrays and tuples turned into JSON types (NaN/inf: null)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _write_metadata(
    path: Path, task: str, seed: int, records: dict[str, dict[str, Any]], overwrite: bool
) -> None:
    document = {
        "task": task,
        "seed": seed,
        "rng": "np.random.default_rng([seed, index])",
        "images": dict(sorted(records.items())),
    }
    text = json.dumps(document, indent=2, allow_nan=False) + "\n"
    try:
        write_atomically(path, text.encode("utf-8"), overwrite=overwrite)
    except FileExistsError:
        raise UserError(f"{path}: already exists (use --overwrite)") from None
    except OSError as e:
        raise UserError(f"{path}: cannot write ({e.strerror or e})") from None
