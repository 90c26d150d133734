"""Shared fixtures: a fresh data directory and database per test, an app client."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from image_tagger.db import dispose_engines
from image_tagger.migrations import upgrade_database
from image_tagger.settings import get_settings, reset_settings


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A migrated embedded database under a new data directory."""
    data = tmp_path / "data"
    monkeypatch.setenv("IMAGE_TAGGER_DATA_DIR", str(data))
    for name in list(os.environ):
        if name.startswith("IMAGE_TAGGER_") and name != "IMAGE_TAGGER_DATA_DIR":
            monkeypatch.delenv(name)
    monkeypatch.setenv("IMAGE_TAGGER_LEASE_SECONDS", "5")
    monkeypatch.setenv("IMAGE_TAGGER_RECOVERY_INTERVAL_SECONDS", "1")
    reset_settings()
    dispose_engines()
    get_settings().ensure_dirs()
    upgrade_database()
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
