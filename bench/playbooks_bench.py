"""Journey engine: advance one day for a large group with many journeys under way.

    python bench/playbooks_bench.py --scale 1000000 --journeys 300000
    python bench/playbooks_bench.py --scale 100000 --journeys 30000 --json

The synthetic group (``--scale`` customers) is generated, imported and profiled once under
``bench/out/`` and reused afterwards (``--fresh`` starts over). Each measurement then:

1. clears the journey tables and places ``--journeys`` journeys on the built-in playbooks,
   on customers each could belong to, spread over their steps, with their next look spread
   over the next three and a half days (two sevenths are due on the day: twice the share of
   a store where weekly cadences dominate);
2. runs ``baoke run --date D --skip-profiles`` in a child process (wall time, peak memory and
   the run's own phase timings): events, daily checks, enrolment from the day's segment
   entries, record dates and festivals, and the advance;
3. runs the same day again, which must create nothing new (idempotency at scale).

The profile refresh for the bench day is done before, untimed: the target excludes it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
from sqlalchemy import Engine, func, select, text

from baoke.config import Settings
from baoke.ingest.store_io import allocate_ids, bulk_insert
from baoke.journeys.catalog import load_catalog
from baoke.playbooks.definitions import Playbook, SegmentTrigger
from baoke.profiles.engine import refresh_profiles
from baoke.simulate.generator import DEFAULT_AS_OF
from baoke.store import models as m
from baoke.store.db import make_engine
from child import run_baoke
from profiles_bench import prepare

_JOURNEY_TABLES = ("journey_decisions", "touch_status_history", "touches", "tasks", "journeys")


def profiled_day(settings: Settings, engine: Engine) -> dt.date:
    """Refresh the profiles for the generator's day and the day after (untimed, once)."""
    day = DEFAULT_AS_OF + dt.timedelta(days=1)
    marker = settings.data_dir / f"profiled-{day}.json"
    if not marker.exists():
        for as_of in (DEFAULT_AS_OF, day):
            started = time.perf_counter()
            refresh_profiles(settings, engine, as_of)
            print(f"  profiles {as_of}: {time.perf_counter() - started:.1f}s", file=sys.stderr)
        marker.write_text("{}", encoding="utf-8")
    return day


def clear_journeys(engine: Engine) -> None:
    """Start every measurement from the same state."""
    with engine.begin() as conn:
        for name in (*_JOURNEY_TABLES, "events", "journey_runs"):
            conn.execute(text(f"DELETE FROM {name}"))


def _weights(books: list[Playbook]) -> dict[str, float]:
    """How journeys spread over playbooks: cadences dominate a mature store."""
    base = {
        "maintenance_cadence_high": 0.12,
        "maintenance_cadence_mid": 0.25,
        "maintenance_cadence_low": 0.25,
        "churn_winback": 0.12,
        "new_owner_activation": 0.08,
        "complaint_recovery": 0.02,
        "lost_lead_reactivation": 0.06,
        "upgrade_replacement": 0.06,
        "service_calendar": 0.04,
    }
    names = {b.name for b in books}
    kept = {k: v for k, v in base.items() if k in names}
    total = sum(kept.values())
    return {k: v / total for k, v in kept.items()}


def _eligible(settings: Settings, book: Playbook) -> np.ndarray:
    """(customer, dealer) pairs a journey of ``book`` could really belong to today.

    Members of the trigger segment for segment-triggered playbooks; lost leads for the lost-lead
    playbook; otherwise owners who are not lost (a lost owner would leave at the first daily
    check, which would measure the bench, not a steady store).
    """
    trigger = book.triggers[0]
    # A lost customer is never enrolled where the playbook exits on lost.
    alive = " AND p.lifecycle_stage <> 'lost'" if "lost" in book.exit_on else ""
    if isinstance(trigger, SegmentTrigger):
        sql = (
            "SELECT p.customer_id, p.home_dealer_id FROM profiles p JOIN segment_members s "
            f"ON s.customer_id = p.customer_id WHERE s.segment = '{trigger.segment}'{alive}"
        )
    elif book.name == "lost_lead_reactivation":
        sql = "SELECT customer_id, home_dealer_id FROM profiles WHERE lead_status = 'lost'"
    else:
        sql = (
            "SELECT customer_id, home_dealer_id FROM profiles "
            "WHERE is_owner AND lifecycle_stage <> 'lost'"
        )
    db = duckdb.connect(str(settings.data_dir / "analytics.duckdb"), read_only=True)
    try:
        rows = db.sql(sql).fetchall()
    finally:
        db.close()
    return np.array([(c, d if d is not None else 0) for c, d in rows], dtype=np.int64)


def place_journeys(engine: Engine, settings: Settings, day: dt.date, count: int, seed: int) -> int:
    """Insert about ``count`` active journeys on the built-in playbooks (one bulk insert).

    Returns how many are due on ``day``.
    """
    rng = np.random.default_rng(seed)
    with engine.begin() as conn:
        catalog = load_catalog(conn, settings)
    books = {b.name: b for b in catalog.enabled()}
    weights = _weights(list(books.values()))
    frames = []
    start = dt.datetime.combine(day, dt.time(0), settings.zone).astimezone(dt.UTC)
    for name, share in weights.items():
        book = books[name]
        pool = _eligible(settings, book)
        n = min(len(pool), round(count * share))
        # One journey per (customer, playbook): customers drawn without replacement.
        who = pool[rng.choice(len(pool), n, replace=False)]
        steps = [s.id for s in book.steps]
        trigger = book.triggers[0]
        frames.append(
            pl.DataFrame(
                {
                    "customer_id": who[:, 0],
                    "dealer_id": pl.Series(who[:, 1]).replace(0, None),
                    "playbook": book.name,
                    "version": book.version,
                    "trigger": trigger.id,
                    "trigger_ref": "bench",
                    "step": np.array(steps)[rng.integers(0, len(steps), n)],
                    "since_h": rng.integers(24, 24 * 30, n),
                    # Next looks spread over the coming 3.5 days: two sevenths fall on the
                    # day (twice a weekly rhythm's share), none overdue (yesterday's run ran).
                    "wake_h": rng.uniform(0, 24 * 3.5, n),
                }
            )
        )
    placed = pl.concat(frames)
    with engine.begin() as conn:
        ids = allocate_ids(conn, m.Journey.__table__, placed.height)
    placed = placed.with_columns(
        ids.alias("id"),
        pl.lit("active").alias("status"),
        (pl.lit(start) - pl.duration(hours=pl.col("since_h"))).alias("step_since"),
        (pl.lit(start) + pl.duration(seconds=(pl.col("wake_h") * 3600).cast(pl.Int64))).alias(
            "wake_at"
        ),
        pl.lit(1).alias("seq"),
        pl.lit(False).alias("goal_met"),
    )
    placed = placed.with_columns(
        pl.format("{}:{}:bench:{}", "playbook", "customer_id", "id").alias("enrolment_key"),
        pl.col("step_since").alias("enrolled_at"),
        pl.col("step_since").dt.replace_time_zone("UTC"),
        pl.col("wake_at").dt.replace_time_zone("UTC"),
    ).with_columns(pl.col("enrolled_at").dt.replace_time_zone("UTC"))
    with engine.begin() as conn:
        bulk_insert(
            conn,
            m.Journey.__table__,
            placed.drop("since_h", "wake_h"),
        )
    due = placed.filter(pl.col("wake_at") < start + dt.timedelta(days=1)).height
    return due


def measure(settings: Settings, day: dt.date) -> dict[str, Any]:
    """``baoke run --date day --skip-profiles --json`` in a child process."""
    env = {"BAOKE_DATA_DIR": str(settings.data_dir)}
    if settings.database_url:
        env["BAOKE_DATABASE_URL"] = settings.database_url
    out = run_baoke(["run", "--date", day.isoformat(), "--skip-profiles", "--json"], env)
    result = json.loads(out.output)
    return {
        "seconds": round(out.seconds, 2),
        "peak_mb": round(out.peak_mb),
        "timings": result["timings"],
        "evaluations": result["advance"]["evaluations"],
        "waves": result["advance"]["waves"],
        "touches": result["advance"]["touches"],
        "tasks": result["advance"]["tasks"],
        "enrolled": result["enrolment"]["enrolled"] + result["enrolment"]["holdout"],
        "checks": result["checks"],
    }


def counts(engine: Engine) -> dict[str, int]:
    """Rows in the journey tables."""
    with engine.connect() as conn:
        return {
            name: int(conn.execute(select(func.count()).select_from(text(name))).scalar_one())
            for name in ("journeys", "journey_decisions", "touches", "tasks")
        }


def main() -> None:
    """Run the benchmark and print the figures (a table, or JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=100_000, help="customers")
    parser.add_argument("--journeys", type=int, default=None, help="active journeys (30%%)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--fresh", action="store_true", help="regenerate the store")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--database-url", default=None, help="store URL (default: SQLite in the workdir)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    journeys = args.journeys if args.journeys is not None else args.scale * 3 // 10
    backend = "pg-" if args.database_url and args.database_url.startswith("postgres") else ""
    name = f"playbooks-{backend}{args.scale}-{args.seed}"
    workdir = args.workdir or Path(__file__).parent / "out" / name
    settings = prepare(workdir, args.scale, args.seed, args.fresh, args.database_url)
    engine = make_engine(settings.url)
    day = profiled_day(settings, engine)
    clear_journeys(engine)
    due = place_journeys(engine, settings, day, journeys, args.seed)
    first = measure(settings, day)
    after_first = counts(engine)
    second = measure(settings, day)
    after_second = counts(engine)
    report = {
        "scale": args.scale,
        "journeys": journeys,
        "due_on_the_day": due,
        "first_run": first,
        "rerun": second,
        "rows_after_first": after_first,
        "new_rows_on_rerun": {k: after_second[k] - after_first[k] for k in after_first},
        "machine": f"{platform.machine()}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}",
    }
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return
    print(f"{args.scale:,} customers, {journeys:,} active journeys, {due:,} due on {day}")
    for label, run in (("advance one day", first), ("same day again", second)):
        print(
            f"  {label}: {run['seconds']:.1f}s wall, peak {run['peak_mb']:,} MB; "
            f"{run['evaluations']:,} evaluations in {run['waves']} waves, "
            f"{run['touches']:,} touches, {run['tasks']:,} tasks, {run['enrolled']:,} enrolled"
        )
        print("    " + ", ".join(f"{k} {v:.2f}s" for k, v in run["timings"].items()))
    print(f"  new rows on the rerun: {report['new_rows_on_rerun']}")


if __name__ == "__main__":
    main()
