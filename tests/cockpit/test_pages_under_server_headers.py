"""The service's pages in Chromium under the headers the server really sends.

The other browser tests put each page under a policy of their own; here
/docs (Swagger UI) and /admin (the cockpit) get exactly the security headers
of the server's responses: no violation, no request leaving the machine.
Chromium comes from the ``browser`` fixture of this folder.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from helpers import ServerProcess, child_env


@pytest.fixture
def header_server(data_dir, tmp_path):
    process = ServerProcess(
        child_env(data_dir, IMAGE_TAGGER_AUTH_MODE="header", IMAGE_TAGGER_WORKERS="1"),
        log_path=tmp_path / "server.log",
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture
def open_page(browser):
    """Load a URL as admin and wait for a selector; (page, response, hosts)."""
    contexts = []

    def open_(url: str, ready: str):
        context = browser.new_context(extra_http_headers={"X-User-Role": "admin"})
        contexts.append(context)
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
        return page, response, hosts

    yield open_
    for context in contexts:
        context.close()


def test_the_api_docs_work_under_the_strict_policy(open_page, header_server):
    page, response, hosts = open_page(f"{header_server.url}/docs", ".opblock")

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


def test_the_cockpit_runs_under_the_strict_policy(open_page, header_server):
    page, response, hosts = open_page(f"{header_server.url}/admin/", "body")

    assert response.status == 200
    assert "'unsafe-inline'" not in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert page.evaluate("window.violations") == []
    assert hosts == {"127.0.0.1"}
