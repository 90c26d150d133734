"""The image endpoints: metadata with the latest analysis, the file, a thumbnail."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse
from sqlalchemy import select

from image_tagger.auth.dependencies import AdminPrincipal
from image_tagger.db import session_scope
from image_tagger.http import RowId
from image_tagger.images.decode import DAMAGED_FILE_ADVICE
from image_tagger.images.models import Image, ImageAnalysis
from image_tagger.images.schemas import AnalysisOut, ImageOut
from image_tagger.images.thumbnails import thumbnail_path
from image_tagger.jobs.models import ItemStatus, UploadJobItem
from image_tagger.settings import get_settings

router = APIRouter(prefix="/api/v1/admin/images", tags=["images"])

# Stored files are data, never a page: no sniffing, no scripts, no framing.
FILE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, max-age=3600",
}


def _load(image_id: int) -> tuple[Image, ImageAnalysis | None]:
    with session_scope() as session:
        image = session.get(Image, image_id)
        if image is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, detail=f"no image {image_id}"
            )
        analysis = session.scalar(
            select(ImageAnalysis)
            .where(ImageAnalysis.image_id == image_id)
            .order_by(ImageAnalysis.updated_at.desc(), ImageAnalysis.id.desc())
            .limit(1)
        )
        return image, analysis


@router.get("/{image_id}", response_model=ImageOut)
def get_image(image_id: RowId, _: AdminPrincipal) -> ImageOut:
    """The image's metadata and its latest analysis (metrics, VLM, version)."""
    image, analysis = _load(image_id)
    return ImageOut(
        id=image.id,
        filename=image.filename,
        sha256=image.sha256,
        format=image.format,
        media_type=image.media_type,
        size_bytes=image.size_bytes,
        width=image.width,
        height=image.height,
        created_at=image.created_at,
        analysis=None
        if analysis is None
        else AnalysisOut(
            pipeline_version=analysis.pipeline_version,
            parameters=analysis.parameters,
            metrics=analysis.metrics,
            metric_notes=analysis.metric_notes or {},
            vlm=analysis.vlm or {},
            seconds=analysis.seconds,
            updated_at=analysis.updated_at,
        ),
    )


@router.get("/{image_id}/file", response_class=FileResponse)
def get_image_file(image_id: RowId, _: AdminPrincipal) -> FileResponse:
    """The stored file, as uploaded, with its image content type."""
    image, _analysis = _load(image_id)
    path = get_settings().data_dir / image.storage_path
    if not path.is_file():
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail="the stored file is missing"
        )
    return FileResponse(
        path,
        media_type=image.media_type,
        headers=FILE_HEADERS,
        filename=image.filename,
        content_disposition_type="inline",
    )


@router.get(
    "/{image_id}/thumbnail",
    response_class=FileResponse,
    responses={
        404: {"description": "no such image, or not analysed yet"},
        409: {"description": "the image's analysis failed: it has no thumbnail"},
    },
)
def get_image_thumbnail(image_id: RowId, _: AdminPrincipal) -> FileResponse:
    """A JPEG of at most 256 px, made when the image is analysed; 404 until
    then, 409 with the reason when its analysis failed."""
    image, analysis = _load(image_id)
    thumb = thumbnail_path(get_settings().data_dir, image.sha256)
    if not thumb.is_file():
        raise _no_thumbnail(image_id, analysis)
    return FileResponse(thumb, media_type="image/jpeg", headers=FILE_HEADERS)


def _no_thumbnail(image_id: int, analysis: ImageAnalysis | None) -> HTTPException:
    """Why an image has no thumbnail, from its analysis and its latest item."""
    if analysis is not None:
        return HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail="the thumbnail file is missing from the data directory; "
            "uploading the image again makes it anew",
        )
    with session_scope() as session:
        item = session.scalar(
            select(UploadJobItem)
            .where(UploadJobItem.image_id == image_id)
            .order_by(UploadJobItem.id.desc())
            .limit(1)
        )
        if item is not None and item.status == ItemStatus.FAILED:
            return HTTPException(
                status.HTTP_409_CONFLICT,
                detail=f"no thumbnail: the analysis of this image failed: "
                f"{item.error_message}{_after_failure(item)}",
            )
        state = f" (item {item.id} is {item.status})" if item is not None else ""
    return HTTPException(
        status.HTTP_404_NOT_FOUND,
        detail=f"no thumbnail yet: it is made when the image is analysed{state}",
    )


def _after_failure(item: UploadJobItem) -> str:
    """What to do about a failed analysis, unless its reason says it already."""
    if item.error_message and DAMAGED_FILE_ADVICE in item.error_message:
        return ""
    return (
        ". Fix the cause, then retry its job's failed items "
        f"(POST /api/v1/admin/upload/jobs/{item.job_id}/retry)"
    )
