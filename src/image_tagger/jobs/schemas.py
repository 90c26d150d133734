"""Shapes of the job endpoints' answers."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, computed_field


class JobSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    status: str
    total_items: int
    completed_items: int
    failed_items: int
    error_summary: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

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
