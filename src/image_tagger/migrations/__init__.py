"""Alembic migrations, applied with :func:`upgrade_database`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from image_tagger.db import get_engine

HERE = Path(__file__).resolve().parent


def alembic_config(url: str | None = None) -> Config:
    from image_tagger.settings import get_settings

    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("sqlalchemy.url", url or get_settings().sqlalchemy_url)
    return config


# Any constant shared by every process of the service: the advisory lock key.
MIGRATION_LOCK_KEY = 0x1A6E7A66


def upgrade_database(url: str | None = None) -> None:
    """Bring the database at ``url`` (default: the configured one) up to date.

    On PostgreSQL, processes starting together (an API and its workers) take
    turns through an advisory lock; SQLite's write lock does the same there.
    """
    config = alembic_config(url)
    engine = get_engine(config.get_main_option("sqlalchemy.url"))
    if engine.dialect.name != "postgresql":
        command.upgrade(config, "head")
        return
    with engine.connect() as connection:
        connection.execute(
            text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
        )
        try:
            command.upgrade(config, "head")
        finally:
            connection.execute(
                text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
            connection.commit()
