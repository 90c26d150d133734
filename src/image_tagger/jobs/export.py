"""A job's results as a table: one row per item, one column per metric and VLM field.

Both the export endpoint and ``image-tagger export`` build the table here and
write it as CSV or Parquet. Each row is an item of the job (so each image of
the job once); a file rejected at upload has a row too, with its reason and
no image columns. Values come from the image's latest analysis.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from image_tagger.images.models import Image, ImageAnalysis
from image_tagger.jobs.models import UploadJobItem

ExportFormat = Literal["csv", "parquet"]

MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "parquet": "application/parquet"}

# Columns before the metrics, with their Arrow types.
FIXED_COLUMNS: dict[str, pa.DataType] = {
    "job_id": pa.int64(),
    "item_id": pa.int64(),
    "image_id": pa.int64(),
    "filename": pa.string(),
    "sha256": pa.string(),
    "size_bytes": pa.int64(),
    "format": pa.string(),
    "width": pa.int64(),
    "height": pa.int64(),
    "item_status": pa.string(),
    "error_message": pa.string(),
    "pipeline_version": pa.string(),
}


@dataclass
class ExportTable:
    columns: list[str]
    rows: list[dict[str, Any]]
    metric_columns: list[str]


def build_table(session: Session, job_id: int) -> ExportTable:
    """Every item of the job with its image and latest analysis, flattened."""
    items = session.execute(
        select(UploadJobItem, Image)
        .outerjoin(Image, Image.id == UploadJobItem.image_id)
        .where(UploadJobItem.job_id == job_id)
        .order_by(UploadJobItem.id)
    ).all()
    analyses = _latest_analyses(
        session, [image.id for _, image in items if image is not None]
    )

    rows: list[dict[str, Any]] = []
    metric_columns: dict[str, None] = {}
    vlm_columns: dict[str, None] = {}
    for item, image in items:
        analysis = analyses.get(image.id) if image is not None else None
        row = _fixed_values(job_id, item, image, analysis)
        if analysis is not None:
            for key, value in analysis.metrics.items():
                metric_columns.setdefault(key)
                row[key] = value
            for key, value in flatten_vlm(analysis.vlm or {}).items():
                vlm_columns.setdefault(key)
                row[key] = value
        rows.append(row)

    columns = [*FIXED_COLUMNS, *metric_columns, *vlm_columns]
    return ExportTable(columns=columns, rows=rows, metric_columns=list(metric_columns))


def _latest_analyses(
    session: Session, image_ids: list[int]
) -> dict[int, ImageAnalysis]:
    """Per image, its most recently written analysis."""
    latest: dict[int, ImageAnalysis] = {}
    for start in range(0, len(image_ids), 500):
        chunk = image_ids[start : start + 500]
        for analysis in session.scalars(
            select(ImageAnalysis)
            .where(ImageAnalysis.image_id.in_(chunk))
            .order_by(ImageAnalysis.updated_at, ImageAnalysis.id)
        ):
            latest[analysis.image_id] = analysis
    return latest


def _fixed_values(
    job_id: int,
    item: UploadJobItem,
    image: Image | None,
    analysis: ImageAnalysis | None,
) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "item_id": item.id,
        "image_id": item.image_id,
        "filename": item.filename,
        "sha256": image.sha256 if image else None,
        "size_bytes": image.size_bytes if image else None,
        "format": image.format if image else None,
        "width": image.width if image else None,
        "height": image.height if image else None,
        "item_status": item.status,
        "error_message": item.error_message,
        "pipeline_version": analysis.pipeline_version if analysis else None,
    }


def flatten_vlm(vlm: dict[str, Any]) -> dict[str, Any]:
    """VLM results as ``vlm.<analyzer>.<field>`` columns.

    Each analyzer's own fields (``status``, ``reason``, ``model``...) become
    columns, and its ``result`` is flattened below the analyzer's name:
    ``vlm.cognitive.coherence``; a result nested under the analyzer's own name
    is lifted, so ``patterns.result.patterns.prospect.presence`` becomes
    ``vlm.patterns.prospect.presence``. Lists are written as JSON text.
    """
    flat: dict[str, Any] = {}
    for analyzer, entry in vlm.items():
        prefix = f"vlm.{analyzer}"
        if not isinstance(entry, dict):
            flat[prefix] = _cell(entry)
            continue
        for key, value in entry.items():
            if key != "result":
                _flatten_into(flat, f"{prefix}.{key}", value)
        result = entry.get("result")
        if isinstance(result, dict) and set(result) == {analyzer}:
            result = result[analyzer]
        if isinstance(result, dict):
            for key, value in result.items():
                name = f"{prefix}.{key}"
                if name in flat:  # a result field named like a status field
                    name = f"{prefix}.result.{key}"
                _flatten_into(flat, name, value)
        elif result is not None:
            flat[f"{prefix}.result"] = _cell(result)
    return flat


def _flatten_into(flat: dict[str, Any], name: str, value: Any) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten_into(flat, f"{name}.{key}", inner)
    else:
        flat[name] = _cell(value)


def _cell(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return json.dumps(value, ensure_ascii=False)
    return value


def to_csv(table: ExportTable) -> bytes:
    """UTF-8 CSV with a header row; a missing value is an empty field."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=table.columns, lineterminator="\n")
    writer.writeheader()
    for row in table.rows:
        writer.writerow(row)
    return buffer.getvalue().encode("utf-8")


def to_parquet(table: ExportTable) -> bytes:
    """Parquet: integers and metrics typed, VLM fields as their values' type."""
    arrays = {}
    metrics = set(table.metric_columns)
    for column in table.columns:
        values = [row.get(column) for row in table.rows]
        if column in FIXED_COLUMNS:
            arrays[column] = pa.array(values, type=FIXED_COLUMNS[column])
        elif column in metrics:
            arrays[column] = pa.array(values, type=pa.float64())
        else:
            arrays[column] = _vlm_array(values)
    buffer = io.BytesIO()
    pq.write_table(pa.table(arrays), buffer)
    return buffer.getvalue()


def _vlm_array(values: list[Any]) -> pa.Array:
    """One type for the column: numbers as doubles, anything mixed as text."""
    present = [value for value in values if value is not None]
    if not present:
        return pa.array(values, type=pa.string())
    if all(isinstance(v, bool) for v in present):
        return pa.array(values, type=pa.bool_())
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return pa.array(values, type=pa.float64())
    return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def render(table: ExportTable, export_format: ExportFormat) -> bytes:
    return to_csv(table) if export_format == "csv" else to_parquet(table)
