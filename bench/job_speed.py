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
from pathlib import Path

import httpx2
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from helpers import ServerProcess, child_env  # noqa: E402

from image_tagger.science.compute import analyze_file  # noqa: E402

PHOTOS = sorted((ROOT / "tests" / "fixtures" / "photos").glob("*.jpg"))
COPIES = 4  # each sample photo at several qualities: distinct bytes, same scene


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

        analyze_file(files[0])  # warm imports
        started = time.perf_counter()
        for path in files:
            analyze_file(path)
        baseline = time.perf_counter() - started

        env = child_env(folder / "data", IMAGE_TAGGER_AUTH_MODE="header",
                        IMAGE_TAGGER_LOG_LEVEL="WARNING")
        server = ServerProcess(env, folder / "server.log")
        server.start()
        try:
            batch, latencies = run_batch(server.url, files)
        finally:
            server.stop()

    cores = os.cpu_count()
    print(f"job speed: {len(files)} images, {cores} cores")
    print(f"  sum of single-image times  {baseline:8.2f} s   (baseline)")
    print(f"  batch through the server   {batch:8.2f} s")
    print(f"  ratio                      {batch / baseline:8.2f}   (bar: <= 0.75)")
    latencies_ms = sorted(latency * 1000 for latency in latencies)
    p95 = latencies_ms[int(len(latencies_ms) * 0.95) - 1]
    print(f"GET /api/v1/admin/upload/jobs during the batch: {len(latencies_ms)} calls,"
          f" median {statistics.median(latencies_ms):.1f} ms, p95 {p95:.1f} ms, "
          f"max {latencies_ms[-1]:.1f} ms   (bar: < 100 ms)")


def run_batch(url: str, files: list[Path]) -> tuple[float, list[float]]:
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
        started = time.perf_counter()
        parts = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in files]
        job_id = http.post("/api/v1/admin/upload", files=parts).json()["job_id"]
        poller = threading.Thread(target=poll)
        poller.start()
        while True:
            job = http.get(f"/api/v1/admin/upload/jobs/{job_id}").json()
            if job["status"] not in ("PENDING", "RUNNING"):
                break
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        done.set()
        poller.join()
    assert job["status"] == "COMPLETED", job
    return elapsed, latencies


if __name__ == "__main__":
    main()
