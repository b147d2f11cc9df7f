"""A generated group imported into the store, as the profile tests start from."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import Engine, func, select, update

from baoke.config import Settings
from baoke.ingest.pipeline import find_kind_files, import_file
from baoke.simulate.generator import GenerateConfig, generate
from baoke.store import models as m

STAMPED = (
    m.Customer,
    m.Vehicle,
    m.ServiceOrder,
    m.Lead,
    m.Complaint,
    m.Consent,
    m.WecomRelation,
)


def import_history(engine: Engine, out: Path, customers: int, seed: int) -> None:
    """Generate a group into ``out`` and import it, stamped as written a month ago.

    The history was imported earlier, as in a store in steady state; the newest row of each
    table a little later, so the high-water mark sits on one row only.
    """
    generate(GenerateConfig(customers=customers, seed=seed, dirty_share=0.0), out)
    zone = Settings().zone
    for kind, path in find_kind_files(out):
        import_file(engine, kind, path, tz=zone)
    past = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
    with engine.begin() as conn:
        for model in STAMPED:
            table = model.__table__
            conn.execute(update(table).values(updated_at=past))
            newest = conn.execute(select(func.max(table.c.id))).scalar_one()
            conn.execute(
                update(table)
                .where(table.c.id == newest)
                .values(updated_at=past + dt.timedelta(hours=1))
            )
