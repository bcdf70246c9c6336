"""The page in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright.

Skipped, with the reason, where /usr/bin/chromium or Playwright is missing; CI installs both
(``.ci/run`` installs chromium, the ``dev`` extra Playwright). Playwright is pointed at the
system browser and never downloads one.

The screenshot of the finished page is written to the test's temporary folder, and to
``docs/web-app.png`` when that file is missing or ``RESTORMER_UPDATE_SCREENSHOT=1`` is set
(so an ordinary test run leaves the checkout unchanged).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} not found (apt-get install -y chromium)", allow_module_level=True)
pytest.importorskip("fastapi", reason="the web extra is not installed")
pytest.importorskip("uvicorn", reason="the web extra is not installed")
pytest.importorskip("httpx", reason="httpx is not installed")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

from restormer.io import read_image  # noqa: E402
from restormer.web.jobs import Settings  # noqa: E402

from .web_helpers import LiveServer, live_server  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo-denoiser.safetensors"
NOISY = ROOT / "examples" / "noisy.png"
SCREENSHOT = ROOT / "docs" / "web-app.png"
TOKEN = "browser-test-token"

# Records every progress value the page shows, to prove the bar moves with the tiles.
RECORD_PROGRESS = """
window.progressSeen = [];
new MutationObserver((changes) => {
  for (const c of changes) {
    if (c.attributeName === "aria-valuenow") {
      window.progressSeen.push(Number(c.target.getAttribute("aria-valuenow")));
    }
  }
}).observe(document.body, { subtree: true, attributes: true });
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = Settings(
        weights={"demo": DEMO},
        tile=64,
        max_upload_bytes=2 * 2**20,
        temp_parent=tmp_path_factory.mktemp("browser-tmp"),
    )
    with live_server(settings) as live:
        yield live


@pytest.fixture
def crop(tmp_path: Path) -> Path:
    """320 x 240 pixels of the noisy example photo (the face): 35 tiles of 64 pixels."""
    pixels = read_image(NOISY).pixels[90:330, 100:420]
    path = tmp_path / "hopper.png"
    Image.fromarray(pixels).save(path)
    return path


def test_restore_a_photo_in_the_page(
    browser: Any, server: LiveServer, crop: Path, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1000, "height": 1000}, accept_downloads=True)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    expected = "Failed to load resource: the server responded with a status of 415"
    page.goto(server.url)

    # The seven tasks with their descriptions, unavailable ones disabled; the weights file.
    page.wait_for_selector("#model option[value='demo']", state="attached")
    options = page.eval_on_selector_all(
        "#model option", "os => os.map(o => [o.value, o.disabled, o.title])"
    )
    listed = {value: (disabled, title) for value, disabled, title in options}
    from restormer.shipped import shipped_models
    from restormer.tasks import TASKS

    for task, model in shipped_models().items():
        assert listed[task] == (model is None, TASKS[task])
    assert listed["demo"][0] is False
    page.select_option("#model", "demo")
    assert "1.35 M parameters" in page.inner_text("#model-description")
    assert page.input_value("#tile") == "64"

    page.evaluate(RECORD_PROGRESS)
    page.set_input_files("#files", str(crop))
    page.wait_for_selector(".job.done .result:not([hidden])", timeout=90_000)
    seen = page.evaluate("window.progressSeen")
    assert any(0 < p < 100 for p in seen), seen  # the bar followed the tiles
    assert seen == sorted(seen) and seen[-1] == 100
    facts = page.inner_text(".job .facts")
    assert facts.startswith("320 × 240, 8-bit, 35 tiles") and "restored in" in facts

    # Before/after: both images shown, in full, the same size; the slider moves the split.
    sizes = page.eval_on_selector_all(
        ".stage img",
        "is => is.map(i => [i.className, i.complete, i.naturalWidth, "
        "i.naturalHeight, i.clientWidth])",
    )
    assert [s[:4] for s in sizes] == [["after", True, 320, 240], ["before", True, 320, 240]]
    assert sizes[0][4] == sizes[1][4] > 320  # fitted to the page's width
    page.fill(".slider", "25")
    assert page.eval_on_selector(".stage", "s => s.style.getPropertyValue('--pos')") == "25%"
    page.click(".zoom")
    assert page.eval_on_selector(".stage img.after", "i => i.clientWidth") == 320  # 100 %
    page.click(".zoom")
    page.fill(".slider", "50")

    with page.expect_download() as download_info:
        page.click(".download")
    download = download_info.value
    assert download.suggested_filename == "hopper-restored.png"
    saved = tmp_path / "download.png"
    download.save_as(saved)
    with Image.open(saved) as result:
        assert result.format == "PNG" and result.size == (320, 240) and result.mode == "RGB"
        restored = np.asarray(result, dtype=np.float32)
    noisy = np.asarray(Image.open(crop), dtype=np.float32)
    assert np.abs(np.diff(restored, axis=1)).mean() < 0.7 * np.abs(np.diff(noisy, axis=1)).mean()

    shot = tmp_path / "web-app.png"
    page.screenshot(path=str(shot), full_page=True)
    if not SCREENSHOT.exists() or os.environ.get("RESTORMER_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)

    # Errors are readable messages on the page.
    not_image = tmp_path / "notes.png"
    not_image.write_text("not a photo")
    page.set_input_files("#files", str(not_image))
    page.wait_for_selector(".job.failed .error")
    assert page.inner_text(".job.failed .error") == (
        "notes.png: not a supported image (PNG, JPEG, TIFF, WebP or BMP)"
    )
    too_big = tmp_path / "big.png"
    too_big.write_bytes(b"\x89PNG" + bytes(3 * 2**20))
    page.set_input_files("#files", str(too_big))
    page.wait_for_function(
        "() => [...document.querySelectorAll('.job.failed .error')].length === 2"
    )
    assert "the limit is 2.0 MiB per job" in page.inner_text(".job:first-child .error")
    assert [e for e in errors if not e.startswith(expected)] == []  # no script errors

    page.goto(f"{server.url}/docs")  # the API reference, rendered from /openapi.json
    page.wait_for_selector("h2:has-text('POST /api/jobs')")
    assert page.locator("h2:has-text('DELETE /api/jobs/{job_id}')").count() == 1
    page.close()


def test_the_page_asks_for_the_token(browser: Any, tmp_path: Path) -> None:
    settings = Settings(weights={"demo": DEMO}, token=TOKEN, temp_parent=tmp_path)
    with live_server(settings) as live:
        page = browser.new_page()
        page.goto(live.url)
        page.wait_for_selector("#token-panel:not([hidden])")
        assert page.is_hidden("#setup")
        page.fill("#token", TOKEN)
        page.click("#token-panel button")
        page.wait_for_selector("#setup:not([hidden])")
        assert page.is_hidden("#token-panel")
        assert "demo" in page.eval_on_selector_all("#model option", "os => os.map(o => o.value)")
        page.close()
