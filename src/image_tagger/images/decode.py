"""Decoding image files into the sRGB pixels that the metrics analyse.

Every file is decoded once, at the analysis resolution: JPEGs are decoded
directly at a reduced scale (1/2, 1/4 or 1/8) by the decoder, the EXIF
orientation is applied, every colour mode is converted to 8-bit sRGB, and the
image is resampled so that its long side is at most ``max_side`` pixels.

Resampling happens in two steps. An integer reduction first brings the image
to less than twice the target size: the JPEG decoder's DCT scaling, or for
other formats Pillow's ``reduce`` (the mean of each k x k block). Pillow's
antialiased bicubic filter then gives the exact target size. Of the filters
measured (`bench.science_hotspots`, one photo saved at sizes from 900 to
3840 px), it keeps the fine-texture metrics the least dependent on the size of
the source file; plain bilinear interpolation lets them vary several times as
much.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from functools import lru_cache
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image, ImageChops, ImageCms, ImageOps, UnidentifiedImageError

try:
    import pillow_heif
except ImportError:  # pragma: no cover - pillow-heif is a dependency
    pillow_heif = None
else:
    pillow_heif.register_heif_opener()

__all__ = [
    "ANALYSIS_MAX_SIDE",
    "ImageDecodeError",
    "ImageTooLargeError",
    "load_analysis_image",
    "open_image_header",
]

#: Long side, in pixels, of the images the metrics analyse.
ANALYSIS_MAX_SIDE = 640

#: The two steps of the downscale to the analysis size.
RESAMPLING = {
    "reduce": "JPEG DCT scaling, else Pillow reduce (k x k block mean), to < 2x",
    "resize": "Pillow bicubic, antialiased (support widened by the scale "
    "factor), to the target size",
}

_WHITE = (255, 255, 255)
_ORIENTATION_TAG = 0x0112
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


class ImageDecodeError(ValueError):
    """The file is not an image this service can read, or it is damaged."""


class ImageTooLargeError(ImageDecodeError):
    """The image has more pixels than the decoder will allocate."""

    def __init__(self, message: str, *, size: tuple[int, int] | None = None) -> None:
        super().__init__(message)
        #: Width and height the header declares, when they could be read.
        self.size = size

    @property
    def pixels(self) -> int | None:
        """The pixel count the header declares, when the decoder said it."""
        if self.size is not None:
            return self.size[0] * self.size[1]
        found = re.search(r"\((\d+) pixels\)", str(self))
        return int(found.group(1)) if found else None


def open_image_header(
    path: str | os.PathLike[str], *, upright: bool = False
) -> tuple[str, int, int]:
    """Format and size of an image, read from its header only.

    No pixel is decoded, so this is safe to call on untrusted files before any
    check of their pixel count.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    upright : bool, optional
        Give the size as displayed, after the EXIF orientation (width and
        height swap for orientations 5 to 8). By default the stored size.

    Returns
    -------
    format : str
        The format as Pillow names it: "JPEG", "MPO", "PNG", "WEBP", "HEIF",
        "AVIF", "GIF", "TIFF", "BMP", ...
    width, height : int
        Size in pixels: stored, or as displayed with ``upright=True``.

    Raises
    ------
    ImageDecodeError
        If the file is not a recognised image.
    ImageTooLargeError
        If the header declares more than twice Pillow's
        ``Image.MAX_IMAGE_PIXELS``, which Pillow refuses to open.
    """
    with open(path, "rb") as fp, warnings.catch_warnings():
        # The caller checks the pixel count itself.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(fp) as image:
                width, height = image.size
                if upright and _header_orientation(image) in (5, 6, 7, 8):
                    width, height = height, width
                return image.format or "UNKNOWN", width, height
        except Image.DecompressionBombError as exc:
            raise ImageTooLargeError(
                _too_large_message(exc), size=_declared_size(fp, upright=upright)
            ) from exc
        except UnidentifiedImageError as exc:
            raise ImageDecodeError(_UNIDENTIFIED) from exc
        except ValueError as exc:
            if "MAX_TEXT_CHUNK" in str(exc):
                raise ImageDecodeError(_OVERSIZED_CHUNK) from exc
            raise ImageDecodeError(f"the image header is corrupt: {exc}") from exc
        except Exception as exc:
            raise ImageDecodeError(f"the image header is corrupt: {exc}") from exc


def _declared_size(fp: BinaryIO, *, upright: bool) -> tuple[int, int] | None:
    """The width and height in a header that Pillow refused to open for its
    pixel count (its refusal gives the count only), or None.

    Each registered format that claims the first bytes reads its header, as
    ``Image.open`` does, but without the pixel-count check; no pixel is read.
    """
    fp.seek(0)
    prefix = fp.read(16)
    for name in Image.ID:
        factory, accept = Image.OPEN[name]
        try:
            claimed = accept(prefix) if accept else True
            if isinstance(claimed, str) or not claimed:  # a str: a warning
                continue
            fp.seek(0)
            image = factory(fp, "")
            width, height = image.size
            if upright and _header_orientation(image) in (5, 6, 7, 8):
                width, height = height, width
        except Exception:
            continue
        return width, height
    return None


def _header_orientation(image: Image.Image) -> int:
    """EXIF orientation found without decoding pixels (1 when there is none).

    Pillow looks for a PNG's EXIF chunk after the pixel data by decoding every
    pixel, which a header check must never do (a decompression bomb would be
    decoded before its pixel count is checked); such a PNG counts as upright.
    """
    if image.format == "PNG" and "exif" not in image.info:
        return 1
    return _orientation(image)


def load_analysis_image(
    path: str | os.PathLike[str], *, max_side: int = ANALYSIS_MAX_SIDE
) -> np.ndarray:
    """Decode an image file into 8-bit sRGB pixels at the analysis resolution.

    - Decoded once; JPEGs at the smallest DCT scale (1/2, 1/4 or 1/8) that is
      still at least the target size, then resampled to a long side of
      ``max_side`` (see `RESAMPLING`); smaller images are never enlarged.
    - The EXIF orientation is applied, so the array is upright.
    - Colour modes: an embedded ICC profile other than sRGB is converted to
      sRGB; CMYK without a profile uses the naive conversion, with the Adobe
      APP14 inversion honoured and absent-marker files read uninverted;
      16-bit grey is scaled by 1/257 (65535 becomes 255); 32-bit integer grey
      in 0..65535 likewise, other ranges and float grey are stretched from
      their minimum..maximum (float in 0..1 is scaled by 255); transparency
      (alpha, palette or colour key) is composited onto white; 1-bit, grey,
      palette and YCbCr become RGB.
    - Animated and multi-page files: the first frame.

    Parameters
    ----------
    path : str or os.PathLike
        The image file (JPEG, PNG, WebP, HEIC, AVIF, GIF, TIFF, BMP and the
        other formats Pillow reads).
    max_side : int, optional
        Largest allowed width or height, in pixels.

    Returns
    -------
    rgb : (M, N, 3) ndarray of uint8
        sRGB pixels, ``max(M, N) <= max_side``.

    Raises
    ------
    ImageDecodeError
        If the file is not an image, is truncated or corrupt, or uses a colour
        mode that cannot be converted; the message says which.
    ImageTooLargeError
        If the image has more pixels than Pillow agrees to decode.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1 pixel; got {max_side}")

    with open(path, "rb") as fp:
        try:
            with Image.open(fp) as image:
                pixels = _decode(image, max_side)
        except ImageDecodeError:
            raise
        except Image.DecompressionBombError as exc:
            raise ImageTooLargeError(_too_large_message(exc)) from exc
        except UnidentifiedImageError as exc:
            raise ImageDecodeError(_UNIDENTIFIED) from exc
        except MemoryError:
            raise
        except Exception as exc:
            # Pillow's decoders signal damaged data with many exception types.
            raise ImageDecodeError(f"file is truncated or corrupt: {exc}") from exc

    return pixels


def _decode(image: Image.Image, max_side: int) -> np.ndarray:
    """Upright 8-bit RGB pixels with a long side of at most ``max_side``."""
    # Decode, letting JPEG's DCT scaling do most of the downscaling.
    target = _fit(image.size, max_side)
    if target != image.size:
        image.draft(None, target)
    image.load()
    source_format = image.format

    # Upright, then 8-bit sRGB (or grey) with any transparency flattened.
    if _orientation(image) != 1:
        image = ImageOps.exif_transpose(image)
    image = _to_srgb(image, source_format)

    # Resample to the analysis size; grey images stay one channel until here.
    pixels = _resample(image, _fit(image.size, max_side))
    if pixels.ndim == 2:
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB)
    return pixels


def _resample(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Pixels of ``image`` resampled to ``size`` (width, height): `RESAMPLING`."""
    if image.size != size:
        # Block means to less than twice the target, then the filter.
        factor = int(max(image.width / size[0], image.height / size[1]))
        if factor >= 2:
            image = image.reduce(factor)
        if image.size != size:
            image = image.resize(size, Image.Resampling.BICUBIC)
    return np.array(image)


def _orientation(image: Image.Image) -> int:
    """EXIF orientation (1 = upright); damaged EXIF counts as upright."""
    try:
        return int(image.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:  # the pixels are still usable without the metadata
        return 1


def _fit(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """``size`` scaled down so that its long side is at most ``max_side``."""
    width, height = size
    long_side = max(width, height)
    if long_side <= max_side:
        return size

    scale = max_side / long_side
    return max(1, round(width * scale)), max(1, round(height * scale))


def _to_srgb(image: Image.Image, source_format: str | None) -> Image.Image:
    """8-bit "RGB" or "L" version of ``image``, in sRGB, transparency on white."""
    mode = image.mode
    icc = image.info.get("icc_profile")

    if mode in _SIXTEEN_BIT_MODES or mode == "I":
        return _gray_to_8bit(np.asarray(image), sixteen_bit=True)
    if mode == "F":
        return _gray_to_8bit(np.asarray(image), sixteen_bit=False)
    if mode == "CMYK":
        return _cmyk_to_srgb(image, icc, source_format)

    if "A" in image.getbands() or "transparency" in image.info:
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (*_WHITE, 255))
        image = Image.alpha_composite(background, image).convert("RGB")
    elif mode == "1":
        image = image.convert("L")
    elif mode not in ("L", "RGB"):
        image = image.convert("RGB")

    if image.mode == "RGB" and icc:
        return _icc_to_srgb(image, icc, "RGB")
    return image


def _gray_to_8bit(values: np.ndarray, *, sixteen_bit: bool) -> Image.Image:
    """8-bit grey image from 16-bit, 32-bit integer or float grey values."""
    finite = np.isfinite(values) if values.dtype.kind == "f" else None
    if finite is not None and not finite.all():
        values = np.where(finite, values, 0)
    low, high = (float(values.min()), float(values.max())) if values.size else (0, 0)

    if sixteen_bit and low >= 0 and high <= 65535:
        # Round to nearest: (v + 128) // 257 == round(v / 257) for integers.
        scaled = (values.astype(np.int32) + 128) // 257
    elif not sixteen_bit and low >= 0 and high <= 1:
        scaled = np.rint(values.astype(np.float32) * np.float32(255))
    elif high > low:
        stretch = np.float32(255 / (high - low))
        scaled = np.rint((values.astype(np.float32) - np.float32(low)) * stretch)
    else:
        scaled = np.zeros(values.shape, dtype=np.uint8)

    return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), "L")


def _cmyk_to_srgb(
    image: Image.Image, icc: bytes | None, source_format: str | None
) -> Image.Image:
    """sRGB version of a CMYK image, through its ICC profile when it has one."""
    # Pillow always reads JPEG CMYK with Adobe's inverted convention; files
    # without Adobe's APP14 marker store plain CMYK, so undo the inversion.
    if source_format in ("JPEG", "MPO") and "adobe" not in image.info:
        image = ImageChops.invert(image)

    if icc:
        converted = _icc_to_srgb(image, icc, "RGB")
        if converted.mode == "RGB":
            return converted
    return image.convert("RGB")


def _icc_to_srgb(image: Image.Image, icc: bytes, output_mode: str) -> Image.Image:
    """``image`` converted from its embedded profile to sRGB.

    Profiles that already describe sRGB are skipped; a profile that cannot be
    used (damaged, or for another colour space) leaves the image unchanged.
    """
    transform = _transform_to_srgb(icc, image.mode, output_mode)
    if transform is None:
        return image
    return ImageCms.applyTransform(image, transform)


@lru_cache(maxsize=16)
def _transform_to_srgb(
    icc: bytes, input_mode: str, output_mode: str
) -> ImageCms.ImageCmsTransform | None:
    """Perceptual transform from profile ``icc`` to sRGB, or None to skip."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in ImageCms.getProfileDescription(source).lower():
            return None
        return ImageCms.buildTransform(
            source,
            ImageCms.createProfile("sRGB"),
            input_mode,
            output_mode,
            renderingIntent=ImageCms.Intent.PERCEPTUAL,
            # Without lcms's one-pixel cache the transform is safe to share
            # between threads.
            flags=ImageCms.Flags.NOCACHE,
        )
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None


def _too_large_message(exc: Exception) -> str:
    return (
        f"the image has too many pixels to decode safely ({exc}); "
        "it may be a decompression bomb"
    )


_OVERSIZED_CHUNK = (
    "a PNG metadata chunk (an ICC profile or text) is over 1 MB once "
    "decompressed, more than this service accepts; save the image again "
    "without it (or as JPEG)"
)

_UNIDENTIFIED = (
    "not an image, or an image format this service cannot read "
    "(JPEG, PNG, WebP, HEIC, AVIF, GIF, TIFF and BMP are supported)"
)
