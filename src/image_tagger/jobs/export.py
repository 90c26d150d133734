"""A job's results as a table: one row per item, one column per metric and VLM field.

Both the export endpoint and ``image-tagger export`` build the table here and
write it as CSV or Parquet. Each row is an item of the job (so each image of
the job once); a file rejected at upload has a row too, with its reason and
no image columns. Values come from the image's latest analysis. The columns
(`COLUMNS`) and their types are fixed, whatever the job holds, so exports of
different jobs line up: the file columns, every metric key in `METRIC_KEYS`
order, then each VLM analyzer's status, reason, model and answer fields.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from image_tagger.images.models import Image, ImageAnalysis
from image_tagger.jobs.models import UploadJobItem
from image_tagger.science.compute import METRIC_KEYS
from image_tagger.vlm.schemas import PATTERN_VOCABULARY, CognitiveRating, PatternRating

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


#: The VLM analyzers exported, each with the fields of its answer in schema
#: order: cognitive ratings by name, patterns as ``<pattern>.<field>``.
VLM_FIELDS: dict[str, tuple[str, ...]] = {
    "cognitive": tuple(CognitiveRating.model_fields),
    "patterns": tuple(
        f"{pattern}.{field}"
        for pattern in PATTERN_VOCABULARY
        for field in PatternRating.model_fields
    ),
}
#: What every analyzer's outcome says besides its answer.
VLM_OUTCOME_FIELDS = ("status", "reason", "model")


def vlm_columns() -> dict[str, pa.DataType]:
    """``vlm.<analyzer>.<field>`` columns, in a fixed order, with their types."""
    columns: dict[str, pa.DataType] = {}
    for analyzer, fields in VLM_FIELDS.items():
        for field in VLM_OUTCOME_FIELDS:
            columns[f"vlm.{analyzer}.{field}"] = pa.string()
        for field in fields:
            text = field.endswith("evidence")
            columns[f"vlm.{analyzer}.{field}"] = pa.string() if text else pa.float64()
    return columns


#: Every column, in order: the same for every job, whatever its data.
COLUMNS: dict[str, pa.DataType] = {
    **FIXED_COLUMNS,
    **{key: pa.float64() for key in METRIC_KEYS},
    **vlm_columns(),
}


@dataclass
class ExportTable:
    columns: list[str]
    rows: list[dict[str, Any]]


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
    for item, image in items:
        analysis = analyses.get(image.id) if image is not None else None
        row = _fixed_values(job_id, item, image, analysis)
        if analysis is not None:
            row.update(
                {key: analysis.metrics.get(key) for key in METRIC_KEYS},
                **flatten_vlm(analysis.vlm or {}),
            )
        rows.append(row)

    return ExportTable(columns=list(COLUMNS), rows=rows)


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
    """An analysis's VLM outcomes as the ``vlm.<analyzer>.<field>`` columns.

    Every column of `VLM_FIELDS` is present: the analyzer's ``status``,
    ``reason`` and ``model``, then each field of its answer (``None`` when
    the analyzer gave no answer, or no value for that field). The patterns
    answer, stored as ``{"patterns": {name: {...}}}``, becomes
    ``vlm.patterns.<name>.<field>``. Anything else stored is left out.
    """
    flat: dict[str, Any] = {}
    for analyzer, fields in VLM_FIELDS.items():
        entry = vlm.get(analyzer)
        entry = entry if isinstance(entry, dict) else {}
        for field in VLM_OUTCOME_FIELDS:
            flat[f"vlm.{analyzer}.{field}"] = _text(entry.get(field))
        result = entry.get("result")
        if isinstance(result, dict) and set(result) == {analyzer}:
            result = result[analyzer]
        for field in fields:
            flat[f"vlm.{analyzer}.{field}"] = _lookup(result, field)
    return flat


def _lookup(result: Any, dotted: str) -> Any:
    value = result
    for key in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    if isinstance(value, bool | dict | list):
        return None
    return value


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


#: What makes a spreadsheet read a cell as a formula, when a text starts with it.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell that a spreadsheet shows as text: a text that
    starts like a formula (a file name is the uploader's to choose) gets a
    leading apostrophe. Numbers, negative ones too, are left as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def to_csv(table: ExportTable) -> bytes:
    """UTF-8 CSV (RFC 4180) with a header row; a missing value is an empty
    field, and a text that a spreadsheet would run as a formula starts with
    ``'``. Rows end with CRLF, so that a text holding a carriage return is
    quoted, as one holding a line feed is, and stays in its cell."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=table.columns, lineterminator="\r\n")
    writer.writeheader()
    for row in table.rows:
        writer.writerow({column: csv_cell(value) for column, value in row.items()})
    return buffer.getvalue().encode("utf-8")


def to_parquet(table: ExportTable) -> bytes:
    """Parquet with the types of `COLUMNS`, the same for every job."""
    arrays = {
        column: pa.array(
            [_typed(row.get(column), COLUMNS[column]) for row in table.rows],
            type=COLUMNS[column],
        )
        for column in table.columns
    }
    buffer = io.BytesIO()
    pq.write_table(pa.table(arrays), buffer)
    return buffer.getvalue()


def _typed(value: Any, kind: pa.DataType) -> Any:
    """A value as its column's type: a model's text where a number belongs is
    left out rather than failing the export."""
    if value is None:
        return None
    if kind == pa.float64():
        return float(value) if isinstance(value, int | float) else None
    if kind == pa.string():
        return str(value)
    return value


def render(table: ExportTable, export_format: ExportFormat) -> bytes:
    return to_csv(table) if export_format == "csv" else to_parquet(table)
