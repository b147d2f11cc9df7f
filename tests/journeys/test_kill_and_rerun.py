"""A daily run killed half-way (SIGKILL, mid-transaction), then run again, yields exactly the
candidates of an uninterrupted run, each once."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from sqlalchemy import Engine, select
from tests.journeys.world import World

from baoke.store import models as m

D = dt.date(2026, 11, 2)

# The child runs the real daily run, writing its waves a few decisions at a time, and the
# second write of touches kills the process with SIGKILL right after inserting them, before
# it commits: the harshest moment.
CHILD = textwrap.dedent(
    """
    import datetime as dt, os, signal, sys
    import baoke.journeys.engine as engine
    from baoke.config import Settings
    from baoke.journeys.run import run_day
    from baoke.store.db import make_engine

    real_insert = engine.bulk_insert
    calls = []

    def dying_insert(conn, table, frame):
        real_insert(conn, table, frame)
        if table.name == "touches":
            calls.append(1)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGKILL)

    engine.bulk_insert = dying_insert
    # Write every few decisions, so that part of the advance is committed before the kill.
    engine._FLUSH_DECISIONS = 3
    settings = Settings(data_dir=sys.argv[1], database_url=sys.argv[2])
    run_day(settings, make_engine(settings.url), dt.date.fromisoformat(sys.argv[3]))
    """
)


def _populate(world: World) -> list[int]:
    """Owners who enter several playbooks on D: at risk, new deliveries, high tier."""
    people = []
    for i in range(4):
        people.append(world.owner(name=f"张{i}伟", visits=((D - dt.timedelta(days=100), 900),)))
    for i in range(3):
        cid = world.owner(name=f"李{i}娜", title="女士", delivered=D)
        people.append(cid)
    for i in range(3):
        visits = tuple((D - dt.timedelta(days=30 * k + 5), 2500) for k in range(3))
        people.append(world.owner(name=f"王{i}强", visits=visits))
    return people


def _candidates(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        touches = conn.execute(
            select(m.Touch.customer_id, m.Touch.playbook, m.Touch.step, m.Touch.scheduled_at)
        ).all()
        tasks = conn.execute(
            select(m.Task.customer_id, m.Task.playbook, m.Task.step, m.Task.due_at)
        ).all()
    return sorted(("touch", *t) for t in touches) + sorted(("task", *t) for t in tasks)


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def test_killed_run_then_rerun_equals_a_clean_run(
    engine: Engine, twin_engine: Engine, tmp_path: Path
) -> None:
    clean = World(twin_engine, tmp_path / "clean")
    _populate(clean)
    clean.run(D)
    killed = World(engine, tmp_path / "killed")
    _populate(killed)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(killed.data_dir), _url(engine), D.isoformat()],
        capture_output=True,
        text=True,
        env={**os.environ},
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    half = _candidates(engine)
    killed.run(D)
    after = _candidates(engine)
    assert len(after) > len(half) > 0
    assert after == _candidates(twin_engine)  # the same candidates, each once
    # The run is logged as unfinished, then as done.
    with engine.connect() as conn:
        statuses = conn.execute(select(m.JourneyRun.status).order_by(m.JourneyRun.id)).all()
    assert [s for (s,) in statuses] == ["running", "done"]
