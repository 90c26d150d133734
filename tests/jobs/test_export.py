"""Exporting a job's results as CSV and Parquet, read back and checked."""

from __future__ import annotations

import csv
import hashlib
import io
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
from helpers import (
    ADMIN,
    ROOT,
    STABLE_KEYS,
    child_env,
    jpeg_bytes,
    upload,
    wait_for_job,
)
from sqlalchemy import update

from image_tagger.db import session_scope
from image_tagger.images.models import ImageAnalysis
from image_tagger.jobs.export import flatten_vlm

JOBS = "/api/v1/admin/upload/jobs"

# The shape the VLM analyzers store in image_analyses.vlm.
VLM = {
    "cognitive": {
        "status": "ok",
        "reason": None,
        "model": "vision-1",
        "result": {"coherence": 0.8, "mystery": 0.25, "scary": 0.0},
    },
    "patterns": {
        "status": "ok",
        "reason": None,
        "model": "vision-1",
        "result": {
            "patterns": {
                "prospect": {
                    "presence": 0.9,
                    "confidence": 0.7,
                    "evidence": "wide view over the valley",
                },
                "nook": {"presence": 0.0, "confidence": 0.6, "evidence": ""},
            }
        },
    },
}


def test_flatten_vlm_names_every_field_under_its_analyzer():
    flat = flatten_vlm(
        {
            **VLM,
            "skipped": {"status": "skipped", "reason": "no provider configured"},
            "odd": {"status": "ok", "result": {"status": 1, "tags": ["a", "b"]}},
        }
    )

    assert flat["vlm.cognitive.status"] == "ok"
    assert flat["vlm.cognitive.model"] == "vision-1"
    assert flat["vlm.cognitive.reason"] is None
    assert flat["vlm.cognitive.coherence"] == 0.8
    assert flat["vlm.patterns.prospect.presence"] == 0.9
    assert flat["vlm.patterns.prospect.evidence"] == "wide view over the valley"
    assert flat["vlm.patterns.nook.confidence"] == 0.6
    assert flat["vlm.skipped.reason"] == "no provider configured"
    # A result field named like a status field keeps both; lists become JSON.
    assert flat["vlm.odd.status"] == "ok"
    assert flat["vlm.odd.result.status"] == 1
    assert flat["vlm.odd.tags"] == '["a", "b"]'


def _job_with_results(client) -> tuple[dict, dict[str, bytes], dict[int, dict]]:
    photos = {"a.jpg": jpeg_bytes(100), "b.jpg": jpeg_bytes(101)}
    files = [*photos.items(), ("junk.jpg", b"not an image")]
    body = upload(client, files).json()
    wait_for_job(client, body["job_id"])
    with session_scope(write=True) as session:
        session.execute(
            update(ImageAnalysis)
            .where(ImageAnalysis.image_id == body["image_ids"][0])
            .values(vlm=VLM)
        )
    images = {
        image_id: client.get(f"/api/v1/admin/images/{image_id}", headers=ADMIN).json()
        for image_id in body["image_ids"]
    }
    return body, photos, images


def _check_rows(rows: list[dict], photos: dict, images: dict, *, empty) -> None:
    """Rows as read back; ``empty`` is how the format writes a missing value."""
    assert [row["filename"] for row in rows] == ["a.jpg", "b.jpg", "junk.jpg"]
    for row in rows[:2]:
        image = images[int(row["image_id"])]
        data = photos[row["filename"]]
        assert row["sha256"] == hashlib.sha256(data).hexdigest() == image["sha256"]
        assert int(row["size_bytes"]) == len(data)
        assert row["item_status"] == "COMPLETED"
        assert row["pipeline_version"] == image["analysis"]["pipeline_version"]
        metrics = image["analysis"]["metrics"]
        assert set(row) >= STABLE_KEYS
        for key, value in metrics.items():
            if value is None:
                assert row[key] == empty
            else:
                assert float(row[key]) == value, key

    with_vlm, without_vlm, rejected = rows
    assert float(with_vlm["vlm.cognitive.coherence"]) == 0.8
    assert with_vlm["vlm.cognitive.status"] == "ok"
    assert float(with_vlm["vlm.patterns.prospect.presence"]) == 0.9
    assert with_vlm["vlm.patterns.prospect.evidence"] == "wide view over the valley"
    assert without_vlm["vlm.cognitive.coherence"] == empty
    assert rejected["item_status"] == "FAILED"
    assert rejected["error_message"].startswith("rejected:")
    assert rejected["sha256"] == empty
    assert rejected["fractal.dimension"] == empty


def test_export_as_csv_has_a_row_per_image_with_every_metric(client):
    body, photos, images = _job_with_results(client)

    response = client.get(f"{JOBS}/{body['job_id']}/export?format=csv", headers=ADMIN)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert f"job-{body['job_id']}.csv" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    _check_rows(rows, photos, images, empty="")


def test_export_as_parquet_has_typed_columns(client):
    body, photos, images = _job_with_results(client)

    response = client.get(
        f"{JOBS}/{body['job_id']}/export?format=parquet", headers=ADMIN
    )

    assert response.status_code == 200
    table = pq.read_table(io.BytesIO(response.content))
    assert table.schema.field("fractal.dimension").type == pa.float64()
    assert table.schema.field("size_bytes").type == pa.int64()
    assert table.schema.field("vlm.patterns.prospect.presence").type == pa.float64()
    _check_rows(table.to_pylist(), photos, images, empty=None)


def test_export_refuses_unknown_formats_and_jobs(client):
    body = upload(client, [("a.jpg", jpeg_bytes(102))]).json()
    url = f"{JOBS}/{body['job_id']}/export"

    assert client.get(f"{url}?format=xlsx", headers=ADMIN).status_code == 422
    assert client.get(f"{JOBS}/999/export", headers=ADMIN).status_code == 404
    assert client.get(url).status_code == 401


def test_export_command_writes_both_formats(client, data_dir, tmp_path):
    body, photos, images = _job_with_results(client)
    job_id = str(body["job_id"])
    env = child_env(data_dir)

    for export_format in ("csv", "parquet"):
        target = tmp_path / f"out.{export_format}"
        result = subprocess.run(
            [sys.executable, "-m", "image_tagger.cli", "export", job_id]
            + ["--format", export_format, "-o", str(target)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert "3 rows" in result.stdout
        if export_format == "csv":
            rows = list(csv.DictReader(io.StringIO(target.read_text())))
            _check_rows(rows, photos, images, empty="")
        else:
            _check_rows(pq.read_table(target).to_pylist(), photos, images, empty=None)
