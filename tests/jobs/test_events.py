"""The server-sent event stream of a job, read while the job runs."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import httpx2
import pytest
from helpers import (
    ADMIN,
    ServerProcess,
    child_env,
    jpeg_bytes,
    upload,
    wait_for_job,
)

from image_tagger.db import session_scope
from image_tagger.jobs import service

JOBS = "/api/v1/admin/upload/jobs"


def _events(response) -> Iterator[tuple[str, dict, str | None]]:
    """(event, data, id) for each event of an SSE response, as it arrives."""
    event, data, event_id = None, None, None
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("id: "):
            event_id = line.removeprefix("id: ")
        elif line.startswith("data: "):
            data = json.loads(line.removeprefix("data: "))
        elif line == "" and event is not None:
            yield event, data, event_id
            event, data, event_id = None, None, None


def _record(job_id: int, *, fail: str | None = None) -> int:
    """Claim the job's next item and record it, as a runner would."""
    with session_scope(write=True) as session:
        item_id = service.claim_next_item(
            session, job_id, owner="test-runner", lease_seconds=60
        )
        if fail is None:
            service.complete_item(
                session, item_id, job_id=job_id, owner="test-runner", seconds=1.0
            )
        else:
            service.fail_item(
                session, item_id, job_id=job_id, owner="test-runner", reason=fail
            )
    return item_id


def test_events_follow_a_job_as_its_items_finish(record_only_client):
    client = record_only_client
    files = [(f"{n}.jpg", jpeg_bytes(110 + n)) for n in range(3)]
    job_id = upload(client, files).json()["job_id"]

    with client.stream("GET", f"{JOBS}/{job_id}/events", headers=ADMIN) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _events(response)
        event, job, _ = next(events)
        assert (event, job["id"], job["status"]) == ("job", job_id, "PENDING")

        first = _record(job_id)
        event, item, first_id = next(events)
        assert (event, item["id"], item["status"]) == ("item", first, "COMPLETED")
        assert first_id == item["finished_at"]
        event, job, _ = next(events)
        assert (event, job["status"], job["completed_items"]) == ("job", "RUNNING", 1)
        assert job["items_per_second"] > 0
        assert job["eta_seconds"] is not None

        second = _record(job_id, fail="the disk hiccuped")
        event, item, _ = next(events)
        assert (event, item["id"], item["status"]) == ("item", second, "FAILED")
        assert item["error_message"] == "the disk hiccuped"
        assert next(events)[1]["failed_items"] == 1

        client.post(f"{JOBS}/{job_id}/cancel", headers=ADMIN)
        rest = list(events)  # the stream closes once the job is final

    assert [(event, data.get("status")) for event, data, _ in rest] == [
        ("item", "CANCELLED"),
        ("job", "CANCELLED"),
        ("end", "CANCELLED"),
    ]

    # A client that reconnects with the last id it saw gets what came after.
    replay = client.get(
        f"{JOBS}/{job_id}/events", headers={**ADMIN, "Last-Event-ID": first_id}
    )
    seen = [(event, data.get("id")) for event, data, _ in _events(replay)]
    assert seen[0] == ("item", second)
    assert [event for event, _ in seen] == ["item", "item", "job", "end"]


def test_a_new_stream_first_replays_every_item_recorded_so_far(
    record_only_client, monkeypatch
):
    from image_tagger.jobs import events as job_events

    monkeypatch.setattr(job_events, "REPLAY_PAGE", 2)  # replayed in pages
    client = record_only_client
    files = [(f"{n}.jpg", jpeg_bytes(130 + n)) for n in range(3)]
    job_id = upload(client, [*files, ("junk.jpg", b"not an image")]).json()["job_id"]
    done = [_record(job_id), _record(job_id, fail="unreadable")]

    with client.stream("GET", f"{JOBS}/{job_id}/events", headers=ADMIN) as response:
        events = _events(response)
        replayed = [next(events) for _ in range(3)]
        event, job, _ = next(events)
        assert (event, job["completed_items"], job["failed_items"]) == ("job", 1, 2)
        last = _record(job_id)
        live = [next(events)[:2] for _ in range(3)]

    # The rejected file was recorded at upload, before the other two.
    assert [(e, data["filename"], data["status"]) for e, data, _ in replayed] == [
        ("item", "junk.jpg", "FAILED"),
        ("item", "0.jpg", "COMPLETED"),
        ("item", "1.jpg", "FAILED"),
    ]
    assert [data["id"] for _, data, _ in replayed[1:]] == done
    assert all(event_id == data["finished_at"] for _, data, event_id in replayed)
    assert [(event, data.get("id")) for event, data in live] == [
        ("item", last),
        ("job", job_id),
        ("end", None),
    ]


@pytest.mark.parametrize(
    ("last_event_id", "problem"),
    [
        ("42", "is not an item event's id"),
        ("last", "is not an item event's id"),
        ("2026-12-03T19:20:01", "is not an item event's id"),  # no UTC offset
        ("0001-01-01T00:00:00+00:00", "is out of range"),
        ("9999-12-31T23:59:59-14:00", "is out of range"),
        ("9999-12-31T23:59:59+00:00", "is in the future"),
    ],
)
def test_a_last_event_id_that_no_event_had_is_a_400_saying_what_to_send(
    record_only_client, last_event_id, problem
):
    client = record_only_client
    job_id = upload(client, [("a.jpg", jpeg_bytes(125))]).json()["job_id"]

    response = client.get(
        f"{JOBS}/{job_id}/events", headers={**ADMIN, "Last-Event-ID": last_event_id}
    )

    assert response.status_code == 400
    assert response.json()["detail"] == (
        f"Last-Event-ID {last_event_id!r} {problem}; send the id of the last item "
        "event received (its finished_at, like 2026-12-03T19:20:01.123456+00:00), "
        "or no Last-Event-ID to get every item from the start"
    )


def test_a_last_event_id_in_another_utc_offset_is_the_same_instant(
    record_only_client,
):
    client = record_only_client
    job_id = upload(client, [("a.jpg", jpeg_bytes(126))]).json()["job_id"]
    _record(job_id)
    client.post(f"{JOBS}/{job_id}/cancel", headers=ADMIN)
    (first,) = [
        data
        for event, data, _ in _events(
            client.get(f"{JOBS}/{job_id}/events", headers=ADMIN)
        )
        if event == "item"
    ]
    seen = datetime.fromisoformat(first["finished_at"])
    east = seen.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()

    before = client.get(
        f"{JOBS}/{job_id}/events",
        headers={**ADMIN, "Last-Event-ID": (seen - timedelta(seconds=1)).isoformat()},
    )
    after = client.get(
        f"{JOBS}/{job_id}/events", headers={**ADMIN, "Last-Event-ID": east}
    )

    assert [e for e, _, _ in _events(before)] == ["item", "job", "end"]
    assert [e for e, _, _ in _events(after)] == ["job", "end"]


def test_events_need_the_admin_role_and_a_job(record_only_client):
    client = record_only_client
    job_id = upload(client, [("a.jpg", jpeg_bytes(120))]).json()["job_id"]

    assert client.get(f"{JOBS}/{job_id}/events").status_code == 401
    assert client.get(f"{JOBS}/999/events", headers=ADMIN).status_code == 404


def test_events_stream_to_a_bearer_token_as_fetch_sends_it(data_dir):
    from fastapi.testclient import TestClient

    from image_tagger.app import create_app
    from image_tagger.auth.service import create_token

    with session_scope(write=True) as session:
        token = create_token(session, role="admin", name="cockpit")
    bearer = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app()) as client:
        answer = upload(client, [("a.jpg", jpeg_bytes(121))], headers=bearer)
        job_id = answer.json()["job_id"]
        wait_for_job(client, job_id, headers=bearer)

        with client.stream(
            "GET", f"{JOBS}/{job_id}/events", headers=bearer
        ) as response:
            events = [(event, data["status"]) for event, data, _ in _events(response)]

    assert response.status_code == 200
    assert events == [("item", "COMPLETED"), ("job", "COMPLETED"), ("end", "COMPLETED")]


def test_a_stopping_server_ends_its_open_streams(data_dir, tmp_path):
    server = ServerProcess(
        child_env(data_dir, IMAGE_TAGGER_AUTH_MODE="header", IMAGE_TAGGER_QUEUE="none"),
        tmp_path / "server.log",
    )
    server.start()
    try:
        with httpx2.Client(base_url=server.url, headers=ADMIN, timeout=30) as http:
            job_id = upload(http, [("a.jpg", jpeg_bytes(122))]).json()["job_id"]
            with http.stream("GET", f"{JOBS}/{job_id}/events") as response:
                events = _events(response)
                # The job waits for a worker; its first event arrives at once.
                event, job, _ = next(events)
                assert (event, job["status"]) == ("job", "PENDING")

                server.process.terminate()
                rest: list = []
                reader = threading.Thread(target=lambda: rest.extend(events))
                reader.start()
                reader.join(timeout=30)
                assert not reader.is_alive(), "the stream stayed open"
                assert rest == []  # closed without an end event
            server.process.wait(timeout=30)
    finally:
        server.kill()
