"""The ToolUsage ledger: one row per model call.

A row is written as the request leaves (outcome ``in_flight``, with the budget
reserved for it) and completed when the request ends; a row left ``in_flight``
by a process that was killed is marked ``interrupted`` later.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Numeric, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from image_tagger.db import Base, UTCDateTime, utcnow


class ToolUsage(Base):
    __tablename__ = "tool_usage"
    __table_args__ = (
        Index("ix_tool_usage_created_at", "created_at"),
        # The calls in flight: read before every call (their reservations) and
        # at every sweep (those a stopped process left).
        Index(
            "ix_tool_usage_in_flight",
            "created_at",
            sqlite_where=text("outcome = 'in_flight'"),
            postgresql_where=text("outcome = 'in_flight'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tool: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(128))
    input_tokens: Mapped[int | None]
    output_tokens: Mapped[int | None]
    cost_usd: Mapped[Decimal | None] = mapped_column(Numeric(14, 8))
    latency_ms: Mapped[float | None]
    outcome: Mapped[str] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    image_id: Mapped[int | None] = mapped_column(
        ForeignKey("images.id", ondelete="SET NULL"), index=True
    )
    job_id: Mapped[int | None] = mapped_column(
        ForeignKey("upload_jobs.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: While the call is in flight: the cost reserved for it under the budget.
    reserved_usd: Mapped[Decimal | None] = mapped_column(Numeric(14, 8))
    #: The validated answer of an ``ok`` call, and the analyzers' version.
    answer: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    prompts_version: Mapped[int | None]
    #: When the answer was stored on the image's analysis; an ``ok`` answer
    #: never stored (its process stopped first) is used instead of a new call.
    stored_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
