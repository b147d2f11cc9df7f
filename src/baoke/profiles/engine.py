"""``baoke profiles refresh``: snapshot → features → auto-tags → segments → write-back.

Everything runs set-based in DuckDB over the snapshot. The operational store receives, in bulk,
only what changed since the last refresh: profile rows whose stored columns differ, segment
entries (new membership rows) and exits (membership rows closed).
"""

from __future__ import annotations

import datetime as dt
import functools
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
from baoke.profiles.daily import REWRITTEN, write_profiles_table
from baoke.profiles.facts import FACTS_TABLE, FactsUpdate, update_facts
from baoke.profiles.snapshot import Snapshot, SnapshotStats, keep_day, kept_day, scalar
from baoke.segments.rules import SegmentDef, builtin_segments, profile_fields, segment_query
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
# The day of the profiles the store's rows were last written from (the baseline's state).
WRITTEN_STATE = "profiles_written_state"
_WRITTEN_BY = ",".join(store for store, _ in STORED)
TAGS_CHANGED = "tags_changed"  # temporary: the rows whose tags today's refresh changed


@dataclass
class RefreshResult:
    """What one refresh did, with timings per phase."""

    as_of: dt.date
    customers: int = 0
    snapshot: SnapshotStats | None = None
    facts: FactsUpdate | None = None
    profiles_rolled: bool = False  # rolled forward from the last refresh, not projected whole
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
    snapshot: Snapshot | None = None,
) -> RefreshResult:
    """Refresh the snapshot, recompute every profile and segment, and write changes back.

    ``snapshot`` is an open snapshot of these settings to refresh and leave open (a process
    that runs day after day keeps one); without it the snapshot is opened and closed here.
    """
    day = as_of or dt.datetime.now(settings.zone).date()
    result = RefreshResult(as_of=day)
    clock = _Clock(result)
    defs = definitions if definitions is not None else builtin_segments()
    snap = snapshot if snapshot is not None else Snapshot(snapshot_path(settings))
    try:
        result.snapshot = snap.refresh(settings.url, day, settings.profiles.events_window_days)
        clock.lap("snapshot")
        db = snap.db
        if result.snapshot.cold:
            # A new snapshot knows nothing of what was written before: start the diff afresh.
            db.execute("DROP TABLE IF EXISTS profiles_written")
            db.execute(f"DROP TABLE IF EXISTS {WRITTEN_STATE}")
            db.execute("DROP TABLE IF EXISTS members_written")
        result.facts, result.profiles_rolled = compute_profiles(
            db, day, settings, [d for d in defs if d.kind == "tag"]
        )
        result.customers = scalar(db, "SELECT count(*) FROM profiles")
        clock.lap("features")
        segments = [d for d in defs if d.kind == "segment"]
        result.segments = evaluate_segments(db, segments, day, settings.timezone)
        clock.lap("segments")
        rolled_from = result.facts.since if result.profiles_rolled else None
        result.profiles_written = _write_profiles(db, engine, day, rolled_from)
        result.entered, result.exited = _write_memberships(db, engine, day)
        _write_definitions(engine, segments, result.segments, day, settings.timezone)
        clock.lap("write-back")
    finally:
        if snapshot is None:
            snap.close()
    return result


def compute_profiles(
    db: duckdb.DuckDBPyConnection, day: dt.date, settings: Settings, tags: list[SegmentDef]
) -> tuple[FactsUpdate, bool]:
    """Build the ``profiles`` table: facts brought up to date (see ``facts``), projected to
    ``day`` or rolled forward to it (see ``daily``), then the tags: imported tags and the tag
    rules' labels.

    Tag rules see the imported tags only, so that no tag rule depends on another: a table
    rolled forward still holds yesterday's labels, so with a rule that reads the tags the
    table is projected whole. Only the rows whose tags change are written. Returns the facts
    update and whether the profiles were rolled forward.
    """
    facts = update_facts(db, day, settings.profiles, settings.zone)
    reads_tags = any("tags" in profile_fields(tag.rule) for tag in tags)
    rolled = write_profiles_table(db, day, settings.profiles, facts, may_roll=not reads_tags)
    db.execute("CREATE OR REPLACE TEMP TABLE auto_tags (customer_id BIGINT, tag VARCHAR)")
    named = [(tag.label or tag.name, tag) for tag in tags]
    _insert_members(db, "auto_tags (tag, customer_id)", named, day, settings.timezone)
    # Only the rows tagged today or yesterday can change (a tag adds to the imported ones).
    db.execute(f"""
        CREATE OR REPLACE TEMP TABLE {TAGS_CHANGED} AS
        SELECT * FROM (
            SELECT f.customer_id, p.tags AS was, list_sort(list_distinct(list_concat(
                f.imported_tags, COALESCE(a.tags, []::VARCHAR[])))) AS tags
            FROM {FACTS_TABLE} f JOIN profiles p USING (customer_id)
            LEFT JOIN (SELECT customer_id, list(tag) AS tags FROM auto_tags
                       GROUP BY customer_id) a USING (customer_id)
            WHERE a.customer_id IS NOT NULL OR len(p.tags) > len(f.imported_tags))
        WHERE was IS DISTINCT FROM tags
    """)
    db.execute(
        f"UPDATE profiles SET tags = t.tags FROM {TAGS_CHANGED} t "
        "WHERE profiles.customer_id = t.customer_id"
    )
    return facts, rolled


def evaluate_segments(
    db: duckdb.DuckDBPyConnection, segments: list[SegmentDef], day: dt.date, tz: str
) -> dict[str, int]:
    """Members of every segment today, into ``segment_members`` (segment, customer_id)."""
    db.execute("CREATE OR REPLACE TABLE segment_members (segment VARCHAR, customer_id BIGINT)")
    named = [(seg.name, seg) for seg in segments]
    _insert_members(db, "segment_members (segment, customer_id)", named, day, tz)
    counts = dict(
        db.execute("SELECT segment, count(*) FROM segment_members GROUP BY segment").fetchall()
    )
    return {seg.name: int(counts.get(seg.name, 0)) for seg in segments}


# Two days no rule names: a rule's SQL compiled for each, with the day replaced by one token,
# must come out the same, which proves the day appears nowhere but as the as_of anchor.
_PROBE_DAYS = ("1901-02-03", "2987-06-05")
_DAY_TOKEN = "\x00as_of\x00"


@functools.lru_cache(maxsize=1024)
def _members_template(seg: SegmentDef, tz: str) -> str | None:
    """The rule's SQL with its as_of day as a token, or None if the day cannot be told apart."""
    first, second = (
        segment_query(seg, as_of=day, tz=tz).replace(f"'{day}'", _DAY_TOKEN) for day in _PROBE_DAYS
    )
    return first if first == second else None


def members_sql(seg: SegmentDef, day: dt.date, tz: str) -> str:
    """``segment_query(seg, as_of=day, tz=tz)``, compiled once per rule rather than every day.

    Compiling a rule through sqlglot costs about a millisecond and a refresh evaluates dozens
    of rules for a new day each time; only the day changes, so it is substituted.
    """
    template = _members_template(seg, tz)
    if template is None:
        return segment_query(seg, as_of=day.isoformat(), tz=tz)
    return template.replace(_DAY_TOKEN, f"'{day.isoformat()}'")


@functools.lru_cache(maxsize=1024)
def _stored_sql(seg: SegmentDef, tz: str) -> str:
    return segment_query(seg, tz=tz)


def _insert_members(
    db: duckdb.DuckDBPyConnection,
    target: str,
    rules: list[tuple[str, SegmentDef]],
    day: dt.date,
    tz: str,
) -> None:
    """Insert (label, customer id) into ``target`` for every rule's members, in one statement.

    One statement rather than one per rule: at tens of thousands of customers a rule's query
    costs less than a statement's fixed overhead, and DuckDB runs the parts in one plan.
    """
    if not rules:
        return
    parts = [
        f"SELECT CAST(? AS VARCHAR), customer_id FROM ({members_sql(seg, day, tz)})"
        for _, seg in rules
    ]
    db.execute(f"INSERT INTO {target} {' UNION ALL '.join(parts)}", [label for label, _ in rules])


def _frame(db: duckdb.DuckDBPyConnection, sql: str) -> pl.DataFrame:
    frame: pl.DataFrame = db.sql(sql).pl()
    return frame


def _has_table(db: duckdb.DuckDBPyConnection, name: str) -> bool:
    # duckdb_tables() rather than information_schema.tables: the same answer for a table,
    # without building the whole information schema (a few milliseconds per refresh).
    return scalar(db, f"SELECT count(*) FROM duckdb_tables() WHERE table_name = '{name}'") > 0


def _drop_temp(db: duckdb.DuckDBPyConnection, name: str) -> None:
    """Drop the temporary table or view ``name`` if there is one."""
    views = scalar(db, f"SELECT count(*) FROM duckdb_views() WHERE view_name = '{name}'")
    db.execute(f"DROP {'VIEW' if views else 'TABLE'} IF EXISTS temp.{name}")


def _t(model: type[m.Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def _write_profiles(
    db: duckdb.DuckDBPyConnection, engine: Engine, day: dt.date, rolled_from: dt.date | None
) -> int:
    """Rewrite the stored profile rows that changed (all of them on the first refresh).

    ``rolled_from``: the day the profiles were rolled forward from (None if projected whole).
    When the store was last written from that day's table, only the rows the roll projected
    again and those whose tags changed can differ from it, and only they are compared.
    """
    columns = ", ".join(f"{src} AS {store}" for store, src in STORED)
    exists = _has_table(db, "profiles_written")
    narrow = (
        f"WHERE customer_id IN (SELECT customer_id FROM {REWRITTEN} "
        f"UNION SELECT customer_id FROM {TAGS_CHANGED})"
        if exists
        and rolled_from is not None
        and kept_day(db, "profiles_written", WRITTEN_STATE, _WRITTEN_BY) == rolled_from
        else ""
    )
    # Against a baseline only the changed rows are used, so the stored form stays a view:
    # copying every profile first costs more than the diff. The first write reads every row
    # twice (to the store and into the baseline), so it keeps the copy.
    kind = "VIEW" if exists else "TABLE"
    _drop_temp(db, "profiles_out")  # a snapshot kept open has the last refresh's, of either kind
    db.execute(
        f"CREATE OR REPLACE TEMP {kind} profiles_out AS SELECT {columns} FROM "
        "(SELECT *, CASE WHEN len(tags) > 0 THEN to_json(tags)::VARCHAR END AS tags_json "
        f"FROM profiles {narrow})"
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
    db.execute("BEGIN TRANSACTION")
    try:
        if exists:
            # Bring the baseline up to date with the rows just written, not a full copy.
            db.execute(
                "DELETE FROM profiles_written WHERE customer_id IN "
                "(SELECT customer_id FROM profiles_changed)"
            )
            db.execute("INSERT INTO profiles_written SELECT * FROM profiles_changed")
        else:
            db.execute("CREATE OR REPLACE TABLE profiles_written AS SELECT * FROM profiles_out")
        keep_day(db, WRITTEN_STATE, day, _WRITTEN_BY)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
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
    table = _t(m.SegmentMembership)
    # Only a baseline just read from a store without open stays allows the plain insert: a
    # snapshot whose baseline is empty may be replaying entries the store already committed.
    first = not _has_table(db, "members_written") and _baseline_from_store(db, engine, table) == 0
    entered = _frame(
        db,
        "SELECT segment, customer_id FROM segment_members EXCEPT "
        "SELECT segment, customer_id FROM members_written",
    )
    exited = _frame(
        db,
        "SELECT segment, customer_id FROM members_written EXCEPT "
        "SELECT segment, customer_id FROM segment_members",
    )
    with engine.begin() as conn:
        # In index order: appending to the B-trees is much cheaper than random inserts.
        rows = entered.sort("segment", "customer_id").with_columns(
            pl.lit(day).alias("entered_on"), pl.lit(None, dtype=pl.Date).alias("exited_on")
        )
        if first:
            with _indexes_set_aside(conn, table, rows.height):
                bulk_insert(conn, table, rows)  # the store holds no open stay
        else:
            # A refresh replayed after a crash may bring entries the store already has.
            bulk_insert_new(conn, table, rows, OPEN_STAY)
        if exited.height:
            _close_memberships(conn, exited, day)
    db.register("_entered", entered.to_arrow())
    db.register("_exited", exited.to_arrow())
    db.execute(
        "DELETE FROM members_written WHERE (segment, customer_id) IN "
        "(SELECT segment, customer_id FROM _exited)"
    )
    db.execute("INSERT INTO members_written SELECT segment, customer_id FROM _entered")
    db.unregister("_entered")
    db.unregister("_exited")
    return entered.height, exited.height


def _baseline_from_store(db: duckdb.DuckDBPyConnection, engine: Engine, table: Table) -> int:
    """A new snapshot (the first refresh, or a data directory moved or restored) starts from
    the stays the store holds open: one that goes on is neither closed nor opened again, so
    the history keeps its entry dates and today's segment entries are only the real ones.

    Returns how many stays the store holds open."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(table.c.segment, table.c.customer_id).where(table.c.exited_on.is_(None))
        ).all()
    stays = pl.DataFrame(rows, schema={"segment": pl.String, "customer_id": pl.Int64}, orient="row")
    db.register("_stays", stays.to_arrow())
    db.execute(
        "CREATE OR REPLACE TABLE members_written AS "
        "SELECT DISTINCT segment, customer_id FROM _stays"
    )
    db.unregister("_stays")
    return stays.height


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
                "sql": _stored_sql(seg, tz),
                "members": counts[seg.name],
                "evaluated_on": day,
            }
            if seg.name in stored:
                conn.execute(update(table).where(table.c.name == seg.name).values(**values))
            else:
                conn.execute(table.insert().values(name=seg.name, **values))
