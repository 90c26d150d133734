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
from sqlalchemy import select, update

from image_tagger.db import session_scope
from image_tagger.images.models import ImageAnalysis
from image_tagger.jobs.export import COLUMNS, flatten_vlm
from image_tagger.science.compute import METRIC_KEYS
from image_tagger.vlm.schemas import PATTERN_VOCABULARY, CognitiveRating

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


def test_flatten_vlm_gives_every_field_of_both_analyzers():
    flat = flatten_vlm(
        {
            "cognitive": {"status": "skipped", "reason": "budget reached"},
            "patterns": VLM["patterns"],
            "other": {"status": "ok", "result": {"x": 1}},
        }
    )

    assert list(flat) == [c for c in COLUMNS if c.startswith("vlm.")]
    assert flat["vlm.cognitive.status"] == "skipped"
    assert flat["vlm.cognitive.reason"] == "budget reached"
    assert flat["vlm.cognitive.model"] is None
    assert flat["vlm.cognitive.coherence"] is None
    assert flat["vlm.patterns.prospect.presence"] == 0.9
    assert flat["vlm.patterns.prospect.evidence"] == "wide view over the valley"
    assert flat["vlm.patterns.nook.confidence"] == 0.6
    assert flat["vlm.patterns.arcade.presence"] is None  # not in the answer
    assert not any(column.startswith("vlm.other") for column in flat)


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


def _documented_columns() -> list[str]:
    """The order the README gives: file columns, metrics, then each analyzer."""
    files = ["job_id", "item_id", "image_id", "filename", "sha256", "size_bytes"]
    files += ["format", "width", "height", "item_status", "error_message"]
    files += ["pipeline_version"]
    outcome = ("status", "reason", "model")
    cognitive = [f"vlm.cognitive.{name}" for name in outcome]
    cognitive += [f"vlm.cognitive.{name}" for name in CognitiveRating.model_fields]
    patterns = [f"vlm.patterns.{name}" for name in outcome]
    patterns += [
        f"vlm.patterns.{pattern}.{field}"
        for pattern in PATTERN_VOCABULARY
        for field in ("presence", "confidence", "evidence")
    ]
    return [*files, *METRIC_KEYS, *cognitive, *patterns]


def test_exports_of_different_jobs_have_the_same_columns_and_types(client):
    # One job whose first image has only a skipped cognitive analyzer and a
    # patterns answer; one with no VLM outcome at all.
    with_vlm, _photos, _images = _job_with_results(client)
    with session_scope(write=True) as session:
        session.execute(
            update(ImageAnalysis)
            .where(ImageAnalysis.image_id == with_vlm["image_ids"][0])
            .values(
                vlm={
                    "cognitive": {"status": "skipped", "reason": "budget reached"},
                    "patterns": VLM["patterns"],
                }
            )
        )
    plain = upload(client, [("c.jpg", jpeg_bytes(103))]).json()
    wait_for_job(client, plain["job_id"])
    with session_scope(write=True) as session:
        session.execute(
            update(ImageAnalysis)
            .where(ImageAnalysis.image_id == plain["image_ids"][0])
            .values(vlm={})
        )

    headers, schemas = [], []
    for job in (with_vlm, plain):
        url = f"{JOBS}/{job['job_id']}/export"
        text = client.get(f"{url}?format=csv", headers=ADMIN).text
        headers.append(next(csv.reader(io.StringIO(text))))
        parquet = client.get(f"{url}?format=parquet", headers=ADMIN).content
        schemas.append(pq.read_table(io.BytesIO(parquet)).schema)

    assert headers[0] == headers[1] == _documented_columns()
    assert len(headers[0]) == 12 + len(METRIC_KEYS) + 3 + 10 + 3 + 3 * 12
    assert schemas[0] == schemas[1]
    schema = schemas[0]
    assert schema.names == headers[0]
    assert schema.field("vlm.cognitive.coherence").type == pa.float64()
    assert schema.field("vlm.cognitive.status").type == pa.string()
    assert schema.field("vlm.patterns.arcade.evidence").type == pa.string()
    assert schema.field("color.hue_entropy_bits").type == pa.float64()
    first = next(
        csv.DictReader(
            io.StringIO(
                client.get(
                    f"{JOBS}/{with_vlm['job_id']}/export?format=csv", headers=ADMIN
                ).text
            )
        )
    )
    assert first["vlm.cognitive.status"] == "skipped"
    assert first["vlm.cognitive.coherence"] == ""
    assert float(first["vlm.patterns.prospect.presence"]) == 0.9


def test_csv_cells_that_a_spreadsheet_would_run_start_with_an_apostrophe(
    client, data_dir, tmp_path
):
    names = ["=IMPORTXML(CONCAT(A1),B1).jpg", "+1+2.jpg", "-3+4.jpg"]
    names += ["@SUM(A1).jpg", "plain=name.jpg"]
    files = [(name, jpeg_bytes(110 + n)) for n, name in enumerate(names)]
    body = upload(client, files).json()
    wait_for_job(client, body["job_id"])
    first = body["image_ids"][0]
    with session_scope(write=True) as session:
        analysis = session.scalars(
            select(ImageAnalysis).where(ImageAnalysis.image_id == first)
        ).one()
        analysis.metrics = {**analysis.metrics, "color.lightness_mean": -1.5}
        analysis.vlm = {
            "cognitive": {"status": "skipped", "reason": "\r=1+1 budget reached"},
            "patterns": {
                "status": "ok",
                "model": "-model",
                "result": {"patterns": {"prospect": {"evidence": "\t=2+2 a view"}}},
            },
        }
    url = f"{JOBS}/{body['job_id']}/export"

    response = client.get(f"{url}?format=csv", headers=ADMIN)
    command = subprocess.run(
        [sys.executable, "-m", "image_tagger.cli", "export", str(body["job_id"])]
        + ["--format", "csv", "-o", str(tmp_path / "out.csv")],
        env=child_env(data_dir),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    parquet = client.get(f"{url}?format=parquet", headers=ADMIN).content

    assert command.returncode == 0, command.stderr
    assert (tmp_path / "out.csv").read_bytes() == response.content
    rows = list(csv.DictReader(io.StringIO(response.text, newline="")))
    assert [row["filename"] for row in rows] == [
        "'=IMPORTXML(CONCAT(A1),B1).jpg",
        "'+1+2.jpg",
        "'-3+4.jpg",
        "'@SUM(A1).jpg",
        "plain=name.jpg",
    ]
    assert rows[0]["vlm.cognitive.reason"] == "'\r=1+1 budget reached"
    assert rows[0]["vlm.patterns.model"] == "'-model"
    assert rows[0]["vlm.patterns.prospect.evidence"] == "'\t=2+2 a view"
    assert rows[0]["color.lightness_mean"] == "-1.5"  # a number, left alone
    # Parquet is read by programs, not spreadsheets: the values as they are.
    kept = pq.read_table(io.BytesIO(parquet)).to_pylist()
    assert [row["filename"] for row in kept] == names
    assert kept[0]["vlm.cognitive.reason"] == "\r=1+1 budget reached"
    assert kept[0]["vlm.patterns.prospect.evidence"] == "\t=2+2 a view"
    assert kept[0]["color.lightness_mean"] == -1.5
