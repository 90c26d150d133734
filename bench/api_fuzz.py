"""The whole OpenAPI schema against a server process, over TCP, with more examples.

``make test`` runs a bounded schemathesis pass in process; this one sends
``EXAMPLES`` generated requests (valid and invalid) per operation to a real
server in token mode: as admin, anonymously and with a tagger token. It counts
answers by status and fails on any 5xx, on an admin operation answering an
anonymous caller with anything but 401 (or 404 for unmatched paths), or a
tagger with anything but 403.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from helpers import ServerProcess, child_env  # noqa: E402

EXAMPLES = 100
TIME_LIMIT_SECONDS = 300


def _token(env: dict, role: str) -> str:
    command = [sys.executable, "-m", "image_tagger.cli", "token", "create"]
    done = subprocess.run(
        [*command, "--role", role, "--name", f"fuzz-{role}"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def main() -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        env = child_env(Path(tmp) / "data", IMAGE_TAGGER_LOG_LEVEL="WARNING")
        server = ServerProcess(env, Path(tmp) / "server.log")
        server.start()
        try:
            tokens = {role: _token(env, role) for role in ("admin", "tagger")}
            counts, problems, seconds = fuzz(server.url, tokens)
        finally:
            server.stop()

    print(
        f"API fuzzing: schemathesis, {EXAMPLES} examples per operation and mode, "
        f"server process in token mode, {seconds:.0f} s"
    )
    for label in sorted(counts):
        tally = ", ".join(f"{n} x {code}" for code, n in sorted(counts[label].items()))
        print(f"  {label:48} {tally}")
    print(f"  problems: {len(problems)} {problems[:5]}")
    print(f"  {'PASS' if not problems else 'FAIL'}: no 5xx, no admin operation open")
    return not problems


def fuzz(url: str, tokens: dict[str, str]) -> tuple[dict, list[str], float]:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    schema.config.update(base_url=url)
    counts: dict[str, Counter] = {}
    problems: list[str] = []
    started = time.monotonic()
    callers = {
        "admin": {"Authorization": f"Bearer {tokens['admin']}"},
        "anonymous": {},
        "tagger": {"Authorization": f"Bearer {tokens['tagger']}"},
    }
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if time.monotonic() - started > TIME_LIMIT_SECONDS:
                problems.append(f"stopped at {TIME_LIMIT_SECONDS} s")
                return counts, problems, time.monotonic() - started
            tally = counts.setdefault(operation.label, Counter())
            _run(operation, mode, callers, tally, problems)
    return counts, problems, time.monotonic() - started


def _run(operation, mode, callers, tally: Counter, problems: list[str]) -> None:
    admin_only = operation.path.startswith("/api/v1/admin")

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def call(case):
        for caller, headers in callers.items():
            response = case.call(headers=headers, timeout=60)
            tally[response.status_code] += 1
            where = f"{case.method} {case.formatted_path} as {caller}"
            if response.status_code >= 500:
                problems.append(f"{where}: {response.status_code}")
            # Admin operations refuse others; a path matching no route is a 404
            # before any auth.
            expected = {"anonymous": 401, "tagger": 403}.get(caller)
            if admin_only and expected and response.status_code not in (expected, 404):
                problems.append(f"{where}: {response.status_code}, not {expected}")

    # An operation without input has no invalid requests.
    with contextlib.suppress(Unsatisfiable):
        call()


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
