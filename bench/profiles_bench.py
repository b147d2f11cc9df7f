"""Profile engine: cold refresh, steady-state daily refresh, counting a new rule, and the same
features as plain SQL inside PostgreSQL, side by side.

    python bench/profiles_bench.py --scale 1000000     # generates + imports once, then cached
    python bench/profiles_bench.py --scale 100000 --json

The synthetic group (``--scale`` customers, about 5 service orders and 20 events each) is
generated and imported into an SQLite store under ``bench/out/`` the first time and reused
afterwards (``--fresh`` starts over). Each refresh runs as ``baoke profiles refresh`` in a child
process so its wall time and peak memory (VmHWM) are its own.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
from sqlalchemy import create_engine, func, select, text

from baoke.config import Settings
from baoke.ingest.pipeline import find_kind_files, import_file
from baoke.ingest.store_io import bulk_insert
from baoke.profiles.features import profile_sql
from baoke.profiles.snapshot import TABLES, first_row
from baoke.segments.rules import parse_rules, segment_query
from baoke.simulate.generator import DEFAULT_AS_OF, GenerateConfig, generate
from baoke.store import models as m
from baoke.store.db import ensure_schema, make_engine
from child import run_baoke

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
NEW_RULE = """
name: suv_browsers_due
label: 近30天多次看SUV且保养将到期
description: a rule nobody has evaluated before
rule:
  all:
    - count:
        table: events
        where: {event_type: model_view}
        within_last: 30d
      ">=": 3
    - field: days_to_maintenance
      between: [-30, 60]
"""


def prepare(
    workdir: Path, scale: int, seed: int, fresh: bool, database_url: str | None = None
) -> Settings:
    """Generate and import the group once; later runs reuse the store.

    ``database_url`` puts the store elsewhere than the SQLite file in ``workdir`` (a
    PostgreSQL database must be empty the first time, or be the store prepared before).
    """
    ready = workdir / "ready.json"
    if fresh and workdir.exists():
        shutil.rmtree(workdir)
    settings = Settings(data_dir=workdir / "data", database_url=database_url)
    if ready.exists():
        return settings
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    generate(GenerateConfig(customers=scale, seed=seed), workdir / "gen")
    engine = make_engine(settings.url)
    ensure_schema(engine)
    for kind, path in find_kind_files(workdir / "gen"):
        import_file(engine, kind, path, tz=settings.zone)
        print(f"  imported {kind}", file=sys.stderr)
    # The history was imported 'before': stamp it a day back, as a store in steady state is.
    with engine.begin() as conn:
        for table in TABLES:
            if any(name == "updated_at" for name, _ in table.columns):
                day_back = (
                    "datetime(updated_at, '-1 day')"
                    if conn.dialect.name == "sqlite"
                    else "updated_at - interval '1 day'"
                )
                conn.execute(text(f"UPDATE {table.source} SET updated_at = {day_back}"))
    shutil.rmtree(workdir / "gen")
    ready.write_text(json.dumps({"seconds": time.perf_counter() - started}), encoding="utf-8")
    return settings


def add_one_day(settings: Settings, day: dt.date, scale: int, seed: int) -> dict[str, int]:
    """A day of new records at this scale: service orders, events, consent withdrawals."""
    rng = np.random.default_rng(seed + 1)
    engine = make_engine(settings.url)
    orders = max(10, scale * 5 // 3650)
    events = max(10, scale * 20 // 730)
    with engine.begin() as conn:
        vehicles = pl.DataFrame(
            conn.execute(
                select(m.Vehicle.id, m.Vehicle.customer_id, m.Vehicle.dealer_id).where(
                    m.Vehicle.customer_id.is_not(None)
                )
            ).all(),
            schema=["vehicle_id", "customer_id", "dealer_id"],
            orient="row",
        )
        top = conn.execute(select(func.max(m.BehaviourEvent.id))).scalar_one()
        pick = vehicles[rng.choice(vehicles.height, orders, replace=False)]
        bulk_insert(
            conn,
            m.ServiceOrder.__table__,
            pick.with_columns(
                pl.format(
                    "DAY-{}-{}-{}",
                    pl.lit(day.isoformat()),
                    pl.lit(uuid.uuid4().hex[:8]),
                    pl.int_range(orders),
                ).alias("order_no"),
                pl.lit("maintenance").alias("order_type"),
                pl.lit(day).alias("settled_on"),
                pl.Series("amount_fen", rng.integers(40_000, 150_000, orders)),
                pl.Series("mileage_km", rng.integers(5_000, 150_000, orders)),
            ),
        )
        who = vehicles["customer_id"].to_numpy()[rng.integers(0, vehicles.height, events)]
        bulk_insert(
            conn,
            m.BehaviourEvent.__table__,
            pl.DataFrame(
                {
                    "event_key": [f"day-{day}-{top}-{i}" for i in range(events)],
                    "customer_id": who,
                    "occurred_at": [dt.datetime(day.year, day.month, day.day, 2, tzinfo=dt.UTC)]
                    * events,
                    "event_type": "model_view",
                    "source": "app",
                    "target": "岳山",
                }
            ),
        )
    engine.dispose()
    return {"service_orders": orders, "events": events}


def count_new_rule(settings: Settings) -> float:
    """Parse, compile and count a rule never seen before, on the refreshed profiles."""
    db = duckdb.connect(str(settings.data_dir / "analytics.duckdb"), read_only=True)
    try:
        started = time.perf_counter()
        (seg,) = parse_rules(NEW_RULE)
        as_of = first_row(db.execute("SELECT max(as_of) FROM profiles").fetchall())
        assert as_of is not None
        query = segment_query(seg, as_of=str(as_of[0]), tz=settings.timezone)
        db.execute(f"SELECT count(*) FROM ({query})").fetchall()
        return time.perf_counter() - started
    finally:
        db.close()


def postgres_baseline(settings: Settings, day: dt.date) -> dict[str, float]:
    """Copy the snapshot tables into PostgreSQL and run the same features as plain SQL there."""
    import sqlglot

    base = os.environ.get("BAOKE_TEST_DATABASE_URL", PG_DEFAULT)
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        db = duckdb.connect(str(settings.data_dir / "analytics.duckdb"), read_only=True)
        import adbc_driver_postgresql.dbapi as pg

        uri = base.replace("postgresql+psycopg", "postgresql")
        started = time.perf_counter()
        with pg.connect(uri) as conn:
            for table in TABLES:
                arrow = db.sql(f"SELECT * FROM {table.name}").to_arrow_table()
                with conn.cursor() as cursor:
                    cursor.adbc_ingest(table.name, arrow, mode="create", db_schema_name=schema)
            conn.commit()
        loaded = time.perf_counter() - started
        db.close()
        sql = sqlglot.transpile(
            profile_sql(day, settings.profiles, settings.zone), read="duckdb", write="postgres"
        )[0]
        # PostgreSQL has no arg_max: the usual spelling is the first of an ordered array_agg.
        sql = re.sub(r"ARG_MAX\(([^,]+), ([^)]+)\)", r"(ARRAY_AGG(\1 ORDER BY \2 DESC))[1]", sql)
        # … and rounds only numerics to a number of places.
        sql = sql.replace("ROUND(km_per_day, 2)", "ROUND(CAST(km_per_day AS NUMERIC), 2)")
        with admin.begin() as conn:
            conn.execute(text(f'SET LOCAL search_path TO "{schema}"'))
            conn.execute(text("ANALYZE"))
            started = time.perf_counter()
            raw = conn.connection.driver_connection
            assert raw is not None
            with raw.cursor() as cursor:  # no parameters: '%' in LIKE stays as written
                cursor.execute(f"CREATE TABLE profiles_pg AS {sql}")
            features = time.perf_counter() - started
        return {"load_seconds": loaded, "features_seconds": features}
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=100_000, help="customers")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--fresh", action="store_true", help="generate and import again")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL baseline")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    workdir = args.workdir or Path(__file__).parent / "out" / f"profiles-{args.scale}-{args.seed}"
    settings = prepare(workdir, args.scale, args.seed, args.fresh)
    env = {"BAOKE_DATA_DIR": str(settings.data_dir)}
    day = DEFAULT_AS_OF
    (settings.data_dir / "analytics.duckdb").unlink(missing_ok=True)
    cold = run_baoke(["profiles", "refresh", "--as-of", day.isoformat(), "--json"], env)
    added = add_one_day(settings, day + dt.timedelta(days=1), args.scale, args.seed)
    next_day = (day + dt.timedelta(days=1)).isoformat()
    steady = run_baoke(["profiles", "refresh", "--as-of", next_day, "--json"], env)
    rule_seconds = count_new_rule(settings)
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, DuckDB {duckdb.__version__}",
        "scale": args.scale,
        "rows": json.loads(cold.output)["snapshot"]["rows_read"],
        "cold": {
            "seconds": round(cold.seconds, 2),
            "peak_mb": round(cold.peak_mb),
            "phases": json.loads(cold.output)["timings"],
        },
        "steady": {
            "seconds": round(steady.seconds, 2),
            "peak_mb": round(steady.peak_mb),
            "new_records": added,
            "phases": json.loads(steady.output)["timings"],
        },
        "new_rule_count_seconds": round(rule_seconds, 3),
    }
    if not args.no_postgres:
        baseline = postgres_baseline(settings, day + dt.timedelta(days=1))
        results["postgres"] = {k: round(v, 2) for k, v in baseline.items()}
        results["postgres_vs_steady"] = round(baseline["features_seconds"] / steady.seconds, 1)
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
        return
    print(
        f"machine: {results['machine']}; {args.scale:,} customers; rows read cold: "
        + ", ".join(f"{k} {v:,}" for k, v in results["rows"].items())
    )
    for label in ("cold", "steady"):
        r = results[label]
        phases = ", ".join(f"{k} {v:.1f}s" for k, v in r["phases"].items())
        print(f"{label:<7} refresh {r['seconds']:>6.1f}s  peak {r['peak_mb']:>6,} MB  ({phases})")
    print(f"new rule counted in {results['new_rule_count_seconds']:.3f}s")
    if "postgres" in results:
        pg = results["postgres"]
        print(
            f"PostgreSQL plain SQL features {pg['features_seconds']:.1f}s (load "
            f"{pg['load_seconds']:.1f}s): {results['postgres_vs_steady']}x the steady refresh"
        )


if __name__ == "__main__":
    main()
