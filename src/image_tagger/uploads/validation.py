"""Deciding what a staged file is, from its bytes, before any pixel is decoded."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

from image_tagger.images.decode import (
    ImageDecodeError,
    ImageTooLargeError,
    open_image_header,
)
from image_tagger.images.formats import FORMATS, apply_pixel_limit

MAX_FILENAME_CHARS = 255


class Rejected(Exception):
    """A file that will not be stored; the message says why and what to do."""


@dataclass(frozen=True)
class Inspection:
    format: str
    media_type: str
    extension: str
    width: int
    height: int


def clean_filename(raw: str | None) -> str:
    """The client's file name as display data: no control characters, bounded."""
    text = "".join(
        "\ufffd" if unicodedata.category(ch) in ("Cc", "Cf") else ch
        for ch in (raw or "")
    ).strip()
    if not text:
        return "unnamed"
    if len(text) > MAX_FILENAME_CHARS:
        text = text[: MAX_FILENAME_CHARS - 1] + "\u2026"
    return text


def inspect_image(path: Path, *, max_pixels: int) -> Inspection:
    """Read only the header of ``path``: its real format and pixel count.

    Raises :class:`Rejected` for files that are not a supported image or whose
    pixel count is past ``max_pixels`` (decompression bombs).
    """
    if path.stat().st_size == 0:
        raise Rejected("file is empty")

    apply_pixel_limit(max_pixels)
    try:
        fmt, width, height = open_image_header(path, upright=True)
    except ImageTooLargeError as exc:
        raise Rejected(_too_many_pixels_message(None, max_pixels)) from exc
    except ImageDecodeError as exc:
        raise Rejected(str(exc)) from exc

    spec = FORMATS.get(fmt)
    if spec is None:
        raise Rejected(
            f"image format {fmt} is not supported; convert it to JPEG or PNG"
        )
    if width < 1 or height < 1:
        raise Rejected(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise Rejected(_too_many_pixels_message((width, height), max_pixels))

    return Inspection(fmt, spec.media_type, spec.extension, width, height)


def _too_many_pixels_message(size: tuple[int, int] | None, max_pixels: int) -> str:
    what = (
        f"{size[0]}x{size[1]} = {size[0] * size[1]:,} pixels"
        if size
        else ("far more pixels than allowed")
    )
    return (
        f"image has {what}; the limit is {max_pixels:,} pixels, "
        "set IMAGE_TAGGER_MAX_IMAGE_PIXELS to raise it"
    )
