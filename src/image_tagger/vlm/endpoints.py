"""The cost ledger's endpoint: totals, the budget and what is left, recent calls."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query

from image_tagger.auth.dependencies import AdminPrincipal
from image_tagger.db import session_scope
from image_tagger.settings import get_settings
from image_tagger.vlm.ledger import cost_report
from image_tagger.vlm.schemas import CostsOut
from image_tagger.vlm.service import get_vlm

router = APIRouter(prefix="/api/v1/admin", tags=["costs"])


@router.get("/costs", response_model=CostsOut)
def get_costs(
    _: AdminPrincipal,
    recent: Annotated[int, Query(ge=0, le=1000, description="Latest calls")] = 50,
    days: Annotated[int, Query(ge=1, le=3660, description="Days in by_day")] = 30,
) -> CostsOut:
    """VLM spending: totals by day, model and analyzer, the budget, recent calls.

    `spent_usd` counts every call with a known cost; `reserved_usd` is what
    the calls in flight may cost (those of every process, in the ledger);
    `unpriced_calls` ended without a known cost (an unknown price, no usage
    reported by the provider, or interrupted); `in_flight_calls` are not
    answered yet. Each recent call's `outcome` is one of `ok`,
    `invalid_answer`, `rate_limited`, `server_error`, `timeout`,
    `connection_error`, `refused`, `bad_response`, `in_flight` or
    `interrupted`.
    """
    settings = get_settings()
    vlm = get_vlm(settings)
    reserved = vlm.budget.reserved if vlm is not None else Decimal(0)
    with session_scope() as session:
        if session.get_bind().dialect.name == "postgresql":
            # The report's reads in one snapshot, as SQLite's read transaction
            # gives: a call that ends meanwhile is never counted twice or not
            # at all (in flight in one total, done in another).
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        return cost_report(
            session,
            settings=settings,
            reserved_usd=reserved,
            days=days,
            recent=recent,
        )
