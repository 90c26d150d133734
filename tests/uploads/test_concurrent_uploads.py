"""Uploads to a real server process: many clients at once on SQLite, a client
that goes away; nothing lost, nothing left behind.

The full size (20 clients of 10 images) runs in ``make bench``; this is the
same code with fewer clients.
"""

from __future__ import annotations

import socket
import threading
import time

import httpx2
from helpers import ADMIN, ServerProcess, child_env, jpeg_bytes, wait_for_job
from load import concurrent_uploads, problems_in_log
from sqlalchemy import func, select

from image_tagger.db import session_scope
from image_tagger.images.models import Image, ImageAnalysis


def test_clients_uploading_at_once_all_get_their_images_stored_and_analysed(
    data_dir, tmp_path
):
    clients, per_client = 8, 5
    log = tmp_path / "server.log"
    server = ServerProcess(
        child_env(data_dir, IMAGE_TAGGER_AUTH_MODE="header"), log_path=log
    )
    server.start()
    try:
        result = concurrent_uploads(
            server.url, clients=clients, files_per_client=per_client, timeout=300
        )
    finally:
        server.stop()

    assert result.errors == []
    assert result.answers == [202] * clients
    assert [job["status"] for job in result.jobs] == ["COMPLETED"] * clients
    items = [item for job in result.jobs for item in job["items"]]
    assert len(items) == clients * per_client
    assert {item["status"] for item in items} == {"COMPLETED"}
    assert all(item["attempts"] == 1 for item in items)
    with session_scope() as session:
        assert (
            session.scalar(select(func.count()).select_from(Image))
            == clients * per_client
        )
        analysed = session.scalar(
            select(func.count(func.distinct(ImageAnalysis.image_id)))
        )
        assert analysed == clients * per_client
    assert len(list((data_dir / "images").rglob("*.jpg"))) == clients * per_client
    assert problems_in_log(log.read_text()) == []


def test_a_client_that_goes_away_mid_upload_leaves_nothing_behind(data_dir, tmp_path):
    log = tmp_path / "server.log"
    server = ServerProcess(
        child_env(data_dir, IMAGE_TAGGER_AUTH_MODE="header"), log_path=log
    )
    server.start()
    try:
        photo = jpeg_bytes(70, size=(1600, 1200))
        head = (
            b'--B\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"'
            b"\r\n\r\n"
        )
        request = (
            b"POST /api/v1/admin/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"X-User-Role: admin\r\n"
            b"Content-Type: multipart/form-data; boundary=B\r\n"
            + f"Content-Length: {len(head) + len(photo) + 10}\r\n\r\n".encode()
        )
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(request + head + photo[: len(photo) // 2])
            time.sleep(0.5)  # the server has begun staging the file

        deadline = time.monotonic() + 10
        while list((data_dir / "tmp").iterdir()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert list((data_dir / "tmp").iterdir()) == []
        after = httpx2.post(
            f"{server.url}/api/v1/admin/upload",
            headers={"X-User-Role": "admin"},
            files=[("files", ("b.jpg", jpeg_bytes(71), "image/jpeg"))],
        )
        assert after.status_code == 202
    finally:
        server.stop()

    assert list((data_dir / "images").rglob("*.jpg")) != []
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Image)) == 1
    assert problems_in_log(log.read_text()) == []


def test_clients_sending_the_same_photos_at_once_share_one_image_each(
    data_dir, tmp_path
):
    clients, photos = 6, [jpeg_bytes(80 + n, size=(800, 600)) for n in range(4)]
    log = tmp_path / "server.log"
    server = ServerProcess(
        child_env(data_dir, IMAGE_TAGGER_AUTH_MODE="header"), log_path=log
    )
    server.start()
    answers: list[dict] = []
    start = threading.Barrier(clients)

    def send(client: int) -> None:
        files = [
            ("files", (f"c{client}-{n}.jpg", data, "image/jpeg"))
            for n, data in enumerate(photos)
        ]
        start.wait()
        response = httpx2.post(
            f"{server.url}/api/v1/admin/upload",
            headers={"X-User-Role": "admin"},
            files=files,
            timeout=120,
        )
        assert response.status_code == 202, response.text
        answers.append(response.json())

    try:
        threads = [threading.Thread(target=send, args=(c,)) for c in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with httpx2.Client(base_url=server.url, headers=ADMIN) as http:
            jobs = [wait_for_job(http, answer["job_id"]) for answer in answers]
    finally:
        server.stop()

    assert len(answers) == clients
    for n in range(len(photos)):
        statuses = sorted(answer["files"][n]["status"] for answer in answers)
        assert statuses == ["accepted"] + ["duplicate"] * (clients - 1)
        assert len({answer["files"][n]["image_id"] for answer in answers}) == 1
    assert {job["status"] for job in jobs} == {"COMPLETED"}
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Image)) == len(photos)
        assert session.scalar(select(func.count()).select_from(ImageAnalysis)) == len(
            photos
        )
    assert problems_in_log(log.read_text()) == []
