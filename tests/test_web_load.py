"""A bounded load test of ``restormer serve``, run as the command a user runs (a subprocess).

A fixed number of clients submit photos for a fixed time over loopback, each one honouring
429 + Retry-After, following its job to the result and deleting it. Every request must be
answered with a result or a 429 (never a 5xx or a dropped connection), the server's memory
must stay bounded, and no file may be left behind, during the run or after the shutdown.
The numbers are printed (``pytest -s``) and README's "Web app" section quotes them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed")
pytest.importorskip("uvicorn", reason="the web extra is not installed")
httpx = pytest.importorskip("httpx", reason="httpx is not installed")

from restormer.weights import save_weights  # noqa: E402

from .conftest import tiny_model  # noqa: E402
from .web_helpers import decode, photo, png  # noqa: E402

CLIENTS = 8
DURATION = 8.0  # seconds of load
MAX_QUEUE = 2
MEMORY_BOUND = 200 * 2**20  # growth of the server's RSS over its warmed-up size


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[str, psutil.Process, Path]]:
    """``python -m restormer serve`` on a free port with its own TMPDIR; stopped by SIGINT."""
    weights = save_weights(tiny_model(seed=3), tmp_path / "tiny.safetensors")
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "restormer",
        "serve",
        "--port",
        "0",
        "--weights",
        f"tiny={weights}",
        "--max-queue",
        str(MAX_QUEUE),
        "--tile",
        "32",
    ]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert line.startswith("restormer serve: http://127.0.0.1:"), line + (
            process.stderr.read() if process.poll() is not None and process.stderr else ""
        )
        url = line.split()[2].rstrip("/")
        yield url, psutil.Process(process.pid), temp
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_load_every_request_answered_memory_bounded_no_files_left(
    serve: tuple[str, psutil.Process, Path],
) -> None:
    url, server, temp = serve
    images = [png(photo(64, 64, seed=i)) for i in range(CLIENTS)]
    with httpx.Client(base_url=url, timeout=30) as client:
        warm = client.post(
            "/api/jobs", files={"image": ("w.png", images[0])}, data={"model": "tiny"}
        ).json()
        while client.get(f"/api/jobs/{warm['id']}").json()["state"] != "done":
            time.sleep(0.05)
        client.delete(f"/api/jobs/{warm['id']}")
    baseline = server.memory_info().rss

    codes: Counter[str] = Counter()
    latencies: list[float] = []
    problems: list[str] = []
    peak = [baseline]
    stop = threading.Event()
    lock = threading.Lock()

    def sample_memory() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], server.memory_info().rss)
            time.sleep(0.1)

    def client_loop(index: int) -> None:
        end = time.monotonic() + DURATION
        with httpx.Client(base_url=url, timeout=30) as client:
            while time.monotonic() < end:
                start = time.monotonic()
                try:
                    response = client.post(
                        "/api/jobs",
                        files={"image": (f"c{index}.png", images[index])},
                        data={"model": "tiny"},
                    )
                    with lock:
                        codes[f"POST {response.status_code}"] += 1
                    if response.status_code == 429:
                        time.sleep(min(int(response.headers["retry-after"]), 1))
                        continue
                    assert response.status_code == 202, response.text
                    job = response.json()["id"]
                    while (status := client.get(f"/api/jobs/{job}").json())["state"] not in (
                        "done",
                        "failed",
                        "cancelled",
                    ):
                        time.sleep(0.05)
                    assert status["state"] == "done", status
                    result = client.get(f"/api/jobs/{job}/result")
                    assert result.status_code == 200 and decode(result.content).shape == (64, 64, 3)
                    assert client.delete(f"/api/jobs/{job}").json()["state"] == "deleted"
                    with lock:
                        codes["result"] += 1
                        latencies.append(time.monotonic() - start)
                except Exception as e:  # recorded, and the test fails below
                    with lock:
                        problems.append(f"{type(e).__name__}: {e}")

    sampler = threading.Thread(target=sample_memory)
    sampler.start()
    workers = [threading.Thread(target=client_loop, args=(i,)) for i in range(CLIENTS)]
    began = time.monotonic()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(DURATION + 60)
    elapsed = time.monotonic() - began
    stop.set()
    sampler.join()

    job_folders = [p for d in temp.glob("restormer-serve-*") for p in d.iterdir()]
    with httpx.Client(base_url=url, timeout=30) as client:
        health = client.get("/healthz").json()
    summary = {
        "clients": CLIENTS,
        "seconds": round(elapsed, 1),
        "posts": codes["POST 202"] + codes["POST 429"],
        "accepted": codes["POST 202"],
        "rejected_429": codes["POST 429"],
        "results": codes["result"],
        "results_per_s": round(codes["result"] / elapsed, 1),
        "latency_p50_s": round(float(np.percentile(latencies, 50)), 3) if latencies else None,
        "latency_p95_s": round(float(np.percentile(latencies, 95)), 3) if latencies else None,
        "rss_baseline_mib": round(baseline / 2**20),
        "rss_peak_mib": round(peak[0] / 2**20),
        "other_codes": {
            k: v for k, v in codes.items() if k not in ("POST 202", "POST 429", "result")
        },
    }
    print("\nweb load test:", json.dumps(summary))
    assert problems == [], problems[:5]
    assert summary["other_codes"] == {}  # every POST answered 202 or 429: no 5xx, no hang
    assert codes["result"] == codes["POST 202"] > 0  # every accepted job gave its result
    assert codes["POST 429"] > 0  # more clients than slots: the queue did fill up
    assert peak[0] - baseline < MEMORY_BOUND, summary
    assert job_folders == [] and health["jobs"] == 0 and health["running"] == 0

    server.send_signal(signal.SIGINT)
    server.wait(30)
    assert list(temp.iterdir()) == []  # private folder and upload spools: all gone
