"""Shared fixtures: a fresh data directory and database per test, an app client.

``pytest --db=postgresql`` (or ``IMAGE_TAGGER_TEST_DB=postgresql``) runs the
tests that use a database against a PostgreSQL database made for the session
and dropped after it (``make test`` runs both passes).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from database import POSTGRES_ENV, SessionDatabase
from fastapi.testclient import TestClient

from image_tagger.db import dispose_engines
from image_tagger.migrations import upgrade_database
from image_tagger.settings import get_settings, reset_settings


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        choices=("sqlite", "postgresql"),
        default=os.environ.get("IMAGE_TAGGER_TEST_DB", "sqlite"),
        help="database of the tests that use one (default: sqlite; postgresql "
        f"uses a new database on the server of {POSTGRES_ENV})",
    )


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    """The PostgreSQL pass runs only the tests that use a database."""
    if config.getoption("--db") != "postgresql":
        return
    kept = [item for item in items if "data_dir" in item.fixturenames]
    dropped = [item for item in items if "data_dir" not in item.fixturenames]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def databases(request: pytest.FixtureRequest) -> Iterator[SessionDatabase]:
    """This session's database kind; on PostgreSQL, its own database."""
    with SessionDatabase.open(request.config.getoption("--db")) as databases:
        yield databases


@pytest.fixture
def data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, databases: SessionDatabase
) -> Iterator[Path]:
    """A migrated, empty database (SQLite under a new data directory by default)."""
    data = tmp_path / "data"
    monkeypatch.setenv("IMAGE_TAGGER_DATA_DIR", str(data))
    for name in list(os.environ):
        if name.startswith("IMAGE_TAGGER_") and name != "IMAGE_TAGGER_DATA_DIR":
            monkeypatch.delenv(name)
    if databases.url is not None:
        monkeypatch.setenv("IMAGE_TAGGER_DATABASE_URL", databases.url)
    monkeypatch.setenv("IMAGE_TAGGER_LEASE_SECONDS", "5")
    monkeypatch.setenv("IMAGE_TAGGER_RECOVERY_INTERVAL_SECONDS", "1")
    reset_settings()
    dispose_engines()
    get_settings().ensure_dirs()
    upgrade_database()
    databases.empty()
    yield data
    dispose_engines()
    reset_settings()


@pytest.fixture
def header_mode(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    monkeypatch.setenv("IMAGE_TAGGER_AUTH_MODE", "header")
    reset_settings()


@pytest.fixture
def client(header_mode) -> Iterator[TestClient]:
    """The app in header mode with its in-process runner."""
    from image_tagger.app import create_app

    with TestClient(create_app()) as test_client:
        yield test_client


@pytest.fixture
def record_only_client(header_mode, monkeypatch: pytest.MonkeyPatch):
    """The app in header mode that only records jobs (IMAGE_TAGGER_QUEUE=none)."""
    from image_tagger.app import create_app

    monkeypatch.setenv("IMAGE_TAGGER_QUEUE", "none")
    reset_settings()
    with TestClient(create_app()) as test_client:
        yield test_client
