"""The analysis pool: time limits and dead processes stay with their task."""

from __future__ import annotations

import os
import threading
import time

import pytest
from helpers import jpeg_bytes, upload
from pebble import ProcessExpired

from image_tagger.jobs.pool import ComputePool
from image_tagger.jobs.runner import run_upload_job
from image_tagger.settings import get_settings


@pytest.fixture
def pool():
    compute = ComputePool(2, max_pixels=10**8, timeout_seconds=1.0)
    yield compute
    compute.shutdown()


def test_a_task_past_the_time_limit_is_stopped_and_the_pool_goes_on(pool):
    slow = pool.submit(time.sleep, 30)
    quick = pool.submit(abs, -4)

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        slow.result()
    assert time.monotonic() - started < 10
    assert quick.result() == 4
    assert pool.submit(abs, -5).result() == 5


def test_a_dying_process_fails_only_its_own_task(pool):
    dying = pool.submit(os._exit, 3)
    fine = pool.submit(abs, -6)

    with pytest.raises(ProcessExpired) as died:
        dying.result()
    assert died.value.exitcode == 3
    assert fine.result() == 6


def test_an_item_past_the_time_limit_fails_with_the_setting_to_raise(
    record_only_client,
):
    class SlowPool(ComputePool):
        """Its analysis takes 30 s, whatever the image: far past the limit."""

        def submit(self, fn, /, *args):
            return super().submit(time.sleep, 30)

    files = [("big.jpg", jpeg_bytes(1, size=(1600, 1200)))]
    job_id = upload(record_only_client, files).json()["job_id"]
    slow_pool = SlowPool(1, max_pixels=10**8, timeout_seconds=0.5)
    try:
        outcome = run_upload_job(job_id, executor=slow_pool, settings=get_settings())
    finally:
        slow_pool.shutdown()

    assert outcome.status == "FAILED"
    job = record_only_client.get(
        f"/api/v1/admin/upload/jobs/{job_id}", headers={"X-User-Role": "admin"}
    ).json()
    assert "IMAGE_TAGGER_ITEM_TIMEOUT_SECONDS" in job["items"][0]["error_message"]
    assert job["items"][0]["attempts"] == 1


def test_shutdown_cancels_the_tasks_in_flight():
    from concurrent.futures import CancelledError

    compute = ComputePool(1, max_pixels=10**8, timeout_seconds=60)
    running = compute.submit(time.sleep, 30)
    queued = compute.submit(time.sleep, 30)
    time.sleep(1.0)

    started = time.monotonic()
    compute.shutdown()
    for future in (running, queued):
        with pytest.raises(CancelledError):
            future.result(timeout=5)
    assert time.monotonic() - started < 10


class _StoppingPool:
    """A pool shut down while its first task runs: the task is cancelled."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop

    def submit(self, fn, /, *args):
        from concurrent.futures import Future

        self.stop.set()
        future = Future()
        future.cancel()
        return future


def test_an_item_cancelled_by_shutdown_goes_back_to_pending(record_only_client):
    job_id = upload(record_only_client, [("a.jpg", jpeg_bytes(2))]).json()["job_id"]

    stop = threading.Event()
    outcome = run_upload_job(
        job_id,
        executor=_StoppingPool(stop),
        stop=stop,
        settings=get_settings(),
        until_final=False,
    )

    assert outcome.status == "RUNNING"
    item = record_only_client.get(
        f"/api/v1/admin/upload/jobs/{job_id}", headers={"X-User-Role": "admin"}
    ).json()["items"][0]
    assert (item["status"], item["attempts"]) == (
        "PENDING",
        0,
    )  # not counted: the item was not at fault
    assert "the service stopped" in item["error_message"]
