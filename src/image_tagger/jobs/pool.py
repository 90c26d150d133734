"""The analysis processes: pixel work off the API's interpreter, with a time limit.

Built on pebble's process pool, which can end one stuck or crashed task by
replacing only the process that ran it: a hostile image that takes forever is
stopped after ``IMAGE_TAGGER_ITEM_TIMEOUT_SECONDS`` and fails alone. When a
process dies while idle (the OOM killer, a stray ``kill``), pebble gives up on
the whole pool; ``ComputePool`` then starts a new one for the next task.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import Future

import structlog
from pebble import ProcessPool

log = structlog.get_logger(__name__)


def _init_analysis_process(max_pixels: int) -> None:
    """Ready an analysis process: one thread each, the pixel limit, a watchdog."""
    import cv2
    import pillow_heif

    import image_tagger.science.pipeline  # noqa: F401  (loaded before any item)
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
    """Analysis processes, one per core by default; each task has a time limit.

    ``submit(fn, *args).result()`` raises ``TimeoutError`` when the task ran
    past ``timeout_seconds`` (its process is replaced) and
    ``pebble.ProcessExpired`` when its process died.
    """

    def __init__(
        self, processes: int, *, max_pixels: int, timeout_seconds: float
    ) -> None:
        self.processes = processes
        self.max_pixels = max_pixels
        self.timeout_seconds = timeout_seconds
        self.restarts = 0
        self._in_flight: set[Future] = set()
        self._lock = threading.Lock()
        self._stopped = False
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPool:
        return ProcessPool(
            max_workers=self.processes,
            initializer=_init_analysis_process,
            initargs=(self.max_pixels,),
            context=multiprocessing.get_context("spawn"),
        )

    def warm_up(self) -> None:
        """Start every process now, so the first items do not wait for them."""
        for _ in range(self.processes):
            self._pool.schedule(_ready)

    def submit(self, fn, /, *args) -> Future:
        with self._lock:
            try:
                future = self._pool.schedule(
                    fn, args=args, timeout=self.timeout_seconds
                )
            except RuntimeError:
                # pebble refuses every task once its pool is broken; a stopped
                # ComputePool refuses too.
                if self._stopped:
                    raise
                self._restart()
                future = self._pool.schedule(
                    fn, args=args, timeout=self.timeout_seconds
                )
            self._in_flight.add(future)
        future.add_done_callback(self._forget)
        return future

    def _restart(self) -> None:
        """Replace a pool pebble gave up on (called with the lock held)."""
        broken, self._pool = self._pool, self._new_pool()
        self.restarts += 1
        log.warning(
            "pool.restarted",
            restarts=self.restarts,
            detail="an analysis process ended while idle and the process pool "
            "stopped; a new pool took its place",
        )
        broken.stop()
        threading.Thread(target=broken.join, name="pool-reaper", daemon=True).start()

    def _forget(self, future: Future) -> None:
        with self._lock:
            self._in_flight.discard(future)

    def shutdown(self) -> None:
        """Stop now: tasks in flight are cancelled (CancelledError), workers end."""
        with self._lock:
            self._stopped = True
            in_flight = list(self._in_flight)
        for future in in_flight:
            future.cancel()
        self._pool.stop()
        self._pool.join()
