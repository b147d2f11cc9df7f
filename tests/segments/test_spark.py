"""Built-in segments and tricky operators run in a local SparkSession and agree with DuckDB.

Slow (a JVM start): marked ``slow``; skipped with the reason when Java or PySpark is missing or
the session does not start.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import duckdb
import pytest

from baoke.profiles.schema import PROFILE_COLUMNS, RECORD_TABLES, Column, Kind
from baoke.segments import builtin_segments, compile_condition, parse_rules, segment_query

pytestmark = pytest.mark.slow

Data = tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]


@pytest.fixture(scope="module")
def spark(fixture_data: Data) -> Iterator[Any]:
    """A local SparkSession holding the same tables as the DuckDB fixture."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("Java is not installed: Spark needs a JVM")
    try:
        from pyspark.sql import SparkSession
        from pyspark.sql import types as T
    except ImportError:
        pytest.skip("pyspark is not installed")
    try:
        session = (
            SparkSession.builder.master("local[1]")
            .appName("baoke-segment-tests")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "1")
            .config("spark.sql.session.timeZone", "UTC")
            .getOrCreate()
        )
    except Exception as err:  # the JVM failing to start surfaces as several error types
        pytest.skip(f"SparkSession did not start: {err}")
    spark_types = {
        Kind.INT: T.LongType(),
        Kind.FLOAT: T.DoubleType(),
        Kind.MONEY: T.LongType(),
        Kind.DATE: T.DateType(),
        Kind.TIMESTAMP: T.TimestampNTZType(),
        Kind.BOOL: T.BooleanType(),
        Kind.TEXT: T.StringType(),
        Kind.TAGS: T.ArrayType(T.StringType()),
    }

    def register(name: str, columns: list[Column], rows: list[dict[str, Any]]) -> None:
        schema = T.StructType([T.StructField(c.name, spark_types[c.kind]) for c in columns])
        data = [tuple(r.get(c.name) for c in columns) for r in rows]
        session.createDataFrame(data, schema).createOrReplaceTempView(name)

    customers, records = fixture_data
    import datetime as dt

    as_of = dt.date(2024, 6, 30)
    register("profiles", list(PROFILE_COLUMNS), [{**c, "as_of": as_of} for c in customers])
    for table, (_, cols) in RECORD_TABLES.items():
        register(table, [Column("customer_id", Kind.INT, ""), *cols], records.get(table, []))
    yield session
    session.stop()


def spark_ids(spark: Any, sql: str) -> set[int]:
    return {row[0] for row in spark.sql(sql).collect()}


def test_builtins_agree_with_duckdb(spark: Any, db: duckdb.DuckDBPyConnection) -> None:
    segs = builtin_segments()
    expected = {(seg.name, r[0]) for seg in segs for r in db.execute(segment_query(seg)).fetchall()}
    for as_of in ("2024-06-30", None):
        # One Spark job for all segments: a job per query would take a second each.
        union = " UNION ALL ".join(
            f"SELECT '{seg.name}' AS segment, customer_id FROM ({query})"
            for seg in segs
            for query in [segment_query(seg, "spark", as_of)]
        )
        got = {(row[0], row[1]) for row in spark.sql(union).collect()}
        assert got == expected


@pytest.mark.parametrize(
    "rule",
    [
        "{field: last_visit_date, within_last: 6m}",
        "{field: delivery_date, between: [-5y, -1y]}",
        "{field: insurance_expiry, within_next: 1w}",
        "{field: tags, contains: VIP}",
        "{field: city, contains: 杭州}",
        '{field: city, =: "x\'); DROP TABLE profiles; --"}',
        "{field: city, =: 'back\\slash'}",
        "{not: {field: series, =: 远峰}}",
        "{exists: {table: events, where: {occurred_at: {'>=': today}}}}",
        "{count: {table: events, where: {event_type: model_view}, within_last: 30d}, '>=': 2}",
    ],
)
def test_operators_agree_with_duckdb(spark: Any, db: duckdb.DuckDBPyConnection, rule: str) -> None:
    [seg] = parse_rules(f"name: t\nlabel: T\nrule: {rule}\n")
    where = compile_condition(seg.rule)
    expected = {
        r[0] for r in db.execute(f"SELECT customer_id FROM profiles p WHERE {where}").fetchall()
    }
    for as_of in ("2024-06-30", None):
        assert spark_ids(spark, segment_query(seg, "spark", as_of)) == expected


def test_time_zone_conversion_agrees_with_duckdb(spark: Any, db: duckdb.DuckDBPyConnection) -> None:
    [seg] = parse_rules(
        "name: t\nlabel: T\n"
        "rule: {exists: {table: events, where: {target: 拓界}, within_last: 30d}}"
    )
    expected = {r[0] for r in db.execute(segment_query(seg, tz="Asia/Shanghai")).fetchall()}
    assert expected == {1}
    for as_of in ("2024-06-30", None):
        assert spark_ids(spark, segment_query(seg, "spark", as_of, tz="Asia/Shanghai")) == expected
