"""Shapes of the job endpoints' answers."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, computed_field

from image_tagger.jobs.models import JobStatus, UploadJob
from image_tagger.jobs.service import Progress


class JobSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    status: str
    total_items: int
    completed_items: int
    failed_items: int
    cancelled_items: int = 0
    error_summary: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested_at: datetime | None = None
    force_reanalysis: bool = False
    items_per_second: float | None = Field(
        default=None,
        description="Items recorded per second since the job started running "
        "(running jobs only)",
    )
    eta_seconds: float | None = Field(
        default=None,
        description="Seconds until every item is recorded at that rate "
        "(running jobs only)",
    )

    @computed_field
    @property
    def progress(self) -> float:
        """Completed items over total items, 0 to 1."""
        return (
            round(self.completed_items / self.total_items, 4)
            if self.total_items
            else 0.0
        )

    @computed_field
    @property
    def error_count(self) -> int:
        return self.failed_items


def summarize(
    job: UploadJob, *, progress: Progress | None, now: datetime
) -> JobSummary:
    """A job's summary; a running job's includes its throughput and ETA.

    The rate is measured from the job's first recorded item on, not from its
    start: the first items take a whole analysis to arrive while the runners
    fill up, and counting that wait would underestimate a steady rate. Until
    a second item is recorded, the rate is the one since the start.
    """
    summary = JobSummary.model_validate(job)
    if job.status != JobStatus.RUNNING or job.started_at is None:
        return summary
    if progress is None or progress.finished == 0:
        return summary

    first = progress.first_finished_at
    if progress.finished >= 2 and first is not None and now > first:
        rate = (progress.finished - 1) / (now - first).total_seconds()
    else:
        elapsed = (now - job.started_at).total_seconds()
        if elapsed <= 0:
            return summary
        rate = progress.finished / elapsed
    left = job.total_items - job.completed_items - job.failed_items
    left -= job.cancelled_items
    summary.items_per_second = round(rate, 4)
    summary.eta_seconds = round(max(left, 0) / rate, 1)
    return summary


class JobList(BaseModel):
    jobs: list[JobSummary]
    counts: dict[str, int]


class ItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    image_id: int | None
    filename: str
    status: str
    error_message: str | None
    note: str | None
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    seconds: float | None


class JobDetail(JobSummary):
    items: list[ItemOut]
    items_total: int
    items_offset: int
    items_limit: int


class JobOperation(BaseModel):
    """The answer to cancel, retry and re-analyse: the job, and how many items."""

    job: JobSummary
    items: int
