"""Profile conditions asked of the snapshot: the same answer per call, asked once per run."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import polars as pl
import pytest

from baoke.journeys.engine import StoreLookups, open_profiles, profiles_of
from baoke.segments.rules import Field, Kind

LOST = Field("lifecycle_stage", Kind.TEXT, "=", "lost")
ZONE = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def snapshot(tmp_path: Path) -> Path:
    path = tmp_path / "analytics.duckdb"
    db = duckdb.connect(str(path))
    stages = ["lost" if i % 3 == 0 else "active" for i in range(1, 31)]
    frame = pl.DataFrame({"customer_id": list(range(1, 31)), "lifecycle_stage": stages})
    db.register("frame", frame.to_arrow())
    db.execute("CREATE TABLE profiles AS SELECT * FROM frame")
    db.close()
    return path


def _ids(values: list[int]) -> pl.Series:
    return pl.Series("customer_id", values, dtype=pl.Int64)


def test_a_condition_answers_for_the_ids_asked_about_only(snapshot: Path) -> None:
    with open_profiles(snapshot) as profiles:
        lookups = StoreLookups(None, profiles, ZONE)  # type: ignore[arg-type]
        assert sorted(lookups.holds(LOST, _ids([1, 2, 3, 6, 6, 7, 99]))) == [3, 6]
        assert sorted(lookups.holds(LOST, _ids([9, 10, 12]))) == [9, 12]
        assert lookups.holds(LOST, _ids([])).len() == 0


def test_the_cached_answer_matches_asking_the_snapshot_directly(snapshot: Path) -> None:
    asked = _ids([4, 5, 6, 15, 21, 22, 30])
    with open_profiles(snapshot) as profiles:
        cached = StoreLookups(None, profiles, ZONE).holds(LOST, asked)  # type: ignore[arg-type]
    direct = duckdb.connect(str(snapshot), read_only=True)
    try:
        # Not opened by open_profiles: no cache, a semi-join on the ids asked about.
        uncached = StoreLookups(None, direct, ZONE).holds(LOST, asked)  # type: ignore[arg-type]
    finally:
        direct.close()
    assert sorted(cached) == sorted(uncached) == [6, 15, 21, 30]


def test_a_snapshot_closed_and_changed_is_asked_again(snapshot: Path) -> None:
    with open_profiles(snapshot) as profiles:
        before = StoreLookups(None, profiles, ZONE).holds(LOST, _ids([1, 3]))  # type: ignore[arg-type]
    db = duckdb.connect(str(snapshot))
    db.execute("UPDATE profiles SET lifecycle_stage = 'lost' WHERE customer_id = 1")
    db.close()
    with open_profiles(snapshot) as profiles:
        after = StoreLookups(None, profiles, ZONE).holds(LOST, _ids([1, 3]))  # type: ignore[arg-type]
    assert sorted(before) == [3]
    assert sorted(after) == [1, 3]


def test_a_snapshot_kept_open_is_asked_again_in_the_next_run(snapshot: Path) -> None:
    db = duckdb.connect(str(snapshot))  # a long-running process's connection
    try:
        with profiles_of(db) as profiles:
            before = StoreLookups(None, profiles, ZONE).holds(LOST, _ids([1, 3]))  # type: ignore[arg-type]
        db.execute("UPDATE profiles SET lifecycle_stage = 'lost' WHERE customer_id = 1")
        with profiles_of(db) as profiles:
            after = StoreLookups(None, profiles, ZONE).holds(LOST, _ids([1, 3]))  # type: ignore[arg-type]
    finally:
        db.close()
    assert sorted(before) == [3]
    assert sorted(after) == [1, 3]
