"""Claims, leases, results and counters: every state change of jobs and items.

Each function takes the caller's session and flushes; the caller commits. Every
change is a conditional UPDATE, so any number of runners in any number of
processes can share a job: an item is claimed by one runner at a time (its
lease), only the lease holder may finish it, and a job's final status is set
once, by whoever records its last item.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import structlog
from sqlalchemy import Select, Update, bindparam, case, func, select, update
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
    seen to that, or that calls `start_job` itself once it has read the job's
    status, passes ``mark_job_running=False``.
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
        start_job(session, job_id, item_id=claimed, owner=owner)
    return claimed


def start_job(session: Session, job_id: int, *, item_id: int, owner: str) -> None:
    """A pending job becomes RUNNING, with ``item_id`` its first claim."""
    now = utcnow()
    started = session.execute(
        update(JOBS)
        .where(J.id == job_id, J.status == JobStatus.PENDING)
        .values(status=JobStatus.RUNNING, started_at=now, updated_at=now)
    )
    if started.rowcount == 1:
        log.info("job.started", job_id=job_id, item_id=item_id, owner=owner)


# The item ``p_item_id``, only while ``p_owner`` holds it: the fence of every
# update of a claimed item.
_HELD = (
    I.id == bindparam("p_item_id"),
    I.lease_owner == bindparam("p_owner"),
    I.status == ItemStatus.RUNNING,
)


def renew_lease(
    session: Session, item_id: int, *, owner: str, lease_seconds: float
) -> bool:
    """Extend ``owner``'s lease on a running item; False if it was lost."""
    result = session.execute(
        update(ITEMS)
        .where(*_HELD)
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds)),
        {"p_item_id": item_id, "p_owner": owner},
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
        # A note from before a retry ("retried after: ...") is now stale.
        values={"seconds": seconds, "error_message": reason, "note": None},
    )
    if finished:
        refresh_error_summary(session, job_id)
    return finished


def release_item(
    session: Session,
    item_id: int,
    *,
    owner: str,
    reason: str,
    refund_attempt: bool = False,
) -> bool:
    """Give a running item back to the queue for another attempt.

    With ``refund_attempt``, the attempt does not count against
    ``max_attempts``: the item was stopped for a reason not its own (the
    service stopped, the analysis processes were restarted).
    """
    result = session.execute(
        update(ITEMS)
        .where(*_HELD)
        .values(
            status=ItemStatus.PENDING,
            lease_owner=None,
            lease_expires_at=None,
            error_message=reason,
            attempts=I.attempts - 1 if refund_attempt else I.attempts,
        ),
        {"p_item_id": item_id, "p_owner": owner},
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
        _finish_statement(status, tuple(values)),
        {
            "p_item_id": item_id,
            "p_owner": owner,
            "p_now": now,
            **{f"p_{name}": value for name, value in values.items()},
        },
    )
    if result.rowcount != 1:
        return False
    if status == ItemStatus.FAILED:  # logged before the job's end it may cause
        reason = values["error_message"]
        log.warning("item.failed", job_id=job_id, item_id=item_id, reason=reason)

    completed, failed, cancelled, total = session.execute(
        _COUNT_STATEMENTS[status], {"p_job_id": job_id, "p_now": now}
    ).one()
    if completed + failed + cancelled >= total:
        finish_job_if_done(session, job_id)
    return True


_NOW = bindparam("p_now", type_=UTCDateTime())


@lru_cache
def _finish_statement(status: ItemStatus, names: tuple[str, ...]) -> Update:
    """Recording a held item as ``status``, setting the columns ``names`` too
    (built once for each: it runs for every item)."""
    return (
        update(ITEMS)
        .where(*_HELD)
        .values(
            {
                I.status: status,
                I.lease_owner: None,
                I.lease_expires_at: None,
                I.finished_at: _NOW,
                **{getattr(I, name): bindparam(f"p_{name}") for name in names},
            }
        )
    )


def _count_statement(counter) -> Update:
    return (
        update(JOBS)
        .where(J.id == bindparam("p_job_id"))
        .values(
            {
                counter: counter + 1,
                J.updated_at: _NOW,
            }
        )
        .returning(J.completed_items, J.failed_items, J.cancelled_items, J.total_items)
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
        (J.cancel_requested_at.is_not(None), JobStatus.CANCELLED.value),
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
            J.completed_items + J.failed_items + J.cancelled_items >= J.total_items,
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
                J.cancelled_items,
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
            cancelled=job.cancelled_items,
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
            fail_item(  # logs item.failed
                session, row.id, job_id=row.job_id, owner=row.lease_owner, reason=reason
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


def unattended_jobs(
    session: Session, *, alive: Callable[[str], bool], grace_seconds: float
) -> list[int]:
    """Jobs with pending items that no runner anywhere is working on.

    A job is served while one of its items is held under an unexpired lease by
    an owner that ``alive`` says still runs, and while it is new and not yet
    started (recorded less than ``grace_seconds`` ago: the process that
    recorded it is about to claim its first items).
    """
    waiting = jobs_with_pending_items(session)
    if not waiting:
        return []

    now = utcnow()
    held = session.execute(
        select(I.job_id, I.lease_owner).where(
            I.job_id.in_(waiting),
            I.status == ItemStatus.RUNNING,
            I.lease_expires_at >= now,
        )
    ).all()
    served = {job_id for job_id, owner in held if owner and alive(owner)}
    new = session.scalars(
        select(J.id).where(
            J.id.in_(waiting),
            J.status == JobStatus.PENDING,
            J.updated_at > now - timedelta(seconds=grace_seconds),
        )
    )
    served.update(new)

    return [job_id for job_id in waiting if job_id not in served]


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


# Operating jobs: cancel, retry, re-analyse, and the throughput behind an ETA.


class JobNotFound(LookupError):
    """No job has this id."""


class JobStateError(ValueError):
    """The job is not in a state that allows the operation; the message says why."""


def cancel_job(session: Session, job_id: int) -> int:
    """Cancel the job's pending items; returns how many were cancelled.

    Pending items become CANCELLED and are never started. Items already
    running finish and are recorded as usual; the job ends CANCELLED once the
    last of them is (at once when none is running).
    """
    status = job_status(session, job_id)
    if status is None:
        raise JobNotFound(job_id)
    now = utcnow()
    requested = session.execute(
        update(JOBS)
        .where(J.id == job_id, J.status.not_in(list(FINAL_JOB_STATUSES)))
        .values(cancel_requested_at=func.coalesce(J.cancel_requested_at, now))
    )
    if requested.rowcount != 1:
        raise JobStateError(
            f"job {job_id} is already {job_status(session, job_id)}; a finished job "
            "cannot be cancelled"
        )

    cancelled = session.execute(
        update(ITEMS)
        .where(I.job_id == job_id, I.status == ItemStatus.PENDING)
        .values(
            status=ItemStatus.CANCELLED,
            finished_at=now,
            lease_owner=None,
            lease_expires_at=None,
            note="cancelled before it started",
        )
    ).rowcount
    session.execute(
        update(JOBS)
        .where(J.id == job_id)
        .values(cancelled_items=J.cancelled_items + cancelled, updated_at=now)
    )
    running = _count_items(session, job_id, ItemStatus.RUNNING)
    log.info(
        "job.cancel_requested", job_id=job_id, cancelled=cancelled, running=running
    )
    finish_job_if_done(session, job_id)
    return cancelled


def retry_failed_items(session: Session, job_id: int) -> int:
    """Put the job's failed items back to pending; returns how many.

    Each retried item starts with no attempts, so it gets the full
    ``max_attempts`` again. Files rejected at upload were never stored and
    stay failed. A finished job goes back to PENDING (to be dispatched again)
    and gets its final status anew; a cancelled one ends CANCELLED again.
    """
    status = job_status(session, job_id)
    if status is None:
        raise JobNotFound(job_id)
    now = utcnow()
    retried = session.execute(
        update(ITEMS)
        .where(
            I.job_id == job_id,
            I.status == ItemStatus.FAILED,
            I.image_id.is_not(None),
        )
        .values(
            status=ItemStatus.PENDING,
            attempts=0,
            note="retried after: " + func.coalesce(I.error_message, "no reason"),
            error_message=None,
            lease_owner=None,
            lease_expires_at=None,
            started_at=None,
            finished_at=None,
            seconds=None,
        )
    ).rowcount
    if retried == 0:
        raise JobStateError(
            f"job {job_id} has no failed item to retry (files rejected at upload "
            "were never stored: upload them again once fixed)"
        )

    was_final = J.status.in_(list(FINAL_JOB_STATUSES))
    session.execute(
        update(JOBS)
        .where(J.id == job_id)
        .values(
            failed_items=J.failed_items - retried,
            status=case((was_final, JobStatus.PENDING.value), else_=J.status),
            started_at=case((was_final, None), else_=J.started_at),
            finished_at=None,
            updated_at=now,
        )
    )
    refresh_error_summary(session, job_id)
    log.info("job.retry", job_id=job_id, items=retried, previous_status=status)
    return retried


def create_reanalysis_job(
    session: Session, *, every_image: bool = False, created_by: str | None = None
) -> UploadJob | None:
    """A new job over images analysed only by older pipeline versions; flushed.

    With ``every_image``, over every stored image, analysed again even when
    the current version has analysed it. None when there is nothing to run.
    """
    from image_tagger.images.models import Image, ImageAnalysis
    from image_tagger.science.pipeline import PIPELINE_VERSION

    query = select(Image.id, Image.filename).order_by(Image.id)
    if not every_image:
        analysed = select(ImageAnalysis.id).where(ImageAnalysis.image_id == Image.id)
        current = analysed.where(ImageAnalysis.pipeline_version == PIPELINE_VERSION)
        query = query.where(analysed.exists(), ~current.exists())
    images = session.execute(query).all()
    if not images:
        return None

    job = UploadJob(
        status=JobStatus.PENDING,
        created_by=created_by,
        total_items=len(images),
        force_reanalysis=every_image,
    )
    session.add(job)
    session.flush()
    session.execute(
        ITEMS.insert(),
        [
            {
                "job_id": job.id,
                "image_id": image.id,
                "filename": image.filename,
                "status": ItemStatus.PENDING.value,
                "attempts": 0,
            }
            for image in images
        ],
    )
    log.info(
        "job.reanalysis_created",
        job_id=job.id,
        items=len(images),
        every_image=every_image,
        pipeline_version=PIPELINE_VERSION,
    )
    return job


def _count_items(session: Session, job_id: int, status: ItemStatus) -> int:
    return session.scalar(
        select(func.count()).where(I.job_id == job_id, I.status == status)
    )


@dataclass(frozen=True)
class Progress:
    """The items a running job recorded since it started, and when the first was."""

    finished: int = 0
    first_finished_at: datetime | None = None


def progress_since_start(session: Session, job_ids: list[int]) -> dict[int, Progress]:
    """Per job, what it recorded since it last started running: its throughput."""
    if not job_ids:
        return {}
    rows = session.execute(
        select(I.job_id, func.count(), func.min(I.finished_at))
        .join(JOBS, J.id == I.job_id)
        .where(
            I.job_id.in_(job_ids),
            I.status.in_([ItemStatus.COMPLETED, ItemStatus.FAILED]),
            I.finished_at >= J.started_at,
        )
        .group_by(I.job_id)
    ).all()
    return {
        job_id: Progress(finished=count, first_finished_at=_aware(first))
        for job_id, count, first in rows
    }


def _aware(moment: datetime | None) -> datetime | None:
    """An aggregate's timestamp, which SQLite returns as text or naive."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def other_claims_of_image(
    session: Session, image_id: int, item_id: int
) -> tuple[tuple[int, str], ...]:
    """The other running items of the image, as ``(item id, lease owner)``.

    Called in the transaction that claims ``item_id``. Two jobs can hold the
    same new image (uploads at the same moment); the image is analysed, and
    its model calls paid, once: a claim waits for those it finds here. Claims
    of one image take turns (PostgreSQL: the claim's transaction has locked
    the image's row, ``FOR UPDATE``, when it read the image; SQLite: one
    writer at a time), so of two claims the later one always sees the
    earlier, and the earlier never waits for the later.
    """
    return tuple(
        (row.id, row.lease_owner)
        for row in session.execute(
            _other_claims_statement(), {"p_image_id": image_id, "p_item_id": item_id}
        )
    )


def claims_still_held(session: Session, claims: Iterable[tuple[int, str]]) -> bool:
    """Any of ``claims`` (from `other_claims_of_image`) is still running under
    the same lease owner (an item released and claimed again is another claim)."""
    claims = dict(claims)
    rows = session.execute(
        select(I.id, I.lease_owner).where(
            I.id.in_(list(claims)), I.status == ItemStatus.RUNNING
        )
    )
    return any(claims[row.id] == row.lease_owner for row in rows)


@lru_cache
def _other_claims_statement() -> Select:
    return select(I.id, I.lease_owner).where(
        I.image_id == bindparam("p_image_id"),
        I.id != bindparam("p_item_id"),
        I.status == ItemStatus.RUNNING,
    )
