"""The photos the benchmarks measure.

The sample photos in ``tests/fixtures/photos``, or the image files of the
folder that ``IMAGE_TAGGER_BENCH_PHOTOS`` names (a larger set of your own).
"""

from __future__ import annotations

import os
from pathlib import Path

FIXTURE_PHOTOS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "photos"
SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".heic", ".avif"}


def photo_folder() -> Path:
    folder = Path(os.environ.get("IMAGE_TAGGER_BENCH_PHOTOS", FIXTURE_PHOTOS))
    if not folder.is_dir():
        raise SystemExit(
            f"IMAGE_TAGGER_BENCH_PHOTOS={folder} is not a folder; name a folder of "
            "photos, or unset it to use the sample photos"
        )
    return folder


def sample_photos() -> list[Path]:
    """The benchmark photos, sorted by name."""
    return sorted(p for p in photo_folder().iterdir() if p.suffix.lower() in SUFFIXES)
