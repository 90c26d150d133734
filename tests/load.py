"""Many clients uploading at once to a running server, and what came of it.

Shared by the concurrency test (a few clients) and ``make bench`` (20 clients
of 10 images each).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx2
from helpers import ADMIN, FINAL, jpeg_bytes


@dataclass
class LoadResult:
    clients: int
    files_per_client: int
    answers: list[int] = field(default_factory=list)  # HTTP status per request
    errors: list[str] = field(default_factory=list)
    jobs: list[dict] = field(default_factory=list)  # final job details
    upload_seconds: float = 0.0  # first request sent to last answer
    total_seconds: float = 0.0  # first request sent to last job finished


def concurrent_uploads(
    url: str,
    *,
    clients: int,
    files_per_client: int,
    size: tuple[int, int] = (320, 240),
    timeout: float = 600,
) -> LoadResult:
    """Each client sends its own distinct images in one request, all at once."""
    result = LoadResult(clients, files_per_client)
    batches = [
        [
            (f"c{c:02d}-{n:02d}.jpg", jpeg_bytes(1000 + c * files_per_client + n, size))
            for n in range(files_per_client)
        ]
        for c in range(clients)
    ]
    start = threading.Barrier(clients)
    job_ids: list[int] = []
    lock = threading.Lock()

    def client(files: list[tuple[str, bytes]]) -> None:
        parts = [("files", (name, data, "image/jpeg")) for name, data in files]
        with httpx2.Client(base_url=url, headers=ADMIN, timeout=timeout) as http:
            start.wait()
            try:
                response = http.post("/api/v1/admin/upload", files=parts)
            except httpx2.HTTPError as exc:
                with lock:
                    result.errors.append(f"request failed: {exc!r}")
                return
        with lock:
            result.answers.append(response.status_code)
            if response.status_code == 202:
                job_ids.append(response.json()["job_id"])
            else:
                result.errors.append(f"{response.status_code}: {response.text[:300]}")

    threads = [threading.Thread(target=client, args=(b,)) for b in batches]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.upload_seconds = time.perf_counter() - began

    result.jobs = [_wait(url, job_id, timeout) for job_id in job_ids]
    result.total_seconds = time.perf_counter() - began
    return result


def _wait(url: str, job_id: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    with httpx2.Client(base_url=url, headers=ADMIN, timeout=30) as http:
        while time.monotonic() < deadline:
            job = http.get(
                f"/api/v1/admin/upload/jobs/{job_id}", params={"items_limit": 1000}
            ).json()
            if job["status"] in FINAL:
                return job
            time.sleep(0.25)
    raise AssertionError(f"job {job_id} did not finish within {timeout} s: {job}")


def problems_in_log(text: str) -> list[str]:
    """Lines of a server log that report an error or a locked database."""
    markers = ("database is locked", "Traceback", "[error", "[critical", '"error"')
    return [line for line in text.splitlines() if any(m in line for m in markers)]
