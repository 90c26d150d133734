"""Shapes of the upload endpoint's answer."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class FileVerdictOut(BaseModel):
    filename: str
    status: Literal["accepted", "duplicate", "rejected"]
    reason: str | None = None
    image_id: int | None = None
    sha256: str | None = None
    size_bytes: int | None = None


class UploadAccepted(BaseModel):
    job_id: int
    status: str
    image_ids: list[int]
    files: list[FileVerdictOut]
