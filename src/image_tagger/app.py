"""The FastAPI application: routers, health, and the job backend's lifetime."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from swagger_ui_bundle import swagger_ui_path

from image_tagger import __version__
from image_tagger.auth.service import create_token, has_admin_token
from image_tagger.cockpit.endpoints import mount_cockpit, sign_in_link
from image_tagger.db import get_engine, session_scope
from image_tagger.images.endpoints import router as images_router
from image_tagger.images.formats import apply_pixel_limit
from image_tagger.jobs.backends import create_backend
from image_tagger.jobs.endpoints import router as jobs_router
from image_tagger.logging import configure_logging
from image_tagger.monitoring import router as monitoring_router
from image_tagger.security_headers import (
    SecurityHeadersMiddleware,
    swagger_init_script,
    swagger_page,
)
from image_tagger.settings import Settings, get_settings
from image_tagger.uploads.endpoints import router as uploads_router
from image_tagger.uploads.storage import remove_stale_staging
from image_tagger.vlm.endpoints import router as costs_router

log = structlog.get_logger(__name__)

DOCS_ASSETS = "/docs-assets"


def public_base_url(settings: Settings) -> str:
    return (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip(
        "/"
    )


def ensure_admin_token(settings: Settings) -> str | None:
    """At a first start in token mode, create an admin token; return it once."""
    if settings.auth_mode != "token":
        return None
    with session_scope(write=True) as session:
        if has_admin_token(session):
            return None
        return create_token(session, role="admin", name="first-start")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    configure_logging(level=settings.log_level, json=settings.log_json)
    settings.ensure_dirs()
    apply_pixel_limit(settings.max_image_pixels)
    remove_stale_staging(settings.tmp_dir)

    token = ensure_admin_token(settings)
    if token is not None:
        base = public_base_url(settings)
        print(
            "\nNo admin token existed, so one was created (it is shown only once):\n"
            f"    {token}\n"
            f"Send it as 'Authorization: Bearer {token[:8]}...' to {base}/api/v1/admin/"
            f"\nor use it in the API documentation at {base}/docs (Authorize).\n"
            "Open the Admin Cockpit with this link (it signs in that browser tab):\n"
            f"    {sign_in_link(base, token)}\n",
            file=sys.stderr,
            flush=True,
        )
    if settings.auth_mode == "header":
        log.warning(
            "auth.header_mode",
            detail="the X-User-Role header is trusted as sent; only expose this "
            "service through a proxy that sets it",
        )

    backend = create_backend(settings)
    app.state.backend = backend
    backend.start()
    log.info(
        "service.started",
        queue=backend.name,
        auth=settings.auth_mode,
        data_dir=str(settings.data_dir),
    )
    try:
        yield
    finally:
        backend.shutdown()
        log.info("service.stopped")


def create_app() -> FastAPI:
    app = FastAPI(
        title="Image Tagger",
        version=__version__,
        description="Upload batches of building photos, watch their jobs, read the "
        "visual metrics of every image.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(SecurityHeadersMiddleware)
    _serve_docs_offline(app)
    app.include_router(uploads_router)
    app.include_router(jobs_router)
    app.include_router(images_router)
    app.include_router(monitoring_router)
    app.include_router(costs_router)
    mount_cockpit(app)

    @app.get("/healthz", tags=["health"])
    def healthz() -> JSONResponse:
        """Liveness, database and queue reachability (no auth)."""
        database = _database_health()
        queue = app.state.backend.health()
        healthy = database["ok"] and queue["ok"]
        return JSONResponse(
            {
                "status": "ok" if healthy else "degraded",
                "version": __version__,
                "database": database,
                "queue": queue,
            },
            status_code=200 if healthy else 503,
        )

    return app


def _serve_docs_offline(app: FastAPI) -> None:
    """Swagger UI from files shipped in a package: /docs works with no internet."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        page = swagger_page(
            title=f"{app.title} API", assets=DOCS_ASSETS, init_url="/docs/init.js"
        )
        return HTMLResponse(page)

    @app.get("/docs/init.js", include_in_schema=False)
    def docs_init() -> Response:
        script = swagger_init_script(openapi_url=app.openapi_url)
        return Response(script, media_type="text/javascript")


def _database_health() -> dict:
    engine = get_engine()
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        return {"ok": False, "dialect": engine.dialect.name, "error": str(exc)[:200]}
    return {"ok": True, "dialect": engine.dialect.name}


app = create_app()
