"""``restormer serve``'s HTTP API against a live server: every endpoint and every refusal."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed")
pytest.importorskip("httpx", reason="httpx is not installed")
pytest.importorskip("uvicorn", reason="the web extra is not installed")

from typer.testing import CliRunner

from restormer.cli import app as cli_app
from restormer.inference import restore_into
from restormer.io import to_gray
from restormer.shipped import shipped_models
from restormer.tasks import TASKS
from restormer.web.jobs import Settings
from restormer.weights import load_model, save_weights

from .conftest import tiny_model
from .web_helpers import (
    LiveServer,
    decode,
    flat,
    live_server,
    photo,
    png,
    submit,
    wait_for,
    wait_until_running,
)

TOKEN = "s3cret-token"
BIG = png(flat(480, 480))  # hundreds of 16-pixel tiles: a job that runs until stopped


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("web-weights")
    return {
        "tiny": save_weights(tiny_model(seed=3), root / "tiny.safetensors"),
        "dual": save_weights(
            tiny_model(seed=5, inp_channels=6, dual_pixel_task=True), root / "dual.safetensors"
        ),
        "gray": save_weights(
            tiny_model(seed=4, inp_channels=1, out_channels=1), root / "gray.safetensors"
        ),
    }


@pytest.fixture(scope="module")
def server(
    weights: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """No token, a roomy queue, small upload and pixel limits."""
    settings = Settings(
        weights=weights,
        max_queue=4,
        job_timeout=60,
        keep_results=600,
        max_upload_bytes=200_000,
        max_pixels=1_000_000,
        tile=32,
        temp_parent=tmp_path_factory.mktemp("web-tmp"),
    )
    with live_server(settings) as live:
        yield live


@pytest.fixture(scope="module")
def strict(
    weights: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A token, one queue slot, results kept for 2 s."""
    settings = Settings(
        weights={"tiny": weights["tiny"]},
        max_queue=1,
        keep_results=2.0,
        tile=16,
        token=TOKEN,
        temp_parent=tmp_path_factory.mktemp("web-tmp-strict"),
    )
    with live_server(settings) as live:
        yield live


# ------------------------------------------------------------------------ endpoints


def test_health_models_page_and_api_docs(server: LiveServer) -> None:
    with server.client() as client:
        health = client.get("/healthz").json()
        assert health["status"] == "ok" and health["workers"] == 1 and health["max_queue"] == 4

        listing = client.get("/api/models").json()
        models = {m["name"]: m for m in listing["models"]}
        tasks = [m for m in listing["models"] if m["kind"] == "task"]
        assert [m["name"] for m in tasks] == list(TASKS)  # all seven, in order
        shipped = shipped_models()
        for m in tasks:
            assert m["description"] == TASKS[m["name"]]
            assert m["available"] == (shipped[m["name"]] is not None)
        assert models["tiny"]["available"] and models["tiny"]["images"] == 1
        assert models["dual"]["dual_pixel"] and models["dual"]["images"] == 2
        assert "path" not in models["tiny"]  # the server's files are not the client's business
        assert listing["defaults"] == {"tile": 32, "ensemble": False}
        assert listing["limits"]["max_pixels"] == 1_000_000 and listing["auth"] is False

        page = client.get("/")
        assert page.status_code == 200 and "/static/app.js" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        for asset in ("app.js", "style.css", "docs.js"):
            assert client.get(f"/static/{asset}").status_code == 200
        assert "/static/docs.js" in client.get("/docs").text
        for text in (page.text, client.get("/static/app.js").text, client.get("/docs").text):
            assert "http://" not in text and "https://" not in text  # nothing from elsewhere

        spec = client.get("/openapi.json").json()
        assert set(spec["paths"]) == {
            "/api/models",
            "/api/jobs",
            "/api/jobs/{job_id}",
            "/api/jobs/{job_id}/result",
            "/api/jobs/{job_id}/input",
            "/healthz",
        }
        assert set(spec["paths"]["/api/jobs/{job_id}"]) == {"get", "delete"}
        assert "429" in spec["paths"]["/api/jobs"]["post"]["responses"]


def test_restores_16_bit_exactly_as_the_library_does(
    server: LiveServer, weights: dict[str, Path]
) -> None:
    pixels = photo(70, 90, dtype=np.uint16, seed=1)
    with server.client() as client:
        response = submit(client, "tiny", png(pixels), names=["scan.png"])
        assert response.status_code == 202, response.text
        job = response.json()
        assert response.headers["location"] == f"/api/jobs/{job['id']}"
        assert job["state"] in ("queued", "running") and job["files"] == ["scan.png"]
        status = wait_for(client, job["id"])
        assert status["tiles_done"] == status["tiles_total"] == 12  # 3 x 4 tiles of 32 px
        assert (status["width"], status["height"], status["bit_depth"]) == (90, 70, 16)
        assert status["progress"] == 1.0 and status["seconds"] > 0
        assert status["download_name"] == "scan-restored.png"

        result = client.get(status["result_url"])
        assert result.headers["content-type"] == "image/png"
        assert 'filename="scan-restored.png"' in result.headers["content-disposition"]
        restored = decode(result.content)
        expected = np.empty_like(pixels)
        restore_into(pixels, load_model(weights["tiny"]), expected, tile=32, tile_overlap=8)
        assert restored.dtype == np.uint16 and np.array_equal(restored, expected)

        preview = decode(client.get(status["input_url"]).content)
        assert preview.dtype == np.uint8 and preview.shape == (70, 90, 3)
        assert np.abs(preview.astype(int) - (pixels.astype(int) + 128) // 257).max() == 0


def test_keeps_alpha_and_gray(server: LiveServer) -> None:
    rgba = photo(40, 50, c=4, seed=2)
    gray = photo(40, 50, c=1, seed=3)
    with server.client() as client:
        ids = [submit(client, "tiny", png(img), tile=0).json()["id"] for img in (rgba, gray)]
        out_rgba, out_gray = (
            decode(client.get(wait_for(client, i)["result_url"]).content) for i in ids
        )
    assert out_rgba.shape == (40, 50, 4) and np.array_equal(out_rgba[..., 3], rgba[..., 3])
    assert out_gray.shape == (40, 50)  # a gray photo comes back gray


def test_dual_pixel_pair_is_one_job(server: LiveServer) -> None:
    left, right = photo(48, 40, seed=4), photo(48, 40, seed=5)
    with server.client() as client:
        response = submit(client, "dual", png(left), png(right), names=["L.png", "R.png"])
        assert response.status_code == 202, response.text
        status = wait_for(client, response.json()["id"])
        assert status["files"] == ["L.png", "R.png"]
        assert decode(client.get(status["result_url"]).content).shape == (48, 40, 3)
        assert decode(client.get(status["input_url"]).content).shape == (48, 40, 3)

        one = submit(client, "dual", png(left))
        assert one.status_code == 422 and "two images" in one.json()["detail"]
        two = submit(client, "tiny", png(left), png(right))
        assert two.status_code == 422 and "one image" in two.json()["detail"]
        mismatch = submit(
            client, "dual", png(left), png(photo(40, 40)), names=["L.png", "R.png"]
        ).json()
        failed = wait_for(client, mismatch["id"], ("failed",))
        assert failed["error"] == "R.png: size or bit depth differs from the left view L.png"
        refused = client.get(f"/api/jobs/{failed['id']}/result")
        assert refused.status_code == 409 and "job failed" in refused.json()["detail"]


def test_a_colour_photo_for_the_gray_model_is_restored_as_its_luma(
    server: LiveServer, weights: dict[str, Path]
) -> None:
    colour = photo(24, 24)
    with server.client() as client:
        status = wait_for(client, submit(client, "gray", png(colour)).json()["id"])
        result = decode(client.get(status["result_url"]).content)
    luma = to_gray(colour)
    expected = np.empty(luma.shape, np.uint8)
    restore_into(luma, load_model(weights["gray"]), expected, tile=None, tile_overlap=32)
    assert result.shape == (24, 24) and result.dtype == np.uint8  # written as a gray file
    assert np.array_equal(result, expected[..., 0])


# ------------------------------------------------------------------------ refusals


def test_every_bad_request_gets_a_readable_json_error(server: LiveServer) -> None:
    small = png(photo(24, 24))
    with server.client() as client:

        def refused(response, status: int, text: str) -> None:  # type: ignore[no-untyped-def]
            assert response.status_code == status, response.text
            assert text in response.json()["detail"]

        refused(
            submit(client, "tiny", b"hello, world", names=["notes.txt"]),
            415,
            "notes.txt: not a supported image",
        )
        refused(submit(client, "tiny", b"", names=["empty.png"]), 415, "empty.png: empty file")
        refused(submit(client, "tiny", png(photo(24, 24))[:60]), 415, "truncated or corrupt")
        gif = b"GIF89a" + b"\x00" * 32
        refused(submit(client, "tiny", gif, names=["a.gif"]), 415, "a.gif: not a supported image")
        refused(
            submit(client, "tiny", png(flat(1000, 1001)), names=["huge.png"]),
            413,
            "huge.png: 1001x1000 is 1,001,000 pixels, more than this server's limit of 1,000,000",
        )
        noise = np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)
        refused(submit(client, "tiny", png(noise)), 413, "upload too large")
        refused(submit(client, "nope", small), 404, "unknown model 'nope'")
        missing = [t for t, m in shipped_models().items() if m is None]
        if missing:
            refused(submit(client, missing[0], small), 409, "no shipped model")
        refused(submit(client, "tiny", small, tile=20), 422, "tile: 20 is not 0 or a multiple")
        refused(submit(client, "tiny", small, tile="big"), 422, "tile:")
        refused(client.post("/api/jobs", data={"model": "tiny"}), 422, "image: Field required")

        def chunks() -> Iterator[bytes]:
            yield small

        multipart = {"Content-Type": "multipart/form-data; boundary=x"}
        chunked = client.post("/api/jobs", content=chunks(), headers=multipart)
        refused(chunked, 411, "Content-Length")

        cross = client.post(
            "/api/jobs",
            headers={"Origin": "http://evil.example"},
            files={"image": ("a.png", small)},
            data={"model": "tiny"},
        )
        refused(cross, 403, "other sites")
        refused(client.get("/api/models", headers={"Host": "evil.example"}), 403, "localhost")

        unknown = uuid.uuid4().hex
        for path in ("", "/result", "/input"):
            refused(client.get(f"/api/jobs/{unknown}{path}"), 404, "no such job")
        refused(client.delete(f"/api/jobs/{unknown}"), 404, "no such job")
        refused(client.get("/api/jobs/../../etc/passwd"), 404, "Not Found")


def test_file_names_never_reach_the_file_system(server: LiveServer) -> None:
    with server.client() as client:
        job = submit(client, "tiny", png(photo(24, 24)), names=["../../x\x07/../evil.png"]).json()
        assert job["files"] == ["evil.png"]
        wait_for(client, job["id"])
    folder = server.manager.root / job["id"]
    assert sorted(p.name for p in folder.iterdir()) == ["input.png", "result.png"]
    assert not (server.manager.root.parent / "evil.png").exists()


# ------------------------------------------------------------------------ cancellation


def test_cancelling_stops_the_work_and_frees_the_worker(server: LiveServer) -> None:
    with server.client() as client:
        big = submit(client, "tiny", BIG, tile=16).json()
        small = submit(client, "tiny", png(photo(24, 24))).json()
        queued = submit(client, "tiny", png(photo(24, 24))).json()
        running = wait_until_running(client, big["id"], tiles=2)
        assert 0 < running["progress"] < 1 and running["tiles_total"] > 300
        assert client.get(f"/api/jobs/{big['id']}/result").status_code == 409

        gone = client.delete(f"/api/jobs/{queued['id']}").json()  # still waiting: at once
        assert gone["state"] == "cancelled" and gone["error"] == "cancelled before it started"

        stopping = client.delete(f"/api/jobs/{big['id']}").json()
        assert stopping["state"] in ("running", "cancelled")
        stopped = wait_for(client, big["id"], ("cancelled",), timeout=10)
        time.sleep(0.3)
        later = client.get(f"/api/jobs/{big['id']}").json()
        assert later["tiles_done"] == stopped["tiles_done"] < stopped["tiles_total"]
        assert not (server.manager.root / big["id"]).exists()  # its files are gone too

        done = wait_for(client, small["id"])  # the worker went on to the next job
        assert done["state"] == "done"
        deleted = client.delete(f"/api/jobs/{small['id']}").json()
        assert deleted["state"] == "deleted"
        assert client.get(f"/api/jobs/{small['id']}").status_code == 404
        assert not (server.manager.root / small["id"]).exists()
        assert client.get("/healthz").json()["running"] == 0


# ------------------------------------------------------------------------ strict server


def test_token_is_checked_on_every_api_call(strict: LiveServer) -> None:
    with strict.client() as anonymous, strict.client(token="wrong") as wrong:
        for client in (anonymous, wrong):
            for method, path in (
                ("GET", "/api/models"),
                ("POST", "/api/jobs"),
                ("GET", f"/api/jobs/{uuid.uuid4().hex}"),
                ("DELETE", f"/api/jobs/{uuid.uuid4().hex}"),
            ):
                response = client.request(method, path)
                assert response.status_code == 401, (method, path)
                assert response.headers["www-authenticate"] == "Bearer"
                assert response.json()["detail"] == "a valid access token is required"
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/").status_code == 200  # the page asks for the token itself
        # with a token, another Host name is fine (a server meant for the network)
        with strict.client(token=TOKEN) as client:
            assert client.get("/api/models", headers={"Host": "box.lan"}).status_code == 200


def test_full_queue_answers_429_with_retry_after(strict: LiveServer) -> None:
    with strict.client(token=TOKEN) as client:
        running = submit(client, "tiny", BIG).json()
        wait_until_running(client, running["id"])
        waiting = submit(client, "tiny", png(photo(24, 24))).json()
        assert waiting["state"] == "queued" and waiting["queue_position"] == 0
        full = submit(client, "tiny", png(photo(24, 24)))
        assert full.status_code == 429
        assert int(full.headers["retry-after"]) >= 1
        assert "the queue is full (1 jobs waiting)" in full.json()["detail"]
        for job in (waiting, running):
            client.delete(f"/api/jobs/{job['id']}")
        wait_for(client, running["id"], ("cancelled",), timeout=10)


def test_time_limit_stops_a_job(weights: dict[str, Path], tmp_path: Path) -> None:
    settings = Settings(
        weights={"tiny": weights["tiny"]}, tile=16, job_timeout=1.0, temp_parent=tmp_path
    )
    with live_server(settings) as live, live.client() as client:
        job = submit(client, "tiny", BIG).json()
        failed = wait_for(client, job["id"], ("failed",), timeout=20)
        limit = "stopped: the job took longer than this server's time limit of 1 s"
        assert failed["error"] == limit
        assert 1.0 <= failed["seconds"] < 5 and failed["tiles_done"] < failed["tiles_total"]
        assert not (live.manager.root / job["id"]).exists()


def test_results_are_deleted_after_the_keep_time(strict: LiveServer) -> None:
    with strict.client(token=TOKEN) as client:
        job = submit(client, "tiny", png(photo(24, 24))).json()
        done = wait_for(client, job["id"])
        assert client.get(done["result_url"]).status_code == 200
        assert 0 < done["expires_in"] <= 2.0
        deadline = time.monotonic() + 10
        while client.get(f"/api/jobs/{job['id']}").status_code != 404:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert client.get(done["result_url"]).status_code == 404
    assert not (strict.manager.root / job["id"]).exists()


def test_shutdown_leaves_no_files(weights: dict[str, Path], tmp_path: Path) -> None:
    settings = Settings(weights={"tiny": weights["tiny"]}, tile=16, temp_parent=tmp_path)
    with live_server(settings) as live, live.client() as client:
        finished = submit(client, "tiny", png(photo(24, 24))).json()
        wait_for(client, finished["id"])
        busy = submit(client, "tiny", BIG).json()
        wait_until_running(client, busy["id"])
        assert len(list(tmp_path.iterdir())) == 1  # the private folder, while serving
    assert list(tmp_path.iterdir()) == []  # stopped mid-job: nothing left behind


# ------------------------------------------------------------------------ the command


def test_serve_command_refusals(weights: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(cli_app, ["serve", *args])
        assert "Traceback" not in result.output
        return result.exit_code, " ".join(result.output.split())

    code, text = run("--host", "0.0.0.0")
    assert code == 2 and "reachable from other machines; give --token" in text
    code, text = run("--weights", "tiny")
    assert code == 2 and "use NAME=FILE" in text
    code, text = run("--weights", f"deraining={weights['tiny']}")
    assert code == 2 and "already taken" in text
    code, text = run("--weights", "x=/no/such/file.pth")
    assert code == 2 and "no such file" in text
    code, text = run("--tile", "20")
    assert code == 2 and "--tile 20" in text
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed
    code, text = run()
    assert code == 2 and "pip install 'restormer[web]'" in text
