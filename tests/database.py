"""The database of a test session: SQLite files, or a PostgreSQL database of its own.

On PostgreSQL a session creates ``itk_test_<random>`` on the server named by
``IMAGE_TAGGER_TEST_POSTGRES_URL`` and drops it at the end, so concurrent
sessions (CI, other developers) never share tables.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from image_tagger.db import dispose_engines, get_engine
from image_tagger.models import Base

POSTGRES_ENV = "IMAGE_TAGGER_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_server_url() -> str:
    return os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES_SERVER)


@dataclass(frozen=True)
class SessionDatabase:
    kind: str
    url: str | None = None  # None: each test's SQLite file in its data directory

    @classmethod
    @contextmanager
    def open(cls, kind: str) -> Iterator[SessionDatabase]:
        if kind == "sqlite":
            yield cls(kind)
            return
        with new_postgres_database() as url:
            yield cls(kind, url)

    def empty(self) -> None:
        """Remove every row and restart the ids: each test starts from nothing."""
        if self.url is None:
            return
        tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
        with get_engine(self.url).begin() as connection:
            connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@contextmanager
def new_postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for this session; skips if unreachable."""
    server_url = postgres_server_url()
    server = create_engine(
        server_url,
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
        connect_args={"connect_timeout": 3},
    )
    try:
        connection = server.connect()
    except OperationalError as exc:
        pytest.skip(
            f"PostgreSQL at {make_url(server_url)!r} is unreachable "
            f"({str(exc.orig).strip().splitlines()[0]}); start it (.ci/run does) "
            f"or point {POSTGRES_ENV} at a server"
        )
    name = f"itk_test_{secrets.token_hex(6)}"
    connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield (
            make_url(server_url)
            .set(database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        dispose_engines()
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.close()
