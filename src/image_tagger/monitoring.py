"""Prometheus metrics at ``/metrics``, read from the database at each scrape.

Reading the database rather than counting in memory makes the figures the
same whichever process did the work (the server's runners, worker processes,
other machines) and survives restarts. They describe what the database holds:
a retry that puts failed items back to pending lowers the failed count, which
Prometheus reads as a counter reset.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import Float, case, cast, func, select
from sqlalchemy.orm import Session

from image_tagger.auth.dependencies import (
    bearer_scheme,
    current_principal,
    require_admin,
    role_header_scheme,
)
from image_tagger.db import session_scope
from image_tagger.images.models import ImageAnalysis
from image_tagger.jobs.models import (
    FINAL_JOB_STATUSES,
    ItemStatus,
    JobStatus,
    UploadJob,
    UploadJobItem,
)
from image_tagger.settings import get_settings
from image_tagger.vlm.ledger import IN_FLIGHT
from image_tagger.vlm.models import ToolUsage

PREFIX = "image_tagger"
# Upper bounds of the duration buckets, in seconds.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class DatabaseCollector(Collector):
    """Jobs, items, durations and model calls, counted in the database."""

    def collect(self) -> Iterator[Metric]:
        with session_scope() as session:
            yield from _job_metrics(session)
            yield from _item_metrics(session)
            yield from _duration_metrics(session)
            yield from _vlm_metrics(session)


def _job_metrics(session: Session) -> Iterator[Metric]:
    jobs = GaugeMetricFamily(
        f"{PREFIX}_jobs", "Upload jobs by status", labels=["status"]
    )
    counts = dict(
        session.execute(
            select(UploadJob.status, func.count()).group_by(UploadJob.status)
        ).all()
    )
    for status in JobStatus:
        jobs.add_metric([status.value], counts.get(status.value, 0))
    yield jobs


def _item_metrics(session: Session) -> Iterator[Metric]:
    counts = dict(
        session.execute(
            select(UploadJobItem.status, func.count()).group_by(UploadJobItem.status)
        ).all()
    )
    items = GaugeMetricFamily(
        f"{PREFIX}_items", "Job items by status", labels=["status"]
    )
    for status in ItemStatus:
        items.add_metric([status.value], counts.get(status.value, 0))
    yield items
    yield CounterMetricFamily(
        f"{PREFIX}_items_processed",
        "Items analysed and recorded COMPLETED",
        value=counts.get(ItemStatus.COMPLETED.value, 0),
    )
    yield CounterMetricFamily(
        f"{PREFIX}_items_failed",
        "Items recorded FAILED (rejected at upload included)",
        value=counts.get(ItemStatus.FAILED.value, 0),
    )

    depth = session.scalar(
        select(func.count())
        .select_from(UploadJobItem)
        .join(UploadJob, UploadJob.id == UploadJobItem.job_id)
        .where(
            UploadJobItem.status == ItemStatus.PENDING,
            UploadJob.status.not_in(list(FINAL_JOB_STATUSES)),
        )
    )
    yield GaugeMetricFamily(
        f"{PREFIX}_queue_depth",
        "Pending items of unfinished jobs, waiting for a runner",
        value=depth,
    )


def _duration_metrics(session: Session) -> Iterator[Metric]:
    histogram = HistogramMetricFamily(
        f"{PREFIX}_item_duration_seconds",
        "Time per item by stage: item (claim to record), analysis (decode and "
        "metrics), vlm (one model call)",
        labels=["stage"],
    )
    stages = {
        "item": (
            UploadJobItem.seconds,
            UploadJobItem.status.in_([ItemStatus.COMPLETED, ItemStatus.FAILED]),
        ),
        "analysis": (ImageAnalysis.seconds, None),
        "vlm": (cast(ToolUsage.latency_ms, Float) / 1000.0, None),
    }
    for stage, (seconds, condition) in stages.items():
        buckets, total = _histogram(session, seconds, condition)
        histogram.add_metric([stage], buckets, total)
    yield histogram


def _histogram(session: Session, seconds, condition) -> tuple[list, float]:
    """Cumulative bucket counts and the sum of ``seconds``, in one scan."""
    columns = [
        func.coalesce(func.sum(case((seconds <= bound, 1), else_=0)), 0)
        for bound in DURATION_BUCKETS
    ]
    query = select(*columns, func.count(seconds), func.coalesce(func.sum(seconds), 0))
    query = query.where(seconds.is_not(None))
    if condition is not None:
        query = query.where(condition)
    *cumulative, count, total = session.execute(query).one()
    buckets = [
        (str(bound), int(value))
        for bound, value in zip(DURATION_BUCKETS, cumulative, strict=True)
    ]
    buckets.append(("+Inf", int(count)))
    return buckets, float(total)


def _vlm_metrics(session: Session) -> Iterator[Metric]:
    calls = CounterMetricFamily(
        f"{PREFIX}_vlm_calls",
        "Model calls in the ledger that have ended, by outcome",
        labels=["tool", "model", "outcome"],
    )
    in_flight = GaugeMetricFamily(
        f"{PREFIX}_vlm_calls_in_flight",
        "Model calls sent and not answered yet (any process)",
        labels=["tool", "model"],
    )
    tokens = CounterMetricFamily(
        f"{PREFIX}_vlm_tokens",
        "Tokens of model calls",
        labels=["tool", "model", "direction"],
    )
    cost = CounterMetricFamily(
        f"{PREFIX}_vlm_cost_usd",
        "Cost of model calls in USD (calls of unknown price not included)",
        labels=["tool", "model"],
    )
    rows = session.execute(
        select(
            ToolUsage.tool,
            ToolUsage.model,
            ToolUsage.outcome,
            func.count(),
            func.coalesce(func.sum(ToolUsage.input_tokens), 0),
            func.coalesce(func.sum(ToolUsage.output_tokens), 0),
            func.coalesce(func.sum(ToolUsage.cost_usd), 0),
        ).group_by(ToolUsage.tool, ToolUsage.model, ToolUsage.outcome)
    ).all()
    spent: dict[tuple[str, str], float] = {}
    used: dict[tuple[str, str, str], int] = {}
    for tool, model, outcome, count, input_tokens, output_tokens, usd in rows:
        if outcome == IN_FLIGHT:  # counted once it ends, so the counter only grows
            in_flight.add_metric([tool, model], count)
            continue
        calls.add_metric([tool, model, outcome], count)
        for direction, number in (("input", input_tokens), ("output", output_tokens)):
            key = (tool, model, direction)
            used[key] = used.get(key, 0) + int(number)
        spent[(tool, model)] = spent.get((tool, model), 0.0) + float(usd)
    for labels, number in used.items():
        tokens.add_metric(list(labels), number)
    for labels, usd in spent.items():
        cost.add_metric(list(labels), usd)
    yield from (calls, in_flight, tokens, cost)


def create_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector())
    return registry


def metrics_access(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    role_header: Annotated[str | None, Depends(role_header_scheme)],
) -> None:
    """Open by default; the admin role when IMAGE_TAGGER_METRICS_AUTH is true."""
    if get_settings().metrics_auth:
        require_admin(current_principal(request, credentials, role_header))


router = APIRouter(tags=["monitoring"])
_registry = create_registry()


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    dependencies=[Depends(metrics_access)],
)
def metrics() -> Response:
    """Prometheus metrics (no auth unless IMAGE_TAGGER_METRICS_AUTH=true)."""
    return Response(generate_latest(_registry), media_type=CONTENT_TYPE_LATEST)
