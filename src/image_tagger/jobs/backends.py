"""Dispatch backends: how a committed job reaches a runner.

``inprocess`` runs jobs in this process: runner threads claim items and send
the pixel work to a pool of processes, one per core, so the API stays
responsive. ``none`` only records jobs, for ``python -m scripts.run_upload_job``.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections import Counter
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Protocol

import structlog

from image_tagger.db import session_scope
from image_tagger.jobs import service
from image_tagger.jobs.runner import run_upload_job
from image_tagger.settings import Settings

log = structlog.get_logger(__name__)


class JobBackend(Protocol):
    name: str

    def start(self) -> None: ...

    def dispatch(self, job_id: int) -> None: ...

    def shutdown(self) -> None: ...

    def health(self) -> dict: ...


class RecordOnlyBackend:
    """Jobs are recorded and left for a worker process to run."""

    name = "none"

    def start(self) -> None:
        pass

    def dispatch(self, job_id: int) -> None:
        log.info(
            "job.recorded",
            job_id=job_id,
            hint=f"run: python -m scripts.run_upload_job {job_id}",
        )

    def shutdown(self) -> None:
        pass

    def health(self) -> dict:
        return {"backend": self.name, "ok": True}


def _init_analysis_process(max_pixels: int) -> None:
    """Ready an analysis process: one thread each, the pixel limit, a watchdog."""
    import cv2
    import pillow_heif

    import image_tagger.science.compute  # noqa: F401  (loaded before any item)
    from image_tagger.images.formats import apply_pixel_limit

    cv2.setNumThreads(1)
    pillow_heif.options.DECODE_THREADS = 1
    apply_pixel_limit(max_pixels)
    parent = os.getppid()
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: int) -> None:
    """End this process when its parent is gone (a server killed with SIGKILL)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _ready() -> bool:
    return True


class ComputePool:
    """A process pool for the pixel work that replaces itself if a child dies."""

    def __init__(self, processes: int, *, max_pixels: int) -> None:
        self.processes = processes
        self.max_pixels = max_pixels
        self._lock = threading.Lock()
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(
            max_workers=self.processes,
            mp_context=context,
            initializer=_init_analysis_process,
            initargs=(self.max_pixels,),
        )

    def warm_up(self) -> None:
        """Start every process now, so the first items do not wait for them."""
        for _ in range(self.processes):
            self.submit(_ready)

    def submit(self, fn, /, *args, **kwargs) -> Future:
        with self._lock:
            try:
                return self._pool.submit(fn, *args, **kwargs)
            except BrokenProcessPool:
                log.warning("pool.replaced", reason="a worker process died")
                self._pool = self._new_pool()
                return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class InProcessBackend:
    """Runner threads in this process, pixel work in a process per core."""

    name = "inprocess"

    def __init__(self, settings: Settings, *, sweep: bool = True) -> None:
        self.settings = settings
        # Two runners per analysis process: while one records a result and
        # claims the next item, the other's image keeps the process busy.
        self.runners = 2 * settings.workers
        self._sweep_enabled = sweep
        self._runners = ThreadPoolExecutor(
            max_workers=self.runners, thread_name_prefix="runner"
        )
        self._pool = ComputePool(settings.workers, max_pixels=settings.max_image_pixels)
        self._active: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    def start(self) -> None:
        """Warm the analysis processes, recover what a previous process left."""
        self._pool.warm_up()
        self.sweep()
        if self._sweep_enabled:
            self._sweeper = threading.Thread(
                target=self._sweep_forever, name="lease-sweeper", daemon=True
            )
            self._sweeper.start()

    def dispatch(self, job_id: int) -> None:
        """Start runners on the job (those that find no item stop at once)."""
        for _ in range(self.runners):
            with self._lock:
                self._active[job_id] += 1
            self._runners.submit(self._run, job_id)

    def _run(self, job_id: int) -> None:
        try:
            if not self._stop.is_set():
                run_upload_job(
                    job_id,
                    executor=self._pool,
                    stop=self._stop,
                    settings=self.settings,
                    until_final=False,
                )
        except Exception:
            log.exception("runner.crashed", job_id=job_id)
        finally:
            with self._lock:
                self._active[job_id] -= 1
                if self._active[job_id] <= 0:
                    del self._active[job_id]

    def sweep(self) -> None:
        """Requeue items whose lease expired; dispatch jobs no runner here serves."""
        with session_scope(write=True) as session:
            service.recover_expired_leases(
                session, max_attempts=self.settings.max_attempts
            )
        with session_scope() as session:
            waiting = service.jobs_with_pending_items(session)
        with self._lock:
            idle = [job_id for job_id in waiting if job_id not in self._active]
        for job_id in idle:
            log.info("job.redispatched", job_id=job_id)
            self.dispatch(job_id)

    def _sweep_forever(self) -> None:
        while not self._stop.wait(self.settings.recovery_interval_seconds):
            try:
                self.sweep()
            except Exception:
                log.exception("sweep.failed")

    def is_idle(self) -> bool:
        with self._lock:
            return not self._active

    def shutdown(self) -> None:
        """Start no new item; wait for the items in hand to be recorded."""
        self._stop.set()
        self._runners.shutdown(wait=True, cancel_futures=True)
        self._pool.shutdown()

    def health(self) -> dict:
        with self._lock:
            active = sorted(self._active)
        return {
            "backend": self.name,
            "ok": not self._stop.is_set(),
            "workers": self.settings.workers,
            "active_jobs": active,
        }


def create_backend(settings: Settings) -> JobBackend:
    if settings.queue == "inprocess":
        return InProcessBackend(settings)
    if settings.queue == "none":
        return RecordOnlyBackend()
    raise ValueError(settings.unavailable_queue())
