"""``baoke profiles refresh``: snapshot → features → auto-tags → segments → write-back.

Everything runs set-based in DuckDB over the snapshot. The operational store receives, in bulk,
only what changed since the last refresh: profile rows whose stored columns differ, segment
entries (new membership rows) and exits (membership rows closed).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
from sqlalchemy import Connection, Engine, Table, delete, select, update

from baoke.config import Settings
from baoke.ingest.store_io import bulk_insert, bulk_insert_new, bulk_upsert
from baoke.profiles.features import profile_sql
from baoke.profiles.snapshot import Snapshot, SnapshotStats, first_row
from baoke.segments.rules import SegmentDef, builtin_segments, segment_query
from baoke.store import models as m

# Columns of customer_profiles in the store, as (store column, profiles column).
STORED = (
    ("customer_id", "customer_id"),
    ("as_of", "as_of"),
    ("is_owner", "is_owner"),
    ("value_tier", "value_tier"),
    ("lifecycle_stage", "lifecycle_stage"),
    ("spend_12m_fen", "spend_12m"),
    ("visits_12m", "visits_12m"),
    ("last_visit_date", "last_visit_date"),
    ("first_maintenance_done", "first_maintenance_done"),
    ("next_maintenance_due_date", "next_maintenance_due_date"),
    ("next_maintenance_due_km", "next_maintenance_due_km"),
    ("insurance_expiry", "insurance_expiry"),
    ("warranty_end", "warranty_end"),
    ("upgrade_intent", "upgrade_intent"),
    ("upgrade_reasons", "upgrade_reasons"),
    ("churn_risk", "churn_risk"),
    ("churn_reasons", "churn_reasons"),
    ("open_complaint", "open_complaint"),
    ("sms_reachable", "sms_reachable"),
    ("wecom_reachable", "wecom_reachable"),
    ("push_reachable", "push_reachable"),
    ("email_reachable", "email_reachable"),
    ("phone_reachable", "phone_reachable"),
    ("tags", "tags_json"),
)
# Compared to decide whether a stored profile row must be rewritten (as_of alone is not news).
COMPARED = [store for store, _ in STORED if store not in ("customer_id", "as_of")]


@dataclass
class RefreshResult:
    """What one refresh did, with timings per phase."""

    as_of: dt.date
    customers: int = 0
    snapshot: SnapshotStats | None = None
    segments: dict[str, int] = field(default_factory=dict)
    entered: int = 0
    exited: int = 0
    profiles_written: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        """Total wall time."""
        return sum(self.timings.values())


class _Clock:
    def __init__(self, result: RefreshResult) -> None:
        self.result = result
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.result.timings[name] = now - self.last
        self.last = now


def snapshot_path(settings: Settings) -> Path:
    """Where the analytical snapshot of this data directory lives."""
    return settings.data_dir / "analytics.duckdb"


def refresh_profiles(
    settings: Settings,
    engine: Engine,
    as_of: dt.date | None = None,
    definitions: list[SegmentDef] | None = None,
) -> RefreshResult:
    """Refresh the snapshot, recompute every profile and segment, and write changes back."""
    day = as_of or dt.datetime.now(settings.zone).date()
    result = RefreshResult(as_of=day)
    clock = _Clock(result)
    defs = definitions if definitions is not None else builtin_segments()
    snap = Snapshot(snapshot_path(settings))
    try:
        result.snapshot = snap.refresh(settings.url, day, settings.profiles.events_window_days)
        clock.lap("snapshot")
        db = snap.db
        if result.snapshot.cold:
            # A new snapshot knows nothing of what was written before: start the diff afresh.
            db.execute("DROP TABLE IF EXISTS profiles_written")
            db.execute("DROP TABLE IF EXISTS members_written")
        compute_profiles(db, day, settings, [d for d in defs if d.kind == "tag"])
        result.customers = _scalar(db, "SELECT count(*) FROM profiles")
        clock.lap("features")
        segments = [d for d in defs if d.kind == "segment"]
        result.segments = evaluate_segments(db, segments, day, settings.timezone)
        clock.lap("segments")
        result.profiles_written = _write_profiles(db, engine)
        result.entered, result.exited = _write_memberships(db, engine, day)
        _write_definitions(engine, segments, result.segments, day, settings.timezone)
        clock.lap("write-back")
    finally:
        snap.close()
    return result


def compute_profiles(
    db: duckdb.DuckDBPyConnection, day: dt.date, settings: Settings, tags: list[SegmentDef]
) -> None:
    """Build the ``profiles`` table: features, then auto-tags on top of imported tags.

    The table is written once with the imported tags parsed; tag rules (which see imported
    tags only, so no tag rule depends on another) then update just the rows they tag.
    """
    features = profile_sql(day, settings.profiles, settings.zone)
    db.execute(f"""
        CREATE OR REPLACE TABLE profiles AS
        SELECT * EXCLUDE (imported_tags),
               CASE WHEN imported_tags IS NULL THEN []::VARCHAR[]
                    ELSE list_sort(list_distinct(
                        COALESCE(TRY_CAST(json(imported_tags) AS VARCHAR[]), []))) END AS tags
        FROM ({features})
    """)
    db.execute("CREATE OR REPLACE TEMP TABLE auto_tags (customer_id BIGINT, tag VARCHAR)")
    for tag in tags:
        members = segment_query(tag, as_of=day.isoformat(), tz=settings.timezone)
        db.execute(
            f"INSERT INTO auto_tags SELECT customer_id, ? FROM ({members})", [tag.label or tag.name]
        )
    db.execute("""
        UPDATE profiles SET tags = list_sort(list_distinct(list_concat(profiles.tags, t.tags)))
        FROM (SELECT customer_id, list(tag) AS tags FROM auto_tags GROUP BY customer_id) t
        WHERE profiles.customer_id = t.customer_id
    """)


def evaluate_segments(
    db: duckdb.DuckDBPyConnection, segments: list[SegmentDef], day: dt.date, tz: str
) -> dict[str, int]:
    """Members of every segment today, into ``segment_members`` (segment, customer_id)."""
    db.execute("CREATE OR REPLACE TABLE segment_members (segment VARCHAR, customer_id BIGINT)")
    for seg in segments:
        db.execute(
            f"INSERT INTO segment_members SELECT ?, customer_id FROM "
            f"({segment_query(seg, as_of=day.isoformat(), tz=tz)})",
            [seg.name],
        )
    counts = dict(
        db.execute("SELECT segment, count(*) FROM segment_members GROUP BY segment").fetchall()
    )
    return {seg.name: int(counts.get(seg.name, 0)) for seg in segments}


def _frame(db: duckdb.DuckDBPyConnection, sql: str) -> pl.DataFrame:
    frame: pl.DataFrame = db.sql(sql).pl()
    return frame


def _scalar(db: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = first_row(db.execute(sql).fetchall())
    return int(row[0]) if row else 0


def _t(model: type[m.Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def _write_profiles(db: duckdb.DuckDBPyConnection, engine: Engine) -> int:
    """Rewrite the stored profile rows that changed (all of them on the first refresh)."""
    columns = ", ".join(f"{src} AS {store}" for store, src in STORED)
    db.execute(
        f"CREATE OR REPLACE TEMP TABLE profiles_out AS SELECT {columns} FROM "
        "(SELECT *, CASE WHEN len(tags) > 0 THEN to_json(tags)::VARCHAR END AS tags_json "
        "FROM profiles)"
    )
    exists = _scalar(
        db, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'profiles_written'"
    )
    if exists:
        differs = " OR ".join(f"o.{c} IS DISTINCT FROM w.{c}" for c in COMPARED)
        db.execute(
            f"CREATE OR REPLACE TEMP TABLE profiles_changed AS SELECT o.* FROM profiles_out o "
            f"LEFT JOIN profiles_written w USING (customer_id) "
            f"WHERE w.customer_id IS NULL OR {differs}"
        )
        changed = _frame(db, "SELECT * FROM profiles_changed")
    else:
        changed = _frame(db, "SELECT * FROM profiles_out")
    table = _t(m.CustomerProfile)
    with engine.begin() as conn:
        if not exists:
            conn.execute(delete(table))
            bulk_insert(conn, table, changed)
        else:
            bulk_upsert(conn, table, changed, "customer_id")
    if exists:
        # Bring the baseline up to date with the rows just written, not a full copy.
        db.execute(
            "DELETE FROM profiles_written WHERE customer_id IN "
            "(SELECT customer_id FROM profiles_changed)"
        )
        db.execute("INSERT INTO profiles_written SELECT * FROM profiles_changed")
    else:
        db.execute("CREATE OR REPLACE TABLE profiles_written AS SELECT * FROM profiles_out")
    return changed.height


BIG_WRITE = 200_000
OPEN_STAY = "(segment, customer_id) WHERE exited_on IS NULL"  # uq_segment_memberships_open


@contextmanager
def _indexes_set_aside(conn: Connection, table: Table, rows: int) -> Iterator[None]:
    """For a large write, drop the table's secondary indexes and build them again after:
    one sorted build is far cheaper than a million random B-tree inserts (the first refresh
    writes every profile and every membership)."""
    if rows < BIG_WRITE:
        yield
        return
    indexes = list(table.indexes)
    for index in indexes:
        index.drop(conn)
    yield
    for index in indexes:
        index.create(conn)


def _write_memberships(
    db: duckdb.DuckDBPyConnection, engine: Engine, day: dt.date
) -> tuple[int, int]:
    """Open a membership for each entry and close the one of each exit, since last refresh."""
    exists = _scalar(
        db, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'members_written'"
    )
    previous = "members_written" if exists else "(SELECT '' AS segment, 0 AS customer_id LIMIT 0)"
    entered = _frame(
        db,
        f"SELECT segment, customer_id FROM segment_members EXCEPT "
        f"SELECT segment, customer_id FROM {previous}",
    )
    exited = _frame(
        db,
        f"SELECT segment, customer_id FROM {previous} EXCEPT "
        f"SELECT segment, customer_id FROM segment_members",
    )
    table = _t(m.SegmentMembership)
    with engine.begin() as conn:
        if not exists:
            # The store may hold memberships the snapshot never saw (a new data dir): close them.
            conn.execute(update(table).where(table.c.exited_on.is_(None)).values(exited_on=day))
        # In index order: appending to the B-trees is much cheaper than random inserts.
        rows = entered.sort("segment", "customer_id").with_columns(
            pl.lit(day).alias("entered_on"), pl.lit(None, dtype=pl.Date).alias("exited_on")
        )
        if not exists:
            with _indexes_set_aside(conn, table, rows.height):
                bulk_insert(conn, table, rows)  # every open stay was just closed
        else:
            # A refresh replayed after a crash may bring entries the store already has.
            bulk_insert_new(conn, table, rows, OPEN_STAY)
        if exited.height:
            _close_memberships(conn, exited, day)
    if exists:
        db.register("_entered", entered.to_arrow())
        db.register("_exited", exited.to_arrow())
        db.execute(
            "DELETE FROM members_written WHERE (segment, customer_id) IN "
            "(SELECT segment, customer_id FROM _exited)"
        )
        db.execute("INSERT INTO members_written SELECT segment, customer_id FROM _entered")
        db.unregister("_entered")
        db.unregister("_exited")
    else:
        db.execute("CREATE OR REPLACE TABLE members_written AS SELECT * FROM segment_members")
    return entered.height, exited.height


def _close_memberships(conn: Connection, exited: pl.DataFrame, day: dt.date) -> None:
    """Set ``exited_on`` on the open membership of each (segment, customer) that left."""
    raw = conn.connection.driver_connection
    assert raw is not None
    if conn.dialect.name == "postgresql":
        with raw.cursor() as cursor:
            cursor.execute(
                "UPDATE segment_memberships m SET exited_on = %s "
                "FROM unnest(%s::text[], %s::bigint[]) AS x(segment, customer_id) "
                "WHERE m.segment = x.segment AND m.customer_id = x.customer_id "
                "AND m.exited_on IS NULL",
                (day, exited["segment"].to_list(), exited["customer_id"].to_list()),
            )
        return
    cursor = raw.cursor()
    try:
        cursor.executemany(
            "UPDATE segment_memberships SET exited_on = ? "
            "WHERE segment = ? AND customer_id = ? AND exited_on IS NULL",
            [(day.isoformat(), seg, cid) for seg, cid in exited.iter_rows()],
        )
    finally:
        cursor.close()


def _write_definitions(
    engine: Engine,
    segments: list[SegmentDef],
    counts: dict[str, int],
    day: dt.date,
    tz: str,
) -> None:
    table = _t(m.SegmentDefinition)
    with engine.begin() as conn:
        stored = set(conn.execute(select(table.c.name)).scalars())
        for seg in segments:
            values: dict[str, Any] = {
                "label": seg.label,
                "description": seg.description,
                "kind": seg.kind,
                "source": seg.source,
                "sql": segment_query(seg, tz=tz),
                "members": counts[seg.name],
                "evaluated_on": day,
            }
            if seg.name in stored:
                conn.execute(update(table).where(table.c.name == seg.name).values(**values))
            else:
                conn.execute(table.insert().values(name=seg.name, **values))
