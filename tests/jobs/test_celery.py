"""The scaled-out mode: Celery workers on Redis, with PostgreSQL.

These run in the PostgreSQL pass (``pytest --db=postgresql``, part of
``make test``) against the real servers, each test on a queue of its own.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx2
import pytest
from fastapi.testclient import TestClient
from helpers import FINAL, free_port, jpeg_bytes, upload, wait_for_job
from sqlalchemy import func, select
from workers import (
    WorkerProcess,
    broker_url,
    queue_settings,
    redis_unreachable,
    remove_keys,
)

from image_tagger.db import session_scope
from image_tagger.images.models import ImageAnalysis
from image_tagger.jobs.models import UploadJob, UploadJobItem
from image_tagger.jobs.runner import process_one_item
from image_tagger.settings import get_settings, reset_settings


@pytest.fixture
def scaled_out(data_dir: Path, databases, monkeypatch: pytest.MonkeyPatch) -> dict:
    """PostgreSQL, Redis and a private queue; the environment for workers."""
    if databases.kind != "postgresql":
        pytest.skip(
            "the scaled-out tests run in the PostgreSQL pass: pytest --db=postgresql "
            "(make test runs it)"
        )
    reason = redis_unreachable()
    if reason:
        pytest.skip(reason)
    queue = queue_settings()
    for name, value in queue.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("IMAGE_TAGGER_AUTH_MODE", "header")
    monkeypatch.setenv("IMAGE_TAGGER_LEASE_SECONDS", "3")
    monkeypatch.setenv("IMAGE_TAGGER_RECOVERY_INTERVAL_SECONDS", "1")
    reset_settings()
    env = {k: v for k, v in os.environ.items()}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    yield env
    remove_keys(queue["IMAGE_TAGGER_BROKER_KEY_PREFIX"])


@pytest.fixture
def api(scaled_out) -> TestClient:
    """The app with IMAGE_TAGGER_QUEUE=celery: it only dispatches."""
    from image_tagger.app import create_app

    with TestClient(create_app()) as client:
        yield client


def _workers(env: dict, tmp_path: Path, count: int) -> list[WorkerProcess]:
    return [
        WorkerProcess(
            env, tmp_path / f"worker{n}.log", name=f"itk-test-{n}-{os.getpid()}"
        )
        for n in range(count)
    ]


def _check_job_is_whole(job_id: int, images: int) -> list[UploadJobItem]:
    """Every item completed once, one analysis per image, counters exact."""
    with session_scope() as session:
        job = session.get(UploadJob, job_id)
        items = session.scalars(
            select(UploadJobItem)
            .where(UploadJobItem.job_id == job_id)
            .order_by(UploadJobItem.id)
        ).all()
        per_image = dict(
            session.execute(
                select(ImageAnalysis.image_id, func.count()).group_by(
                    ImageAnalysis.image_id
                )
            ).all()
        )
    assert job.status == "COMPLETED", job.error_summary
    assert [item.status for item in items] == ["COMPLETED"] * images
    assert job.total_items == images
    assert job.completed_items == images and job.failed_items == 0
    assert per_image == {item.image_id: 1 for item in items}
    assert {item.lease_owner for item in items} == {None}
    return list(items)


def _wait_for_db(job_id: int, done, timeout: float = 240) -> UploadJob:
    deadline = time.monotonic() + timeout
    while True:
        with session_scope() as session:
            job = session.get(UploadJob, job_id)
        if done(job):
            return job
        assert time.monotonic() < deadline, f"job {job_id} stuck: {job.status}"
        time.sleep(0.1)


def _held_items(job_id: int) -> dict[int, str]:
    with session_scope() as session:
        return dict(
            session.execute(
                select(UploadJobItem.id, UploadJobItem.lease_owner).where(
                    UploadJobItem.job_id == job_id, UploadJobItem.status == "RUNNING"
                )
            ).all()
        )


def test_one_item_per_call_and_nothing_when_none_is_left(record_only_client):
    files = [(f"{n}.jpg", jpeg_bytes(n)) for n in range(2)]
    job_id = upload(record_only_client, files).json()["job_id"]

    first = process_one_item(job_id)
    with session_scope() as session:
        job = session.get(UploadJob, job_id)
        assert (job.status, job.completed_items) == ("RUNNING", 1)
    second = process_one_item(job_id)

    assert sorted([first, second]) == [1, 2]
    assert process_one_item(job_id) is None  # a surplus or redelivered task
    assert process_one_item(999) is None
    with session_scope() as session:
        job = session.get(UploadJob, job_id)
        analyses = session.scalar(select(func.count()).select_from(ImageAnalysis))
    assert (job.status, job.completed_items, analyses) == ("COMPLETED", 2, 2)


def test_healthz_reports_an_unreachable_broker(data_dir, monkeypatch):
    from image_tagger.app import create_app

    monkeypatch.setenv("IMAGE_TAGGER_QUEUE", "celery")
    monkeypatch.setenv("IMAGE_TAGGER_BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")
    reset_settings()
    with TestClient(create_app()) as client:
        response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["database"]["ok"] is True
    assert body["queue"]["backend"] == "celery"
    assert body["queue"]["ok"] is False
    assert "Connection refused" in body["queue"]["error"]


def test_healthz_counts_the_tasks_waiting_under_the_key_prefix(api, scaled_out):
    assert scaled_out["IMAGE_TAGGER_BROKER_KEY_PREFIX"]  # the queue's keys have one
    files = [(f"{n}.jpg", jpeg_bytes(n)) for n in range(3)]
    upload(api, files)  # no worker runs: the tasks wait in the queue

    health = api.get("/healthz").json()

    assert health["queue"]["queued"] == 3
    assert health["queue"]["broker"] == broker_url()  # no password to hide


def test_two_worker_processes_share_a_batch(api, scaled_out, tmp_path):
    workers = _workers(scaled_out, tmp_path, 2)
    try:
        for worker in workers:
            worker.start()
        health = api.get("/healthz").json()
        files = [(f"{n}.jpg", jpeg_bytes(n, size=(1600, 1200))) for n in range(24)]
        job_id = upload(api, files).json()["job_id"]
        job = wait_for_job(api, job_id, timeout=240)

        # A task delivered again, or one too many, finds nothing to do.
        from image_tagger.jobs.celery_app import send_item_tasks

        backend = api.app.state.backend
        send_item_tasks(backend.app, job_id, 3, queue=get_settings().celery_queue)
        deadline = time.monotonic() + 60
        while sum(worker.empty_tasks() for worker in workers) < 3:
            assert time.monotonic() < deadline, [w.log() for w in workers]
            time.sleep(0.2)
    finally:
        for worker in workers:
            worker.stop()

    assert health["queue"] == {
        "backend": "celery",
        "ok": True,
        "broker": health["queue"]["broker"],
        "queue": get_settings().celery_queue,
        "queued": 0,
    }
    assert health["queue"]["broker"].startswith("redis://")
    assert job["status"] == "COMPLETED", job["error_summary"]
    items = _check_job_is_whole(job_id, 24)
    recorded = [worker.items_recorded() for worker in workers]
    assert all(recorded), f"each worker should have taken items: {recorded}"
    assert sorted(recorded[0] + recorded[1]) == [item.id for item in items]
    assert {item.attempts for item in items} == {1}


def test_a_worker_killed_mid_batch_is_replaced_and_every_item_completes(
    scaled_out, tmp_path
):
    from image_tagger.app import create_app

    first, second = _workers(scaled_out, tmp_path, 2)
    try:
        first.start()
        files = [(f"{n}.jpg", jpeg_bytes(n, size=(1600, 1200))) for n in range(30)]
        with TestClient(create_app()) as api:
            job_id = upload(api, files).json()["job_id"]
        # From here on there is no API: the workers recover by themselves.

        _wait_for_db(job_id, lambda job: job.completed_items >= 8)
        analysis_processes = _children(first.process.pid)
        first.kill()
        held = _held_items(job_id)
        _wait_for_exit(analysis_processes)
        progress = _wait_for_db(job_id, lambda job: True)

        second.start()
        _wait_for_db(job_id, lambda job: job.status in FINAL)
    finally:
        first.kill()
        second.stop()

    assert progress.status == "RUNNING"
    assert held, "the killed worker held items"
    killed = f":{first.process.pid}:"  # runner names: host:pid:random
    assert all(killed in owner for owner in held.values()), held
    items = _check_job_is_whole(job_id, 30)
    attempts = {item.id: item.attempts for item in items}
    assert all(attempts[item_id] == 2 for item_id in held), attempts
    assert all(attempts[i] == 1 for i in attempts if i not in held), attempts
    recorded = first.items_recorded() + second.items_recorded()
    assert len(recorded) == len(set(recorded)), recorded  # none recorded twice
    assert set(held) <= set(second.items_recorded())  # taken over
    # The killed worker may have recorded an item (one per runner thread) but
    # not yet logged its task's end.
    unlogged = set(attempts) - set(recorded)
    assert len(unlogged) <= 2 and all(attempts[i] == 1 for i in unlogged), unlogged


def test_a_job_whose_tasks_were_never_sent_is_run_by_the_workers(
    scaled_out, tmp_path, monkeypatch
):
    from image_tagger.app import create_app

    # Recorded while no task reached the broker (as with a broker restarted
    # without its data): only the workers' sweep can find it.
    monkeypatch.setenv("IMAGE_TAGGER_QUEUE", "none")
    reset_settings()
    with TestClient(create_app()) as api:
        files = [(f"{n}.jpg", jpeg_bytes(n)) for n in range(4)]
        job_id = upload(api, files).json()["job_id"]

    (worker,) = _workers(scaled_out, tmp_path, 1)
    try:
        worker.start()
        _wait_for_db(job_id, lambda job: job.status in FINAL, timeout=60)
    finally:
        worker.stop()

    items = _check_job_is_whole(job_id, 4)
    assert sorted(worker.items_recorded()) == [item.id for item in items]
    assert "job.redispatched" in worker.log()


def test_flower_shows_the_workers_and_their_tasks(api, scaled_out, tmp_path):
    import subprocess
    import sys

    port = free_port()
    (worker,) = _workers(scaled_out, tmp_path, 1)
    flower_log = tmp_path / "flower.log"
    flower = None
    try:
        worker.start()
        with flower_log.open("ab") as log:
            flower = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "image_tagger.jobs.celery_app",
                    "flower",
                    f"--port={port}",
                    "--address=127.0.0.1",
                ],
                env={**scaled_out, "FLOWER_UNAUTHENTICATED_API": "true"},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _wait_for_http(f"http://127.0.0.1:{port}/healthcheck", flower_log)
        # Workers send task events once Flower turns them on (it does within
        # a few seconds of starting); a task run before that goes unseen.
        deadline = time.monotonic() + 60
        while "Events of group {task} enabled by remote." not in worker.log():
            assert time.monotonic() < deadline, worker.log()
            time.sleep(0.2)
        job_id = upload(api, [(f"{n}.jpg", jpeg_bytes(n)) for n in range(3)]).json()[
            "job_id"
        ]
        wait_for_job(api, job_id, timeout=120)
        tasks = _poll_json(
            f"http://127.0.0.1:{port}/api/tasks",
            lambda tasks: sum(t["state"] == "SUCCESS" for t in tasks.values()) >= 3,
        )
        workers = _poll_json(
            f"http://127.0.0.1:{port}/api/workers?refresh=1",
            lambda workers: worker.nodename in workers,
        )
    finally:
        if flower is not None:
            flower.terminate()
            flower.wait(timeout=20)
        worker.stop()

    queues = workers[worker.nodename]["active_queues"]
    assert [queue["name"] for queue in queues] == [get_settings().celery_queue]
    done = [t for t in tasks.values() if t["state"] == "SUCCESS"]
    assert {t["name"] for t in done} == {"image_tagger.process_item"}
    assert {t["worker"] for t in done} == {worker.nodename}
    assert sorted(t["result"] for t in done) == ["1", "2", "3"]


def _wait_for_http(url: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx2.get(url, timeout=1).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


def _poll_json(url: str, done, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        body = httpx2.get(url, timeout=10).json()
        if done(body):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.5)


def _children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    return [
        int(child)
        for task in tasks.iterdir()
        for child in (task / "children").read_text().split()
    ]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _wait_for_exit(pids: list[int], timeout: float = 10) -> None:
    """The analysis processes of a killed worker end by themselves."""
    assert pids, "the worker should have analysis processes"
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids):
        assert time.monotonic() < deadline, f"orphans left: {pids}"
        time.sleep(0.1)
