"""An upload job and its items, with the states of SPEC section 2."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from image_tagger.db import Base, UTCDateTime, utcnow


class JobStatus(enum.StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    COMPLETED_WITH_ERRORS = "COMPLETED_WITH_ERRORS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


FINAL_JOB_STATUSES = frozenset(
    {
        JobStatus.COMPLETED,
        JobStatus.COMPLETED_WITH_ERRORS,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
    }
)


class ItemStatus(enum.StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    # Still pending when its job was cancelled: never started, never will be.
    CANCELLED = "CANCELLED"


class UploadJob(Base):
    __tablename__ = "upload_jobs"
    __table_args__ = (Index("ix_upload_jobs_status", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(32), default=JobStatus.PENDING)
    total_items: Mapped[int] = mapped_column(default=0)
    completed_items: Mapped[int] = mapped_column(default=0)
    failed_items: Mapped[int] = mapped_column(default=0)
    cancelled_items: Mapped[int] = mapped_column(default=0, server_default="0")
    error_summary: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, onupdate=utcnow
    )
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set by a cancel: the job ends CANCELLED once its running items are recorded.
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Analyse every item again, even an image the current pipeline has analysed.
    force_reanalysis: Mapped[bool] = mapped_column(
        default=False, server_default=false()
    )

    items: Mapped[list[UploadJobItem]] = relationship(
        back_populates="job", order_by="UploadJobItem.id"
    )


class UploadJobItem(Base):
    """One image of a job. Claimed by one runner at a time through its lease."""

    __tablename__ = "upload_job_items"
    __table_args__ = (
        Index("ix_upload_job_items_job_status", "job_id", "status"),
        Index("ix_upload_job_items_status_lease", "status", "lease_expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(
        ForeignKey("upload_jobs.id", ondelete="CASCADE")
    )
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id"), index=True)
    filename: Mapped[str] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(16), default=ItemStatus.PENDING)
    error_message: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    seconds: Mapped[float | None]

    job: Mapped[UploadJob] = relationship(back_populates="items")
