"""SciencePipeline through its Python API: analyse, store, replace."""

from __future__ import annotations

from helpers import SAMPLE_PHOTOS
from sqlalchemy import func, select

from image_tagger.db import session_scope
from image_tagger.images.models import ImageAnalysis
from image_tagger.science import (
    PIPELINE_VERSION,
    SciencePipeline,
    SciencePipelineConfig,
)
from image_tagger.settings import get_settings
from image_tagger.uploads.service import receive_upload
from image_tagger.uploads.storage import stage_path


def _stored_image(path) -> int:
    settings = get_settings()
    staged = stage_path(settings.tmp_dir, path, max_bytes=settings.max_upload_bytes)
    outcome = receive_upload([staged], settings=settings, created_by="test")
    return outcome.image_ids[0]


def test_analyze_stores_every_metric_with_version_and_parameters(data_dir):
    image_id = _stored_image(SAMPLE_PHOTOS[0])

    with session_scope(write=True) as session:
        from image_tagger.images.models import Image

        image = session.get(Image, image_id)
        pipeline = SciencePipeline(
            config=SciencePipelineConfig(enable_all=True), db=session
        )
        first = pipeline.analyze(image)
        second = pipeline.analyze(image)

    assert first.id == second.id
    assert second.pipeline_version == PIPELINE_VERSION
    assert second.parameters["metrics"]["analysis"]["max_side_px"] == 768
    assert 1.0 < second.metrics["fractal.dimension"] < 2.0
    with session_scope() as session:
        rows = session.scalar(select(func.count()).select_from(ImageAnalysis))
    assert rows == 1


def test_compute_stores_nothing_and_matches_analyze(data_dir):
    image_id = _stored_image(SAMPLE_PHOTOS[1])
    path = SAMPLE_PHOTOS[1]

    computed = SciencePipeline(config=SciencePipelineConfig(enable_all=True)).compute(
        path
    )
    with session_scope(write=True) as session:
        analysis_id = SciencePipeline(
            config=SciencePipelineConfig(enable_all=True), db=session
        ).store(image_id, computed)
        stored = session.get(ImageAnalysis, analysis_id)
        assert stored.metrics == computed.metrics
