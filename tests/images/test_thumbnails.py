"""Thumbnails are written whole or not at all."""

from __future__ import annotations

import numpy as np
import pytest

from image_tagger.images import thumbnails


def test_a_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "thumbnails" / "ab" / "ab12.jpg"
    pixels = np.full((40, 60, 3), 128, dtype=np.uint8)

    def disk_full(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(thumbnails.os, "replace", disk_full)
    with pytest.raises(OSError, match="No space left"):
        thumbnails.write_thumbnail(pixels, target)

    assert list(target.parent.iterdir()) == []


def test_a_thumbnail_is_at_most_256_px_on_its_long_side(tmp_path):
    target = tmp_path / "t.jpg"
    thumbnails.write_thumbnail(np.zeros((300, 900, 3), dtype=np.uint8), target)

    from PIL import Image

    with Image.open(target) as image:
        assert image.size == (256, 85)
    assert [p.name for p in tmp_path.iterdir()] == ["t.jpg"]
