"""Turning staged files into stored images, one job and its items.

Both the HTTP endpoint and ``image-tagger ingest`` come through here. The
caller owns the session and commits; dispatch happens only after that commit.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from image_tagger.db import utcnow
from image_tagger.images.models import Image
from image_tagger.jobs.models import ItemStatus, JobStatus, UploadJob, UploadJobItem
from image_tagger.jobs.service import finish_job_if_done
from image_tagger.settings import Settings
from image_tagger.uploads.storage import StagedFile, store
from image_tagger.uploads.validation import Rejected, clean_filename, inspect_image


@dataclass
class FileVerdict:
    filename: str
    status: str  # accepted | duplicate | rejected
    reason: str | None = None
    image_id: int | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    # A repeat of a file earlier in the same upload gets no item of its own.
    repeats_this_upload: bool = False


@dataclass
class UploadOutcome:
    job: UploadJob
    files: list[FileVerdict]

    @property
    def image_ids(self) -> list[int]:
        seen: dict[int, None] = {}
        for verdict in self.files:
            if verdict.image_id is not None:
                seen.setdefault(verdict.image_id)
        return list(seen)


def create_upload(
    session: Session,
    staged_files: list[StagedFile],
    *,
    settings: Settings,
    created_by: str | None = None,
) -> UploadOutcome:
    """Store each staged file, record one job with an item per file, flush."""
    job = UploadJob(status=JobStatus.PENDING, created_by=created_by)
    session.add(job)
    session.flush()

    verdicts: list[FileVerdict] = []
    first_in_batch: dict[str, str] = {}
    for staged in staged_files:
        verdict = _admit(
            session, staged, settings=settings, first_in_batch=first_in_batch
        )
        verdicts.append(verdict)
        if not verdict.repeats_this_upload:
            session.add(_item_for(job, verdict))

    session.flush()
    _count_items(session, job)
    finish_job_if_done(session, job.id)
    return UploadOutcome(job=job, files=verdicts)


def _admit(
    session: Session,
    staged: StagedFile,
    *,
    settings: Settings,
    first_in_batch: dict[str, str],
) -> FileVerdict:
    filename = clean_filename(staged.filename)
    verdict = FileVerdict(
        filename=filename, status="rejected", size_bytes=staged.size_bytes
    )
    if staged.too_large:
        staged.discard()
        verdict.reason = (
            f"file is {_mb(staged.size_bytes)}; the limit is "
            f"{_mb(settings.max_upload_bytes)}, set IMAGE_TAGGER_MAX_UPLOAD_BYTES "
            "to raise it"
        )
        return verdict

    verdict.sha256 = staged.sha256
    if staged.sha256 in first_in_batch:
        staged.discard()
        image = _image_by_sha(session, staged.sha256)
        verdict.status = "duplicate"
        verdict.repeats_this_upload = True
        verdict.image_id = image.id if image else None
        verdict.reason = (
            f"same bytes as {first_in_batch[staged.sha256]!r} in this upload"
        )
        return verdict

    try:
        inspection = inspect_image(staged.path, max_pixels=settings.max_image_pixels)
    except Rejected as exc:
        staged.discard()
        verdict.reason = str(exc)
        return verdict

    first_in_batch[staged.sha256] = filename
    path = store(staged, settings.images_dir, inspection.extension)
    image, created = _get_or_create_image(
        session,
        sha256=staged.sha256,
        filename=filename,
        format=inspection.format,
        media_type=inspection.media_type,
        size_bytes=staged.size_bytes,
        width=inspection.width,
        height=inspection.height,
        storage_path=str(path.relative_to(settings.data_dir)),
    )
    verdict.image_id = image.id
    if created:
        verdict.status = "accepted"
    else:
        verdict.status = "duplicate"
        verdict.reason = f"same bytes as image {image.id} uploaded before"
    return verdict


def _item_for(job: UploadJob, verdict: FileVerdict) -> UploadJobItem:
    if verdict.status == "rejected":
        return UploadJobItem(
            job_id=job.id,
            image_id=None,
            filename=verdict.filename,
            status=ItemStatus.FAILED,
            error_message=f"rejected: {verdict.reason}",
            finished_at=utcnow(),
        )
    return UploadJobItem(
        job_id=job.id, image_id=verdict.image_id, filename=verdict.filename
    )


def _count_items(session: Session, job: UploadJob) -> None:
    items = session.scalars(
        select(UploadJobItem).where(UploadJobItem.job_id == job.id)
    ).all()
    job.total_items = len(items)
    job.failed_items = sum(item.status == ItemStatus.FAILED for item in items)
    if job.failed_items:
        job.error_summary = _rejection_summary(items)
    session.flush()


def _rejection_summary(items: list[UploadJobItem]) -> str:
    failed = [item for item in items if item.status == ItemStatus.FAILED]
    first = failed[0]
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    return f"{first.filename}: {first.error_message}{more}"


def _image_by_sha(session: Session, sha256: str) -> Image | None:
    return session.scalar(select(Image).where(Image.sha256 == sha256))


def _get_or_create_image(
    session: Session, *, sha256: str, **fields
) -> tuple[Image, bool]:
    """The Image for these bytes, creating it if new; safe against a racing upload."""
    existing = _image_by_sha(session, sha256)
    if existing is not None:
        return existing, False

    if session.get_bind().dialect.name == "postgresql":
        statement = (
            pg_insert(Image)
            .values(sha256=sha256, created_at=utcnow(), **fields)
            .on_conflict_do_nothing(index_elements=["sha256"])
            .returning(Image.id)
        )
        new_id = session.scalar(statement)
        image = _image_by_sha(session, sha256)
        return image, new_id is not None

    # SQLite: this session holds the write lock (BEGIN IMMEDIATE), so no race.
    image = Image(sha256=sha256, **fields)
    session.add(image)
    session.flush()
    return image, True


def _mb(size_bytes: int) -> str:
    return f"{size_bytes / 1_000_000:.1f} MB"
