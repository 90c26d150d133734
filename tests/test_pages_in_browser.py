"""The service's pages in Chromium under the headers the server really sends.

/docs (Swagger UI) and /admin (the cockpit) must work with the security
headers of every response: no script may be blocked, no request may leave
the machine.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
from helpers import ServerProcess, child_env

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api")
    playwright = sync_api.sync_playwright().start()
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
    )
    yield browser
    browser.close()
    playwright.stop()


@pytest.fixture
def server(data_dir, tmp_path):
    process = ServerProcess(
        child_env(data_dir, IMAGE_TAGGER_AUTH_MODE="header", IMAGE_TAGGER_WORKERS="1"),
        log_path=tmp_path / "server.log",
    )
    process.start()
    yield process
    process.stop()


def _open(chromium, url: str, ready: str):
    """Load ``url``, wait for ``ready``; (page, CSP violations, hosts requested)."""
    context = chromium.new_context(extra_http_headers={"X-User-Role": "admin"})
    context.add_init_script(
        "window.violations = [];"
        "document.addEventListener('securitypolicyviolation', (e) =>"
        " window.violations.push(`${e.effectiveDirective} ${e.blockedURI}`));"
    )
    page = context.new_page()
    hosts: set[str] = set()
    page.on("request", lambda request: hosts.add(urlsplit(request.url).hostname))
    response = page.goto(url)
    page.wait_for_selector(ready, timeout=30_000)
    page.wait_for_load_state("networkidle")
    return page, response, page.evaluate("window.violations"), hosts


def test_the_api_docs_work_under_the_strict_policy(chromium, server):
    page, response, _, hosts = _open(chromium, f"{server.url}/docs", ".opblock")

    assert "'unsafe-inline'" not in response.headers["content-security-policy"]
    assert page.locator(".opblock").count() >= 7  # every operation is listed
    # Use it: open every operation, the Authorize dialog, and run a request.
    for summary in page.locator(".opblock-summary").all():
        summary.click()
    page.locator(".btn.authorize").first.click()
    page.locator(".close-modal").first.click()
    jobs = page.locator(".opblock", has_text="/api/v1/admin/upload/jobs").first
    jobs.locator(".try-out__btn").click()
    jobs.locator(".execute").click()
    page.wait_for_selector(".live-responses-table .response-col_status")
    assert "200" in jobs.locator(".live-responses-table").inner_text()
    assert page.evaluate("window.violations") == []
    assert hosts == {"127.0.0.1"}


def test_the_cockpit_runs_under_the_strict_policy(chromium, server):
    page, response, violations, hosts = _open(chromium, f"{server.url}/admin/", "body")

    assert response.status == 200
    assert "'unsafe-inline'" not in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert violations == []
    assert hosts == {"127.0.0.1"}
