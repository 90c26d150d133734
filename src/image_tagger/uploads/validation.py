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
        # Shorten the middle, keeping a short extension: "aaaa….jpg".
        _stem, dot, suffix = text.rpartition(".")
        keep = f".{suffix}" if dot and 0 < len(suffix) <= 15 else ""
        if "/" in keep or "\\" in keep:
            keep = ""
        text = text[: MAX_FILENAME_CHARS - 1 - len(keep)] + "\u2026" + keep
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
        raise Rejected(
            _too_many_pixels_message(exc.pixels, max_pixels, exc.size)
        ) from exc
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
        raise Rejected(
            _too_many_pixels_message(width * height, max_pixels, (width, height))
        )

    return Inspection(fmt, spec.media_type, spec.extension, width, height)


def _too_many_pixels_message(
    pixels: int | None, max_pixels: int, size: tuple[int, int] | None = None
) -> str:
    if size is not None:
        what = f"{size[0]}x{size[1]} = {pixels:,} pixels"
    elif pixels is not None:
        what = f"{pixels:,} pixels"
    else:
        what = "far more pixels than allowed"
    return (
        f"image has {what}; the limit is {max_pixels:,} pixels, "
        "set IMAGE_TAGGER_MAX_IMAGE_PIXELS to raise it"
    )
