"""The cockpit in a real browser against a real server: sign in with the printed
link, upload through the page, watch the job finish, read metrics and reasons;
VLM ratings and the cost ledger from the fake provider on loopback; cancel,
retry and export a job from its drawer, which follows the job's event stream."""

from __future__ import annotations

import io
import math
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import pyarrow.parquet as pq
from fake_vlm import FakeVLM
from helpers import ROOT, SAMPLE_PHOTOS, ServerProcess, child_env
from PIL import Image

SCREENSHOTS = ROOT / "build" / "screenshots"
JOB_TIMEOUT_MS = 120_000


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def assert_tables_fit(page, wraps: str = "#jobs-wrap, #items-wrap") -> None:
    """The page and the tables in these boxes fit: nothing to scroll sideways,
    every cell of a table's first row inside its box."""
    page_scroll, page_width = page.evaluate(
        "() => [document.scrollingElement.scrollWidth,"
        " document.scrollingElement.clientWidth]"
    )
    assert page_scroll <= page_width, (page_scroll, page_width)
    boxes = page.locator(wraps)
    assert boxes.count() > 0, wraps
    for box in boxes.all():
        scroll, client = box.evaluate("b => [b.scrollWidth, b.clientWidth]")
        assert scroll <= client, (box.get_attribute("id"), scroll, client)
        right = box.evaluate("b => b.getBoundingClientRect().right")
        cells = box.locator("tbody tr").first.locator("th, td")
        for cell in cells.all():
            if cell.is_visible():
                assert cell.bounding_box()["x"] + cell.bounding_box()["width"] <= (
                    right + 0.5
                ), (box.get_attribute("id"), cell.inner_text())


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
    assert page.locator("#session-state").inner_text() == (
        "Signed in as admin · token, this tab only"
    )
    assert page.locator("#sign-out").is_visible()
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
    # The count once, then the summary's first reason (not the count again).
    count, reason = job["error_summary"].split("; ", 1)
    assert count == "1 failed"
    errors = job_row.locator("td").nth(2).inner_text()
    assert re.findall(r"\d+ failed", errors) == ["1 failed"]
    assert reason in errors
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
    summary_errors = page.locator("#job-summary dd").nth(2).inner_text()
    assert summary_errors.splitlines() == ["1 failed", reason]
    # With the job open beside the lists at 1280 px and alone at 1024 px, both
    # tables fit without sideways scrolling.
    assert page.locator("#job").bounding_box()["x"] > 500  # beside, not below
    assert_tables_fit(page)
    assert page.locator("#jobs-table .time-short").first.is_visible()
    assert page.locator("#items-table th.col-attempts").is_hidden()
    # Metric names break only after a dot or underscore: every piece between
    # those break points stays on one line.
    names = page.locator("#histogram-grid .metric-name")
    assert names.count() == len(metrics)
    split = names.evaluate_all(
        """spans => spans.filter(s => [...s.childNodes]
            .filter(n => n.nodeType === Node.TEXT_NODE)
            .some(n => { const r = document.createRange(); r.selectNodeContents(n);
                         return r.getClientRects().length !== 1; }))
            .map(s => s.title)"""
    )
    assert split == []
    assert names.evaluate_all("spans => spans.map(s => s.title)") == [
        n.get_attribute("data-metric") for n in figures.all()
    ]
    page.set_viewport_size({"width": 1024, "height": 900})
    assert_tables_fit(page)
    assert page.locator("#items-table th.col-attempts").is_visible()
    page.set_viewport_size({"width": 1280, "height": 900})
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

    # No provider, so no model call: the ledger is empty and has no cap.
    costs = api(server, token, "costs")
    assert (costs["budget_usd"], costs["recent"]) == (None, [])
    ledger = page.locator("#costs-body").inner_text()
    assert "no cap set" in ledger and "No model calls yet." in ledger
    assert "null" not in ledger

    # A photo uploaded again: its verdict names the job that analysed it.
    page.set_input_files("#file-input", photos[:1])
    again = page.locator(".upload-file .verdict").first
    again.locator(".earlier").wait_for()
    assert again.inner_text().splitlines() == [
        f"duplicate: same bytes as image {job['items'][0]['image_id']} uploaded before",
        f"Analysed before in job #{job_id}.",
    ]
    assert "earlier-completed" in again.get_attribute("class")

    page.set_viewport_size({"width": 390, "height": 844})
    assert_tables_fit(page)
    screenshot(page, "cockpit-phone-job")
    page.set_viewport_size({"width": 320, "height": 640})
    assert_tables_fit(page)
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
    assert page.locator("#forbidden-proxy").is_hidden()
    assert page.locator("#cockpit").is_hidden()
    assert page.locator("#session-state").inner_text() == (
        "Signed in as tagger · not admin · token, this tab only"
    )
    assert page.locator("#sign-out").is_visible()
    screenshot(page, "cockpit-tagger-403")
    assert_stayed_on_machine(page, server.url)


def test_no_token_asks_to_sign_in_and_a_pasted_token_works(server, page_for):
    page = page_for(width=390, height=844)

    page.goto(f"{server.url}/admin")
    page.locator("#sign-in").wait_for(state="visible")
    # A first visit sent no token: no error yet, only the form and its help.
    assert page.locator("#sign-in-reason").inner_text() == ""
    page.fill("#token-input", "itk_wrong")
    page.press("#token-input", "Enter")
    # A locator waits without evaluating a string, which the page's policy
    # (no 'unsafe-eval') would refuse whenever the first check comes too early.
    page.locator("#sign-in-reason", has_text="invalid").wait_for()
    # A refused token signs nobody in: nothing to sign out of.
    assert page.locator("#session-state").inner_text() == "Not signed in"
    assert page.locator("#sign-out").is_hidden()
    assert page.evaluate("sessionStorage.getItem('image-tagger.token')") is None
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
        # Reached without the proxy: what the proxy must set, and no token
        # form, which could not help in header mode.
        lost = page_for()
        lost.goto(f"{server.url}/admin/")
        lost.locator("#proxy-sign-in").wait_for(state="visible")
        assert (
            "missing X-User-Role header" in lost.locator("#sign-in-reason").inner_text()
        )
        assert "X-User-Role: admin" in lost.locator("#proxy-sign-in").inner_text()
        assert lost.locator("#token-sign-in").is_hidden()
        assert lost.locator("#token-input").is_hidden()
        assert lost.locator("#sign-out").is_hidden()
        assert lost.locator("#session-state").inner_text() == (
            "Not signed in: the proxy sent no role"
        )
        screenshot(lost, "cockpit-header-mode-no-role")
        assert_stayed_on_machine(lost, server.url)

        # A role from the proxy that is not admin: what the proxy must send
        # instead; no token to sign out of or to create.
        tagger = page_for(headers={"X-User-Role": "tagger"})
        tagger.goto(f"{server.url}/admin/")
        tagger.locator("#forbidden").wait_for(state="visible")
        assert "X-User-Role: admin" in tagger.locator("#forbidden-proxy").inner_text()
        assert tagger.locator("#forbidden-token").is_hidden()
        assert "token" not in tagger.locator("#forbidden").inner_text()
        assert tagger.locator("#sign-out").is_hidden()
        assert tagger.locator("#session-state").inner_text() == (
            "Signed in as tagger · not admin · role from the proxy"
        )
        screenshot(tagger, "cockpit-header-mode-tagger")

        # The proxy's header, as the browser's requests would carry it.
        page = page_for(headers={"X-User-Role": "admin"})
        page.goto(f"{server.url}/admin/")
        page.locator("#cockpit").wait_for(state="visible")
        assert page.locator("#session-state").inner_text() == (
            "Signed in as admin · role from the proxy's X-User-Role header"
        )
        assert page.locator("#sign-out").is_hidden()
        assert page.locator("#sign-in").is_hidden()
        assert page.locator("#token-input").is_hidden()

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
        # One image: its values in a table, not a row of flat histograms.
        values = page.locator("#metric-values table")
        values.wait_for()
        assert (
            "histograms need at least 3"
            in page.locator("#histograms-note").inner_text()
        )
        assert page.locator("#histogram-grid figure").count() == 0
        item = httpx2.get(
            f"{server.url}/api/v1/admin/upload/jobs/{job_id}",
            headers={"X-User-Role": "admin"},
        ).json()["items"][0]
        image = httpx2.get(
            f"{server.url}/api/v1/admin/images/{item['image_id']}",
            headers={"X-User-Role": "admin"},
        ).json()
        metrics = image["analysis"]["metrics"]
        rows = values.locator("tbody tr")
        assert rows.count() == len(metrics)
        fractal = values.locator('tr[data-metric="fractal.dimension"] td')
        assert abs(float(fractal.inner_text()) - metrics["fractal.dimension"]) < 1e-3
        assert values.locator("thead th").all_inner_texts() == ["Metric", photo.name]
        screenshot(page, "cockpit-one-image-values")
        assert page.locator("#job-live").inner_text() == "Finished"
        page.keyboard.press("Escape")
        assert page.locator("#job").is_hidden()
        assert_stayed_on_machine(page, server.url)
    finally:
        server.stop()


PRICED_MODEL = "gpt-4o-mini"  # genai-prices knows it under the provider "openai"


def vlm_env(data_dir: Path, fake: FakeVLM, **extra: str) -> dict[str, str]:
    """A server's environment with the fake provider, a priced model and a cap."""
    return child_env(
        data_dir,
        IMAGE_TAGGER_WORKERS="1",
        IMAGE_TAGGER_VLM_BASE_URL=fake.url,
        IMAGE_TAGGER_VLM_MODEL=PRICED_MODEL,
        IMAGE_TAGGER_VLM_PROVIDER="openai",
        IMAGE_TAGGER_VLM_BUDGET_USD="5",
        IMAGE_TAGGER_VLM_BACKOFF_SECONDS="0.01",
        IMAGE_TAGGER_VLM_TIMEOUT_SECONDS="10",
        **extra,
    )


def start_server(env: dict[str, str], tmp_path: Path) -> ServerProcess:
    server = ServerProcess(env, log_path=tmp_path / "server.log")
    server.start()
    deadline = time.monotonic() + 10
    log = server.log_path
    while not (link := re.search(r"\S+/admin/#token=itk_\S+", log.read_text())):
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    server.sign_in_link = link.group(0)
    return server


def usd(value: float | None) -> str:
    """A cost as the page writes it."""
    if value is None:
        return "unpriced"
    return f"${value:.{5 if value != 0 and abs(value) < 0.01 else 2}f}"


def seconds_left(seconds: float) -> str:
    """An ETA under an hour as the page writes it."""
    s = max(0, round(seconds))
    return f"about {s} s left" if s < 60 else f"about {s // 60} min {s % 60} s left"


def cells(table) -> list[list[str]]:
    return [
        row.locator("td").all_inner_texts() for row in table.locator("tbody tr").all()
    ]


def test_costs_and_vlm_results_from_a_real_provider(page_for, tmp_path: Path):
    # A slow fake provider, so the job is seen running; the patterns analyzer
    # always answers off its schema, so its results are an error with a reason.
    with FakeVLM(
        latency_seconds=1.5, prompt_tokens=200_000, completion_tokens=20_000
    ) as fake:
        fake.tool_modes["patterns"] = "schema_fail"
        server = start_server(vlm_env(tmp_path / "data", fake), tmp_path)
        try:
            _costs_and_vlm(server, page_for)
        finally:
            server.stop()


def _costs_and_vlm(server: ServerProcess, page_for) -> None:
    token = server.sign_in_link.split("#token=")[1]
    page = page_for()
    page.goto(server.sign_in_link)
    page.locator("#cockpit").wait_for(state="visible")
    page.locator("#costs-body", has_text="No model calls yet.").wait_for()
    # Timestamps in the page's own clock: when each items-table change happened
    # (and what the statuses were), and when each request started.
    page.evaluate(
        """() => {
            window.itemSnapshots = [];
            new MutationObserver(() => window.itemSnapshots.push([performance.now(),
                [...document.querySelectorAll('#items-table tbody .badge')]
                    .map(b => b.textContent)]))
                .observe(document.querySelector('#items-table tbody'),
                         {childList: true, subtree: true});
        }"""
    )

    photos = SAMPLE_PHOTOS[:5]
    page.set_input_files("#file-input", photos)
    job_row = page.locator("#jobs-table tbody tr").first
    job_row.wait_for()
    job_row.locator("th button").click()
    page.locator("#job-live", has_text="Live").wait_for()
    job_id = int(job_row.locator("th").inner_text().lstrip("#"))

    # The jobs panel shows the running job's ETA as the list answered it.
    while True:
        with page.expect_response(
            lambda r: "/upload/jobs?limit=" in r.url, timeout=JOB_TIMEOUT_MS
        ) as answer:
            pass
        listed = next(j for j in answer.value.json()["jobs"] if j["id"] == job_id)
        if listed["eta_seconds"] is not None and listed["status"] == "RUNNING":
            break
        assert listed["status"] in ("PENDING", "RUNNING"), listed
    # Rendered from that answer (the next refresh comes 1.5 s later).
    eta = seconds_left(listed["eta_seconds"])
    job_row.locator(".eta", has_text=re.compile(f"^{re.escape(eta)}$")).wait_for()
    screenshot(page, "cockpit-job-running-eta")

    page.locator("#job-summary .badge", has_text="COMPLETED").wait_for(
        timeout=JOB_TIMEOUT_MS
    )
    page.locator("#histogram-grid figure").first.wait_for()
    job = api(server, token, f"upload/jobs/{job_id}")
    assert job["status"] == "COMPLETED"

    # The drawer followed the event stream: the item rows changed while the
    # job ran with no request for the job in between, only the one that
    # opened it (and those after its end, for the final state and histograms).
    timeline = page.evaluate(
        """() => ({
            snapshots: window.itemSnapshots,
            requests: performance.getEntriesByType('resource')
                .map(e => [e.startTime, e.name]),
        })"""
    )
    detail = re.compile(rf"/upload/jobs/{job_id}\?")
    events = [t for t, url in timeline["requests"] if url.endswith(f"/{job_id}/events")]
    details = sorted(t for t, url in timeline["requests"] if detail.search(url))
    assert len(events) == 1
    partial = [
        (t, statuses)
        for t, statuses in timeline["snapshots"]
        if 0 < statuses.count("COMPLETED") < len(photos)
        and len(statuses) == len(photos)
    ]
    assert partial, timeline["snapshots"]
    opened, *after = details
    assert opened < events[0]  # the job is read, then followed
    assert all(t > partial[-1][0] for t in after), (details, partial)
    assert after, "the job was never read again once it ended"

    # The ledger, read again when the job ended, as the API gives it.
    costs = api(server, token, "costs")
    assert costs["spent_usd"] > 0 and costs["unpriced_calls"] == 0
    ledger = page.locator("#costs-body")
    tables = ledger.locator("table")
    tables.nth(3).locator("tbody tr").nth(len(costs["recent"]) - 1).wait_for()
    summary = ledger.locator(".costs-summary").inner_text()
    for value in (costs["budget_usd"], costs["spent_usd"], costs["remaining_usd"]):
        assert usd(value) in summary
    assert f"{round(100 * costs['spent_usd'] / costs['budget_usd'])}%" in summary

    def numbers(row: dict, keys: list[str]) -> list[str]:
        return [f"{row[k]:,}" for k in keys]

    tokens = ["calls", "input_tokens", "output_tokens"]
    assert cells(tables.nth(0)) == [
        [d["day"], *numbers(d, tokens), usd(d["cost_usd"])] for d in costs["by_day"]
    ]
    assert cells(tables.nth(1)) == [
        ["openai", PRICED_MODEL, *numbers(m, tokens), usd(m["cost_usd"])]
        for m in costs["by_model"]
    ]
    by_tool = {t["tool"]: t for t in costs["by_analyzer"]}
    assert set(by_tool) == {"cognitive", "patterns"}
    assert cells(tables.nth(2)) == [
        [t["tool"], *numbers(t, tokens), usd(t["cost_usd"])]
        for t in costs["by_analyzer"]
    ]
    # Each recent call: two facts to a cell (side by side where the table is
    # wide, one above the other beside an open job, as here).
    recent = tables.nth(3).locator("tbody tr")
    assert recent.count() == len(costs["recent"])
    for row, call in zip(recent.all(), costs["recent"], strict=True):

        def parts(column: str, row=row) -> list[str]:
            return row.locator(f"td.col-{column} .part").all_inner_texts()

        outcome = (
            f"{call['outcome']}: {call['error']}" if call["error"] else call["outcome"]
        )
        assert parts("call") == [call["tool"], call["model"]]
        assert parts("tokens") == [
            f"{call['input_tokens']:,} in",
            f"{call['output_tokens']:,} out",
        ]
        assert parts("cost") == [
            usd(call["cost_usd"]),
            f"{math.floor(call['latency_ms'] + 0.5)} ms",  # Math.round
        ]
        assert parts("for") == [f"image {call['image_id']}", f"job {job_id}"]
        assert row.locator("td.col-outcome").inner_text() == outcome
        assert row.locator("td.col-call").inner_text() == (
            f"{call['tool']}\n{call['model']}"
        )
    assert any(call["outcome"] != "ok" for call in costs["recent"])
    # Beside the open job at 1280 px, and on their own at 1024 px and at phone
    # width, the ledger's tables fit: nothing to scroll sideways.
    assert page.locator("#job").bounding_box()["x"] > 500
    assert_tables_fit(page, "#costs-body .table-wrap")
    assert recent.first.locator(".time-short").is_visible()
    page.set_viewport_size({"width": 1024, "height": 900})
    assert_tables_fit(page, "#costs-body .table-wrap")
    assert recent.first.locator("td.col-call").inner_text() == (
        f"{costs['recent'][0]['tool']} · {costs['recent'][0]['model']}"
    )
    assert recent.first.locator(".time-long").is_visible()
    page.set_viewport_size({"width": 390, "height": 844})
    assert_tables_fit(page, "#costs-body .table-wrap")
    screenshot(page, "cockpit-phone-costs")
    page.set_viewport_size({"width": 1280, "height": 900})

    # One photo: its cognitive ratings and the patterns analyzer's error.
    page.locator("#items-table button.filename").first.click()
    vlm = page.locator("#item .vlm")
    vlm.wait_for()
    image = api(server, token, f"images/{job['items'][0]['image_id']}")
    outcomes = image["analysis"]["vlm"]
    cognitive, patterns = outcomes["cognitive"], outcomes["patterns"]
    assert cognitive["status"] == "ok" and patterns["status"] == "error"
    entries = vlm.locator(".vlm-entry")
    shown_cognitive = entries.filter(has_text="cognitive")
    assert shown_cognitive.locator(".badge").inner_text() == "ok"
    rows = shown_cognitive.locator("tbody tr")
    assert rows.count() == len(cognitive["result"])
    for row in rows.all():
        field = row.locator("th").inner_text()
        value = cognitive["result"][field]
        assert row.locator("meter").get_attribute("value") == f"{value:g}"
        shown = row.locator("td").inner_text().strip()
        assert re.fullmatch(r"\d\.\d\d", shown) and abs(float(shown) - value) < 0.0051
    shown_patterns = entries.filter(has_text="patterns")
    assert shown_patterns.locator(".badge").inner_text() == "error"
    assert shown_patterns.locator(".error-text").inner_text() == patterns["reason"]
    # The ratings get histograms beside the metrics; the failed analyzer none.
    keys = page.locator("#histogram-grid figure").evaluate_all(
        "fs => fs.map(f => f.dataset.metric)"
    )
    assert [k for k in keys if k.startswith("vlm.")] == sorted(
        f"vlm.cognitive.{field}" for field in cognitive["result"]
    )
    screenshot(page, "cockpit-costs-vlm")
    assert_stayed_on_machine(page, server.url)


def run_job(server: ServerProcess, job_id: int) -> subprocess.Popen:
    """A runner for one job in its own process, as a worker would be."""
    return subprocess.Popen(
        [sys.executable, "-m", "scripts.run_upload_job", str(job_id)],
        env=server.env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def open_newest_job(page) -> int:
    """Open the newest job's drawer with the keyboard; its id."""
    button = page.locator("#jobs-table tbody th button").first
    button.wait_for()
    button.focus()
    page.keyboard.press("Enter")
    page.locator("#job-summary .badge").wait_for()
    return int(button.inner_text().lstrip("#"))


def press(page, selector: str) -> None:
    page.locator(selector).focus()
    page.keyboard.press("Enter")


def shown_statuses(page) -> list[str]:
    return page.locator("#items-table tbody .badge").all_inner_texts()


def statuses(job: dict) -> list[str]:
    return [item["status"].replace("_", " ") for item in job["items"]]


def test_cancel_a_running_job_and_a_refused_cancel(page_for, tmp_path: Path):
    # Jobs are only recorded; a runner process is started by the test, and a
    # slow provider keeps its job running while Cancel is pressed.
    with FakeVLM(latency_seconds=2.0) as fake:
        env = vlm_env(tmp_path / "data", fake, IMAGE_TAGGER_QUEUE="none")
        server = start_server(env, tmp_path)
        try:
            _cancel(server, page_for, tmp_path)
        finally:
            server.stop()


def _cancel(server: ServerProcess, page_for, tmp_path: Path) -> None:
    token = server.sign_in_link.split("#token=")[1]
    page = page_for()
    page.goto(server.sign_in_link)
    page.locator("#cockpit").wait_for(state="visible")
    page.set_input_files("#file-input", SAMPLE_PHOTOS)
    page.locator("#jobs-table .badge", has_text="PENDING").wait_for()
    job_id = open_newest_job(page)
    page.locator("#job-live", has_text="Live").wait_for()
    assert page.locator("#job-cancel").is_visible()
    assert page.locator("#job-retry").is_hidden()

    runner = run_job(server, job_id)
    try:
        summary = page.locator("#job-summary")
        summary.locator(".badge", has_text="RUNNING").wait_for(timeout=JOB_TIMEOUT_MS)
        press(page, "#job-cancel")
        message = page.locator("#job-message")
        message.wait_for()
        summary.locator(".badge", has_text="CANCELLED").wait_for(timeout=JOB_TIMEOUT_MS)
        assert runner.wait(timeout=JOB_TIMEOUT_MS / 1000) == 0
    finally:
        runner.kill()
        runner.wait()

    job = api(server, token, f"upload/jobs/{job_id}")
    assert job["status"] == "CANCELLED"
    done, cancelled = job["completed_items"], job["cancelled_items"]
    assert cancelled >= 1 and done + job["failed_items"] + cancelled == len(
        SAMPLE_PHOTOS
    )
    text = message.inner_text()
    noun = "item" if cancelled == 1 else "items"
    assert text.startswith(
        f"Cancelled {cancelled} pending {noun}; items already running"
    )
    assert "refused" not in message.get_attribute("class")
    page.wait_for_function(
        "n => document.querySelectorAll('#items-table tbody .badge').length === n"
        " && ![...document.querySelectorAll('#items-table tbody .badge')]"
        ".some(b => /PENDING|RUNNING/.test(b.textContent))",
        arg=len(SAMPLE_PHOTOS),
    )
    assert shown_statuses(page) == statuses(job)
    assert f"{done}/{len(SAMPLE_PHOTOS)} completed" in summary.inner_text()
    assert f"{cancelled} item" in summary.inner_text()
    assert page.locator("#job-cancel").is_hidden()
    screenshot(page, "cockpit-job-cancelled")

    # A job shown as pending that was cancelled elsewhere meanwhile: its live
    # updates are held back, so the page still offers Cancel; the server's 409
    # is shown with its reason, then the job as it is now.
    held = []
    page.route(
        re.compile(r".*/upload/jobs/\d+/events$"), lambda route: held.append(route)
    )
    red = tmp_path / "red-door.jpg"
    Image.new("RGB", (64, 48), (150, 30, 40)).save(red)
    page.set_input_files("#file-input", [red])
    page.locator("#jobs-table tbody tr").nth(1).wait_for()
    second = open_newest_job(page)
    assert second != job_id
    page.locator("#job-summary .badge", has_text="PENDING").wait_for()
    assert len(held) == 1
    first_cancel = httpx2.post(
        f"{server.url}/api/v1/admin/upload/jobs/{second}/cancel",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert first_cancel.status_code == 200
    refusal = httpx2.post(
        f"{server.url}/api/v1/admin/upload/jobs/{second}/cancel",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert refusal.status_code == 409
    assert page.locator("#job-cancel").is_visible()
    press(page, "#job-cancel")
    page.locator("#job-message.refused").wait_for()
    assert page.locator("#job-message").inner_text() == (
        f"Cancel refused: 409 {refusal.json()['detail']}. "
        "The job is shown below as it is now."
    )
    page.locator("#job-summary .badge", has_text="CANCELLED").wait_for()
    assert page.locator("#job-cancel").is_hidden()
    assert shown_statuses(page) == ["CANCELLED"]
    screenshot(page, "cockpit-job-cancel-refused")
    assert_stayed_on_machine(page, server.url)


def test_retry_failed_items_and_export_the_results(page_for, tmp_path: Path):
    data_dir = tmp_path / "data"
    env = child_env(data_dir, IMAGE_TAGGER_QUEUE="none", IMAGE_TAGGER_MAX_ATTEMPTS="1")
    server = start_server(env, tmp_path)
    try:
        _retry_and_export(server, page_for, data_dir)
    finally:
        server.stop()


def _retry_and_export(server: ServerProcess, page_for, data_dir: Path) -> None:
    token = server.sign_in_link.split("#token=")[1]
    page = page_for()
    page.goto(server.sign_in_link)
    page.locator("#cockpit").wait_for(state="visible")
    page.set_input_files("#file-input", SAMPLE_PHOTOS[:2])
    page.locator("#jobs-table .badge", has_text="PENDING").wait_for()
    job_id = open_newest_job(page)
    page.locator("#job-live", has_text="Live").wait_for()

    # The first photo's stored file is moved away, so its analysis fails.
    job = api(server, token, f"upload/jobs/{job_id}")
    broken = api(server, token, f"images/{job['items'][0]['image_id']}")
    (stored,) = data_dir.glob(f"images/**/{broken['sha256']}.*")
    aside = stored.with_suffix(".aside")
    stored.rename(aside)
    assert run_job(server, job_id).wait(timeout=JOB_TIMEOUT_MS / 1000) == 0
    summary = page.locator("#job-summary")
    summary.locator(".badge", has_text="COMPLETED WITH ERRORS").wait_for()
    job = api(server, token, f"upload/jobs/{job_id}")
    failed = job["items"][0]
    assert failed["status"] == "FAILED" and failed["image_id"] == broken["id"]
    row = page.locator("#items-table tbody tr").first
    assert failed["error_message"] in row.inner_text()
    assert shown_statuses(page) == statuses(job)
    assert page.locator("#job-retry").is_visible()
    assert page.locator("#job-cancel").is_hidden()
    screenshot(page, "cockpit-job-retry")

    # The same photo uploaded again: its verdict says the earlier try failed.
    page.set_input_files("#file-input", SAMPLE_PHOTOS[:1])
    verdict = page.locator(".upload-file .verdict").first
    verdict.locator(".earlier").wait_for()
    assert "verdict-duplicate" in verdict.get_attribute("class")
    assert "earlier-failed" in verdict.get_attribute("class")
    assert verdict.locator(".earlier").inner_text() == (
        f"Its earlier analysis failed in job #{job_id}: "
        f"{failed['error_message']}. This job tries again."
    )
    assert verdict.inner_text().startswith(
        f"duplicate: same bytes as image {broken['id']} uploaded before"
    )
    # Its long reason wraps inside the upload panel.
    assert page.locator("#upload").evaluate("p => p.scrollWidth <= p.clientWidth")
    screenshot(page, "cockpit-reupload-of-a-failure")

    aside.rename(stored)
    press(page, "#job-retry")
    message = page.locator("#job-message")
    message.wait_for()
    assert message.inner_text() == "1 failed item queued again; the job is pending."
    summary.locator(".badge", has_text="PENDING").wait_for()
    page.locator("#job-live", has_text="Live").wait_for()
    assert page.locator("#job-retry").is_hidden()
    assert run_job(server, job_id).wait(timeout=JOB_TIMEOUT_MS / 1000) == 0
    summary.locator(".badge", has_text=re.compile("^COMPLETED$")).wait_for()
    job = api(server, token, f"upload/jobs/{job_id}")
    assert job["status"] == "COMPLETED" and job["failed_items"] == 0
    page.wait_for_function(
        "() => ![...document.querySelectorAll('#items-table tbody .badge')]"
        ".some(b => b.textContent !== 'COMPLETED')"
    )
    assert shown_statuses(page) == statuses(job) == ["COMPLETED", "COMPLETED"]
    events = [u for u in page.requests if u.endswith(f"/upload/jobs/{job_id}/events")]
    assert len(events) == 2  # one stream per run of the job

    # Exports carry the token (fetched, then saved), byte for byte the API's.
    for format_ in ("csv", "parquet"):
        with page.expect_download() as download:
            press(page, f"#job-export-{format_}")
        saved = Path(download.value.path()).read_bytes()
        assert download.value.suggested_filename == f"job-{job_id}.{format_}"
        direct = httpx2.get(
            f"{server.url}/api/v1/admin/upload/jobs/{job_id}/export",
            params={"format": format_},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert direct.status_code == 200
        if format_ == "csv":
            assert saved == direct.content
            assert saved.decode().count("\n") == 3  # a header and two rows
        else:
            table = pq.read_table(io.BytesIO(saved))
            assert table.equals(pq.read_table(io.BytesIO(direct.content)))
            assert table.column("filename").to_pylist() == [
                p.name for p in SAMPLE_PHOTOS[:2]
            ]
        message.filter(has_text=f"Downloaded job-{job_id}.{format_}").wait_for()
    assert_stayed_on_machine(page, server.url)


def test_the_ledger_shows_calls_in_flight_then_their_outcome(page_for, tmp_path: Path):
    with FakeVLM(latency_seconds=6.0) as fake:
        server = start_server(vlm_env(tmp_path / "data", fake), tmp_path)
        try:
            token = server.sign_in_link.split("#token=")[1]
            page = page_for()
            page.goto(server.sign_in_link)
            page.locator("#cockpit").wait_for(state="visible")
            page.set_input_files("#file-input", SAMPLE_PHOTOS[:1])

            # Refreshed while both analyzers wait for their answer.
            ledger = page.locator("#costs-body")
            deadline = time.monotonic() + 30
            while "2 calls in flight" not in ledger.inner_text():
                assert time.monotonic() < deadline, ledger.inner_text()
                press(page, "#costs-refresh")
                page.wait_for_timeout(200)
            costs = api(server, token, "costs")
            assert costs["in_flight_calls"] == 2
            summary = ledger.locator(".costs-summary").inner_text()
            assert "(2 calls in flight, in any process)" in summary
            assert usd(costs["reserved_usd"]) in summary and costs["reserved_usd"] > 0
            rows = page.locator("#recent-calls tbody tr")
            assert rows.count() == 2
            for row in rows.all():
                cost = row.locator("td.col-cost .part").all_inner_texts()
                assert cost == ["not known yet", "–"]
                assert row.locator("td.col-tokens").inner_text() == "–"
                assert row.locator("td.col-outcome").inner_text() == "in flight"

            # Read again when the job ends: the same calls, answered.
            outcomes = page.locator("#recent-calls td.col-outcome")
            outcomes.filter(has_text=re.compile(r"^ok$")).nth(1).wait_for(
                timeout=JOB_TIMEOUT_MS
            )
            assert outcomes.all_inner_texts() == ["ok", "ok"]
            assert "(calls in flight)" in ledger.locator(".costs-summary").inner_text()
        finally:
            server.stop()
