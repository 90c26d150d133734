"""Shapes of the upload endpoint's answer."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class EarlierItemOut(BaseModel):
    """For a duplicate of an image uploaded before: its latest earlier item."""

    job_id: int
    status: str
    error_message: str | None = None


class FileVerdictOut(BaseModel):
    filename: str
    status: Literal["accepted", "duplicate", "rejected"]
    reason: str | None = None
    image_id: int | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    earlier: EarlierItemOut | None = None


class UploadAccepted(BaseModel):
    job_id: int
    status: str
    image_ids: list[int]
    files: list[FileVerdictOut]
