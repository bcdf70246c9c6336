"""What every command shares: the app, the two consoles, one-line errors, model loading."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from restormer import __version__

app = typer.Typer(
    name="restormer",
    help="Restormer image restoration: restore photos, train and evaluate models, inspect weights,"
    " export to ONNX.",
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


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"


TlcOption = Annotated[
    int | None,
    typer.Option(
        "--tlc",
        metavar="WINDOW",
        help="TLC: attention statistics over WINDOW-pixel local windows instead of the "
        "whole image (about 1.5x the training crop, at least 16); 0: off. Default: the "
        "model's own (shipped models: what measured best for the task).",
        show_default=False,
    ),
]
"""``--tlc WINDOW`` of the commands that restore (restore, evaluate)."""

DeviceOption = Annotated[Device, typer.Option(help="Where to run the model.")]
PrecisionOption = Annotated[
    Precision,
    typer.Option(help="Arithmetic: fp32, or bf16 (faster only with native bfloat16 support)."),
]


ThreadsOption = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        help="CPU threads. Default: OMP_NUM_THREADS if set, else the cores the 1-minute load "
        "average leaves idle (at least 1): threads that wait for a busy core slow every step.",
        show_default=False,
    ),
]
"""``--threads N`` of the commands that run a model on the CPU (restore, evaluate)."""


def idle_cores(cores: int, load: float) -> int:
    """Cores that ``load`` (runnable processes, as the load average counts them) leaves free.

    Why not always all of them: an OpenMP thread team waits at every barrier for its slowest
    thread, so one thread that shares a core with another busy process stalls all of them
    (measured here: 59 s instead of 11 s for one restore on a 2-core machine with two busy
    processes)."""
    return max(1, cores - round(load))


def set_threads(threads: int | None) -> int:
    """Set torch's CPU thread count: ``threads``, or OMP_NUM_THREADS when the user set it,
    or the cores the load leaves idle. Returns the count in use."""
    import torch

    if threads is None and not os.environ.get("OMP_NUM_THREADS"):
        cores = torch.get_num_threads()
        try:
            threads = idle_cores(cores, os.getloadavg()[0])
        except (AttributeError, OSError):  # no load average (Windows): keep torch's own
            threads = cores
    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


class UserError(Exception):
    """A problem the user can fix; its message is printed as one line."""


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", markup=True)
    raise typer.Exit(code)


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


def load_model_or_fail(source: str | Path, device: str, precision: str = "fp32"):  # type: ignore[no-untyped-def]
    from restormer.weights import WeightsError, load_model

    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            fail("--device cuda: no CUDA device is available")
    try:
        return load_model(source, device=device, precision=precision)
    except WeightsError as e:
        fail(str(e))


@contextmanager
def progress_bar() -> Iterator[Progress]:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(elapsed_when_finished=True),
        console=err,
        transient=True,
    ) as progress:
        yield progress


def prepare_output_dir(output_dir: Path) -> list[Path]:
    """Create ``output_dir`` if needed and make sure files can be written there, or fail.

    Returns the folders this call created, outermost first, so that a run which ends up
    writing nothing can take them away again with :func:`remove_empty_folders`.
    """
    created = [f for f in (*reversed(output_dir.parents), output_dir) if not f.exists()]
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        remove_empty_folders(created)
        fail(f"{output_dir}: cannot create the output folder ({e.strerror or e})")
    try:  # a real probe: permissions alone miss read-only mounts and root's special folders
        with tempfile.TemporaryFile(dir=output_dir):
            pass
    except OSError as e:
        remove_empty_folders(created)
        fail(f"{output_dir}: the output folder is not writable ({e.strerror or e})")
    return created


def print_summary(verb: str, done: int, total: int, output_dir: Path, failed: bool) -> None:
    """The run's last line: how many images were done, and where to (none: nothing written)."""
    place = f"into {escape(str(output_dir))}" if done else "(nothing written)"
    plural = "s" if total != 1 else ""
    (err if failed else out).print(f"{verb} {done} of {total} image{plural} {place}")


def remove_empty_folders(created: list[Path]) -> None:
    """Remove the folders a run created (outermost first) that are still empty, innermost first.

    A folder something was written to, or one someone else filled meanwhile, stays.
    """
    for folder in reversed(created):
        with contextlib.suppress(OSError):  # not empty, or already gone: keep what is there
            folder.rmdir()
