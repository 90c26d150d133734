"""Job speed on the embedded default, and API latency while a batch runs.

Baseline, measured in this run: the sum of the single-image times (decode plus
every metric, one image after another in this process). Then a server is
started and the same files are uploaded as one job; the job's wall time is
compared with the baseline, and GET /api/v1/admin/upload/jobs is timed
throughout the batch.
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import cv2
import httpx2
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from helpers import ServerProcess, child_env  # noqa: E402

from image_tagger.science.pipeline import decode_and_measure  # noqa: E402

PHOTOS = sorted((ROOT / "tests" / "fixtures" / "photos").glob("*.jpg"))
COPIES = 8  # each sample photo at several qualities: distinct bytes, same scene


def batch_files(folder: Path) -> list[Path]:
    files = []
    for photo in PHOTOS:
        with Image.open(photo) as image:
            image.load()
            for quality in range(COPIES):
                target = folder / f"{photo.stem}-q{90 - quality}.jpg"
                buffer = io.BytesIO()
                image.save(buffer, format="JPEG", quality=90 - quality)
                target.write_bytes(buffer.getvalue())
                files.append(target)
    return files


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = batch_files(folder)

        # One core, as each analysis process of the server runs.
        cv2.setNumThreads(1)
        # The same work per image as the server: decode, metrics, thumbnail.
        thumbnail = folder / "thumbnail.jpg"
        decode_and_measure(files[0], thumbnail)  # warm imports and caches
        started = time.perf_counter()
        for path in files[1:]:
            decode_and_measure(path, thumbnail)
        baseline = time.perf_counter() - started

        env = child_env(
            folder / "data",
            IMAGE_TAGGER_AUTH_MODE="header",
            IMAGE_TAGGER_LOG_LEVEL="WARNING",
        )
        server = ServerProcess(env, folder / "server.log")
        server.start()
        try:
            upload, batch, latencies = run_batch(server.url, files)
        finally:
            server.stop()

    count = len(files) - 1
    print(f"job speed: {count} images, {os.cpu_count()} cores, embedded default")
    print(f"  sum of single-image times (1 core)  {baseline:7.2f} s   baseline")
    print(
        f"  the job, created to finished        {batch:7.2f} s   "
        f"ratio {batch / baseline:.2f}   (bar: <= 0.75)"
    )
    print(f"  the upload request itself           {upload:7.2f} s")
    latencies_ms = sorted(latency * 1000 for latency in latencies)
    p95 = latencies_ms[max(0, int(len(latencies_ms) * 0.95) - 1)]
    print(
        f"  GET /api/v1/admin/upload/jobs while it ran: {len(latencies_ms)} calls, "
        f"median {statistics.median(latencies_ms):.1f} ms, p95 {p95:.1f} ms, "
        f"max {latencies_ms[-1]:.1f} ms   (bar: < 100 ms)"
    )


def run_batch(url: str, files: list[Path]) -> tuple[float, float, list[float]]:
    """Upload ``files`` as one job; (upload seconds, job seconds, API latencies).

    The job's time is the server's own record: created to finished.
    """
    headers = {"X-User-Role": "admin"}
    latencies: list[float] = []
    done = threading.Event()

    def poll() -> None:
        with httpx2.Client(base_url=url, headers=headers, timeout=30) as http:
            while not done.is_set():
                started = time.perf_counter()
                http.get("/api/v1/admin/upload/jobs", params={"limit": 20})
                latencies.append(time.perf_counter() - started)
                time.sleep(0.05)

    with httpx2.Client(base_url=url, headers=headers, timeout=300) as http:
        warm = http.post("/api/v1/admin/upload", files=[_part(files[0])]).json()
        _wait(http, warm["job_id"])

        poller = threading.Thread(target=poll)
        poller.start()
        started = time.perf_counter()
        answer = http.post("/api/v1/admin/upload", files=[_part(p) for p in files[1:]])
        upload_seconds = time.perf_counter() - started
        job = _wait(http, answer.json()["job_id"])
        done.set()
        poller.join()

    assert job["status"] == "COMPLETED", job
    created = datetime.fromisoformat(job["created_at"])
    finished = datetime.fromisoformat(job["finished_at"])
    return upload_seconds, (finished - created).total_seconds(), latencies


def _part(path: Path) -> tuple:
    return ("files", (path.name, path.read_bytes(), "image/jpeg"))


def _wait(http: httpx2.Client, job_id: int) -> dict:
    while True:
        job = http.get(f"/api/v1/admin/upload/jobs/{job_id}").json()
        if job["status"] not in ("PENDING", "RUNNING"):
            return job
        time.sleep(0.2)


if __name__ == "__main__":
    main()
