"""Benchmark a model on an official test set, scored exactly as the paper's evaluation scripts.

The ``restormer evaluate`` command is a thin wrapper around the plain functions here, which
the training loop can call as well:

1. :func:`discover_samples` reads a test set in the layout of the official download scripts:

   * ``DIR/input/`` + ``DIR/target/``, matched by file stem: deraining, motion deblurring,
     real denoising (as image pairs) and single-image defocus deblurring;
   * DPDD: ``DIR/inputC/`` (single image; ``input/`` also works), ``DIR/inputL/`` +
     ``DIR/inputR/`` (dual-pixel: stacked into 6 channels) and ``DIR/target/``, 16-bit PNGs;
   * Gaussian denoising: a folder of clean images (``DIR/target/`` if it exists, else ``DIR``),
     each evaluated at every noise level with the noise of the official test scripts
     (:func:`add_gaussian_noise`);
   * SIDD validation: ``DIR/ValidationNoisyBlocksSrgb.mat`` + ``ValidationGtBlocksSrgb.mat``
     (40 x 32 blocks of 256 x 256 x 3, read with scipy: ``pip install 'restormer[eval]'``).

2. :func:`evaluate_samples` restores each input (``restormer.inference.restore``: padded to a
   multiple of 8 like the official scripts, or tiled when asked), scores it with
   :func:`restormer.metrics.score` and optionally saves the restored image as the official
   script stores it (8-bit PNG, 16-bit for DPDD).

3. :func:`summarize`, :func:`results_table`, :func:`summary_table` and :func:`write_results`
   turn the per-image numbers into means (per noise level for Gaussian denoising), rich
   tables and ``results.csv`` / ``results.json``. Numbers are written at full precision; an
   infinite PSNR (a restored image identical to its target) is ``inf`` in the CSV and
   ``null`` in the JSON, which has no infinity.

Every problem a user can cause (missing folders, unmatched names, different sizes, a model
with the wrong channel count, unreadable files, existing outputs) raises
:class:`EvaluationError` with a one-line message.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from rich.table import Table
from torch import nn

from restormer.files import write_atomically
from restormer.io import ImageFileError, from_float, list_images, read_image, write_image
from restormer.metrics import PROTOCOLS, score
from restormer.model import DUAL_PIXEL_CHANNELS
from restormer.tasks import TASKS

__all__ = [
    "GAUSSIAN_SIGMAS",
    "RESULT_FILES",
    "EvaluationError",
    "ImageResult",
    "Sample",
    "add_gaussian_noise",
    "check_outputs",
    "discover_samples",
    "evaluate_samples",
    "results_table",
    "summarize",
    "summary_table",
    "write_results",
]

GAUSSIAN_SIGMAS: tuple[int, ...] = (15, 25, 50)
"""The noise levels of the paper's Gaussian denoising tables (sigma on the 0-255 scale)."""

RESULT_FILES: tuple[str, str] = ("results.csv", "results.json")

SIDD_NOISY = "ValidationNoisyBlocksSrgb"
SIDD_GT = "ValidationGtBlocksSrgb"
_SHOW_NAMES = 5  # how many unmatched names an error message lists

ProgressFn = Callable[[int, int], None]


class EvaluationError(ValueError):
    """A problem with the test set, the model or the outputs; ``str(e)`` is one line."""


@dataclass(frozen=True)
class Sample:
    """One test image: how to load its model input and target, and what to call it."""

    name: str
    """Identifier in tables and file names: the file stem, or ``0001_01`` for SIDD blocks."""
    source: str
    """The file(s) it comes from, for messages."""
    load: Callable[[], tuple[np.ndarray, np.ndarray]] = field(repr=False, compare=False)
    """Returns ``(model input, target)``, both H x W x C arrays."""
    sigma: int | None = None
    """Gaussian noise level, for the Gaussian denoising tasks."""

    @property
    def output_name(self) -> str:
        """Relative path of the saved restored image: ``name.png``, ``sigma15/name.png``."""
        stem = f"{self.name}.png"
        return stem if self.sigma is None else f"sigma{self.sigma}/{stem}"


@dataclass(frozen=True)
class ImageResult:
    """The protocol's numbers for one sample."""

    name: str
    sigma: int | None
    scores: dict[str, float]


# --------------------------------------------------------------------------- discovery


def discover_samples(
    task: str,
    dataset: Path,
    *,
    sigmas: Sequence[int] | None = None,
    limit: int | None = None,
) -> list[Sample]:
    """The samples of the test set in ``dataset`` for ``task``, sorted by name.

    ``sigmas`` (Gaussian denoising only) defaults to :data:`GAUSSIAN_SIGMAS`; ``limit`` keeps
    the first N images (for Gaussian denoising: N clean images, each at every sigma).
    Nothing is decoded yet except the SIDD .mat files; see the module notes for layouts.
    """
    if task not in TASKS:
        raise EvaluationError(f"unknown task '{task}'; choose one of: {', '.join(TASKS)}")
    if limit is not None and limit < 1:
        raise EvaluationError(f"the image limit must be at least 1, not {limit}")
    if not dataset.is_dir():
        what = "not a folder" if dataset.exists() else "no such folder"
        raise EvaluationError(f"{dataset}: {what}")
    gaussian = task.startswith("gaussian-")
    if sigmas and not gaussian:
        raise EvaluationError("noise levels (sigma) apply only to the Gaussian denoising tasks")
    if gaussian:
        return _gaussian_samples(dataset, gray="gray" in task, sigmas=sigmas, limit=limit)
    if task == "real-denoising" and (dataset / f"{SIDD_NOISY}.mat").exists():
        return _sidd_samples(dataset)[:limit]
    if task == "dual-pixel-defocus-deblurring":
        return _paired_samples(dataset, ("inputL", "inputR"))[:limit]
    if task == "defocus-deblurring" and (dataset / "inputC").is_dir():
        return _paired_samples(dataset, ("inputC",))[:limit]
    return _paired_samples(dataset, ("input",))[:limit]


def _images_by_stem(folder: Path) -> dict[str, Path]:
    """The images of ``folder`` by file stem; two files with one stem are an error."""
    try:
        files = list_images([folder])
    except ImageFileError as e:
        raise EvaluationError(str(e)) from e
    by_stem: dict[str, Path] = {}
    for path in files:
        if path.stem in by_stem:
            raise EvaluationError(
                f"{folder}: two images named '{path.stem}' ({by_stem[path.stem].name}, "
                f"{path.name}); names must be unique without the extension"
            )
        by_stem[path.stem] = path
    return by_stem


def _few(names: Iterable[str]) -> str:
    items = sorted(names)
    shown = ", ".join(items[:_SHOW_NAMES])
    return shown + (f" (and {len(items) - _SHOW_NAMES} more)" if len(items) > _SHOW_NAMES else "")


def _paired_samples(dataset: Path, input_dirs: tuple[str, ...]) -> list[Sample]:
    """Samples from ``input_dirs`` (one folder, or left + right views) and ``target/``."""
    folders = [dataset / name for name in (*input_dirs, "target")]
    missing = [f"{f.name}/" for f in folders if not f.is_dir()]
    if missing:
        layout = " + ".join(f"{f.name}/" for f in folders)
        raise EvaluationError(
            f"{dataset}: missing {', '.join(missing)} (expected the official layout {layout})"
        )
    listings = [_images_by_stem(folder) for folder in folders]
    common = set.intersection(*(set(listing) for listing in listings))
    for folder, listing in zip(folders, listings, strict=True):
        extra = set(listing) - common
        if extra:
            others = ", ".join(f"{f.name}/" for f in folders if f != folder)
            raise EvaluationError(
                f"{dataset}: {len(extra)} image(s) in {folder.name}/ have no match of the same "
                f"name in {others}: {_few(listing[s].name for s in extra)}"
            )
    if not common:
        raise EvaluationError(f"{dataset}: no input/target pairs found")
    samples = []
    for stem in sorted(common):
        paths = [listing[stem] for listing in listings]
        source = " + ".join(str(p) for p in paths[:-1])
        samples.append(Sample(stem, source, _pair_loader(paths[:-1], paths[-1])))
    return samples


def _read_pixels(path: Path) -> np.ndarray:
    try:
        return read_image(path).pixels
    except ImageFileError as e:
        raise EvaluationError(str(e)) from e


def _size(pixels: np.ndarray) -> str:
    return f"{pixels.shape[1]}x{pixels.shape[0]}"


def _pair_loader(inputs: list[Path], target: Path) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    """Loader of one pair; two inputs are dual-pixel views, stacked into 6 channels."""

    def load() -> tuple[np.ndarray, np.ndarray]:
        views = [_read_pixels(p) for p in inputs]
        truth = _read_pixels(target)
        for path, view in zip(inputs, views, strict=True):
            if view.shape[:2] != truth.shape[:2]:
                raise EvaluationError(
                    f"{path}: {_size(view)} pixels but its target {target} is {_size(truth)}"
                )
        if len(views) == 1:
            return views[0], truth
        for path, view in zip(inputs, views, strict=True):
            if view.shape[2] != 3:
                raise EvaluationError(f"{path}: a dual-pixel view must be an RGB image")
        if views[0].dtype != views[1].dtype:
            raise EvaluationError(f"{inputs[1]}: bit depth differs from the left view {inputs[0]}")
        return np.concatenate(views, axis=2), truth

    return load


# --------------------------------------------------------------------------- Gaussian


def add_gaussian_noise(clean: np.ndarray, sigma: float) -> np.ndarray:
    """The noisy input of the official Gaussian denoising test scripts, bit for bit.

    ``clean`` is the 8-bit image (H x W x C); the result is float32 ``clean / 255`` plus
    ``np.random.normal(0, sigma / 255, clean.shape)`` drawn right after ``np.random.seed(0)``
    (every image gets the same noise stream), added in float64 and stored in float32,
    without clipping. The global numpy random state is left alone.
    """
    noisy = np.asarray(clean).astype(np.float32) / np.float32(255.0)
    noise = np.random.RandomState(0).normal(0, sigma / 255.0, noisy.shape)
    noisy += noise  # float64 noise into the float32 image, like the official `img += ...`
    return noisy


def _read_clean(path: Path, gray: bool) -> np.ndarray:
    """A clean image as the official loaders give it: 8-bit, RGB (``cv2.imread`` + BGR2RGB)
    or gray (``cv2.imread(..., IMREAD_GRAYSCALE)``), H x W x C.

    ``read_image`` validates the file first (clear errors for broken files); conversions it
    does not do the same way (colour to gray, 16 to 8 bits) are left to OpenCV's decoder.
    """
    pixels = _read_pixels(path)
    channels = 1 if gray else 3
    if pixels.dtype == np.uint8 and pixels.shape[2] == channels:
        return pixels
    if pixels.dtype == np.uint8 and not gray:  # gray file, colour task: channels replicated
        return np.repeat(pixels, 3, axis=2)
    flag = cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR
    decoded = cv2.imdecode(np.fromfile(path, dtype=np.uint8), flag)
    if decoded is None:
        raise EvaluationError(f"{path}: OpenCV cannot decode this image")
    return decoded[..., None] if gray else np.ascontiguousarray(decoded[..., ::-1])


def _gaussian_samples(
    dataset: Path, *, gray: bool, sigmas: Sequence[int] | None, limit: int | None
) -> list[Sample]:
    folder = dataset / "target" if (dataset / "target").is_dir() else dataset
    levels = tuple(sigmas) if sigmas else GAUSSIAN_SIGMAS
    bad = [s for s in levels if not 0 < s <= 255]
    if bad:
        raise EvaluationError(f"sigma must be between 1 and 255 (on the 0-255 scale), not {bad[0]}")
    files = sorted(_images_by_stem(folder).items())[:limit]
    return [
        Sample(stem, str(path), _noisy_loader(path, gray, sigma), sigma)
        for sigma in dict.fromkeys(levels)
        for stem, path in files
    ]


def _noisy_loader(
    path: Path, gray: bool, sigma: int
) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    def load() -> tuple[np.ndarray, np.ndarray]:
        clean = _read_clean(path, gray)
        return add_gaussian_noise(clean, sigma), clean

    return load


# --------------------------------------------------------------------------- SIDD


def _load_mat(path: Path, key: str) -> np.ndarray:
    """``key`` of a MATLAB file, via scipy (an optional dependency)."""
    try:
        from scipy.io import loadmat
    except ImportError:
        raise EvaluationError(
            "reading the SIDD .mat files needs scipy: pip install 'restormer[eval]'"
        ) from None
    if not path.is_file():
        raise EvaluationError(
            f"{path}: no such file (SIDD needs {SIDD_NOISY}.mat and {SIDD_GT}.mat)"
        )
    try:
        content = loadmat(str(path))
    except Exception as e:  # scipy's MatReadError, ValueError, OSError, ...: all unreadable
        raise EvaluationError(f"{path}: cannot read this MATLAB file ({e})") from e
    if key not in content:
        raise EvaluationError(f"{path}: has no variable '{key}'")
    blocks = np.asarray(content[key])
    if blocks.ndim != 5 or blocks.shape[-1] != 3 or blocks.dtype != np.uint8:
        raise EvaluationError(
            f"{path}: '{key}' is {blocks.shape} {blocks.dtype}, expected "
            "images x blocks x H x W x 3 uint8 (40 x 32 x 256 x 256 x 3)"
        )
    return blocks


def _sidd_samples(dataset: Path) -> list[Sample]:
    """The SIDD validation blocks, named ``IIII_KK`` (1-based) like the official PNGs."""
    noisy = _load_mat(dataset / f"{SIDD_NOISY}.mat", SIDD_NOISY)
    truth = _load_mat(dataset / f"{SIDD_GT}.mat", SIDD_GT)
    if noisy.shape != truth.shape:
        raise EvaluationError(
            f"{dataset}: the noisy blocks are {noisy.shape} but the ground truth {truth.shape}"
        )
    source = str(dataset / f"{SIDD_NOISY}.mat")
    return [
        Sample(
            f"{i + 1:04d}_{k + 1:02d}",
            f"{source} [{i + 1}, {k + 1}]",
            _block_loader(noisy, truth, i, k),
        )
        for i in range(noisy.shape[0])
        for k in range(noisy.shape[1])
    ]


def _block_loader(
    noisy: np.ndarray, truth: np.ndarray, i: int, k: int
) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    def load() -> tuple[np.ndarray, np.ndarray]:
        return noisy[i, k], truth[i, k]

    return load


# --------------------------------------------------------------------------- scoring


def check_outputs(
    samples: Sequence[Sample],
    results_dir: Path | None,
    save_dir: Path | None,
    *,
    overwrite: bool,
) -> None:
    """Refuse before any work when a results file or restored image would be replaced."""
    if overwrite:
        return
    planned = [results_dir / name for name in RESULT_FILES] if results_dir else []
    if save_dir is not None:
        planned += [save_dir / s.output_name for s in samples]
    existing = [p for p in planned if p.exists()]
    if existing:
        more = f" ({len(existing) - 1} more outputs too)" if len(existing) > 1 else ""
        raise EvaluationError(f"{existing[0]}: already exists{more}; use --overwrite to replace")


def _check_channels(
    sample: Sample, inputs: np.ndarray, target: np.ndarray, model: nn.Module
) -> None:
    """The model must take the input's channels and produce the target's."""
    model_in = int(getattr(model, "inp_channels", 3))
    model_out = int(getattr(model, "out_channels", 3))
    if inputs.shape[2] != model_in:
        dual_pixel = model_in == DUAL_PIXEL_CHANNELS
        hint = " (dual-pixel models take the left and right views)" if dual_pixel else ""
        raise EvaluationError(
            f"{sample.source}: the input has {inputs.shape[2]} channel(s) but the model "
            f"takes {model_in}{hint}; is this the model for the task?"
        )
    if target.shape[2] != model_out:
        raise EvaluationError(
            f"{sample.source}: the target has {target.shape[2]} channel(s) but the model "
            f"produces {model_out}"
        )


def evaluate_samples(
    model: nn.Module,
    task: str,
    samples: Sequence[Sample],
    *,
    tile: int | None = None,
    tile_overlap: int = 32,
    save_dir: Path | None = None,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> list[ImageResult]:
    """Restore and score every sample with ``task``'s protocol, in order.

    ``tile``/``tile_overlap`` are passed to :func:`restormer.inference.restore` (``None``:
    the full frame when it fits in memory, exactly like the official scripts). With
    ``save_dir`` the restored images are written there (atomically; an existing file is an
    error unless ``overwrite``). ``progress(done, total)`` is called after each image.
    """
    from restormer.inference import InferenceError, restore

    protocol = PROTOCOLS[task]
    results = []
    for done, sample in enumerate(samples, start=1):
        inputs, target = sample.load()
        _check_channels(sample, inputs, target, model)
        try:
            restored = restore(inputs, model, tile=tile, tile_overlap=tile_overlap)
        except InferenceError as e:
            raise EvaluationError(f"{sample.source}: {e}") from e
        results.append(ImageResult(sample.name, sample.sigma, score(task, restored, target)))
        if save_dir is not None:
            _save(save_dir / sample.output_name, restored, protocol.saved_bit_depth, overwrite)
        if progress is not None:
            progress(done, len(samples))
    return results


def _save(path: Path, restored: np.ndarray, bit_depth: int, overwrite: bool) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_image(path, from_float(restored, bit_depth), overwrite=overwrite)
    except ImageFileError as e:
        raise EvaluationError(str(e)) from e
    except OSError as e:
        raise EvaluationError(f"{path.parent}: cannot create the folder ({e.strerror or e})") from e


# --------------------------------------------------------------------------- reporting


def summarize(results: Sequence[ImageResult]) -> list[dict[str, object]]:
    """Mean of each number over the images: one row per sigma if there are sigmas, else one.

    Each row is ``{"group": "all" | "sigma=15", "images": n, <metric>: mean, ...}``.
    """
    groups: dict[str, list[ImageResult]] = {}
    for result in results:
        key = "all" if result.sigma is None else f"sigma={result.sigma}"
        groups.setdefault(key, []).append(result)
    rows: list[dict[str, object]] = []
    for key, members in groups.items():
        row: dict[str, object] = {"group": key, "images": len(members)}
        for metric in members[0].scores:
            row[metric] = math.fsum(m.scores[metric] for m in members) / len(members)
        rows.append(row)
    return rows


_FORMATS = {"psnr": "{:.4f}", "ssim": "{:.6f}", "mae": "{:.6f}"}


def _fmt(metric: str, value: object) -> str:
    return _FORMATS.get(metric, "{:.6g}").format(value)


def _metric_columns(metrics: Sequence[str]) -> list[str]:
    return [f"{m.upper()} (dB)" if m == "psnr" else m.upper() for m in metrics]


def results_table(results: Sequence[ImageResult], metrics: Sequence[str]) -> Table:
    """A rich table with one row per image."""
    with_sigma = any(r.sigma is not None for r in results)
    table = Table(title="per image")
    table.add_column("image")
    if with_sigma:
        table.add_column("sigma", justify="right")
    for column in _metric_columns(metrics):
        table.add_column(column, justify="right")
    for r in results:
        cells = [r.name] + ([str(r.sigma)] if with_sigma else [])
        table.add_row(*cells, *(_fmt(m, r.scores[m]) for m in metrics))
    return table


def summary_table(summary: Sequence[dict[str, object]], metrics: Sequence[str]) -> Table:
    """A rich table of :func:`summarize`'s rows."""
    table = Table(title="mean")
    table.add_column("group")
    table.add_column("images", justify="right")
    for column in _metric_columns(metrics):
        table.add_column(column, justify="right")
    for row in summary:
        table.add_row(str(row["group"]), str(row["images"]), *(_fmt(m, row[m]) for m in metrics))
    return table


def _json_number(value: object) -> object:
    """Finite floats as they are; inf/nan as None (JSON has no infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_results(
    directory: Path,
    results: Sequence[ImageResult],
    summary: Sequence[dict[str, object]],
    metadata: dict[str, object],
    *,
    overwrite: bool = False,
) -> tuple[Path, Path]:
    """Write ``results.csv`` (one row per image) and ``results.json`` (``metadata``, the
    images and the summary) into ``directory``, atomically; returns both paths."""
    metrics = list(results[0].scores) if results else []
    with_sigma = any(r.sigma is not None for r in results)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["image", *(["sigma"] if with_sigma else []), *metrics])
    for r in results:
        sigma = [r.sigma] if with_sigma else []
        writer.writerow([r.name, *sigma, *(repr(r.scores[m]) for m in metrics)])
    images = []
    for r in results:
        entry: dict[str, object] = {"image": r.name}
        if with_sigma:
            entry["sigma"] = r.sigma
        entry.update({m: _json_number(v) for m, v in r.scores.items()})
        images.append(entry)
    document = {
        **metadata,
        "metrics": metrics,
        "images": images,
        "summary": [{k: _json_number(v) for k, v in row.items()} for row in summary],
    }
    payload = json.dumps(document, indent=2, allow_nan=False) + "\n"
    paths = (directory / RESULT_FILES[0], directory / RESULT_FILES[1])
    try:
        directory.mkdir(parents=True, exist_ok=True)
        write_atomically(paths[0], text.getvalue().encode(), overwrite=overwrite)
        write_atomically(paths[1], payload.encode(), overwrite=overwrite)
    except FileExistsError as e:
        raise EvaluationError(f"{e.filename}: already exists (use --overwrite)") from e
    except OSError as e:
        raise EvaluationError(f"{directory}: cannot write the results ({e.strerror or e})") from e
    return paths
