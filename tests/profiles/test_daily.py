"""The day's profiles rolled forward are the profiles projected whole, tags included."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine
from tests.profiles.history import change_a_day, import_history, stored_profiles

from baoke.config import Settings
from baoke.profiles.engine import compute_profiles, refresh_profiles, snapshot_path
from baoke.profiles.facts import FACTS_TABLE
from baoke.profiles.features import DAY_COLUMNS, projection_sql
from baoke.profiles.schema import PROFILE_COLUMNS
from baoke.profiles.snapshot import Snapshot
from baoke.segments.rules import SegmentDef, builtin_segments, parse_rules

START = dt.date(2026, 11, 1)
COLUMNS = ", ".join(c.name for c in PROFILE_COLUMNS)


@pytest.fixture
def settings(engine: Engine, tmp_path: Path) -> Settings:
    import_history(engine, tmp_path / "gen", customers=300, seed=23)
    return Settings(
        data_dir=tmp_path / "data", database_url=engine.url.render_as_string(hide_password=False)
    )


def _tags() -> list[SegmentDef]:
    return [d for d in builtin_segments() if d.kind == "tag"]


def _rows(snap: Snapshot) -> list[tuple[object, ...]]:
    return snap.db.execute(f"SELECT {COLUMNS} FROM profiles ORDER BY customer_id").fetchall()


def test_every_column_outside_the_day_columns_is_the_facts_alone(
    engine: Engine, settings: Settings
) -> None:
    refresh_profiles(settings, engine, START, [])
    snap = Snapshot(snapshot_path(settings))
    try:
        moving = {
            column
            for later in (1, 30, 400, 4000)
            for column in _moved_columns(snap, START, START + dt.timedelta(days=later), settings)
        }
    finally:
        snap.close()
    # Every day column moves over these days on this group, and no other column does: a
    # profile whose facts stay is rolled forward by these columns alone.
    assert moving == set(DAY_COLUMNS)


def _moved_columns(snap: Snapshot, day: dt.date, later: dt.date, settings: Settings) -> set[str]:
    """The profile columns that differ for some customer between two days, same facts."""
    now, then = (projection_sql(d, settings.profiles, FACTS_TABLE) for d in (day, later))
    names = [c.name for c in PROFILE_COLUMNS if c.name not in ("customer_id", "tags")]
    differs = ", ".join(f"count(*) FILTER (WHERE a.{n} IS DISTINCT FROM b.{n})" for n in names)
    row = snap.db.execute(
        f"SELECT {differs} FROM ({now}) a JOIN ({then}) b USING (customer_id)"
    ).fetchone()
    assert row is not None
    return {name for name, n in zip(names, row, strict=True) if n}


def test_profiles_rolled_forward_are_those_projected_whole_tags_included(
    engine: Engine, settings: Settings
) -> None:
    rng = np.random.default_rng(8)
    snap = Snapshot(snapshot_path(settings))
    try:
        day = START
        for step in range(8):
            result = refresh_profiles(settings, engine, day, _tags(), snapshot=snap)
            assert result.profiles_rolled == (step > 0)
            rolled = _rows(snap)
            # The same day again, with the roll's record gone: projected whole.
            snap.db.execute("DROP TABLE profiles_state")
            again = refresh_profiles(settings, engine, day, _tags(), snapshot=snap)
            assert not again.profiles_rolled
            assert _rows(snap) == rolled, f"on {day}"
            change_a_day(engine, day, rng)
            day += dt.timedelta(days=1 if step % 3 else 40)  # now and then weeks apart
    finally:
        snap.close()


def test_a_tag_rule_that_reads_the_tags_has_the_profiles_projected_whole(
    engine: Engine, settings: Settings
) -> None:
    (reader,) = parse_rules(
        "segments:\n"
        "  - {name: tag_vip_owner, label: VIP车主, kind: tag,\n"
        "     rule: {all: [{field: tags, contains: VIP}, {field: is_owner, =: true}]}}\n",
        "test",
    )
    refresh_profiles(settings, engine, START, [reader])
    later = refresh_profiles(settings, engine, START + dt.timedelta(days=1), [reader])
    assert later.facts is not None and not later.facts.whole
    assert not later.profiles_rolled


def test_the_store_holds_the_rolled_profiles_when_only_their_changes_are_compared(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    rng = np.random.default_rng(5)
    snap = Snapshot(snapshot_path(settings))
    try:
        day = START
        for step in range(7):
            if step == 4:
                # A refresh stopped after the roll, before the write-back: the next one
                # rolls from a day the store was not written from, and compares every row.
                compute_profiles(snap.db, day, settings, _tags())
                change_a_day(engine, day, rng)
                day += dt.timedelta(days=1)
            result = refresh_profiles(settings, engine, day, _tags(), snapshot=snap)
            assert result.profiles_rolled == (step > 0)
            rolled = stored_profiles(engine)
            # A new snapshot rewrites every stored row from profiles projected whole.
            cold = settings.model_copy(update={"data_dir": tmp_path / f"cold-{step}"})
            assert not refresh_profiles(cold, engine, day, _tags()).profiles_rolled
            assert stored_profiles(engine) == rolled, f"on {day}"
            change_a_day(engine, day, rng)
            day += dt.timedelta(days=1 if step % 3 else 40)
    finally:
        snap.close()
