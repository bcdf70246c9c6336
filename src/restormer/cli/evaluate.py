"""``restormer evaluate``: score a model on an official test set, as the paper did."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress

from restormer.cli.common import (
    Device,
    DeviceOption,
    Precision,
    PrecisionOption,
    ThreadsOption,
    TlcOption,
    app,
    err,
    fail,
    load_model_or_fail,
    out,
    progress_bar,
    set_threads,
)
from restormer.tasks import TASKS


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
    tlc: TlcOption = None,
    device: DeviceOption = Device.cpu,
    precision: PrecisionOption = Precision.fp32,
    threads: ThreadsOption = None,
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
    from restormer.local_attention import check_window

    if task not in TASKS:
        fail(f"unknown task '{task}'; choose one of: {', '.join(TASKS)}")
    try:
        window = check_window(tlc) if tlc is not None else None
    except ValueError as e:
        fail(f"--tlc: {e}")
    results_dir = output_dir or save_images or Path("evaluation") / task
    try:
        samples = evaluation.discover_samples(task, dataset, sigmas=sigma, limit=limit)
        evaluation.check_outputs(samples, results_dir, save_images, overwrite=overwrite)
    except evaluation.EvaluationError as e:
        fail(escape(str(e)))  # file names may hold [brackets]
    set_threads(threads)
    model = load_model_or_fail(
        weights if weights is not None else task, device.value, precision.value
    )
    if tlc is not None:
        model.set_local_attention(window)
    try:
        # A bar only on a terminal: in logs it is noise (and would leave a blank line).
        with progress_bar() if err.is_terminal else contextlib.nullcontext() as progress:
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
            "tlc": model.local_attention.window if model.local_attention else None,
            "ensemble": model.self_ensemble,
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
