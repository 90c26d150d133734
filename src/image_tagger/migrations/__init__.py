"""Alembic migrations, applied with :func:`upgrade_database`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

HERE = Path(__file__).resolve().parent


def alembic_config(url: str | None = None) -> Config:
    from image_tagger.settings import get_settings

    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("sqlalchemy.url", url or get_settings().sqlalchemy_url)
    return config


def upgrade_database(url: str | None = None) -> None:
    """Bring the database at ``url`` (default: the configured one) up to date."""
    command.upgrade(alembic_config(url), "head")
