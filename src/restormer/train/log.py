"""What a training run tells its user: a progress bar, a plain-text log, TensorBoard scalars."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class TrainingLog:
    """Rank 0's outputs. ``enabled=False`` (other ranks) makes every call a no-op."""

    def __init__(
        self,
        log_file: Path | None,
        tb_dir: Path | None,
        *,
        total: int,
        start: int,
        enabled: bool = True,
        show_progress: bool = True,
    ) -> None:
        self.enabled = enabled
        self.console = Console(stderr=True, highlight=False)
        self._file: TextIO | None = None
        self._tb = None
        self._progress: Progress | None = None
        if not enabled:
            return
        if log_file is not None:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            self._file = log_file.open("a", encoding="utf-8")
        if tb_dir is not None:
            self._tb = _tensorboard_writer(tb_dir, self)
        if show_progress:
            self._progress = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._task = self._progress.add_task("train", total=total, completed=start, status="")
            self._progress.start()
        self._window_start = time.perf_counter()
        self._window_iters = 0

    def write(self, message: str) -> None:
        """A line for the log file and the console."""
        if not self.enabled:
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        if self._file is not None:
            self._file.write(f"{stamp} {message}\n")
            self._file.flush()
        self.console.print(message, markup=False)

    def step(self, iteration: int, lr: float, loss: float, print_now: bool, total: int) -> None:
        """Called after every iteration: advance the bar; every ``print_freq``, log a line."""
        if not self.enabled:
            return
        self._window_iters += 1
        elapsed = time.perf_counter() - self._window_start
        speed = self._window_iters / elapsed if elapsed > 0 else 0.0
        if self._progress is not None:
            status = f"lr {lr:.2e} loss {loss:.4e} {speed:.2f} it/s"
            self._progress.update(self._task, completed=iteration, status=status)
        if self._tb is not None:
            self._tb.add_scalar("losses/l_pix", loss, iteration)
            self._tb.add_scalar("lr", lr, iteration)
        if print_now:
            eta = (total - iteration) / speed if speed > 0 else float("nan")
            self.write(
                f"[iter {iteration:,}/{total:,}] lr {lr:.3e} loss {loss:.4e} "
                f"{speed:.2f} it/s eta {_duration(eta)}"
            )
            self._window_start = time.perf_counter()
            self._window_iters = 0

    def scalars(self, iteration: int, values: dict[str, float], prefix: str) -> None:
        if self.enabled and self._tb is not None:
            for name, value in values.items():
                self._tb.add_scalar(f"{prefix}/{name}", value, iteration)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._file is not None:
            self._file.close()
            self._file = None


def _tensorboard_writer(folder: Path, log: TrainingLog):  # type: ignore[no-untyped-def]
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.write(
            "note: use_tb_logger is on but TensorBoard is not installed "
            "(pip install 'restormer[train]'); logging to the text file only"
        )
        return None
    return SummaryWriter(log_dir=str(folder))


def _duration(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):  # nan or inf: no estimate yet
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
