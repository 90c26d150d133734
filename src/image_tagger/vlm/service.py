"""Asking the configured VLM provider: one client and one set of limits per process.

Every analyzer call goes through `VlmService.run`: the call waits for a
concurrency slot, the budget is checked with the cost of the calls in flight
reserved (those of every process, in the ledger), the call waits for the
requests-per-minute limit, its ledger row is written ``in_flight`` with its
reservation, the request is sent, and the row is completed with the outcome.
Timeouts, 429 (after its Retry-After) and 5xx are retried with backoff, within
a bounded number of attempts and a bounded total time; an answer that does
not validate is asked for once more. An ``ok`` answer that a stopped process
paid for but never stored is used instead of a new call.
"""

from __future__ import annotations

import base64
import email.utils
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import openai
import structlog
from openai.types.chat import ChatCompletion
from pydantic import ValidationError

from image_tagger.images.decode import ANALYSIS_MAX_SIDE
from image_tagger.settings import Settings
from image_tagger.vlm import ledger
from image_tagger.vlm.analyzers import (
    ANALYZERS,
    PROMPTS_VERSION,
    VLM_IMAGE_QUALITY,
    Analyzer,
)
from image_tagger.vlm.limits import Budget, RateLimiter, Reservation, Stopped
from image_tagger.vlm.pricing import base_url, call_cost, provider_name
from image_tagger.vlm.schemas import AnalyzerOutcome

log = structlog.get_logger(__name__)

#: An attempt that was not made: the budget refused it (never in the ledger).
_SKIPPED = "skipped"


#: The most tokens one call may report and be believed (a 32-bit column).
MAX_REPORTED_TOKENS = 2**31 - 1


def _reported_tokens(usage: Any) -> tuple[int | None, int | None, str | None]:
    """The input and output tokens a completion reports, each None where it
    reports none or an impossible count (negative, not a whole number, past
    `MAX_REPORTED_TOKENS`), with a note naming the impossible ones: a price is
    never computed from them, so the call's cost is unknown (null)."""
    counts, bad = [], []
    for name in ("prompt_tokens", "completion_tokens"):
        value = getattr(usage, name, None)
        if value is None:
            counts.append(None)
        elif (
            isinstance(value, int)
            and not isinstance(value, bool)
            and 0 <= value <= MAX_REPORTED_TOKENS
        ):
            counts.append(value)
        else:
            counts.append(None)
            bad.append(f"{name}={str(value)[:40]}")
    note = (
        f"the provider reported impossible token counts ({', '.join(bad)}); "
        "they are not recorded and the call's cost is unknown"
        if bad
        else None
    )
    return counts[0], counts[1], note


@dataclass
class _Attempt:
    """One HTTP request to the provider, as it ended."""

    outcome: str
    reason: str | None = None
    result: dict[str, Any] | None = None
    retry_after: float | None = None
    record: ledger.CallRecord | None = None

    @property
    def retryable(self) -> bool:
        return self.outcome in (
            ledger.RATE_LIMITED,
            ledger.SERVER_ERROR,
            ledger.TIMEOUT,
            ledger.CONNECTION_ERROR,
        )


@dataclass
class CallContext:
    image_id: int | None = None
    job_id: int | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    #: Every ledger record written for the calls made, in order.
    calls: list[ledger.CallRecord] = field(default_factory=list)
    #: The ledger row of each ``ok`` answer given (asked for, or paid for
    #: earlier and never stored), by analyzer.
    answers: dict[str, int] = field(default_factory=dict)


class VlmService:
    """The provider's client and the limits shared by every runner of a process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model = settings.vlm_model
        self.provider = provider_name(settings)
        key = settings.vlm_api_key.get_secret_value() if settings.vlm_api_key else None
        self.client = openai.OpenAI(
            base_url=base_url(settings),
            # Local servers (Ollama, vLLM) take any key; the client needs one.
            api_key=key or "no-key",
            timeout=settings.vlm_timeout_seconds,
            max_retries=0,  # retried here, through the limits and the ledger
        )
        self.slots = threading.BoundedSemaphore(settings.vlm_concurrency)
        self.limiter = RateLimiter(settings.vlm_rpm)
        self.budget = Budget()
        # The analyzers of one image run at the same time, so that the calls
        # waiting for a slot always outnumber the slots.
        self._helpers = ThreadPoolExecutor(
            max_workers=2 * settings.vlm_concurrency, thread_name_prefix="vlm"
        )

    @property
    def parameters(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "prompts_version": PROMPTS_VERSION,
            "image": "the analysis image (sRGB, long side at most "
            f"{ANALYSIS_MAX_SIDE} px), JPEG quality {VLM_IMAGE_QUALITY}",
        }

    def reusable(self, stored: dict[str, Any] | None) -> dict[str, dict]:
        """The outcomes of ``stored`` that are ``ok`` for this model."""
        return {
            name: outcome
            for name, outcome in (stored or {}).items()
            if outcome.get("status") == "ok" and outcome.get("model") == self.model
        }

    def complete(self, stored: dict[str, Any] | None) -> bool:
        """Every analyzer has an ``ok`` result of this model in ``stored``."""
        kept = self.reusable(stored)
        return all(analyzer.name in kept for analyzer in ANALYZERS)

    def analyze(
        self,
        jpeg: bytes,
        context: CallContext,
        *,
        kept: dict[str, dict] | None = None,
    ) -> dict[str, dict]:
        """Every analyzer on one image, at the same time; those in ``kept``
        (earlier ``ok`` outcomes) are not asked again."""
        kept = kept or {}
        todo = [analyzer for analyzer in ANALYZERS if analyzer.name not in kept]
        outcomes = dict(kept)
        outcomes.update(self._paid_answers(todo, context))
        todo = [analyzer for analyzer in todo if analyzer.name not in outcomes]
        if todo:
            first, *others = todo
            helped = {
                analyzer.name: self._helpers.submit(self.run, analyzer, jpeg, context)
                for analyzer in others
            }
            outcomes[first.name] = self.run(first, jpeg, context).model_dump()
            for name, future in helped.items():
                outcomes[name] = future.result().model_dump()
        return {analyzer.name: outcomes[analyzer.name] for analyzer in ANALYZERS}

    def _paid_answers(
        self, todo: list[Analyzer], context: CallContext
    ) -> dict[str, dict]:
        """The outcomes of ``todo`` whose ``ok`` answer for the image (this
        model, these prompts) is in the ledger but was never stored: a process
        that stopped after paying for it, before storing it."""
        if context.image_id is None or not todo:
            return {}
        found = ledger.unstored_answers(
            context.image_id, self.model, PROMPTS_VERSION, [a.name for a in todo]
        )
        outcomes = {}
        for analyzer in todo:
            if analyzer.name not in found:
                continue
            call_id, answer = found[analyzer.name]
            try:
                result = analyzer.answer.model_validate(answer).model_dump()
            except ValidationError:
                continue  # the schema changed since: ask again
            context.answers[analyzer.name] = call_id
            outcomes[analyzer.name] = AnalyzerOutcome(
                status="ok", model=self.model, result=result
            ).model_dump()
            log.info(
                "vlm.answer_reused",
                tool=analyzer.name,
                call_id=call_id,
                image_id=context.image_id,
            )
        return outcomes

    def run(
        self,
        analyzer: Analyzer,
        jpeg: bytes,
        context: CallContext,
        *,
        tool: str | None = None,
    ) -> AnalyzerOutcome:
        """One analyzer on one image, with its retries; never raises for the
        provider's faults (only `Stopped` when the service stops)."""
        settings = self.settings
        tool = tool or analyzer.name
        deadline = time.monotonic() + settings.vlm_retry_total_seconds
        request = self._request(analyzer, jpeg)
        attempts = invalid = 0
        while True:
            attempt = self._attempt(analyzer, request, tool, context)
            if attempt.outcome == _SKIPPED:
                return AnalyzerOutcome(
                    status="skipped", reason=attempt.reason, model=self.model
                )
            attempts += 1

            if attempt.outcome == ledger.OK:
                context.answers[tool] = attempt.record.id
                return AnalyzerOutcome(
                    status="ok", model=self.model, result=attempt.result
                )
            if attempt.outcome == ledger.INVALID and invalid == 0:
                invalid += 1
                attempts -= 1  # asked again once, apart from the fault retries
                continue
            if attempt.outcome == ledger.INVALID:
                return self._error(
                    "the answer did not match the schema twice: "
                    f"{_clause(attempt.reason)}"
                )
            if not attempt.retryable:
                return self._error(attempt.reason)

            wait = self._backoff(attempts, attempt.retry_after)
            if attempts >= settings.vlm_max_attempts:
                return self._error(
                    f"{_clause(attempt.reason)}; gave up after {attempts} attempts "
                    "(IMAGE_TAGGER_VLM_MAX_ATTEMPTS)"
                )
            if time.monotonic() + wait > deadline:
                return self._error(
                    f"{_clause(attempt.reason)}; gave up after {attempts} attempts: "
                    "the next "
                    f"one (in {wait:.3g} s) would pass "
                    f"{settings.vlm_retry_total_seconds:g} s "
                    "(IMAGE_TAGGER_VLM_RETRY_TOTAL_SECONDS)"
                )
            log.info("vlm.retry", tool=tool, reason=attempt.reason, wait_s=wait)
            if context.stop.wait(wait):
                raise Stopped

    def _error(self, reason: str | None) -> AnalyzerOutcome:
        return AnalyzerOutcome(status="error", reason=reason, model=self.model)

    def _backoff(self, attempts: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        base = self.settings.vlm_backoff_seconds * 2 ** (attempts - 1)
        return base * random.uniform(0.5, 1.0)

    def _reserve(self, tool: str, stop: threading.Event):
        """(reservation, None) when the call may start, (None, why) when not."""
        limit = self.settings.vlm_budget_usd
        if limit is None:
            return None, None
        estimate, observed = self._estimate(tool)
        if estimate is None:
            return None, (
                f"the price of {self.model} at {self.provider} is unknown, so the "
                f"budget of ${limit:g} cannot be kept: set "
                "IMAGE_TAGGER_VLM_PRICE_INPUT_PER_MTOK_USD and "
                "IMAGE_TAGGER_VLM_PRICE_OUTPUT_PER_MTOK_USD (or IMAGE_TAGGER_VLM_"
                "PROVIDER), or unset IMAGE_TAGGER_VLM_BUDGET_USD"
            )

        options = {
            "limit": Decimal(str(limit)),
            "spent": self._spent_and_reserved,
            "stop": stop,
        }
        reservation = self.budget.reserve(estimate, **options)
        if reservation is None and not observed:
            # The worst case was refused; the first calls may have ended since.
            estimate, observed = self._estimate(tool)
            if observed:
                reservation = self.budget.reserve(estimate, **options)
        if reservation is None:
            spent, reserved = self._spent_and_reserved()
            return None, _budget_reached(
                spent=spent,
                reserved=self.budget.reserved + reserved,
                estimate=estimate,
                limit=limit,
            )
        return reservation, None

    def _spent_and_reserved(self) -> tuple[Decimal, Decimal]:
        """The ledger's spending, and the reservations of the calls in flight
        in the ledger (any process)."""
        return ledger.spent_and_reserved_usd(self.settings)

    def _estimate(self, tool: str) -> tuple[Decimal | None, bool]:
        """What a call of ``tool`` may cost, and whether that is observed: the
        most tokens the latest calls of ``tool`` to this model used, at the
        current price; before any, the worst case."""
        observed = ledger.tokens_estimate(tool, self.model)
        input_tokens, output_tokens = observed or (
            ledger.DEFAULT_INPUT_TOKENS_ESTIMATE,
            self.settings.vlm_max_output_tokens,
        )
        estimate = call_cost(
            self.settings,
            self.model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
        )
        return estimate, observed is not None

    def _request(self, analyzer: Analyzer, jpeg: bytes) -> dict[str, Any]:
        image_url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
        return {
            "model": self.model,
            "messages": [
                {"role": "system", "content": analyzer.instructions},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Rate this photograph."},
                        {"type": "image_url", "image_url": {"url": image_url}},
                    ],
                },
            ],
            "response_format": analyzer.response_format(),
            "max_tokens": self.settings.vlm_max_output_tokens,
        }

    def _attempt(
        self,
        analyzer: Analyzer,
        request: dict[str, Any],
        tool: str,
        context: CallContext,
    ) -> _Attempt:
        """One request within the limits, or a budget refusal (outcome
        ``_SKIPPED``). The budget is reserved once a concurrency slot is held;
        the reservation passes to the call's ledger row when the request
        leaves, and ends with the call, as the slot does: the calls in flight
        are never more than the slots."""
        while not self.slots.acquire(timeout=0.5):
            if context.stop.is_set():
                raise Stopped
        try:
            reservation, refusal = self._reserve(tool, context.stop)
            if refusal:
                return _Attempt(_SKIPPED, refusal)
            try:
                return self._request_and_record(
                    analyzer, request, tool, context, reservation
                )
            finally:
                if reservation is not None:
                    self.budget.release(reservation)
        finally:
            self.slots.release()

    def _request_and_record(
        self,
        analyzer: Analyzer,
        request: dict[str, Any],
        tool: str,
        context: CallContext,
        reservation: Reservation | None,
    ) -> _Attempt:
        """One request after the rate limit: its ledger row is written
        ``in_flight`` before it is sent, and completed before return."""
        self.limiter.acquire(context.stop)
        call_id = self._start_call(tool, context, reservation)
        started = time.perf_counter()
        try:
            attempt, completion = self._send(request)
            latency_ms = (time.perf_counter() - started) * 1000
            input_tokens, output_tokens, usage_note = _reported_tokens(
                getattr(completion, "usage", None)
            )
            if completion is not None:
                attempt = _validated(analyzer, completion)
            cost = None
            if input_tokens is not None and output_tokens is not None:
                cost = call_cost(
                    self.settings,
                    self.model,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                )
        except BaseException as exc:
            # A fault of ours once the request left: the row says so, rather
            # than stay in flight until a sweep.
            ledger.finish_call(
                self._record(
                    call_id,
                    tool,
                    context,
                    _Attempt(
                        ledger.INTERRUPTED,
                        f"this process failed on the call: {type(exc).__name__}: {exc}",
                    ),
                    latency_ms=(time.perf_counter() - started) * 1000,
                )
            )
            raise
        attempt.record = self._record(
            call_id,
            tool,
            context,
            attempt,
            latency_ms=latency_ms,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost=cost,
            note=usage_note,
        )
        ledger.finish_call(attempt.record, answer=attempt.result)
        context.calls.append(attempt.record)
        log.debug("vlm.call", tool=tool, outcome=attempt.outcome, ms=round(latency_ms))
        return attempt

    def _start_call(
        self, tool: str, context: CallContext, reservation: Reservation | None
    ) -> int:
        """The call's ledger row, ``in_flight``, holding its reservation."""

        def write() -> int:
            return ledger.start_call(
                tool=tool,
                provider=self.provider,
                model=self.model,
                prompts_version=PROMPTS_VERSION,
                reserved_usd=reservation.amount if reservation else None,
                image_id=context.image_id,
                job_id=context.job_id,
            )

        if reservation is None:
            return write()
        return self.budget.record(reservation, write)

    def _record(
        self,
        call_id: int,
        tool: str,
        context: CallContext,
        attempt: _Attempt,
        *,
        latency_ms: float,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cost: Decimal | None = None,
        note: str | None = None,
    ) -> ledger.CallRecord:
        return ledger.CallRecord(
            id=call_id,
            tool=tool,
            provider=self.provider,
            model=self.model,
            outcome=attempt.outcome,
            latency_ms=latency_ms,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=cost,
            error="; ".join(text for text in (attempt.reason, note) if text) or None,
            image_id=context.image_id,
            job_id=context.job_id,
        )

    def _send(self, request: dict[str, Any]):
        """(None, completion) on a chat completion; (attempt saying why, None)
        on a fault."""
        try:
            raw = self.client.chat.completions.with_raw_response.create(**request)
        except openai.APITimeoutError:
            reason = (
                f"no answer within {self.settings.vlm_timeout_seconds:g} s "
                "(IMAGE_TAGGER_VLM_TIMEOUT_SECONDS)"
            )
            return _Attempt(ledger.TIMEOUT, reason), None
        except openai.APIConnectionError as exc:
            reason = f"cannot reach {base_url(self.settings)}: {exc}"
            return _Attempt(ledger.CONNECTION_ERROR, reason), None
        except openai.RateLimitError as exc:
            return _Attempt(
                ledger.RATE_LIMITED,
                f"rate limited by the provider (HTTP 429): {_message(exc)}",
                retry_after=_retry_after(exc.response),
            ), None
        except openai.APIStatusError as exc:
            return self._status_error(exc), None
        except (openai.OpenAIError, ValueError) as exc:
            # A response the client could not read at all.
            reason = self._bad_response(f"{type(exc).__name__}: {exc}")
            return _Attempt(ledger.BAD_RESPONSE, reason), None
        return self._completion(raw)

    def _status_error(self, exc: openai.APIStatusError) -> _Attempt:
        status = exc.status_code
        reason = f"the provider answered HTTP {status}: {_message(exc)}"
        retry_after = _retry_after(exc.response)
        if status >= 500:
            return _Attempt(ledger.SERVER_ERROR, reason, retry_after=retry_after)
        if status == 408:  # the server's own timeout: retried like ours
            return _Attempt(ledger.TIMEOUT, reason, retry_after=retry_after)
        if status in (401, 403):
            reason += " (check IMAGE_TAGGER_VLM_API_KEY)"
        elif status == 404:
            reason += (
                f" (check that IMAGE_TAGGER_VLM_MODEL, {self.model!r}, is a model the "
                f"provider serves, and IMAGE_TAGGER_VLM_BASE_URL, {self._url_hint()})"
            )
        return _Attempt(ledger.REFUSED, reason)

    def _completion(self, raw) -> tuple[_Attempt | None, Any]:
        """The chat completion of an answer; a ``bad_response`` attempt when
        the answer is not one (an HTML page, JSON of another API)."""
        try:
            completion = raw.parse()
        except (openai.OpenAIError, ValueError):
            completion = None
        if isinstance(completion, ChatCompletion) and isinstance(
            completion.choices, list
        ):
            return None, completion
        if isinstance(completion, ChatCompletion):
            said = _said(getattr(completion, "error", None))
            what = "JSON without choices" + (f" (it says: {said})" if said else "")
        elif isinstance(completion, (dict, list, int, float, bool)):
            what = "JSON that is not a chat completion"
        else:
            looks = raw.headers.get("content-type", "") + raw.text[:100]
            what = (
                "an HTML page" if "html" in looks.lower() else "a body that is not JSON"
            )
            what += f": {_excerpt(raw.text)}"
        return _Attempt(
            ledger.BAD_RESPONSE,
            self._bad_response(f"HTTP {raw.status_code} with {what}"),
        ), None

    def _bad_response(self, what: str) -> str:
        return (
            f"the endpoint did not answer like an OpenAI-compatible API ({what}); "
            f"check IMAGE_TAGGER_VLM_BASE_URL, {self._url_hint()}"
        )[:1000]

    def _url_hint(self) -> str:
        """The base URL in use, and what it usually lacks when it lacks it."""
        url = base_url(self.settings)
        if url.rstrip("/").endswith("/v1"):
            return url
        return f"{url}: it should usually end in /v1"


def _validated(analyzer: Analyzer, completion) -> _Attempt:
    """The completion's answer checked against the analyzer's schema."""
    choice = completion.choices[0] if completion.choices else None
    content = choice.message.content if choice else None
    if not content:
        refusal = getattr(choice.message, "refusal", None) if choice else None
        return _Attempt(ledger.INVALID, f"no answer text ({refusal or 'empty'})")
    try:
        answer = analyzer.answer.model_validate_json(content)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "answer"
        detail = f"{where}: {first['msg']}"
        if choice.finish_reason == "length":
            detail += " (the answer was cut at IMAGE_TAGGER_VLM_MAX_OUTPUT_TOKENS)"
        return _Attempt(ledger.INVALID, detail)
    return _Attempt(ledger.OK, result=answer.model_dump())


def _budget_reached(
    *, spent: Decimal, reserved: Decimal, estimate: Decimal, limit: float
) -> str:
    return (
        f"budget reached: {_usd(spent)} spent and {_usd(reserved)} reserved for "
        f"calls in flight, of the {_usd(limit)} budget "
        f"(IMAGE_TAGGER_VLM_BUDGET_USD); this call needs about {_usd(estimate)}. "
        "To rate the skipped images, raise IMAGE_TAGGER_VLM_BUDGET_USD, then "
        "upload them again or run `image-tagger reanalyze --all`: only their "
        "missing ratings are asked for"
    )


def _said(error: Any) -> str | None:
    """The message of an ``error`` member of a provider's JSON, if any."""
    if isinstance(error, dict):
        error = error.get("message")
    return error[:300] if isinstance(error, str) and error else None


def _excerpt(text: str) -> str:
    """The start of a body, on one line."""
    line = " ".join(text.split())
    return repr(line[:120] + ("..." if len(line) > 120 else "")) if line else "empty"


def _clause(reason: str | None) -> str:
    """A reason to go on after with "; ...": without its closing full stop."""
    return (reason or "").rstrip().rstrip(".")


def _usd(amount: Decimal | float) -> str:
    return f"${float(amount):.6g}"


def _message(exc: openai.APIStatusError) -> str:
    """The provider's own error message when it sent one."""
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"][:300]
    return str(exc.message)[:300]


def _retry_after(response) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date)."""
    value = response.headers.get("retry-after") if response is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


_service: VlmService | None = None
_service_key: tuple | None = None
_service_lock = threading.Lock()


def get_vlm(settings: Settings) -> VlmService | None:
    """The process's VLM service for these settings; None when not configured."""
    global _service, _service_key
    if not settings.vlm_configured:
        return None
    key = tuple(
        value
        for name, value in settings.model_dump().items()
        if name.startswith("vlm_")
    )
    with _service_lock:
        if _service is None or _service_key != key:
            _service, _service_key = VlmService(settings), key
        return _service
