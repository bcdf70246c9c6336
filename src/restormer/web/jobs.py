"""The web app's engine: models, a bounded job queue, worker threads, limits and cleanup.

Nothing here knows about HTTP. :class:`JobManager` owns a private temporary folder (created
with ``tempfile.mkdtemp``, so readable by this user only, and removed by :meth:`close`); each
job gets a sub-folder named by its random id, and uploaded files are stored there under fixed
names (``upload-0``, ``upload-1``), so a client's file name never becomes a path. The original
names are kept only as display text, cleaned of anything but printable characters.

Work runs on ``workers`` threads (torch releases the GIL in its kernels, so the event loop of
the server stays responsive). Each restore reports tile progress through
:func:`restormer.inference.restore_into`'s ``progress`` callback; the same callback checks the
job's cancel flag and time limit and raises, which is what actually stops the work between two
tiles. Finished jobs keep their result for ``keep_results`` seconds, then a janitor thread
deletes the files and forgets the job.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import tempfile
import threading
import time
import unicodedata
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from restormer.inference import InferenceError, restore_into
from restormer.io import (
    DEFAULT_MAX_PIXELS,
    ImageData,
    ImageFileError,
    as_gray,
    read_image,
    write_image,
)
from restormer.shipped import shipped_path
from restormer.tasks import TASKS
from restormer.weights import WeightsError, load_model

__all__ = [
    "JobError",
    "JobManager",
    "ModelCatalog",
    "ModelEntry",
    "QueueFull",
    "Settings",
    "Upload",
    "check_upload",
    "display_name",
    "download_name",
]

logger = logging.getLogger("restormer.web")

STATES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = frozenset({"done", "failed", "cancelled"})
_READ_FORMATS = ("PNG", "JPEG", "TIFF", "WEBP", "BMP")  # what restormer.io.read_image reads
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class Settings:
    """Everything the server can be told on the command line, with safe defaults."""

    weights: dict[str, Path] = field(default_factory=dict)
    """Extra models, by the name the page and the API use for them."""
    workers: int = 1
    max_queue: int = 8
    """Jobs waiting for a worker (running ones not counted); one more gets HTTP 429."""
    job_timeout: float = 600.0
    """Seconds a job may run (decoding, restoring, writing; not its time in the queue)."""
    keep_results: float = 3600.0
    """Seconds a finished job's result stays available."""
    max_results: int = 100
    """Finished jobs kept at most; the oldest go first when there are more."""
    max_upload_bytes: int = 100 * 2**20
    """Largest request body (all images of one job together)."""
    max_pixels: int = DEFAULT_MAX_PIXELS
    """Largest image, width x height, as ``restormer restore --max-pixels``."""
    tile: int = 256
    """Default tile size of a job (0: automatic, full frame when it fits in memory)."""
    device: str = "cpu"
    token: str | None = None
    """Bearer token every API call must carry; None: no token (loopback only)."""
    temp_parent: Path | None = None
    """Where the private temporary folder goes (None: the system's default)."""


class JobError(Exception):
    """A request the server refuses, with the HTTP status that says why and one line of text."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class QueueFull(JobError):
    """Every queue slot is taken; ``retry_after`` is the server's estimate in seconds."""

    def __init__(self, retry_after: int, max_queue: int) -> None:
        super().__init__(
            429,
            f"the queue is full ({max_queue} jobs waiting); try again in {retry_after} s",
            {"Retry-After": str(retry_after)},
        )
        self.retry_after = retry_after


class _Stop(Exception):
    """Raised from the progress callback to end a job between two tiles."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # "cancelled" or "timeout"


# --------------------------------------------------------------------------------- models


@dataclass
class ModelEntry:
    """One model the page can pick: a task (shipped model or not) or a ``--weights`` file."""

    name: str
    kind: str  # "task" or "weights"
    description: str
    path: Path | None  # None: a task without a shipped model in this install
    dual_pixel: bool = False
    model: Any = None  # the loaded torch module, once loaded

    @property
    def available(self) -> bool:
        return self.path is not None

    def public(self) -> dict[str, Any]:
        """What ``GET /api/models`` says about the model (never the file's location)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "available": self.available,
            "dual_pixel": self.dual_pixel,
            "images": 2 if self.dual_pixel else 1,
        }


class ModelCatalog:
    """The seven tasks plus the server's weights files; models load once and are shared.

    ``--weights`` files are loaded when the catalog is made, so a bad file stops the server
    before it listens; shipped task models load on their first job (most servers use one).
    A loaded model is used by all workers at once: inference changes no module state.
    """

    def __init__(self, weights: dict[str, Path], device: str = "cpu") -> None:
        self.device = device
        self._lock = threading.Lock()
        self.entries: dict[str, ModelEntry] = {}
        for task, description in TASKS.items():
            path = shipped_path(task)
            self.entries[task] = ModelEntry(
                name=task,
                kind="task",
                description=description,
                path=path if path.is_file() else None,
                dual_pixel=task == "dual-pixel-defocus-deblurring",
            )
        for name, path in weights.items():
            model = load_model(path, device=device)  # WeightsError: the caller reports it
            self.entries[name] = ModelEntry(
                name=name,
                kind="weights",
                description=f"weights file {Path(path).name} "
                f"({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters"
                f"{', dual-pixel' if model.dual_pixel_task else ''})",
                path=Path(path),
                dual_pixel=bool(model.dual_pixel_task),
                model=model,
            )

    def get(self, name: str) -> ModelEntry:
        """The entry called ``name``, or a 404/409 JobError for unknown or missing ones."""
        entry = self.entries.get(name)
        if entry is None:
            raise JobError(404, f"unknown model '{name}'; GET /api/models lists them")
        if not entry.available:
            raise JobError(409, f"{name}: this install has no shipped model for the task")
        return entry

    def load(self, name: str) -> Any:
        """The torch module of ``name``, loading it on first use (one load, whoever asks)."""
        entry = self.get(name)
        with self._lock:
            if entry.model is None:
                assert entry.path is not None
                entry.model = load_model(entry.path, device=self.device)
            return entry.model


# --------------------------------------------------------------------------------- uploads


@dataclass
class Upload:
    """One uploaded file: its display name and an open binary file positioned anywhere."""

    name: str
    file: BinaryIO


def display_name(filename: str | None, fallback: str = "image") -> str:
    """A client's file name as safe display text: last path part, printable, at most 100 chars.

    Used in messages, JSON and the download name only; it never names a file on disk.
    """
    text = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(c for c in text if unicodedata.category(c)[0] not in "CZ" or c == " ")
    text = text.strip(" .")[:100]
    return text or fallback


def download_name(name: str) -> str:
    """``<stem>-restored.png`` from a display name, reduced to ASCII letters, digits, ``._-``."""
    stem = name.rsplit(".", 1)[0] if "." in name else name
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:80] or "image"
    return f"{stem}-restored.png"


def check_upload(upload: Upload, max_pixels: int) -> tuple[int, int] | None:
    """Refuse what is clearly not a usable image, from its header only (cheap, no decoding).

    Raises JobError 415 (not an image / unsupported format) or 413 (more pixels than
    ``max_pixels``). Returns (width, height) when the header tells, else None (e.g. a TIFF
    layout only the full decoder understands); the worker's ``read_image`` checks everything
    again with the same limit.
    """
    file = upload.file
    file.seek(0)
    head = file.read(16)
    file.seek(0)
    if not head:
        raise JobError(415, f"{upload.name}: empty file")
    try:
        with Image.open(file, formats=_READ_FORMATS) as im:
            width, height = im.size
            im.verify()  # structure and checksums, without decoding (a no-op for some formats)
    except Image.DecompressionBombError:
        # Pillow's own bomb limit (about 179 MP) tripped: refuse if ours is lower.
        if max_pixels < 2 * (Image.MAX_IMAGE_PIXELS or 0):
            raise JobError(
                413, f"{upload.name}: image too large (limit {max_pixels:,} pixels)"
            ) from None
        return None
    except UnidentifiedImageError:
        if head.startswith(_TIFF_MAGIC):
            return None
        raise JobError(
            415, f"{upload.name}: not a supported image (PNG, JPEG, TIFF, WebP or BMP)"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise JobError(415, f"{upload.name}: truncated or corrupt image file") from e
    finally:
        file.seek(0)
    if width * height > max_pixels:
        raise JobError(
            413,
            f"{upload.name}: {width}x{height} is {width * height:,} pixels, more than this "
            f"server's limit of {max_pixels:,}",
        )
    return width, height


# --------------------------------------------------------------------------------- jobs


@dataclass
class Job:
    """One restoration: its inputs, options, state and progress (guarded by the manager)."""

    id: str
    model: str
    names: list[str]
    directory: Path
    tile: int | None
    ensemble: bool
    state: str = "queued"
    phase: str = "waiting for a worker"
    tiles_done: int = 0
    tiles_total: int = 0
    error: str | None = None
    width: int | None = None
    height: int | None = None
    bit_depth: int | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    has_input: bool = False
    has_result: bool = False
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def uploads(self) -> list[Path]:
        return [self.directory / f"upload-{i}" for i in range(len(self.names))]

    @property
    def preview_path(self) -> Path:
        return self.directory / "input.png"

    @property
    def result_path(self) -> Path:
        return self.directory / "result.png"


class JobManager:
    """Queue, workers, limits and cleanup of restoration jobs (thread-safe)."""

    def __init__(self, settings: Settings, catalog: ModelCatalog) -> None:
        self.settings = settings
        self.catalog = catalog
        self.root = Path(tempfile.mkdtemp(prefix="restormer-serve-", dir=settings.temp_parent))
        self._jobs: dict[str, Job] = {}
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running = 0
        self._mean_seconds = 5.0  # running estimate of a job's duration, for Retry-After
        self.completed = 0

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the worker threads and the janitor."""
        for i in range(self.settings.workers):
            thread = threading.Thread(target=self._work, name=f"restormer-worker-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        janitor = threading.Thread(target=self._janitor, name="restormer-janitor", daemon=True)
        janitor.start()
        self._threads.append(janitor)

    def close(self, timeout: float = 30.0) -> None:
        """Cancel every job, wait for the workers (they stop at the next tile), delete all files."""
        with self._cond:
            self._stopping = True
            self._stop.set()
            for job in self._jobs.values():
                job.cancel.set()
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        shutil.rmtree(self.root, ignore_errors=True)

    # ----------------------------------------------------------------- requests

    def check_images(self, model: str, count: int) -> None:
        """Raise JobError unless ``model`` exists, is available and takes ``count`` images."""
        entry = self.catalog.get(model)
        if count != (2 if entry.dual_pixel else 1):
            what = "two images (left and right view)" if entry.dual_pixel else "one image"
            raise JobError(422, f"{model} takes {what}, not {count}")

    def check_room(self) -> None:
        """Raise QueueFull now, before an upload is copied, if no slot is free."""
        with self._cond:
            self._check_room_locked()

    def _check_room_locked(self) -> None:
        if self._stopping:
            raise JobError(503, "the server is shutting down")
        if len(self._queue) >= self.settings.max_queue:
            raise QueueFull(self._retry_after_locked(), self.settings.max_queue)

    def _retry_after_locked(self) -> int:
        """Seconds until a slot is likely free: a slot frees when any worker finishes its job,
        on average half a job's time (running mean) shared among the workers; 1 to 60."""
        estimate = self._mean_seconds / (2 * max(self.settings.workers, 1))
        return int(min(max(math.ceil(estimate), 1), 60))

    def submit(self, model: str, uploads: list[Upload], tile: int | None, ensemble: bool) -> Job:
        """Store the uploads in a new job folder and queue the job (or raise QueueFull)."""
        self.check_images(model, len(uploads))
        self.check_room()
        job_id = uuid.uuid4().hex  # random: ids cannot be guessed from one another
        job = Job(
            id=job_id,
            model=model,
            names=[u.name for u in uploads],
            directory=self.root / job_id,
            tile=tile,
            ensemble=ensemble,
        )
        job.directory.mkdir(mode=0o700)
        try:
            for upload, target in zip(uploads, job.uploads, strict=True):
                upload.file.seek(0)
                with open(target, "xb") as out:
                    shutil.copyfileobj(upload.file, out, _COPY_CHUNK)
            with self._cond:
                self._check_room_locked()  # the definitive check: others may have come first
                self._jobs[job.id] = job
                self._queue.append(job)
                self._cond.notify()
        except BaseException:
            shutil.rmtree(job.directory, ignore_errors=True)
            raise
        return job

    def status(self, job_id: str) -> dict[str, Any]:
        """A snapshot of the job for ``GET /api/jobs/{id}``."""
        with self._cond:
            return self._describe(self._find(job_id))

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job; forget a finished one (and delete its files)."""
        with self._cond:
            job = self._find(job_id)
            if job.state == "queued":
                self._queue.remove(job)
                self._finish_locked(job, "cancelled", "cancelled before it started")
                shutil.rmtree(job.directory, ignore_errors=True)
            elif job.state == "running":
                job.cancel.set()  # the worker stops at the next tile and cleans up
                job.phase = "cancelling"
            else:
                self._forget_locked(job)
                snapshot = self._describe(job)
                snapshot["state"] = "deleted"
                return snapshot
            return self._describe(job)

    def open_file(self, job_id: str, which: str) -> tuple[BinaryIO, Job]:
        """An open file of the job: ``"input"`` (the 8-bit preview) or ``"result"``.

        Opened under the lock, so a job expiring at the same moment cannot make it vanish
        half-way through the response (an unlinked file stays readable while open).
        """
        with self._cond:
            job = self._find(job_id)
            ready = job.has_input if which == "input" else job.has_result
            if not ready:
                if job.state in FINISHED:
                    raise JobError(409, f"job {job.state}: no {which} image")
                raise JobError(409, f"the {which} image is not ready yet (job {job.state})")
            path = job.preview_path if which == "input" else job.result_path
            return open(path, "rb"), job  # the response closes it

    def health(self) -> dict[str, Any]:
        """Counts for ``GET /healthz``."""
        with self._cond:
            return {
                "status": "stopping" if self._stopping else "ok",
                "workers": self.settings.workers,
                "running": self._running,
                "queued": len(self._queue),
                "max_queue": self.settings.max_queue,
                "jobs": len(self._jobs),
                "completed": self.completed,
            }

    def _find(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise JobError(404, "no such job (finished jobs are deleted after a while)")
        return job

    def _describe(self, job: Job) -> dict[str, Any]:
        now = time.time()
        position = None
        if job.state == "queued":
            position = next((i for i, j in enumerate(self._queue) if j is job), None)
        seconds = None if job.started is None else round((job.finished or now) - job.started, 3)
        expires = None
        if job.finished is not None:
            expires = round(max(job.finished + self.settings.keep_results - now, 0.0), 1)
        total = job.tiles_total
        return {
            "id": job.id,
            "state": job.state,
            "phase": job.phase,
            "model": job.model,
            "files": list(job.names),
            "tile": job.tile or 0,
            "ensemble": job.ensemble,
            "tiles_done": job.tiles_done,
            "tiles_total": total,
            "progress": 1.0 if job.state == "done" else (job.tiles_done / total if total else 0.0),
            "queue_position": position,
            "error": job.error,
            "width": job.width,
            "height": job.height,
            "bit_depth": job.bit_depth,
            "seconds": seconds,
            "expires_in": expires,
            "input_url": f"/api/jobs/{job.id}/input" if job.has_input else None,
            "result_url": f"/api/jobs/{job.id}/result" if job.has_result else None,
            "download_name": download_name(job.names[0]),
        }

    def _finish_locked(self, job: Job, state: str, message: str | None = None) -> None:
        job.state = state
        job.phase = state
        job.error = message if state != "done" else None
        job.finished = time.time()
        finished = sorted((j for j in self._jobs.values() if j.state in FINISHED),
                          key=lambda j: j.finished or 0.0)  # fmt: skip
        for old in finished[: max(len(finished) - self.settings.max_results, 0)]:
            self._forget_locked(old)

    def _forget_locked(self, job: Job) -> None:
        self._jobs.pop(job.id, None)
        shutil.rmtree(job.directory, ignore_errors=True)

    # ----------------------------------------------------------------- workers

    def _work(self) -> None:
        """Worker thread: take the oldest queued job, run it, record how it ended."""
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = self._queue.popleft()
                job.state, job.phase, job.started = "running", "starting", time.time()
                self._running += 1
            state, message = "done", None
            try:
                self._run(job)
            except _Stop as stop:
                state = "cancelled" if stop.reason == "cancelled" else "failed"
                message = str(stop)
            except (ImageFileError, InferenceError, WeightsError, JobError) as e:
                state, message = "failed", str(e)
            except MemoryError:
                state, message = "failed", "not enough memory for this image (try a smaller tile)"
            except Exception as e:  # a bug: keep the server alive and say so
                logger.exception("job %s failed", job.id)
                state, message = "failed", f"internal error: {type(e).__name__}: {e}"
            with self._cond:
                self._running -= 1
                if state != "done":
                    shutil.rmtree(job.directory, ignore_errors=True)
                    job.has_input = job.has_result = False
                else:
                    self.completed += 1
                    took = time.time() - (job.started or time.time())
                    self._mean_seconds = 0.7 * self._mean_seconds + 0.3 * took
                self._finish_locked(job, state, message)

    def _run(self, job: Job) -> None:
        """Decode, restore with tile progress, write the result in the input's bit depth."""
        deadline = time.monotonic() + self.settings.job_timeout

        def check() -> None:
            if job.cancel.is_set():
                raise _Stop("cancelled", "cancelled")
            if time.monotonic() > deadline:
                raise _Stop(
                    "timeout",
                    f"stopped: the job took longer than this server's time limit "
                    f"of {self.settings.job_timeout:g} s",
                )

        def on_tile(done: int, total: int) -> None:
            job.tiles_done, job.tiles_total = done, total
            check()

        job.phase = "loading the model"
        model = self.catalog.load(job.model)
        check()
        job.phase = "decoding"
        image = _decode(job.uploads, job.names, self.settings.max_pixels)
        if image.pixels.shape[2] == 3 and int(model.inp_channels) == 1:
            image = as_gray(image)  # a gray model restores a colour photo's luma, as the CLI
        pixels = image.pixels
        job.height, job.width = pixels.shape[:2]
        job.bit_depth = image.bit_depth
        for upload in job.uploads:  # decoded: the original bytes are no longer needed
            upload.unlink(missing_ok=True)
        check()
        job.phase = "writing the preview"
        write_image(job.preview_path, pixels[..., :3], alpha=image.alpha, bit_depth=8)
        job.has_input = True
        check()
        job.phase = "restoring"
        channels = model.out_channels if model.dual_pixel_task else pixels.shape[2]
        if channels == pixels.shape[2] and pixels.flags.writeable:
            result = pixels  # restored in place, as the CLI does: one image buffer, not two
        else:
            result = np.empty((job.height, job.width, channels), dtype=pixels.dtype)
        overlap = 32 if job.tile is None else min(32, job.tile // 4)  # < tile / 2, as required
        restore_into(pixels, model, result, tile=job.tile, tile_overlap=overlap,
                     ensemble=job.ensemble, progress=on_tile)  # fmt: skip
        job.phase = "writing the result"
        write_image(job.result_path, result, alpha=image.alpha, icc_profile=image.icc_profile)
        job.has_result = True

    def _janitor(self) -> None:
        """Delete finished jobs once their time is up (checks a few times per keep period)."""
        interval = min(max(self.settings.keep_results / 4, 0.2), 30.0)
        while True:
            with self._cond:
                now = time.time()
                for job in list(self._jobs.values()):
                    if job.finished is not None and now - job.finished > self.settings.keep_results:
                        self._forget_locked(job)
            if self._stop.wait(interval):  # its own event: a job's notify must reach a worker
                return


def _decode(paths: Iterable[Path], names: list[str], max_pixels: int) -> ImageData:
    """Decode the job's image; two views (dual-pixel) are checked and stacked into 6 channels.

    Error messages name the upload, never the temporary file.
    """
    views = []
    for path, name in zip(paths, names, strict=True):
        try:
            views.append(read_image(path, max_pixels=max_pixels))
        except ImageFileError as e:
            raise ImageFileError(str(e).replace(str(path), name)) from None
    if len(views) == 1:
        return views[0]
    left, right = views
    for view, name in zip(views, names, strict=True):
        if view.pixels.shape[2] != 3:
            raise ImageFileError(f"{name}: a dual-pixel view must be an RGB image")
    if left.pixels.shape != right.pixels.shape or left.pixels.dtype != right.pixels.dtype:
        raise ImageFileError(f"{names[1]}: size or bit depth differs from the left view {names[0]}")
    return ImageData(np.concatenate([left.pixels, right.pixels], axis=2), None,
                     left.icc_profile, left.format)  # fmt: skip
