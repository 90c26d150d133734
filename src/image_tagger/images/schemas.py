"""Shapes of the image endpoints' answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class AnalysisOut(BaseModel):
    pipeline_version: str
    parameters: dict[str, Any]
    metrics: dict[str, float | None]
    metric_notes: dict[str, str]
    vlm: dict[str, Any]
    seconds: float | None
    updated_at: datetime


class ImageOut(BaseModel):
    id: int
    filename: str
    sha256: str
    format: str
    media_type: str
    size_bytes: int
    width: int
    height: int
    created_at: datetime
    analysis: AnalysisOut | None
