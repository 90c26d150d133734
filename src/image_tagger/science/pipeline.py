"""SciencePipeline: runs every enabled analyzer on an image and stores the result.

Computing and storing are separate steps so that a runner can compute outside
any transaction (the pixels in a process pool, the VLM calls in its own
thread) and record the result in the same transaction as the item's status.
"""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import CancelledError, Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from PIL import Image as PILImage
from sqlalchemy import bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from image_tagger.db import utcnow
from image_tagger.images.decode import load_analysis_image
from image_tagger.images.models import Image, ImageAnalysis
from image_tagger.images.thumbnails import (
    THUMBNAIL_SIDE,
    thumbnail_path,
    write_thumbnail,
)
from image_tagger.science.compute import (
    PIPELINE_PARAMS,
    MetricsResult,
    compute_metrics,
)
from image_tagger.settings import Settings, get_settings
from image_tagger.vlm.analyzers import (
    VLM_IMAGE_QUALITY,
    failed,
    keep_paid,
    not_configured,
    skipped,
)
from image_tagger.vlm.ledger import mark_stored

if TYPE_CHECKING:
    from image_tagger.vlm.service import CallContext, VlmService

log = structlog.get_logger(__name__)

PIPELINE_VERSION = "2"


@dataclass(frozen=True, kw_only=True)
class SciencePipelineConfig:
    """Which analyzers run. ``enable_all`` turns on every one that is available."""

    enable_all: bool = False
    metrics: bool = True
    vlm: bool = False

    @property
    def run_metrics(self) -> bool:
        return self.enable_all or self.metrics

    @property
    def run_vlm(self) -> bool:
        """The VLM analyzers are asked for (they are skipped, and say so, when no
        provider is configured)."""
        return self.enable_all or self.vlm


@dataclass
class PipelineResult:
    metrics: dict[str, float | None] = field(default_factory=dict)
    metric_notes: dict[str, str] = field(default_factory=dict)
    vlm: dict[str, Any] = field(default_factory=dict)
    #: This run's outcomes (skipped or error) of the analyzers whose stored
    #: ``ok`` result was kept instead, by analyzer.
    vlm_kept: dict[str, Any] = field(default_factory=dict)
    #: The ledger rows whose ``ok`` answers are in ``vlm``, by analyzer:
    #: marked stored with the analysis, so never used again instead of a call.
    vlm_calls: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


# An image's stored VLM outcomes by one pipeline version (built once: read for
# every item recorded).
_ANALYSES = ImageAnalysis.__table__
_STORED_VLM = select(_ANALYSES.c.vlm).where(
    _ANALYSES.c.image_id == bindparam("p_image_id"),
    _ANALYSES.c.pipeline_version == bindparam("p_version"),
)


def decode_and_measure(path: Path, thumbnail: Path | None = None) -> MetricsResult:
    """Decode once; every metric, and the thumbnail if asked (runs in a pool)."""
    pixels = load_analysis_image(path)
    if thumbnail is not None:
        write_thumbnail(pixels, thumbnail)
    return compute_metrics(pixels)


def decode_for_pipeline(
    path: Path, thumbnail: Path | None, *, metrics: bool, vlm_image: bool
) -> tuple[MetricsResult | None, bytes | None]:
    """Decode once; the metrics and the JPEG the VLM sees, as asked (in a pool)."""
    pixels = load_analysis_image(path)
    if thumbnail is not None:
        write_thumbnail(pixels, thumbnail)
    jpeg = None
    if vlm_image:
        buffer = io.BytesIO()
        PILImage.fromarray(pixels).save(
            buffer, format="JPEG", quality=VLM_IMAGE_QUALITY
        )
        jpeg = buffer.getvalue()
    return (compute_metrics(pixels) if metrics else None), jpeg


def decode_for_thumbnail(path: Path, thumbnail: Path) -> None:
    """Only the thumbnail, for an image analysed before without one."""
    write_thumbnail(load_analysis_image(path, max_side=THUMBNAIL_SIDE), thumbnail)


def _decode_for_pipeline_task(
    path: Path, thumbnail: Path | None, metrics: bool, vlm_image: bool
) -> tuple[MetricsResult | None, bytes | None]:
    # The pool passes positional arguments only.
    return decode_for_pipeline(path, thumbnail, metrics=metrics, vlm_image=vlm_image)


def _vlm_service(settings: Settings) -> VlmService | None:
    """The process's VLM service, or None; the provider's client is imported
    only where it is used (not in the analysis processes)."""
    if not settings.vlm_configured:
        return None
    from image_tagger.vlm.service import get_vlm

    return get_vlm(settings)


def _analyze_or_error(
    vlm: VlmService, jpeg: bytes, context: CallContext, kept: dict[str, Any]
) -> dict[str, Any]:
    """The VLM analyzers' outcomes; a fault of ours is their error, so the
    image keeps its metrics (stopping the service still stops the item)."""
    try:
        return vlm.analyze(jpeg, context, kept=kept)
    except CancelledError:
        raise
    except Exception as exc:
        log.exception("vlm.failed", image_id=context.image_id)
        return failed(f"the VLM stage failed: {type(exc).__name__}: {exc}", vlm.model)


class SciencePipeline:
    """Runs the analyzers of ``config`` on images and stores their results."""

    version = PIPELINE_VERSION

    def __init__(
        self,
        *,
        config: SciencePipelineConfig,
        db: Session | None = None,
        executor: Executor | None = None,
        settings: Settings | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.config = config
        self.db = db
        self.executor = executor
        self.settings = settings or get_settings()
        self.stop = stop or threading.Event()
        self.vlm = _vlm_service(self.settings) if config.run_vlm else None

    @property
    def parameters(self) -> dict[str, Any]:
        return {
            "metrics": PIPELINE_PARAMS if self.config.run_metrics else None,
            "vlm": self.vlm.parameters if self.vlm is not None else None,
        }

    def compute(
        self,
        path: Path,
        *,
        thumbnail: Path | None = None,
        image_id: int | None = None,
        job_id: int | None = None,
        stored_vlm: dict[str, Any] | None = None,
    ) -> PipelineResult:
        """Every enabled analyzer on the file at ``path``; nothing is stored.

        With ``thumbnail``, a thumbnail is written there from the same decode.
        The VLM calls are written to the ledger (for ``image_id`` and
        ``job_id``) as they are made: they were paid whatever happens next.
        An ``ok`` answer in the ledger for the image that was never stored (a
        process stopped before storing it) is used instead of a new call.
        Of ``stored_vlm`` (an earlier analysis's VLM outcomes), those that are
        ``ok`` for the configured model are kept, not asked again; an ``ok``
        one of any model is kept when this run gives no ``ok`` result instead.
        """
        started = time.perf_counter()
        result = PipelineResult()
        run_metrics, vlm = self.config.run_metrics, self.vlm

        if run_metrics or vlm is not None:
            args = (path, thumbnail)
            options = {"metrics": run_metrics, "vlm_image": vlm is not None}
            if self.executor is None:
                metrics, jpeg = decode_for_pipeline(*args, **options)
            else:
                metrics, jpeg = self.executor.submit(
                    _decode_for_pipeline_task, *args, *options.values()
                ).result()
            if metrics is not None:
                result.metrics = metrics.metrics
                result.metric_notes = metrics.notes

        if vlm is not None:
            from image_tagger.vlm.service import CallContext

            context = CallContext(image_id=image_id, job_id=job_id, stop=self.stop)
            kept = vlm.reusable(stored_vlm)
            result.vlm = _analyze_or_error(vlm, jpeg, context, kept)
            result.vlm_calls = {
                name: call_id
                for name, call_id in context.answers.items()
                if result.vlm.get(name, {}).get("status") == "ok"
            }
        elif self.config.run_vlm:
            result.vlm = skipped(not_configured(self.settings))
        fresh = result.vlm
        result.vlm, kept = keep_paid(stored_vlm, fresh)
        result.vlm_kept = {name: fresh[name] for name in kept}

        result.seconds = time.perf_counter() - started
        return result

    def vlm_incomplete(self, stored_vlm: dict[str, Any] | None) -> bool:
        """A provider is configured and ``stored_vlm`` lacks an ``ok`` result of
        its model for some analyzer."""
        return self.vlm is not None and not self.vlm.complete(stored_vlm)

    def ensure_thumbnail(self, path: Path, thumbnail: Path) -> None:
        """Make the thumbnail of an already analysed image if it is missing."""
        if thumbnail.exists():
            return
        if self.executor is None:
            decode_for_thumbnail(path, thumbnail)
        else:
            self.executor.submit(decode_for_thumbnail, path, thumbnail).result()

    def store(self, image_id: int, result: PipelineResult) -> int:
        """Record ``result`` for the image; the same version replaces, never adds,
        and keeps the stored ``ok`` VLM results that ``result`` has no ``ok``
        result for.

        The ledger rows of the answers stored are marked so, in the same
        transaction. Returns the id of the analysis row.
        """
        db = self._require_db()
        vlm, _kept = keep_paid(self.stored_vlm(image_id), result.vlm)
        mark_stored(db, list(result.vlm_calls.values()))
        values = {
            "parameters": self.parameters,
            "metrics": result.metrics,
            "metric_notes": result.metric_notes,
            "vlm": vlm,
            "seconds": round(result.seconds, 4),
            "updated_at": utcnow(),
        }
        insert = (
            pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
        )
        statement = insert(_ANALYSES).values(
            image_id=image_id,
            pipeline_version=self.version,
            created_at=values["updated_at"],
            **values,
        )
        return db.scalar(
            statement.on_conflict_do_update(
                index_elements=["image_id", "pipeline_version"], set_=values
            ).returning(_ANALYSES.c.id)
        )

    def stored_vlm(self, image_id: int) -> dict[str, Any] | None:
        """The VLM outcomes stored on the image's analysis by this version."""
        return self._require_db().scalar(
            _STORED_VLM, {"p_image_id": image_id, "p_version": self.version}
        )

    def analyze(self, image: Image) -> ImageAnalysis:
        """Compute and store every enabled analyzer for ``image``; its stored
        ``ok`` VLM results of the configured model are not asked again.

        When VLM calls are to be made, the session's transaction is committed
        before them: each call writes the ledger in a transaction of its own,
        and SQLite cannot write from a transaction begun before those writes.
        The result is then stored in a new transaction of the session.
        """
        db = self._require_db()
        data_dir, image_id = self.settings.data_dir, image.id
        path = data_dir / image.storage_path
        thumbnail = thumbnail_path(data_dir, image.sha256)
        stored_vlm = self.stored_vlm(image_id)
        if self.vlm is not None and not self.vlm.complete(stored_vlm):
            db.commit()

        result = self.compute(
            path, thumbnail=thumbnail, image_id=image_id, stored_vlm=stored_vlm
        )
        analysis_id = self.store(image_id, result)
        return db.get(ImageAnalysis, analysis_id, populate_existing=True)

    def _require_db(self) -> Session:
        if self.db is None:
            raise RuntimeError("SciencePipeline needs db=session to read or store")
        return self.db
