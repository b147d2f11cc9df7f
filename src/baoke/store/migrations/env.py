"""Alembic environment: runs migrations on the engine handed over by baoke.store.db."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from baoke.store.models import Base

config = context.config
engine = config.attributes.get("engine")
if not isinstance(engine, Engine):  # pragma: no cover - only when alembic is run by hand
    from baoke.config import load_settings
    from baoke.store.db import make_engine

    engine = make_engine(load_settings().url)

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
