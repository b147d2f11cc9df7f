"""A generated group imported into the store, as the profile tests start from, the changes
of a day made to it, the checks against a whole recompute, and the stored profiles."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, func, select, update

from baoke.config import Settings
from baoke.ingest.pipeline import find_kind_files, import_file
from baoke.profiles.features import profile_sql
from baoke.profiles.schema import PROFILE_COLUMNS
from baoke.profiles.snapshot import Snapshot
from baoke.simulate.generator import GenerateConfig, generate
from baoke.store import models as m

UTC = dt.UTC

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


def stored_profiles(engine: Engine) -> dict[int, tuple[Any, ...]]:
    """The store's profile rows by customer, without as_of (the business date of the row's
    last change) and updated_at."""
    table = m.CustomerProfile.__table__
    with engine.connect() as conn:
        rows = conn.execute(select(table).order_by(table.c.customer_id)).all()
    return {row.customer_id: (row[0], *tuple(row)[2:-1]) for row in rows}


def whole_recompute_differs(snap: Snapshot, day: dt.date, settings: Settings) -> int:
    """Rows of ``profiles`` a whole recompute of the same snapshot does not give, both ways."""
    columns = ", ".join(c.name for c in PROFILE_COLUMNS if c.name != "tags")
    whole = f"SELECT {columns} FROM ({profile_sql(day, settings.profiles, settings.zone)})"
    kept = f"SELECT {columns} FROM profiles"
    row = snap.db.execute(
        f"SELECT (SELECT count(*) FROM ({whole} EXCEPT ALL {kept})) + "
        f"(SELECT count(*) FROM ({kept} EXCEPT ALL {whole}))"
    ).fetchone()
    assert row is not None
    return int(row[0])


def change_a_day(engine: Engine, day: dt.date, rng: np.random.Generator) -> None:
    """Records of every kind the facts read, some of them dated days ahead."""
    ahead = dt.datetime.combine(day + dt.timedelta(days=int(rng.integers(1, 4))), dt.time(3))
    with engine.begin() as conn:
        cars = conn.execute(
            select(m.Vehicle.id, m.Vehicle.customer_id, m.Vehicle.dealer_id).where(
                m.Vehicle.customer_id.is_not(None)
            )
        ).all()
        customers = conn.execute(select(m.Customer.id)).scalars().all()
        car = cars[int(rng.integers(len(cars)))]
        who = int(customers[int(rng.integers(len(customers)))])
        conn.execute(
            m.ServiceOrder.__table__.insert().values(
                order_no=f"T-{day}-{car.id}",
                dealer_id=car.dealer_id,
                vehicle_id=car.id,
                customer_id=car.customer_id,
                order_type="maintenance",
                settled_on=day,
                amount_fen=int(rng.integers(30_000, 900_000)),
                mileage_km=int(rng.integers(1_000, 160_000)),
            )
        )
        conn.execute(
            m.MileageReading.__table__.insert().values(
                vehicle_id=cars[int(rng.integers(len(cars)))].id,
                read_on=day + dt.timedelta(days=2),
                odometer_km=int(rng.integers(1_000, 160_000)),
                source="app",
            )
        )
        conn.execute(
            m.BehaviourEvent.__table__.insert().values(
                event_key=f"T-{day}",
                customer_id=who,
                event_type="model_view",
                occurred_at=ahead.replace(tzinfo=UTC),
                target="新车型",
                source="app",
            )
        )
        consent = conn.execute(
            select(m.Consent.id).where(m.Consent.withdrawn_at.is_(None)).limit(1)
        ).scalar_one()
        conn.execute(
            update(m.Consent.__table__)
            .where(m.Consent.id == consent)
            .values(withdrawn_at=ahead.replace(tzinfo=UTC), updated_at=func.current_timestamp())
        )
        # A car changes hands, and another's delivery is moved to a later day.
        moved, other = cars[int(rng.integers(len(cars)))], cars[int(rng.integers(len(cars)))]
        conn.execute(
            update(m.Vehicle.__table__)
            .where(m.Vehicle.id == moved.id)
            .values(customer_id=who, updated_at=func.current_timestamp())
        )
        conn.execute(
            update(m.Vehicle.__table__)
            .where(m.Vehicle.id == other.id)
            .values(delivery_date=ahead.date(), updated_at=func.current_timestamp())
        )
