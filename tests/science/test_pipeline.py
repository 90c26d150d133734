"""SciencePipeline through its Python API: analyse, store, replace."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from helpers import ROOT, SAMPLE_PHOTOS, child_env
from PIL import Image
from sqlalchemy import func, select

from image_tagger.db import session_scope
from image_tagger.images.decode import ANALYSIS_MAX_SIDE
from image_tagger.images.models import Image as StoredImage
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
        image = session.get(StoredImage, image_id)
        pipeline = SciencePipeline(
            config=SciencePipelineConfig(enable_all=True), db=session
        )
        first = pipeline.analyze(image)
        second = pipeline.analyze(image)

    assert first.id == second.id
    assert second.pipeline_version == PIPELINE_VERSION
    assert second.parameters["metrics"]["analysis"]["max_side_px"] == ANALYSIS_MAX_SIDE
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


def test_analyze_json_prints_exactly_the_stored_values(data_dir, tmp_path):
    # A photo, and an image too small for box counting (None with a reason).
    small = tmp_path / "small.png"
    Image.fromarray(
        np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    ).save(small)
    files = [SAMPLE_PHOTOS[2], small]
    stored = []
    for path in files:
        image_id = _stored_image(path)
        with session_scope(write=True) as session:
            image = session.get(StoredImage, image_id)
            SciencePipeline(
                config=SciencePipelineConfig(enable_all=True), db=session
            ).analyze(image)
        with session_scope() as session:
            row = session.scalars(
                select(ImageAnalysis).where(ImageAnalysis.image_id == image_id)
            ).one()
            stored.append((row.metrics, row.metric_notes))

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "image_tagger.cli",
            "analyze",
            "--json",
            *map(str, files),
        ],
        env=child_env(data_dir),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(line["metrics"], line["notes"]) for line in printed] == stored
    assert stored[1][0]["fractal.dimension"] is None
    assert "too small" in stored[1][1]["fractal.dimension"]
