"""How well a running job's ETA predicts its real finish.

A server is started on the embedded default and a 40-image job is uploaded:
the sample photos at full resolution (the originals first, then re-encoded
copies so every file is distinct), in a random order (seeded, another per run)
so heavy and light images mix as in a real batch. The job is polled every
0.1 s; when it reaches 25% and 50% of its items, the ETA it reports then is
compared with the time that actually remained until it finished. Five runs,
as the machine is shared and one run is noisy.
"""

from __future__ import annotations

import io
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx2
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from helpers import ServerProcess, child_env  # noqa: E402

from bench.photos import sample_photos  # noqa: E402

IMAGES = 40
CHECKPOINTS = (0.25, 0.5)
POLL_SECONDS = 0.1
RUNS = 5


def batch_files(folder: Path, *, seed: int, count: int = IMAGES) -> list[Path]:
    """``count`` distinct files: each photo as it is, then JPEG copies."""
    photos = sample_photos()
    files: list[Path] = []
    for index in range(count):
        photo = photos[index % len(photos)]
        copy = index // len(photos)
        if copy == 0:
            target = folder / photo.name
            target.write_bytes(photo.read_bytes())
        else:
            target = folder / f"{photo.stem}-copy{copy}.jpg"
            with Image.open(photo) as image:
                buffer = io.BytesIO()
                image.convert("RGB").save(buffer, format="JPEG", quality=92 - copy)
            target.write_bytes(buffer.getvalue())
        files.append(target)
    random.Random(seed).shuffle(files)
    return files


def main() -> None:
    errors: dict[float, list[float]] = {share: [] for share in CHECKPOINTS}
    print(
        f"eta accuracy: a {IMAGES}-image job, {os.cpu_count()} cores, embedded "
        f"default, {RUNS} runs"
    )
    for run in range(1, RUNS + 1):
        samples, finished, job = run_once(seed=run)
        print(
            f"  run {run}: job {job['status']}, finished {finished:.1f} s after its "
            "upload was answered"
        )
        for share in CHECKPOINTS:
            at, done, rate, eta = samples[share]
            actual = finished - at
            error = (eta - actual) / actual
            errors[share].append(error)
            print(
                f"    at {share:.0%} ({done}/{IMAGES} done, {at:5.1f} s in, "
                f"{rate:.2f} items/s): ETA {eta:5.1f} s, actual {actual:5.1f} s "
                f"left, error {error:+.0%}"
            )
    for share, values in errors.items():
        print(
            f"  at {share:.0%}: median error {statistics.median(values):+.0%}, "
            f"median absolute error {statistics.median(map(abs, values)):.0%}"
        )


def run_once(*, seed: int) -> tuple[dict, float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = batch_files(folder, seed=seed)
        env = child_env(
            folder / "data",
            IMAGE_TAGGER_AUTH_MODE="header",
            IMAGE_TAGGER_LOG_LEVEL="WARNING",
        )
        server = ServerProcess(env, folder / "server.log")
        server.start()
        try:
            return watch_job(server.url, files)
        finally:
            server.stop()


def watch_job(url: str, files: list[Path]) -> tuple[dict, float, dict]:
    """Upload ``files`` as one job and watch it; ETA samples and the finish time.

    Times are seconds since the upload request was answered.
    """
    headers = {"X-User-Role": "admin"}
    parts = [("files", (path.name, path.read_bytes(), "image/jpeg")) for path in files]
    samples: dict[float, tuple[float, int, float, float]] = {}
    with httpx2.Client(base_url=url, headers=headers, timeout=300) as http:
        answer = http.post("/api/v1/admin/upload", files=parts).json()
        start = time.perf_counter()
        while True:
            job = http.get(
                f"/api/v1/admin/upload/jobs/{answer['job_id']}",
                params={"items_limit": 1},
            ).json()
            now = time.perf_counter() - start
            if job["status"] not in ("PENDING", "RUNNING"):
                return samples, now, job
            done = job["completed_items"] + job["failed_items"]
            for share in CHECKPOINTS:
                reached = done >= share * job["total_items"]
                if reached and share not in samples and job["eta_seconds"] is not None:
                    samples[share] = (
                        now,
                        done,
                        job["items_per_second"],
                        job["eta_seconds"],
                    )
            time.sleep(POLL_SECONDS)


if __name__ == "__main__":
    main()
