"""Many clients uploading at once to a real server on SQLite: nothing lost.

The full size (20 clients of 10 images) runs in ``make bench``; this is the
same code with fewer clients.
"""

from __future__ import annotations

from helpers import ServerProcess, child_env
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
