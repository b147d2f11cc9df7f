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
from baoke.profiles.snapshot import CHANGED_KEYS, keep_day, kept_day, scalar

FACTS_TABLE = "profile_facts"
DIRTY_TABLE = "facts_dirty"  # temporary: the customers the last update recomputed
_STATE = "profile_facts_state"  # one row: the day the facts are as of, and what made them


@dataclass(frozen=True)
class FactsUpdate:
    """What a facts update did: the whole table, or this many customers' rows (those in
    ``facts_dirty``) of the facts as of ``since``."""

    whole: bool
    customers: int
    since: dt.date | None = None


def update_facts(
    db: duckdb.DuckDBPyConnection, day: dt.date, cfg: ProfileSettings, zone: ZoneInfo
) -> FactsUpdate:
    """Bring ``profile_facts`` to ``day``: the changed customers' rows, or the whole table."""
    made_by = _made_by(cfg, zone)
    since = kept_day(db, FACTS_TABLE, _STATE, made_by)
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
            recomputed = _recompute(db, since, day, cfg, zone)
            done = FactsUpdate(whole=False, customers=recomputed, since=since)
        keep_day(db, _STATE, day, made_by)
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
        CREATE OR REPLACE TEMP TABLE {DIRTY_TABLE} AS
        SELECT DISTINCT customer_id FROM (
            SELECT customer_id FROM {CHANGED_KEYS}
            UNION ALL
            -- A car's orders and readings belong to whoever owns it now.
            SELECT v.customer_id FROM {CHANGED_KEYS} k JOIN vehicles v ON v.id = k.vehicle_id
            {crossing}
        ) WHERE customer_id IS NOT NULL
    """)
    dirty = scalar(db, f"SELECT count(*) FROM {DIRTY_TABLE}")
    if dirty:
        db.execute(
            f"DELETE FROM {FACTS_TABLE} "
            f"WHERE customer_id IN (SELECT customer_id FROM {DIRTY_TABLE})"
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


def _everything_changed(db: duckdb.DuckDBPyConnection) -> bool:
    return scalar(db, f"SELECT count(*) FROM {CHANGED_KEYS} WHERE everything") > 0
