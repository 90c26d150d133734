"""The requests-per-minute limiter, the budget, prices and Retry-After."""

from __future__ import annotations

import threading
from decimal import Decimal

import httpx2
import pytest
from genai_prices import Usage, calc_price
from pydantic import ValidationError

from image_tagger.settings import Settings
from image_tagger.vlm.limits import (
    RPM_MARGIN_SECONDS,
    Budget,
    RateLimiter,
    Stopped,
)
from image_tagger.vlm.pricing import call_cost, provider_name
from image_tagger.vlm.service import _retry_after


class FakeClock:
    """Time that passes only when a waiter waits (through ``stop.wait``)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class AdvancingEvent(threading.Event):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.waits: list[float] = []

    def wait(self, timeout=None) -> bool:
        self.waits.append(timeout)
        self.clock.now += timeout
        return False


def test_the_limiter_starts_at_most_rpm_requests_in_any_minute():
    clock = FakeClock()
    limiter = RateLimiter(5, clock=clock)
    stop = AdvancingEvent(clock)
    starts = []
    for _ in range(12):
        limiter.acquire(stop)
        starts.append(clock.now)

    assert starts[:5] == [0.0] * 5
    # The sixth waits until the first is a minute old (plus the margin).
    assert starts[5] == pytest.approx(60.0 + RPM_MARGIN_SECONDS)
    for i in range(len(starts)):
        in_window = [t for t in starts if starts[i] <= t < starts[i] + 60.0]
        assert len(in_window) <= 5


def test_no_limit_never_waits():
    limiter = RateLimiter(None)
    assert all(limiter.acquire() == 0.0 for _ in range(1000))


def test_a_stopping_service_ends_the_wait():
    limiter = RateLimiter(1)
    limiter.acquire()
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped):
        limiter.acquire(stop)


def test_the_budget_reserves_calls_in_flight():
    budget = Budget()
    spent = Decimal("0.5")
    limit = Decimal("1.0")

    first = budget.reserve(Decimal("0.3"), limit=limit, spent=lambda: (spent, 0))
    assert first is not None and budget.reserved == Decimal("0.3")
    # 0.5 spent + 0.3 in flight + 0.3 would pass 1.0: refused.
    assert budget.reserve(Decimal("0.3"), limit=limit, spent=lambda: (spent, 0)) is None
    assert budget.reserve(Decimal("0.2"), limit=limit, spent=lambda: (spent, 0))
    budget.release(first)
    assert budget.reserved == Decimal("0.2")


def test_concurrent_reservations_never_pass_the_limit():
    budget = Budget()
    granted = []
    barrier = threading.Barrier(16)

    def take() -> None:
        barrier.wait()
        if budget.reserve(Decimal("0.1"), limit=Decimal("1"), spent=lambda: (0, 0)):
            granted.append(1)

    threads = [threading.Thread(target=take) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) == 10


def test_a_call_that_fits_once_calls_in_flight_end_waits_for_them():
    budget, stop = Budget(), threading.Event()
    spent = [Decimal("0")]
    limit = Decimal("1.0")
    first = budget.reserve(Decimal("0.6"), limit=limit, spent=lambda: (spent[0], 0))
    assert first is not None

    waited = []
    waiter = threading.Thread(
        target=lambda: waited.append(
            budget.reserve(
                Decimal("0.6"), limit=limit, spent=lambda: (spent[0], 0), stop=stop
            )
        )
    )
    waiter.start()
    waiter.join(timeout=0.5)
    assert waiter.is_alive() and waited == []  # 0.6 in flight + 0.6 > 1.0

    spent[0] = Decimal("0.2")  # the first call cost 0.2, not 0.6
    budget.release(first)
    waiter.join(timeout=5)
    assert waited[0].amount == Decimal("0.6") and budget.reserved == Decimal("0.6")

    # 0.2 spent + 0.9 can never fit: refused at once, without waiting.
    assert (
        budget.reserve(
            Decimal("0.9"), limit=limit, spent=lambda: (spent[0], 0), stop=stop
        )
        is None
    )


def test_reservations_in_the_ledger_count_and_a_call_waits_for_them():
    budget, stop = Budget(), threading.Event()
    limit = Decimal("1.0")
    ledger = {"spent": Decimal("0"), "in_flight": Decimal("0")}
    options = {
        "limit": limit,
        "spent": lambda: (ledger["spent"], ledger["in_flight"]),
    }

    # A call of this process: its reservation passes to its ledger row.
    mine = budget.reserve(Decimal("0.5"), **options)

    def write() -> int:
        ledger["in_flight"] += Decimal("0.5")
        return 7

    assert budget.record(mine, write) == 7
    assert budget.reserved == Decimal("0") and ledger["in_flight"] == Decimal("0.5")
    # Another process's call in flight, seen in the ledger: nothing fits.
    ledger["in_flight"] += Decimal("0.4")
    assert budget.reserve(Decimal("0.2"), **options) is None

    waited = []
    waiter = threading.Thread(
        target=lambda: waited.append(
            budget.reserve(Decimal("0.2"), stop=stop, **options)
        )
    )
    waiter.start()
    waiter.join(timeout=0.6)
    assert waiter.is_alive() and waited == []
    ledger["in_flight"] -= Decimal("0.4")  # the other process's call ended
    ledger["spent"] += Decimal("0.1")
    waiter.join(timeout=5)
    assert waited[0].amount == Decimal("0.2")
    budget.release(mine)  # handed over: releasing it takes nothing back
    assert budget.reserved == Decimal("0.2")


def test_a_waiting_reservation_ends_when_the_service_stops():
    budget, stop = Budget(), threading.Event()
    limit = Decimal("1.0")
    assert budget.reserve(Decimal("0.6"), limit=limit, spent=lambda: (Decimal(0), 0))
    raised = []

    def wait() -> None:
        try:
            budget.reserve(Decimal("0.6"), limit=limit, spent=lambda: (0, 0), stop=stop)
        except Stopped:
            raised.append(True)

    waiter = threading.Thread(target=wait)
    waiter.start()
    stop.set()
    waiter.join(timeout=5)
    assert raised == [True]


def test_cost_is_the_library_price_override_or_none():
    usage = Usage(input_tokens=2000, output_tokens=300)
    expected = calc_price(usage, "gpt-4o", provider_id="openai").total_price
    openai = Settings(vlm_model="gpt-4o", vlm_api_key="sk-test")
    assert provider_name(openai) == "openai"
    assert call_cost(openai, "gpt-4o", input_tokens=2000, output_tokens=300) == (
        expected
    )

    local = Settings(vlm_model="llava:13b", vlm_base_url="http://localhost:11434/v1")
    assert provider_name(local) == "localhost:11434"
    assert call_cost(local, "llava:13b", input_tokens=10, output_tokens=1) is None

    priced = local.model_copy(
        update={"vlm_price_input_per_mtok_usd": 0, "vlm_price_output_per_mtok_usd": 0}
    )
    assert call_cost(priced, "llava:13b", input_tokens=10, output_tokens=1) == 0

    router = Settings(
        vlm_model="openai/gpt-4o-mini", vlm_base_url="https://openrouter.ai/api/v1"
    )
    assert provider_name(router) == "openrouter"


def test_one_price_setting_without_the_other_is_refused():
    with pytest.raises(ValidationError, match="or neither"):
        Settings(vlm_price_input_per_mtok_usd=1.0)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("2", 2.0), ("0.5", 0.5), ("-3", 0.0), ("soon", None), (None, None)],
)
def test_retry_after_in_seconds(header, seconds):
    headers = {"Retry-After": header} if header is not None else {}
    assert _retry_after(httpx2.Response(429, headers=headers)) == seconds


def test_retry_after_as_an_http_date():
    response = httpx2.Response(
        429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}
    )
    assert _retry_after(response) == 0.0  # in the past: no wait


def test_the_settings_message_names_both_price_variables():
    from image_tagger.settings import describe_invalid_settings

    with pytest.raises(ValidationError) as caught:
        Settings(vlm_price_output_per_mtok_usd=1.0)
    message = describe_invalid_settings(caught.value)
    assert "IMAGE_TAGGER_VLM_PRICE_INPUT_PER_MTOK_USD" in message
    assert "IMAGE_TAGGER_=" not in message
