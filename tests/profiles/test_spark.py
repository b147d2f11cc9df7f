"""The Spark twin gives the same profiles and segment members as DuckDB, row for row."""

from __future__ import annotations

import datetime as dt
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from baoke.config import Settings
from baoke.ingest.pipeline import find_kind_files, import_file
from baoke.profiles.engine import refresh_profiles, snapshot_path
from baoke.profiles.snapshot import TABLES
from baoke.segments.rules import builtin_segments
from baoke.simulate.generator import GenerateConfig, generate
from baoke.store.db import ensure_schema, make_engine

AS_OF = dt.date(2026, 11, 1)

pytestmark = pytest.mark.slow


def _spark_or_skip() -> Any:
    problem = None
    try:
        import pyspark  # noqa: F401
    except ImportError:
        problem = "pyspark is not installed (pip install 'baoke[spark]')"
    if problem is None and shutil.which("java") is None:
        problem = "no Java runtime for Spark"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(problem + " (CI=true requires the Spark twin to be tested)")
        pytest.skip(problem)
    from baoke.profiles.spark import local_session

    return local_session("baoke-test")


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    session = _spark_or_skip()
    yield session
    session.stop()


@pytest.fixture(scope="module")
def refreshed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path]:
    """A small generated group, imported and refreshed by the DuckDB engine."""
    work = tmp_path_factory.mktemp("twin")
    settings = Settings(data_dir=work / "data")
    engine = make_engine(settings.url)
    ensure_schema(engine)
    generate(GenerateConfig(customers=800, seed=11), work / "gen")
    for kind, path in find_kind_files(work / "gen"):
        import_file(engine, kind, path, tz=settings.zone)
    refresh_profiles(settings, engine, AS_OF, builtin_segments())
    export = work / "parquet"
    export.mkdir()
    db = duckdb.connect(str(snapshot_path(settings)), read_only=True)
    for table in TABLES:
        db.execute(f"COPY {table.name} TO '{export / (table.name + '.parquet')}' (FORMAT parquet)")
    db.close()
    return settings, export


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, abs_tol=1e-6)
    if isinstance(a, list | tuple) or isinstance(b, list | tuple):
        return list(a or []) == list(b or [])
    return bool(a == b)


def test_spark_profiles_and_segments_equal_duckdb(
    spark: Any, refreshed: tuple[Settings, Path]
) -> None:
    from baoke.profiles.spark import register_parquet, spark_profiles, spark_segment_members

    settings, export = refreshed
    definitions = builtin_segments()
    register_parquet(spark, export)
    frame = spark_profiles(
        spark, AS_OF, settings.profiles, settings.zone, [d for d in definitions if d.kind == "tag"]
    )
    spark_rows = {row["customer_id"]: row.asDict() for row in frame.collect()}

    db = duckdb.connect(str(snapshot_path(settings)), read_only=True)
    cursor = db.execute("SELECT * FROM profiles ORDER BY customer_id")
    names = [d[0] for d in cursor.description]
    duck_rows = {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}
    duck_members: dict[str, set[int]] = {}
    for segment, customer in db.execute(
        "SELECT segment, customer_id FROM segment_members"
    ).fetchall():
        duck_members.setdefault(segment, set()).add(customer)
    db.close()

    assert set(spark_rows) == set(duck_rows)
    assert sorted(spark_rows[next(iter(spark_rows))]) == sorted(names)
    mismatches = [
        (cid, name, duck[name], spark_rows[cid][name])
        for cid, duck in duck_rows.items()
        for name in names
        if not _same(duck[name], spark_rows[cid][name])
    ]
    assert {name for _, name, _, _ in mismatches} == set(), mismatches[:5]

    segments = [d for d in definitions if d.kind == "segment"]
    spark_members = spark_segment_members(spark, segments, AS_OF, settings.timezone)
    for seg in segments:
        assert spark_members[seg.name] == duck_members.get(seg.name, set()), seg.name
    assert any(spark_members.values())
