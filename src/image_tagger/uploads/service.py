"""Turning staged files into stored images, one job and its items.

Both the HTTP endpoint and ``image-tagger ingest`` come through here. The
caller owns the session and commits; dispatch happens only after that commit.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from image_tagger.db import session_scope, utcnow
from image_tagger.images.models import Image
from image_tagger.jobs.models import ItemStatus, JobStatus, UploadJob, UploadJobItem
from image_tagger.jobs.service import finish_job_if_done, refresh_error_summary
from image_tagger.settings import Settings
from image_tagger.uploads.storage import StagedFile, store
from image_tagger.uploads.validation import (
    Inspection,
    Rejected,
    clean_filename,
    inspect_image,
)


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
    # A file uploaded before: how its latest earlier item ended (or stands).
    earlier: EarlierItem | None = None


@dataclass
class EarlierItem:
    """The latest item of an earlier job for the same image."""

    job_id: int
    status: str
    error_message: str | None


@dataclass
class CheckedFile:
    """A staged file after its checks: rejected, or stored with its header facts."""

    verdict: FileVerdict
    inspection: Inspection | None = None
    storage_path: str | None = None


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


def receive_upload(
    staged_files: list[StagedFile], *, settings: Settings, created_by: str | None
) -> UploadOutcome:
    """Check and store the staged files, then record them in one transaction.

    The upload's one unit of work, shared by the API and the CLI: slow checks
    first, then a short write transaction, committed before this returns (so
    the caller may dispatch the job). Staging files are gone afterwards.
    """
    try:
        checked = check_files(staged_files, settings=settings)
        with session_scope(write=True) as session:
            return create_upload(session, checked, created_by=created_by)
    finally:
        for staged in staged_files:
            staged.discard()


def check_files(
    staged_files: list[StagedFile], *, settings: Settings
) -> list[CheckedFile]:
    """Check every staged file and store the good ones by content; no database.

    This reads headers and moves files, which can be slow for hostile input,
    so it runs before the upload's write transaction begins.
    """
    checked: list[CheckedFile] = []
    first_in_batch: dict[str, str] = {}
    for staged in staged_files:
        checked.append(_check(staged, settings=settings, first_in_batch=first_in_batch))
    return checked


def _check(
    staged: StagedFile, *, settings: Settings, first_in_batch: dict[str, str]
) -> CheckedFile:
    filename = clean_filename(staged.filename)
    verdict = FileVerdict(
        filename=filename, status="rejected", size_bytes=staged.size_bytes
    )
    if staged.too_large:
        staged.discard()
        verdict.reason = (
            f"file is {_size(staged.size_bytes, settings.max_upload_bytes)}, set "
            "IMAGE_TAGGER_MAX_UPLOAD_BYTES to raise the limit"
        )
        return CheckedFile(verdict)

    verdict.sha256 = staged.sha256
    if staged.sha256 in first_in_batch:
        staged.discard()
        verdict.status = "duplicate"
        verdict.repeats_this_upload = True
        verdict.reason = (
            f"same bytes as {first_in_batch[staged.sha256]!r} in this upload"
        )
        return CheckedFile(verdict)

    try:
        inspection = inspect_image(staged.path, max_pixels=settings.max_image_pixels)
    except Rejected as exc:
        staged.discard()
        verdict.reason = str(exc)
        return CheckedFile(verdict)

    first_in_batch[staged.sha256] = filename
    path = store(staged, settings.images_dir, inspection.extension)
    verdict.status = "accepted"
    return CheckedFile(verdict, inspection, str(path.relative_to(settings.data_dir)))


def create_upload(
    session: Session,
    checked_files: list[CheckedFile],
    *,
    created_by: str | None = None,
) -> UploadOutcome:
    """Record checked files: their images, one job and an item per file; flush."""
    job = UploadJob(status=JobStatus.PENDING, created_by=created_by)
    session.add(job)
    session.flush()

    image_ids: dict[str, int] = {}
    for checked in checked_files:
        verdict = checked.verdict
        if checked.inspection is not None:
            _record_image(session, checked, image_ids, job_id=job.id)
        elif verdict.repeats_this_upload:
            verdict.image_id = image_ids.get(verdict.sha256)
        if not verdict.repeats_this_upload:
            session.add(_item_for(job, verdict))

    session.flush()
    _count_items(session, job)
    finish_job_if_done(session, job.id)
    session.refresh(job)
    return UploadOutcome(job=job, files=[checked.verdict for checked in checked_files])


def _record_image(
    session: Session, checked: CheckedFile, image_ids: dict[str, int], *, job_id: int
) -> None:
    verdict, inspection = checked.verdict, checked.inspection
    image, created = _get_or_create_image(
        session,
        sha256=verdict.sha256,
        filename=verdict.filename,
        format=inspection.format,
        media_type=inspection.media_type,
        size_bytes=verdict.size_bytes,
        width=inspection.width,
        height=inspection.height,
        storage_path=checked.storage_path,
    )
    image_ids[verdict.sha256] = image.id
    verdict.image_id = image.id
    if not created:
        verdict.status = "duplicate"
        verdict.reason = f"same bytes as image {image.id} uploaded before"
        verdict.earlier = _earlier_item(session, image.id, job_id=job_id)


def _earlier_item(
    session: Session, image_id: int, *, job_id: int
) -> EarlierItem | None:
    """How the image fared last time, so a re-upload of a failure says so."""
    row = session.execute(
        select(UploadJobItem.job_id, UploadJobItem.status, UploadJobItem.error_message)
        .where(UploadJobItem.image_id == image_id, UploadJobItem.job_id != job_id)
        .order_by(UploadJobItem.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return EarlierItem(
        job_id=row.job_id, status=str(row.status), error_message=row.error_message
    )


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
    """Counters of a new job: its items, and those rejected at upload."""
    items = session.scalars(
        select(UploadJobItem.status).where(UploadJobItem.job_id == job.id)
    ).all()
    job.total_items = len(items)
    job.failed_items = sum(status == ItemStatus.FAILED for status in items)
    session.flush()
    if job.failed_items:
        refresh_error_summary(session, job.id)


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


def _size(size_bytes: int, limit_bytes: int) -> str:
    """'file is 31.2 MB; the limit is 25.0 MB', exact where rounding would hide it."""
    size, limit = f"{size_bytes / 1e6:.1f} MB", f"{limit_bytes / 1e6:.1f} MB"
    if size == limit:
        size, limit = f"{size_bytes:,} bytes", f"{limit_bytes:,} bytes"
    return f"{size}; the limit is {limit}"
