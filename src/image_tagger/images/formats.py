"""The image formats the service accepts, by the name Pillow gives them."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image


@dataclass(frozen=True)
class FormatSpec:
    media_type: str
    extension: str


FORMATS: dict[str, FormatSpec] = {
    "JPEG": FormatSpec("image/jpeg", "jpg"),
    "MPO": FormatSpec("image/jpeg", "jpg"),
    "PNG": FormatSpec("image/png", "png"),
    "WEBP": FormatSpec("image/webp", "webp"),
    "HEIF": FormatSpec("image/heic", "heic"),
    "AVIF": FormatSpec("image/avif", "avif"),
    "GIF": FormatSpec("image/gif", "gif"),
    "TIFF": FormatSpec("image/tiff", "tif"),
    "BMP": FormatSpec("image/bmp", "bmp"),
}


def apply_pixel_limit(max_pixels: int) -> None:
    """Align Pillow's decompression-bomb guard with IMAGE_TAGGER_MAX_IMAGE_PIXELS.

    Pillow warns past its limit and refuses past twice it; the service checks
    the exact limit itself, so a raised setting is not undercut by Pillow's
    default of about 89 million pixels.
    """
    Image.MAX_IMAGE_PIXELS = max_pixels
