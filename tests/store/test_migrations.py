"""Migrations create, upgrade and remove the whole schema on both databases."""

from __future__ import annotations

from sqlalchemy import Engine, inspect

from baoke.store.db import current_revision, downgrade, ensure_schema, head_revision
from baoke.store.models import Base


def test_fresh_store_is_migrated_to_head_once(empty_engine: Engine) -> None:
    assert current_revision(empty_engine) is None
    assert ensure_schema(empty_engine) is True
    assert current_revision(empty_engine) == head_revision()
    assert ensure_schema(empty_engine) is False


def test_migrated_schema_matches_the_models(empty_engine: Engine) -> None:
    ensure_schema(empty_engine)
    inspector = inspect(empty_engine)
    tables = set(inspector.get_table_names())
    assert set(Base.metadata.tables) <= tables
    for name, table in Base.metadata.tables.items():
        stored = {c["name"] for c in inspector.get_columns(name)}
        assert stored == {c.name for c in table.columns}, name


def test_downgrade_to_base_and_back(empty_engine: Engine) -> None:
    ensure_schema(empty_engine)
    downgrade(empty_engine, "base")
    left = set(inspect(empty_engine).get_table_names()) - {"alembic_version"}
    assert left == set()
    assert ensure_schema(empty_engine) is True
    assert set(Base.metadata.tables) <= set(inspect(empty_engine).get_table_names())


def test_models_and_migrations_do_not_drift(engine: Engine) -> None:
    """Autogenerate against the migrated store finds nothing to do."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
