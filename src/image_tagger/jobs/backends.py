"""Dispatch backends: how a committed job reaches a runner.

``inprocess`` runs jobs in this process: runner threads claim items and send
the pixel work to a pool of processes, one per core, so the API stays
responsive. ``none`` only records jobs, for ``python -m scripts.run_upload_job``.
``celery`` only dispatches: one task per item to ``image-tagger worker``
processes, on any number of machines (``image_tagger.jobs.celery_app``).
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import structlog

from image_tagger.db import session_scope
from image_tagger.jobs import service
from image_tagger.jobs.pool import ComputePool
from image_tagger.jobs.runner import owner_alive, run_upload_job
from image_tagger.settings import Settings
from image_tagger.vlm.ledger import interrupt_stale_calls

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


SHUTDOWN_GRACE_SECONDS = 10.0
# A job recorded this recently and not started yet is left to the process that
# recorded it (an ``ingest`` claims its first items within a moment).
NEW_JOB_GRACE_SECONDS = 10.0


class InProcessBackend:
    """Runner threads in this process, pixel work in a process per core."""

    name = "inprocess"

    def __init__(self, settings: Settings, *, sweep: bool = True) -> None:
        self.settings = settings
        # Two runners per analysis process: while one records a result and
        # claims the next item, the other's image keeps the process busy.
        # With a VLM provider, as many more as calls may run at once: those
        # runners wait on the provider while the others keep the pool busy.
        self.runners = 2 * settings.workers
        if settings.vlm_configured:
            self.runners += settings.vlm_concurrency
        self._sweep_enabled = sweep
        self._runners = ThreadPoolExecutor(
            max_workers=self.runners, thread_name_prefix="runner"
        )
        self._pool = ComputePool(
            settings.workers,
            max_pixels=settings.max_image_pixels,
            timeout_seconds=settings.item_timeout_seconds,
        )
        self._active: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
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
            future = self._runners.submit(self._run, job_id)
            # Called when the runner ends, and also when it is cancelled unrun.
            future.add_done_callback(lambda _future, job=job_id: self._ended(job))

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

    def _ended(self, job_id: int) -> None:
        with self._lock:
            self._active[job_id] -= 1
            if self._active[job_id] <= 0:
                del self._active[job_id]
            self._idle.notify_all()

    def sweep(self) -> None:
        """Requeue items whose lease expired; dispatch jobs that no runner, here
        or in another live process (an ``ingest``, a worker), is working on;
        mark interrupted the model calls a stopped process left in flight."""
        with session_scope(write=True) as session:
            service.recover_expired_leases(
                session, max_attempts=self.settings.max_attempts
            )
            interrupt_stale_calls(session, self.settings)
        with session_scope() as session:
            waiting = service.unattended_jobs(
                session, alive=owner_alive, grace_seconds=NEW_JOB_GRACE_SECONDS
            )
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

    def shutdown(self, *, grace_seconds: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Start no new item; give the items in hand a moment, then stop.

        Items still being analysed after ``grace_seconds`` go back to pending
        (their analysis process is stopped) and run again at the next start.
        """
        self._stop.set()
        self._runners.shutdown(wait=False, cancel_futures=True)
        with self._idle:
            self._idle.wait_for(lambda: not self._active, timeout=grace_seconds)
        self._pool.shutdown()
        self._runners.shutdown(wait=True)

    def health(self) -> dict:
        with self._lock:
            active = sorted(self._active)
        return {
            "backend": self.name,
            "ok": not self._stop.is_set(),
            "workers": self.settings.workers,
            "active_jobs": active,
        }


class CeleryBackend:
    """The API sends one task per pending item; Celery workers run them.

    Workers recover expired leases themselves, so this backend does nothing
    but send tasks, after the job's commit.
    """

    name = "celery"

    def __init__(self, settings: Settings) -> None:
        from image_tagger.jobs.celery_app import create_celery_app

        self.settings = settings
        self.app = create_celery_app(settings)

    def start(self) -> None:
        pass

    def dispatch(self, job_id: int) -> None:
        from image_tagger.jobs.celery_app import pending_items, send_item_tasks

        count = pending_items([job_id]).get(job_id, 0)
        try:
            send_item_tasks(self.app, job_id, count, queue=self.settings.celery_queue)
        except Exception as exc:
            # The job is committed: a worker's sweep sends its tasks later.
            log.error("job.dispatch_failed", job_id=job_id, error=str(exc))
            return
        log.info("job.dispatched", job_id=job_id, tasks=count)

    def shutdown(self) -> None:
        self.app.close()

    def health(self) -> dict:
        from image_tagger.jobs.celery_app import broker_health

        return {
            "backend": self.name,
            **broker_health(self.app, self.settings.celery_queue),
        }


def create_backend(settings: Settings) -> JobBackend:
    if settings.queue == "inprocess":
        return InProcessBackend(settings)
    if settings.queue == "none":
        return RecordOnlyBackend()
    if settings.queue == "celery":
        if settings.unavailable_queue():
            raise ValueError(settings.unavailable_queue())
        return CeleryBackend(settings)
    raise ValueError(f"unknown queue {settings.queue!r}")
