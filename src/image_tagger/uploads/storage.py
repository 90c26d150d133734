"""Staging files under the data directory while hashing, then storing by content.

A file is written to ``DATA_DIR/tmp`` as it arrives, hashed (SHA-256) and
counted on the way, and never held whole in memory. Accepted files are moved
atomically to ``DATA_DIR/images/<aa>/<bb>/<sha256>.<ext>``; the same bytes are
stored once.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class StagedFile:
    """A file being received into the staging area."""

    filename: str
    path: Path
    max_bytes: int
    size_bytes: int = 0
    too_large: bool = False
    _hasher: hashlib._Hash = field(default_factory=hashlib.sha256, repr=False)
    _handle: object = field(default=None, repr=False)

    @property
    def sha256(self) -> str:
        return self._hasher.hexdigest()

    def write(self, chunk: bytes) -> None:
        """Append ``chunk``; past ``max_bytes`` the rest is counted, not kept."""
        self.size_bytes += len(chunk)
        if self.too_large:
            return
        if self.size_bytes > self.max_bytes:
            self.too_large = True
            self.close()
            self.path.unlink(missing_ok=True)
            return
        self._hasher.update(chunk)
        self._handle.write(chunk)

    def close(self) -> None:
        if self._handle is not None and not self._handle.closed:
            self._handle.close()

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


def begin_staging(tmp_dir: Path, filename: str, *, max_bytes: int) -> StagedFile:
    """Open a new staging file under ``tmp_dir`` for ``filename``."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=tmp_dir)
    handle = os.fdopen(fd, "wb")
    return StagedFile(
        filename=filename, path=Path(name), max_bytes=max_bytes, _handle=handle
    )


def stage_path(
    tmp_dir: Path, source: Path, *, max_bytes: int, chunk_bytes: int = 1 << 20
) -> StagedFile:
    """Stage a local file (the CLI's path into the same upload code)."""
    staged = begin_staging(tmp_dir, source.name, max_bytes=max_bytes)
    try:
        with source.open("rb") as handle:
            while chunk := handle.read(chunk_bytes):
                staged.write(chunk)
    finally:
        staged.close()
    return staged


def storage_path(images_dir: Path, sha256: str, extension: str) -> Path:
    return images_dir / sha256[:2] / sha256[2:4] / f"{sha256}.{extension}"


def store(staged: StagedFile, images_dir: Path, extension: str) -> Path:
    """Move a staged file into content-addressed storage; the same bytes once."""
    target = storage_path(images_dir, staged.sha256, extension)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        staged.discard()
        return target
    os.replace(staged.path, target)
    return target


STALE_STAGING_SECONDS = 3600


def remove_stale_staging(
    tmp_dir: Path, *, older_than_seconds: float = STALE_STAGING_SECONDS
) -> int:
    """Delete staging files left by killed processes; returns how many.

    Only files untouched for ``older_than_seconds`` go: another process on the
    same data directory may be receiving an upload right now.
    """
    cutoff = time.time() - older_than_seconds
    removed = 0
    for path in tmp_dir.glob("upload-*.part"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed
