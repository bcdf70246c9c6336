"""``restormer serve``: the web page and HTTP API (``pip install 'restormer[web]'``).

The web packages (FastAPI, uvicorn, python-multipart) are imported only when the command
runs, so the core install neither needs them nor pays for importing them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

import typer

from restormer.cli.common import Device, app, fail, out
from restormer.io import DEFAULT_MAX_PIXELS
from restormer.tasks import TASKS

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@app.command()
def serve(
    weights: Annotated[
        list[str] | None,
        typer.Option(
            "--weights",
            "-w",
            metavar="NAME=FILE",
            help="Offer a weights file under NAME (repeatable); the shipped task models are "
            "always offered.",
            show_default=False,
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on; anything but loopback needs --token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port).")] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="RESTORMER_TOKEN",
            help="Bearer token every API call must carry (the page asks for it once).",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Jobs restored at the same time.")] = 1,
    max_queue: Annotated[
        int, typer.Option(min=1, help="Jobs that may wait; one more gets HTTP 429.")
    ] = 8,
    job_timeout: Annotated[
        float, typer.Option(min=1, help="Seconds one job may run before it is stopped.")
    ] = 600.0,
    keep_results: Annotated[
        float, typer.Option(min=1, help="Seconds a finished job's result is kept.")
    ] = 3600.0,
    max_upload_mb: Annotated[
        float, typer.Option(min=0.01, help="Largest upload per job, in MiB.")
    ] = 100.0,
    max_pixels: Annotated[
        int, typer.Option(min=1, help="Refuse images with more pixels than this.")
    ] = DEFAULT_MAX_PIXELS,
    tile: Annotated[
        int, typer.Option(help="Default tile size of a job (multiple of 8; 0: automatic).")
    ] = 256,
    device: Annotated[Device, typer.Option(help="Where to run the models.")] = Device.cpu,
) -> None:
    """Serve a local web page to restore photos, and its HTTP API (docs at /docs)."""
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401  (uploads)
        import uvicorn
    except ImportError:
        fail(r"the web app needs extra packages: pip install 'restormer\[web]'")
    from restormer.web.app import bind_socket, create_app, is_loopback
    from restormer.web.jobs import Settings
    from restormer.weights import WeightsError

    if not is_loopback(host) and not token:
        fail(f"--host {host} makes the server reachable from other machines; give --token too")
    if tile != 0 and not (16 <= tile <= 1024 and tile % 8 == 0):
        fail(f"--tile {tile}: use 0 or a multiple of 8 from 16 to 1024")
    if device is Device.cuda:
        import torch

        if not torch.cuda.is_available():
            fail("--device cuda: no CUDA device is available")
    settings = Settings(
        weights=_parse_weights(weights or []),
        workers=workers,
        max_queue=max_queue,
        job_timeout=job_timeout,
        keep_results=keep_results,
        max_upload_bytes=int(max_upload_mb * 2**20),
        max_pixels=max_pixels,
        tile=tile,
        device=device.value,
        token=token or None,
    )
    if workers > 1:  # share the cores between the workers instead of oversubscribing them
        import torch

        torch.set_num_threads(max(1, torch.get_num_threads() // workers))
    try:
        web_app = create_app(settings)
    except WeightsError as e:
        fail(str(e))
    try:
        try:
            sock = bind_socket(host, port)
        except OSError as e:
            fail(f"cannot listen on {host}:{port}: {e.strerror or e}")
        shown = f"[{host}]" if ":" in host else host
        out.print(f"restormer serve: http://{shown}:{sock.getsockname()[1]}/ (Ctrl+C to stop)")
        config = uvicorn.Config(
            web_app,
            log_level=os.environ.get("RESTORMER_LOG_LEVEL", "warning"),
            timeout_graceful_shutdown=5,
        )
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        web_app.state.manager.close()  # no-op after a normal shutdown; else removes the files


def _parse_weights(items: list[str]) -> dict[str, Path]:
    """``NAME=FILE`` options as a mapping, or one line saying what is wrong."""
    weights: dict[str, Path] = {}
    for item in items:
        name, sep, file = item.partition("=")
        if not sep or not file:
            fail(f"--weights {item}: use NAME=FILE")
        if not _NAME.fullmatch(name):
            fail(f"--weights {item}: NAME may use letters, digits, '.', '_' and '-' only")
        if name in TASKS or name in weights:
            fail(f"--weights {item}: the name '{name}' is already taken")
        path = Path(file).expanduser()
        if not path.is_file():
            fail(f"--weights {item}: no such file")
        weights[name] = path
    return weights
