"""Fixtures for the browser tests: Debian's Chromium driven by Playwright, and a
real server process with a sign-in link read from its output."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from helpers import ServerProcess, child_env

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}
# The policy the page must live under: its own files only, nothing inline.
CSP = "default-src 'self'"


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(
            f"browser tests skipped: Chromium is not installed at {CHROMIUM} "
            "(apt-get install chromium; .ci/run does it when apt is available)"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="browser tests need the playwright package"
    )
    playwright = sync_api.sync_playwright().start()
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()
    playwright.stop()


class OffMachine:
    """Every request the page makes; any that would leave the machine is aborted."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.blocked: list[str] = []

    def route(self, route) -> None:
        url = route.request.url
        self.urls.append(url)
        host = urlsplit(url).hostname or ""
        if urlsplit(url).scheme in ("http", "https", "ws", "wss") and (
            host not in LOOPBACK
        ):
            self.blocked.append(url)
            route.abort()
            return
        if route.request.resource_type == "document":
            response = route.fetch(max_redirects=0)
            headers = {**response.headers, "content-security-policy": CSP}
            route.fulfill(response=response, headers=headers)
            return
        route.continue_()


@pytest.fixture
def page_for(browser) -> Iterator:
    """Open a page at a viewport; requests are watched and kept on the machine."""
    contexts = []

    def open_page(*, width: int = 1280, height: int = 900, headers=None):
        context = browser.new_context(
            viewport={"width": width, "height": height},
            extra_http_headers=headers or {},
        )
        contexts.append(context)
        watch = OffMachine()
        context.route("**/*", watch.route)
        context.add_init_script(
            "window.cspViolations = [];"
            "document.addEventListener('securitypolicyviolation', (e) =>"
            " window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));"
        )
        page = context.new_page()
        page.requests = []
        page.on("request", lambda request: page.requests.append(request.url))
        page.watch = watch
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        return page

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A real token-mode server on a loopback port, with the link it printed."""
    data_dir = tmp_path / "data"
    log_path = tmp_path / "server.log"
    process = ServerProcess(
        child_env(data_dir, IMAGE_TAGGER_WORKERS="1"), log_path=log_path
    )
    process.start()
    deadline = time.monotonic() + 10
    while not (link := re.search(r"\S+/admin/#token=itk_\S+", log_path.read_text())):
        assert time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.1)
    process.sign_in_link = link.group(0)
    yield process
    process.stop()
