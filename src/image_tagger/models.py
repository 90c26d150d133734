"""Every table, imported in one place so the metadata is complete."""

from image_tagger.auth.models import ApiToken
from image_tagger.db import Base
from image_tagger.images.models import Image, ImageAnalysis
from image_tagger.jobs.models import UploadJob, UploadJobItem
from image_tagger.vlm.models import ToolUsage

__all__ = [
    "ApiToken",
    "Base",
    "Image",
    "ImageAnalysis",
    "ToolUsage",
    "UploadJob",
    "UploadJobItem",
]
