"""The cockpit in a real browser against a real server: sign in with the printed
link, upload through the page, watch the job finish, read metrics and reasons."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
from helpers import ROOT, SAMPLE_PHOTOS, ServerProcess, child_env

SCREENSHOTS = ROOT / "build" / "screenshots"
JOB_TIMEOUT_MS = 120_000


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def assert_stayed_on_machine(page, base_url: str) -> None:
    assert page.requests, "the page made no request at all"
    assert page.watch.blocked == []
    assert page.errors == []
    assert page.evaluate("window.cspViolations") == []
    for url in page.requests + page.watch.urls:
        assert urlsplit(url).hostname == "127.0.0.1", url
        assert url.startswith(base_url), url


def create_token(server: ServerProcess, role: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "image_tagger.cli", "token", "create", "--role", role],
        env=server.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1]


def api(server: ServerProcess, token: str, path: str) -> dict:
    response = httpx2.get(
        f"{server.url}/api/v1/admin/{path}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_upload_watch_and_inspect_a_job(server, page_for, tmp_path: Path):
    photos = SAMPLE_PHOTOS[:3]
    not_an_image = tmp_path / "field-notes.jpg"
    not_an_image.write_text("Site visit, north facade, 3 December.\n")
    token = server.sign_in_link.split("#token=")[1]
    page = page_for()

    # Sign in with the printed link: the token leaves the address bar and is
    # kept for this tab only.
    page.goto(server.sign_in_link)
    page.locator("#cockpit").wait_for(state="visible")
    assert "token" not in page.url
    assert page.evaluate("sessionStorage.getItem('image-tagger.token')") == token
    assert page.locator("#jobs-empty").is_visible()

    page.set_input_files("#file-input", [*photos, not_an_image])
    verdicts = page.locator(".upload-file .verdict")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.upload-file .verdict')]"
        ".every(v => /^(accepted|duplicate|rejected)/.test(v.textContent))"
    )
    texts = verdicts.all_inner_texts()
    assert texts[:3] == ["accepted"] * 3
    assert texts[3].startswith("rejected: ")
    assert [
        p.get_attribute("value") for p in page.locator(".upload-file progress").all()
    ] == [str(p.stat().st_size) for p in (*photos, not_an_image)]
    job_row = page.locator("#jobs-table tbody tr").first
    job_row.wait_for()
    screenshot(page, "cockpit-during-job")

    # The panel refreshes itself until the job is over; Refresh is never clicked.
    job_row.locator(".badge", has_text="COMPLETED WITH ERRORS").wait_for(
        timeout=JOB_TIMEOUT_MS
    )
    assert job_row.locator("progress").get_attribute("value") == "3"
    assert "3/4" in job_row.inner_text()
    job_id = int(job_row.locator("th").inner_text().lstrip("#"))
    job = api(server, token, f"upload/jobs/{job_id}")
    assert job["status"] == "COMPLETED_WITH_ERRORS"
    assert job["error_summary"] in job_row.inner_text()
    assert "refreshing" not in page.locator("#jobs-refresh-state").inner_text()
    screenshot(page, "cockpit-after-job")

    # The job: every item, the rejected file's reason, histograms per metric.
    job_row.locator("th button").click()
    items = page.locator("#items-table tbody tr")
    items.nth(3).wait_for()
    assert items.count() == 4
    rejected = next(i for i in job["items"] if i["status"] == "FAILED")
    assert rejected["filename"] == "field-notes.jpg"
    assert rejected["error_message"] in items.nth(3).inner_text()
    page.locator("#histogram-grid figure").first.wait_for()
    photo = api(server, token, f"images/{job['items'][0]['image_id']}")
    metrics = photo["analysis"]["metrics"]
    figures = page.locator("#histogram-grid figure")
    assert figures.count() == len(metrics)
    fractal = page.locator('#histogram-grid figure[data-metric="fractal.dimension"]')
    bars = fractal.locator("rect")
    counted = sum(
        int(re.search(r": (\d+) image", t).group(1))
        for t in bars.locator("title").all_text_contents()
    )
    assert counted == 3

    # A photo: its metrics as the API gives them.
    items.nth(0).locator("button.filename").click()
    detail = page.locator("#item")
    detail.locator("table.metrics").wait_for()
    shown = detail.locator("table.metrics tr", has_text="fractal.dimension")
    value = float(shown.locator("td").inner_text())
    assert abs(value - metrics["fractal.dimension"]) < 1e-3
    assert detail.locator("table.metrics tbody tr").count() == len(metrics)
    # No provider in this test: each VLM analyzer says why it was skipped.
    assert "no VLM provider is configured" in detail.inner_text()
    assert fractal.locator("rect.current").count() == 1
    screenshot(page, "cockpit-item-metrics")

    # The rejected file: its reason.
    items.nth(3).locator("button.filename").click()
    detail.locator(".reason").wait_for()
    assert detail.locator(".reason").inner_text() == rejected["error_message"]

    # The cost ledger is not on this server yet: the panel says so.
    assert "not available" in page.locator("#costs-body").inner_text()
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "cockpit-phone-job")
    assert_stayed_on_machine(page, server.url)


def test_a_tagger_session_is_told_why_it_may_not_enter(server, page_for):
    token = create_token(server, "tagger")
    page = page_for()

    page.goto(f"{server.url}/admin/#token={token}")
    forbidden = page.locator("#forbidden")
    forbidden.wait_for(state="visible")

    text = forbidden.inner_text()
    assert "403 Forbidden" in text
    assert "this needs the admin role; your role is 'tagger'" in text
    assert "image-tagger token create --role admin" in text
    assert page.locator("#cockpit").is_hidden()
    screenshot(page, "cockpit-tagger-403")
    assert_stayed_on_machine(page, server.url)


def test_no_token_asks_to_sign_in_and_a_pasted_token_works(server, page_for):
    page = page_for(width=390, height=844)

    page.goto(f"{server.url}/admin")
    page.locator("#sign-in").wait_for(state="visible")
    assert "missing bearer token" in page.locator("#sign-in-reason").inner_text()
    page.fill("#token-input", "itk_wrong")
    page.press("#token-input", "Enter")
    # A locator waits without evaluating a string, which the page's policy
    # (no 'unsafe-eval') would refuse whenever the first check comes too early.
    page.locator("#sign-in-reason", has_text="invalid").wait_for()
    page.fill("#token-input", server.sign_in_link.split("#token=")[1])
    page.press("#token-input", "Enter")
    page.locator("#cockpit").wait_for(state="visible")
    assert page.locator("#jobs-empty").is_visible()
    screenshot(page, "cockpit-phone-empty")
    assert_stayed_on_machine(page, server.url)


def test_each_file_shows_its_own_progress_while_its_bytes_go_up(server, page_for):
    photos = SAMPLE_PHOTOS[:3]
    sizes = [p.stat().st_size for p in photos]
    page = page_for()
    page.goto(server.sign_in_link)
    page.locator("#cockpit").wait_for(state="visible")
    # Slow the upload down to about 600 KB/s so it is seen in flight.
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": 0,
            "downloadThroughput": -1,
            "uploadThroughput": 600_000,
        },
    )
    page.evaluate(
        """() => {
            window.samples = [];
            setInterval(() => window.samples.push(
                [...document.querySelectorAll('.upload-file progress')]
                    .map(p => p.value)), 25);
        }"""
    )

    page.set_input_files("#file-input", photos)
    page.locator(".upload-file .verdict", has_text="accepted").nth(2).wait_for()

    samples = [s for s in page.evaluate("window.samples") if len(s) == 3]
    # Each file fills in turn: partly sent while the next has not started ...
    assert any(0 < a < sizes[0] and b == 0 for a, b, _ in samples)
    assert any(a == sizes[0] and 0 < b < sizes[1] and c == 0 for a, b, c in samples)
    assert any(
        a == sizes[0] and b == sizes[1] and 0 < c < sizes[2] for a, b, c in samples
    )
    # ... and a file never goes back.
    for earlier, later in zip(samples, samples[1:], strict=False):
        assert all(x <= y for x, y in zip(earlier, later, strict=True))
    assert samples[-1] == sizes


def test_header_mode_behind_a_proxy_and_drag_and_drop(page_for, tmp_path: Path):
    # Jobs are only recorded here, so one stays PENDING until a worker runs it.
    server = ServerProcess(
        child_env(
            tmp_path / "data",
            IMAGE_TAGGER_AUTH_MODE="header",
            IMAGE_TAGGER_QUEUE="none",
        ),
        log_path=tmp_path / "server.log",
    )
    server.start()
    try:
        # The proxy's header, as the browser's requests would carry it.
        page = page_for(headers={"X-User-Role": "admin"})
        page.goto(f"{server.url}/admin/")
        page.locator("#cockpit").wait_for(state="visible")
        assert "role header" in page.locator("#session-state").inner_text()

        photo = SAMPLE_PHOTOS[0]
        transfer = page.evaluate_handle(
            """([name, bytes]) => {
                const transfer = new DataTransfer();
                transfer.items.add(new File([new Uint8Array(bytes)], name,
                                            {type: "image/jpeg"}));
                return transfer;
            }""",
            [photo.name, list(photo.read_bytes())],
        )
        page.dispatch_event("#dropzone", "drop", {"dataTransfer": transfer})
        page.locator(".upload-file .verdict", has_text="accepted").wait_for()

        # Open the waiting job. Its events stream sends one event and ends; the
        # drawer reloads the job, then polls while it is not over.
        events = []

        def one_event(route):
            events.append(route.request.headers.get("x-user-role"))
            route.fulfill(
                status=200,
                headers={"Content-Type": "text/event-stream"},
                body=": keep-alive\n\nevent: item\ndata: {}\n\n",
            )

        page.route("**/upload/jobs/*/events", one_event)
        page.locator("#jobs-table .badge", has_text="PENDING").wait_for()
        page.locator("#jobs-table th button").first.focus()
        page.keyboard.press("Enter")
        page.locator("#job-live", has_text="Refreshing every").wait_for()
        assert events == ["admin"]

        job_id = int(
            page.locator("#jobs-table tbody th").first.inner_text().lstrip("#")
        )
        subprocess.run(
            [sys.executable, "-m", "scripts.run_upload_job", str(job_id)],
            env=server.env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            timeout=JOB_TIMEOUT_MS / 1000,
        )
        page.locator("#job-summary .badge", has_text="COMPLETED").wait_for(
            timeout=JOB_TIMEOUT_MS
        )
        page.locator("#histogram-grid figure").first.wait_for()
        assert page.locator("#job-live").inner_text() == "Finished"
        page.keyboard.press("Escape")
        assert page.locator("#job").is_hidden()
        assert_stayed_on_machine(page, server.url)
    finally:
        server.stop()


COSTS = {
    "currency": "USD",
    "budget_usd": 5.0,
    "spent_usd": 1.25,
    "reserved_usd": 0.01,
    "remaining_usd": 3.74,
    "unpriced_calls": 1,
    "by_day": [
        {
            "day": "2026-12-03",
            "calls": 7,
            "input_tokens": 9100,
            "output_tokens": 1400,
            "cost_usd": 1.25,
        }
    ],
    "by_model": [
        {
            "provider": "openai",
            "model": "gpt-test-vision",
            "calls": 7,
            "input_tokens": 9100,
            "output_tokens": 1400,
            "cost_usd": 1.25,
        }
    ],
    "by_analyzer": [
        {
            "tool": "cognitive",
            "calls": 4,
            "input_tokens": 5200,
            "output_tokens": 800,
            "cost_usd": 0.75,
        }
    ],
    "recent": [
        {
            "id": 7,
            "created_at": "2026-12-03T10:00:00",
            "tool": "patterns",
            "provider": "openai",
            "model": "gpt-test-vision",
            "input_tokens": 1300,
            "output_tokens": 200,
            "cost_usd": None,
            "latency_ms": 812.4,
            "outcome": "error",
            "error": "answer failed the schema twice",
            "image_id": 1,
            "job_id": 1,
        }
    ],
}
VLM = {
    "cognitive": {
        "status": "ok",
        "model": "gpt-test-vision",
        "result": {"coherence": 0.82, "mystery": 0.31},
    },
    "patterns": {
        "status": "error",
        "reason": "answer failed the schema twice",
        "model": "gpt-test-vision",
        "result": {
            "patterns": {
                "refuge": {
                    "presence": 0.7,
                    "confidence": 0.9,
                    "evidence": "a low alcove under the stair",
                }
            }
        },
    },
}


def test_costs_and_vlm_results_as_their_endpoints_describe_them(server, page_for):
    # The ledger endpoint and VLM results come from other parts of the API; the
    # page is checked against their documented shapes, answered by the browser.
    page = page_for()
    page.route(
        "**/api/v1/admin/costs",
        lambda route: route.fulfill(status=200, json=COSTS),
    )

    def with_vlm(route):
        image = route.fetch().json()
        image["analysis"]["vlm"] = VLM
        route.fulfill(status=200, json=image)

    page.route(re.compile(r".*/api/v1/admin/images/\d+$"), with_vlm)
    page.goto(server.sign_in_link)
    page.locator("#cockpit").wait_for(state="visible")

    costs = page.locator("#costs-body")
    costs.locator("table").first.wait_for()
    summary = costs.locator(".costs-summary").inner_text()
    for text in ("$5.00", "$1.25", "$3.74", "25%"):
        assert text in summary
    assert "1 call has no known price" in costs.inner_text()
    recent = costs.locator("table").nth(3).locator("tbody tr").inner_text()
    assert "unpriced" in recent and "812 ms" in recent
    assert "error: answer failed the schema twice" in recent

    page.set_input_files("#file-input", SAMPLE_PHOTOS[:1])
    page.locator("#jobs-table .badge", has_text="COMPLETED").wait_for(
        timeout=JOB_TIMEOUT_MS
    )
    page.locator("#jobs-table tbody th button").first.click()
    page.locator("#items-table button.filename").first.click()
    vlm = page.locator("#item .vlm")
    vlm.wait_for()
    text = vlm.inner_text()
    assert "cognitive" in text and "coherence" in text and "0.82" in text
    assert "answer failed the schema twice" in text
    assert "a low alcove under the stair" in text
    assert vlm.locator("meter").count() == 4
    # The VLM's ratings get histograms beside the metrics; a failed one does not.
    figures = page.locator("#histogram-grid figure")
    figures.last.wait_for()
    assert figures.evaluate_all("fs => fs.map(f => f.dataset.metric)")[-2:] == [
        "vlm.cognitive.coherence",
        "vlm.cognitive.mystery",
    ]
    screenshot(page, "cockpit-costs-vlm")
    assert_stayed_on_machine(page, server.url)
