"""Operating jobs over HTTP: cancel, retry, re-analyse, the ETA."""

from __future__ import annotations

from datetime import timedelta

import pytest
import structlog
from helpers import ADMIN, jpeg_bytes, upload, wait_for_job
from sqlalchemy import select, update

from image_tagger.db import session_scope, utcnow
from image_tagger.images.models import Image, ImageAnalysis
from image_tagger.jobs import service
from image_tagger.jobs.models import UploadJob, UploadJobItem
from image_tagger.jobs.runner import run_upload_job
from image_tagger.science.pipeline import PIPELINE_VERSION

JOBS = "/api/v1/admin/upload/jobs"


def _job(client, job_id: int) -> dict:
    return client.get(f"{JOBS}/{job_id}", headers=ADMIN).json()


def _claim(job_id: int, owner: str = "test-runner") -> int:
    with session_scope(write=True) as session:
        return service.claim_next_item(session, job_id, owner=owner, lease_seconds=60)


def _complete(job_id: int, item_id: int, owner: str = "test-runner") -> None:
    with session_scope(write=True) as session:
        assert service.complete_item(
            session, item_id, job_id=job_id, owner=owner, seconds=0.5
        )


def _fail(job_id: int, item_id: int, reason: str, owner: str = "test-runner") -> None:
    with session_scope(write=True) as session:
        assert service.fail_item(
            session, item_id, job_id=job_id, owner=owner, reason=reason
        )


def test_cancelling_a_pending_job_cancels_every_item(record_only_client):
    client = record_only_client
    files = [(f"{n}.jpg", jpeg_bytes(40 + n)) for n in range(3)]
    job_id = upload(client, files).json()["job_id"]

    response = client.post(f"{JOBS}/{job_id}/cancel", headers=ADMIN)

    assert response.status_code == 200
    body = response.json()
    assert body["items"] == 3
    assert body["job"]["status"] == "CANCELLED"
    assert body["job"]["cancelled_items"] == 3
    assert body["job"]["cancel_requested_at"] is not None
    job = _job(client, job_id)
    assert [item["status"] for item in job["items"]] == ["CANCELLED"] * 3
    assert job["finished_at"] is not None

    # A runner started afterwards finds nothing to do.
    assert run_upload_job(job_id).items_recorded == 0
    again = client.post(f"{JOBS}/{job_id}/cancel", headers=ADMIN)
    assert again.status_code == 409
    assert "already CANCELLED" in again.json()["detail"]
    assert client.post(f"{JOBS}/999/cancel", headers=ADMIN).status_code == 404
    counts = client.get(JOBS, headers=ADMIN).json()["counts"]
    assert counts["CANCELLED"] == 1


def test_a_cancelled_job_lets_its_running_items_finish(record_only_client):
    client = record_only_client
    files = [(f"{n}.jpg", jpeg_bytes(50 + n)) for n in range(3)]
    job_id = upload(client, files).json()["job_id"]
    running = _claim(job_id)

    body = client.post(f"{JOBS}/{job_id}/cancel", headers=ADMIN).json()

    assert body["items"] == 2
    assert body["job"]["status"] == "RUNNING"
    statuses = {item["id"]: item["status"] for item in _job(client, job_id)["items"]}
    assert statuses.pop(running) == "RUNNING"
    assert set(statuses.values()) == {"CANCELLED"}

    _complete(job_id, running)

    job = _job(client, job_id)
    assert job["status"] == "CANCELLED"
    assert (job["completed_items"], job["failed_items"], job["cancelled_items"]) == (
        1,
        0,
        2,
    )
    assert job["finished_at"] is not None


def _break_image(data_dir, image_id: int) -> tuple:
    """Move the stored file away, so analysing the image fails; how to undo it."""
    with session_scope() as session:
        stored = data_dir / session.get(Image, image_id).storage_path
    aside = stored.with_suffix(".aside")
    stored.rename(aside)
    return stored, aside


def test_retry_runs_only_the_failed_items_again(client, data_dir):
    body = upload(
        client,
        [("a.jpg", jpeg_bytes(60)), ("b.jpg", jpeg_bytes(61)), ("junk.jpg", b"no")],
    ).json()
    first = wait_for_job(client, body["job_id"])
    assert first["status"] == "COMPLETED_WITH_ERRORS"
    broken_id = body["image_ids"][0]
    stored, aside = _break_image(data_dir, broken_id)

    # Analyse both again; the one whose file is gone fails after its attempts.
    again = client.post(f"{JOBS}/reanalyze?all=true", headers=ADMIN).json()
    job_id = again["job"]["id"]
    failed = wait_for_job(client, job_id)
    assert failed["status"] == "COMPLETED_WITH_ERRORS"
    assert failed["error_summary"].startswith("1 failed; a.jpg:")
    done_before = {i["id"]: i for i in failed["items"] if i["status"] == "COMPLETED"}

    aside.rename(stored)
    response = client.post(f"{JOBS}/{job_id}/retry", headers=ADMIN)

    assert response.status_code == 202
    assert response.json()["items"] == 1
    retried = wait_for_job(client, job_id)
    assert retried["status"] == "COMPLETED"
    assert (retried["completed_items"], retried["failed_items"]) == (2, 0)
    assert retried["error_summary"] is None
    items = {item["id"]: item for item in retried["items"]}
    for item_id, before in done_before.items():
        assert items[item_id]["finished_at"] == before["finished_at"]
    (redone,) = (item for item in items.values() if item["id"] not in done_before)
    assert redone["attempts"] == 1
    assert redone["error_message"] is None

    # The upload job's rejected file was never stored: nothing to retry.
    refused = client.post(f"{JOBS}/{body['job_id']}/retry", headers=ADMIN)
    assert refused.status_code == 409
    assert "rejected at upload" in refused.json()["detail"]


def test_an_item_that_fails_again_after_a_retry_shows_only_its_new_failure(client):
    whole = jpeg_bytes(62)
    truncated = whole[: len(whole) // 2]  # the header and half the scan
    job_id = upload(client, [("cut.jpg", truncated)]).json()["job_id"]
    (failed,) = wait_for_job(client, job_id)["items"]
    assert failed["status"] == "FAILED"
    assert "truncated" in failed["error_message"]

    assert client.post(f"{JOBS}/{job_id}/retry", headers=ADMIN).status_code == 202
    (again,) = wait_for_job(client, job_id)["items"]

    assert again["status"] == "FAILED"
    assert again["error_message"] == failed["error_message"]
    assert again["note"] is None
    assert again["finished_at"] > failed["finished_at"]


def test_retry_of_a_cancelled_job_ends_cancelled_again(record_only_client):
    client = record_only_client
    files = [(f"{n}.jpg", jpeg_bytes(70 + n)) for n in range(3)]
    job_id = upload(client, files).json()["job_id"]
    item_id = _claim(job_id)
    client.post(f"{JOBS}/{job_id}/cancel", headers=ADMIN)
    _fail(job_id, item_id, "the disk hiccuped")
    assert _job(client, job_id)["status"] == "CANCELLED"

    body = client.post(f"{JOBS}/{job_id}/retry", headers=ADMIN).json()

    assert body["items"] == 1
    assert body["job"]["status"] == "PENDING"
    assert body["job"]["failed_items"] == 0
    retried = next(i for i in _job(client, job_id)["items"] if i["id"] == item_id)
    assert (retried["status"], retried["attempts"]) == ("PENDING", 0)
    assert retried["note"] == "retried after: the disk hiccuped"
    assert run_upload_job(job_id).items_recorded == 1
    job = _job(client, job_id)
    assert job["status"] == "CANCELLED"
    assert (job["completed_items"], job["cancelled_items"]) == (1, 2)


def _set_pipeline_version(image_id: int, version: str) -> None:
    with session_scope(write=True) as session:
        session.execute(
            update(ImageAnalysis)
            .where(ImageAnalysis.image_id == image_id)
            .values(pipeline_version=version)
        )


def _analyses(image_id: int) -> list[tuple[str, object]]:
    with session_scope() as session:
        return session.execute(
            select(ImageAnalysis.pipeline_version, ImageAnalysis.updated_at)
            .where(ImageAnalysis.image_id == image_id)
            .order_by(ImageAnalysis.pipeline_version)
        ).all()


def test_reanalyse_runs_images_analysed_by_an_older_version(client):
    body = upload(client, [("a.jpg", jpeg_bytes(80)), ("b.jpg", jpeg_bytes(81))]).json()
    wait_for_job(client, body["job_id"])
    old, current = body["image_ids"]
    _set_pipeline_version(old, "0")

    response = client.post(f"{JOBS}/reanalyze", headers=ADMIN)

    assert response.status_code == 202
    assert response.json()["items"] == 1
    job = wait_for_job(client, response.json()["job"]["id"])
    assert job["status"] == "COMPLETED"
    (item,) = job["items"]
    assert item["image_id"] == old
    assert "already analysed" not in (item["note"] or "")  # analysed, not skipped
    assert [version for version, _ in _analyses(old)] == ["0", PIPELINE_VERSION]
    image = client.get(f"/api/v1/admin/images/{old}", headers=ADMIN).json()
    assert image["analysis"]["pipeline_version"] == PIPELINE_VERSION

    nothing = client.post(f"{JOBS}/reanalyze", headers=ADMIN)
    assert nothing.status_code == 409
    assert "all=true" in nothing.json()["detail"]

    before = dict(_analyses(current))[PIPELINE_VERSION]
    everything = client.post(f"{JOBS}/reanalyze?all=true", headers=ADMIN).json()
    assert everything["items"] == 2
    assert everything["job"]["force_reanalysis"] is True
    job = wait_for_job(client, everything["job"]["id"])
    assert job["status"] == "COMPLETED"
    assert not any("already analysed" in (item["note"] or "") for item in job["items"])
    assert dict(_analyses(current))[PIPELINE_VERSION] > before


def _backdate(job_id: int, item_id: int, *, started: float, finished: float) -> None:
    """Move the job's start and the item's finish ``started``/``finished`` s back."""
    now = utcnow()
    with session_scope(write=True) as session:
        session.execute(
            update(UploadJob)
            .where(UploadJob.id == job_id)
            .values(started_at=now - timedelta(seconds=started))
        )
        session.execute(
            update(UploadJobItem)
            .where(UploadJobItem.id == item_id)
            .values(finished_at=now - timedelta(seconds=finished))
        )


def test_a_running_job_has_an_eta_from_its_throughput(record_only_client):
    client = record_only_client
    files = [(f"{n}.jpg", jpeg_bytes(90 + n)) for n in range(5)]
    job_id = upload(client, files).json()["job_id"]
    assert _job(client, job_id)["eta_seconds"] is None  # nothing measured yet
    first = _claim(job_id)
    _complete(job_id, first)
    _backdate(job_id, first, started=20, finished=10)

    # One item in 20 s since the start: 0.05 per second, four left: 80 s.
    job = _job(client, job_id)
    assert job["items_per_second"] == pytest.approx(0.05, rel=0.05)
    assert job["eta_seconds"] == pytest.approx(80, rel=0.05)

    # From the first item on, the rate leaves out the runners' start: one more
    # item 10 s after the first is 0.1 per second, three left: 30 s.
    _complete(job_id, _claim(job_id))
    job = _job(client, job_id)
    assert job["items_per_second"] == pytest.approx(0.1, rel=0.05)
    assert job["eta_seconds"] == pytest.approx(3 / job["items_per_second"], rel=0.01)
    listed = client.get(JOBS, headers=ADMIN).json()["jobs"][0]
    assert listed["eta_seconds"] == pytest.approx(job["eta_seconds"], rel=0.05)

    run_upload_job(job_id)
    finished = _job(client, job_id)
    assert finished["status"] == "COMPLETED"
    assert finished["eta_seconds"] is None


def test_job_and_item_events_are_logged_with_their_ids(record_only_client, data_dir):
    client = record_only_client
    files = [(f"{n}.jpg", jpeg_bytes(95 + n)) for n in range(3)]
    body = upload(client, files).json()
    job_id = body["job_id"]
    _break_image(data_dir, body["image_ids"][0])

    with structlog.testing.capture_logs() as logs:
        run_upload_job(job_id)

    events = {entry["event"]: entry for entry in logs}
    assert events["job.started"]["job_id"] == job_id
    order = [entry["event"] for entry in logs]
    assert order.index("item.failed") < order.index("job.finished")
    failed = events["item.failed"]
    broken_item = _job(client, job_id)["items"][0]
    assert (failed["job_id"], failed["item_id"]) == (job_id, broken_item["id"])
    assert failed["reason"] == broken_item["error_message"]
    finished = events["job.finished"]
    assert (finished["job_id"], finished["status"]) == (job_id, "COMPLETED_WITH_ERRORS")
    assert (finished["completed"], finished["failed"]) == (2, 1)

    second = upload(client, [("c.jpg", jpeg_bytes(99))]).json()["job_id"]
    with structlog.testing.capture_logs() as logs:
        client.post(f"{JOBS}/{second}/cancel", headers=ADMIN)
        client.post(f"{JOBS}/{job_id}/retry", headers=ADMIN)
    events = {entry["event"]: entry for entry in logs}
    cancel, end, retry = (
        events[name] for name in ("job.cancel_requested", "job.finished", "job.retry")
    )
    assert (cancel["job_id"], cancel["cancelled"]) == (second, 1)
    assert (end["job_id"], end["status"]) == (second, "CANCELLED")
    assert (retry["job_id"], retry["items"]) == (job_id, 1)
