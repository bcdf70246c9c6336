"""What the web tests share: a live server in a thread, test photos, waiting for jobs."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
from PIL import Image

from restormer.web.jobs import JobManager, Settings


@dataclass
class LiveServer:
    """A running server: its base URL and its job manager (to look at its files)."""

    url: str
    manager: JobManager

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)


@contextmanager
def live_server(settings: Settings) -> Iterator[LiveServer]:
    """The app under uvicorn on 127.0.0.1 and a free port, in a thread, stopped on exit.

    On exit the application's shutdown has run, so its temporary folder is gone.
    """
    import uvicorn

    from restormer.web.app import bind_socket, create_app

    app = create_app(settings)
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", app.state.manager)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
        app.state.manager.close()  # no-op after the shutdown; a safety net otherwise


def photo(h: int, w: int, c: int = 3, dtype: type = np.uint8, seed: int = 0) -> np.ndarray:
    """A smooth, slightly noisy test photo (H x W, or H x W x C) of the given dtype."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 0.5 + 0.3 * np.sin(x / 7.0)[..., None] * np.cos(y / 5.0)[..., None]
    img = np.clip(base + 0.03 * rng.standard_normal((h, w, c)), 0, 1)
    return np.round(img * np.iinfo(dtype).max).astype(dtype).squeeze()


def flat(h: int, w: int) -> np.ndarray:
    """A plain grey 8-bit RGB image: compresses to almost nothing, costs the model the same."""
    return np.full((h, w, 3), 128, dtype=np.uint8)


def png(pixels: np.ndarray) -> bytes:
    """PNG bytes of an 8/16-bit gray or RGB(A) array (16-bit colour through OpenCV)."""
    if pixels.dtype == np.uint16 and pixels.ndim == 3:
        import cv2

        ok, data = cv2.imencode(".png", pixels[..., ::-1])
        assert ok
        return data.tobytes()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def submit(
    client: httpx.Client, model: str, *images: bytes, names: list[str] | None = None, **form: Any
) -> httpx.Response:
    """POST /api/jobs with the images (as ``image`` parts) and the form fields."""
    names = names or [f"photo{i}.png" for i in range(len(images))]
    files = [("image", (n, data, "image/png")) for n, data in zip(names, images, strict=True)]
    fields = {"model": model, **{k: str(v).lower() for k, v in form.items()}}
    return client.post("/api/jobs", files=files, data=fields)


def wait_for(
    client: httpx.Client, job_id: str, states: tuple[str, ...] = ("done",), timeout: float = 30
) -> dict[str, Any]:
    """Poll a job until it is in one of ``states`` (or fail when it ends in another)."""
    deadline = time.monotonic() + timeout
    while True:
        status = client.get(f"/api/jobs/{job_id}").json()
        if status["state"] in states:
            return status
        if status["state"] in ("done", "failed", "cancelled"):
            raise AssertionError(f"job ended {status['state']}: {status['error']}")
        if time.monotonic() > deadline:
            raise AssertionError(f"job still {status['state']} after {timeout} s: {status}")
        time.sleep(0.05)


def wait_until_running(client: httpx.Client, job_id: str, tiles: int = 1) -> dict[str, Any]:
    """Poll until the job is running and has finished at least ``tiles`` tiles."""
    deadline = time.monotonic() + 30
    while True:
        status = client.get(f"/api/jobs/{job_id}").json()
        if status["state"] == "running" and status["tiles_done"] >= tiles:
            return status
        assert status["state"] in ("queued", "running"), status
        assert time.monotonic() < deadline, status
        time.sleep(0.02)


def decode(data: bytes) -> np.ndarray:
    """Pixels of PNG bytes at their bit depth (16-bit colour through OpenCV), RGB order."""
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert arr is not None, "not a PNG"
    if arr.ndim == 3:
        arr = arr[..., [2, 1, 0, 3][: arr.shape[2]]] if arr.shape[2] == 4 else arr[..., ::-1]
    return arr
