"""The job endpoints: the list with counts by status, one job with its items, and
operating a job: cancel, retry, re-analyse, export, its event stream."""

from __future__ import annotations

from typing import Annotated

from fastapi import (
    APIRouter,
    BackgroundTasks,
    Header,
    HTTPException,
    Query,
    Request,
    Response,
    status,
)
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from image_tagger.auth.dependencies import AdminPrincipal
from image_tagger.db import session_scope, utcnow
from image_tagger.http import Offset, RowId
from image_tagger.jobs import export, service
from image_tagger.jobs.events import (
    BadLastEventId,
    job_events,
    parse_last_event_id,
)
from image_tagger.jobs.models import JobStatus, UploadJob, UploadJobItem
from image_tagger.jobs.schemas import (
    ItemOut,
    JobDetail,
    JobList,
    JobOperation,
    JobSummary,
    summarize,
)

router = APIRouter(prefix="/api/v1/admin/upload/jobs", tags=["jobs"])


@router.get("", response_model=JobList)
def list_jobs(
    _: AdminPrincipal,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    offset: Offset = 0,
) -> JobList:
    """The most recent jobs, newest first, and the number of jobs in each status."""
    with session_scope() as session:
        jobs = session.scalars(
            select(UploadJob).order_by(UploadJob.id.desc()).limit(limit).offset(offset)
        ).all()
        rows = session.execute(
            select(UploadJob.status, func.count()).group_by(UploadJob.status)
        ).all()
        counts = {state.value: 0 for state in JobStatus}
        counts.update({state: count for state, count in rows})
        return JobList(jobs=_summaries(session, jobs), counts=counts)


@router.get("/{job_id}", response_model=JobDetail)
def get_job(
    job_id: RowId,
    _: AdminPrincipal,
    items_limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    items_offset: Offset = 0,
) -> JobDetail:
    """One job's summary and its items (paginated with items_offset/items_limit)."""
    with session_scope() as session:
        job = session.get(UploadJob, job_id)
        if job is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no job {job_id}")
        items = session.scalars(
            select(UploadJobItem)
            .where(UploadJobItem.job_id == job_id)
            .order_by(UploadJobItem.id)
            .limit(items_limit)
            .offset(items_offset)
        ).all()
        return JobDetail(
            **_summaries(session, [job])[0].model_dump(
                exclude={"progress", "error_count"}
            ),
            items=[ItemOut.model_validate(item) for item in items],
            items_total=job.total_items,
            items_offset=items_offset,
            items_limit=items_limit,
        )


def _summaries(session: Session, jobs: list[UploadJob]) -> list[JobSummary]:
    """Summaries of ``jobs``; running ones with their throughput and ETA."""
    running = [job.id for job in jobs if job.status == JobStatus.RUNNING]
    progress = service.progress_since_start(session, running)
    now = utcnow()
    return [summarize(job, progress=progress.get(job.id), now=now) for job in jobs]


def _job_summary(session: Session, job_id: int) -> JobSummary:
    job = session.get(UploadJob, job_id, populate_existing=True)
    return _summaries(session, [job])[0]


def _not_found(job_id: int) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no job {job_id}")


@router.post("/reanalyze", response_model=JobOperation, status_code=202)
def reanalyze(
    request: Request,
    background: BackgroundTasks,
    principal: AdminPrincipal,
    every_image: Annotated[
        bool,
        Query(
            alias="all",
            description="Every stored image, even those the current pipeline "
            "version has analysed",
        ),
    ] = False,
) -> JobOperation:
    """A new job over images analysed only by older pipeline versions (or all)."""
    with session_scope(write=True) as session:
        job = service.create_reanalysis_job(
            session, every_image=every_image, created_by=principal.name
        )
        if job is None:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                detail="nothing to re-analyse: every analysed image has an analysis "
                "from the current pipeline version (use all=true to analyse every "
                "image again)",
            )
        operation = JobOperation(
            job=_job_summary(session, job.id), items=job.total_items
        )
    background.add_task(request.app.state.backend.dispatch, operation.job.id)
    return operation


@router.post("/{job_id}/cancel", response_model=JobOperation)
def cancel_job(job_id: RowId, _: AdminPrincipal) -> JobOperation:
    """Cancel a job: pending items are not started, running items finish, then
    the job ends CANCELLED. ``items`` is the number of items cancelled."""
    with session_scope(write=True) as session:
        try:
            cancelled = service.cancel_job(session, job_id)
        except service.JobNotFound:
            raise _not_found(job_id) from None
        except service.JobStateError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
        return JobOperation(job=_job_summary(session, job_id), items=cancelled)


@router.post("/{job_id}/retry", response_model=JobOperation, status_code=202)
def retry_job(
    job_id: RowId, request: Request, background: BackgroundTasks, _: AdminPrincipal
) -> JobOperation:
    """Run a job's failed items again (only those); ``items`` is how many."""
    with session_scope(write=True) as session:
        try:
            retried = service.retry_failed_items(session, job_id)
        except service.JobNotFound:
            raise _not_found(job_id) from None
        except service.JobStateError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
        operation = JobOperation(job=_job_summary(session, job_id), items=retried)
    background.add_task(request.app.state.backend.dispatch, job_id)
    return operation


@router.get(
    "/{job_id}/export",
    response_class=Response,
    responses={
        200: {
            "content": {media: {} for media in export.MEDIA_TYPES.values()},
            "description": "One row per item: file name, SHA-256, size, every "
            "metric and VLM field",
        }
    },
)
def export_job(
    job_id: RowId,
    _: AdminPrincipal,
    export_format: Annotated[
        export.ExportFormat, Query(alias="format", description="csv or parquet")
    ] = "csv",
) -> Response:
    """The job's results as a file: one row per image, a column per metric and
    VLM field (``vlm.<analyzer>.<field>``)."""
    with session_scope() as session:
        if session.get(UploadJob, job_id) is None:
            raise _not_found(job_id)
        table = export.build_table(session, job_id)
    filename = f"job-{job_id}.{export_format}"
    return Response(
        content=export.render(table, export_format),
        media_type=export.MEDIA_TYPES[export_format],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}},
        400: {"description": "a Last-Event-ID that is no item event's id"},
    },
)
def job_event_stream(
    job_id: RowId,
    request: Request,
    _: AdminPrincipal,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Server-sent events: ``item`` for each item recorded (first every one
    recorded so far, or those after ``Last-Event-ID``), ``job`` when the job's
    status or counters change, ``end`` when it is final (then it closes)."""
    with session_scope() as session:
        if session.get(UploadJob, job_id) is None:
            raise _not_found(job_id)
    try:
        since = parse_last_event_id(last_event_id)
    except BadLastEventId as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from None
    return StreamingResponse(
        job_events(
            job_id,
            since=since,
            disconnected=request.is_disconnected,
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
