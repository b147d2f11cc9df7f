"""The ``profiles`` table of a day: the facts projected to it, rolled forward where it can be.

A profile is a function of its customer's facts and of the day. Between two refreshes most
customers' facts stay as they were (``profiles.facts``), and of their profiles only the
columns that count days move every day (``features.COUNTERS``); the other columns that
depend on the day (``features.STEPPED``: stage, scores, age) move only as a threshold is
crossed, for a few percent of the customers on a given day. So the table made the last time
is rolled forward rather than written again:

1. the customers whose facts were recomputed, and those whose stepped columns are not what
   the day's projection gives, get their whole rows again (deleted, projected, inserted);
2. every row's day counts are computed again from its own columns, in place.

At 20,000 customers that is about 1,400 rows and four narrow columns a day instead of sixty
columns of every row into the snapshot's persistent storage.

The table is projected whole, in customer order, when a roll cannot be trusted: no table yet,
a table projected by another query or with other thresholds, or from facts other than those
the update started from (a whole rebuild of the facts, or a refresh stopped between the facts
and the profiles). Rolled rows go to the end of the table; no reader relies on its order.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import duckdb

from baoke.config import ProfileSettings
from baoke.profiles.facts import DIRTY_TABLE, FACTS_TABLE, FactsUpdate
from baoke.profiles.features import COUNTERS, STEPPED, counter_sql, day_literal, projection_sql
from baoke.profiles.snapshot import keep_day, kept_day

__all__ = ["PROFILES_STATE", "REWRITTEN", "write_profiles_table"]

PROFILES_STATE = "profiles_state"  # one row: the day the profiles are of, and what made them
_ROW = "* EXCLUDE (imported_tags), imported_tags AS tags"  # a profile row as stored
REWRITTEN = "profiles_rewritten"  # temporary: the customers whose rows the roll projects


def write_profiles_table(
    db: duckdb.DuckDBPyConnection,
    day: dt.date,
    cfg: ProfileSettings,
    facts: FactsUpdate,
    *,
    may_roll: bool = True,
) -> bool:
    """Make ``profiles`` the profiles of ``day`` from the facts just brought to it (see
    ``facts``); True if it was rolled forward rather than projected whole.

    The tags of a projected row are its imported tags; a rolled row keeps the tags it had
    (the caller sets every row's tags after). ``may_roll`` False projects whole.
    """
    made_by = _made_by(cfg)
    rolled = (
        may_roll
        and facts.since is not None
        and kept_day(db, "profiles", PROFILES_STATE, made_by) == facts.since
    )
    db.execute("BEGIN TRANSACTION")
    try:
        if rolled:
            _roll(db, day, cfg)
        else:
            db.execute(
                "CREATE OR REPLACE TABLE profiles AS SELECT "
                f"{_ROW} FROM ({projection_sql(day, cfg, FACTS_TABLE)}) ORDER BY customer_id"
            )
        keep_day(db, PROFILES_STATE, day, made_by)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return rolled


def _roll(db: duckdb.DuckDBPyConnection, day: dt.date, cfg: ProfileSettings) -> None:
    """Whole rows for the recomputed and the stepped customers, the day counts for all."""
    stepped = " OR ".join(f"p.{column} IS DISTINCT FROM d.{column}" for column in STEPPED)
    # Only the stepped columns are read from the projection: DuckDB leaves out the rest.
    db.execute(f"""
        CREATE OR REPLACE TEMP TABLE {REWRITTEN} AS
        SELECT customer_id FROM {DIRTY_TABLE}
        UNION
        SELECT p.customer_id FROM profiles p
        JOIN (SELECT customer_id, {", ".join(STEPPED)}
              FROM ({projection_sql(day, cfg, FACTS_TABLE)})) d USING (customer_id)
        WHERE {stepped}
    """)
    rewritten = f"SELECT customer_id FROM {REWRITTEN}"
    db.execute(f"DELETE FROM profiles WHERE customer_id IN ({rewritten})")
    facts = f"(SELECT * FROM {FACTS_TABLE} WHERE customer_id IN ({rewritten}))"
    db.execute(
        f"INSERT INTO profiles BY NAME SELECT {_ROW} "
        f"FROM ({projection_sql(day, cfg, facts)}) ORDER BY customer_id"
    )
    # Last, and for every row: the counts are the row's own columns against the day (the rows
    # just inserted already have them). Updating rows a second time within one transaction
    # is many times slower in DuckDB than the first time, so nothing updates them before.
    counts = ", ".join(f"{name} = {counter_sql(name, day)}" for name in COUNTERS)
    db.execute(f"UPDATE profiles SET as_of = {day_literal(day)}, {counts}")


def _made_by(cfg: ProfileSettings) -> str:
    """What the profiles depend on besides the facts: the projection and its thresholds."""
    projection = projection_sql(dt.date(2000, 1, 1), cfg, FACTS_TABLE)
    return hashlib.sha256(projection.encode()).hexdigest()
