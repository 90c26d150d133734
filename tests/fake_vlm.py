"""A fake OpenAI-compatible VLM server on loopback, for tests and benchmarks only.

It answers ``POST /v1/chat/completions`` with JSON built from the request's
``response_format`` schema (so any analyzer gets a valid answer), reports
token usage, and can answer slowly or with faults: 429 with Retry-After, 5xx,
404 and 408, broken JSON, JSON that fails the schema, or an HTTP 200 that is
not a chat completion (an HTML page, another API's JSON). Every request is
logged with its arrival time, so a benchmark can check a requests-per-minute
limit.

The product never uses it: it only ever talks to the provider it is given.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: What the server can do with a request (see `FakeVLM.faults`).
MODES = (
    "ok",
    "429",
    "500",
    "503",
    "broken_json",
    "schema_fail",
    "slow",
    "no_usage",
    "not_json",
    "html",
    "not_completion",
    "404",
    "408",
)


@dataclass(frozen=True)
class LoggedRequest:
    at: float  # time.monotonic() at arrival
    tool: str | None  # the response_format schema's name
    mode: str
    status: int


class FakeVLM:
    """``with FakeVLM(latency_seconds=1.0) as fake: ... fake.url ...``

    Parameters
    ----------
    latency_seconds : float
        Time taken before every answer.
    prompt_tokens, completion_tokens : int
        The usage reported with every answer.
    retry_after_seconds : float
        The Retry-After header sent with 429 (and 503) answers.
    slow_seconds : float
        Extra time taken by a "slow" answer (to make the client time out).
    score : float
        The value given to every number of an answer.
    """

    def __init__(
        self,
        *,
        latency_seconds: float = 0.0,
        prompt_tokens: int = 1000,
        completion_tokens: int = 100,
        retry_after_seconds: float = 1.0,
        slow_seconds: float = 5.0,
        score: float = 0.625,
    ) -> None:
        self.latency_seconds = latency_seconds
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.retry_after_seconds = retry_after_seconds
        self.slow_seconds = slow_seconds
        self.score = score
        #: Modes for the next requests, used in order; then `default_mode`.
        self.faults: deque[str] = deque()
        self.default_mode = "ok"
        #: A mode for every request of one analyzer (by schema name).
        self.tool_modes: dict[str, str] = {}
        self.log: list[LoggedRequest] = []
        #: The most requests the server was answering at the same time.
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-vlm", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeVLM:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeVLM:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def next_mode(self, tool: str | None = None) -> str:
        with self._lock:
            if self.faults:
                return self.faults.popleft()
            return self.tool_modes.get(tool, self.default_mode)

    def record(self, entry: LoggedRequest) -> None:
        with self._lock:
            self.log.append(entry)

    def enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def reset(self) -> None:
        """Forget the log and the in-flight high-water mark."""
        with self._lock:
            self.log.clear()
            self.max_in_flight = self._in_flight

    def max_in_window(self, seconds: float = 60.0) -> int:
        """The most requests that arrived within any window of ``seconds``."""
        times = sorted(entry.at for entry in self.log)
        most, start = 0, 0
        for end, at in enumerate(times):
            while at - times[start] >= seconds:
                start += 1
            most = max(most, end - start + 1)
        return most

    def answer_for(self, schema: dict[str, Any]) -> Any:
        """A value that satisfies ``schema`` (objects, numbers, strings)."""
        return _example(schema, schema.get("$defs", {}), self.score)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request, client_address) -> None:
        # A client that timed out closes the socket under a slow answer.
        pass


def _example(schema: dict[str, Any], defs: dict[str, Any], score: float) -> Any:
    if "$ref" in schema:
        return _example(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, score)
    kind = schema.get("type")
    if kind == "object":
        return {
            name: _example(sub, defs, score)
            for name, sub in schema.get("properties", {}).items()
        }
    if kind in ("number", "integer"):
        low, high = schema.get("minimum", 0), schema.get("maximum", 1)
        return min(max(score, low), high)
    if kind == "string":
        return "seen in the fake server's imagination"
    if kind == "boolean":
        return True
    if kind == "array":
        return [_example(schema.get("items", {}), defs, score)]
    return None


def _handler_for(fake: FakeVLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            arrived = time.monotonic()
            fake.enter()
            try:
                self._answer(arrived)
            finally:
                fake.leave()

        def _answer(self, arrived: float) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path != "/v1/chat/completions":  # as a real server would
                data = json.dumps({"detail": "Not Found"}).encode()
                self.send_response(404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            json_schema = body.get("response_format", {}).get("json_schema", {})
            tool = json_schema.get("name")
            mode = fake.next_mode(tool)
            status, headers, answer = _answer(fake, mode, body, json_schema)
            fake.record(LoggedRequest(at=arrived, tool=tool, mode=mode, status=status))
            time.sleep(fake.latency_seconds)
            if mode == "slow":
                time.sleep(fake.slow_seconds)
            data = json.dumps(answer).encode()
            content_type = "application/json"
            if mode in ("not_json", "html"):  # a proxy's error page, say
                data = b"<html><body>Bad gateway</body></html>"
            if mode == "html":
                content_type = "text/html; charset=utf-8"
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _answer(
    fake: FakeVLM, mode: str, body: dict, json_schema: dict
) -> tuple[int, dict[str, str], dict]:
    retry = {"Retry-After": f"{fake.retry_after_seconds:g}"}
    if mode == "429":
        return 429, retry, _error("rate limit reached, slow down", "rate_limit")
    if mode == "not_completion":  # an error in another API's own shape
        return 200, {}, {"error": {"message": "unknown route /chat/completions"}}
    if mode == "404":
        return 404, {}, _error("The model does not exist", "model_not_found")
    if mode == "408":
        return 408, {}, _error("request timed out", "timeout")
    if mode in ("500", "503"):
        headers = retry if mode == "503" else {}
        return int(mode), headers, _error("the model is overloaded", "server_error")

    content: str
    if mode == "broken_json":
        content = '{"coherence": 0.5, "complexity": '
    elif mode == "schema_fail":
        content = json.dumps({"rating": "very nice", "unexpected": True})
    else:
        content = json.dumps(fake.answer_for(json_schema.get("schema", {})))
    completion = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
    }
    if mode != "no_usage":
        completion["usage"] = {
            "prompt_tokens": fake.prompt_tokens,
            "completion_tokens": fake.completion_tokens,
            "total_tokens": (
                fake.prompt_tokens + fake.completion_tokens
                if isinstance(fake.prompt_tokens, int)
                and isinstance(fake.completion_tokens, int)
                else None
            ),
        }
    return 200, {}, completion


def _error(message: str, kind: str) -> dict:
    return {"error": {"message": message, "type": kind, "code": kind}}
