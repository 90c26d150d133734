"""One request of 200 files of 2 MB: the server's memory, and ingest speed.

- Memory: the server's peak resident memory (VmHWM, reset just before the
  request where the kernel allows it) minus its resident memory just before,
  also sampled every 10 ms. Bar: under 64 MB.
- Speed: the same request to a bare endpoint that only streams the parts to
  disk (bench/bare_upload.py, same parser, same server), measured in this run;
  ingest (stream, hash, check headers, store, record the job) must reach 50% of
  its throughput.

The server only records the job (IMAGE_TAGGER_QUEUE=none), so the analysis of
400 MB of photos does not compete with the upload for the two cores.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from helpers import ServerProcess, child_env, free_port  # noqa: E402

FILES = 200
FILE_BYTES = 2_000_000
ROUNDS = 3
MEMORY_BAR_MB = 64


def make_files(folder: Path) -> list[Path]:
    """``FILES`` distinct JPEGs of exactly ``FILE_BYTES`` (a noisy image, cut)."""
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, (1800, 1600, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="JPEG", quality=90)
    scan = buffer.getvalue()[2:-2]  # without its start and end markers
    assert len(scan) > FILE_BYTES, len(scan)
    paths = []
    for n in range(FILES):
        # A comment segment right after the start marker makes each file distinct.
        comment = f"file {n:04d}".encode()
        segment = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
        keep = FILE_BYTES - 2 - len(segment) - 2
        path = folder / f"photo-{n:04d}.jpg"
        path.write_bytes(b"\xff\xd8" + segment + scan[:keep] + b"\xff\xd9")
        paths.append(path)
    return paths


def post_files(url: str, paths: list[Path], headers: dict) -> tuple[float, dict]:
    handles = [path.open("rb") for path in paths]
    try:
        parts = [
            ("files", (p.name, h, "image/jpeg"))
            for p, h in zip(paths, handles, strict=True)
        ]
        with httpx2.Client(timeout=600, headers=headers) as http:
            started = time.perf_counter()
            response = http.post(url, files=parts)
            seconds = time.perf_counter() - started
    finally:
        for handle in handles:
            handle.close()
    response.raise_for_status()
    return seconds, response.json()


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux clear_refs); False if refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class MemoryWatch:
    """Samples a process's resident memory while a request runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_reset = reset_peak(pid)
        self.before_kb = rss_kb(pid)
        self.sampled_peak_kb = self.before_kb
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.sampled_peak_kb = max(self.sampled_peak_kb, rss_kb(self.pid))
            time.sleep(0.01)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.hwm_kb = rss_kb(self.pid, "VmHWM")

    @property
    def growth_mb(self) -> float:
        return (max(self.hwm_kb, self.sampled_peak_kb) - self.before_kb) / 1024


class BareServer:
    """bench/bare_upload.py in a child process."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.bare_upload", str(self.port), str(folder)],
            cwd=ROOT,
        )
        _wait_healthy(self.url, self.process)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


def measure_bare(server: BareServer, paths: list[Path]) -> tuple[float, float]:
    """(seconds, memory growth in MB) of one request to the bare endpoint."""
    with MemoryWatch(server.process.pid) as watch:
        seconds, answer = post_files(f"{server.url}/upload", paths, {})
    assert answer["files"] == len(paths), answer
    return seconds, watch.growth_mb


def measure_ingest(folder: Path, paths: list[Path], warm: Path) -> tuple:
    """(seconds, memory growth in MB, peak reset?) of one upload to a new server."""
    admin = {"X-User-Role": "admin"}
    data = folder / "data"
    env = child_env(
        data,
        IMAGE_TAGGER_AUTH_MODE="header",
        IMAGE_TAGGER_QUEUE="none",
        IMAGE_TAGGER_LOG_LEVEL="WARNING",
    )
    server = ServerProcess(env, folder / "server.log")
    server.start()
    try:
        url = f"{server.url}/api/v1/admin/upload"
        post_files(url, [warm], admin)  # warm up
        with MemoryWatch(server.process.pid) as watch:
            seconds, answer = post_files(url, paths, admin)
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)
    statuses = {verdict["status"] for verdict in answer["files"]}
    assert statuses == {"accepted"}, statuses
    assert len(answer["image_ids"]) == len(paths)
    return seconds, watch.growth_mb, watch.peak_reset


def _wait_healthy(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the bare upload server exited")
        try:
            httpx2.get(f"{url}/healthz", timeout=1)
            return
        except httpx2.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the bare upload server did not start")


def main() -> bool:
    bare_times, ingest_times = [], []
    bare_growth = ingest_growth = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = make_files(folder)
        warm = folder / "warm.jpg"
        Image.new("RGB", (64, 48), "grey").save(warm)
        total_mb = sum(p.stat().st_size for p in paths) / 1e6

        bare_server = BareServer(folder / "bare")
        try:
            post_files(f"{bare_server.url}/upload", [warm], {})  # warm up
            # Alternate the two, so that both meet the same disk and neighbours.
            for _ in range(ROUNDS):
                seconds, growth = measure_bare(bare_server, paths)
                bare_times.append(seconds)
                bare_growth = max(bare_growth, growth)
                seconds, growth, peak_reset = measure_ingest(folder, paths, warm)
                ingest_times.append(seconds)
                ingest_growth = max(ingest_growth, growth)
        finally:
            bare_server.stop()

    bare, ingest = min(bare_times), min(ingest_times)
    ratio = bare / ingest  # ingest throughput over bare throughput
    print(
        f"upload memory and speed: {FILES} files of {total_mb / FILES:.2f} MB "
        f"({total_mb:.0f} MB) in one request, best of {ROUNDS}"
    )
    print(
        f"  bare endpoint (parts to disk)  {bare:6.2f} s  {total_mb / bare:6.0f} MB/s"
        f"   baseline; memory growth {bare_growth:5.1f} MB"
    )
    print(
        f"  ingest POST /api/v1/admin/upload {ingest:6.2f} s  "
        f"{total_mb / ingest:6.0f} MB/s   {ratio:.0%} of the baseline (bar: >= 50%)"
    )
    print(
        f"  server memory growth during the request {ingest_growth:5.1f} MB "
        f"(bar: < {MEMORY_BAR_MB} MB; peak from "
        f"{'VmHWM reset before the request' if peak_reset else 'VmRSS samples'})"
    )
    print(
        "  every round (s): bare "
        + ", ".join(f"{t:.2f}" for t in bare_times)
        + "; ingest "
        + ", ".join(f"{t:.2f}" for t in ingest_times)
    )
    ok = ratio >= 0.5 and ingest_growth < MEMORY_BAR_MB
    print(f"  {'PASS' if ok else 'FAIL'}")
    return ok


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
