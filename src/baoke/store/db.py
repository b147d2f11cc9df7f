"""Engine creation and schema migration for SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import duckdb
import psycopg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry

from baoke.errors import ConfigError

MIGRATIONS = Path(__file__).with_name("migrations")

# What a store or snapshot failure can raise: SQLAlchemy's errors, and the drivers' own from
# the raw bulk paths (COPY, executemany) and DuckDB. Commands turn these into one line.
STORE_FAILURES: tuple[type[BaseException], ...] = (
    SQLAlchemyError,
    sqlite3.Error,
    psycopg.Error,
    duckdb.Error,
    OSError,
)


def _sqlite_pragmas(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
    # WAL lets readers (the web app) run beside an import; foreign keys are off by default.
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.execute("PRAGMA cache_size=-200000")
    cursor.close()


def make_engine(url: str) -> Engine:
    """Create an engine; for SQLite the data directory is created and pragmas are set."""
    try:
        if url.startswith("sqlite"):
            db_path = url.split("///", 1)[-1]
            if db_path and db_path != ":memory:":
                Path(db_path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url)
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        return create_engine(url, pool_pre_ping=True)
    except (ArgumentError, ModuleNotFoundError) as exc:
        raise ConfigError(f"cannot use database URL {redact(url)}: {exc}") from exc


def redact(url: str) -> str:
    """The URL with any password hidden, safe for logs and messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def alembic_config(engine: Engine) -> Config:
    """An Alembic config pointing at the packaged migrations and the given engine."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str | None:
    """The newest migration revision shipped with this version of baoke."""
    script = ScriptDirectory(str(MIGRATIONS))
    return script.get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The migration revision the database is at (None for an empty database)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (default: the newest)."""
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database down to ``revision`` ("base" empties it)."""
    command.downgrade(alembic_config(engine), revision)


def ensure_schema(engine: Engine) -> bool:
    """Migrate to head if needed; returns True when a migration ran.

    Every command calls this first, so a fresh store is usable without ``baoke db upgrade``.
    """
    try:
        if current_revision(engine) == head_revision():
            return False
    except OperationalError as exc:
        raise ConfigError(
            f"cannot reach the database {redact(str(engine.url))}: {exc.orig}"
        ) from exc
    upgrade(engine)
    return True
