"""Claims, leases, results and counters: every state change of jobs and items.

Each function takes the caller's session and flushes; the caller commits. Every
change is a conditional UPDATE, so any number of runners in any number of
processes can share a job: an item is claimed by one runner at a time (its
lease), only the lease holder may finish it, and a job's final status is set
once, by whoever records its last item.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from functools import lru_cache

import structlog
from sqlalchemy import Update, bindparam, case, func, select, update
from sqlalchemy.orm import Session

import image_tagger.logging  # noqa: F401  (log levels when used as a library)
from image_tagger.db import UTCDateTime, utcnow
from image_tagger.jobs.models import (
    FINAL_JOB_STATUSES,
    ItemStatus,
    JobStatus,
    UploadJob,
    UploadJobItem,
)

log = structlog.get_logger(__name__)

# Core tables: these statements run for every item, so they skip the ORM.
ITEMS = UploadJobItem.__table__
JOBS = UploadJob.__table__
I = ITEMS.c  # noqa: E741
J = JOBS.c


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


@lru_cache
def _claim_statement(postgres: bool) -> Update:
    """The claim, built once per dialect (it runs for every item)."""
    candidate = (
        select(I.id)
        .where(I.job_id == bindparam("p_job_id"), I.status == ItemStatus.PENDING)
        .order_by(I.id)
        .limit(1)
    )
    if postgres:
        candidate = candidate.with_for_update(skip_locked=True)
    return (
        update(ITEMS)
        .where(I.id == candidate.scalar_subquery(), I.status == ItemStatus.PENDING)
        .values(
            status=ItemStatus.RUNNING,
            lease_owner=bindparam("p_owner"),
            lease_expires_at=bindparam("p_expires", type_=UTCDateTime()),
            attempts=I.attempts + 1,
            started_at=bindparam("p_now", type_=UTCDateTime()),
            finished_at=None,
        )
        .returning(I.id)
    )


def claim_next_item(
    session: Session,
    job_id: int,
    *,
    owner: str,
    lease_seconds: float,
    mark_job_running: bool = True,
) -> int | None:
    """Atomically take the job's next pending item for ``owner``; its id or None.

    The job becomes RUNNING with its first claim; a runner that has already
    seen to that passes ``mark_job_running=False``.
    """
    now = utcnow()
    claimed = session.scalar(
        _claim_statement(_is_postgres(session)),
        {
            "p_job_id": job_id,
            "p_owner": owner,
            "p_expires": now + timedelta(seconds=lease_seconds),
            "p_now": now,
        },
    )
    if claimed is not None and mark_job_running:
        session.execute(
            update(JOBS)
            .where(J.id == job_id, J.status == JobStatus.PENDING)
            .values(status=JobStatus.RUNNING, started_at=now, updated_at=now)
        )
    return claimed


def _held_by(item_id: int, owner: str) -> tuple:
    """The item, only while ``owner`` holds it: the fence of every item update."""
    return (I.id == item_id, I.lease_owner == owner, I.status == ItemStatus.RUNNING)


def renew_lease(
    session: Session, item_id: int, *, owner: str, lease_seconds: float
) -> bool:
    """Extend ``owner``'s lease on a running item; False if it was lost."""
    result = session.execute(
        update(ITEMS)
        .where(*_held_by(item_id, owner))
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
    )
    return result.rowcount == 1


def complete_item(
    session: Session,
    item_id: int,
    *,
    job_id: int,
    owner: str,
    seconds: float | None = None,
    note: str | None = None,
) -> bool:
    """Mark ``owner``'s item completed and count it; False if the lease was lost."""
    return _finish_item(
        session,
        item_id,
        job_id=job_id,
        owner=owner,
        status=ItemStatus.COMPLETED,
        values={"seconds": seconds, "note": note, "error_message": None},
    )


def fail_item(
    session: Session,
    item_id: int,
    *,
    job_id: int,
    owner: str,
    reason: str,
    seconds: float | None = None,
) -> bool:
    """Mark ``owner``'s item failed with ``reason``; False if the lease was lost."""
    finished = _finish_item(
        session,
        item_id,
        job_id=job_id,
        owner=owner,
        status=ItemStatus.FAILED,
        values={"seconds": seconds, "error_message": reason},
    )
    if finished:
        refresh_error_summary(session, job_id)
    return finished


def release_item(session: Session, item_id: int, *, owner: str, reason: str) -> bool:
    """Give a running item back to the queue for another attempt."""
    result = session.execute(
        update(ITEMS)
        .where(*_held_by(item_id, owner))
        .values(
            status=ItemStatus.PENDING,
            lease_owner=None,
            lease_expires_at=None,
            error_message=reason,
        )
    )
    return result.rowcount == 1


def _finish_item(
    session: Session,
    item_id: int,
    *,
    job_id: int,
    owner: str,
    status: ItemStatus,
    values: dict,
) -> bool:
    now = utcnow()
    result = session.execute(
        update(ITEMS)
        .where(*_held_by(item_id, owner))
        .values(
            status=status,
            lease_owner=None,
            lease_expires_at=None,
            finished_at=now,
            **values,
        )
    )
    if result.rowcount != 1:
        return False

    completed, failed, total = session.execute(
        _COUNT_STATEMENTS[status], {"p_job_id": job_id, "p_now": now}
    ).one()
    if completed + failed >= total:
        finish_job_if_done(session, job_id)
    return True


_NOW = bindparam("p_now", type_=UTCDateTime())


def _count_statement(counter) -> Update:
    return (
        update(JOBS)
        .where(J.id == bindparam("p_job_id"))
        .values(
            {
                counter: counter + 1,
                J.updated_at: bindparam("p_now", type_=UTCDateTime()),
            }
        )
        .returning(J.completed_items, J.failed_items, J.total_items)
    )


# Counting a recorded item in its job, built once (it runs for every item).
_COUNT_STATEMENTS = {
    ItemStatus.COMPLETED: _count_statement(J.completed_items),
    ItemStatus.FAILED: _count_statement(J.failed_items),
}


def refresh_error_summary(session: Session, job_id: int) -> None:
    """A short summary of a job's failures: the first reason and how many more."""
    failed = session.scalar(
        select(func.count()).where(I.job_id == job_id, I.status == ItemStatus.FAILED)
    )
    if not failed:
        summary = None
    else:
        first = session.execute(
            select(I.filename, I.error_message)
            .where(I.job_id == job_id, I.status == ItemStatus.FAILED)
            .order_by(I.id)
            .limit(1)
        ).one()
        more = f" (+{failed - 1} more)" if failed > 1 else ""
        summary = f"{failed} failed; {first.filename}: {first.error_message}{more}"
    session.execute(update(JOBS).where(J.id == job_id).values(error_summary=summary))


def finish_job_if_done(session: Session, job_id: int) -> str | None:
    """Set the final status once every item is recorded; only the first call does."""
    final = case(
        (J.failed_items == 0, JobStatus.COMPLETED.value),
        (J.completed_items == 0, JobStatus.FAILED.value),
        else_=JobStatus.COMPLETED_WITH_ERRORS.value,
    )
    now = utcnow()
    status = session.scalar(
        update(JOBS)
        .where(
            J.id == job_id,
            J.status.in_([JobStatus.PENDING, JobStatus.RUNNING]),
            J.completed_items + J.failed_items >= J.total_items,
        )
        .values(status=final, finished_at=now, updated_at=now)
        .returning(J.status)
    )
    if status is not None:
        job = session.execute(
            select(
                J.total_items,
                J.completed_items,
                J.failed_items,
                J.started_at,
            ).where(J.id == job_id)
        ).one()
        log.info(
            "job.finished",
            job_id=job_id,
            status=status,
            items=job.total_items,
            completed=job.completed_items,
            failed=job.failed_items,
            seconds=round((now - (job.started_at or now)).total_seconds(), 3),
        )
    return status


def recover_expired_leases(
    session: Session, *, max_attempts: int, job_id: int | None = None
) -> set[int]:
    """Put items whose lease expired back to pending, or fail them past the limit.

    Returns the ids of the jobs that were touched.
    """
    now = utcnow()
    query = select(I.id, I.job_id, I.attempts, I.lease_owner).where(
        I.status == ItemStatus.RUNNING, I.lease_expires_at < now
    )
    if job_id is not None:
        query = query.where(I.job_id == job_id)
    if _is_postgres(session):
        query = query.with_for_update(skip_locked=True)

    touched: set[int] = set()
    for row in session.execute(query).all():
        if row.attempts >= max_attempts:
            reason = (
                f"gave up after {row.attempts} attempts: the worker processing it "
                "stopped (its lease expired each time)"
            )
            if fail_item(
                session, row.id, job_id=row.job_id, owner=row.lease_owner, reason=reason
            ):
                log.warning(
                    "item.failed", job_id=row.job_id, item_id=row.id, reason=reason
                )
        elif release_item(
            session, row.id, owner=row.lease_owner, reason="lease expired; retrying"
        ):
            log.info(
                "item.lease_expired",
                job_id=row.job_id,
                item_id=row.id,
                attempts=row.attempts,
            )
        touched.add(row.job_id)
    return touched


def jobs_with_pending_items(session: Session) -> list[int]:
    """Unfinished jobs that still have items waiting for a runner."""
    query = (
        select(I.job_id)
        .join(JOBS, J.id == I.job_id)
        .where(
            I.status == ItemStatus.PENDING,
            J.status.not_in(list(FINAL_JOB_STATUSES)),
        )
        .distinct()
        .order_by(I.job_id)
    )
    return list(session.scalars(query))


def pending_item_counts(
    session: Session, job_ids: Iterable[int] | None = None
) -> dict[int, int]:
    """Pending items per unfinished job (of ``job_ids``, or of every job)."""
    query = (
        select(I.job_id, func.count())
        .join(JOBS, J.id == I.job_id)
        .where(
            I.status == ItemStatus.PENDING,
            J.status.not_in(list(FINAL_JOB_STATUSES)),
        )
        .group_by(I.job_id)
        .order_by(I.job_id)
    )
    if job_ids is not None:
        query = query.where(I.job_id.in_(list(job_ids)))
    return {job_id: count for job_id, count in session.execute(query).all()}


def job_status(session: Session, job_id: int) -> str | None:
    return session.scalar(select(J.status).where(J.id == job_id))
