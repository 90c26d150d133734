"""The image-tagger command: ingest, analyze, token."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import ROOT, SAMPLE_PHOTOS, child_env, jpeg_bytes


def _cli(data_dir, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "image_tagger.cli", *args],
        env=child_env(data_dir, COLUMNS="200", **env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_ingest_runs_the_job_and_prints_a_summary(data_dir, tmp_path):
    folder = tmp_path / "batch"
    folder.mkdir()
    for photo in SAMPLE_PHOTOS[:2]:
        (folder / photo.name).write_bytes(photo.read_bytes())
    (folder / "readme.jpg").write_text("not a photo")

    result = _cli(data_dir, "ingest", str(folder))

    assert result.returncode == 0, result.stderr
    assert "3 files (2 accepted, 0 duplicate, 1 rejected)" in result.stdout
    assert "COMPLETED_WITH_ERRORS" in result.stdout
    assert "2 completed, 1 failed of 3" in result.stdout
    assert SAMPLE_PHOTOS[0].name in result.stdout


def test_ingest_with_record_only_queue_leaves_the_job_for_a_worker(data_dir, tmp_path):
    photo = tmp_path / "one.jpg"
    photo.write_bytes(jpeg_bytes(5))

    result = _cli(data_dir, "ingest", str(photo), IMAGE_TAGGER_QUEUE="none")

    assert result.returncode == 0, result.stderr
    assert "-m scripts.run_upload_job 1" in result.stdout


def test_analyze_json_prints_one_line_per_file(data_dir, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")

    result = _cli(
        data_dir,
        "analyze",
        "--json",
        str(SAMPLE_PHOTOS[0]),
        str(broken),
        str(tmp_path / "missing.png"),
    )

    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 1
    assert [line["file"] for line in lines] == [
        str(SAMPLE_PHOTOS[0]),
        str(broken),
        str(tmp_path / "missing.png"),
    ]
    assert 1.0 < lines[0]["metrics"]["fractal.dimension"] < 2.0
    assert lines[0]["notes"] == {}
    assert "error" in lines[1] and "error" in lines[2]
    assert list((data_dir / "images").iterdir()) == []


def test_token_create_prints_a_token_that_works(data_dir):
    from fastapi.testclient import TestClient

    from image_tagger.app import create_app

    result = _cli(data_dir, "token", "create", "--role", "admin")
    token = result.stdout.strip()
    assert result.returncode == 0 and token.startswith("itk_")

    with TestClient(create_app()) as client:
        response = client.get(
            "/api/v1/admin/upload/jobs", headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 200

    bad = _cli(data_dir, "token", "create", "--role", "root")
    assert bad.returncode == 2
    assert "choose one of admin, tagger" in bad.stderr

    assert _cli(data_dir, "token", "revoke", "1").returncode == 0
    with TestClient(create_app()) as client:
        response = client.get(
            "/api/v1/admin/upload/jobs", headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 401
    assert _cli(data_dir, "token", "revoke", "1").returncode == 2


def test_bad_settings_are_named_without_a_traceback(data_dir):
    result = _cli(data_dir, "migrate", IMAGE_TAGGER_AUTH_MODE="Header")

    assert result.returncode == 2
    assert "IMAGE_TAGGER_AUTH_MODE='Header'" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_ingest_and_worker_say_how_to_install_a_missing_celery(
    data_dir, tmp_path
):
    photo = tmp_path / "a.jpg"
    photo.write_bytes(jpeg_bytes(6))
    # A package that fails to import, as Celery does where it is not installed.
    shadow = tmp_path / "shadow" / "celery"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no celery here')\n")
    path = f"{shadow.parent}:{ROOT}"
    for args in (("serve",), ("ingest", str(photo)), ("worker",)):
        result = _cli(data_dir, *args, IMAGE_TAGGER_QUEUE="celery", PYTHONPATH=path)
        assert result.returncode == 2, result.stderr
        assert "pip install 'image-tagger[celery]'" in result.stderr
        assert "Traceback" not in result.stderr
    assert list((data_dir / "images").iterdir()) == []


def test_a_bad_log_level_is_a_settings_error(data_dir):
    result = _cli(data_dir, "migrate", IMAGE_TAGGER_LOG_LEVEL="verbose")
    assert result.returncode == 2
    assert "IMAGE_TAGGER_LOG_LEVEL='VERBOSE'" in result.stderr


def test_serve_refuses_a_port_in_use_before_touching_jobs(data_dir):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _cli(data_dir, "serve", "--port", str(port))

    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
