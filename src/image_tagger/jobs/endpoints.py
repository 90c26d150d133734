"""The job endpoints: the list with counts by status, and one job with its items."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from sqlalchemy import func, select

from image_tagger.auth.dependencies import AdminPrincipal
from image_tagger.db import session_scope
from image_tagger.http import Offset, RowId
from image_tagger.jobs.models import JobStatus, UploadJob, UploadJobItem
from image_tagger.jobs.schemas import ItemOut, JobDetail, JobList, JobSummary

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
        return JobList(
            jobs=[JobSummary.model_validate(job) for job in jobs], counts=counts
        )


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
            **JobSummary.model_validate(job).model_dump(
                exclude={"progress", "error_count"}
            ),
            items=[ItemOut.model_validate(item) for item in items],
            items_total=job.total_items,
            items_offset=items_offset,
            items_limit=items_limit,
        )
