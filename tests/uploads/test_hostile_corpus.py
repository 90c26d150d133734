"""Every class of hostile or unusual upload, in one batch with good photos.

The corpus (tests/corpus.py) is sent as one multipart request written byte by
byte here, so file names reach the server exactly as given (control
characters, backslashes, unicode). Each file's verdict, its item's final
status and reason, and what was written to disk are checked.
"""

from __future__ import annotations

import uuid

import httpx2
import pytest
from corpus import Case, corpus
from helpers import (
    ADMIN,
    ROOT,
    STABLE_KEYS,
    ServerProcess,
    child_env,
    jpeg_bytes,
    upload,
    wait_for_job,
)
from load import problems_in_log

from image_tagger.settings import reset_settings

SIZE_LIMIT = 1_000_000


def multipart_body(files: list[tuple[bytes | str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body with raw UTF-8 file names, and its boundary."""
    boundary = f"corpus-{uuid.uuid4().hex}"
    parts = []
    for filename, content in files:
        raw = filename if isinstance(filename, bytes) else filename.encode()
        parts.append(
            f"--{boundary}\r\n".encode()
            + b'Content-Disposition: form-data; name="files"; filename="'
            + raw
            + b'"\r\nContent-Type: application/octet-stream\r\n\r\n'
            + content
            + b"\r\n"
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), boundary


def post_raw(client, files):
    body, boundary = multipart_body(files)
    return client.post(
        "/api/v1/admin/upload",
        content=body,
        headers={**ADMIN, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )


@pytest.fixture(params=["in-process", "server"])
def limited_http(request, data_dir, monkeypatch, tmp_path_factory):
    """A client of the app with a 1 MB file limit: in this process (through
    ASGI, server errors raised), or a server process over TCP."""
    monkeypatch.setenv("IMAGE_TAGGER_MAX_UPLOAD_BYTES", str(SIZE_LIMIT))
    reset_settings()
    if request.param == "in-process":
        yield request.getfixturevalue("client")
        return

    log = tmp_path_factory.mktemp("server") / "server.log"
    env = child_env(
        data_dir,
        IMAGE_TAGGER_AUTH_MODE="header",
        IMAGE_TAGGER_MAX_UPLOAD_BYTES=str(SIZE_LIMIT),
    )
    server = ServerProcess(env, log)
    server.start()
    try:
        with httpx2.Client(base_url=server.url, timeout=120) as http:
            yield http
    finally:
        server.stop()
    assert problems_in_log(log.read_text()) == []


def test_every_hostile_file_gets_its_own_outcome_and_the_batch_survives(
    limited_http, data_dir, tmp_path
):
    client = limited_http
    cases = corpus()
    outside = tmp_path / "outside"
    cases.append(
        Case(
            "absolute path inside the test folder",
            f"{outside}/evil4.jpg",
            jpeg_bytes(120),
            "accepted",
            item="COMPLETED",
            kept_name=f"{outside}/evil4.jpg",
        )
    )
    assert len(cases[-2].content) > SIZE_LIMIT  # the case over the size limit
    assert all(len(c.content) < SIZE_LIMIT for c in cases if "size" not in c.name)

    response = post_raw(client, [(case.filename, case.content) for case in cases])

    assert response.status_code == 202, response.text
    body = response.json()
    verdicts = body["files"]
    assert len(verdicts) == len(cases)
    for case, verdict in zip(cases, verdicts, strict=True):
        assert verdict["status"] == case.verdict, (case.name, verdict)
        for part in case.reason:
            assert part in (verdict["reason"] or ""), (case.name, verdict)
        if case.verdict == "rejected":
            assert verdict["reason"] and verdict["image_id"] is None, case.name
        else:
            assert verdict["image_id"] is not None, case.name
        expected_name = case.kept_name or (
            case.filename if isinstance(case.filename, str) else None
        )
        assert verdict["filename"] == expected_name, case.name

    job = wait_for_job(client, body["job_id"], timeout=180)
    with_items = [c for c in cases if c.item is not None]
    items = sorted(job["items"], key=lambda item: item["id"])
    assert len(items) == len(with_items) == job["total_items"]
    for case, item in zip(with_items, items, strict=True):
        assert item["filename"] == verdicts[cases.index(case)]["filename"]
        assert item["status"] == case.item, (case.name, item)
        for part in case.item_error:
            assert part in (item["error_message"] or ""), (case.name, item)
        if case.item == "FAILED":
            assert item["error_message"], case.name
        if case.verdict == "rejected":
            assert item["error_message"].startswith("rejected: "), case.name
    failed = sum(c.item == "FAILED" for c in with_items)
    assert job["status"] == "COMPLETED_WITH_ERRORS"
    assert (job["completed_items"], job["failed_items"]) == (
        len(with_items) - failed,
        failed,
    )

    for case, verdict in zip(cases, verdicts, strict=True):
        if verdict["image_id"] is not None and case.item == "COMPLETED":
            _check_image(client, case, verdict["image_id"])

    _check_nothing_written_outside(data_dir, tmp_path, cases)


def _check_image(client, case: Case, image_id: int) -> None:
    image = client.get(f"/api/v1/admin/images/{image_id}", headers=ADMIN).json()
    if case.format:
        assert image["format"] == case.format, case.name
    if case.upright_size:
        assert (image["width"], image["height"]) == case.upright_size, case.name
    metrics = image["analysis"]["metrics"]
    assert set(metrics) >= STABLE_KEYS, case.name
    for key, (low, high) in case.metrics.items():
        assert low <= metrics[key] <= high, (case.name, key, metrics[key])

    stored = client.get(f"/api/v1/admin/images/{image_id}/file", headers=ADMIN)
    assert stored.status_code == 200
    assert stored.headers["content-type"] == image["media_type"]
    assert stored.headers["content-type"].startswith("image/")
    assert stored.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in stored.headers["content-security-policy"]
    assert stored.content == case.content
    thumbnail = client.get(f"/api/v1/admin/images/{image_id}/thumbnail", headers=ADMIN)
    assert thumbnail.headers["content-type"] == "image/jpeg"


def _check_nothing_written_outside(data_dir, tmp_path, cases) -> None:
    # Inside the data directory only content-addressed files, the database,
    # and an empty staging folder.
    for path in data_dir.rglob("*"):
        if path.is_dir():
            continue
        relative = path.relative_to(data_dir)
        assert relative.parts[0] in (
            "images",
            "thumbnails",
        ) or relative.name.startswith("image_tagger.db"), relative
        if relative.parts[0] == "images":
            assert len(relative.stem) == 64 and relative.stem.isalnum(), relative
    assert list((data_dir / "tmp").iterdir()) == []

    # Nothing where a file name taken as a path would have led.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    for case in cases:
        name = case.filename if isinstance(case.filename, str) else ""
        for base in (data_dir, data_dir / "tmp", data_dir / "images", ROOT):
            target = (base / name.replace("\\", "/")).resolve()
            if target.name.startswith("evil"):
                assert not target.exists(), target


def test_the_same_bytes_in_a_later_batch_reuse_the_analysed_image(client):
    photo = jpeg_bytes(130)
    first = upload(client, [("first.jpg", photo)]).json()
    wait_for_job(client, first["job_id"])

    again = post_raw(client, [("again.jpg", photo), ("fresh.jpg", jpeg_bytes(131))])

    verdicts = again.json()["files"]
    assert verdicts[0]["status"] == "duplicate"
    assert (
        verdicts[0]["reason"]
        == f"same bytes as image {first['image_ids'][0]} uploaded before"
    )
    assert verdicts[0]["image_id"] == first["image_ids"][0]
    assert verdicts[1]["status"] == "accepted"
    job = wait_for_job(client, again.json()["job_id"])
    assert [i["status"] for i in job["items"]] == ["COMPLETED", "COMPLETED"]
    assert "already analysed" in job["items"][0]["note"]


def test_one_file_past_the_default_count_is_a_413_and_nothing_is_kept(client, data_dir):
    files = [(f"{n}.jpg", b"tiny") for n in range(501)]

    response = post_raw(client, files)

    assert response.status_code == 413
    detail = response.json()["detail"]
    assert "more than 500 files" in detail
    assert "IMAGE_TAGGER_MAX_FILES_PER_UPLOAD" in detail
    assert client.get("/api/v1/admin/upload/jobs", headers=ADMIN).json()["jobs"] == []
    assert list((data_dir / "tmp").iterdir()) == []


def test_a_part_header_past_the_parser_limit_is_a_400(client, data_dir):
    # A 20 kB file name: the multipart parser bounds each header line (4 kB),
    # so a hostile header cannot grow the server's memory.
    response = post_raw(client, [("a" * 20_000 + ".jpg", jpeg_bytes(140))])

    assert response.status_code == 400
    assert "could not be read" in response.json()["detail"]
    assert list((data_dir / "images").rglob("*")) == []
    assert list((data_dir / "tmp").iterdir()) == []


@pytest.mark.parametrize(
    ("disposition", "content", "kept"),
    [
        (b"filename*=UTF-8''caf%C3%A9%20%E6%9D%B1.jpg", "photo", "café 東.jpg"),
        (b'filename="caf\xe9.jpg"', "photo", "caf\ufffd.jpg"),
        (b'filename=""', "empty", "unnamed"),
        (b'filename="\\"quoted\\".jpg"', "photo", '"quoted".jpg'),
    ],
)
def test_unusual_name_encodings_are_read_as_data(client, disposition, content, kept):
    data = jpeg_bytes(150) if content == "photo" else b""
    body = (
        b'--B\r\nContent-Disposition: form-data; name="files"; '
        + disposition
        + b"\r\n\r\n"
        + data
        + b"\r\n--B--\r\n"
    )
    response = client.post(
        "/api/v1/admin/upload",
        content=body,
        headers={**ADMIN, "Content-Type": "multipart/form-data; boundary=B"},
    )

    assert response.status_code == 202
    verdict = response.json()["files"][0]
    assert verdict["filename"] == kept
    assert verdict["status"] == ("accepted" if data else "rejected")
