"""The upload endpoint end to end: verdicts, storage, the job and its results."""

from __future__ import annotations

import hashlib

import pytest
from helpers import (
    ADMIN,
    SAMPLE_PHOTOS,
    STABLE_KEYS,
    jpeg_bytes,
    upload,
    wait_for_job,
)

from image_tagger.science import PIPELINE_VERSION


def test_upload_photos_and_a_non_image_runs_the_job_to_the_end(client, data_dir):
    photos = SAMPLE_PHOTOS[:3]
    response = upload(client, [*photos, ("notes.jpg", b"these are not pixels\n")])

    assert response.status_code == 202
    body = response.json()
    assert [f["filename"] for f in body["files"]] == [p.name for p in photos] + [
        "notes.jpg"
    ]
    assert [f["status"] for f in body["files"]] == ["accepted"] * 3 + ["rejected"]
    assert "not an image" in body["files"][3]["reason"]
    assert len(body["image_ids"]) == 3

    job = wait_for_job(client, body["job_id"])
    assert job["status"] == "COMPLETED_WITH_ERRORS"
    assert (job["total_items"], job["completed_items"], job["failed_items"]) == (
        4,
        3,
        1,
    )
    assert job["error_summary"].startswith(
        "1 failed; notes.jpg: rejected: not an image"
    )
    rejected = [i for i in job["items"] if i["status"] == "FAILED"]
    assert rejected[0]["image_id"] is None
    assert rejected[0]["error_message"].startswith("rejected: not an image")
    assert all(i["attempts"] == 1 for i in job["items"] if i["status"] == "COMPLETED")

    for image_id, photo in zip(body["image_ids"], photos, strict=True):
        image = client.get(f"/api/v1/admin/images/{image_id}", headers=ADMIN).json()
        assert image["sha256"] == hashlib.sha256(photo.read_bytes()).hexdigest()
        assert image["format"] == "JPEG"
        analysis = image["analysis"]
        assert analysis["pipeline_version"] == PIPELINE_VERSION
        assert set(analysis["metrics"]) >= STABLE_KEYS
        assert 1.0 < analysis["metrics"]["fractal.dimension"] < 2.0
        assert 0.0 < analysis["metrics"]["complexity.entropy_bits"] <= 8.0
        stored = data_dir / "images" / image["sha256"][:2] / image["sha256"][2:4]
        assert (
            stored.joinpath(f"{image['sha256']}.jpg").read_bytes() == photo.read_bytes()
        )

    assert list((data_dir / "tmp").iterdir()) == []


def test_same_bytes_reuse_the_image_and_are_not_analysed_again(client, data_dir):
    photo = jpeg_bytes(1)
    first = upload(client, [("a.jpg", photo), ("again.jpg", photo)]).json()

    assert [f["status"] for f in first["files"]] == ["accepted", "duplicate"]
    assert "'a.jpg' in this upload" in first["files"][1]["reason"]
    assert first["files"][1]["image_id"] == first["files"][0]["image_id"]
    job = wait_for_job(client, first["job_id"])
    assert job["total_items"] == 1 and job["status"] == "COMPLETED"

    image_id = first["image_ids"][0]
    thumbnails = list((data_dir / "thumbnails").rglob("*.jpg"))
    assert len(thumbnails) == 1
    thumbnails[0].unlink()  # lost, e.g. a folder cleaned by hand

    second = upload(client, [("b.jpg", photo)]).json()
    assert second["files"][0]["status"] == "duplicate"
    assert second["files"][0]["earlier"] == {
        "job_id": first["job_id"],
        "status": "COMPLETED",
        "error_message": None,
    }
    assert second["image_ids"] == first["image_ids"]
    job = wait_for_job(client, second["job_id"])
    assert job["status"] == "COMPLETED"
    assert "already analysed" in job["items"][0]["note"]
    thumb = client.get(f"/api/v1/admin/images/{image_id}/thumbnail", headers=ADMIN)
    assert thumb.status_code == 200


def test_a_duplicate_of_a_failed_image_says_how_it_failed(record_only_client, data_dir):
    from image_tagger.jobs.runner import run_upload_job

    client = record_only_client
    photo = jpeg_bytes(7)
    first = upload(client, [("lost.jpg", photo)]).json()
    assert first["files"][0]["earlier"] is None
    sha256 = hashlib.sha256(photo).hexdigest()
    (stored,) = data_dir.glob(f"images/**/{sha256}.*")
    stored.unlink()  # gone before its job runs, so its analysis fails
    run_upload_job(first["job_id"])
    failed = client.get(
        f"/api/v1/admin/upload/jobs/{first['job_id']}", headers=ADMIN
    ).json()["items"][0]
    assert failed["status"] == "FAILED" and failed["error_message"]

    again = upload(client, [("lost-again.jpg", photo)]).json()

    verdict = again["files"][0]
    assert verdict["status"] == "duplicate"
    assert verdict["earlier"] == {
        "job_id": first["job_id"],
        "status": "FAILED",
        "error_message": failed["error_message"],
    }


def test_type_is_decided_by_content_not_by_name(client):
    png_named_txt = ("picture.txt", _png())
    html_named_jpg = ("page.jpg", b"<html><script>alert(1)</script></html>")
    body = upload(client, [png_named_txt, html_named_jpg, ("empty.png", b"")]).json()

    verdicts = {f["filename"]: f for f in body["files"]}
    assert verdicts["picture.txt"]["status"] == "accepted"
    assert verdicts["page.jpg"]["status"] == "rejected"
    assert verdicts["empty.png"] == {
        **verdicts["empty.png"],
        "status": "rejected",
        "reason": "file is empty",
    }
    image = client.get(
        f"/api/v1/admin/images/{body['image_ids'][0]}", headers=ADMIN
    ).json()
    assert image["format"] == "PNG"


def test_every_file_rejected_fails_the_job_at_once(client):
    body = upload(client, [("a.gif", b"GIF89a broken"), ("b.jpg", b"\xff\xd8")]).json()

    job = client.get(
        f"/api/v1/admin/upload/jobs/{body['job_id']}", headers=ADMIN
    ).json()
    assert job["status"] == "FAILED"
    assert job["failed_items"] == 2


def test_limits_reject_each_file_with_the_setting_to_change(client, monkeypatch):
    from image_tagger.settings import reset_settings

    monkeypatch.setenv("IMAGE_TAGGER_MAX_UPLOAD_BYTES", "20000")
    monkeypatch.setenv("IMAGE_TAGGER_MAX_IMAGE_PIXELS", "50000")
    reset_settings()
    big = jpeg_bytes(2, size=(1200, 900))
    many_pixels = _png(size=(300, 300))
    small = jpeg_bytes(3, size=(100, 80))
    body = upload(
        client, [("big.jpg", big), ("wide.png", many_pixels), ("ok.jpg", small)]
    ).json()

    big_v, wide_v, ok_v = body["files"]
    assert big_v["status"] == "rejected"
    assert "IMAGE_TAGGER_MAX_UPLOAD_BYTES" in big_v["reason"]
    assert wide_v["status"] == "rejected"
    assert "90,000 pixels" in wide_v["reason"]
    assert "IMAGE_TAGGER_MAX_IMAGE_PIXELS" in wide_v["reason"]
    assert ok_v["status"] == "accepted"


def test_too_many_files_is_a_413_and_stores_nothing(client, monkeypatch, data_dir):
    from image_tagger.settings import reset_settings

    monkeypatch.setenv("IMAGE_TAGGER_MAX_FILES_PER_UPLOAD", "2")
    reset_settings()
    response = upload(client, [(f"{i}.jpg", jpeg_bytes(i)) for i in range(3)])

    assert response.status_code == 413
    assert "IMAGE_TAGGER_MAX_FILES_PER_UPLOAD" in response.json()["detail"]
    jobs = client.get("/api/v1/admin/upload/jobs", headers=ADMIN).json()
    assert jobs["jobs"] == []
    assert list((data_dir / "tmp").iterdir()) == []


def test_a_request_without_files_says_what_to_send(client):
    response = client.post(
        "/api/v1/admin/upload",
        headers=ADMIN,
        data={"other": "x"},
        files={"note": ("a", b"b")},
    )
    assert response.status_code == 400
    assert "field 'files'" in response.json()["detail"]

    response = client.post("/api/v1/admin/upload", headers=ADMIN, json={})
    assert response.status_code == 415


def test_filenames_are_kept_as_data_only(client, data_dir):
    photo = jpeg_bytes(4)
    name = "../../etc/\x1bevil\u202e" + "é" * 300 + ".jpg"
    body = upload(client, [(name, photo)]).json()

    kept = body["files"][0]["filename"]
    assert body["files"][0]["status"] == "accepted"
    assert "\x1b" not in kept and "\u202e" not in kept
    assert len(kept) <= 255
    assert kept.startswith("../../etc/")
    written = [p for p in data_dir.rglob("*") if p.is_file()]
    assert all("evil" not in p.name for p in written)


def _png(size=(64, 48)) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_an_exif_rotated_photo_reports_its_upright_size(client):
    import io

    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    Image.new("RGB", (400, 250), (90, 120, 200)).save(buffer, "JPEG", exif=exif)
    body = upload(client, [("rotated.jpg", buffer.getvalue())]).json()

    image = client.get(f"/api/v1/admin/images/{body['image_ids'][0]}", headers=ADMIN)
    assert (image.json()["width"], image.json()["height"]) == (250, 400)


def _raw_upload(client, body: bytes, boundary: str):
    return client.post(
        "/api/v1/admin/upload",
        content=body,
        headers={**ADMIN, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )


def test_a_body_cut_off_mid_file_is_refused_and_nothing_is_stored(client, data_dir):
    photo = jpeg_bytes(40)
    head = b'--XYZ\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"'
    response = _raw_upload(client, head + b"\r\n\r\n" + photo[: len(photo) // 2], "XYZ")

    assert response.status_code == 400
    assert "closing boundary" in response.json()["detail"]
    assert list((data_dir / "images").rglob("*.jpg")) == []
    assert list((data_dir / "tmp").iterdir()) == []


def test_a_malformed_boundary_is_a_400_not_a_500(client):
    response = _raw_upload(client, b"--x\r\n", "x" * 300)
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "the multipart body could not be read: the boundary in the Content-Type "
        "header is 300 bytes long, more than the 256 allowed; send a shorter one "
        "(HTTP clients choose about 40); nothing was stored"
    )


HOW_TO_SEND = (
    "send the images as multipart/form-data, each file in the field 'files' "
    "(curl -F files=@photo.jpg ...; HTTP clients write the Content-Type and its "
    "boundary themselves)"
)
PART = (
    b'--B\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"\r\n\r\n'
    b"photo\r\n--B--\r\n"
)


@pytest.mark.parametrize(
    ("content_type", "body", "status", "detail"),
    [
        (
            None,
            PART,
            415,
            f"the request has no Content-Type header; {HOW_TO_SEND}",
        ),
        (
            "application/json",
            b"{}",
            415,
            "the request's Content-Type is 'application/json', not "
            f"multipart/form-data; {HOW_TO_SEND}",
        ),
        (
            "multipart/mixed; boundary=B",
            PART,
            415,
            "the request's Content-Type is 'multipart/mixed', not "
            f"multipart/form-data; {HOW_TO_SEND}",
        ),
        (
            "multipart/form-data",
            PART,
            400,
            "the Content-Type multipart/form-data has no boundary parameter, so its "
            f"parts cannot be told apart; {HOW_TO_SEND}",
        ),
        (
            "multipart/form-data; boundary=B",
            b"",
            400,
            f"the request body is empty; {HOW_TO_SEND}",
        ),
        (
            "multipart/form-data; boundary=C",
            PART,
            400,
            "the multipart body could not be read: the body does not follow the "
            "boundary 'C' of the Content-Type header: each part must begin with a "
            "line '--C' and the body end with '--C--'; send the header and the body "
            "that an HTTP client writes together; nothing was stored",
        ),
        (
            "multipart/form-data; boundary=B",
            PART[:60],
            400,
            "the multipart body ended before its closing boundary (the upload was "
            "cut off); nothing was stored, send it again",
        ),
        (
            "multipart/form-data; boundary=B",
            b"--B\r\nno colon here\r\n\r\nphoto\r\n--B--\r\n",
            400,
            "the multipart body could not be read: a part's headers are malformed "
            "(Found invalid character 32 in header at 7): each part needs a line "
            '\'Content-Disposition: form-data; name="files"; '
            "filename=\"photo.jpg\"', then an empty line, then the file's bytes; "
            "nothing was stored",
        ),
    ],
    ids=[
        "no content type",
        "json",
        "multipart/mixed",
        "no boundary",
        "empty body",
        "other boundary",
        "cut off",
        "bad part header",
    ],
)
def test_a_malformed_request_says_what_was_wrong_and_what_to_send(
    client, data_dir, content_type, body, status, detail
):
    headers = dict(ADMIN)
    if content_type is not None:
        headers["Content-Type"] = content_type

    response = client.post("/api/v1/admin/upload", content=body, headers=headers)

    assert (response.status_code, response.json()["detail"]) == (status, detail)
    assert list((data_dir / "tmp").iterdir()) == []
    assert client.get("/api/v1/admin/upload/jobs", headers=ADMIN).json()["jobs"] == []


def test_an_upload_whose_files_are_all_rejected_answers_failed(client):
    body = upload(client, [("empty.jpg", b"")]).json()
    assert body["status"] == "FAILED"


def test_slow_header_checks_do_not_hold_the_database(client, data_dir, monkeypatch):
    import sqlite3

    from image_tagger.db import get_engine
    from image_tagger.uploads import service

    seen: list[str] = []
    real_inspect = service.inspect_image

    def inspect_while_another_writer_writes(path, **kwargs):
        if get_engine().dialect.name == "sqlite":
            other = sqlite3.connect(data_dir / "image_tagger.db", timeout=1)
            other.execute("BEGIN IMMEDIATE")
            other.execute("UPDATE api_tokens SET name = name")
            other.commit()
            other.close()
        else:  # no lock on the upload's tables may be held while checking
            with get_engine().begin() as other:
                other.exec_driver_sql(
                    "LOCK TABLE images, upload_jobs, upload_job_items "
                    "IN EXCLUSIVE MODE NOWAIT"
                )
        seen.append(path.name)
        return real_inspect(path, **kwargs)

    monkeypatch.setattr(service, "inspect_image", inspect_while_another_writer_writes)
    response = upload(client, [("a.jpg", jpeg_bytes(41)), ("b.jpg", jpeg_bytes(42))])

    assert response.status_code == 202
    assert len(seen) == 2
