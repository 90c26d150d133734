"""Who may call the admin API, in token mode (default) and header mode."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from image_tagger.auth.service import create_token
from image_tagger.db import session_scope

ADMIN_PATHS = [
    ("GET", "/api/v1/admin/upload/jobs"),
    ("GET", "/api/v1/admin/upload/jobs/1"),
    ("GET", "/api/v1/admin/images/1"),
    ("GET", "/api/v1/admin/images/1/file"),
    ("GET", "/api/v1/admin/images/1/thumbnail"),
    ("POST", "/api/v1/admin/upload"),
    ("POST", "/api/v1/admin/upload/jobs/1/cancel"),
    ("POST", "/api/v1/admin/upload/jobs/1/retry"),
    ("POST", "/api/v1/admin/upload/jobs/reanalyze"),
    ("GET", "/api/v1/admin/upload/jobs/1/export"),
    ("GET", "/api/v1/admin/upload/jobs/1/events"),
    ("GET", "/api/v1/admin/costs"),
]


@pytest.fixture
def token_client(data_dir):
    from image_tagger.app import create_app

    with TestClient(create_app()) as test_client:
        yield test_client


def _token(role: str) -> str:
    with session_scope(write=True) as session:
        return create_token(session, role=role, name=f"test-{role}")


@pytest.mark.parametrize(("method", "path"), ADMIN_PATHS)
def test_token_mode_needs_an_admin_token(token_client, method, path):
    anonymous = token_client.request(method, path)
    assert anonymous.status_code == 401
    assert "image-tagger token create" in anonymous.json()["detail"]

    wrong = token_client.request(method, path, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401

    tagger = token_client.request(
        method, path, headers={"Authorization": f"Bearer {_token('tagger')}"}
    )
    assert tagger.status_code == 403
    assert "admin role" in tagger.json()["detail"]

    admin = token_client.request(
        method, path, headers={"Authorization": f"Bearer {_token('admin')}"}
    )
    assert admin.status_code not in (401, 403)


def test_first_start_creates_one_admin_token_and_prints_it(data_dir, capsys):
    from image_tagger.app import create_app

    with TestClient(create_app()):
        pass
    printed = capsys.readouterr().err
    tokens = re.findall(r"^    (itk_\S+)$", printed, flags=re.MULTILINE)
    assert len(tokens) == 1
    assert "/docs (Authorize)" in printed

    with TestClient(create_app()) as test_client:
        ok = test_client.get(
            "/api/v1/admin/upload/jobs",
            headers={"Authorization": f"Bearer {tokens[0]}"},
        )
    assert ok.status_code == 200
    assert "itk_" not in capsys.readouterr().err


def test_docs_work_offline_and_offer_both_auth_schemes(token_client):
    page = token_client.get("/docs").text
    assert "cdn" not in page
    assert token_client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    schemes = token_client.get("/openapi.json").json()["components"]["securitySchemes"]
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    assert schemes["APIKeyHeader"]["name"] == "X-User-Role"


def test_only_a_hash_of_a_token_is_stored(data_dir):
    from image_tagger.auth.models import ApiToken

    token = _token("admin")
    with session_scope() as session:
        stored = session.query(ApiToken.token_hash).all()
    assert all(token not in row.token_hash for row in stored)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, 401),
        ({"X-User-Role": "tagger"}, 403),
        ({"X-User-Role": "visitor"}, 403),
        ({"X-User-Role": "admin"}, 200),
    ],
)
def test_header_mode_takes_the_role_from_the_proxy_header(client, headers, expected):
    assert (
        client.get("/api/v1/admin/upload/jobs", headers=headers).status_code == expected
    )


def test_healthz_needs_no_auth_and_reports_database_and_queue(client, databases):
    body = client.get("/healthz").json()
    assert body["status"] == "ok"
    assert body["database"] == {"ok": True, "dialect": databases.kind}
    assert body["queue"]["backend"] == "inprocess"
    assert body["queue"]["ok"] is True


def test_header_mode_refuses_two_role_headers(client):
    response = client.get(
        "/api/v1/admin/upload/jobs",
        headers=[("X-User-Role", "tagger"), ("X-User-Role", "admin")],
    )
    assert response.status_code == 400
    assert "more than one X-User-Role" in response.json()["detail"]


def test_token_mode_refuses_two_authorization_headers(token_client):
    admin = _token("admin")
    response = token_client.get(
        "/api/v1/admin/upload/jobs",
        headers=[("Authorization", f"Bearer {admin}"), ("Authorization", "Bearer x")],
    )
    assert response.status_code == 400


def test_a_401_in_header_mode_challenges_for_the_role_header(client):
    # The cockpit reads it: a token form helps only where a token is asked for.
    response = client.get("/api/v1/admin/upload/jobs")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "X-User-Role"


def test_a_401_in_token_mode_challenges_for_a_bearer_token(token_client):
    response = token_client.get("/api/v1/admin/upload/jobs")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
