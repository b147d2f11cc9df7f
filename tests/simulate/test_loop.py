"""Simulated days through the real engine: what goes out comes back the way real outcomes do."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from sqlalchemy import Engine, text

from baoke.config import Settings
from baoke.simulate.generator import GenerateConfig, generate
from baoke.simulate.model import load_model
from baoke.simulate.report import print_report
from baoke.simulate.session import GroupRun, import_group, simulate_group
from baoke.store.db import ensure_schema, make_engine

DAYS = 8


def _run(engine: Engine, tmp_path: Path, seed: int = 5) -> GroupRun:
    settings = Settings(
        data_dir=tmp_path / "data", database_url=engine.url.render_as_string(hide_password=False)
    )
    generated = generate(GenerateConfig(customers=400, seed=11), tmp_path / "files")
    run = import_group(settings, tmp_path / "files", generated.config.today)
    simulate_group(run, load_model(), generated.config.today, DAYS, seed)
    return run


@pytest.fixture
def ran(engine: Engine, tmp_path: Path) -> GroupRun:
    return _run(engine, tmp_path)


def test_outcomes_come_back_as_receipts_events_and_imports(ran: GroupRun) -> None:
    assert ran.simulation is not None
    ledger = ran.simulation.ledger
    fed = ledger.fed
    assert fed.rejected == [] and fed.unmatched_receipts == 0 and fed.quarantined == {}
    touches = ledger.frame("touches")
    assert touches.height > 100
    zone = ran.settings.zone
    last = ran.simulation.start + dt.timedelta(days=DAYS - 1)
    last_day = dt.datetime.combine(last, dt.time(0), zone).astimezone(dt.UTC)
    with ran.engine.connect() as conn:
        statuses = dict(
            conn.execute(
                text("SELECT status, count(*) FROM touches WHERE sent_at IS NOT NULL GROUP BY 1")
            ).all()
        )
        # Every simulated event but the last day's has been processed by a daily run.
        waiting = conn.execute(
            text(
                "SELECT count(*) FROM events WHERE event_key LIKE 'sim:%' AND processed_at IS NULL "
                "AND occurred_at < :day_before_last"
            ),
            {"day_before_last": last_day},
        ).scalar_one()
        orders = conn.execute(
            text("SELECT count(*) FROM service_orders WHERE order_no LIKE 'SIM%'")
        ).scalar_one()
        visit_events = conn.execute(
            text("SELECT count(*) FROM events WHERE type = 'service_visit'")
        ).scalar_one()
    # Receipts moved the sent touches on: delivered, read, clicked or replied, or failed.
    assert statuses.get("delivered", 0) > 0 and statuses.get("sent", 0) < touches.height
    assert statuses.get("failed", 0) > 0
    assert waiting == 0
    visits = ledger.frame("visits")
    assert orders == visits.height > 0  # every visit arrived as a DMS service order
    assert visit_events >= 1


def test_the_report_prints_and_adds_up(ran: GroupRun) -> None:
    assert ran.measures is not None and ran.simulation is not None
    out = io.StringIO()
    print_report(ran.measures, Console(file=out, width=160), "test")
    text_out = out.getvalue()
    for part in (
        "service visit rate",
        "win-back rate",
        "By value tier",
        "By channel",
        "By playbook",
    ):
        assert part in text_out
    head = ran.measures.headline()
    assert head["visits"] == ran.simulation.ledger.frame("visits").height
    assert head["cost_yuan"] > 0
    assert 0 <= head["visit_rate"] <= 1


def test_same_seed_same_run(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        store = make_engine(f"sqlite:///{tmp_path / name}.db")
        ensure_schema(store)
        runs.append(_run(store, tmp_path / name))
    first, second = runs
    assert first.simulation is not None
    assert second.simulation is not None
    a, b = first.simulation.ledger, second.simulation.ledger
    for name in ("touches", "visits", "reactions"):
        left, right = a.frame(name), b.frame(name)
        assert left.height == right.height
        if left.height:
            assert np.array_equal(left["position"].to_numpy(), right["position"].to_numpy())
