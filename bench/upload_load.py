"""Concurrent uploads on the embedded default (SQLite): 20 clients x 10 images.

A server is started on a new data directory; 20 clients each send 10 distinct
photos (1600 x 1200 JPEG) in one request, all released at the same moment.
Every request must be answered 202, every image stored and analysed, and the
server log must hold no error and no "database is locked". Bounded: the run
gives up after ``TIMEOUT_SECONDS``.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from helpers import ServerProcess, child_env  # noqa: E402
from load import concurrent_uploads, problems_in_log  # noqa: E402

CLIENTS = 20
FILES_PER_CLIENT = 10
SIZE = (1600, 1200)
TIMEOUT_SECONDS = 600


def main() -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        log_path = folder / "server.log"
        env = child_env(folder / "data", IMAGE_TAGGER_AUTH_MODE="header")
        server = ServerProcess(env, log_path)
        server.start()
        try:
            result = concurrent_uploads(
                server.url,
                clients=CLIENTS,
                files_per_client=FILES_PER_CLIENT,
                size=SIZE,
                timeout=TIMEOUT_SECONDS,
            )
        finally:
            server.stop()
        images, analysed = _count(folder / "data" / "image_tagger.db")
        stored = len(list((folder / "data" / "images").rglob("*.jpg")))
        problems = problems_in_log(log_path.read_text())

    expected = CLIENTS * FILES_PER_CLIENT
    items = [item for job in result.jobs for item in job["items"]]
    completed = sum(item["status"] == "COMPLETED" for item in items)
    statuses = sorted({job["status"] for job in result.jobs})
    print(
        f"concurrent uploads: {CLIENTS} clients x {FILES_PER_CLIENT} images "
        f"({SIZE[0]}x{SIZE[1]} JPEG), embedded default (SQLite)"
    )
    print(f"  answers        {_tally(result.answers)}  request errors: {result.errors}")
    print(f"  jobs           {len(result.jobs)}, final status {statuses}")
    print(
        f"  items          {completed} of {len(items)} COMPLETED (expected {expected})"
    )
    print(f"  stored         {stored} files, {images} Image rows, {analysed} analysed")
    print(f"  log problems   {len(problems)} {problems[:3]}")
    print(
        f"  all uploads answered in {result.upload_seconds:.1f} s; "
        f"all {expected} images analysed {result.total_seconds:.1f} s after the start"
    )
    ok = (
        not result.errors
        and result.answers == [202] * CLIENTS
        and completed == len(items) == images == analysed == stored == expected
        and not problems
    )
    print(f"  {'PASS' if ok else 'FAIL'}: all stored and processed, no error")
    return ok


def _count(database: Path) -> tuple[int, int]:
    with sqlite3.connect(database) as connection:
        images = connection.execute("SELECT count(*) FROM images").fetchone()[0]
        analysed = connection.execute(
            "SELECT count(DISTINCT image_id) FROM image_analyses"
        ).fetchone()[0]
    return images, analysed


def _tally(codes: list[int]) -> str:
    return ", ".join(f"{codes.count(c)} x {c}" for c in sorted(set(codes)))


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
