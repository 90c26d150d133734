"""Scaled-out throughput: the sample photos through one worker process, then two.

Each worker is ``image-tagger worker --concurrency 1`` (one analysis process),
on PostgreSQL and Redis. A batch of the sample photos (each ``COPIES`` times,
with distinct bytes, so every copy is analysed) is dispatched through the Celery
backend, as the API does, to one worker and then, on a fresh database, to two.
Each round shuffles the batch (seeded by the round), so heavy and light
photos mix as in a real batch rather than the heaviest coming last. The time
is dispatch to final status; the ratio one / two is the speed-up
(bar: at least 1.7 on two cores). Rounds alternate the order; every ratio is
printed with the cores the workers got and how busy the whole machine was
(other work on a shared machine takes cores from the workers), then the
median. Beside each round, the same images analysed by bare processes (one,
then two, taking images from a shared queue; no database, broker or worker)
give the machine's own ceiling for the ratio in that moment. Each worker runs
in a session
of its own, as a service does: Linux shares the CPU fairly between sessions,
so workers sharing one session would share one session's time.

Needs PostgreSQL (``IMAGE_TAGGER_TEST_POSTGRES_URL``) and Redis
(``IMAGE_TAGGER_TEST_BROKER_URL``); says so and skips when either is down.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from sqlalchemy import create_engine, make_url, text  # noqa: E402
from sqlalchemy.exc import OperationalError  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402
from workers import (  # noqa: E402
    WorkerProcess,
    queue_settings,
    redis_unreachable,
    remove_keys,
)

from bench.photos import sample_photos  # noqa: E402

COPIES = 12  # 180 images of the 15 shared photos: a batch, not a sprint
BAR = 1.7
POSTGRES = os.environ.get(
    "IMAGE_TAGGER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1/test"
)


def batch_files(folder: Path, copies: int = COPIES) -> list[Path]:
    """Each photo ``COPIES`` times; a few bytes after the image make each distinct
    (decoders ignore them), so every copy costs a full analysis."""
    files = []
    for copy in range(copies):
        for photo in sample_photos():
            target = folder / f"{photo.stem}-{copy}{photo.suffix}"
            target.write_bytes(photo.read_bytes() + f"copy {copy}".encode())
            files.append(target)
    return files


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--copies", type=int, default=COPIES, help="copies of each sample photo"
    )
    args = parser.parse_args(argv)

    from image_tagger.logging import configure_logging

    configure_logging(level="WARNING", json=False)  # the table only
    unavailable = redis_unreachable() or _postgres_unreachable()
    if unavailable:
        print(f"worker scaling: skipped: {unavailable}")
        return

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "batch").mkdir()
        files = batch_files(folder / "batch", args.copies)
        print(
            f"worker scaling: {len(files)} images ({len(files) // args.copies} "
            f"sample photos x {args.copies}), {os.cpu_count()} cores, "
            "PostgreSQL + Redis"
        )
        ratios, ceilings = [], []
        for round_ in range(args.rounds):
            # A batch in an order of its own each round (the same for one and
            # two workers), so heavy and light photos mix as in a real batch.
            batch = random.Random(round_).sample(files, len(files))
            order = (1, 2) if round_ % 2 == 0 else (2, 1)
            runs = {n: run_batch(folder, batch, workers=n) for n in order}
            ratio = runs[1].seconds / runs[2].seconds
            ratios.append(ratio)
            ceiling = bare_ratio(batch, folder / "bare")
            ceilings.append(ceiling)
            print(
                f"  round {round_ + 1}: ratio {ratio:.2f}   (bare analysis, one / "
                f"two processes: {ceiling:.2f})"
            )
            for n in (1, 2):
                print(f"    {'one' if n == 1 else 'two'} {runs[n]}")
    print(
        f"  ratio one / two workers: median {statistics.median(ratios):.2f}, "
        f"min {min(ratios):.2f}, max {max(ratios):.2f}   (bar: >= {BAR}); "
        f"bare analysis: median {statistics.median(ceilings):.2f}"
    )


def bare_ratio(files: list[Path], folder: Path) -> float:
    """Time of the images through one bare analysis process over two."""
    folder.mkdir(exist_ok=True)
    work = [(path, folder / f"{n}.webp") for n, path in enumerate(files)]
    seconds = {}
    context = multiprocessing.get_context("spawn")
    for processes in (1, 2):
        with context.Pool(processes, initializer=_one_thread) as pool:
            pool.starmap(_analyse, work[:processes])  # started and imported
            started = time.perf_counter()
            for _ in pool.imap_unordered(_analyse_pair, work, chunksize=1):
                pass
            seconds[processes] = time.perf_counter() - started
    return seconds[1] / seconds[2]


def _one_thread() -> None:
    import cv2

    cv2.setNumThreads(1)  # as in the analysis processes of a worker


def _analyse(path: Path, thumbnail: Path) -> None:
    from image_tagger.science.pipeline import decode_and_measure

    decode_and_measure(path, thumbnail)


def _analyse_pair(pair: tuple[Path, Path]) -> None:
    _analyse(*pair)


@dataclass(frozen=True)
class Run:
    seconds: float
    worker_cpu_seconds: float  # the workers' and their analysis processes'
    busy_cores: float  # the whole machine's, all users

    def __str__(self) -> str:
        return (
            f"{self.seconds:6.2f} s; the workers used "
            f"{self.worker_cpu_seconds / self.seconds:.2f} cores, the machine "
            f"was busy on {self.busy_cores:.2f} of {os.cpu_count()}"
        )


def run_batch(folder: Path, files: list[Path], *, workers: int) -> Run:
    """Dispatch to final status with ``workers`` workers: time and CPU use."""
    run = folder / f"run-{workers}-{secrets.token_hex(3)}"
    with _database() as database_url:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("IMAGE_TAGGER")},
            **queue_settings(),
            "IMAGE_TAGGER_DATABASE_URL": database_url,
            "IMAGE_TAGGER_DATA_DIR": str(run / "data"),
            "IMAGE_TAGGER_LOG_LEVEL": "INFO",
            "PYTHONPATH": str(ROOT),
        }
        os.environ.update(env)
        _reset()
        job_id = _record_job(files)
        processes = [
            WorkerProcess(env, run / f"worker{n}.log", name=f"bench-{n}-{os.getpid()}")
            for n in range(workers)
        ]
        try:
            for worker in processes:
                worker.start(concurrency=1)
            time.sleep(3)  # the analysis processes finish starting
            sessions = {worker.process.pid for worker in processes}
            cpu_before, machine_before = _cpu_seconds(sessions), _machine_seconds()
            seconds = _dispatch_and_wait(job_id)
            cpu = _cpu_seconds(sessions) - cpu_before
            busy, total = (
                a - b for a, b in zip(_machine_seconds(), machine_before, strict=True)
            )
        finally:
            for worker in processes:
                worker.stop()
            remove_keys(env["IMAGE_TAGGER_BROKER_KEY_PREFIX"])
            _reset()
    counts = [len(worker.items_recorded()) for worker in processes]
    assert sum(counts) == len(files), counts
    return Run(seconds, cpu, busy / total * (os.cpu_count() or 1))


def _cpu_seconds(sessions: set[int]) -> float:
    """CPU time of every process in these sessions (a worker and its children)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) in sessions:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _machine_seconds() -> tuple[float, float]:
    """CPU time the machine spent busy, and in all, since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / 100, sum(values) / 100


def _record_job(files: list[Path]) -> int:
    from image_tagger.migrations import upgrade_database
    from image_tagger.settings import get_settings
    from image_tagger.uploads.service import receive_upload
    from image_tagger.uploads.storage import stage_path

    settings = get_settings()
    settings.ensure_dirs()
    upgrade_database()
    staged = [
        stage_path(settings.tmp_dir, path, max_bytes=settings.max_upload_bytes)
        for path in files
    ]
    return receive_upload(staged, settings=settings, created_by="bench").job.id


def _dispatch_and_wait(job_id: int) -> float:
    from sqlalchemy import select

    from image_tagger.db import get_engine
    from image_tagger.jobs.backends import CeleryBackend
    from image_tagger.jobs.models import FINAL_JOB_STATUSES, UploadJob
    from image_tagger.settings import get_settings

    backend = CeleryBackend(get_settings())
    # The watcher reads one column on one connection: little CPU taken from
    # the workers, whose cores it shares.
    status_of_job = select(UploadJob.status).where(UploadJob.id == job_id)
    with get_engine().connect() as connection:
        started = time.perf_counter()
        backend.dispatch(job_id)
        while True:
            status = connection.scalar(status_of_job)
            connection.rollback()
            if status in FINAL_JOB_STATUSES:
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - started
    backend.shutdown()
    assert status == "COMPLETED", status
    return seconds


def _reset() -> None:
    from image_tagger.db import dispose_engines
    from image_tagger.settings import reset_settings

    dispose_engines()
    reset_settings()


def _postgres_unreachable() -> str | None:
    try:
        with _server().connect():
            return None
    except OperationalError as exc:
        return f"PostgreSQL at {make_url(POSTGRES)!r} is unreachable ({exc.orig})"


def _server():
    return create_engine(
        POSTGRES,
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
        connect_args={"connect_timeout": 3},
    )


class _database:
    """A new PostgreSQL database for one run, dropped after it."""

    def __enter__(self) -> str:
        self.name = f"itk_bench_{secrets.token_hex(6)}"
        with _server().connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{self.name}"'))
        return make_url(POSTGRES).set(database=self.name).render_as_string(False)

    def __exit__(self, *exc_info) -> None:
        with _server().connect() as connection:
            connection.execute(text(f'DROP DATABASE "{self.name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
