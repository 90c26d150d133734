"""Parameter types shared by the endpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

# Database ids and offsets are signed 64-bit integers; larger ones are a 422.
MAX_ROW = 2**63 - 1

RowId = Annotated[int, Path(ge=1, le=MAX_ROW, description="A database id")]
Offset = Annotated[int, Query(ge=0, le=MAX_ROW, description="Rows to skip")]
