"""The budget: reservations from observed costs, its cap with calls in flight,
its message, and rating the skipped images once the budget allows."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient
from genai_prices import Usage, calc_price
from helpers import ADMIN, jpeg_bytes, upload, wait_for_job


@contextmanager
def app_client() -> Iterator[TestClient]:
    from image_tagger.app import create_app

    with TestClient(create_app()) as client:
        yield client


def per_call(input_tokens: int, output_tokens: int) -> float:
    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    return float(calc_price(usage, "gpt-4o-mini", provider_id="openai").total_price)


def run_photos(client, seeds: range) -> tuple[dict, list[dict]]:
    response = upload(client, [(f"p{seed}.jpg", jpeg_bytes(seed)) for seed in seeds])
    assert response.status_code == 202
    job = wait_for_job(client, response.json()["job_id"], timeout=120)
    images = [
        client.get(f"/api/v1/admin/images/{image_id}", headers=ADMIN).json()
        for image_id in response.json()["image_ids"]
    ]
    return job, images


def outcomes(images: list[dict]) -> list[dict]:
    return [o for image in images for o in image["analysis"]["vlm"].values()]


def test_the_budget_is_spent_to_its_last_call_then_skips_say_what_to_do(vlm_env, fake):
    # 1000 input and 100 output tokens: $0.00021 a call, so 19 calls fit
    # under $0.004 ($0.00399), though the worst case of one call is $0.0015.
    cost = per_call(1000, 100)
    assert cost == pytest.approx(0.00021)
    vlm_env(vlm_budget_usd=0.004, vlm_concurrency=4)
    with app_client() as client:
        job, images = run_photos(client, range(15))
        report = client.get("/api/v1/admin/costs", headers=ADMIN).json()

    assert job["status"] == "COMPLETED"
    statuses = [o["status"] for o in outcomes(images)]
    assert statuses.count("ok") == 19 and statuses.count("skipped") == 11
    assert len(fake.log) == 19
    assert report["spent_usd"] == pytest.approx(19 * cost, abs=1e-12)
    assert report["reserved_usd"] == 0.0
    assert report["remaining_usd"] == pytest.approx(0.004 - 19 * cost, abs=1e-12)

    reasons = {o["reason"] for o in outcomes(images) if o["status"] == "skipped"}
    final = (
        "budget reached: $0.00399 spent and $0 reserved for calls in flight, of "
        "the $0.004 budget (IMAGE_TAGGER_VLM_BUDGET_USD); this call needs about "
        "$0.00021. To rate the skipped images, raise IMAGE_TAGGER_VLM_BUDGET_USD, "
        "then upload them again or run `image-tagger reanalyze --all`: only their "
        "missing ratings are asked for"
    )
    assert final in reasons
    for reason in reasons:
        assert reason.startswith("budget reached: $")
        assert "reserved for calls in flight, of the $0.004 budget" in reason

    # As the message says: a higher budget, the same photos again, and only
    # the skipped ratings are asked for.
    fake.reset()
    vlm_env(vlm_budget_usd=0.01, vlm_concurrency=4)
    with app_client() as client:
        job, images = run_photos(client, range(15))
    assert job["status"] == "COMPLETED"
    assert [o["status"] for o in outcomes(images)] == ["ok"] * 30
    assert len(fake.log) == 11


def test_calls_dearer_than_estimated_pass_the_cap_by_at_most_those_in_flight(
    vlm_env, fake
):
    concurrency, budget = 4, 0.004
    vlm_env(vlm_budget_usd=budget, vlm_concurrency=concurrency)
    with app_client() as client:
        run_photos(client, range(1))  # the ledger learns $0.00021 a call
    assert len(fake.log) == 2

    # Now each call costs $0.00081, while the first ones reserve $0.00021.
    fake.prompt_tokens = 5000
    dear = per_call(5000, 100)
    fake.latency_seconds = 0.2
    with app_client() as client:
        job, images = run_photos(client, range(1, 13))
        report = client.get("/api/v1/admin/costs", headers=ADMIN).json()

    assert job["status"] == "COMPLETED"
    assert fake.max_in_flight <= concurrency
    # Over the cap by no more than the calls in flight, and most of it used.
    assert budget - dear < report["spent_usd"] <= budget + concurrency * dear
    statuses = [o["status"] for o in outcomes(images)]
    assert statuses.count("ok") == len(fake.log) - 2
    assert statuses.count("skipped") == 24 - statuses.count("ok") > 0
