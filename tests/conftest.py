"""Shared fixtures: a migrated store on SQLite and on PostgreSQL.

PostgreSQL comes from ``BAOKE_TEST_DATABASE_URL`` (default: the local server, database
``test``). Each test gets its own schema, so tests can run in parallel. With ``CI=true`` a
missing PostgreSQL fails the run; elsewhere those tests skip with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from baoke.store.db import ensure_schema, make_engine

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def pg_url() -> str:
    """The PostgreSQL server the tests use."""
    return os.environ.get("BAOKE_TEST_DATABASE_URL", PG_DEFAULT)


def _pg_available() -> str | None:
    try:
        probe = create_engine(pg_url())
        with probe.connect() as conn:
            conn.execute(text("SELECT 1"))
        probe.dispose()
    except OperationalError as exc:
        return str(exc.orig).strip().splitlines()[0]
    return None


_PG_PROBLEM: str | bool | None = False


def _require_pg() -> None:
    global _PG_PROBLEM
    if _PG_PROBLEM is False:
        _PG_PROBLEM = _pg_available()
    if _PG_PROBLEM:
        message = f"PostgreSQL at {pg_url()} is not reachable: {_PG_PROBLEM}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true requires it)")
        pytest.skip(message)


def _pg_schema_engine() -> Iterator[Engine]:
    _require_pg()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_url())
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    # The schema travels in the URL (libpq options), so every client of this URL, SQLAlchemy
    # or ADBC, lands in the test's own schema.
    sep = "&" if "?" in pg_url() else "?"
    engine = make_engine(f"{pg_url()}{sep}options=-csearch_path%3D{schema}")

    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """An engine on an empty database, once per backend."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("db") / "baoke.db"
        engine = make_engine(f"sqlite:///{path}")
        yield engine
        engine.dispose()
    else:
        yield from _pg_schema_engine()


@pytest.fixture
def engine(empty_engine: Engine) -> Engine:
    """A migrated store, once per backend."""
    ensure_schema(empty_engine)
    return empty_engine


@pytest.fixture
def twin_engine(empty_engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A second migrated store on the same backend as ``engine``, for side-by-side runs."""
    if empty_engine.dialect.name == "sqlite":
        twin = make_engine(f"sqlite:///{tmp_path_factory.mktemp('twin') / 'baoke.db'}")
        ensure_schema(twin)
        yield twin
        twin.dispose()
        return
    for twin in _pg_schema_engine():
        ensure_schema(twin)
        yield twin
