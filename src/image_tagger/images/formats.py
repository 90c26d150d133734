"""The image formats the service accepts, by the name Pillow gives them."""

from __future__ import annotations

from dataclasses import dataclass


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
