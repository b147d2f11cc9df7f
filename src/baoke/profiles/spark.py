"""The Spark twin: the same profile features, tags and segments on Apache Spark.

For brands whose data lives in a warehouse: each snapshot table is a Spark table or view with
the same name and columns (``snapshot.TABLES``); the feature query and every rule are the
DuckDB definitions transpiled by sqlglot, so there is one definition of each feature and rule.
Install with ``pip install 'baoke[spark]'``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from baoke.config import ProfileSettings
from baoke.profiles.features import profile_sql, spark_sql
from baoke.profiles.snapshot import TABLES
from baoke.segments.rules import SegmentDef, segment_query

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def local_session(app_name: str = "baoke") -> SparkSession:
    """A small local-mode session (2 cores, few shuffle partitions) for tests and one box."""
    from pyspark.sql import SparkSession

    return (
        SparkSession.builder.master("local[2]")
        .appName(app_name)
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.ansi.enabled", "false")
        .getOrCreate()
    )


def register_parquet(spark: SparkSession, directory: Path) -> None:
    """Register ``<table>.parquet`` files of a snapshot export as views named like the tables."""
    for table in TABLES:
        spark.read.parquet(str(directory / f"{table.name}.parquet")).createOrReplaceTempView(
            table.name
        )


def spark_profiles(
    spark: SparkSession,
    as_of: dt.date,
    cfg: ProfileSettings,
    zone: ZoneInfo,
    tags: list[SegmentDef],
) -> DataFrame:
    """Compute ``profiles`` (registered as a view too) from the registered snapshot tables."""
    spark.sql(spark_sql(profile_sql(as_of, cfg, zone))).createOrReplaceTempView("profiles_base")
    kept = [c for c in spark.table("profiles_base").columns if c != "imported_tags"]
    imported = "COALESCE(from_json(b.imported_tags, 'array<string>'), array())"
    spark.sql(
        f"SELECT {', '.join('b.' + c for c in kept)}, {imported} AS tags FROM profiles_base b"
    ).createOrReplaceTempView("profiles")
    parts = [
        f"SELECT customer_id, '{(t.label or t.name).replace(chr(39), '')}' AS tag FROM "
        f"({segment_query(t, dialect='spark', as_of=as_of.isoformat(), tz=zone.key)})"
        for t in tags
    ]
    if parts:
        spark.sql(" UNION ALL ".join(parts)).createOrReplaceTempView("auto_tags")
    else:
        spark.sql(
            "SELECT CAST(NULL AS BIGINT) AS customer_id, CAST(NULL AS STRING) AS tag WHERE FALSE"
        ).createOrReplaceTempView("auto_tags")
    profiles = spark.sql(f"""
        SELECT {", ".join("b." + c for c in kept)},
               array_sort(array_distinct(concat({imported}, COALESCE(t.tags, array())))) AS tags
        FROM profiles_base b
        LEFT JOIN (SELECT customer_id, array_sort(collect_list(tag)) AS tags FROM auto_tags
                   GROUP BY customer_id) t ON t.customer_id = b.customer_id
    """)
    profiles.createOrReplaceTempView("profiles")
    return profiles


def spark_segment_members(
    spark: SparkSession, segments: list[SegmentDef], as_of: dt.date, tz: str
) -> dict[str, set[int]]:
    """Members of each segment, evaluated by Spark."""
    members: dict[str, set[int]] = {}
    for seg in segments:
        rows: list[Any] = spark.sql(
            segment_query(seg, dialect="spark", as_of=as_of.isoformat(), tz=tz)
        ).collect()
        members[seg.name] = {int(row[0]) for row in rows}
    return members
