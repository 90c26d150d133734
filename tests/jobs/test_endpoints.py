"""The job list and job detail endpoints."""

from __future__ import annotations

import io

from helpers import ADMIN, jpeg_bytes, upload, wait_for_job
from PIL import Image

from image_tagger.jobs.runner import run_upload_job


def test_job_list_is_newest_first_with_counts_by_status(client):
    first = upload(client, [("a.jpg", jpeg_bytes(10))]).json()["job_id"]
    wait_for_job(client, first)
    second = upload(client, [("junk.png", b"nope")]).json()["job_id"]

    body = client.get("/api/v1/admin/upload/jobs?limit=20", headers=ADMIN).json()
    assert [job["id"] for job in body["jobs"]] == [second, first]
    assert body["counts"] == {
        "PENDING": 0,
        "RUNNING": 0,
        "COMPLETED": 1,
        "COMPLETED_WITH_ERRORS": 0,
        "FAILED": 1,
        "CANCELLED": 0,
    }
    summary = body["jobs"][1]
    for key in (
        "id",
        "status",
        "total_items",
        "completed_items",
        "failed_items",
        "error_summary",
        "created_at",
        "updated_at",
    ):
        assert key in summary
    assert summary["progress"] == 1.0

    limited = client.get("/api/v1/admin/upload/jobs?limit=1", headers=ADMIN).json()
    assert [job["id"] for job in limited["jobs"]] == [second]
    assert (
        client.get("/api/v1/admin/upload/jobs?limit=0", headers=ADMIN).status_code
        == 422
    )


def test_job_detail_pages_through_items(client):
    body = upload(client, [(f"{n}.jpg", jpeg_bytes(20 + n)) for n in range(5)]).json()
    wait_for_job(client, body["job_id"])

    page = client.get(
        f"/api/v1/admin/upload/jobs/{body['job_id']}?items_offset=2&items_limit=2",
        headers=ADMIN,
    ).json()
    assert [item["filename"] for item in page["items"]] == ["2.jpg", "3.jpg"]
    assert page["items_total"] == 5
    item = page["items"][0]
    for key in (
        "id",
        "image_id",
        "filename",
        "status",
        "error_message",
        "attempts",
        "started_at",
        "finished_at",
    ):
        assert key in item
    assert client.get("/api/v1/admin/upload/jobs/999", headers=ADMIN).status_code == 404


def test_stored_files_are_served_with_their_image_type(client):
    photo = jpeg_bytes(30)
    body = upload(client, [("p.jpg", photo)]).json()
    image_id = body["image_ids"][0]
    wait_for_job(client, body["job_id"])

    response = client.get(f"/api/v1/admin/images/{image_id}/file", headers=ADMIN)
    assert response.content == photo
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["x-content-type-options"] == "nosniff"
    thumb = client.get(f"/api/v1/admin/images/{image_id}/thumbnail", headers=ADMIN)
    assert thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content[:2] == b"\xff\xd8"
    with Image.open(io.BytesIO(thumb.content)) as small:
        assert small.size == (256, 192)


def test_ids_past_32_bits_and_offsets_past_64_bits_are_a_422(client):
    huge = 2**63
    for path in (
        f"/api/v1/admin/upload/jobs/{2**31}",
        f"/api/v1/admin/upload/jobs/{huge}",
        f"/api/v1/admin/upload/jobs?offset={huge}",
        f"/api/v1/admin/upload/jobs/1?items_offset={huge}",
        f"/api/v1/admin/images/{2**31}",
        f"/api/v1/admin/images/{huge}/thumbnail",
    ):
        assert client.get(path, headers=ADMIN).status_code == 422, path
    # The largest id an INTEGER column holds is a plain 404.
    largest = 2**31 - 1
    assert (
        client.get(f"/api/v1/admin/images/{largest}", headers=ADMIN).status_code == 404
    )


def test_concurrent_first_thumbnails_are_all_whole(client):
    from concurrent.futures import ThreadPoolExecutor

    body = upload(client, [("t.jpg", jpeg_bytes(43, size=(1200, 900)))]).json()
    image_id = body["image_ids"][0]
    wait_for_job(client, body["job_id"])

    def fetch(_):
        return client.get(f"/api/v1/admin/images/{image_id}/thumbnail", headers=ADMIN)

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(fetch, range(8)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    assert responses[0].content.endswith(b"\xff\xd9")


def test_a_thumbnail_says_why_it_is_missing(record_only_client):
    client = record_only_client
    whole = jpeg_bytes(44, size=(800, 600))
    cut = whole[: len(whole) // 2]  # header intact, pixel data cut off
    body = upload(client, [("cut.jpg", cut), ("later.jpg", jpeg_bytes(45))]).json()
    cut_id, later_id = body["image_ids"]
    job_id = body["job_id"]

    waiting = client.get(f"/api/v1/admin/images/{later_id}/thumbnail", headers=ADMIN)
    run_upload_job(job_id)
    failed = client.get(f"/api/v1/admin/images/{cut_id}/thumbnail", headers=ADMIN)

    assert waiting.status_code == 404
    assert waiting.json()["detail"].startswith("no thumbnail yet")
    assert "is PENDING" in waiting.json()["detail"]
    assert failed.status_code == 409
    detail = failed.json()["detail"]
    assert detail.startswith("no thumbnail: the analysis of this image failed: ")
    assert "truncated or corrupt" in detail
    # Retrying cannot mend stored bytes: the advice is a repaired copy.
    assert detail.endswith(
        "; upload a repaired copy (retrying cannot change the stored file)"
    )
    assert "/retry" not in detail
    made = client.get(f"/api/v1/admin/images/{later_id}/thumbnail", headers=ADMIN)
    assert made.status_code == 200
