"""Limits shared by every runner of a process: concurrency, requests per minute,
and the spending budget with the cost of calls in flight reserved.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import CancelledError
from dataclasses import dataclass
from decimal import Decimal

#: The window of the requests-per-minute limit.
WINDOW_SECONDS = 60.0

#: Extra wait before a request that the limit held back, for the time it takes
#: to reach the provider: the provider counts arrivals, we count departures.
RPM_MARGIN_SECONDS = 0.5


class Stopped(CancelledError):
    """The service is stopping: a wait for a call, or between calls, ended."""


class RateLimiter:
    """At most ``per_minute`` requests start in any 60-second window.

    A sliding log of start times: a request waits until the oldest start in
    the window is 60 s old. ``per_minute=None`` means no limit.
    """

    def __init__(self, per_minute: int | None, *, clock=time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._starts: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self, stop: threading.Event | None = None) -> float:
        """Wait for a slot and take it; returns the seconds waited."""
        if self.per_minute is None:
            return 0.0
        stop = stop or threading.Event()
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                while self._starts and now - self._starts[0] >= WINDOW_SECONDS:
                    self._starts.popleft()
                if len(self._starts) < self.per_minute:
                    self._starts.append(now)
                    return waited
                delay = self._starts[0] + WINDOW_SECONDS - now + RPM_MARGIN_SECONDS
            if stop.wait(delay):
                raise Stopped
            waited += delay


@dataclass
class Reservation:
    amount: Decimal


class Budget:
    """A spending cap: a call starts only if what is spent, what calls in
    flight may cost and this call's estimate all fit under it.

    ``spent`` reads the ledger's total; it is called under the lock, so two
    calls of this process never both take the last of the budget.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._reserved = Decimal(0)

    @property
    def reserved(self) -> Decimal:
        with self._changed:
            return self._reserved

    def reserve(
        self,
        estimate: Decimal,
        *,
        limit: Decimal,
        spent: Callable[[], Decimal],
        stop: threading.Event | None = None,
    ) -> Reservation | None:
        """Reserve ``estimate``; None when it does not fit under ``limit``.

        With ``stop``, a call that would fit once the calls in flight have
        ended waits for them (until ``stop`` is set: `Stopped`), since their
        reservations are often more than they cost; without, it is refused.
        """
        with self._changed:
            while True:
                used = spent()
                if used + self._reserved + estimate <= limit:
                    self._reserved += estimate
                    return Reservation(estimate)
                if stop is None or not self._reserved or used + estimate > limit:
                    return None
                self._changed.wait(timeout=0.25)
                if stop.is_set():
                    raise Stopped

    def release(self, reservation: Reservation) -> None:
        with self._changed:
            self._reserved -= reservation.amount
            self._changed.notify_all()
