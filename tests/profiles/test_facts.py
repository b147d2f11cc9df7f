"""Facts kept per customer give, every day, the profiles a whole recompute gives.

The group's history crosses window edges every day by itself (visits leaving the 12 months,
events the 30 and 90 days); on top of it each day brings changes of every kind, some dated
ahead of the day they are written, and refreshes skip days as a daily job sometimes does.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, func, select, update
from tests.profiles.history import import_history

from baoke.config import ProfileSettings, Settings
from baoke.profiles.engine import RefreshResult, refresh_profiles, snapshot_path
from baoke.profiles.features import profile_sql
from baoke.profiles.schema import PROFILE_COLUMNS
from baoke.profiles.snapshot import Snapshot
from baoke.store import models as m

START = dt.date(2026, 11, 1)
UTC = dt.UTC


@pytest.fixture
def settings(engine: Engine, tmp_path: Path) -> Settings:
    import_history(engine, tmp_path / "gen", customers=300, seed=11)
    return Settings(
        data_dir=tmp_path / "data", database_url=engine.url.render_as_string(hide_password=False)
    )


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


def test_kept_facts_give_the_whole_recompute_day_after_day(
    engine: Engine, settings: Settings
) -> None:
    rng = np.random.default_rng(5)
    snap = Snapshot(snapshot_path(settings))
    results: list[RefreshResult] = []
    try:
        day = START
        for step in range(16):
            results.append(refresh_profiles(settings, engine, day, [], snapshot=snap))
            assert whole_recompute_differs(snap, day, settings) == 0, f"on {day}"
            change_a_day(engine, day, rng)
            day += dt.timedelta(days=1 if step % 4 else 9)  # now and then a gap of days
    finally:
        snap.close()
    first, *later = [r.facts for r in results]
    assert first is not None and first.whole
    assert all(f is not None and not f.whole for f in later)
    customers = results[0].customers
    # Only some customers are recomputed on each day, the others' facts kept. (On PostgreSQL
    # the snapshot reads again every row of the last ten minutes, so within this test every
    # earlier day's changes come back each time, and are recomputed again: right, not fewer.)
    recomputed = [f.customers for f in later if f is not None]
    if engine.dialect.name == "sqlite":
        assert all(0 < n < customers / 2 for n in recomputed), (recomputed, customers)


def test_facts_are_rebuilt_when_they_cannot_be_trusted(engine: Engine, settings: Settings) -> None:
    first = refresh_profiles(settings, engine, START, [])
    assert first.facts is not None and first.facts.whole
    next_day = refresh_profiles(settings, engine, START + dt.timedelta(days=1), [])
    assert next_day.facts is not None and not next_day.facts.whole
    # A day before the one the facts are as of.
    earlier = refresh_profiles(settings, engine, START, [])
    assert earlier.facts is not None and earlier.facts.whole
    # Other thresholds make other facts.
    changed = settings.model_copy(update={"profiles": ProfileSettings(default_km_per_year=20_000)})
    rebuilt = refresh_profiles(changed, engine, START + dt.timedelta(days=1), [])
    assert rebuilt.facts is not None and rebuilt.facts.whole
    snap = Snapshot(snapshot_path(changed))
    try:
        assert whole_recompute_differs(snap, START + dt.timedelta(days=1), changed) == 0
    finally:
        snap.close()
    # A snapshot copied afresh (its marks lost) says that everything changed.
    snap = Snapshot(snapshot_path(changed))
    try:
        snap.db.execute("DELETE FROM _marks")
        cold = refresh_profiles(changed, engine, START + dt.timedelta(days=2), [], snapshot=snap)
    finally:
        snap.close()
    assert cold.snapshot is not None and cold.snapshot.cold
    assert cold.facts is not None and cold.facts.whole
