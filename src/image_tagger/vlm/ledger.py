"""The ToolUsage ledger: writing one row per model call, and reading its totals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from image_tagger.db import session_scope, utcnow
from image_tagger.vlm.models import ToolUsage
from image_tagger.vlm.schemas import (
    CallOut,
    CostsOut,
    DayCost,
    ModelCost,
    ToolCost,
)

#: Input tokens assumed for a call's budget reservation before any call of its
#: analyzer and model has reported its usage (a 1024 px image and the prompt,
#: generously); the output is assumed to reach IMAGE_TAGGER_VLM_MAX_OUTPUT_TOKENS.
DEFAULT_INPUT_TOKENS_ESTIMATE = 4000

#: A reservation is the most tokens among this many latest calls of the same
#: analyzer and model, priced at the current price.
ESTIMATE_FROM_CALLS = 100

# Outcomes of a call, as the ledger records them.
OK = "ok"
INVALID = "invalid_answer"  # the answer came, but did not validate
RATE_LIMITED = "rate_limited"
SERVER_ERROR = "server_error"
TIMEOUT = "timeout"
CONNECTION_ERROR = "connection_error"
REFUSED = "refused"  # any other error status (bad key, unknown model, ...)
#: An HTTP 200 that is not a chat completion (an HTML page, other JSON): the
#: base URL does not lead to an OpenAI-compatible API.
BAD_RESPONSE = "bad_response"


@dataclass(frozen=True)
class CallRecord:
    tool: str
    provider: str
    model: str
    outcome: str
    latency_ms: float
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: Decimal | None = None
    error: str | None = None
    image_id: int | None = None
    job_id: int | None = None


def record_call(call: CallRecord) -> int:
    """Write one ledger row in its own transaction; returns its id."""
    with session_scope(write=True) as session:
        row = ToolUsage(
            tool=call.tool,
            provider=call.provider,
            model=call.model,
            input_tokens=call.input_tokens,
            output_tokens=call.output_tokens,
            cost_usd=call.cost_usd,
            latency_ms=round(call.latency_ms, 1),
            outcome=call.outcome,
            error=call.error[:2000] if call.error else None,
            image_id=call.image_id,
            job_id=call.job_id,
        )
        session.add(row)
        session.flush()
        return row.id


def spent_usd() -> Decimal:
    """The sum of every known cost in the ledger."""
    with session_scope() as session:
        total = session.scalar(select(func.sum(ToolUsage.cost_usd)))
    return Decimal(total or 0)


def tokens_estimate(tool: str, model: str) -> tuple[int, int] | None:
    """The most input and output tokens among the latest calls of ``tool`` to
    ``model`` that reported their usage; None before the first such call."""
    latest = (
        select(ToolUsage.input_tokens, ToolUsage.output_tokens)
        .where(
            ToolUsage.tool == tool,
            ToolUsage.model == model,
            ToolUsage.input_tokens.is_not(None),
            ToolUsage.output_tokens.is_not(None),
        )
        .order_by(ToolUsage.id.desc())
        .limit(ESTIMATE_FROM_CALLS)
        .subquery()
    )
    with session_scope() as session:
        most_in, most_out = session.execute(
            select(func.max(latest.c.input_tokens), func.max(latest.c.output_tokens))
        ).one()
    return None if most_in is None else (int(most_in), int(most_out))


def cost_report(
    session: Session,
    *,
    budget_usd: float | None,
    reserved_usd: Decimal,
    days: int,
    recent: int,
) -> CostsOut:
    """Totals by day (the last ``days``), by model and by analyzer, the budget,
    and the ``recent`` latest calls."""
    spent = Decimal(session.scalar(select(func.sum(ToolUsage.cost_usd))) or 0)
    unpriced, no_usage = session.execute(select(*_sums()[-2:])).one()
    remaining = None
    if budget_usd is not None:
        remaining = max(Decimal(str(budget_usd)) - spent - reserved_usd, Decimal(0))

    return CostsOut(
        budget_usd=budget_usd,
        spent_usd=float(spent),
        reserved_usd=float(reserved_usd),
        remaining_usd=None if remaining is None else float(remaining),
        unpriced_calls=unpriced or 0,
        no_usage_calls=no_usage or 0,
        by_day=_by_day(session, days),
        by_model=[
            ModelCost(provider=provider, model=model, **totals)
            for (provider, model), totals in _totals(
                session, ToolUsage.provider, ToolUsage.model
            )
        ],
        by_analyzer=[
            ToolCost(tool=tool, **totals)
            for (tool,), totals in _totals(session, ToolUsage.tool)
        ],
        recent=_recent(session, recent),
    )


def _sums() -> tuple:
    """Calls, tokens, the known costs' sum (NULL when none is known), the
    calls without a cost, and those of them without usage."""
    calls = func.count()
    return (
        calls,
        func.coalesce(func.sum(ToolUsage.input_tokens), 0),
        func.coalesce(func.sum(ToolUsage.output_tokens), 0),
        func.sum(ToolUsage.cost_usd),
        calls - func.count(ToolUsage.cost_usd),
        func.sum(case((ToolUsage.input_tokens.is_(None), 1), else_=0)),
    )


def _totals(session: Session, *keys) -> list[tuple[tuple, dict]]:
    rows = session.execute(
        select(*keys, *_sums()).group_by(*keys).order_by(*keys)
    ).all()
    width = len(keys)
    return [(tuple(row[:width]), _counts(row[width:])) for row in rows]


def _counts(row) -> dict:
    calls, input_tokens, output_tokens, cost, unpriced, no_usage = row
    return {
        "calls": calls,
        "input_tokens": int(input_tokens),
        "output_tokens": int(output_tokens),
        "cost_usd": None if cost is None else float(cost),
        "unpriced_calls": int(unpriced),
        "no_usage_calls": int(no_usage or 0),
    }


def _by_day(session: Session, days: int) -> list[DayCost]:
    created = ToolUsage.created_at
    if session.get_bind().dialect.name == "postgresql":
        day = func.to_char(func.timezone("UTC", created), "YYYY-MM-DD")
    else:
        day = func.strftime("%Y-%m-%d", created)
    since = utcnow() - timedelta(days=days)
    rows = session.execute(
        select(day.label("day"), *_sums())
        .where(created >= since)
        .group_by("day")
        .order_by("day")
    ).all()
    return [DayCost(day=row[0], **_counts(row[1:])) for row in rows]


def _recent(session: Session, limit: int) -> list[CallOut]:
    rows = session.scalars(
        select(ToolUsage).order_by(ToolUsage.id.desc()).limit(limit)
    ).all()
    return [
        CallOut(
            id=row.id,
            created_at=row.created_at,
            tool=row.tool,
            provider=row.provider,
            model=row.model,
            input_tokens=row.input_tokens,
            output_tokens=row.output_tokens,
            cost_usd=None if row.cost_usd is None else float(row.cost_usd),
            latency_ms=row.latency_ms,
            outcome=row.outcome,
            error=row.error,
            image_id=row.image_id,
            job_id=row.job_id,
        )
        for row in rows
    ]
