"""SciencePipeline: runs every enabled analyzer on an image and stores the result.

Computing and storing are separate steps so that a runner can compute outside
any transaction (in a process pool) and record the result in the same
transaction as the item's status.
"""

from __future__ import annotations

import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from image_tagger.settings import get_settings

PIPELINE_VERSION = "2"


@dataclass(frozen=True, kw_only=True)
class SciencePipelineConfig:
    """Which analyzers run. ``enable_all`` turns on every one that is available."""

    enable_all: bool = False
    metrics: bool = True

    @property
    def run_metrics(self) -> bool:
        return self.enable_all or self.metrics


@dataclass
class PipelineResult:
    metrics: dict[str, float | None] = field(default_factory=dict)
    metric_notes: dict[str, str] = field(default_factory=dict)
    vlm: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def decode_and_measure(path: Path, thumbnail: Path | None = None) -> MetricsResult:
    """Decode once; every metric, and the thumbnail if asked (runs in a pool)."""
    pixels = load_analysis_image(path)
    if thumbnail is not None:
        write_thumbnail(pixels, thumbnail)
    return compute_metrics(pixels)


def decode_for_thumbnail(path: Path, thumbnail: Path) -> None:
    """Only the thumbnail, for an image analysed before without one."""
    write_thumbnail(load_analysis_image(path, max_side=THUMBNAIL_SIDE), thumbnail)


class SciencePipeline:
    """Runs the analyzers of ``config`` on images and stores their results."""

    version = PIPELINE_VERSION

    def __init__(
        self,
        *,
        config: SciencePipelineConfig,
        db: Session | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.config = config
        self.db = db
        self.executor = executor

    @property
    def parameters(self) -> dict[str, Any]:
        return {"metrics": PIPELINE_PARAMS if self.config.run_metrics else None}

    def compute(self, path: Path, *, thumbnail: Path | None = None) -> PipelineResult:
        """Every enabled analyzer on the file at ``path``; nothing is stored.

        With ``thumbnail``, a thumbnail is written there from the same decode.
        """
        started = time.perf_counter()
        result = PipelineResult()

        if self.config.run_metrics:
            if self.executor is None:
                metrics = decode_and_measure(path, thumbnail)
            else:
                metrics = self.executor.submit(
                    decode_and_measure, path, thumbnail
                ).result()
            result.metrics = metrics.metrics
            result.metric_notes = metrics.notes

        result.seconds = time.perf_counter() - started
        return result

    def ensure_thumbnail(self, path: Path, thumbnail: Path) -> None:
        """Make the thumbnail of an already analysed image if it is missing."""
        if thumbnail.exists():
            return
        if self.executor is None:
            decode_for_thumbnail(path, thumbnail)
        else:
            self.executor.submit(decode_for_thumbnail, path, thumbnail).result()

    def store(self, image_id: int, result: PipelineResult) -> int:
        """Record ``result`` for the image; the same version replaces, never adds.

        Returns the id of the analysis row.
        """
        db = self._require_db()
        values = {
            "parameters": self.parameters,
            "metrics": result.metrics,
            "metric_notes": result.metric_notes,
            "vlm": result.vlm,
            "seconds": round(result.seconds, 4),
            "updated_at": utcnow(),
        }
        insert = (
            pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
        )
        statement = insert(ImageAnalysis).values(
            image_id=image_id,
            pipeline_version=self.version,
            created_at=values["updated_at"],
            **values,
        )
        return db.scalar(
            statement.on_conflict_do_update(
                index_elements=["image_id", "pipeline_version"], set_=values
            ).returning(ImageAnalysis.id)
        )

    def analyze(self, image: Image) -> ImageAnalysis:
        """Compute and store every enabled analyzer for ``image``."""
        data_dir = get_settings().data_dir
        result = self.compute(
            data_dir / image.storage_path,
            thumbnail=thumbnail_path(data_dir, image.sha256),
        )
        analysis_id = self.store(image.id, result)
        return self._require_db().get(
            ImageAnalysis, analysis_id, populate_existing=True
        )

    def _require_db(self) -> Session:
        if self.db is None:
            raise RuntimeError("SciencePipeline needs db=session to read or store")
        return self.db
