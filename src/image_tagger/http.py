"""Parameter types shared by the endpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

# Ids are INTEGER columns (32 bits on PostgreSQL) and offsets signed 64-bit
# integers; larger values are a 422, never a database error.
MAX_ID = 2**31 - 1
MAX_ROW = 2**63 - 1

RowId = Annotated[int, Path(ge=1, le=MAX_ID, description="A database id")]
Offset = Annotated[int, Query(ge=0, le=MAX_ROW, description="Rows to skip")]
