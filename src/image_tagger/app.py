"""The FastAPI application: routers, health, and the job backend's lifetime."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text

from image_tagger import __version__
from image_tagger.auth.service import create_token, has_admin_token
from image_tagger.db import get_engine, session_scope
from image_tagger.images.endpoints import router as images_router
from image_tagger.jobs.backends import create_backend
from image_tagger.jobs.endpoints import router as jobs_router
from image_tagger.logging import configure_logging
from image_tagger.settings import Settings, get_settings
from image_tagger.uploads.endpoints import router as uploads_router

log = structlog.get_logger(__name__)


def sign_in_url(settings: Settings, token: str) -> str:
    base = settings.public_url or f"http://{settings.host}:{settings.port}"
    return f"{base.rstrip('/')}/admin#token={token}"


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

    token = ensure_admin_token(settings)
    if token is not None:
        print(
            "\nNo admin token existed, so one was created. Sign in at:\n"
            f"    {sign_in_url(settings, token)}\n"
            f"or send 'Authorization: Bearer {token}'. It is shown only once.\n",
            file=sys.stderr,
            flush=True,
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
        description="Upload batches of building photos; metrics, VLM ratings, jobs.",
        lifespan=lifespan,
    )
    app.include_router(uploads_router)
    app.include_router(jobs_router)
    app.include_router(images_router)

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


def _database_health() -> dict:
    engine = get_engine()
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        return {"ok": False, "dialect": engine.dialect.name, "error": str(exc)[:200]}
    return {"ok": True, "dialect": engine.dialect.name}


app = create_app()
