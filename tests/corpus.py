"""A corpus of hostile and unusual uploads, generated here, with each one's fate.

Every case is made in memory with Pillow or by hand (no binary blobs), so the
expected outcome is known: rejected at upload with a reason, or accepted and
then analysed to ``COMPLETED`` (sometimes with a known metric value) or
``FAILED`` with a reason.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field

from helpers import jpeg_bytes
from PIL import Image

import image_tagger.images.decode  # noqa: F401  (registers the HEIF opener)

RED_RGB = (220, 30, 30)


@dataclass
class Case:
    """One upload and what must become of it."""

    name: str  # what the case is about
    filename: bytes | str  # as sent in the multipart header (bytes: raw)
    content: bytes
    verdict: str  # accepted | duplicate | rejected
    reason: tuple[str, ...] = ()  # substrings of the verdict's reason
    item: str | None = None  # final item status; None: no item of its own
    item_error: tuple[str, ...] = ()  # substrings of the item's error
    kept_name: str | None = None  # the filename the service must report
    metrics: dict[str, tuple[float, float]] = field(default_factory=dict)
    upright_size: tuple[int, int] | None = None
    format: str | None = None


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + data))
    return struct.pack(">I", len(data)) + kind + data + crc


def png_bomb(width: int, height: int) -> bytes:
    """A real, complete grey PNG of zeros: tiny on disk, huge once decoded."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte, then the pixels
    parts = [compressor.compress(row) for _ in range(height)]
    data = b"".join(parts) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", data)
        + _png_chunk(b"IEND", b"")
    )


def png_forged_header(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` and holds no pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\0"))
    )


def jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with its frame header patched to claim another size."""
    position = 2
    while jpeg[position + 1] not in (0xC0, 0xC2):
        position += 2 + int.from_bytes(jpeg[position + 2 : position + 4], "big")
    size = struct.pack(">HH", height, width)
    return jpeg[: position + 5] + size + jpeg[position + 9 :]


def without_segment(jpeg: bytes, *, marker: int) -> bytes:
    position = 2
    while jpeg[position + 1] != 0xDA:
        length = int.from_bytes(jpeg[position + 2 : position + 4], "big")
        if jpeg[position + 1] == marker:
            return jpeg[:position] + jpeg[position + 2 + length :]
        position += 2 + length
    raise AssertionError("segment not found")


def noise_png(size: tuple[int, int], seed: int) -> bytes:
    import numpy as np

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), "PNG", compress_level=1)


def animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (48, 32), RED_RGB), Image.new("RGB", (48, 32), "blue")]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=90)


# Red pixels only: every chromatic pixel is warm (a wrong conversion to cyan
# or blue would make none warm).
ALL_WARM = {"color.warm_fraction": (0.99, 1.0)}


def corpus() -> list[Case]:
    """Every class of bad or unusual input, each with its expected outcome."""
    photo = jpeg_bytes(101, size=(480, 360))
    pixels_limit = ("IMAGE_TAGGER_MAX_IMAGE_PIXELS", "the limit is 100,000,000 pixels")
    rotated_exif = Image.Exif()
    rotated_exif[0x0112] = 6
    cmyk_red = Image.new("CMYK", (64, 48), (0, 255, 255, 0))
    # Pillow stores CMYK inverted (Adobe); saving inverted red and dropping the
    # APP14 marker leaves a plain (non-Adobe) CMYK JPEG of red.
    cmyk_plain = without_segment(
        encode(Image.new("CMYK", (64, 48), (255, 0, 0, 255)), "JPEG"), marker=0xEE
    )
    palette = Image.new("RGB", (64, 48), RED_RGB).convert("P")
    grey16 = Image.new("I;16", (64, 48), 32768)
    transparent = Image.new("RGBA", (64, 48), (0, 0, 0, 0))
    not_image = ("not an image",)
    truncated = ("truncated or corrupt",)

    return [
        Case("good photo", "photo.jpg", photo, "accepted", item="COMPLETED"),
        Case(
            "good photo 2", "photo2.jpg", jpeg_bytes(102), "accepted", item="COMPLETED"
        ),
        Case("empty", "empty.jpg", b"", "rejected", ("file is empty",), "FAILED"),
        Case(
            "only a signature",
            "cut.jpg",
            b"\xff\xd8\xff",
            "rejected",
            not_image,
            "FAILED",
        ),
        Case(
            "truncated jpeg",
            "half.jpg",
            jpeg_bytes(103)[:3000],
            "accepted",
            item="FAILED",
            item_error=truncated,
        ),
        Case(
            "truncated png",
            "half.png",
            noise_png((200, 150), 1)[:20000],
            "accepted",
            item="FAILED",
            item_error=truncated,
        ),
        Case(
            "text named .jpg",
            "notes.jpg",
            b"plain text\n" * 20,
            "rejected",
            not_image,
            "FAILED",
        ),
        Case(
            "random bytes named .png",
            "noise.png",
            bytes(range(256)) * 8,
            "rejected",
            not_image,
            "FAILED",
        ),
        Case(
            "png named .txt",
            "picture.txt",
            encode(palette, "PNG"),
            "accepted",
            item="COMPLETED",
            format="PNG",
        ),
        Case(
            "jpeg named .png",
            "photo.png",
            jpeg_bytes(104),
            "accepted",
            item="COMPLETED",
            format="JPEG",
        ),
        Case(
            "svg named .png",
            "drawing.png",
            b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
            "rejected",
            not_image,
            "FAILED",
        ),
        Case(
            "html named .jpg",
            "page.jpg",
            b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>",
            "rejected",
            not_image,
            "FAILED",
        ),
        Case(
            "pdf named .jpg",
            "paper.jpg",
            b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n",
            "rejected",
            not_image,
            "FAILED",
        ),
        Case(
            "an image format the service does not take",
            "icon.png",
            encode(Image.new("RGB", (16, 16), RED_RGB), "ICO"),
            "rejected",
            ("image format ICO is not supported", "convert it to JPEG or PNG"),
            "FAILED",
        ),
        Case(
            "gif with html appended",
            "polyglot.gif",
            encode(Image.new("RGB", (16, 16), RED_RGB), "GIF")
            + b"<html><script>alert(1)</script></html>",
            "accepted",
            item="COMPLETED",
            format="GIF",
        ),
        Case(
            "png bomb past the pixel limit",
            "bomb.png",
            png_bomb(12_000, 10_000),
            "rejected",
            ("12000x10000 = 120,000,000 pixels", *pixels_limit),
            "FAILED",
        ),
        Case(
            "forged png header",
            "forged.png",
            png_forged_header(100_000, 100_000),
            "rejected",
            ("100000x100000 = 10,000,000,000 pixels", *pixels_limit),
            "FAILED",
        ),
        Case(
            "forged jpeg header",
            "forged.jpg",
            jpeg_with_size(jpeg_bytes(105), 65_000, 65_000),
            "rejected",
            ("65000x65000 = 4,225,000,000 pixels", *pixels_limit),
            "FAILED",
        ),
        Case(
            "1x1",
            "dot.png",
            encode(Image.new("RGB", (1, 1), RED_RGB), "PNG"),
            "accepted",
            item="COMPLETED",
            upright_size=(1, 1),
        ),
        Case(
            "elongated",
            "strip.png",
            encode(Image.new("RGB", (20_000, 2), RED_RGB), "PNG"),
            "accepted",
            item="COMPLETED",
            upright_size=(20_000, 2),
        ),
        Case(
            "tall",
            "column.png",
            encode(Image.new("L", (3, 30_000), 90), "PNG"),
            "accepted",
            item="COMPLETED",
            upright_size=(3, 30_000),
        ),
        Case(
            "cmyk adobe (inverted) jpeg",
            "cmyk.jpg",
            encode(cmyk_red, "JPEG"),
            "accepted",
            item="COMPLETED",
            metrics=ALL_WARM,
        ),
        Case(
            "cmyk plain jpeg",
            "cmyk_plain.jpg",
            cmyk_plain,
            "accepted",
            item="COMPLETED",
            metrics=ALL_WARM,
        ),
        Case(
            "16-bit png",
            "grey16.png",
            encode(grey16, "PNG"),
            "accepted",
            item="COMPLETED",
            metrics={"color.lightness_mean": (52.0, 55.5)},
        ),
        Case(
            "palette png",
            "palette.png",
            encode(noise_image_palette(), "PNG"),
            "accepted",
            item="COMPLETED",
        ),
        Case(
            "transparent png",
            "alpha.png",
            encode(transparent, "PNG"),
            "accepted",
            item="COMPLETED",
            metrics={"color.lightness_mean": (99.0, 100.0)},
        ),
        Case(
            "greyscale png",
            "grey.png",
            encode(Image.linear_gradient("L").resize((96, 64)), "PNG"),
            "accepted",
            item="COMPLETED",
            metrics={"color.chroma_mean": (0.0, 0.5)},
        ),
        Case(
            "exif-rotated jpeg",
            "rotated.jpg",
            encode(
                Image.new("RGB", (400, 250), (90, 120, 200)), "JPEG", exif=rotated_exif
            ),
            "accepted",
            item="COMPLETED",
            upright_size=(250, 400),
        ),
        Case(
            "progressive jpeg",
            "progressive.jpg",
            encode(Image.open(io.BytesIO(jpeg_bytes(106))), "JPEG", progressive=True),
            "accepted",
            item="COMPLETED",
        ),
        Case(
            "animated gif",
            "anim.gif",
            animated("GIF"),
            "accepted",
            item="COMPLETED",
            format="GIF",
            metrics=ALL_WARM,
        ),
        Case(
            "animated webp",
            "anim.webp",
            animated("WEBP"),
            "accepted",
            item="COMPLETED",
            format="WEBP",
            metrics=ALL_WARM,
        ),
        Case(
            "heic",
            "phone.heic",
            encode(Image.new("RGB", (64, 48), RED_RGB), "HEIF", quality=90),
            "accepted",
            item="COMPLETED",
            format="HEIF",
            metrics=ALL_WARM,
        ),
        Case(
            "avif",
            "phone.avif",
            encode(Image.new("RGB", (64, 48), RED_RGB), "AVIF", quality=90),
            "accepted",
            item="COMPLETED",
            format="AVIF",
            metrics=ALL_WARM,
        ),
        Case(
            "path separators",
            "../../../../outside/evil.jpg",
            jpeg_bytes(107),
            "accepted",
            item="COMPLETED",
            kept_name="../../../../outside/evil.jpg",
        ),
        Case(
            "backslashes",
            "..\\..\\windows\\evil2.jpg",
            jpeg_bytes(108),
            "accepted",
            item="COMPLETED",
            kept_name="..\\..\\windows\\evil2.jpg",
        ),
        Case(
            "absolute path",
            "/tmp/evil3.jpg",
            jpeg_bytes(109),
            "accepted",
            item="COMPLETED",
            kept_name="/tmp/evil3.jpg",
        ),
        Case(
            "control characters",
            "bell\x07esc\x1b[31mred\x7f.jpg",
            jpeg_bytes(110),
            "accepted",
            item="COMPLETED",
            kept_name="bell\ufffdesc\ufffd[31mred\ufffd.jpg",
        ),
        Case(
            "unicode",
            "Дом 東京 café 🏠.jpg",
            jpeg_bytes(111),
            "accepted",
            item="COMPLETED",
            kept_name="Дом 東京 café 🏠.jpg",
        ),
        Case(
            "300 characters",
            "a" * 296 + ".jpg",
            jpeg_bytes(112),
            "accepted",
            item="COMPLETED",
            kept_name="a" * 250 + "\u2026.jpg",
        ),
        Case(
            "same bytes again in this upload",
            "photo-copy.jpg",
            photo,
            "duplicate",
            ("same bytes as 'photo.jpg' in this upload",),
        ),
        Case(
            "over the size limit",
            "huge.png",
            noise_png((900, 900), 2),
            "rejected",
            ("the limit is", "IMAGE_TAGGER_MAX_UPLOAD_BYTES"),
            "FAILED",
        ),
    ]


def noise_image_palette() -> Image.Image:
    """A palette image with several colours and one transparent index."""
    image = Image.new("P", (64, 48), 0)
    image.putpalette([255, 0, 0, 0, 0, 255, 0, 200, 0] + [0] * (256 * 3 - 9))
    image.paste(1, (0, 0, 32, 48))
    image.paste(2, (32, 0, 48, 48))
    image.info["transparency"] = 0
    return image
