"""The ToolUsage ledger: one row per model call, written as the call leaves and
completed when it ends; its totals, and the ``ok`` answers not stored yet.

A call's row is written ``in_flight`` just before its request is sent, with
the cost reserved for it under the budget, so that every process sees the
calls in flight of every other; when the call ends, the row gets its outcome,
tokens, cost, latency and (when ``ok``) the validated answer. A row still
``in_flight`` long after any call could have ended was left by a process
that stopped (killed, or the machine restarted): it is marked
``interrupted``, its cost unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from image_tagger.db import session_scope, utcnow
from image_tagger.settings import Settings
from image_tagger.vlm.models import ToolUsage
from image_tagger.vlm.schemas import (
    CallOut,
    CostsOut,
    DayCost,
    ModelCost,
    ToolCost,
)

log = structlog.get_logger(__name__)

#: Input tokens assumed for a call's budget reservation before any call of its
#: analyzer and model has reported its usage (a 640 px image and the prompt,
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
IN_FLIGHT = "in_flight"  # sent; no answer yet
#: Left in flight by a process that stopped; the provider may have billed it.
INTERRUPTED = "interrupted"

INTERRUPTED_NOTE = (
    "the process making this call stopped (it was killed, or the machine "
    "restarted) before the answer came; the provider may have billed it, so "
    "its cost is unknown"
)

#: Slack added to the longest a call can last before its row counts as left.
STALE_MARGIN_SECONDS = 5.0


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
    #: The call's ledger row.
    id: int | None = None


def start_call(
    *,
    tool: str,
    provider: str,
    model: str,
    prompts_version: int,
    reserved_usd: Decimal | None,
    image_id: int | None,
    job_id: int | None,
) -> int:
    """Write the row of a call about to be sent, ``in_flight``, in its own
    transaction; returns its id."""
    with session_scope(write=True) as session:
        row = ToolUsage(
            tool=tool,
            provider=provider,
            model=model,
            outcome=IN_FLIGHT,
            prompts_version=prompts_version,
            reserved_usd=reserved_usd,
            image_id=image_id,
            job_id=job_id,
        )
        session.add(row)
        session.flush()
        return row.id


def finish_call(call: CallRecord, *, answer: dict[str, Any] | None = None) -> None:
    """Complete the row ``call.id`` with how the call ended (even if a sweep
    marked it interrupted meanwhile: this process knows better); its
    reservation ends."""
    with session_scope(write=True) as session:
        session.execute(
            update(ToolUsage)
            .where(ToolUsage.id == call.id)
            .values(
                outcome=call.outcome,
                input_tokens=call.input_tokens,
                output_tokens=call.output_tokens,
                cost_usd=call.cost_usd,
                latency_ms=round(call.latency_ms, 1),
                error=call.error[:2000] if call.error else None,
                reserved_usd=None,
                answer=answer,
            )
        )


def spent_and_reserved_usd(
    settings: Settings, session: Session | None = None
) -> tuple[Decimal, Decimal]:
    """The sum of every known cost in the ledger, and what the calls in flight,
    of every process, have reserved (a row left in flight by a stopped
    process, not marked yet, holds nothing). Read in one statement: a call
    that ends meanwhile is counted in one or the other, never in neither."""
    since = utcnow() - timedelta(seconds=stale_after_seconds(settings))
    live = (ToolUsage.outcome == IN_FLIGHT) & (ToolUsage.created_at >= since)
    query = select(
        func.sum(ToolUsage.cost_usd),
        func.sum(case((live, ToolUsage.reserved_usd), else_=None)),
    )
    if session is not None:
        spent, reserved = session.execute(query).one()
    else:
        with session_scope() as own:
            spent, reserved = own.execute(query).one()
    return Decimal(spent or 0), Decimal(reserved or 0)


def stale_after_seconds(settings: Settings) -> float:
    """How long after it was sent a call still ``in_flight`` must have been left
    by a stopped process: no call lasts longer than a request's timeout, nor
    an analyzer's calls longer than the retry budget and one timeout."""
    return (
        settings.vlm_retry_total_seconds
        + settings.vlm_timeout_seconds
        + STALE_MARGIN_SECONDS
    )


def interrupt_stale_calls(session: Session, settings: Settings) -> int:
    """Mark ``interrupted`` the calls left ``in_flight`` by a stopped process
    (sent longer ago than `stale_after_seconds`); returns how many. Their
    cost is unknown (null, counted as unpriced) and their reservation ends."""
    since = utcnow() - timedelta(seconds=stale_after_seconds(settings))
    result = session.execute(
        update(ToolUsage)
        .where(ToolUsage.outcome == IN_FLIGHT, ToolUsage.created_at < since)
        .values(outcome=INTERRUPTED, error=INTERRUPTED_NOTE, reserved_usd=None)
    )
    if result.rowcount:
        log.warning(
            "vlm.calls_interrupted",
            calls=result.rowcount,
            detail="calls left in flight by a stopped process; their cost is unknown",
        )
    return result.rowcount or 0


def unstored_answers(
    image_id: int, model: str, prompts_version: int, tools: list[str]
) -> dict[str, tuple[int, dict[str, Any]]]:
    """The latest ``ok`` answer of each of ``tools`` for the image from
    ``model`` with these prompts that was never stored on an analysis (its
    process stopped, or lost the item, before storing it): ``{tool: (id,
    answer)}``. Paid for already, it is used instead of a new call."""
    query = (
        select(ToolUsage.tool, ToolUsage.id, ToolUsage.answer)
        .where(
            ToolUsage.image_id == image_id,
            ToolUsage.model == model,
            ToolUsage.prompts_version == prompts_version,
            ToolUsage.tool.in_(tools),
            ToolUsage.outcome == OK,
            ToolUsage.answer.is_not(None),
            ToolUsage.stored_at.is_(None),
        )
        .order_by(ToolUsage.id)
    )
    with session_scope() as session:
        rows = session.execute(query).all()
    return {tool: (call_id, answer) for tool, call_id, answer in rows}


def mark_stored(session: Session, call_ids: list[int]) -> None:
    """The answers of ``call_ids`` are stored on an analysis (in ``session``'s
    transaction, the analysis's own): they are never used again instead of
    a call."""
    if call_ids:
        session.execute(
            update(ToolUsage)
            .where(ToolUsage.id.in_(call_ids))
            .values(stored_at=utcnow())
        )


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
    settings: Settings,
    reserved_usd: Decimal,
    days: int,
    recent: int,
) -> CostsOut:
    """Totals by day (the last ``days``), by model and by analyzer, the budget,
    and the ``recent`` latest calls. ``reserved_usd`` is what this process has
    reserved for calls not in the ledger yet; those in flight in the ledger,
    of every process, are added."""
    budget_usd = settings.vlm_budget_usd
    spent, in_flight_reserved = spent_and_reserved_usd(settings, session)
    reserved = reserved_usd + in_flight_reserved
    unpriced, no_usage, in_flight = session.execute(select(*_sums()[-3:])).one()
    remaining = None
    if budget_usd is not None:
        remaining = max(Decimal(str(budget_usd)) - spent - reserved, Decimal(0))

    return CostsOut(
        budget_usd=budget_usd,
        spent_usd=float(spent),
        reserved_usd=float(reserved),
        remaining_usd=None if remaining is None else float(remaining),
        unpriced_calls=unpriced or 0,
        no_usage_calls=no_usage or 0,
        in_flight_calls=in_flight or 0,
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
    calls that ended without a cost, those of them without usage, and the
    calls in flight (neither priced nor unpriced yet)."""
    calls = func.count()
    in_flight = func.coalesce(
        func.sum(case((ToolUsage.outcome == IN_FLIGHT, 1), else_=0)), 0
    )
    no_usage = func.sum(
        case(
            (
                ToolUsage.input_tokens.is_(None) & (ToolUsage.outcome != IN_FLIGHT),
                1,
            ),
            else_=0,
        )
    )
    return (
        calls,
        func.coalesce(func.sum(ToolUsage.input_tokens), 0),
        func.coalesce(func.sum(ToolUsage.output_tokens), 0),
        func.sum(ToolUsage.cost_usd),
        calls - func.count(ToolUsage.cost_usd) - in_flight,
        no_usage,
        in_flight,
    )


def _totals(session: Session, *keys) -> list[tuple[tuple, dict]]:
    rows = session.execute(
        select(*keys, *_sums()).group_by(*keys).order_by(*keys)
    ).all()
    width = len(keys)
    return [(tuple(row[:width]), _counts(row[width:])) for row in rows]


def _counts(row) -> dict:
    calls, input_tokens, output_tokens, cost, unpriced, no_usage, in_flight = row
    return {
        "calls": calls,
        "input_tokens": int(input_tokens),
        "output_tokens": int(output_tokens),
        "cost_usd": None if cost is None else float(cost),
        "unpriced_calls": int(unpriced),
        "no_usage_calls": int(no_usage or 0),
        "in_flight_calls": int(in_flight or 0),
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
