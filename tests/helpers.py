"""Helpers shared by the tests: uploads, waiting for jobs, server processes."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "tests" / "fixtures" / "photos"
SAMPLE_PHOTOS = sorted(PHOTOS.glob("*.jpg"))
ADMIN = {"X-User-Role": "admin"}
FINAL = {"COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED"}

# The metric keys every analysis must have (the product's stable contract).
STABLE_KEYS = {
    "fractal.dimension",
    "fractal.r2",
    *(
        f"texture.{scale}.{name}"
        for scale in ("fine", "coarse")
        for name in ("contrast", "homogeneity", "energy", "correlation", "entropy")
    ),
    "color.lightness_mean",
    "color.lightness_std",
    "color.chroma_mean",
    "color.colorfulness",
    "color.warm_fraction",
    "complexity.entropy_bits",
    "complexity.edge_density",
    "complexity.compression_ratio",
}


def upload(client, paths: list[Path] | list[tuple[str, bytes]], headers=ADMIN):
    files = []
    for entry in paths:
        if isinstance(entry, Path):
            files.append(("files", (entry.name, entry.read_bytes(), "image/jpeg")))
        else:
            files.append(("files", (entry[0], entry[1], "application/octet-stream")))
    return client.post("/api/v1/admin/upload", files=files, headers=headers)


def wait_for_job(client, job_id: int, *, timeout: float = 120, headers=ADMIN) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/admin/upload/jobs/{job_id}", headers=headers).json()
        if job["status"] in FINAL:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s: {job}")


def jpeg_bytes(seed: int, size: tuple[int, int] = (320, 240)) -> bytes:
    """A distinct photo-like JPEG: a crop of a sample photo chosen by ``seed``."""
    with Image.open(SAMPLE_PHOTOS[seed % len(SAMPLE_PHOTOS)]) as source:
        source.draft("RGB", (source.width // 4, source.height // 4))
        source = source.convert("RGB")
    width, height = min(size[0], source.width // 2), min(size[1], source.height // 2)
    left = (seed * 37) % (source.width - width)
    top = (seed * 23) % (source.height - height)
    crop = source.crop((left, top, left + width, top + height)).resize(size)
    buffer = io.BytesIO()
    crop.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``image-tagger serve`` in a child process, for tests that kill it."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.env = {**env, "IMAGE_TAGGER_PORT": str(self.port)}
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "image_tagger.cli", "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited: {self.log_path.read_text()}")
            try:
                if httpx2.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx2.HTTPError:
                time.sleep(0.2)
        raise AssertionError("server did not start")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def child_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGE_TAGGER_")}
    env.update({"IMAGE_TAGGER_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)})
    if "IMAGE_TAGGER_DATABASE_URL" in os.environ:  # the PostgreSQL test pass
        env["IMAGE_TAGGER_DATABASE_URL"] = os.environ["IMAGE_TAGGER_DATABASE_URL"]
    env.update(extra)
    return env
