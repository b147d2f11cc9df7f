"""The refresh end to end on both databases: write-back, membership history, incremental = cold."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update
from tests.profiles.history import import_history, stored_profiles

from baoke.config import Settings
from baoke.profiles.engine import RefreshResult, refresh_profiles
from baoke.segments.rules import parse_rules
from baoke.store import models as m

DAY1 = dt.date(2026, 11, 1)
DAY2 = dt.date(2026, 11, 2)

RULES = parse_rules("""
segments:
  - name: big_spenders
    label: 高消费
    description: 12-month spend of at least 5,000 yuan
    kind: segment
    rule: {field: spend_12m, ">=": 5000}
  - name: lost_owners
    label: 流失
    description: lost owners
    kind: segment
    rule: {field: lifecycle_stage, "=": lost}
  - name: heavy_driver
    label: 高里程
    description: tag
    kind: tag
    rule: {field: odometer_km, ">=": 100000}
""")


def settings_for(engine: Engine, data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir, database_url=engine.url.render_as_string(hide_password=False)
    )


@pytest.fixture
def store(engine: Engine, tmp_path: Path) -> Engine:
    import_history(engine, tmp_path / "gen", customers=600, seed=3)
    return engine


def refresh(engine: Engine, data_dir: Path, day: dt.date) -> RefreshResult:
    return refresh_profiles(settings_for(engine, data_dir), engine, day, RULES)


def open_members(engine: Engine) -> set[tuple[str, int]]:
    t = m.SegmentMembership
    with engine.connect() as conn:
        rows = conn.execute(select(t.segment, t.customer_id).where(t.exited_on.is_(None))).all()
    return {(s, c) for s, c in rows}


def test_first_refresh_writes_every_profile_and_opens_memberships(
    store: Engine, tmp_path: Path
) -> None:
    result = refresh(store, tmp_path / "data", DAY1)
    assert result.snapshot is not None and result.snapshot.cold
    with store.connect() as conn:
        customers = conn.execute(select(func.count()).select_from(m.Customer)).scalar_one()
    assert result.customers == customers == result.profiles_written
    assert len(stored_profiles(store)) == customers
    assert result.entered == sum(result.segments.values()) == len(open_members(store))
    assert result.segments["big_spenders"] > 0 and result.segments["lost_owners"] > 0
    with store.connect() as conn:
        defs = dict(
            conn.execute(select(m.SegmentDefinition.name, m.SegmentDefinition.members)).all()
        )
    assert defs == result.segments
    again = refresh(store, tmp_path / "data", DAY1)
    assert again.snapshot is not None and not again.snapshot.cold
    assert (again.profiles_written, again.entered, again.exited) == (0, 0, 0)


def test_membership_history_records_entry_and_exit(store: Engine, tmp_path: Path) -> None:
    refresh(store, tmp_path / "data", DAY1)
    members = open_members(store)
    big = sorted(c for s, c in members if s == "big_spenders")
    assert big
    # One order far in the future of DAY1 moves nothing; a lapse of a year drops spenders out.
    later = refresh(store, tmp_path / "data", DAY1 + dt.timedelta(days=400))
    assert later.exited > 0
    t = m.SegmentMembership
    with store.connect() as conn:
        closed = conn.execute(
            select(t.customer_id, t.entered_on, t.exited_on).where(
                t.segment == "big_spenders", t.exited_on.is_not(None)
            )
        ).all()
    assert closed and all(
        (entered, exited) == (DAY1, DAY1 + dt.timedelta(days=400)) for _, entered, exited in closed
    )
    assert {c for c, _, _ in closed} <= set(big)


def test_incremental_refresh_equals_a_cold_one(store: Engine, tmp_path: Path) -> None:
    refresh(store, tmp_path / "warm", DAY1)
    # A day of new records: orders for the first ten vehicles, an event, a withdrawn consent.
    with store.begin() as conn:
        vehicles = conn.execute(
            select(m.Vehicle.id, m.Vehicle.customer_id, m.Vehicle.dealer_id)
            .where(m.Vehicle.customer_id.is_not(None))
            .order_by(m.Vehicle.id)
            .limit(10)
        ).all()
        conn.execute(
            m.ServiceOrder.__table__.insert(),
            [
                {
                    "order_no": f"NEW-{vid}",
                    "dealer_id": dealer,
                    "vehicle_id": vid,
                    "customer_id": cid,
                    "order_type": "maintenance",
                    "settled_on": DAY2,
                    "amount_fen": 600_000,
                    "mileage_km": 150_000,
                }
                for vid, cid, dealer in vehicles
            ],
        )
        conn.execute(
            m.BehaviourEvent.__table__.insert(),
            [
                {
                    "event_key": "new-1",
                    "customer_id": vehicles[0][1],
                    "event_type": "model_view",
                    "occurred_at": dt.datetime(2026, 11, 2, 2, tzinfo=dt.UTC),
                    "target": "X",
                    "source": "app",
                }
            ],
        )
        consent = conn.execute(select(m.Consent.id).limit(1)).scalar_one()
        conn.execute(
            m.Consent.__table__.update()
            .where(m.Consent.id == consent)
            .values(
                withdrawn_at=dt.datetime(2026, 11, 2, 1, tzinfo=dt.UTC),
                granted=False,
                updated_at=func.current_timestamp(),
            )
        )
    warm = refresh(store, tmp_path / "warm", DAY2)
    assert warm.snapshot is not None and not warm.snapshot.cold
    assert warm.snapshot.rows_read["service_orders"] < 200
    assert warm.snapshot.rows_read["events"] == 1
    warm_profiles = stored_profiles(store)
    warm_members = open_members(store)

    cold = refresh(store, tmp_path / "cold", DAY2)
    assert cold.snapshot is not None and cold.snapshot.cold
    assert stored_profiles(store) == warm_profiles
    assert open_members(store) == warm_members
    assert cold.segments == warm.segments
    # The new orders show: ten owners spent 6,000 yuan on DAY2.
    changed = [warm_profiles[cid] for _, cid, _ in vehicles]
    assert all(p[4] >= 600_000 for p in changed)  # spend_12m_fen


def test_large_writes_rebuild_the_indexes_they_set_aside(
    store: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import inspect

    import baoke.profiles.engine as engine_module

    monkeypatch.setattr(engine_module, "BIG_WRITE", 1)
    result = refresh(store, tmp_path / "data", DAY1)
    assert result.entered == len(open_members(store)) > 0
    inspector = inspect(store)
    for model in (m.SegmentMembership, m.CustomerProfile):
        table = model.__table__
        stored = {ix["name"] for ix in inspector.get_indexes(table.name)}
        assert {ix.name for ix in table.indexes} <= stored


@pytest.mark.parametrize("lost", ["segment = 'big_spenders'", "TRUE"], ids=["some", "all"])
def test_a_replayed_refresh_never_opens_a_stay_twice(
    store: Engine, tmp_path: Path, lost: str
) -> None:
    """A crash after the store committed but before the snapshot kept its baseline (some of
    it, or all of it): the next refresh computes the same entries again, and the store keeps
    one open stay each."""
    import duckdb

    refresh(store, tmp_path / "data", DAY1)
    before = open_members(store)
    db = duckdb.connect(str(tmp_path / "data" / "analytics.duckdb"))
    db.execute(f"DELETE FROM members_written WHERE {lost}")
    db.close()
    again = refresh(store, tmp_path / "data", DAY1)
    expected = sum(1 for s, _ in before if s == "big_spenders") if lost != "TRUE" else len(before)
    assert again.entered == expected > 0
    t = m.SegmentMembership
    with store.connect() as conn:
        rows = conn.execute(select(t.segment, t.customer_id).where(t.exited_on.is_(None))).all()
    assert len(rows) == len(set(rows)) == len(before)


def test_a_new_snapshot_keeps_the_stays_the_store_holds_open(store: Engine, tmp_path: Path) -> None:
    """A data directory moved or restored elsewhere starts a new snapshot: its first refresh
    must not close every stay and open it again (false exits and entries in the history)."""
    refresh(store, tmp_path / "data", DAY1)
    before = open_members(store)
    moved = refresh(store, tmp_path / "moved", DAY1)
    assert moved.snapshot is not None and moved.snapshot.cold
    assert (moved.entered, moved.exited) == (0, 0)
    t = m.SegmentMembership
    with store.connect() as conn:
        closed = conn.execute(
            select(func.count()).select_from(t).where(t.exited_on.is_not(None))
        ).scalar_one()
        entered = set(conn.execute(select(t.entered_on).distinct()).scalars())
    assert open_members(store) == before and closed == 0 and entered == {DAY1}
    # The new snapshot's baseline is the store's: the next day diffs against it as usual.
    later = refresh(store, tmp_path / "moved", DAY1 + dt.timedelta(days=400))
    assert later.snapshot is not None and not later.snapshot.cold and later.exited > 0


def _day_of_changes(engine: Engine) -> list[int]:
    """New orders for five customers and a changed customer row; the customers' ids."""
    with engine.begin() as conn:
        vehicles = conn.execute(
            select(m.Vehicle.id, m.Vehicle.customer_id, m.Vehicle.dealer_id)
            .where(m.Vehicle.customer_id.is_not(None))
            .order_by(m.Vehicle.id.desc())
            .limit(5)
        ).all()
        conn.execute(
            m.ServiceOrder.__table__.insert(),
            [
                {
                    "order_no": f"LATE-{vid}",
                    "dealer_id": dealer,
                    "vehicle_id": vid,
                    "customer_id": cid,
                    "order_type": "repair",
                    "settled_on": DAY2,
                    "amount_fen": 1_234_500,
                    "mileage_km": None,
                }
                for vid, cid, dealer in vehicles
            ],
        )
        conn.execute(
            update(m.Customer.__table__)
            .where(m.Customer.id == vehicles[0][1])
            .values(city="乌鲁木齐", updated_at=func.current_timestamp())
        )
    return [cid for _, cid, _ in vehicles]


def test_a_small_sqlite_delta_is_read_in_process_like_the_child_reader(
    store: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The in-process read of a day's changes gives what the child reader gives."""
    import baoke.profiles.snapshot as snapshot_module

    if store.dialect.name != "sqlite":
        pytest.skip("the in-process read is SQLite's")
    refresh(store, tmp_path / "here", DAY1)
    refresh(store, tmp_path / "child", DAY1)
    _day_of_changes(store)
    here = refresh(store, tmp_path / "here", DAY2)
    assert here.snapshot is not None and here.snapshot.in_process
    here_profiles = stored_profiles(store)
    monkeypatch.setattr(snapshot_module, "IN_PROCESS_ROWS", 0)
    child = refresh(store, tmp_path / "child", DAY2)
    assert child.snapshot is not None and not child.snapshot.in_process
    assert child.snapshot.rows_read == here.snapshot.rows_read
    assert stored_profiles(store) == here_profiles
    import duckdb

    for name in ("here", "child"):
        db = duckdb.connect(str(tmp_path / name / "analytics.duckdb"), read_only=True)
        try:
            tables = {
                t: db.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
                for t in ("customers", "service_orders", "profiles")
            }
        finally:
            db.close()
        if name == "here":
            expected = tables
    assert tables == expected


def test_rows_of_the_marks_second_are_not_read_again(store: Engine, tmp_path: Path) -> None:
    """The newest rows share one stamp; once read they are not read again, and what changes
    after a refresh is read by the next one (the write barrier, on SQLite)."""
    refresh(store, tmp_path / "data", DAY1)
    quiet = refresh(store, tmp_path / "data", DAY1)
    assert quiet.snapshot is not None
    if store.dialect.name == "sqlite":
        # Without the barrier each mark's own second (one row per table here) came back.
        assert quiet.snapshot.rows_read["customers"] == 0
        assert quiet.snapshot.rows_read["service_orders"] == 0
    changed = _day_of_changes(store)
    after = refresh(store, tmp_path / "data", DAY2)
    assert after.snapshot is not None
    assert after.snapshot.rows_read["service_orders"] >= len(changed)
    assert after.snapshot.rows_read["customers"] >= 1
    warm = stored_profiles(store)
    cold = refresh(store, tmp_path / "cold", DAY2)
    assert cold.snapshot is not None and cold.snapshot.cold
    assert stored_profiles(store) == warm


def test_a_busy_store_is_read_without_the_barrier(
    store: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While another writer holds SQLite's write lock the refresh does not wait for it: it
    reads as it did before the barrier (the mark is the newest stamp read) and misses nothing."""
    import sqlite3

    import baoke.profiles.snapshot as snapshot_module

    if store.dialect.name != "sqlite":
        pytest.skip("the write barrier is SQLite's")
    monkeypatch.setattr(snapshot_module, "BARRIER_WAIT_SECONDS", 0.01)
    refresh(store, tmp_path / "data", DAY1)
    database = store.url.database
    assert database is not None
    barrier = snapshot_module.write_barrier

    def while_busy(path: str) -> str | None:
        # Another writer holds the lock just while the refresh tries to take it.
        writer = sqlite3.connect(path, isolation_level=None)
        try:
            writer.execute("BEGIN IMMEDIATE")
            return barrier(path)
        finally:
            writer.execute("ROLLBACK")
            writer.close()

    monkeypatch.setattr(snapshot_module, "write_barrier", while_busy)
    busy = refresh(store, tmp_path / "data", DAY1)
    assert busy.snapshot is not None
    # The last barrier's mark still holds: nothing was stamped since.
    assert busy.snapshot.rows_read["customers"] == 0
    # Without a barrier the marks are the newest stamps: the next read takes that second again.
    again = refresh(store, tmp_path / "data", DAY1)
    assert again.snapshot is not None and again.snapshot.rows_read["customers"] == 1
    monkeypatch.setattr(snapshot_module, "write_barrier", barrier)
    calm = refresh(store, tmp_path / "data", DAY1)
    assert calm.snapshot is not None and calm.snapshot.rows_read["customers"] == 1
    assert stored_profiles(store) == stored_profiles_cold(store, tmp_path / "cold")


def stored_profiles_cold(engine: Engine, data_dir: Path) -> dict[int, tuple[Any, ...]]:
    """The stored profiles after a cold refresh of DAY1 into ``data_dir``."""
    cold = refresh(engine, data_dir, DAY1)
    assert cold.snapshot is not None and cold.snapshot.cold
    return stored_profiles(engine)
