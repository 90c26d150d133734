"""The VLM analyzers end to end over HTTP, against the fake provider on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from genai_prices import Usage, calc_price
from helpers import ADMIN, STABLE_KEYS, jpeg_bytes, upload, wait_for_job
from sqlalchemy import select

from image_tagger.db import session_scope
from image_tagger.jobs.runner import run_upload_job
from image_tagger.settings import reset_settings
from image_tagger.vlm.models import ToolUsage
from image_tagger.vlm.schemas import PATTERN_VOCABULARY

COGNITIVE_KEYS = {
    "coherence",
    "complexity",
    "legibility",
    "mystery",
    "restorativeness",
    "cozy",
    "welcoming",
    "tranquil",
    "scary",
    "jarring",
}


@contextmanager
def app_client() -> Iterator[TestClient]:
    from image_tagger.app import create_app

    with TestClient(create_app()) as client:
        yield client


def library_price(model: str, input_tokens: int, output_tokens: int) -> float:
    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    return float(calc_price(usage, model, provider_id="openai").total_price)


def run_images(client, count: int) -> tuple[dict, list[dict]]:
    """Upload ``count`` new photos as one job; the finished job and its images."""
    response = upload(client, [(f"p{i}.jpg", jpeg_bytes(i)) for i in range(count)])
    assert response.status_code == 202
    job = wait_for_job(client, response.json()["job_id"], timeout=60)
    images = [
        client.get(f"/api/v1/admin/images/{image_id}", headers=ADMIN).json()
        for image_id in response.json()["image_ids"]
    ]
    return job, images


def costs(client, **params) -> dict:
    response = client.get("/api/v1/admin/costs", headers=ADMIN, params=params)
    assert response.status_code == 200
    return response.json()


def test_both_analyzers_are_stored_and_every_call_is_priced(vlm_env, fake):
    fake.prompt_tokens, fake.completion_tokens = 1234, 210
    with app_client() as client:
        job, images = run_images(client, 2)
        report = costs(client)

    assert job["status"] == "COMPLETED"
    assert [item["note"] for item in job["items"]] == [None, None]
    for image in images:
        analysis = image["analysis"]
        assert set(analysis["metrics"]) >= STABLE_KEYS
        cognitive, patterns = analysis["vlm"]["cognitive"], analysis["vlm"]["patterns"]
        assert cognitive["status"] == "ok" and cognitive["reason"] is None
        assert cognitive["model"] == "gpt-4o-mini"
        assert cognitive["result"] == dict.fromkeys(COGNITIVE_KEYS, fake.score)
        assert patterns["status"] == "ok"
        assert set(patterns["result"]["patterns"]) == set(PATTERN_VOCABULARY)
        prospect = patterns["result"]["patterns"]["prospect"]
        assert prospect["presence"] == fake.score and prospect["evidence"]
        assert analysis["parameters"]["vlm"]["model"] == "gpt-4o-mini"

    # One ledger row per call, priced by the library's table for the model.
    per_call = library_price("gpt-4o-mini", 1234, 210)
    assert per_call > 0
    assert len(fake.log) == 4
    assert len(report["recent"]) == 4
    for call in report["recent"]:
        assert call["outcome"] == "ok" and call["provider"] == "openai"
        assert (call["input_tokens"], call["output_tokens"]) == (1234, 210)
        assert call["cost_usd"] == pytest.approx(per_call, abs=1e-12)
        assert call["job_id"] == job["id"]
        assert call["latency_ms"] > 0
    assert {call["image_id"] for call in report["recent"]} == {
        image["id"] for image in images
    }
    assert report["spent_usd"] == pytest.approx(4 * per_call, abs=1e-12)
    assert report["unpriced_calls"] == 0
    assert report["budget_usd"] is None and report["remaining_usd"] is None
    assert [(row["tool"], row["calls"]) for row in report["by_analyzer"]] == [
        ("cognitive", 2),
        ("patterns", 2),
    ]
    assert report["by_model"] == [
        {
            "provider": "openai",
            "model": "gpt-4o-mini",
            "calls": 4,
            "input_tokens": 4 * 1234,
            "output_tokens": 4 * 210,
            "cost_usd": pytest.approx(4 * per_call, abs=1e-12),
            "unpriced_calls": 0,
            "no_usage_calls": 0,
            "in_flight_calls": 0,
        }
    ]
    (today,) = report["by_day"]
    assert today["calls"] == 4 and len(today["day"]) == 10


def test_a_model_without_a_known_price_costs_null_never_zero(vlm_env, fake):
    vlm_env(vlm_model="fake-vision-1")
    with app_client() as client:
        job, images = run_images(client, 1)
        report = costs(client)

    assert images[0]["analysis"]["vlm"]["cognitive"]["status"] == "ok"
    assert [call["cost_usd"] for call in report["recent"]] == [None, None]
    assert [call["input_tokens"] for call in report["recent"]] == [1000, 1000]
    assert report["unpriced_calls"] == 2 and report["no_usage_calls"] == 0
    assert report["spent_usd"] == 0.0
    # No call has a price: every total's cost is unknown, not zero.
    (model,) = report["by_model"]
    assert (model["calls"], model["cost_usd"]) == (2, None)
    assert (model["unpriced_calls"], model["no_usage_calls"]) == (2, 0)
    assert model["input_tokens"] == 2000
    for row in report["by_analyzer"] + report["by_day"]:
        assert row["cost_usd"] is None and row["unpriced_calls"] == row["calls"]


def test_price_settings_override_the_library(vlm_env, fake):
    vlm_env(vlm_price_input_per_mtok_usd=2.0, vlm_price_output_per_mtok_usd=8.0)
    with app_client() as client:
        run_images(client, 1)
        report = costs(client, recent=1)

    assert len(report["recent"]) == 1
    # 1000 input tokens at $2/M and 100 output tokens at $8/M.
    assert report["recent"][0]["cost_usd"] == pytest.approx(0.0028, abs=1e-12)


def test_the_budget_stops_calls_and_items_still_complete(vlm_env, fake):
    # Each call costs 1000 x 0.15/M + 100 x 0.6/M = $0.00021 (gpt-4o-mini).
    per_call = library_price("gpt-4o-mini", 1000, 100)
    budget = 0.001
    vlm_env(vlm_budget_usd=budget, vlm_max_output_tokens=100, vlm_concurrency=2)
    with app_client() as client:
        job, images = run_images(client, 4)
        report = costs(client)

    assert job["status"] == "COMPLETED"
    statuses = [
        outcome["status"]
        for image in images
        for outcome in image["analysis"]["vlm"].values()
    ]
    assert 1 <= statuses.count("ok") < 8
    assert statuses.count("ok") + statuses.count("skipped") == 8
    for image in images:
        assert set(image["analysis"]["metrics"]) >= STABLE_KEYS
        for outcome in image["analysis"]["vlm"].values():
            if outcome["status"] == "skipped":
                assert "budget reached" in outcome["reason"]
                assert "IMAGE_TAGGER_VLM_BUDGET_USD" in outcome["reason"]
    assert any("budget reached" in (item["note"] or "") for item in job["items"])

    assert report["spent_usd"] <= budget
    assert report["spent_usd"] == pytest.approx(
        statuses.count("ok") * per_call, abs=1e-12
    )
    assert len(fake.log) == statuses.count("ok")
    assert report["budget_usd"] == budget
    assert report["reserved_usd"] == 0.0
    assert report["remaining_usd"] == pytest.approx(budget - report["spent_usd"])


def test_an_unknown_price_under_a_budget_skips_the_calls(vlm_env, fake):
    vlm_env(vlm_model="fake-vision-1", vlm_budget_usd=5)
    with app_client() as client:
        job, images = run_images(client, 1)

    cognitive = images[0]["analysis"]["vlm"]["cognitive"]
    assert cognitive["status"] == "skipped"
    assert "price of fake-vision-1" in cognitive["reason"]
    assert "IMAGE_TAGGER_VLM_PRICE_INPUT_PER_MTOK_USD" in cognitive["reason"]
    assert fake.log == []
    assert job["status"] == "COMPLETED"


@pytest.mark.parametrize(
    ("mode", "settings", "calls_each", "outcome", "reason"),
    [
        ("500", {"vlm_max_attempts": 3}, 3, "server_error", "gave up after 3"),
        ("503", {"vlm_max_attempts": 2}, 2, "server_error", "HTTP 503"),
        ("429", {"vlm_max_attempts": 2}, 2, "rate_limited", "HTTP 429"),
        ("broken_json", {}, 2, "invalid_answer", "did not match the schema twice"),
        ("schema_fail", {}, 2, "invalid_answer", "did not match the schema twice"),
        (
            "slow",
            {"vlm_timeout_seconds": 0.3, "vlm_max_attempts": 2},
            2,
            "timeout",
            "no answer within 0.3 s",
        ),
        (
            "500",
            {"vlm_max_attempts": 10, "vlm_retry_total_seconds": 0.5},
            None,
            "server_error",
            "IMAGE_TAGGER_VLM_RETRY_TOTAL_SECONDS",
        ),
    ],
)
def test_each_fault_ends_in_a_clear_status_after_bounded_retries(
    vlm_env, fake, mode, settings, calls_each, outcome, reason
):
    fake.default_mode = mode
    fake.retry_after_seconds = 0.2
    fake.slow_seconds = 1.0
    vlm_env(vlm_backoff_seconds=0.1, **settings)
    with app_client() as client:
        job, images = run_images(client, 1)
        report = costs(client)

    assert job["status"] == "COMPLETED"
    assert set(images[0]["analysis"]["metrics"]) >= STABLE_KEYS
    for name in ("cognitive", "patterns"):
        status = images[0]["analysis"]["vlm"][name]
        assert status["status"] == "error", status
        assert reason in status["reason"]
        assert status["result"] is None
    note = job["items"][0]["note"]
    assert "VLM cognitive" in note and "patterns" in note and " error: " in note

    # Every request is in the ledger, and retries stopped at the bound.
    rows = report["recent"]
    assert len(rows) == len(fake.log)
    assert {row["outcome"] for row in rows} == {outcome}
    for name in ("cognitive", "patterns"):
        made = [row for row in rows if row["tool"] == name]
        if calls_each is not None:
            assert len(made) == calls_each
        else:  # bounded by time: 0.5 s of 0.1, 0.2, 0.4 s backoffs
            assert 2 <= len(made) <= 4


def test_a_429_is_retried_after_its_retry_after(vlm_env, fake):
    fake.faults.extend(["429"])
    fake.retry_after_seconds = 0.6
    vlm_env(vlm_concurrency=1)
    with app_client() as client:
        job, images = run_images(client, 1)
        report = costs(client)

    vlm = images[0]["analysis"]["vlm"]
    assert {outcome["status"] for outcome in vlm.values()} == {"ok"}
    limited = fake.log[0]
    assert limited.status == 429
    (retried,) = [entry for entry in fake.log[1:] if entry.tool == limited.tool]
    assert retried.status == 200
    assert retried.at - limited.at >= 0.6
    outcomes = sorted(row["outcome"] for row in report["recent"])
    assert outcomes == ["ok", "ok", "rate_limited"]
    (row,) = [row for row in report["recent"] if row["outcome"] == "rate_limited"]
    assert row["cost_usd"] is None and row["input_tokens"] is None  # no usage
    # The group's cost is its priced calls' sum, with the unpriced one counted.
    limited = {entry["tool"]: entry for entry in report["by_analyzer"]}[row["tool"]]
    assert limited["calls"] == 2
    assert limited["cost_usd"] == pytest.approx(library_price("gpt-4o-mini", 1000, 100))
    assert (limited["unpriced_calls"], limited["no_usage_calls"]) == (1, 1)
    (model,) = report["by_model"]
    assert (model["calls"], model["unpriced_calls"], model["no_usage_calls"]) == (
        3,
        1,
        1,
    )


def test_an_answer_that_fails_the_schema_is_asked_for_once_more(vlm_env, fake):
    fake.faults.extend(["schema_fail"])
    vlm_env(vlm_concurrency=1)
    with app_client() as client:
        job, images = run_images(client, 1)
        report = costs(client)

    vlm = images[0]["analysis"]["vlm"]
    assert {outcome["status"] for outcome in vlm.values()} == {"ok"}
    outcomes = sorted(row["outcome"] for row in report["recent"])
    assert outcomes == ["invalid_answer", "ok", "ok"]
    # The invalid answer was paid for: it is priced like any other.
    assert all(row["cost_usd"] > 0 for row in report["recent"])


def test_without_a_provider_the_analyzers_are_skipped_and_say_so(client):
    job, images = run_images(client, 1)
    report = costs(client)

    vlm = images[0]["analysis"]["vlm"]
    assert set(vlm) == {"cognitive", "patterns"}
    for outcome in vlm.values():
        assert outcome["status"] == "skipped"
        assert "IMAGE_TAGGER_VLM_MODEL" in outcome["reason"]
        assert outcome["model"] is None and outcome["result"] is None
    assert set(images[0]["analysis"]["metrics"]) >= STABLE_KEYS
    assert job["status"] == "COMPLETED"
    assert "VLM cognitive, patterns skipped" in job["items"][0]["note"]
    assert report["recent"] == [] and report["spent_usd"] == 0.0


def test_two_jobs_with_the_same_new_image_pay_its_calls_once(
    vlm_env, fake, monkeypatch
):
    fake.latency_seconds = 0.3
    vlm_env(queue="none")
    photo = jpeg_bytes(3)
    with app_client() as client:
        first = upload(client, [("a.jpg", photo)]).json()
        second = upload(client, [("b.jpg", photo)]).json()
    assert second["files"][0]["status"] == "duplicate"

    # Two runners, one per job, start on the same image at the same moment.
    barrier = threading.Barrier(2)
    outcomes = {}

    def run(job_id: int) -> None:
        barrier.wait()
        outcomes[job_id] = run_upload_job(job_id)

    threads = [
        threading.Thread(target=run, args=(job["job_id"],)) for job in (first, second)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert {outcome.status for outcome in outcomes.values()} == {"COMPLETED"}
    assert len(fake.log) == 2  # one call per analyzer, not two
    with session_scope() as session:
        rows = session.scalars(select(ToolUsage)).all()
    assert sorted(row.tool for row in rows) == ["cognitive", "patterns"]
    assert sum(row.cost_usd for row in rows) == Decimal("0.00042")


def test_an_unreachable_provider_is_retried_then_an_error(vlm_env, fake):
    from helpers import free_port

    closed = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    vlm_env(vlm_base_url=closed, vlm_max_attempts=2)
    with app_client() as client:
        job, images = run_images(client, 1)
        report = costs(client)

    assert job["status"] == "COMPLETED"
    for outcome in images[0]["analysis"]["vlm"].values():
        assert outcome["status"] == "error"
        assert f"cannot reach {closed}" in outcome["reason"]
        assert "gave up after 2 attempts" in outcome["reason"]
    assert [row["outcome"] for row in report["recent"]] == ["connection_error"] * 4
    # Calls that never reached the model: no usage, no cost; unknown, not zero.
    for row in report["by_model"] + report["by_analyzer"] + report["by_day"]:
        assert row["cost_usd"] is None
        assert row["unpriced_calls"] == row["no_usage_calls"] == row["calls"]
    assert [row["calls"] for row in report["by_analyzer"]] == [2, 2]
    assert report["unpriced_calls"] == report["no_usage_calls"] == 4


@pytest.mark.parametrize(
    ("mode", "what"),
    [
        ("not_json", "HTTP 200 with an HTML page: '<html><body>Bad gateway"),
        ("html", "HTTP 200 with an HTML page: '<html><body>Bad gateway"),
        (
            "not_completion",
            "HTTP 200 with JSON without choices (it says: unknown route "
            "/chat/completions)",
        ),
    ],
)
def test_an_answer_that_is_not_a_chat_completion_is_a_bad_response(
    vlm_env, fake, mode, what
):
    fake.default_mode = mode
    with app_client() as client:
        job, images = run_images(client, 1)
        report = costs(client)

    assert job["status"] == "COMPLETED"
    for outcome in images[0]["analysis"]["vlm"].values():
        assert outcome["status"] == "error"
        assert outcome["reason"] == (
            f"the endpoint did not answer like an OpenAI-compatible API ({what}"
            + ("</body></html>'" if "HTML" in what else "")
            + f"); check IMAGE_TAGGER_VLM_BASE_URL, {fake.url}"
        )
    # Not retried: a wrong base URL does not mend itself.
    assert len(fake.log) == 2
    rows = report["recent"]
    assert [row["outcome"] for row in rows] == ["bad_response"] * 2
    assert {row["error"] for row in rows} == {
        images[0]["analysis"]["vlm"]["cognitive"]["reason"]
    }
    assert report["unpriced_calls"] == report["no_usage_calls"] == 2


def test_a_404_is_refused_and_names_the_settings_to_check(vlm_env, fake):
    fake.default_mode = "404"
    with app_client() as client:
        _job, images = run_images(client, 1)
        report = costs(client)

    reason = images[0]["analysis"]["vlm"]["cognitive"]["reason"]
    assert reason == (
        "the provider answered HTTP 404: The model does not exist (check that "
        "IMAGE_TAGGER_VLM_MODEL, 'gpt-4o-mini', is a model the provider serves, and "
        f"IMAGE_TAGGER_VLM_BASE_URL, {fake.url})"
    )
    assert [row["outcome"] for row in report["recent"]] == ["refused"] * 2
    assert len(fake.log) == 2


def test_a_base_url_without_its_api_version_is_named_as_the_setting_to_check(
    vlm_env, fake
):
    base = fake.url.removesuffix("/v1")
    vlm_env(vlm_base_url=base)
    with app_client() as client:
        _job, images = run_images(client, 1)

    reason = images[0]["analysis"]["vlm"]["cognitive"]["reason"]
    assert reason.startswith("the provider answered HTTP 404: ")
    assert reason.endswith(
        f"IMAGE_TAGGER_VLM_BASE_URL, {base}: it should usually end in /v1)"
    )
    assert fake.log == []  # no request reached the chat endpoint


def test_a_408_from_the_provider_is_a_timeout_and_retried(vlm_env, fake):
    fake.faults.extend(["408"])
    vlm_env(vlm_concurrency=1)
    with app_client() as client:
        _job, images = run_images(client, 1)
        report = costs(client)

    vlm = images[0]["analysis"]["vlm"]
    assert {outcome["status"] for outcome in vlm.values()} == {"ok"}
    assert sorted(row["outcome"] for row in report["recent"]) == [
        "ok",
        "ok",
        "timeout",
    ]
    assert len(fake.log) == 3


def test_a_fault_in_the_vlm_stage_keeps_the_metrics(vlm_env, fake, monkeypatch):
    from image_tagger.vlm.service import VlmService

    def broken(self, jpeg, context, **options):
        raise RuntimeError("a bug")

    monkeypatch.setattr(VlmService, "analyze", broken)
    with app_client() as client:
        job, images = run_images(client, 1)

    assert job["status"] == "COMPLETED"
    assert set(images[0]["analysis"]["metrics"]) >= STABLE_KEYS
    for outcome in images[0]["analysis"]["vlm"].values():
        assert outcome["status"] == "error"
        assert outcome["reason"] == "the VLM stage failed: RuntimeError: a bug"


def test_an_image_analysed_before_gets_only_its_missing_vlm_results(vlm_env, fake):
    fake.tool_modes["patterns"] = "500"
    vlm_env(vlm_max_attempts=1)
    photo = jpeg_bytes(5)
    with app_client() as client:
        first = upload(client, [("a.jpg", photo)]).json()
        wait_for_job(client, first["job_id"])
        image_id = first["image_ids"][0]
        before = client.get(f"/api/v1/admin/images/{image_id}", headers=ADMIN).json()
    vlm = before["analysis"]["vlm"]
    assert (vlm["cognitive"]["status"], vlm["patterns"]["status"]) == ("ok", "error")

    # Uploaded again once the provider is well: only patterns is asked.
    fake.tool_modes.clear()
    fake.reset()
    with app_client() as client:
        second = upload(client, [("b.jpg", photo)]).json()
        job = wait_for_job(client, second["job_id"])
        after = client.get(f"/api/v1/admin/images/{image_id}", headers=ADMIN).json()
    assert [entry.tool for entry in fake.log] == ["patterns"]
    assert job["items"][0]["note"] is None
    vlm = after["analysis"]["vlm"]
    assert (vlm["cognitive"]["status"], vlm["patterns"]["status"]) == ("ok", "ok")
    assert vlm["cognitive"] == before["analysis"]["vlm"]["cognitive"]
    # The metrics are computed again, the same up to float summation order.
    assert after["analysis"]["metrics"] == pytest.approx(
        before["analysis"]["metrics"], rel=1e-9
    )

    # Complete now: a third upload asks nothing.
    fake.reset()
    with app_client() as client:
        third = upload(client, [("c.jpg", photo)]).json()
        job = wait_for_job(client, third["job_id"])
    assert fake.log == []
    assert "already analysed" in job["items"][0]["note"]


def test_an_image_analysed_without_a_provider_is_rated_once_one_is_set(
    vlm_env, fake, monkeypatch
):
    monkeypatch.delenv("IMAGE_TAGGER_VLM_MODEL")
    reset_settings()
    photo = jpeg_bytes(6)
    with app_client() as client:
        first = upload(client, [("a.jpg", photo)]).json()
        wait_for_job(client, first["job_id"])
    assert fake.log == []

    vlm_env()
    with app_client() as client:
        second = upload(client, [("b.jpg", photo)]).json()
        wait_for_job(client, second["job_id"])
        image_id = second["image_ids"][0]
        image = client.get(f"/api/v1/admin/images/{image_id}", headers=ADMIN).json()
    assert sorted(entry.tool for entry in fake.log) == ["cognitive", "patterns"]
    statuses = {name: o["status"] for name, o in image["analysis"]["vlm"].items()}
    assert statuses == {"cognitive": "ok", "patterns": "ok"}


def test_a_runner_waiting_on_a_dead_runners_image_takes_over(vlm_env, fake):
    from image_tagger.jobs import service

    vlm_env(queue="none", lease_seconds=1)
    photo = jpeg_bytes(7)
    with app_client() as client:
        first = upload(client, [("a.jpg", photo)]).json()
        second = upload(client, [("b.jpg", photo)]).json()
    with session_scope(write=True) as session:  # a runner that then dies
        assert service.claim_next_item(
            session, first["job_id"], owner="dead", lease_seconds=1
        )

    # The second job's runner waits for the dead claim, then analyses.
    stop, outcome = threading.Event(), []
    runner = threading.Thread(
        target=lambda: outcome.append(run_upload_job(second["job_id"], stop=stop))
    )
    runner.start()
    runner.join(timeout=30)
    stop.set()
    runner.join()
    assert outcome[0].status == "COMPLETED"
    assert sorted(entry.tool for entry in fake.log) == ["cognitive", "patterns"]
    assert run_upload_job(first["job_id"]).status == "COMPLETED"
    assert len(fake.log) == 2


@pytest.mark.parametrize(
    ("prompt_tokens", "completion_tokens", "named"),
    [
        (-5_000_000, -100, "prompt_tokens=-5000000, completion_tokens=-100"),
        ("lots", None, "prompt_tokens=lots"),
        (10**15, 10**15, "prompt_tokens=1000000000000000, completion_tokens="),
    ],
)
def test_impossible_token_counts_are_not_believed_and_cost_nothing_known(
    vlm_env, fake, prompt_tokens, completion_tokens, named
):
    # A provider that reports a negative usage must not lower the spending
    # (and so lift the budget), nor a text or huge one break the ledger.
    vlm_env(
        vlm_budget_usd=1,
        vlm_price_input_per_mtok_usd=0.15,
        vlm_price_output_per_mtok_usd=0.6,
    )
    fake.prompt_tokens, fake.completion_tokens = prompt_tokens, completion_tokens
    with app_client() as client:
        job, images = run_images(client, 1)
        response = client.get("/api/v1/admin/costs", headers=ADMIN)

    assert job["status"] == "COMPLETED"
    assert images[0]["analysis"]["vlm"]["cognitive"]["status"] == "ok"
    assert response.status_code == 200
    report = response.json()
    assert report["spent_usd"] == 0.0
    assert report["remaining_usd"] == 1.0
    assert report["unpriced_calls"] == 2
    for call in report["recent"]:
        assert call["outcome"] == "ok"
        assert (call["input_tokens"], call["output_tokens"], call["cost_usd"]) == (
            None,
            None,
            None,
        )
        assert call["error"].startswith(
            f"the provider reported impossible token counts ({named}"
        )
