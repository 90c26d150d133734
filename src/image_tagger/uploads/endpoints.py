"""POST /api/v1/admin/upload: stream, check and store images, then dispatch a job."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Request, status
from starlette.concurrency import run_in_threadpool

from image_tagger.auth.dependencies import AdminPrincipal
from image_tagger.jobs.models import JobStatus
from image_tagger.settings import get_settings
from image_tagger.uploads.multipart import receive_files
from image_tagger.uploads.schemas import FileVerdictOut, UploadAccepted
from image_tagger.uploads.service import receive_upload

router = APIRouter(prefix="/api/v1/admin", tags=["uploads"])

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                        }
                    },
                }
            }
        },
    }
}


@router.post(
    "/upload",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=UploadAccepted,
    openapi_extra=UPLOAD_BODY,
)
async def upload(
    request: Request, background: BackgroundTasks, principal: AdminPrincipal
) -> UploadAccepted:
    """Upload images (multipart field `files`); one verdict per file, one job."""
    settings = get_settings()
    staged = await receive_files(
        request,
        tmp_dir=settings.tmp_dir,
        max_bytes=settings.max_upload_bytes,
        max_files=settings.max_files_per_upload,
    )
    outcome = await run_in_threadpool(
        receive_upload, staged, settings=settings, created_by=principal.name
    )
    if outcome.job.status == JobStatus.PENDING:
        background.add_task(request.app.state.backend.dispatch, outcome.job.id)
    return UploadAccepted(
        job_id=outcome.job.id,
        status=outcome.job.status,
        image_ids=outcome.image_ids,
        files=[
            FileVerdictOut.model_validate(verdict, from_attributes=True)
            for verdict in outcome.files
        ],
    )
