"""The Alembic migrations create exactly the tables the models describe."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from image_tagger.db import get_engine
from image_tagger.models import Base


def test_migrations_match_the_models(data_dir):
    with get_engine().connect() as connection:
        context = MigrationContext.configure(connection)
        assert compare_metadata(context, Base.metadata) == []


def test_the_embedded_database_runs_in_wal_mode(data_dir):
    if get_engine().dialect.name != "sqlite":
        pytest.skip("WAL is SQLite's; this pass runs on PostgreSQL")
    with get_engine().connect() as connection:
        mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
    assert mode == "wal"
    assert (data_dir / "image_tagger.db").exists()
