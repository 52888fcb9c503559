"""The HTML report of a real glove-cbow run, checked as a file and in a real headless Chromium.

The browser is Debian's ``chromium`` driven through ``chromedriver``'s WebDriver HTTP API with the standard
library (install both with ``scripts/install_browser.sh``). Console messages come from chromedriver's
browser log, so a page that logs an error or fails to load anything is caught; a deliberately broken page
proves that check can fail.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import socket
import struct
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import gluebench.cli  # noqa: F401  (registers every command)
from gluebench.cli.app import app
from gluebench.leaderboard import human_baseline
from gluebench.reporting import write_report
from gluebench.runs import RunPaths, read_json, register_run
from gluebench.tasks import TASKS
from tests.test_submission import RUN_SEEDS, RUN_TASKS, cbow_run  # noqa: F401  (the shared real run)

CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,1000"]
EXPECTED_FIGURES = {"task_scores_vs_human.png", "run1_training_curves.png", "run1_confusion_matrices.png",
                    "run1_stsb_scatter.png"}


@pytest.fixture(scope="module")
def report(cbow_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    output = tmp_path_factory.mktemp("report") / "report.html"
    write_report([cbow_run], output)
    return output


class _Page(HTMLParser):
    """Collects what the checks need from the page: tags with attributes, and the metric cells' text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.metrics: dict[tuple[str, str], tuple[float, str]] = {}
        self._open: tuple[str, str, float] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.append((tag, found))
        if tag == "span" and found.get("class") == "metric":
            self._open = (str(found["data-task"]), str(found["data-metric"]), float(str(found["data-mean"])))

    def handle_data(self, data: str) -> None:
        if self._open:
            task, metric, mean = self._open
            self.metrics[(task, metric)] = (mean, data)
            self._open = None


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_report_files_are_self_contained_and_hold_the_runs_numbers(report: Path, cbow_run: Path) -> None:  # noqa: F811
    figures = report.parent / "report_figures"
    assert {p.name for p in figures.iterdir()} == EXPECTED_FIGURES
    page = _Page()
    page.feed(report.read_text(encoding="utf-8"))
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    assert len(images) == len(EXPECTED_FIGURES)
    for attrs in images:
        src = str(attrs["src"])
        assert src.startswith("data:image/png;base64,")
        embedded = base64.b64decode(src.split(",", 1)[1])
        assert embedded == (figures / str(attrs["data-file"])).read_bytes()  # the PNG beside the page
        width, height = _png_size(embedded)
        assert width > 200 and height > 200
    for tag, attrs in page.tags:  # nothing that could reach the network
        assert tag not in ("script", "link", "iframe", "object")
        assert not any(str(v).startswith(("http:", "https:", "//")) for k, v in attrs.items() if k in ("src", "href"))
    summary = read_json(RunPaths(cbow_run).summary)
    for task in RUN_TASKS:
        info = summary["tasks"][task]
        for key in TASKS[task].metric_keys:
            mean, text = page.metrics[(task, key)]
            assert mean == info["mean"][key]
            assert text == f"{key} {info['mean'][key]:.1f} ± {info['std'][key]:.1f}"
    assert len(summary["tasks"]["CoLA"]["seeds"]) == len(RUN_SEEDS)


def test_report_cli_by_run_id_and_several_runs(cbow_run: Path, tmp_path: Path) -> None:  # noqa: F811
    run_id = register_run({"run_dir": str(cbow_run), "model": "glove-cbow", "tasks": list(RUN_TASKS),
                           "seeds": list(RUN_SEEDS), "score": None, "score_label": "", "date": "now"})
    output = tmp_path / "two.html"
    result = CliRunner().invoke(app, ["report", run_id, str(cbow_run), "-o", str(output)])
    assert result.exit_code == 0, result.output
    names = {p.name for p in (tmp_path / "two_figures").iterdir()}
    assert names == EXPECTED_FIGURES | {n.replace("run1", "run2") for n in EXPECTED_FIGURES if n.startswith("run1")}
    text = output.read_text(encoding="utf-8")
    assert text.count('<h2 id="run') == 2 and f"glove-cbow ({run_id})" in text


# ---- the real browser ------------------------------------------------------------------------------


class WebDriver:
    """The few WebDriver calls the test needs, over HTTP to a chromedriver this test starts and stops."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.session = ""

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())["value"]

    def session_call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.call(method, f"/session/{self.session}{path}", body)

    def open(self, path: Path) -> None:
        self.session_call("POST", "/url", {"url": path.resolve().as_uri()})

    def script(self, source: str) -> Any:
        return self.session_call("POST", "/execute/sync", {"script": source, "args": []})

    def console(self) -> list[dict[str, Any]]:
        """Browser log entries since the last call (console messages and failed loads)."""
        return self.session_call("POST", "/se/log", {"type": "browser"})

    def full_page_png(self) -> bytes:
        shot = self.session_call("POST", "/goog/cdp/execute", {
            "cmd": "Page.captureScreenshot", "params": {"format": "png", "captureBeyondViewport": True}})
        return base64.b64decode(shot["data"])


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("chromium and chromedriver are needed for the report test: run scripts/install_browser.sh")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([driver, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        web = WebDriver(port)
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                if web.call("GET", "/status").get("ready"):
                    break
            if time.monotonic() > deadline:
                pytest.fail("chromedriver did not start within 30 s")
            time.sleep(0.1)
        profile = tmp_path_factory.mktemp("chromium-profile")
        options = {"binary": chromium, "args": [*CHROME_FLAGS, f"--user-data-dir={profile}"]}
        created = web.call("POST", "/session", {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": options, "goog:loggingPrefs": {"browser": "ALL"}}}})
        web.session = created["sessionId"]
        yield web
        web.call("DELETE", f"/session/{web.session}")
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_console_check_catches_a_broken_page(browser: WebDriver, tmp_path: Path) -> None:
    broken = tmp_path / "broken.html"
    broken.write_text('<!DOCTYPE html><html><body><img src="absent.png">'
                      '<script>console.error("deliberate failure")</script></body></html>')
    browser.open(broken)
    messages = [entry["message"] for entry in browser.console() if entry["level"] == "SEVERE"]
    assert any("deliberate failure" in m for m in messages) and any("absent.png" in m for m in messages)
    assert browser.script("return document.images[0].naturalWidth") == 0


def test_report_in_headless_chromium(browser: WebDriver, report: Path, cbow_run: Path) -> None:  # noqa: F811
    browser.console()  # drop anything logged before this page
    browser.open(report)
    state = browser.script("""
        return {
          ready: document.readyState,
          images: Array.from(document.images).map(i => ({complete: i.complete, width: i.naturalWidth,
                                                          height: i.naturalHeight, file: i.dataset.file})),
          loads: performance.getEntriesByType('resource').map(e => e.name),
          tables: document.querySelectorAll('table').length,
          metrics: Object.fromEntries(Array.from(document.querySelectorAll('span.metric')).map(
              s => [s.dataset.task + '/' + s.dataset.metric, s.textContent])),
          score: document.querySelector('b.glue-score').textContent,
          human: document.querySelector('tr.human').textContent,
        };""")
    assert browser.console() == []  # no console errors, warnings or failed loads
    assert state["ready"] == "complete" and state["loads"] == []  # nothing fetched: fully self-contained
    assert len(state["images"]) == len(EXPECTED_FIGURES)
    for image in state["images"]:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image
    assert state["tables"] == 4  # overview (with the human row), GLUE tasks, results per task, timing
    summary = read_json(RunPaths(cbow_run).summary)
    for task in RUN_TASKS:
        for key in TASKS[task].metric_keys:
            mean, std = summary["tasks"][task]["mean"][key], summary["tasks"][task]["std"][key]
            assert state["metrics"][f"{task}/{key}"] == f"{key} {mean:.1f} ± {std:.1f}"
    assert state["score"].endswith("dev, partial 3/9")
    assert "Human baseline" in state["human"] and "87.1 test" in state["human"]
    assert str(human_baseline().cell("RTE")) in state["human"]
    screenshot = report.parent / "report_screenshot.png"
    screenshot.write_bytes(browser.full_page_png())
    width, height = _png_size(screenshot.read_bytes())
    assert width >= 1000 and height > 3000  # the whole page, not just the first screen
