"""Decoding every kind of upload into upright 8-bit sRGB at the analysis size.

Each fixture is made here with Pillow, in a temporary directory, so the
expected pixels are known exactly.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from image_tagger.images.decode import (
    ANALYSIS_MAX_SIDE,
    ImageDecodeError,
    ImageTooLargeError,
    load_analysis_image,
    open_image_header,
)

RED = (255, 0, 0)
BLUE = (0, 0, 255)


def save(image: Image.Image, path: Path, **params: object) -> Path:
    image.save(path, **params)
    return path


def halves(size: tuple[int, int], left: tuple, right: tuple, mode: str = "RGB"):
    """An image whose left half is ``left`` and right half ``right``."""
    image = Image.new(mode, size, left)
    image.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return image


def assert_colour(pixel: np.ndarray, expected: tuple, tolerance: int = 3) -> None:
    difference = np.abs(pixel.astype(int) - np.array(expected))
    assert difference.max() <= tolerance, f"{pixel} is not {expected}"


# Sizes and orientation ---------------------------------------------------------


def test_large_jpeg_is_decoded_at_reduced_scale_to_the_analysis_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save(halves((6000, 4000), RED, BLUE), tmp_path / "big.jpg", quality=90)
    drafts = []
    original_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        drafts.append(size)
        return original_draft(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    rgb = load_analysis_image(path, max_side=1024)

    assert rgb.shape == (683, 1024, 3) and rgb.dtype == np.uint8
    assert drafts == [(1024, 683)]
    assert_colour(rgb[340, 100], RED)
    assert_colour(rgb[340, 900], BLUE)


def test_small_images_are_never_enlarged(tmp_path: Path) -> None:
    path = save(halves((100, 50), RED, BLUE), tmp_path / "small.png")

    rgb = load_analysis_image(path)

    assert rgb.shape == (50, 100, 3)
    assert tuple(rgb[10, 10]) == RED and tuple(rgb[10, 90]) == BLUE


def test_max_side_sets_the_long_side(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (300, 1200), RED), tmp_path / "tall.png")

    assert load_analysis_image(path, max_side=256).shape == (256, 64, 3)
    assert load_analysis_image(path).shape[0] == min(1200, ANALYSIS_MAX_SIDE)


def test_extremely_elongated_image_keeps_one_pixel(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (5000, 1), RED), tmp_path / "line.png")

    assert load_analysis_image(path, max_side=1024).shape == (1, 1024, 3)


def test_exif_orientation_6_is_applied(tmp_path: Path) -> None:
    # Orientation 6: the stored image must be turned 90 degrees clockwise to be
    # upright, so its left half ends up on top (EXIF 2.32, tag 0x0112).
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(halves((60, 40), RED, BLUE), tmp_path / "rotated.jpg", exif=exif)

    rgb = load_analysis_image(path)

    assert rgb.shape == (60, 40, 3)
    assert_colour(rgb[5, 20], RED, tolerance=8)
    assert_colour(rgb[55, 20], BLUE, tolerance=8)


def test_exif_orientation_is_applied_to_a_downscaled_jpeg(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 8
    path = save(Image.new("RGB", (3000, 2000), RED), tmp_path / "r.jpg", exif=exif)

    assert load_analysis_image(path, max_side=1024).shape == (1024, 683, 3)


def test_damaged_exif_does_not_stop_decoding(tmp_path: Path) -> None:
    exif = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff damaged"
    path = save(Image.new("RGB", (40, 30), RED), tmp_path / "exif.jpg", exif=exif)

    with pytest.warns(UserWarning, match="Corrupt EXIF"):
        rgb = load_analysis_image(path)

    assert rgb.shape == (30, 40, 3)


def test_progressive_jpeg(tmp_path: Path) -> None:
    image = halves((400, 200), RED, BLUE)
    path = save(image, tmp_path / "progressive.jpg", progressive=True, quality=95)

    with Image.open(path) as check:
        assert check.info.get("progressive")
    rgb = load_analysis_image(path)
    assert_colour(rgb[100, 50], RED)
    assert_colour(rgb[100, 350], BLUE)


# Colour modes -----------------------------------------------------------------

CMYK_CYAN = (255, 0, 0, 0)
CMYK_RED = (0, 255, 255, 0)


def test_cmyk_jpeg_with_adobe_marker(tmp_path: Path) -> None:
    # Pillow writes CMYK JPEGs the way Photoshop does: inverted samples and an
    # Adobe APP14 marker.
    path = save(halves((64, 32), CMYK_CYAN, CMYK_RED, "CMYK"), tmp_path / "a.jpg")
    with Image.open(path) as check:
        assert check.mode == "CMYK" and "adobe" in check.info

    rgb = load_analysis_image(path)

    assert_colour(rgb[16, 8], (0, 255, 255))
    assert_colour(rgb[16, 56], RED)


@pytest.mark.parametrize("orientation", [1, 3])
def test_cmyk_jpeg_without_adobe_marker_is_not_inverted(
    tmp_path: Path, orientation: int
) -> None:
    # Saving inverted values makes Pillow store the plain values; removing the
    # APP14 segment then gives a plain (non-Adobe) CMYK JPEG of cyan and red.
    # Orientation 3 (upside down) swaps the halves.
    inverted = halves((64, 32), (0, 255, 255, 255), (255, 0, 0, 255), "CMYK")
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    inverted.save(buffer, format="JPEG", exif=exif)
    path = tmp_path / "plain.jpg"
    path.write_bytes(without_segment(buffer.getvalue(), marker=0xEE))

    with Image.open(path) as check:
        assert check.mode == "CMYK" and "adobe" not in check.info
    rgb = load_analysis_image(path)

    left, right = ((0, 255, 255), RED) if orientation == 1 else (RED, (0, 255, 255))
    assert_colour(rgb[16, 8], left)
    assert_colour(rgb[16, 56], right)


def test_embedded_icc_profile_is_converted_to_srgb(tmp_path: Path) -> None:
    # Linear-light RGB: code 128 is 0.502 of full intensity, which sRGB encodes
    # as 0.735 * 255 = 188 (IEC 61966-2-1 transfer function).
    image = Image.new("RGB", (8, 8), (128, 128, 128))
    path = save(image, tmp_path / "linear.png", icc_profile=linear_rgb_profile())

    rgb = load_analysis_image(path)

    assert_colour(rgb[4, 4], (188, 188, 188), tolerance=1)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257 * 100, 32768, 65535]], dtype=np.uint16)
    path = save(Image.fromarray(values), tmp_path / "deep.png")
    with Image.open(path) as check:
        assert check.mode == "I;16"

    rgb = load_analysis_image(path)

    # round(v / 257): 0, 100, 127.5 -> 128, 255.
    assert rgb[0, :, 0].tolist() == [0, 100, 128, 255]
    assert np.array_equal(rgb[..., 0], rgb[..., 2])


def test_integer_and_float_tiffs(tmp_path: Path) -> None:
    wide = np.array([[0, 65535, 257 * 7]], dtype=np.int32)
    unit = np.array([[0.0, 1.0, 0.5]], dtype=np.float32)
    other = np.array([[-1.0, 3.0, 1.0]], dtype=np.float32)
    paths = [
        save(Image.fromarray(array), tmp_path / f"{i}.tif")
        for i, array in enumerate((wide, unit, other))
    ]

    assert load_analysis_image(paths[0])[0, :, 0].tolist() == [0, 255, 7]
    assert load_analysis_image(paths[1])[0, :, 0].tolist() == [0, 255, 128]
    # Outside 0..1: stretched from minimum to maximum.
    assert load_analysis_image(paths[2])[0, :, 0].tolist() == [0, 255, 128]


def test_palette_with_transparency_is_composited_on_white(tmp_path: Path) -> None:
    image = Image.new("P", (4, 2), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.paste(1, (2, 0, 4, 2))
    path = save(image, tmp_path / "palette.png", transparency=0)

    rgb = load_analysis_image(path)

    assert tuple(rgb[0, 0]) == (255, 255, 255)
    assert tuple(rgb[0, 3]) == BLUE


def test_rgba_and_la_are_composited_on_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (3, 1))
    rgba.putdata([(255, 0, 0, 0), (255, 0, 0, 255), (0, 0, 0, 128)])
    la = Image.new("LA", (2, 1))
    la.putdata([(0, 0), (0, 255)])

    rgb = load_analysis_image(save(rgba, tmp_path / "rgba.png"))
    grey = load_analysis_image(save(la, tmp_path / "la.png"))

    assert tuple(rgb[0, 0]) == (255, 255, 255)
    assert tuple(rgb[0, 1]) == RED
    assert_colour(rgb[0, 2], (127, 127, 127), tolerance=1)
    assert grey[0].tolist() == [[255, 255, 255], [0, 0, 0]]


def test_greyscale_and_one_bit(tmp_path: Path) -> None:
    grey = Image.fromarray(np.array([[0, 77, 255]], dtype=np.uint8))
    bits = Image.new("1", (2, 1))
    bits.putpixel((1, 0), 1)

    rgb = load_analysis_image(save(grey, tmp_path / "grey.png"))
    bw = load_analysis_image(save(bits, tmp_path / "bits.png"))

    assert rgb[0].tolist() == [[0, 0, 0], [77, 77, 77], [255, 255, 255]]
    assert bw[0].tolist() == [[0, 0, 0], [255, 255, 255]]


# Formats ----------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["gif", "webp"])
def test_animated_image_gives_its_first_frame(tmp_path: Path, suffix: str) -> None:
    frames = [Image.new("RGB", (32, 32), RED), Image.new("RGB", (32, 32), BLUE)]
    path = tmp_path / f"animated.{suffix}"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    with Image.open(path) as check:
        assert check.n_frames == 2

    rgb = load_analysis_image(path)

    assert_colour(rgb[16, 16], RED, tolerance=8)


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_heic_and_avif(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"image.{fmt.lower()}"
    try:
        halves((64, 64), RED, BLUE).save(path, format=fmt, quality=95)
    except (KeyError, OSError) as exc:  # pragma: no cover - depends on the build
        pytest.skip(f"this Pillow build cannot write {fmt}: {exc}")

    assert open_image_header(path) == (fmt, 64, 64)
    rgb = load_analysis_image(path)
    assert_colour(rgb[32, 8], RED, tolerance=25)
    assert_colour(rgb[32, 56], BLUE, tolerance=25)


def test_header_is_read_without_decoding(tmp_path: Path) -> None:
    noise = np.random.default_rng(2).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    path = save(Image.fromarray(noise), tmp_path / "header.jpg")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(path.read_bytes()[:2000])

    assert open_image_header(path) == ("JPEG", 640, 480)
    assert open_image_header(truncated) == ("JPEG", 640, 480)
    assert open_image_header(save(Image.new("L", (3, 2)), tmp_path / "a.png")) == (
        "PNG",
        3,
        2,
    )


# Bad input --------------------------------------------------------------------


def test_truncated_jpeg_is_a_decode_error(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    whole = save(Image.fromarray(noise), tmp_path / "whole.jpg")
    path = tmp_path / "truncated.jpg"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])

    with pytest.raises(ImageDecodeError, match="truncated or corrupt"):
        load_analysis_image(path)


def test_truncated_png_is_a_decode_error(tmp_path: Path) -> None:
    noise = np.random.default_rng(1).integers(0, 256, (128, 128), dtype=np.uint8)
    whole = save(Image.fromarray(noise), tmp_path / "whole.png")
    path = tmp_path / "truncated.png"
    path.write_bytes(whole.read_bytes()[:2000])

    with pytest.raises(ImageDecodeError, match="truncated or corrupt"):
        load_analysis_image(path)


@pytest.mark.parametrize(
    "content", [b"", b"<html><body>not an image</body></html>", b"%PDF-1.7\n"]
)
def test_non_images_are_decode_errors(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fake.jpg"
    path.write_bytes(content)

    with pytest.raises(ImageDecodeError, match="not an image"):
        load_analysis_image(path)
    with pytest.raises(ImageDecodeError, match="not an image"):
        open_image_header(path)


def test_decompression_bomb_header(tmp_path: Path) -> None:
    # 12000 x 12000 = 144 M pixels: over Pillow's warning limit (89 M), under
    # its error limit (179 M). 20000 x 20000 is over both.
    warned = tmp_path / "warned.png"
    warned.write_bytes(png_header(12000, 12000))
    refused = tmp_path / "refused.png"
    refused.write_bytes(png_header(20000, 20000))

    assert open_image_header(warned) == ("PNG", 12000, 12000)
    with pytest.raises(ImageTooLargeError, match="too many pixels"):
        open_image_header(refused)
    with pytest.raises(ImageTooLargeError):
        load_analysis_image(refused)


def test_missing_file_and_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_analysis_image(tmp_path / "missing.jpg")
    with pytest.raises(ValueError, match="max_side"):
        load_analysis_image(tmp_path / "missing.jpg", max_side=0)


# Helpers ----------------------------------------------------------------------


def without_segment(jpeg: bytes, *, marker: int) -> bytes:
    """``jpeg`` without its first APPn/marker segment of type ``marker``."""
    position = 2
    while jpeg[position + 1] != 0xDA:
        length = int.from_bytes(jpeg[position + 2 : position + 4], "big")
        if jpeg[position + 1] == marker:
            return jpeg[:position] + jpeg[position + 2 + length :]
        position += 2 + length
    raise AssertionError("segment not found")


def png_header(width: int, height: int) -> bytes:
    """A PNG (8-bit RGB) whose header declares the size but holds one byte of data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)


def linear_rgb_profile() -> bytes:
    """A minimal ICC v2 display profile: sRGB primaries, linear (gamma 1) curves.

    Layout from ICC.1:2001-04: a 128-byte header, a tag table and the tags
    (textDescriptionType, XYZType with D50-adapted primaries, curveType with no
    entries, which means the identity).
    """

    def s15fixed16(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ " + bytes(4) + s15fixed16(x) + s15fixed16(y) + s15fixed16(z)

    text = b"Linear RGB for tests\0"
    description = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text
    description += bytes(4 + 4 + 2 + 1 + 67)
    identity = b"curv" + bytes(4) + struct.pack(">I", 0)
    tags = [
        (b"desc", description),
        (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", xyz(0.4361, 0.2225, 0.0139)),
        (b"gXYZ", xyz(0.3851, 0.7169, 0.0971)),
        (b"bXYZ", xyz(0.1431, 0.0606, 0.7141)),
        (b"rTRC", identity),
        (b"gTRC", identity),
        (b"bTRC", identity),
    ]

    table, data = b"", b""
    first = 128 + 4 + 12 * len(tags)
    for signature, body in tags:
        data += bytes(-(first + len(data)) % 4)
        table += signature + struct.pack(">II", first + len(data), len(body))
        data += body
    body = struct.pack(">I", len(tags)) + table + data

    header = struct.pack(">I", 128 + len(body)) + bytes(4)
    header += struct.pack(">I", 0x02100000) + b"mntrRGB XYZ " + bytes(12) + b"acsp"
    header += bytes(4 + 4 + 4 + 4 + 8 + 4)
    header += s15fixed16(0.9642) + s15fixed16(1.0) + s15fixed16(0.8249)
    header += bytes(4 + 16 + 28)
    return header + body


def test_an_oversized_png_metadata_chunk_is_named_not_called_corrupt(tmp_path):
    # Pillow refuses PNG text and ICC chunks past PngImagePlugin.MAX_TEXT_CHUNK
    # (1 MB decompressed), a guard against zlib bombs.
    path = tmp_path / "big-icc.png"
    Image.new("RGB", (8, 8)).save(path, icc_profile=bytes(2_000_000))

    with pytest.raises(ImageDecodeError, match="metadata chunk"):
        open_image_header(path)


def test_the_upright_header_size_of_a_png_decodes_no_pixel(tmp_path, monkeypatch):
    # Pillow looks for a late PNG EXIF chunk by decoding every pixel; a header
    # check must not, or a decompression bomb is decoded before it is measured.
    from PIL import PngImagePlugin

    path = save(Image.new("L", (3000, 2000)), tmp_path / "big.png")

    def refuse(self):
        raise AssertionError("pixels decoded during a header check")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", refuse)
    assert open_image_header(path, upright=True) == ("PNG", 3000, 2000)
