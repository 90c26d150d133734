"""The scaled-out mode in tests and benchmarks: Redis, and worker processes.

Each test gets its own Celery queue and Redis key prefix, so test runs that
share one Redis (CI, other developers) never take each other's tasks.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import ROOT

BROKER_ENV = "IMAGE_TAGGER_TEST_BROKER_URL"
DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
SUCCEEDED = re.compile(r"process_item\[[^\]]+\] succeeded in [0-9.e-]+s: (\w+)")


# Read once at import: each test's fixture clears the IMAGE_TAGGER_ variables.
_BROKER_URL = os.environ.get(BROKER_ENV, DEFAULT_BROKER)


def broker_url() -> str:
    return _BROKER_URL


def redis_unreachable() -> str | None:
    """Why the test broker cannot be used, or None."""
    import redis

    try:
        redis.Redis.from_url(broker_url(), socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        return (
            f"Redis at {broker_url()} is unreachable ({exc}); start it (.ci/run "
            f"does) or point {BROKER_ENV} at a server"
        )
    return None


def queue_settings() -> dict[str, str]:
    """Environment of a private queue: its own name and Redis key prefix."""
    tag = f"itk-test-{secrets.token_hex(4)}"
    return {
        "IMAGE_TAGGER_QUEUE": "celery",
        "IMAGE_TAGGER_BROKER_URL": broker_url(),
        "IMAGE_TAGGER_CELERY_QUEUE": tag,
        "IMAGE_TAGGER_BROKER_KEY_PREFIX": f"{tag}:",
    }


def remove_keys(prefix: str) -> None:
    """Delete every Redis key a private queue left behind."""
    import redis

    client = redis.Redis.from_url(broker_url())
    keys = list(client.scan_iter(match=f"{prefix}*", count=500))
    if keys:
        client.delete(*keys)


class WorkerProcess:
    """``image-tagger worker`` in a child process, for tests that kill it."""

    def __init__(self, env: dict[str, str], log_path: Path, *, name: str) -> None:
        self.env = env
        self.log_path = log_path
        self.name = name
        self.process: subprocess.Popen | None = None

    @property
    def nodename(self) -> str:
        return f"{self.name}@{os.uname().nodename}"

    def start(self, *, concurrency: int = 1, timeout: float = 60) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "image_tagger.cli",
                    "worker",
                    f"--concurrency={concurrency}",
                    f"--name={self.nodename}",
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                # Its own session, as a worker started as a service has: Linux
                # shares CPU time fairly between sessions (autogroups), so
                # workers in one session with their caller would share one
                # share of a busy machine.
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while f"{self.nodename} ready." not in self.log():
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited: {self.log()}")
            assert time.monotonic() < deadline, f"worker not ready: {self.log()}"
            time.sleep(0.2)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def items_recorded(self) -> list[int]:
        """Items this worker's tasks processed (a task that found none is left out)."""
        return [
            int(found) for found in SUCCEEDED.findall(self.log()) if found != "None"
        ]

    def empty_tasks(self) -> int:
        """Tasks that found no item to claim."""
        return SUCCEEDED.findall(self.log()).count("None")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
