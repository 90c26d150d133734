"""Server-sent events of one job: its items as they finish, its status as it moves.

The stream reads the database every ``POLL_SECONDS``, so it sees the work of
every runner, in this process or another. Events:

- ``item``: an item was recorded (``COMPLETED``, ``FAILED`` or ``CANCELLED``),
  with ``id``, ``image_id``, ``filename``, ``status``, ``error_message``,
  ``note``, ``seconds``, ``finished_at``; its SSE id is ``finished_at``, so a
  client that reconnects with ``Last-Event-ID`` misses nothing. A client that
  sends no ``Last-Event-ID`` first gets every item recorded so far (oldest
  first, read ``REPLAY_PAGE`` at a time), so one stream tells the whole job.
- ``job``: the job summary (with ETA), first at once, then whenever its
  status or counters change.
- ``end``: the job is final; the stream closes after it.

A stopping server closes its streams (``closing``) without ``end``, so that
it need not wait for jobs to finish; clients reconnect with ``Last-Event-ID``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anyio
from sqlalchemy import and_, or_, select

from image_tagger.db import session_scope, utcnow
from image_tagger.jobs import service
from image_tagger.jobs.models import FINAL_JOB_STATUSES, ItemStatus, UploadJob
from image_tagger.jobs.models import UploadJobItem as Item
from image_tagger.jobs.schemas import summarize

POLL_SECONDS = 0.5
REPLAY_PAGE = 500
KEEPALIVE_SECONDS = 15.0
# Items are looked for this far before the last one seen, so that one recorded
# by a machine whose clock lags a little is still sent (each is sent once).
OVERLAP = timedelta(seconds=5)

# Set when the server begins to stop: every open stream ends at its next poll.
closing = threading.Event()

_RECORDED = [ItemStatus.COMPLETED, ItemStatus.FAILED, ItemStatus.CANCELLED]


@dataclass
class _Poll:
    job: dict
    items: list[dict]


def _poll(job_id: int, since: datetime) -> _Poll | None:
    """The job's summary and the items recorded since ``since``, one snapshot."""
    with session_scope() as session:
        job = session.get(UploadJob, job_id)
        if job is None:
            return None
        progress = service.progress_since_start(session, [job_id])
        summary = summarize(job, progress=progress.get(job_id), now=utcnow())
        items = session.scalars(
            select(Item)
            .where(
                Item.job_id == job_id,
                Item.status.in_(_RECORDED),
                Item.finished_at >= since - OVERLAP,
            )
            .order_by(Item.finished_at, Item.id)
        ).all()
        return _Poll(
            job=summary.model_dump(mode="json"),
            items=[_item(item) for item in items],
        )


def _recorded_after(job_id: int, after: tuple[datetime, int] | None) -> list[dict]:
    """The next ``REPLAY_PAGE`` recorded items, in (finished_at, id) order."""
    query = select(Item).where(
        Item.job_id == job_id,
        Item.status.in_(_RECORDED),
        Item.finished_at.is_not(None),
    )
    if after is not None:
        finished_at, item_id = after
        query = query.where(
            or_(
                Item.finished_at > finished_at,
                and_(Item.finished_at == finished_at, Item.id > item_id),
            )
        )
    with session_scope() as session:
        items = session.scalars(
            query.order_by(Item.finished_at, Item.id).limit(REPLAY_PAGE)
        ).all()
        return [_item(item) for item in items]


def _item(item: Item) -> dict:
    return {
        "id": item.id,
        "image_id": item.image_id,
        "filename": item.filename,
        "status": item.status,
        "error_message": item.error_message,
        "note": item.note,
        "seconds": item.seconds,
        "finished_at": item.finished_at.isoformat(),
    }


def format_event(event: str, data: dict, *, event_id: str | None = None) -> str:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"data: {json.dumps(data, separators=(',', ':'))}")
    return "\n".join(lines) + "\n\n"


class BadLastEventId(ValueError):
    """A ``Last-Event-ID`` that is not the id of an item event of this stream."""


# A reconnecting client's id may be ahead of this server's clock by as much
# as another machine's clock leads it; not by more than this.
LAST_EVENT_ID_LEAD = timedelta(days=1)


def parse_last_event_id(value: str | None) -> datetime | None:
    """The ``finished_at`` a reconnecting client last saw, if it sent one.

    Raises :class:`BadLastEventId`, saying what to send, for a value that no
    item event carries: not a timestamp with its UTC offset, or one outside
    the range an item can have finished in.
    """
    if not value:
        return None
    try:
        seen = datetime.fromisoformat(value)
    except ValueError:
        seen = None
    if seen is None or seen.tzinfo is None:
        raise BadLastEventId(_bad_id(value, "not an item event's id"))
    try:
        seen = seen.astimezone(UTC)
        seen - OVERLAP  # noqa: B018 (the stream looks this far back)
    except OverflowError:
        raise BadLastEventId(_bad_id(value, "out of range")) from None
    if seen > utcnow() + LAST_EVENT_ID_LEAD:
        raise BadLastEventId(_bad_id(value, "in the future"))
    return seen


def _bad_id(value: str, problem: str) -> str:
    shown = value if len(value) <= 64 else value[:64] + "..."
    return (
        f"Last-Event-ID {shown!r} is {problem}; send the id of the last item "
        "event received (its finished_at, like 2026-12-03T19:20:01.123456+00:00), "
        "or no Last-Event-ID to get every item from the start"
    )


async def job_events(
    job_id: int,
    *,
    since: datetime | None,
    disconnected: Callable[[], Awaitable[bool]],
) -> AsyncIterator[str]:
    """The event stream of one job, until it is final or the client leaves.

    Items recorded after ``since`` (the ``Last-Event-ID`` of a client that
    reconnects) are sent; with no ``since``, every item recorded so far first.
    """
    if since is None:
        since = utcnow()
        after = None
        while not closing.is_set():
            page = await anyio.to_thread.run_sync(_recorded_after, job_id, after)
            if page:
                yield "".join(
                    format_event("item", item, event_id=item["finished_at"])
                    for item in page
                )
                last = page[-1]
                after = (datetime.fromisoformat(last["finished_at"]), last["id"])
                since = max(since, after[0])
            if len(page) < REPLAY_PAGE:
                break
    floor = since
    sent: dict[int, datetime] = {}
    last_job: tuple | None = None
    quiet_since = time.monotonic()
    while not closing.is_set() and not await disconnected():
        poll = await anyio.to_thread.run_sync(_poll, job_id, since)
        if poll is None:
            yield format_event("end", {"job_id": job_id, "status": None})
            return

        chunks = []
        window: dict[int, datetime] = {}
        for item in poll.items:
            finished_at = datetime.fromisoformat(item["finished_at"])
            window[item["id"]] = finished_at
            if finished_at > floor and sent.get(item["id"]) != finished_at:
                chunks.append(format_event("item", item, event_id=item["finished_at"]))
            since = max(since, finished_at)
        sent = window

        job = poll.job
        state = (
            job["status"],
            job["completed_items"],
            job["failed_items"],
            job["cancelled_items"],
        )
        if state != last_job:
            chunks.append(format_event("job", job))
            last_job = state
        if job["status"] in FINAL_JOB_STATUSES:
            end = {"job_id": job_id, "status": job["status"]}
            chunks.append(format_event("end", end))
            yield "".join(chunks)
            return

        if chunks:
            quiet_since = time.monotonic()
            yield "".join(chunks)
        elif time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        await anyio.sleep(POLL_SECONDS)
