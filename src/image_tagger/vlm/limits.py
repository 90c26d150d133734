"""Limits shared by every runner of a process: concurrency, requests per minute,
and the spending budget with the cost of calls in flight reserved (those of
every process, through the ledger).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import CancelledError
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

#: The window of the requests-per-minute limit.
WINDOW_SECONDS = 60.0

#: Extra wait before a request that the limit held back, for the time it takes
#: to reach the provider: the provider counts arrivals, we count departures.
RPM_MARGIN_SECONDS = 0.5

T = TypeVar("T")


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

    ``spent`` reads, at once, the ledger's total and the reservations of the
    calls in flight written in the ledger (by any process); a reservation of
    this process is held here until its call's row holds it (`record`).
    They are read under the lock, so two calls of this process never both
    take the last of the budget.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._reserved = Decimal(0)

    @property
    def reserved(self) -> Decimal:
        """This process's reservations not in the ledger yet."""
        with self._changed:
            return self._reserved

    def reserve(
        self,
        estimate: Decimal,
        *,
        limit: Decimal,
        spent: Callable[[], tuple[Decimal, Decimal]],
        stop: threading.Event | None = None,
    ) -> Reservation | None:
        """Reserve ``estimate``; None when it does not fit under ``limit``.

        With ``stop``, a call that would fit once the calls in flight have
        ended waits for them (until ``stop`` is set: `Stopped`), since their
        reservations are often more than they cost; without, it is refused.
        """
        with self._changed:
            while True:
                used, elsewhere = spent()
                if used + elsewhere + self._reserved + estimate <= limit:
                    self._reserved += estimate
                    return Reservation(estimate)
                in_flight = self._reserved or elsewhere
                if stop is None or not in_flight or used + estimate > limit:
                    return None
                self._changed.wait(timeout=0.25)
                if stop.is_set():
                    raise Stopped

    def record(self, reservation: Reservation, write: Callable[[], T]) -> T:
        """Hand ``reservation`` over to the ledger: ``write`` records it there
        (the call's row), then this process stops holding it. Under the lock,
        so that no reservation is counted in neither place."""
        with self._changed:
            written = write()
            self._reserved -= reservation.amount
            reservation.amount = Decimal(0)
            return written

    def release(self, reservation: Reservation) -> None:
        """The call ended (or never started): what it still held here is
        released, and waiting calls look again."""
        with self._changed:
            self._reserved -= reservation.amount
            reservation.amount = Decimal(0)
            self._changed.notify_all()
