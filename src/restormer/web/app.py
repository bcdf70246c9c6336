"""The HTTP side of ``restormer serve``: routes, the guard in front of them, the static page.

:func:`create_app` builds a FastAPI application around a :class:`~restormer.web.jobs.JobManager`.
A small ASGI guard runs before any route, and before a request body is read:

* a Host header that is not a loopback name is refused while the server has no token, so a web
  page on another site cannot reach the API through DNS rebinding;
* requests with an ``Origin`` of another site are refused (a cross-site form post needs no
  CORS preflight, so this is what stops other pages from submitting jobs);
* ``/api/...`` needs ``Authorization: Bearer <token>`` when the server has a token;
* a job upload must declare its size (``Content-Length``), and one over the limit gets 413
  before a byte of it is stored.

Every error is JSON ``{"detail": "<one readable line>"}``; the page shows that line as is.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from restormer import __version__
from restormer.web.jobs import (
    JobError,
    JobManager,
    ModelCatalog,
    Settings,
    Upload,
    check_upload,
    display_name,
    download_name,
)

__all__ = ["bind_socket", "create_app", "is_loopback"]

STATIC = Path(__file__).resolve().parent / "static"
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
_CHUNK = 1 << 16
_SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
        b"style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
        b"frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is only reachable from this machine."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready socket bound to ``host:port`` (port 0: a free port, see getsockname)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


# ------------------------------------------------------------------------------ API schema


class ModelInfo(BaseModel):
    name: str = Field(description="What POST /api/jobs takes as `model`.")
    kind: str = Field(description="`task` (a shipped model) or `weights` (a --weights file).")
    description: str
    available: bool = Field(description="False for a task without a shipped model here.")
    dual_pixel: bool
    images: int = Field(description="Images a job takes: 1, or 2 (left and right view).")


class ModelList(BaseModel):
    models: list[ModelInfo]
    defaults: dict[str, Any] = Field(description="Job options used when a request omits them.")
    limits: dict[str, Any] = Field(description="The server's limits (bytes, pixels, seconds).")
    auth: bool = Field(description="Whether API calls need a bearer token.")


class JobStatus(BaseModel):
    id: str
    state: str = Field(description="queued, running, done, failed or cancelled (deleted: gone).")
    phase: str = Field(description="What a running job is doing, in words.")
    model: str
    files: list[str] = Field(description="The uploaded file names (display only).")
    tile: int = Field(description="Tile size (0: automatic).")
    ensemble: bool
    tiles_done: int
    tiles_total: int
    progress: float = Field(description="tiles_done / tiles_total, 1.0 when done.")
    queue_position: int | None = Field(description="0: next to run; null unless queued.")
    error: str | None = Field(description="Why the job failed or stopped, in one line.")
    width: int | None
    height: int | None
    bit_depth: int | None = Field(description="8 or 16; the result has the same.")
    seconds: float | None = Field(description="Run time so far, or in all once finished.")
    expires_in: float | None = Field(description="Seconds until a finished job is deleted.")
    input_url: str | None
    result_url: str | None
    download_name: str


class Health(BaseModel):
    status: str
    workers: int
    running: int
    queued: int
    max_queue: int
    jobs: int
    completed: int


class ErrorBody(BaseModel):
    detail: str


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    described = {
        401: "Missing or wrong bearer token.",
        404: "No such job or model.",
        409: "Not possible in the job's or model's current state.",
        411: "The upload did not declare its size (Content-Length).",
        413: "Upload or image larger than the server's limits.",
        415: "Not an image, or a format the server cannot read.",
        422: "A bad option or the wrong number of images.",
        429: "The queue is full; the Retry-After header says when to try again.",
    }
    return {c: {"model": ErrorBody, "description": described[c]} for c in codes}


# ------------------------------------------------------------------------------ the guard


class _Guard:
    """ASGI middleware: host, origin, token and upload-size checks, plus security headers."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.token = settings.token.encode() if settings.token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        problem = self._check(scope, headers)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_SECURITY_HEADERS]
            await send(message)

        if problem is not None:
            status, text, extra = problem
            response = JSONResponse({"detail": text}, status_code=status, headers=extra)
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def _check(
        self, scope: Scope, headers: dict[str, str]
    ) -> tuple[int, str, dict[str, str]] | None:
        path: str = scope["path"]
        host = headers.get("host", "")
        if self.token is None and not is_loopback(_hostname(host)):
            return 403, f"this server answers only to localhost, not to '{host}'", {}
        origin = headers.get("origin")
        if origin is not None and origin != "null" and origin.split("://", 1)[-1] != host:
            return 403, "requests from other sites are not allowed", {}
        if not path.startswith("/api/"):
            return None
        if self.token is not None:
            scheme, _, given = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), self.token):
                return 401, "a valid access token is required", {"WWW-Authenticate": "Bearer"}
        if scope["method"] == "POST" and path.rstrip("/") == "/api/jobs":
            length = headers.get("content-length")
            if length is None or not length.isdigit():
                return 411, "the upload must say its size (Content-Length)", {}
            if int(length) > self.settings.max_upload_bytes:
                limit = self.settings.max_upload_bytes / 2**20
                return 413, f"upload too large: the limit is {limit:g} MiB per job", {}
        return None


def _hostname(host: str) -> str:
    """The name part of a Host header (``[::1]:8000`` -> ``::1``, ``a:80`` -> ``a``)."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


# ------------------------------------------------------------------------------ the app


def create_app(settings: Settings) -> FastAPI:
    """The web application; loads the ``--weights`` files now (WeightsError if one is bad).

    The job manager's temporary folder exists from here on; the application's shutdown (or
    ``app.state.manager.close()`` if it never starts) removes it.
    """
    catalog = ModelCatalog(settings.weights, settings.device)
    manager = JobManager(settings, catalog)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        manager.start()
        try:
            yield
        finally:
            await run_in_threadpool(manager.close)

    app = FastAPI(
        title="restormer serve",
        version=__version__,
        description="Restore photos with Restormer: upload, follow the tile progress, download "
        "the result in the input's bit depth. With a token, every /api call needs "
        "`Authorization: Bearer <token>`.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's own pages load scripts from a CDN; /docs is local instead
        redoc_url=None,
    )
    app.state.manager = manager
    app.add_middleware(_Guard, settings=settings)

    @app.exception_handler(JobError)
    async def job_error(_: Request, exc: JobError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ())[1:]) or "request"
            parts.append(f"{where}: {error.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(parts)}, 422)

    app.include_router(_api(manager, settings), prefix="/api")

    @app.get("/healthz", response_model=Health, tags=["server"], summary="Liveness and load")
    def healthz() -> dict[str, Any]:
        """Queue and worker counts; needs no token (it reveals nothing about jobs)."""
        return manager.health()

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/docs", include_in_schema=False)
    def docs() -> FileResponse:
        return FileResponse(STATIC / "docs.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _api(manager: JobManager, settings: Settings) -> APIRouter:
    """The /api routes."""
    router = APIRouter(tags=["jobs"])

    @router.get("/models", response_model=ModelList, tags=["models"], responses=_errors(401))
    def list_models() -> dict[str, Any]:
        """The seven tasks (available where this install ships a model) and the weights files
        the server was started with, plus the default options and the limits."""
        return {
            "models": [entry.public() for entry in manager.catalog.entries.values()],
            "defaults": {"tile": settings.tile, "ensemble": False},
            "limits": {
                "max_upload_bytes": settings.max_upload_bytes,
                "max_pixels": settings.max_pixels,
                "max_queue": settings.max_queue,
                "job_timeout": settings.job_timeout,
                "keep_results": settings.keep_results,
            },
            "auth": settings.token is not None,
        }

    @router.post(
        "/jobs",
        status_code=202,
        response_model=JobStatus,
        responses=_errors(401, 404, 409, 411, 413, 415, 422, 429),
    )
    async def create_job(
        image: Annotated[
            list[UploadFile],
            File(description="The photo; for a dual-pixel model two, left view first."),
        ],
        model: Annotated[str, Form(description="A name from GET /api/models.")],
        tile: Annotated[
            int | None,
            Form(
                description="Tile size, a multiple of 8 from 16 to 1024; 0: automatic. "
                "Default: the server's --tile."
            ),
        ] = None,
        ensemble: Annotated[
            bool, Form(description="Self-ensemble (8x slower; dual-pixel 4x).")
        ] = False,
    ) -> JSONResponse:
        """Queue a restoration; answers at once with the job (202) and its URL (Location)."""
        tile = settings.tile if tile is None else tile
        if tile != 0 and not (16 <= tile <= 1024 and tile % 8 == 0):
            raise JobError(422, f"tile: {tile} is not 0 or a multiple of 8 from 16 to 1024")
        manager.check_images(model, len(image))  # 404, 409 or 422
        manager.check_room()  # 429 before any work on the upload
        uploads = [
            Upload(display_name(f.filename, f"image-{i + 1}"), f.file) for i, f in enumerate(image)
        ]
        for upload in uploads:
            await run_in_threadpool(check_upload, upload, settings.max_pixels)
        job = await run_in_threadpool(manager.submit, model, uploads, tile or None, ensemble)
        status = manager.status(job.id)
        return JSONResponse(status, 202, headers={"Location": f"/api/jobs/{job.id}"})

    @router.get("/jobs/{job_id}", response_model=JobStatus, responses=_errors(401, 404))
    def job_status(job_id: str) -> dict[str, Any]:
        """State and tile progress of a job."""
        return manager.status(job_id)

    @router.get(
        "/jobs/{job_id}/result",
        response_class=StreamingResponse,
        responses={200: {"content": {"image/png": {}}}, **_errors(401, 404, 409)},
    )
    def job_result(job_id: str) -> StreamingResponse:
        """The restored image: PNG in the input's bit depth (16-bit in, 16-bit out), with its
        alpha channel and ICC profile."""
        file, job = manager.open_file(job_id, "result")
        name = download_name(job.names[0])
        return _stream(file, {"Content-Disposition": f'attachment; filename="{name}"'})

    @router.get(
        "/jobs/{job_id}/input",
        response_class=StreamingResponse,
        responses={200: {"content": {"image/png": {}}}, **_errors(401, 404, 409)},
    )
    def job_input(job_id: str) -> StreamingResponse:
        """The decoded input as an 8-bit PNG, upright (EXIF orientation applied), for the
        before/after view; for dual-pixel jobs the left view. Available once the job has
        decoded its image."""
        file, _ = manager.open_file(job_id, "input")
        return _stream(file, {"Content-Disposition": "inline"})

    @router.delete("/jobs/{job_id}", response_model=JobStatus, responses=_errors(401, 404))
    def cancel_job(job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job (a running one stops after its current tile and then
        reads `cancelled`), or delete a finished one and its files (`deleted`)."""
        return manager.cancel(job_id)

    return router


def _stream(file: BinaryIO, headers: dict[str, str]) -> StreamingResponse:
    """Send an open file (closed at the end) as image/png, never cached."""
    size = os.fstat(file.fileno()).st_size

    def chunks() -> Iterator[bytes]:
        with file:
            while block := file.read(_CHUNK):
                yield block

    headers = {**headers, "Content-Length": str(size), "Cache-Control": "no-store"}
    return StreamingResponse(chunks(), media_type="image/png", headers=headers)
