"""VLM throughput: 60 images x 2 analyzers against a fake provider answering in 1 s.

At concurrency 16 the VLM work alone takes 120 calls x 1 s / 16 = 7.5 s: that
is the baseline, and the bar is 1.3 x 7.5 s for the whole job. The images are
small (480 x 360 px) so that their math metrics, on this machine's cores, do
not hide the VLM stage; their single-image time is printed too. A second run
with a low requests-per-minute limit checks, from the fake server's own log of
arrivals, that no 60-second window held more requests than the limit.

The fake provider runs in this process, on loopback (tests/fake_vlm.py).
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import cv2
import httpx2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fake_vlm import FakeVLM  # noqa: E402
from helpers import ServerProcess, child_env, jpeg_bytes  # noqa: E402

from image_tagger.science.pipeline import decode_for_pipeline  # noqa: E402

IMAGES = 60
ANALYZERS = 2
CONCURRENCY = 16
LATENCY_SECONDS = 1.0
SIZE = (480, 360)
RPM = 12
RPM_IMAGES = 8  # 16 calls: 12 in the first minute, 4 held back to the next
HEADERS = {"X-User-Role": "admin"}


def main() -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeVLM(latency_seconds=LATENCY_SECONDS) as fake,
    ):
        folder = Path(tmp)
        files = _write_images(folder / "photos", IMAGES + RPM_IMAGES + 1)
        metrics_seconds = _single_image_seconds(folder, files[1 : IMAGES + 1])

        job_seconds, calls = _throughput_run(folder / "a", fake, files[: IMAGES + 1])
        max_in_flight = fake.max_in_flight
        fake.reset()
        rpm_seconds, offsets = _rpm_run(folder / "b", fake, files[IMAGES + 1 :])

    ideal = IMAGES * ANALYZERS * LATENCY_SECONDS / CONCURRENCY
    print(
        f"vlm throughput: {IMAGES} images x {ANALYZERS} analyzers, fake provider "
        f"answering in {LATENCY_SECONDS:g} s, IMAGE_TAGGER_VLM_CONCURRENCY="
        f"{CONCURRENCY}"
    )
    print(
        f"  VLM time alone, {IMAGES * ANALYZERS} calls / {CONCURRENCY}       "
        f"{ideal:7.2f} s   baseline"
    )
    print(
        f"  the job, created to finished        {job_seconds:7.2f} s   ratio "
        f"{job_seconds / ideal:.2f}   (bar: <= 1.30)"
    )
    print(
        f"  calls made {calls}, at most {max_in_flight} at once at the provider; "
        f"images are {SIZE[0]}x{SIZE[1]} px: decode and metrics of one take "
        f"{metrics_seconds / IMAGES * 1000:.0f} ms on one core "
        f"({metrics_seconds:.2f} s for all {IMAGES})"
    )
    window = _max_in_window(offsets)
    print(
        f"vlm rpm limit: IMAGE_TAGGER_VLM_RPM={RPM}, {RPM_IMAGES} images, "
        f"{len(offsets)} calls in {rpm_seconds:.1f} s"
    )
    print(
        f"  most requests the provider received in any 60 s window: {window} "
        f"(limit {RPM}) -> {'held' if window <= RPM else 'EXCEEDED'}"
    )
    print("  arrivals (s after the first): " + " ".join(f"{t:.1f}" for t in offsets))


def _write_images(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True)
    files = []
    for seed in range(count):
        path = folder / f"photo-{seed:03d}.jpg"
        path.write_bytes(jpeg_bytes(seed, size=SIZE))
        files.append(path)
    return files


def _single_image_seconds(folder: Path, files: list[Path]) -> float:
    """Decode and every metric of each image, one after another, on one core."""
    cv2.setNumThreads(1)
    thumbnail = folder / "thumbnail.jpg"
    decode_for_pipeline(files[0], thumbnail, metrics=True, vlm_image=True)
    started = time.perf_counter()
    for path in files:
        decode_for_pipeline(path, thumbnail, metrics=True, vlm_image=True)
    return time.perf_counter() - started


def _server(data: Path, fake: FakeVLM, **extra: str) -> ServerProcess:
    env = child_env(
        data,
        IMAGE_TAGGER_AUTH_MODE="header",
        IMAGE_TAGGER_LOG_LEVEL="WARNING",
        IMAGE_TAGGER_VLM_BASE_URL=fake.url,
        IMAGE_TAGGER_VLM_MODEL="gpt-4o-mini",
        IMAGE_TAGGER_VLM_PROVIDER="openai",
        IMAGE_TAGGER_VLM_CONCURRENCY=str(CONCURRENCY),
        **extra,
    )
    data.mkdir(parents=True)
    server = ServerProcess(env, data / "server.log")
    server.start()
    return server


def _throughput_run(data: Path, fake: FakeVLM, files: list[Path]) -> tuple[float, int]:
    server = _server(data, fake)
    try:
        with httpx2.Client(base_url=server.url, headers=HEADERS, timeout=300) as http:
            warm = http.post("/api/v1/admin/upload", files=[_part(files[0])]).json()
            _wait(http, warm["job_id"])
            fake.reset()
            answer = http.post(
                "/api/v1/admin/upload", files=[_part(p) for p in files[1:]]
            )
            job = _wait(http, answer.json()["job_id"])
            _check_all_ok(http, answer.json()["image_ids"])
    finally:
        server.stop()
    return _job_seconds(job), len(fake.log)


def _rpm_run(data: Path, fake: FakeVLM, files: list[Path]) -> tuple[float, list[float]]:
    server = _server(data, fake, IMAGE_TAGGER_VLM_RPM=str(RPM))
    try:
        with httpx2.Client(base_url=server.url, headers=HEADERS, timeout=300) as http:
            answer = http.post("/api/v1/admin/upload", files=[_part(p) for p in files])
            job = _wait(http, answer.json()["job_id"])
            _check_all_ok(http, answer.json()["image_ids"])
    finally:
        server.stop()
    arrivals = sorted(entry.at for entry in fake.log)
    return _job_seconds(job), [t - arrivals[0] for t in arrivals]


def _max_in_window(offsets: list[float], seconds: float = 60.0) -> int:
    return max(
        sum(1 for other in offsets if start <= other < start + seconds)
        for start in offsets
    )


def _check_all_ok(http: httpx2.Client, image_ids: list[int]) -> None:
    for image_id in image_ids:
        vlm = http.get(f"/api/v1/admin/images/{image_id}").json()["analysis"]["vlm"]
        statuses = {name: outcome["status"] for name, outcome in vlm.items()}
        assert statuses == {"cognitive": "ok", "patterns": "ok"}, (image_id, vlm)


def _job_seconds(job: dict) -> float:
    assert job["status"] == "COMPLETED", job
    created = datetime.fromisoformat(job["created_at"])
    return (datetime.fromisoformat(job["finished_at"]) - created).total_seconds()


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
