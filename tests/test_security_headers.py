"""Security headers on every response; the docs page runs no inline script."""

from __future__ import annotations

import re

import pytest
from helpers import ADMIN, jpeg_bytes, upload

STRICT_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def _assert_protected(response) -> None:
    headers = response.headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    policy = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy or "sandbox" in policy
    assert "'unsafe-inline'" not in policy
    assert "'unsafe-eval'" not in policy


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/healthz", {}, 200),
        ("GET", "/openapi.json", {}, 200),
        ("GET", "/docs", {}, 200),
        ("GET", "/docs/init.js", {}, 200),
        ("GET", "/docs-assets/swagger-ui.css", {}, 200),
        ("GET", "/api/v1/admin/upload/jobs", {}, 401),
        ("GET", "/api/v1/admin/upload/jobs", {"X-User-Role": "tagger"}, 403),
        ("GET", "/api/v1/admin/upload/jobs", ADMIN, 200),
        ("GET", "/api/v1/admin/upload/jobs?limit=0", ADMIN, 422),
        ("GET", "/api/v1/admin/images/99", ADMIN, 404),
        ("POST", "/api/v1/admin/upload", ADMIN, 415),
        ("GET", "/nowhere", {}, 404),
    ],
)
def test_every_response_carries_the_security_headers(
    client, method, path, headers, status
):
    response = client.request(method, path, headers=headers)

    assert response.status_code == status
    _assert_protected(response)
    assert response.headers["content-security-policy"] == STRICT_CSP


def test_pages_under_admin_are_strict(client):
    # The cockpit's static pages, wherever they are served under /admin.
    response = client.get("/admin/", follow_redirects=True)

    _assert_protected(response)
    policy = response.headers["content-security-policy"]
    assert "'unsafe-inline'" not in policy
    assert policy == STRICT_CSP


def test_stored_files_keep_their_sandbox(client):
    image_id = upload(client, [("a.jpg", jpeg_bytes(7))]).json()["image_ids"][0]

    response = client.get(f"/api/v1/admin/images/{image_id}/file", headers=ADMIN)

    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["content-security-policy"] == "default-src 'none'; sandbox"
    _assert_protected(response)


def test_the_docs_page_loads_only_its_own_files_and_no_inline_script(client):
    page = client.get("/docs")

    _assert_protected(page)
    assert page.headers["content-security-policy"] == STRICT_CSP
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, flags=re.S)
    assert len(scripts) == 2
    assert all(
        'src="/' in attributes and not body.strip() for attributes, body in scripts
    )
    assert not re.search(r"\son\w+=", page.text)  # no inline event handlers
    for url in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        assert url.startswith("/"), url
        assert client.get(url).status_code == 200, url
    init = client.get("/docs/init.js")
    assert init.headers["content-type"].startswith("text/javascript")
    assert '"url": "/openapi.json"' in init.text
    assert '"validatorUrl": null' in init.text


def test_stored_files_are_unreachable_without_auth(client, data_dir):
    body = upload(client, [("a.jpg", jpeg_bytes(8))]).json()
    image_id, sha = body["image_ids"][0], body["files"][0]["sha256"]
    relative = f"images/{sha[:2]}/{sha[2:4]}/{sha}.jpg"
    assert (data_dir / relative).is_file()

    for path in (
        f"/api/v1/admin/images/{image_id}/file",
        f"/api/v1/admin/images/{image_id}/thumbnail",
    ):
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"X-User-Role": "tagger"}).status_code == 403
    for guess in (
        f"/{relative}",
        f"/data/{relative}",
        f"/docs-assets/../{relative}",
        f"/docs-assets/..%2f..%2f{relative}",
        f"/admin/{relative}",
        f"/admin/..%2f{relative}",
    ):
        assert client.get(guess).status_code == 404, guess
