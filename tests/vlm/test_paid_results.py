"""Stored ``ok`` VLM results are paid for: no later skip or error replaces them."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient
from helpers import ADMIN, ROOT, child_env, jpeg_bytes, upload, wait_for_job
from sqlalchemy import select

from image_tagger.db import dispose_engines, session_scope
from image_tagger.images.models import Image
from image_tagger.science.pipeline import SciencePipeline, SciencePipelineConfig
from image_tagger.settings import reset_settings


@contextmanager
def app_client() -> Iterator[TestClient]:
    from image_tagger.app import create_app

    with TestClient(create_app()) as client:
        yield client


def _rated_image(client, fake, photo: bytes) -> dict:
    response = upload(client, [("a.jpg", photo)]).json()
    wait_for_job(client, response["job_id"])
    image_id = response["image_ids"][0]
    image = client.get(f"/api/v1/admin/images/{image_id}", headers=ADMIN).json()
    assert {o["status"] for o in image["analysis"]["vlm"].values()} == {"ok"}
    assert len(fake.log) == 2
    return image


def _reanalyze_all(data_dir, **env: str) -> int:
    """`image-tagger reanalyze --all` in a CLI process of its own; its job id."""
    dispose_engines()
    result = subprocess.run(
        [sys.executable, "-m", "image_tagger.cli", "reanalyze", "--all"],
        env=child_env(data_dir, COLUMNS="200", **env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return int(result.stdout.split("job ", 1)[1].split(":", 1)[0])


def test_reanalyze_all_without_a_provider_keeps_the_paid_ratings(
    data_dir, vlm_env, fake
):
    with app_client() as client:
        before = _rated_image(client, fake, jpeg_bytes(11))

    # A CLI process without any VLM setting analyses every image again.
    job_id = _reanalyze_all(data_dir)

    with app_client() as client:
        after = client.get(f"/api/v1/admin/images/{before['id']}", headers=ADMIN).json()
        job = client.get(f"/api/v1/admin/upload/jobs/{job_id}", headers=ADMIN).json()
        export = client.get(
            f"/api/v1/admin/upload/jobs/{job_id}/export?format=csv", headers=ADMIN
        )
    assert after["analysis"]["vlm"] == before["analysis"]["vlm"]
    note = job["items"][0]["note"]
    assert "VLM cognitive, patterns skipped: no VLM provider" in note
    assert "the earlier ok result was kept" in note
    (row,) = csv.DictReader(io.StringIO(export.text))
    assert float(row["vlm.cognitive.coherence"]) == fake.score
    assert len(fake.log) == 2  # nothing asked again


def test_reanalyze_all_with_the_provider_computes_metrics_again_but_asks_no_model(
    data_dir, vlm_env, fake
):
    with app_client() as client:
        before = _rated_image(client, fake, jpeg_bytes(12))

    # The same provider and model configured in the CLI process.
    vlm = {k: v for k, v in os.environ.items() if k.startswith("IMAGE_TAGGER_VLM_")}
    job_id = _reanalyze_all(data_dir, **vlm)

    with app_client() as client:
        after = client.get(f"/api/v1/admin/images/{before['id']}", headers=ADMIN).json()
        job = client.get(f"/api/v1/admin/upload/jobs/{job_id}", headers=ADMIN).json()
        costs = client.get("/api/v1/admin/costs", headers=ADMIN).json()
    assert job["status"] == "COMPLETED"
    assert job["items"][0]["status"] == "COMPLETED"
    # The metrics were computed again (the analysis row was rewritten) ...
    assert after["analysis"]["updated_at"] > before["analysis"]["updated_at"]
    assert after["analysis"]["metrics"] == before["analysis"]["metrics"]
    # ... and the paid ratings kept, with no new request and no new ledger row.
    assert after["analysis"]["vlm"] == before["analysis"]["vlm"]
    assert len(fake.log) == 2
    assert sum(day["calls"] for day in costs["by_day"]) == 2


def test_an_error_does_not_replace_a_stored_result_but_a_new_answer_does(
    data_dir, vlm_env, fake, monkeypatch
):
    photo = jpeg_bytes(12)
    with app_client() as client:
        before = _rated_image(client, fake, photo)
    with session_scope() as session:
        image = session.scalars(select(Image)).one()

    # Another model that fails: the stored results stay.
    fake.default_mode = "500"
    vlm_env(vlm_model="gpt-4o", vlm_max_attempts=1)
    with session_scope() as session:
        pipeline = SciencePipeline(
            config=SciencePipelineConfig(enable_all=True), db=session
        )
        analysis = pipeline.analyze(session.merge(image))
    assert analysis.vlm == before["analysis"]["vlm"]
    assert len(fake.log) == 4

    # Without a provider, from Python: the stored results stay.
    monkeypatch.delenv("IMAGE_TAGGER_VLM_MODEL")
    reset_settings()
    with session_scope() as session:
        pipeline = SciencePipeline(
            config=SciencePipelineConfig(enable_all=True), db=session
        )
        analysis = pipeline.analyze(session.merge(image))
    assert analysis.vlm == before["analysis"]["vlm"]

    # The other model answers: its results replace the stored ones.
    fake.default_mode = "ok"
    vlm_env(vlm_model="gpt-4o")
    with session_scope() as session:
        pipeline = SciencePipeline(
            config=SciencePipelineConfig(enable_all=True), db=session
        )
        analysis = pipeline.analyze(session.merge(image))
    assert {o["model"] for o in analysis.vlm.values()} == {"gpt-4o"}
    assert {o["status"] for o in analysis.vlm.values()} == {"ok"}
