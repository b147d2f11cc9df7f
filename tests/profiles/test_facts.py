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
from sqlalchemy import Engine
from tests.profiles.history import change_a_day, import_history, whole_recompute_differs

from baoke.config import ProfileSettings, Settings
from baoke.profiles.engine import RefreshResult, refresh_profiles, snapshot_path
from baoke.profiles.snapshot import Snapshot

START = dt.date(2026, 11, 1)
UTC = dt.UTC


@pytest.fixture
def settings(engine: Engine, tmp_path: Path) -> Settings:
    import_history(engine, tmp_path / "gen", customers=300, seed=11)
    return Settings(
        data_dir=tmp_path / "data", database_url=engine.url.render_as_string(hide_password=False)
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
    # And the profiles of each day were rolled forward from the day before's.
    assert not results[0].profiles_rolled and all(r.profiles_rolled for r in results[1:])
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
