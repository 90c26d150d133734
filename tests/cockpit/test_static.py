"""The cockpit's files: served at /admin, self-contained, CSP-compatible."""

from __future__ import annotations

import re

from image_tagger.cockpit.endpoints import STATIC_DIR, sign_in_link


def test_admin_redirects_to_the_page_and_serves_its_files(client):
    redirect = client.get("/admin?x=1", follow_redirects=False)
    assert redirect.status_code == 307
    assert redirect.headers["location"] == "/admin/?x=1"

    page = client.get("/admin/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="app.js"></script>' in page.text
    for name, kind in (("app.js", "javascript"), ("app.css", "text/css")):
        response = client.get(f"/admin/{name}")
        assert response.status_code == 200
        assert kind in response.headers["content-type"]
    assert client.get("/admin/missing.js").status_code == 404


def test_the_page_needs_no_inline_code_and_nothing_from_elsewhere():
    # A Content-Security-Policy of "default-src 'self'" must not break the page.
    html = (STATIC_DIR / "index.html").read_text()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert "<style" not in html
    assert re.findall(r"\s(style|on[a-z]+)=", html) == []
    for path in STATIC_DIR.iterdir():
        text = path.read_text()
        assert re.findall(r"(?:src|href)=[\"']?(?:https?:)?//", text) == [], path
        assert "@import" not in text and "url(http" not in text, path
        assert "eval(" not in text and "new Function" not in text, path
        assert ".innerHTML" not in text, path


def test_the_sign_in_link_carries_the_token_in_the_fragment():
    link = sign_in_link("http://127.0.0.1:8000", "itk_abc")
    assert link == "http://127.0.0.1:8000/admin/#token=itk_abc"


def test_the_page_names_an_icon_that_is_served(client):
    page = client.get("/admin/").text
    assert '<link rel="icon" href="favicon.svg" type="image/svg+xml">' in page

    icon = client.get("/admin/favicon.svg")
    assert icon.status_code == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.text.startswith("<svg")
    # Browsers ask for /favicon.ico on pages that name no icon (/docs).
    legacy = client.get("/favicon.ico", follow_redirects=False)
    assert legacy.status_code == 308
    assert legacy.headers["location"] == "/admin/favicon.svg"
    assert client.get("/favicon.ico").content == icon.content
