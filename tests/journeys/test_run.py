"""The daily run on a snapshot kept open across days decides exactly as runs that open their own."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
from sqlalchemy import Engine

from baoke.config import Settings
from baoke.ingest.store_io import query_frame
from baoke.journeys.run import RunResult, day_end, run_day
from baoke.profiles.engine import snapshot_path
from baoke.profiles.snapshot import Snapshot
from baoke.simulate.generator import GenerateConfig, generate
from baoke.simulate.session import GroupRun, import_group
from baoke.store.db import ensure_schema, make_engine

DAYS = 3


def _group(tmp_path: Path, name: str, files: Path, today: dt.date) -> GroupRun:
    store = make_engine(f"sqlite:///{tmp_path / name}.db")
    ensure_schema(store)
    settings = Settings(
        data_dir=tmp_path / name, database_url=store.url.render_as_string(hide_password=False)
    )
    return import_group(settings, files, today)


def _decided(result: RunResult) -> dict[str, object]:
    data = result.as_dict()
    data["plan"].pop("timings")
    return {k: data[k] for k in ("events_derived", "events", "checks", "enrolment", "plan")}


def _touches(engine: Engine) -> pl.DataFrame:
    with engine.connect() as conn:
        return query_frame(
            conn,
            "SELECT customer_id, playbook, channel, status, scheduled_at FROM touches "
            "ORDER BY customer_id, playbook, channel, scheduled_at",
            [],
            {
                "customer_id": pl.Int64(),
                "playbook": pl.String(),
                "channel": pl.String(),
                "status": pl.String(),
                "scheduled_at": pl.String(),
            },
        )


def test_days_on_one_open_snapshot_decide_as_days_that_open_their_own(tmp_path: Path) -> None:
    generated = generate(GenerateConfig(customers=300, seed=3), tmp_path / "files")
    today = generated.config.today
    kept = _group(tmp_path, "kept", tmp_path / "files", today)
    fresh = _group(tmp_path, "fresh", tmp_path / "files", today)
    snapshot = Snapshot(snapshot_path(kept.settings), checkpoint_threshold="64MB")
    try:
        for offset in range(DAYS):
            day = today + dt.timedelta(days=offset)
            end = day_end(day, kept.settings.zone)
            on_open = run_day(kept.settings, kept.engine, day, until=end, snapshot=snapshot)
            own = run_day(fresh.settings, fresh.engine, day, until=end)
            assert on_open.profiles_refreshed and own.profiles_refreshed
            assert _decided(on_open) == _decided(own)
            # The snapshot stays open and usable between the days.
            assert snapshot.db.execute("SELECT count(*) FROM profiles").fetchall()[0][0] > 0
    finally:
        snapshot.close()
    planned = _touches(kept.engine)
    assert planned.height > 0
    assert planned.equals(_touches(fresh.engine))
