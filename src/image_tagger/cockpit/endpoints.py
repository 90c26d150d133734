"""Serving the Admin Cockpit's static files at /admin (no build step)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
COCKPIT_PATH = "/admin"


def mount_cockpit(app: FastAPI) -> None:
    """Serve index.html, app.js, app.css and the icon at /admin/; /admin
    redirects there, and so does /favicon.ico (to the icon), which browsers
    ask for on pages that name no icon."""

    @app.get(COCKPIT_PATH, include_in_schema=False)
    def cockpit_redirect(request: Request) -> RedirectResponse:
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"{COCKPIT_PATH}/{query}", status_code=307)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> RedirectResponse:
        return RedirectResponse(f"{COCKPIT_PATH}/favicon.svg", status_code=308)

    app.mount(
        COCKPIT_PATH, StaticFiles(directory=STATIC_DIR, html=True), name="cockpit"
    )


def sign_in_link(base_url: str, token: str) -> str:
    """The link that signs a browser tab in: the token rides in the fragment,
    which browsers never send to a server, so it stays out of access logs."""
    return f"{base_url}{COCKPIT_PATH}/#token={token}"
