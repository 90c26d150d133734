"""Runners in separate processes: shared jobs, and a server killed mid-batch."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx2
from helpers import ADMIN, FINAL, ROOT, ServerProcess, child_env, jpeg_bytes, upload
from sqlalchemy import func, select

from image_tagger.db import session_scope
from image_tagger.images.models import ImageAnalysis
from image_tagger.jobs.models import UploadJob, UploadJobItem


def _check_job_is_whole(job_id: int, images: int) -> tuple[UploadJob, list]:
    """Every item completed once, one analysis per image, counters exact."""
    with session_scope() as session:
        job = session.get(UploadJob, job_id)
        items = session.scalars(
            select(UploadJobItem).where(UploadJobItem.job_id == job_id)
        ).all()
        per_image = session.execute(
            select(ImageAnalysis.image_id, func.count()).group_by(
                ImageAnalysis.image_id
            )
        ).all()
    assert job.status == "COMPLETED"
    assert [item.status for item in items] == ["COMPLETED"] * images
    assert job.total_items == len(items) == images
    assert job.completed_items == sum(item.status == "COMPLETED" for item in items)
    assert job.failed_items == sum(item.status == "FAILED" for item in items) == 0
    assert len(per_image) == images
    assert {count for _, count in per_image} == {1}
    return job, items


def test_two_worker_processes_share_a_job_and_process_each_item_once(
    record_only_client, data_dir
):
    client = record_only_client
    files = [(f"{n}.jpg", jpeg_bytes(n, size=(1600, 1200))) for n in range(24)]
    job_id = upload(client, files).json()["job_id"]

    env = child_env(data_dir, IMAGE_TAGGER_QUEUE="none")
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "scripts.run_upload_job", str(job_id)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [worker.communicate(timeout=300)[0] for worker in workers]

    assert [worker.returncode for worker in workers] == [0, 0], outputs
    recorded = [
        int(re.search(r"recorded (\d+) items?", out).group(1)) for out in outputs
    ]
    assert sum(recorded) == 24 and min(recorded) >= 1, outputs
    assert all(f"job {job_id}: COMPLETED;" in out for out in outputs), outputs
    _job, items = _check_job_is_whole(job_id, 24)
    assert {item.attempts for item in items} == {1}
    owners_seen = {item.lease_owner for item in items}
    assert owners_seen == {None}


def test_server_killed_mid_batch_then_restarted_completes_the_job(data_dir, tmp_path):
    env = child_env(
        data_dir,
        IMAGE_TAGGER_AUTH_MODE="header",
        IMAGE_TAGGER_LEASE_SECONDS="3",
        IMAGE_TAGGER_RECOVERY_INTERVAL_SECONDS="1",
    )
    server = ServerProcess(env, tmp_path / "server.log")
    server.start()
    try:
        with httpx2.Client(base_url=server.url, timeout=60) as http:
            files = [(f"{n}.jpg", jpeg_bytes(n, size=(1600, 1200))) for n in range(40)]
            job_id = upload(http, files).json()["job_id"]
            progress = _wait_until(
                http, job_id, lambda job: job["completed_items"] >= 12
            )
        assert progress["status"] == "RUNNING"
        workers = _children(server.process.pid)
        assert workers, "the server should have analysis processes"
        server.kill()
        _wait_for_exit(workers)

        server.start()
        with httpx2.Client(base_url=server.url, timeout=60) as http:
            job = _wait_until(http, job_id, lambda job: job["status"] in FINAL)
    finally:
        server.stop()

    assert job["status"] == "COMPLETED", job["error_summary"]
    _job, items = _check_job_is_whole(job_id, 40)
    assert max(item.attempts for item in items) <= 2
    assert 12 <= sum(item.attempts == 1 for item in items) <= 40


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
    """The analysis processes of a killed server end by themselves."""
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids):
        assert time.monotonic() < deadline, f"orphans left: {pids}"
        time.sleep(0.1)


def _wait_until(http, job_id: int, done, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(f"/api/v1/admin/upload/jobs/{job_id}", headers=ADMIN).json()
        if done(job):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} stuck: {job}")


def test_a_killed_worker_process_is_taken_over_by_the_next_one(
    record_only_client, data_dir
):
    files = [(f"{n}.jpg", jpeg_bytes(n, size=(1600, 1200))) for n in range(16)]
    job_id = upload(record_only_client, files).json()["job_id"]
    env = child_env(data_dir, IMAGE_TAGGER_QUEUE="none", IMAGE_TAGGER_LEASE_SECONDS="2")
    command = [sys.executable, "-m", "scripts.run_upload_job", str(job_id)]

    first = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _wait_until(record_only_client, job_id, lambda job: job["completed_items"] >= 4)
    first.kill()
    first.wait()
    running = [
        item
        for item in record_only_client.get(
            f"/api/v1/admin/upload/jobs/{job_id}", headers=ADMIN
        ).json()["items"]
        if item["status"] == "RUNNING"
    ]
    second = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )

    assert second.returncode == 0, second.stdout + second.stderr
    assert f"job {job_id}: COMPLETED;" in second.stdout
    _job, items = _check_job_is_whole(job_id, 16)
    taken_over = {item.id for item in items if item.attempts == 2}
    assert taken_over == {item["id"] for item in running}


def _analysis_processes(pid: int) -> list[int]:
    """The server's pool processes (spawned), not its resource tracker."""
    found = []
    for child in _children(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"spawn_main" in command:
            found.append(child)
    return found


def test_an_analysis_process_killed_while_idle_does_not_break_later_jobs(
    data_dir, tmp_path
):
    env = child_env(data_dir, IMAGE_TAGGER_AUTH_MODE="header")
    server = ServerProcess(env, tmp_path / "server.log")
    server.start()
    try:
        deadline = time.monotonic() + 60
        while not (workers := _analysis_processes(server.process.pid)):
            assert time.monotonic() < deadline, "no analysis process started"
            time.sleep(0.1)
        subprocess.run(["kill", "-9", str(workers[0])], check=True)
        _wait_for_exit([workers[0]])
        time.sleep(1.0)  # the pool notices the death in the background

        with httpx2.Client(base_url=server.url, timeout=60) as http:
            files = [(f"{n}.jpg", jpeg_bytes(n, size=(640, 480))) for n in range(3)]
            job_id = upload(http, files).json()["job_id"]
            job = _wait_until(http, job_id, lambda job: job["status"] in FINAL)
            health = http.get("/healthz").json()
    finally:
        server.stop()

    assert job["status"] == "COMPLETED", job["error_summary"]
    assert [item["attempts"] for item in job["items"]] == [1, 1, 1]
    assert health["status"] == "ok"
    assert "pool.restarted" in (tmp_path / "server.log").read_text()


def _ingest(data_dir, folder: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "image_tagger.cli", "ingest", str(folder)],
        cwd=ROOT,
        env=child_env(data_dir, IMAGE_TAGGER_WORKERS="1", **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _batch(tmp_path: Path, count: int) -> Path:
    folder = tmp_path / "batch"
    folder.mkdir()
    for n in range(count):
        (folder / f"{n}.jpg").write_bytes(jpeg_bytes(300 + n, size=(1600, 1200)))
    return folder


def test_a_server_leaves_alone_the_job_an_ingest_process_is_running(data_dir, tmp_path):
    env = child_env(
        data_dir,
        IMAGE_TAGGER_AUTH_MODE="header",
        IMAGE_TAGGER_RECOVERY_INTERVAL_SECONDS="0.5",
    )
    server = ServerProcess(env, tmp_path / "server.log")
    server.start()
    try:
        ingest = _ingest(data_dir, _batch(tmp_path, 16))
        output = ingest.communicate(timeout=300)[0]
        log = server.log_path.read_text()
    finally:
        server.stop()

    assert ingest.returncode == 0, output
    assert "16 completed, 0 failed of 16" in output
    assert "job.redispatched" not in log, log
    _check_job_is_whole(1, 16)


def test_a_server_takes_over_the_job_of_a_killed_ingest_process(data_dir, tmp_path):
    env = child_env(
        data_dir,
        IMAGE_TAGGER_AUTH_MODE="header",
        IMAGE_TAGGER_RECOVERY_INTERVAL_SECONDS="0.5",
        IMAGE_TAGGER_LEASE_SECONDS="3",
    )
    server = ServerProcess(env, tmp_path / "server.log")
    server.start()
    try:
        ingest = _ingest(data_dir, _batch(tmp_path, 16), IMAGE_TAGGER_LEASE_SECONDS="3")
        with httpx2.Client(base_url=server.url, timeout=60) as http:
            _wait_until(http, 1, lambda job: job.get("completed_items", 0) >= 3)
            ingest.kill()
            ingest.communicate()
            job = _wait_until(http, 1, lambda job: job["status"] in FINAL)
        log = server.log_path.read_text()
    finally:
        server.stop()

    assert job["status"] == "COMPLETED", job["error_summary"]
    assert "job.redispatched" in log
    _check_job_is_whole(1, 16)
