"""Claims, leases and counters on the embedded database."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import select, update

from image_tagger.db import session_scope, utcnow
from image_tagger.images.models import Image
from image_tagger.jobs import service
from image_tagger.jobs.models import UploadJob, UploadJobItem


def _job(items: int) -> int:
    with session_scope(write=True) as session:
        job = UploadJob(total_items=items)
        session.add(job)
        session.flush()
        for n in range(items):
            image = Image(
                sha256=f"{job.id:08d}{n:056d}",
                filename=f"{n}.jpg",
                format="JPEG",
                media_type="image/jpeg",
                size_bytes=1,
                width=1,
                height=1,
                storage_path="x",
            )
            session.add(image)
            session.flush()
            session.add(
                UploadJobItem(job_id=job.id, image_id=image.id, filename=image.filename)
            )
        return job.id


def _claim(job_id: int, owner: str, lease_seconds: float = 30) -> int | None:
    with session_scope(write=True) as session:
        return service.claim_next_item(
            session, job_id, owner=owner, lease_seconds=lease_seconds
        )


def test_concurrent_claims_never_hand_out_an_item_twice(data_dir):
    job_id = _job(30)
    claimed: list[int] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        while (item_id := _claim(job_id, name)) is not None:
            with lock:
                claimed.append(item_id)

    threads = [threading.Thread(target=claimer, args=(f"r{n}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(claimed) == sorted(set(claimed))
    assert len(claimed) == 30
    with session_scope() as session:
        assert session.get(UploadJob, job_id).status == "RUNNING"
        attempts = session.scalars(select(UploadJobItem.attempts)).all()
    assert set(attempts) == {1}


def test_only_the_lease_holder_records_and_the_final_status_is_set_once(data_dir):
    job_id = _job(2)
    first, second = _claim(job_id, "a"), _claim(job_id, "b")

    with session_scope(write=True) as session:
        assert not service.complete_item(session, first, job_id=job_id, owner="b")
        assert service.complete_item(session, first, job_id=job_id, owner="a")
        assert service.finish_job_if_done(session, job_id) is None
        assert service.fail_item(
            session, second, job_id=job_id, owner="b", reason="broken pixels"
        )
        assert session.get(UploadJob, job_id).status == "COMPLETED_WITH_ERRORS"
        assert service.finish_job_if_done(session, job_id) is None
        assert not service.complete_item(session, first, job_id=job_id, owner="a")

    with session_scope() as session:
        job = session.get(UploadJob, job_id)
        assert (job.completed_items, job.failed_items) == (1, 1)
        assert job.error_summary == "1 failed; 1.jpg: broken pixels"
        assert job.finished_at is not None


def test_expired_leases_go_back_to_pending_then_fail_past_the_limit(data_dir):
    job_id = _job(1)
    item_id = _claim(job_id, "dead-runner")

    def expire() -> None:
        with session_scope(write=True) as session:
            session.execute(
                update(UploadJobItem).values(
                    lease_expires_at=utcnow() - timedelta(seconds=1)
                )
            )

    expire()
    with session_scope(write=True) as session:
        assert service.recover_expired_leases(session, max_attempts=2) == {job_id}
    with session_scope() as session:
        item = session.get(UploadJobItem, item_id)
        assert (item.status, item.lease_owner) == ("PENDING", None)

    assert _claim(job_id, "second-runner") == item_id
    expire()
    with session_scope(write=True) as session:
        service.recover_expired_leases(session, max_attempts=2)
    with session_scope() as session:
        item = session.get(UploadJobItem, item_id)
        job = session.get(UploadJob, job_id)
        assert item.status == "FAILED"
        assert "gave up after 2 attempts" in item.error_message
        assert (job.status, job.failed_items) == ("FAILED", 1)


def test_a_live_lease_is_not_recovered(data_dir):
    job_id = _job(1)
    _claim(job_id, "alive")
    with session_scope(write=True) as session:
        assert service.recover_expired_leases(session, max_attempts=3) == set()
        assert service.jobs_with_pending_items(session) == []
