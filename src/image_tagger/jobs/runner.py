"""The runner: claims a job's items one at a time and records their results.

``run_upload_job`` works on one job until no item is left to claim. Several
runners (threads, processes, machines) may run it on the same job at once;
claims and leases keep each item with one runner.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from concurrent.futures import CancelledError, Executor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path

import structlog
from pebble import ProcessExpired
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from image_tagger.db import session_scope
from image_tagger.images.decode import DAMAGED_FILE_ADVICE, ImageDecodeError
from image_tagger.images.models import Image, ImageAnalysis
from image_tagger.images.thumbnails import thumbnail_path
from image_tagger.jobs import service
from image_tagger.jobs.models import (
    FINAL_JOB_STATUSES,
    JobStatus,
    UploadJob,
    UploadJobItem,
)
from image_tagger.science.pipeline import (
    PipelineResult,
    SciencePipeline,
    SciencePipelineConfig,
)
from image_tagger.settings import Settings, get_settings
from image_tagger.vlm.ledger import interrupt_stale_calls

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RunOutcome:
    """What one runner did on a job, and the job's status when it stopped."""

    job_id: int
    status: str | None
    items_recorded: int


class LeaseLost(Exception):
    """Another runner took the item over after this runner's lease expired."""


def new_owner() -> str:
    """A name for one runner, unique across machines and processes."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_alive(owner: str) -> bool:
    """False when ``owner`` (from `new_owner`) ran in a process of this machine
    that has ended; True otherwise (another machine's runner is trusted until
    its lease expires)."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_upload_job(
    job_id: int,
    *,
    executor: Executor | None = None,
    stop: threading.Event | None = None,
    settings: Settings | None = None,
    until_final: bool = True,
) -> RunOutcome:
    """Process the job's pending items; by default, return once the job is final.

    When no item is left to claim but other runners still hold some, the
    runner waits for them to finish, or for their leases to expire and takes
    those items over. With ``until_final=False`` it returns at once instead
    (the in-process backend's sweeper looks after expired leases).
    """
    settings = settings or get_settings()
    stop = stop or threading.Event()
    owner = new_owner()
    pipeline = SciencePipeline(
        config=SciencePipelineConfig(enable_all=True),
        executor=executor,
        settings=settings,
        stop=stop,
    )
    with session_scope(write=True) as session:
        service.recover_expired_leases(
            session, max_attempts=settings.max_attempts, job_id=job_id
        )
        interrupt_stale_calls(session, settings)

    processed = 0
    waiting = False
    while not stop.is_set():
        started = time.perf_counter()
        with session_scope(write=True) as session:
            work = _claim(
                session,
                job_id,
                owner=owner,
                pipeline=pipeline,
                settings=settings,
                first=processed == 0,
            )
        if work is None:
            if not until_final or _settled(job_id):
                break
            if not waiting:
                log.info(
                    "runner.waiting",
                    job_id=job_id,
                    detail="the items left are held by other runners; waiting for "
                    "them to finish, or for their leases to expire "
                    f"(at most {settings.lease_seconds:g} s) to take them over",
                )
                waiting = True
            stop.wait(min(1.0, settings.lease_seconds / 3))
            with session_scope(write=True) as session:
                service.recover_expired_leases(
                    session, max_attempts=settings.max_attempts, job_id=job_id
                )
            continue
        waiting = False
        _process_item(
            work, owner=owner, pipeline=pipeline, settings=settings, started=started
        )
        processed += 1

    with session_scope() as session:
        status = service.job_status(session, job_id)
    log.debug("runner.done", job_id=job_id, owner=owner, items=processed, status=status)
    return RunOutcome(job_id=job_id, status=status, items_recorded=processed)


def process_one_item(
    job_id: int,
    *,
    executor: Executor | None = None,
    stop: threading.Event | None = None,
    settings: Settings | None = None,
) -> int | None:
    """Claim and process at most one pending item of the job; its id, or None.

    The unit of work of a distributed queue: one task per item, each taking
    whichever item is next. A task delivered twice, or one more task than
    items, finds nothing to claim and returns None.
    """
    settings = settings or get_settings()
    pipeline = SciencePipeline(
        config=SciencePipelineConfig(enable_all=True),
        executor=executor,
        settings=settings,
        stop=stop or threading.Event(),
    )
    owner = new_owner()
    started = time.perf_counter()
    with session_scope(write=True) as session:
        work = _claim(
            session,
            job_id,
            owner=owner,
            pipeline=pipeline,
            settings=settings,
            first=True,
        )
    if work is None:
        return None

    _process_item(
        work, owner=owner, pipeline=pipeline, settings=settings, started=started
    )
    return work.item_id


def _settled(job_id: int) -> bool:
    """True when the job is final, or does not exist."""
    with session_scope() as session:
        status = service.job_status(session, job_id)
    return status is None or status in FINAL_JOB_STATUSES


@dataclass(frozen=True)
class _Work:
    item_id: int
    job_id: int
    image_id: int
    path: Path
    thumbnail: Path
    analysed_by: str | None  # the version of an existing analysis, if any
    stored_vlm: dict | None = None  # that analysis's VLM outcomes
    #: Other running claims of the same image, made before this one.
    earlier_claims: tuple[tuple[int, str], ...] = ()


def _claim(
    session: Session,
    job_id: int,
    *,
    owner: str,
    pipeline: SciencePipeline,
    settings: Settings,
    first: bool,
) -> _Work | None:
    """Claim the next item and load what analysing it needs, in one transaction."""
    item_id = service.claim_next_item(
        session,
        job_id,
        owner=owner,
        lease_seconds=settings.lease_seconds,
        mark_job_running=False,  # below, if the job is still pending
    )
    if item_id is None:
        return None
    # Locks the image's row: claims of one image take turns (see
    # `service.other_claims_of_image`).
    row = session.execute(
        _ITEM_IMAGE_LOCKED, {"item_id": item_id, "version": pipeline.version}
    ).one()
    image_id, sha256, storage_path, analysed_by, force, stored_vlm, job_status = row
    if first and job_status == JobStatus.PENDING:
        service.start_job(session, job_id, item_id=item_id, owner=owner)
    return _Work(
        item_id=item_id,
        job_id=job_id,
        image_id=image_id,
        path=settings.data_dir / storage_path,
        thumbnail=thumbnail_path(settings.data_dir, sha256),
        analysed_by=None if force else analysed_by,
        stored_vlm=stored_vlm,
        earlier_claims=service.other_claims_of_image(session, image_id, item_id),
    )


# An item's image, the version of its analysis by this pipeline if any, and
# whether its job analyses every image again regardless.
# (On the tables, not the mapped classes: a plain statement, without the ORM's
# work on each execution.)
_IMAGES, _ANALYSES = Image.__table__.c, ImageAnalysis.__table__.c
_JOBS, _ITEMS = UploadJob.__table__.c, UploadJobItem.__table__.c
_ITEM_IMAGE = (
    select(
        _IMAGES.id,
        _IMAGES.sha256,
        _IMAGES.storage_path,
        _ANALYSES.pipeline_version,
        _JOBS.force_reanalysis,
        _ANALYSES.vlm,
    )
    .select_from(Image.__table__)
    .join(UploadJobItem.__table__, _ITEMS.image_id == _IMAGES.id)
    .join(UploadJob.__table__, _JOBS.id == _ITEMS.job_id)
    .outerjoin(
        ImageAnalysis.__table__,
        (_ANALYSES.image_id == _IMAGES.id)
        & (_ANALYSES.pipeline_version == bindparam("version")),
    )
    .where(_ITEMS.id == bindparam("item_id"))
)
# The same, with the job's status, locking the image's row (PostgreSQL; SQLite
# has one writer at a time anyway).
_ITEM_IMAGE_LOCKED = _ITEM_IMAGE.add_columns(_JOBS.status).with_for_update(
    of=Image.__table__
)


def _process_item(
    work: _Work,
    *,
    owner: str,
    pipeline: SciencePipeline,
    settings: Settings,
    started: float,
) -> None:
    item_id, job_id = work.item_id, work.job_id
    if _to_analyse(work, pipeline):
        try:
            work = _after_earlier_claims(work, owner=owner, pipeline=pipeline)
        except CancelledError:
            _release(item_id, job_id, owner=owner, reason="the service stopped")
            return
    if not _to_analyse(work, pipeline):
        note = (
            f"already analysed with pipeline version {work.analysed_by}; "
            "not analysed again"
        )
        try:
            pipeline.ensure_thumbnail(work.path, work.thumbnail)
        except Exception:
            log.warning("item.thumbnail_failed", job_id=job_id, item_id=item_id)
        _record(item_id, job_id, owner=owner, note=note, started=started)
        return

    try:
        with LeaseHeartbeat(item_id, owner=owner, lease_seconds=settings.lease_seconds):
            result = pipeline.compute(
                work.path,
                thumbnail=work.thumbnail,
                image_id=work.image_id,
                job_id=job_id,
                stored_vlm=work.stored_vlm,
            )
    except ImageDecodeError as exc:
        reason = f"{exc}; {DAMAGED_FILE_ADVICE}"
        _fail(item_id, job_id, owner=owner, reason=reason, started=started)
        return
    except TimeoutError:
        reason = (
            f"analysis took longer than {settings.item_timeout_seconds:g} s and was "
            "stopped (set IMAGE_TAGGER_ITEM_TIMEOUT_SECONDS to allow more)"
        )
        _fail(item_id, job_id, owner=owner, reason=reason, started=started)
        return
    except ProcessExpired as exc:
        _retry_or_fail(
            item_id,
            job_id,
            owner=owner,
            settings=settings,
            reason=f"the analysis process died on this image (exit {exc.exitcode})",
        )
        return
    except CancelledError:
        _release(item_id, job_id, owner=owner, reason="the service stopped; retrying")
        return
    except BrokenProcessPool:
        reason = "the analysis processes were restarted; retrying"
        _release(item_id, job_id, owner=owner, reason=reason)
        return
    except Exception as exc:
        log.exception("item.error", job_id=job_id, item_id=item_id)
        _retry_or_fail(
            item_id,
            job_id,
            owner=owner,
            settings=settings,
            reason=f"analysis failed: {type(exc).__name__}: {exc}",
        )
        return

    _record(
        item_id,
        job_id,
        owner=owner,
        result=result,
        image_id=work.image_id,
        pipeline=pipeline,
        started=started,
        note=_vlm_note(result),
    )


def _to_analyse(work: _Work, pipeline: SciencePipeline) -> bool:
    """Not analysed by this pipeline version yet, or its VLM results are
    missing for the configured model (not configured then, budget reached,
    another model, an error): only those analyzers are asked again."""
    return work.analysed_by is None or pipeline.vlm_incomplete(work.stored_vlm)


def _after_earlier_claims(
    work: _Work, *, owner: str, pipeline: SciencePipeline
) -> _Work:
    """Wait while runners that claimed the same image before this one analyse
    it, then say whether they left an analysis: an image is never analysed,
    nor its model calls paid, twice at the same time. If such a runner died,
    its item goes back to pending when its lease expires, and this one goes on.
    """
    if not work.earlier_claims:
        return work
    log.info("item.waiting_for_same_image", job_id=work.job_id, item_id=work.item_id)
    settings = pipeline.settings
    recovered = time.monotonic()
    with LeaseHeartbeat(
        work.item_id, owner=owner, lease_seconds=settings.lease_seconds
    ):
        while True:
            if pipeline.stop.wait(0.25):
                raise CancelledError
            if time.monotonic() - recovered > settings.lease_seconds / 3:
                recovered = time.monotonic()
                with session_scope(write=True) as session:
                    service.recover_expired_leases(
                        session, max_attempts=settings.max_attempts
                    )
            with session_scope() as session:
                if not service.claims_still_held(session, work.earlier_claims):
                    row = session.execute(
                        _ITEM_IMAGE,
                        {"item_id": work.item_id, "version": pipeline.version},
                    ).one()
                    analysed_by = None if row.force_reanalysis else row.pipeline_version
                    return replace(
                        work,
                        analysed_by=analysed_by,
                        stored_vlm=row.vlm,
                        earlier_claims=(),
                    )


def _vlm_note(result: PipelineResult) -> str | None:
    """A line for the item when a VLM analyzer did not give a result (and
    whether its earlier result was kept)."""
    problems: dict[tuple[str, str, bool], list[str]] = {}
    outcomes = {**result.vlm, **result.vlm_kept}
    for name, outcome in outcomes.items():
        if outcome["status"] != "ok":
            key = (outcome["status"], outcome["reason"], name in result.vlm_kept)
            problems.setdefault(key, []).append(name)
    return (
        "; ".join(
            f"VLM {', '.join(names)} {status}: {reason}"
            + ("; the earlier ok result was kept" if kept else "")
            for (status, reason, kept), names in problems.items()
        )
        or None
    )


def _record(
    item_id: int,
    job_id: int,
    *,
    owner: str,
    started: float,
    result: PipelineResult | None = None,
    image_id: int | None = None,
    pipeline: SciencePipeline | None = None,
    note: str | None = None,
) -> None:
    """Results, the item's status and the job's counters in one transaction."""
    seconds = round(time.perf_counter() - started, 4)
    try:
        with session_scope(write=True) as session:
            if not service.complete_item(
                session, item_id, job_id=job_id, owner=owner, seconds=seconds, note=note
            ):
                raise LeaseLost(item_id)
            if result is not None:
                SciencePipeline(
                    config=pipeline.config, db=session, settings=pipeline.settings
                ).store(image_id, result)
    except LeaseLost:
        log.warning("item.lease_lost", job_id=job_id, item_id=item_id, owner=owner)


def _fail(
    item_id: int, job_id: int, *, owner: str, reason: str, started: float
) -> None:
    seconds = round(time.perf_counter() - started, 4)
    with session_scope(write=True) as session:
        service.fail_item(  # logs item.failed
            session, item_id, job_id=job_id, owner=owner, reason=reason, seconds=seconds
        )


def _release(item_id: int, job_id: int, *, owner: str, reason: str) -> None:
    """Back to pending, not counted as an attempt: the item was not at fault."""
    with session_scope(write=True) as session:
        service.release_item(
            session, item_id, owner=owner, reason=reason, refund_attempt=True
        )
    log.info("item.released", job_id=job_id, item_id=item_id, reason=reason)


def _retry_or_fail(
    item_id: int, job_id: int, *, owner: str, settings: Settings, reason: str
) -> None:
    with session_scope(write=True) as session:
        attempts = session.scalar(
            select(UploadJobItem.attempts).where(UploadJobItem.id == item_id)
        )
        if attempts < settings.max_attempts:
            service.release_item(session, item_id, owner=owner, reason=reason)
            log.info("item.retry", job_id=job_id, item_id=item_id, reason=reason)
            return
    _fail(
        item_id,
        job_id,
        owner=owner,
        reason=f"{reason} (gave up after {attempts} attempts)",
        started=time.perf_counter(),
    )


class LeaseHeartbeat:
    """Renews a runner's lease on an item while the item is being analysed."""

    def __init__(self, item_id: int, *, owner: str, lease_seconds: float) -> None:
        self.item_id = item_id
        self.owner = owner
        self.lease_seconds = lease_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"lease-{item_id}", daemon=True
        )

    def __enter__(self) -> LeaseHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            with session_scope(write=True) as session:
                kept = service.renew_lease(
                    session,
                    self.item_id,
                    owner=self.owner,
                    lease_seconds=self.lease_seconds,
                )
            if not kept:
                log.warning("item.lease_lost", item_id=self.item_id, owner=self.owner)
                return
