"""A call's ledger row is written before its request leaves: in flight, with
its reservation, seen by every process; a process killed mid-call leaves its
row, marked interrupted at the next start, and the item's retry uses the
answers already paid for instead of asking again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from genai_prices import Usage, calc_price
from helpers import ADMIN, ROOT, child_env, jpeg_bytes, upload, wait_for_job

#: A call's reservation before any call of its analyzer reported its usage:
#: 4,000 input tokens and VLM_MAX_OUTPUT_TOKENS (1,500) of output.
WORST_CASE = float(
    calc_price(
        Usage(input_tokens=4000, output_tokens=1500),
        "gpt-4o-mini",
        provider_id="openai",
    ).total_price
)
INTERRUPTED_NOTE = (
    "the process making this call stopped (it was killed, or the machine "
    "restarted) before the answer came; the provider may have billed it, so "
    "its cost is unknown"
)


@contextmanager
def app_client() -> Iterator[TestClient]:
    from image_tagger.app import create_app

    with TestClient(create_app()) as client:
        yield client


def costs(client) -> dict:
    response = client.get("/api/v1/admin/costs", headers=ADMIN)
    assert response.status_code == 200
    return response.json()


def wait_for_costs(client, done, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = costs(client)
        if done(report):
            return report
        time.sleep(0.05)
    raise AssertionError(f"the ledger never got there: {report}")


def by_tool(report: dict) -> dict[str, list[str]]:
    """The outcomes of the recent calls, oldest first, by analyzer."""
    outcomes: dict[str, list[str]] = {}
    for call in reversed(report["recent"]):
        outcomes.setdefault(call["tool"], []).append(call["outcome"])
    return outcomes


def test_a_call_is_in_the_ledger_while_in_flight_then_gets_its_outcome(vlm_env, fake):
    fake.latency_seconds = 1.5
    vlm_env(vlm_budget_usd=1)
    with app_client() as client:
        response = upload(client, [("a.jpg", jpeg_bytes(20))]).json()
        during = wait_for_costs(client, lambda r: r["in_flight_calls"] == 2)
        job = wait_for_job(client, response["job_id"])
        after = costs(client)
        image_id = response["image_ids"][0]
        image = client.get(f"/api/v1/admin/images/{image_id}", headers=ADMIN).json()

    # Sent, not answered: no tokens, cost or latency yet, and not unpriced.
    assert fake.log and len(fake.log) <= 2
    assert sorted(by_tool(during).items()) == [
        ("cognitive", ["in_flight"]),
        ("patterns", ["in_flight"]),
    ]
    for call in during["recent"]:
        assert (call["input_tokens"], call["cost_usd"], call["latency_ms"]) == (
            None,
            None,
            None,
        )
        assert call["error"] is None and call["job_id"] == response["job_id"]
    assert during["unpriced_calls"] == during["no_usage_calls"] == 0
    assert during["spent_usd"] == 0
    assert during["reserved_usd"] == pytest.approx(2 * WORST_CASE, abs=1e-12)
    assert during["remaining_usd"] == pytest.approx(1 - 2 * WORST_CASE, abs=1e-12)
    (model,) = during["by_model"]
    assert (model["calls"], model["in_flight_calls"], model["unpriced_calls"]) == (
        2,
        2,
        0,
    )

    # The same rows, completed.
    assert job["status"] == "COMPLETED"
    assert {o["status"] for o in image["analysis"]["vlm"].values()} == {"ok"}
    assert [c["id"] for c in after["recent"]] == [c["id"] for c in during["recent"]]
    assert [c["outcome"] for c in after["recent"]] == ["ok", "ok"]
    for call in after["recent"]:
        assert (call["input_tokens"], call["output_tokens"]) == (1000, 100)
        assert call["cost_usd"] > 0 and call["latency_ms"] >= 1500
    assert after["in_flight_calls"] == 0 and after["reserved_usd"] == 0
    assert len(fake.log) == 2


def child(data_dir, job_id: int) -> subprocess.Popen:
    """``scripts.run_upload_job`` on the job, with this test's settings."""
    settings = {k: v for k, v in os.environ.items() if k.startswith("IMAGE_TAGGER")}
    return subprocess.Popen(
        [sys.executable, "-m", "scripts.run_upload_job", str(job_id)],
        cwd=ROOT,
        env=child_env(data_dir, **settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def end(worker: subprocess.Popen) -> None:
    """Kill ``worker`` if it still runs, and close its output."""
    worker.kill()
    worker.wait()
    if worker.stdout:
        worker.stdout.close()


def test_a_call_waits_while_another_process_holds_the_last_of_the_budget(
    data_dir, vlm_env, fake
):
    # A worst-case reservation is $0.0015: under $0.002, one call at a time
    # until the first one reports its usage ($0.00021 a call).
    latency, budget = 4.0, 0.002
    fake.latency_seconds = latency
    vlm_env(queue="none", vlm_budget_usd=budget, vlm_concurrency=1)
    with app_client() as client:
        first = upload(client, [("a.jpg", jpeg_bytes(22))]).json()
        second = upload(client, [("b.jpg", jpeg_bytes(23))]).json()

    workers = [child(data_dir, first["job_id"])]
    seen = []
    try:
        with app_client() as client:
            # The first process's call is in flight: its reservation is seen
            # here, and by the second process, whose call waits for it.
            seen.append(wait_for_costs(client, lambda r: r["in_flight_calls"] == 1))
            workers.append(child(data_dir, second["job_id"]))
            while any(worker.poll() is None for worker in workers):
                seen.append(costs(client))
                time.sleep(0.1)
            report = costs(client)
        outputs = [worker.communicate(timeout=60)[0] for worker in workers]
    finally:
        for worker in workers:
            end(worker)

    assert [worker.returncode for worker in workers] == [0, 0], outputs
    assert seen[0]["reserved_usd"] == pytest.approx(WORST_CASE, abs=1e-12)
    # Reservations of different processes are not taken atomically (README):
    # two checking at the same instant may both pass, by one call at most.
    for snapshot in seen:
        spent, reserved = snapshot["spent_usd"], snapshot["reserved_usd"]
        assert spent + reserved <= budget + WORST_CASE + 1e-12
    # Nothing skipped: the second process's first call waited for the first
    # process's call to end (concurrency 1 holds that process's other call).
    assert [c["outcome"] for c in report["recent"]] == ["ok"] * 4
    arrivals = sorted(entry.at for entry in fake.log)
    assert len(arrivals) == 4 and arrivals[1] - arrivals[0] >= latency - 0.1
    assert report["in_flight_calls"] == 0 and report["reserved_usd"] == 0


def test_a_process_killed_mid_call_leaves_its_row_and_its_retry_pays_once(
    data_dir, vlm_env, fake
):
    # The patterns answer never comes before the process is killed.
    fake.tool_modes["patterns"] = "slow"
    fake.slow_seconds = 30
    settings = {
        "vlm_budget_usd": 1,
        "vlm_timeout_seconds": 3,
        "vlm_retry_total_seconds": 1,
        "lease_seconds": 1,  # the killed process's lease expires at once
        "recovery_interval_seconds": 60,
    }
    vlm_env(queue="none", **settings)
    with app_client() as client:
        response = upload(client, [("a.jpg", jpeg_bytes(24))]).json()
    job_id, image_id = response["job_id"], response["image_ids"][0]

    worker = child(data_dir, job_id)
    try:
        with app_client() as client:
            wait_for_costs(
                client,
                lambda r: (
                    by_tool(r) == {"cognitive": ["ok"], "patterns": ["in_flight"]}
                ),
            )
            # Read again: the report's parts are read one after another, so
            # the one that first showed this state may hold a reservation of
            # the cognitive call read just before it ended.
            before = costs(client)
            assert by_tool(before) == {"cognitive": ["ok"], "patterns": ["in_flight"]}
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            (left,) = [c for c in before["recent"] if c["tool"] == "patterns"]
            assert before["reserved_usd"] == pytest.approx(WORST_CASE, abs=1e-12)

            # Once no live call can be that old (retry budget, a timeout and
            # 5 s), the row holds no reservation any more.
            sent = datetime.fromisoformat(left["created_at"]).astimezone(UTC)
            time.sleep(max(0.0, sent.timestamp() + 9.5 - time.time()))
            stale = costs(client)
    finally:
        end(worker)
    assert by_tool(stale) == {"cognitive": ["ok"], "patterns": ["in_flight"]}
    assert stale["reserved_usd"] == 0
    assert sorted(entry.tool for entry in fake.log) == ["cognitive", "patterns"]

    # The next start marks the row interrupted and retries the item: only the
    # analyzer without an answer is asked, the paid one is used as it was.
    fake.tool_modes.clear()
    fake.reset()
    fake.score = 0.25
    vlm_env(queue="inprocess", **{**settings, "lease_seconds": 10})
    with app_client() as client:
        started = costs(client)
        job = wait_for_job(client, job_id)
        after = costs(client)
        image = client.get(f"/api/v1/admin/images/{image_id}", headers=ADMIN).json()

    (marked,) = [c for c in started["recent"] if c["id"] == left["id"]]
    assert marked["outcome"] == "interrupted"
    assert marked["error"] == INTERRUPTED_NOTE
    assert (marked["cost_usd"], marked["input_tokens"], marked["latency_ms"]) == (
        None,
        None,
        None,
    )

    assert job["status"] == "COMPLETED"
    assert [entry.tool for entry in fake.log] == ["patterns"]
    vlm = image["analysis"]["vlm"]
    assert {o["status"] for o in vlm.values()} == {"ok"}
    assert set(vlm["cognitive"]["result"].values()) == {0.625}  # the first answer
    assert vlm["patterns"]["result"]["patterns"]["nook"]["presence"] == 0.25
    assert by_tool(after) == {
        "cognitive": ["ok"],
        "patterns": ["interrupted", "ok"],
    }
    assert after["unpriced_calls"] == after["no_usage_calls"] == 1
    assert after["in_flight_calls"] == 0 and after["reserved_usd"] == 0
    assert job["items"][0]["attempts"] == 2

    # Once stored, an answer is never used again instead of a call: another
    # model's answers replace them, and going back to this model asks again.
    for model, score in (("gpt-4o", 0.5), ("gpt-4o-mini", 0.75)):
        fake.reset()
        fake.score = score
        vlm_env(queue="inprocess", vlm_model=model)
        with app_client() as client:
            again = upload(client, [("b.jpg", jpeg_bytes(24))]).json()
            wait_for_job(client, again["job_id"])
            image = client.get(f"/api/v1/admin/images/{image_id}", headers=ADMIN)
        assert sorted(entry.tool for entry in fake.log) == ["cognitive", "patterns"]
        vlm = image.json()["analysis"]["vlm"]
        assert {o["model"] for o in vlm.values()} == {model}
        assert set(vlm["cognitive"]["result"].values()) == {score}
