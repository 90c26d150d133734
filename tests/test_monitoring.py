"""Prometheus metrics at /metrics, read back with the Prometheus text parser."""

from __future__ import annotations

from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from helpers import ADMIN, jpeg_bytes, upload, wait_for_job
from prometheus_client.parser import text_string_to_metric_families

from image_tagger.db import session_scope
from image_tagger.settings import reset_settings
from image_tagger.vlm.models import ToolUsage


def _samples(client, headers=None) -> dict[tuple, float]:
    response = client.get("/metrics", headers=headers or {})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _ledger(job_id: int) -> None:
    calls = [
        ("cognitive", "ok", 1000, 200, Decimal("0.0012"), 900.0),
        ("cognitive", "ok", 1100, 220, Decimal("0.0013"), 1100.0),
        ("patterns", "timeout", None, None, None, 30000.0),
        ("patterns", "in_flight", None, None, None, None),
    ]
    with session_scope(write=True) as session:
        for tool, outcome, tokens_in, tokens_out, usd, latency in calls:
            session.add(
                ToolUsage(
                    tool=tool,
                    provider="openai",
                    model="vision-1",
                    input_tokens=tokens_in,
                    output_tokens=tokens_out,
                    cost_usd=usd,
                    latency_ms=latency,
                    outcome=outcome,
                    job_id=job_id,
                )
            )


def test_metrics_count_jobs_items_durations_and_model_calls(client):
    files = [("a.jpg", jpeg_bytes(130)), ("b.jpg", jpeg_bytes(131)), ("x.jpg", b"?")]
    job_id = upload(client, files).json()["job_id"]
    wait_for_job(client, job_id)
    _ledger(job_id)

    samples = _samples(client)

    def value(name, **labels):
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("image_tagger_jobs", status="COMPLETED_WITH_ERRORS") == 1
    assert value("image_tagger_jobs", status="RUNNING") == 0
    assert value("image_tagger_items_processed_total") == 2
    assert value("image_tagger_items_failed_total") == 1
    assert value("image_tagger_items", status="PENDING") == 0
    assert value("image_tagger_queue_depth") == 0

    duration = "image_tagger_item_duration_seconds"
    # The rejected file was never analysed: two items, two analyses.
    assert value(f"{duration}_count", stage="item") == 2
    assert value(f"{duration}_count", stage="analysis") == 2
    assert value(f"{duration}_bucket", stage="item", le="+Inf") == 2
    assert value(f"{duration}_sum", stage="item") > 0
    assert value(f"{duration}_count", stage="vlm") == 3
    assert value(f"{duration}_bucket", stage="vlm", le="1.0") == 1
    assert value(f"{duration}_bucket", stage="vlm", le="2.5") == 2
    assert value(f"{duration}_bucket", stage="vlm", le="30.0") == 3
    assert value(f"{duration}_sum", stage="vlm") == pytest.approx(32.0)

    calls = "image_tagger_vlm_calls_total"
    assert value(calls, tool="cognitive", model="vision-1", outcome="ok") == 2
    assert value(calls, tool="patterns", model="vision-1", outcome="timeout") == 1
    # A call in flight is counted once it ends, so the counter never goes down.
    assert (
        calls,
        (("model", "vision-1"), ("outcome", "in_flight"), ("tool", "patterns")),
    ) not in samples
    in_flight = "image_tagger_vlm_calls_in_flight"
    assert value(in_flight, tool="patterns", model="vision-1") == 1
    tokens = "image_tagger_vlm_tokens_total"
    assert value(tokens, tool="cognitive", model="vision-1", direction="input") == 2100
    assert value(tokens, tool="cognitive", model="vision-1", direction="output") == 420
    cost = "image_tagger_vlm_cost_usd_total"
    assert value(cost, tool="cognitive", model="vision-1") == pytest.approx(0.0025)
    assert value(cost, tool="patterns", model="vision-1") == 0


def test_queue_depth_counts_the_pending_items(record_only_client):
    files = [(f"{n}.jpg", jpeg_bytes(140 + n)) for n in range(4)]
    upload(record_only_client, files)

    samples = _samples(record_only_client)

    assert samples[("image_tagger_queue_depth", ())] == 4
    assert samples[("image_tagger_jobs", (("status", "PENDING"),))] == 1


def test_metrics_can_require_the_admin_role(header_mode, monkeypatch):
    from image_tagger.app import create_app

    monkeypatch.setenv("IMAGE_TAGGER_METRICS_AUTH", "true")
    monkeypatch.setenv("IMAGE_TAGGER_QUEUE", "none")
    reset_settings()
    with TestClient(create_app()) as client:
        assert client.get("/metrics").status_code == 401
        tagger = {"X-User-Role": "tagger"}
        assert client.get("/metrics", headers=tagger).status_code == 403
        assert ("image_tagger_queue_depth", ()) in _samples(client, ADMIN)
