"""The distributed queue: Celery on Redis (or RabbitMQ), one task per item.

The API commits a job, then sends one ``process_item`` task per pending item.
A task takes whichever item of its job is next, through the same claim, lease
and record code as the in-process runner, so a task delivered twice, or one
task too many, finds nothing to claim and ends at once. Tasks are acknowledged
only once done (late acknowledgement) and a worker takes one at a time per
runner (prefetch of one), so a killed worker's tasks go back to the broker.

Each worker (``image-tagger worker``) holds a pool of analysis processes, like
the server does, and runner threads that claim and record items. Every worker
also sweeps (:class:`Sweeper`): it puts items whose lease expired back to
pending and sends their tasks again, and sends tasks for jobs whose items wait
while the queue stays empty (tasks lost). No API is needed for recovery.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import structlog
from celery import Celery, signals
from kombu.exceptions import OperationalError

from image_tagger.db import session_scope
from image_tagger.jobs import service
from image_tagger.jobs.pool import ComputePool
from image_tagger.jobs.runner import process_one_item
from image_tagger.settings import Settings, get_settings, hide_password
from image_tagger.vlm.ledger import interrupt_stale_calls

log = structlog.get_logger(__name__)

PROCESS_ITEM = "image_tagger.process_item"
BROKER_TIMEOUT_SECONDS = 3.0
#: Runner threads per analysis process: one claims and records while the
#: other's image is analysed, so the process never waits for the database.
RUNNERS_PER_PROCESS = 2


def create_celery_app(settings: Settings) -> Celery:
    """A Celery app for ``settings``: its broker, queue and delivery rules."""
    app = Celery("image_tagger", broker=settings.broker_url, set_as_current=False)
    transport_options: dict = {
        "visibility_timeout": settings.broker_visibility_timeout_seconds,
    }
    if settings.broker_key_prefix:
        transport_options["global_keyprefix"] = settings.broker_key_prefix
    app.conf.update(
        task_default_queue=settings.celery_queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=BROKER_TIMEOUT_SECONDS,
        # Task events only while something watches: Flower turns them on
        # when it starts (and every few seconds, for workers started later),
        # as `celery control enable_events` does. Off, they cost the workers
        # nothing, per item, that no one reads.
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
    )
    app.task(name=PROCESS_ITEM, ignore_result=True)(process_item)
    return app


def process_item(job_id: int) -> int | None:
    """Process the next pending item of the job; the item's id, or None."""
    runtime = WorkerRuntime.current
    if runtime is None:  # run outside a worker (eagerly): compute in this thread
        return process_one_item(job_id)
    return process_one_item(
        job_id, executor=runtime.pool, stop=runtime.stop, settings=runtime.settings
    )


def send_item_tasks(app: Celery, job_id: int, count: int, *, queue: str) -> None:
    """One task per item; each takes whichever item of the job is next."""
    with app.producer_or_acquire() as producer:
        for _ in range(count):
            app.send_task(PROCESS_ITEM, args=(job_id,), queue=queue, producer=producer)


def pending_items(job_ids: Iterable[int] | None = None) -> dict[int, int]:
    """Pending items per unfinished job (of ``job_ids``, or all)."""
    with session_scope() as session:
        return service.pending_item_counts(session, job_ids)


def queued_tasks(app: Celery, queue: str) -> int:
    """Tasks waiting in the broker's queue (not those held by workers)."""
    with app.connection_for_write() as connection:
        connection.ensure_connection(
            max_retries=1, interval_start=0, timeout=BROKER_TIMEOUT_SECONDS
        )
        channel = connection.default_channel
        if connection.transport_cls in ("redis", "rediss"):
            # Redis: the length of the queue's lists. (A passive declare looks
            # for the queue without the key prefix, and finds none with one.)
            return channel._size(queue)
        try:
            declared = channel.queue_declare(queue=queue, passive=True)
        except connection.channel_errors:
            return 0  # the queue was never declared
        return declared.message_count


def broker_health(app: Celery, queue: str) -> dict:
    """Whether the broker answers, and how many tasks wait in the queue."""
    broker = hide_password(app.conf.broker_url)
    try:
        queued = queued_tasks(app, queue)
    except (OperationalError, OSError) as exc:
        return {"ok": False, "broker": broker, "queue": queue, "error": str(exc)}
    return {"ok": True, "broker": broker, "queue": queue, "queued": queued}


class Sweeper:
    """Recovers expired leases and sends the tasks that items are missing.

    A job whose leases expired gets a task per pending item. So does a job
    whose items waited, in the same number, at two sweeps in a row while the
    queue was empty: its tasks were lost (a broker restarted without its
    data, a task taken by a worker killed before it claimed). Surplus tasks
    find nothing and end; the rule only keeps them rare.
    """

    def __init__(self, app: Celery, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self._waiting_on_empty_queue: dict[int, int] = {}

    def run(self) -> dict[int, int]:
        """One sweep; returns the tasks sent per job. Model calls a stopped
        process left in flight are marked interrupted."""
        with session_scope(write=True) as session:
            recovered = service.recover_expired_leases(
                session, max_attempts=self.settings.max_attempts
            )
            interrupt_stale_calls(session, self.settings)
        waiting = pending_items()
        queue_empty = bool(waiting) and (
            queued_tasks(self.app, self.settings.celery_queue) == 0
        )
        before = self._waiting_on_empty_queue
        self._waiting_on_empty_queue = waiting if queue_empty else {}

        send = {
            job_id: count
            for job_id, count in waiting.items()
            if job_id in recovered or (queue_empty and before.get(job_id) == count)
        }
        for job_id, count in send.items():
            log.info("job.redispatched", job_id=job_id, tasks=count)
            send_item_tasks(self.app, job_id, count, queue=self.settings.celery_queue)
        return send


class WorkerRuntime:
    """What one worker process holds: its analysis processes and its sweeper."""

    current: WorkerRuntime | None = None

    def __init__(self, app: Celery, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.pool = ComputePool(
            settings.workers,
            max_pixels=settings.max_image_pixels,
            timeout_seconds=settings.item_timeout_seconds,
        )
        self.sweeper = Sweeper(app, settings)
        self.stop = threading.Event()
        self._thread = threading.Thread(
            target=self._sweep_forever, name="lease-sweeper", daemon=True
        )

    def start(self) -> None:
        self.pool.warm_up()
        self._thread.start()

    def _sweep_forever(self) -> None:
        while True:
            try:
                self.sweeper.run()
            except Exception:
                log.exception("sweep.failed")
            if self.stop.wait(self.settings.recovery_interval_seconds):
                return

    def shutdown(self) -> None:
        self.stop.set()
        self.pool.shutdown()


@signals.worker_init.connect
def _start_runtime(sender=None, **_kwargs) -> None:
    settings = get_settings()
    WorkerRuntime.current = WorkerRuntime(sender.app, settings)
    WorkerRuntime.current.start()
    log.info(
        "worker.started",
        analysis_processes=settings.workers,
        # Celery's banner counts these as its concurrency (thread pool).
        runner_threads=RUNNERS_PER_PROCESS * settings.workers,
        queue=settings.celery_queue,
        lease_seconds=settings.lease_seconds,
    )


@signals.worker_shutdown.connect
def _stop_runtime(**_kwargs) -> None:
    runtime, WorkerRuntime.current = WorkerRuntime.current, None
    if runtime is not None:
        runtime.shutdown()


# For `celery -A image_tagger.jobs.celery_app ...` (Flower, inspect, purge).
app = create_celery_app(get_settings())
