"""Thumbnails: made from the analysis pixels while an image is analysed."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

THUMBNAIL_SIDE = 256


def thumbnail_path(data_dir: Path, sha256: str) -> Path:
    return data_dir / "thumbnails" / sha256[:2] / f"{sha256}.jpg"


def write_thumbnail(pixels: np.ndarray, target: Path) -> None:
    """Save an RGB array as a JPEG of at most 256 px on the long side, atomically."""
    image = Image.fromarray(pixels)
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=target.parent, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(buffer.getvalue())
        os.replace(partial, target)
    except BaseException:
        Path(partial).unlink(missing_ok=True)  # a full disk keeps no fragments
        raise
