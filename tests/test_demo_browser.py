"""`vidm demo` in a real browser: Debian's headless Chromium, driven by Playwright, against a served tiny model.

The server runs as a subprocess, as a user starts it; the tests skip where Chromium or Playwright is missing,
and fail there instead under VIDM_REQUIRE_BROWSER=1 (CI).
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vidm.video_io import read_video

from conftest import demo_requirement, missing, tiny_pipeline

demo_requirement("gradio", 'the demo extra is not installed: pip install -e ".[demo]"')
sync_api = demo_requirement("playwright.sync_api", "playwright is not installed: pip install playwright")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).is_file():
    missing("no Chromium: apt-get install chromium to run the browser tests")

# Headless, and nothing of the browser's own that reaches the network (updates, sync, QUIC probes).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SKIMAGE = Path(demo_requirement("skimage.data", "scikit-image (sample images to upload) is not installed").data_dir)
TIMEOUT_MS = 60_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`vidm demo` in a subprocess with its own TMPDIR and working folder, so that leftovers can be seen."""

    def __init__(self, root: Path, model: Path, *options: str):
        self.tmp, self.cwd = root / "tmp", root / "cwd"
        self.tmp.mkdir()
        self.cwd.mkdir()
        self.url = f"http://127.0.0.1:{free_port()}/"
        self.log = root / "server.log"
        command = [sys.executable, "-m", "vidm", "demo", "--model", str(model),
                   "--port", self.url.rsplit(":", 1)[1].strip("/"), *options]
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(command, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                                         env={**os.environ, "TMPDIR": str(self.tmp)})
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(self.url, timeout=5)
                return
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.proc.kill()
                    raise RuntimeError(f"vidm demo did not start:\n{self.log.read_text()}")
                time.sleep(0.5)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    tiny_pipeline().save_pretrained(root / "model")
    server = Server(root, root / "model", "--max-frames", "16", "--max-upload-mb", "1")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


REQUESTS: list[str] = []  # every URL any page asked for, checked at the end
SERVERS: list[str] = []  # servers other than the module's, whose pages count as local too


@pytest.fixture
def visit(browser, server):
    """Opens the app in a new browser context (a new visitor); returns the page."""
    contexts = []

    def open_page(url=server.url):
        context = browser.new_context(viewport={"width": 1100, "height": 1000})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("request", lambda request: REQUESTS.append(request.url))
        page.goto(url)
        page.locator("#generate-scratch").wait_for()
        return page

    yield open_page
    for context in contexts:
        context.close()


def set_number(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def upload(page, elem_id: str, path: Path) -> None:
    """Uploads a file into a component and waits until the page shows it."""
    page.locator(f"#{elem_id} input[type=file]").set_input_files(path)
    shown = f"#{elem_id} img" if elem_id == "image-input" else f"#{elem_id} td[aria-label='{path.name}']"
    page.locator(shown).first.wait_for()


def clear(page, elem_id: str) -> None:
    page.locator(f"#{elem_id} button[aria-label=Clear]").first.click()
    page.locator(f"#{elem_id} input[type=file]").wait_for(state="attached")


def record_statuses(page) -> None:
    """Records every text the status line shows, with the time, in window.statuses."""
    page.evaluate("""() => {
        window.statuses = [];
        const status = document.querySelector('#status');
        new MutationObserver(() => window.statuses.push([Date.now(), status.innerText]))
            .observe(status, {subtree: true, childList: true, characterData: true});
    }""")


def fetch_video(page, selector: str, attribute: str, tmp_path: Path, name: str) -> np.ndarray:
    """Downloads the file the page links to, as the browser would, and decodes it."""
    url = page.locator(selector).first.get_attribute(attribute)
    response = page.request.get(url)
    assert response.ok, url
    (tmp_path / name).write_bytes(response.body())
    return read_video(tmp_path / name)


def test_a_photo_becomes_a_video_that_plays_in_the_page_and_downloads(visit, tmp_path):
    page = visit()
    page.get_by_role("tab", name="From an image").click()
    upload(page, "image-input", SKIMAGE / "chelsea.png")
    set_number(page, "image-videos", 1)
    set_number(page, "image-frames", 12)
    set_number(page, "image-steps", 10)
    record_statuses(page)
    page.locator("#generate-image").click()
    page.locator("#player video").wait_for()
    assert page.locator("#status").inner_text().startswith("done: 1 video of 12 frames")
    seen = [text for _, text in page.evaluate("window.statuses")]
    assert any(f"frame {i} of 12" in seen for i in range(1, 12)), seen  # progress arrived while it worked
    page.wait_for_function("""() => {  // Chromium decodes the H.264 mp4: it has a picture to show
        const video = document.querySelector('#player video');
        return video.readyState >= 2 && video.videoWidth === 32;
    }""")
    assert page.locator("#preview img").get_attribute("src")
    played = fetch_video(page, "#player video", "src", tmp_path, "played.mp4")
    downloaded = fetch_video(page, "#files a[download]", "href", tmp_path, "downloaded.mp4")
    assert played.shape == downloaded.shape == (12, 32, 32, 3)
    sheet = page.locator("#sheet img").get_attribute("src")
    assert page.request.get(sheet).ok


def test_bad_uploads_get_a_message_in_the_page_and_the_server_keeps_serving(visit, tmp_path):
    page = visit()
    page.get_by_role("tab", name="Extend a clip").click()
    set_number(page, "extend-videos", 2)
    set_number(page, "extend-frames", 4)
    set_number(page, "extend-steps", 2)
    (tmp_path / "notes.mp4").write_text("a text file, renamed\n")
    upload(page, "clip-input", tmp_path / "notes.mp4")
    page.locator("#generate-extend").click()
    page.locator("#status").get_by_text("Error: notes.mp4: no frames could be read").wait_for()

    clear(page, "clip-input")
    (tmp_path / "big.mp4").write_bytes(os.urandom(2 * 2**20))  # over the server's 1 MiB
    page.locator("#clip-input input[type=file]").set_input_files(tmp_path / "big.mp4")
    page.get_by_text("exceed the maximum allowed size").first.wait_for()

    page.get_by_role("tab", name="From an image").click()
    Image.new("1", (10_000, 10_000)).save(tmp_path / "huge.png")
    upload(page, "image-input", tmp_path / "huge.png")
    page.locator("#generate-image").click()
    page.locator("#status").get_by_text("Error: huge.png: image too large (10000 x 10000)").wait_for()

    page.get_by_role("tab", name="Extend a clip").click()
    upload(page, "clip-input", SKIMAGE / "no_time_for_that_tiny.gif")
    page.locator("#generate-extend").click()
    page.locator("#player video").wait_for()
    assert fetch_video(page, "#player video", "src", tmp_path, "extended.mp4").shape[0] == 24 + 4


def test_two_visitors_at_once_queue_and_both_finish(visit, tmp_path):
    first, second = visit(), visit()
    set_number(first, "scratch-frames", 16)
    set_number(first, "scratch-videos", 4)
    for page in (second, first):
        set_number(page, "scratch-steps", 20)
    for page in (first, second):
        record_statuses(page)
    first.locator("#generate-scratch").click()
    first.locator("#status").get_by_text("frame").first.wait_for()
    second.locator("#generate-scratch").click()
    second.get_by_text("queue: 1/1").first.wait_for()  # the second visitor sees where they are
    assert not first.locator("#status").inner_text().startswith("done")
    for page, name in ((first, "first"), (second, "second")):
        page.locator("#player video").wait_for()
        assert page.locator("#status").inner_text().startswith("done: ")
        assert fetch_video(page, "#player video", "src", tmp_path, f"{name}.mp4").shape[0] == 16  # the server's limit
    # One request at a time: the second began after the first made its last frame. (Its "done" can reach
    # its page a little after the second's first update reaches the other page.)
    first_last_frame = min(t for t, text in first.evaluate("window.statuses") if text == "frame 16 of 16")
    second_began = min(t for t, text in second.evaluate("window.statuses") if text.startswith("frame 0 of"))
    assert second_began > first_last_frame


@pytest.mark.slow
def test_the_three_ways_in_with_the_shipped_model(visit, tmp_path_factory, tmp_path):
    """With VIDM_DEMO_SCREENSHOT=docs/demo.png, saves the page after the last generation (for the README)."""
    root = tmp_path_factory.mktemp("shipped")
    shipped = Server(root, Path(__file__).resolve().parents[1] / "checkpoints" / "moving-mnist-64")
    SERVERS.append(shipped.url)
    wait = 10 * TIMEOUT_MS  # minutes on a busy 2-core CPU
    try:
        page = visit(shipped.url)
        page.get_by_role("tab", name="From an image").click()
        upload(page, "image-input", SKIMAGE / "chelsea.png")
        set_number(page, "image-videos", 1)
        set_number(page, "image-frames", 8)
        page.locator("#generate-image").click()
        page.locator("#status").get_by_text("done: 1 video of 8 frames").wait_for(timeout=wait)
        assert fetch_video(page, "#player video", "src", tmp_path, "image.mp4").shape == (8, 64, 64, 3)

        page.get_by_role("tab", name="Extend a clip").click()
        upload(page, "clip-input", SKIMAGE / "no_time_for_that_tiny.gif")
        set_number(page, "extend-videos", 1)
        set_number(page, "extend-frames", 8)
        page.locator("#generate-extend").click()
        page.locator("#status").get_by_text("done: 1 video of 8 new frames").wait_for(timeout=wait)
        assert fetch_video(page, "#player video", "src", tmp_path, "extended.mp4").shape[0] == 24 + 8

        page.get_by_role("tab", name="From scratch").click()
        set_number(page, "scratch-videos", 4)
        set_number(page, "scratch-frames", 24)
        page.locator("#generate-scratch").click()
        page.locator("#status").get_by_text("done: 4 videos of 24 frames").wait_for(timeout=wait)
        assert fetch_video(page, "#player video", "src", tmp_path, "scratch.mp4").shape == (24, 130, 130, 3)
        if os.environ.get("VIDM_DEMO_SCREENSHOT"):
            page.wait_for_function("document.querySelector('#player video').readyState >= 2")
            page.screenshot(path=tmp_path / "page.png", full_page=True)
            # A palette PNG: a fraction of the size, and the page has few colours.
            Image.open(tmp_path / "page.png").convert("RGB").quantize(256).save(os.environ["VIDM_DEMO_SCREENSHOT"],
                                                                                optimize=True)
    finally:
        assert shipped.stop() == 0, shipped.log.read_text()


def test_nothing_was_fetched_from_anywhere_but_the_server(server):
    assert REQUESTS, "no page was loaded"
    local = (server.url, *SERVERS, "data:", "blob:")
    outside = sorted({url for url in REQUESTS if not url.startswith(local)})
    assert outside == []


def test_stopping_the_server_removes_its_files(server):
    assert server.stop() == 0, server.log.read_text()
    assert list(server.tmp.iterdir()) == [] and list(server.cwd.iterdir()) == []
