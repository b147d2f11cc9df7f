"""The facts table: each customer's aggregated records, recomputed only where they changed.

``profile_facts`` holds one row per customer of ``features.facts_sql`` as of the last refresh.
A refresh recomputes the rows of the customers whose records the snapshot replaced since
(``changed_keys``, which the snapshot fills) and of those with a record crossing a window's
edge between the two days (``features.crossing_sql``); every other row is still right. The
profiles of the day are then one projection over the whole table. On an ordinary day a few
percent of the customers are recomputed, so the aggregates over years of orders and months of
events are paid for those only.

The table is rebuilt whole when that cannot be trusted: the first time, after a cold
snapshot (the snapshot then records that everything changed), when the thresholds, the time
zone or the query itself changed, or for a day before the one the facts are as of.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import duckdb

from baoke.config import ProfileSettings
from baoke.profiles import features
from baoke.profiles.snapshot import CHANGED_KEYS, first_row, scalar

FACTS_TABLE = "profile_facts"
_STATE = "profile_facts_state"  # one row: the day the facts are as of, and what made them


@dataclass(frozen=True)
class FactsUpdate:
    """What a facts update did: the whole table, or this many customers' rows."""

    whole: bool
    customers: int


def update_facts(
    db: duckdb.DuckDBPyConnection, day: dt.date, cfg: ProfileSettings, zone: ZoneInfo
) -> FactsUpdate:
    """Bring ``profile_facts`` to ``day``: the changed customers' rows, or the whole table."""
    made_by = _made_by(cfg, zone)
    since = _facts_day(db, made_by)
    db.execute("BEGIN TRANSACTION")
    try:
        if since is None or since > day or _everything_changed(db):
            db.execute(
                f"CREATE OR REPLACE TABLE {FACTS_TABLE} AS "
                f"{_stored(features.facts_sql(day, cfg, zone, dirty=False))}"
            )
            done = FactsUpdate(
                whole=True, customers=scalar(db, f"SELECT count(*) FROM {FACTS_TABLE}")
            )
        else:
            done = FactsUpdate(whole=False, customers=_recompute(db, since, day, cfg, zone))
        db.execute(
            f"CREATE OR REPLACE TABLE {_STATE} AS SELECT ?::DATE AS as_of, ?::VARCHAR AS made_by",
            [day, made_by],
        )
        db.execute(f"DELETE FROM {CHANGED_KEYS}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return done


def _recompute(
    db: duckdb.DuckDBPyConnection,
    since: dt.date,
    day: dt.date,
    cfg: ProfileSettings,
    zone: ZoneInfo,
) -> int:
    """Replace the rows of the customers whose facts as of ``since`` are stale on ``day``."""
    crossing = f"UNION ALL {features.crossing_sql(since, day, zone)}" if since < day else ""
    db.execute(f"""
        CREATE OR REPLACE TEMP TABLE facts_dirty AS
        SELECT DISTINCT customer_id FROM (
            SELECT customer_id FROM {CHANGED_KEYS}
            UNION ALL
            -- A car's orders and readings belong to whoever owns it now.
            SELECT v.customer_id FROM {CHANGED_KEYS} k JOIN vehicles v ON v.id = k.vehicle_id
            {crossing}
        ) WHERE customer_id IS NOT NULL
    """)
    dirty = scalar(db, "SELECT count(*) FROM facts_dirty")
    if dirty:
        db.execute(
            f"DELETE FROM {FACTS_TABLE} WHERE customer_id IN (SELECT customer_id FROM facts_dirty)"
        )
        facts = _stored(features.facts_sql(day, cfg, zone, dirty=True))
        db.execute(f"INSERT INTO {FACTS_TABLE} {facts}")
    return dirty


def _stored(facts: str) -> str:
    """The facts as kept: the imported tags parsed once here, not for everyone every day."""
    return f"""
        SELECT * REPLACE (
            CASE WHEN imported_tags IS NULL THEN []::VARCHAR[]
                 ELSE list_sort(list_distinct(
                     COALESCE(TRY_CAST(json(imported_tags) AS VARCHAR[]), []))) END
            AS imported_tags)
        FROM ({facts})
    """


def _made_by(cfg: ProfileSettings, zone: ZoneInfo) -> str:
    """What the facts depend on besides the records: the query, the thresholds, the zone."""
    facts = _stored(features.facts_sql(dt.date(2000, 1, 1), cfg, zone, dirty=False))
    text = f"{facts}|{zone.key}"
    return hashlib.sha256(text.encode()).hexdigest()


def _facts_day(db: duckdb.DuckDBPyConnection, made_by: str) -> dt.date | None:
    """The day the stored facts are as of, if they were made the way they would be now."""
    tables = {
        str(row[0])
        for row in db.execute(
            "SELECT table_name FROM duckdb_tables() WHERE table_name IN (?, ?)",
            [FACTS_TABLE, _STATE],
        ).fetchall()
    }
    if tables != {FACTS_TABLE, _STATE}:
        return None
    row = first_row(db.execute(f"SELECT as_of, made_by FROM {_STATE}").fetchall())
    if row is None or row[1] != made_by:
        return None
    day: dt.date = row[0]
    return day


def _everything_changed(db: duckdb.DuckDBPyConnection) -> bool:
    return scalar(db, f"SELECT count(*) FROM {CHANGED_KEYS} WHERE everything") > 0
