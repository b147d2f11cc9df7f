"""Phone touches become the staff's call tasks (provider ``tasks``), and ``baoke tasks``.

A touch on channel ``phone`` goes through the outbox like any message; the ``tasks`` provider
turns it into exactly one call task for the customer's dealer, with the rendered call script,
due within its SLA. Sending it again (a dispatcher that died before it settled the row) or
reconciling a row in doubt finds the task instead of making another. ``baoke tasks list``
shows the tasks with masked mobiles and ``baoke tasks log`` records a call's outcome.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from itertools import count
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import Engine, select, text, update
from tests.journeys.world import World, local
from typer.testing import CliRunner

from baoke import cli
from baoke.channels.dispatcher import Dispatcher, DispatchResult
from baoke.channels.settings import ChannelSettings
from baoke.config import Settings
from baoke.errors import InputError
from baoke.journeys.catalog import load_catalog
from baoke.policy.arbiter import holdout_share
from baoke.store import models as m
from baoke.store.models import table

D = dt.date(2026, 11, 2)
_keys = count(1)


@pytest.fixture
def world(engine: Engine, tmp_path: Path) -> World:
    """A dealer with two staff members (with WeCom ids) and no customers yet."""
    made = World(engine, tmp_path / "data")
    with engine.begin() as conn:
        conn.execute(text("UPDATE staff SET wecom_userid = staff_no"))
    return made


def _customer(world: World) -> int:
    """An owner outside the global holdout, with every consent."""
    for cid in range(900, 2000):
        if holdout_share(pl.Series([cid]))[0] >= world.settings.policy.holdout:
            return world.owner(customer_id=cid)
    raise AssertionError("no id outside the holdout")


def _phone_touch(
    world: World,
    customer: int,
    *,
    playbook: str = "churn_winback",
    template: str = "winback_call",
    priority: str = "marketing",
    at: dt.datetime | None = None,
) -> tuple[int, str]:
    """A phone touch as the contact policy leaves it: scheduled, with its outbox row."""
    due = at or local(D, 9)
    with world.engine.connect() as conn:
        version = load_catalog(conn, world.settings, record=False).current[playbook].version
    key = f"test:phone:{next(_keys)}"
    touch = world.insert(
        m.Touch,
        idempotency_key=key,
        customer_id=customer,
        dealer_id=1,
        channel="phone",
        channels="phone",
        template=template,
        playbook=playbook,
        version=version,
        step="call_step",
        priority=priority,
        status="scheduled",
        scheduled_at=due,
        proposed_at=due,
        cost_fen=0,
    )
    world.insert(
        m.OutboxEntry, touch_id=touch, channel="phone", due_at=due, status="pending", attempts=0
    )
    return touch, key


def _dispatch(world: World, settings: Settings | None = None) -> DispatchResult:
    dispatcher = Dispatcher(settings or world.settings, world.engine, clock=lambda: local(D, 9))
    try:
        return dispatcher.run()
    finally:
        dispatcher.close()


def _tasks(world: World) -> list[dict[str, Any]]:
    with world.engine.connect() as conn:
        rows = conn.execute(select(table(m.Task)).order_by(m.Task.id)).all()
    return [dict(r._mapping) for r in rows]


def _row(world: World, model: type[m.Base], **where: Any) -> dict[str, Any]:
    rows = table(model)
    query = select(rows)
    for name, value in where.items():
        query = query.where(rows.c[name] == value)
    with world.engine.connect() as conn:
        return dict(conn.execute(query).one()._mapping)


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


# -- the tasks provider -------------------------------------------------------------------------


def test_a_phone_touch_becomes_one_call_task_with_its_script(world: World) -> None:
    cid = _customer(world)
    touch, key = _phone_touch(world, cid)
    done = _dispatch(world)
    assert (done.claimed, done.sent) == (1, 1)
    assert done.by_provider == {"tasks": 1}

    (task,) = _tasks(world)
    assert task["idempotency_key"] == f"touch:{key}"
    assert (task["customer_id"], task["dealer_id"]) == (cid, 1)
    assert (task["role"], task["kind"], task["status"]) == ("customer_manager", "call", "open")
    assert task["title"] == "致电客户"
    assert task["playbook"] == "churn_winback"
    # The script is the template's call script, rendered for this customer.
    assert task["script"].startswith("张先生您好，我是杭州西湖店的服务经理。")
    assert "{{" not in task["script"]
    assert task["planned_at"] is not None  # reviewed already: the policy planned the touch
    assert _aware(task["due_at"]) - _aware(task["created_at"]) == dt.timedelta(hours=4)

    sent = _row(world, m.Touch, id=touch)
    assert sent["status"] == "sent"
    assert sent["provider_message_id"] == f"task-{task['id']}"
    outbox = _row(world, m.OutboxEntry, touch_id=touch)
    assert (outbox["status"], outbox["provider"]) == ("sent", "tasks")


def test_dispatching_again_or_reconciling_makes_no_second_task(world: World) -> None:
    cid = _customer(world)
    touch, _ = _phone_touch(world, cid)
    _dispatch(world)
    (task,) = _tasks(world)
    assert _dispatch(world).claimed == 0
    assert len(_tasks(world)) == 1

    # A dispatcher that died after making the task and before settling the row: sent again.
    outbox = table(m.OutboxEntry)
    with world.engine.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.touch_id == touch).values(status="pending"))
    again = _dispatch(world)
    assert (again.claimed, again.sent) == (1, 1)
    assert [t["id"] for t in _tasks(world)] == [task["id"]]
    assert _row(world, m.Touch, id=touch)["provider_message_id"] == f"task-{task['id']}"

    # A row in doubt: the provider is asked, finds the task, and the row is sent.
    with world.engine.begin() as conn:
        conn.execute(
            update(outbox)
            .where(outbox.c.touch_id == touch)
            .values(status="in_doubt", lease_until=None)
        )
    recovered = _dispatch(world)
    assert recovered.recovered_sent == 1
    assert [t["id"] for t in _tasks(world)] == [task["id"]]
    assert _row(world, m.OutboxEntry, touch_id=touch)["status"] == "sent"


def test_the_tasks_options_set_role_sla_and_title(world: World) -> None:
    cid = _customer(world)
    _phone_touch(world, cid)
    settings = Settings(
        data_dir=world.data_dir,
        database_url=world.engine.url.render_as_string(hide_password=False),
        channels=ChannelSettings.model_validate(
            {"providers": {"tasks": {"role": "service_manager", "sla_hours": 1.5, "title": "回访"}}}
        ),
    )
    _dispatch(world, settings)
    (task,) = _tasks(world)
    assert (task["role"], task["title"]) == ("service_manager", "回访")
    assert _aware(task["due_at"]) - _aware(task["created_at"]) == dt.timedelta(hours=1.5)


def test_a_call_without_phone_consent_is_no_task(world: World) -> None:
    cid = _customer(world)
    with world.engine.begin() as conn:
        conn.execute(
            update(table(m.Consent))
            .where(m.Consent.customer_id == cid, m.Consent.channel == "phone")
            .values(granted=False, withdrawn_at=local(D, 8))
        )
    touch, _ = _phone_touch(world, cid)
    done = _dispatch(world)
    assert (done.sent, done.suppressed) == (0, 1)
    assert _tasks(world) == []
    assert _row(world, m.Touch, id=touch)["status"] == "suppressed"
    assert "unsubscribed from phone" in _row(world, m.OutboxEntry, touch_id=touch)["last_error"]


def test_a_phone_touch_reaches_the_tasks_outside_the_sending_hours(world: World) -> None:
    # A call task is placed by the staff within its SLA: the quiet hours do not hold it back.
    cid = _customer(world)
    touch, _ = _phone_touch(world, cid, at=local(D, 6))
    dispatcher = Dispatcher(world.settings, world.engine, clock=lambda: local(D, 6, 30))
    try:
        assert dispatcher.run().sent == 1
    finally:
        dispatcher.close()
    assert len(_tasks(world)) == 1
    assert _row(world, m.Touch, id=touch)["status"] == "sent"


# -- baoke tasks ---------------------------------------------------------------------------------


@pytest.fixture
def cli_env(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    """``baoke`` pointed at the world's store, with no baoke.toml of the machine."""
    monkeypatch.chdir(world.data_dir.parent)
    monkeypatch.delenv("BAOKE_CONFIG", raising=False)
    monkeypatch.setenv("BAOKE_DATA_DIR", str(world.data_dir))
    monkeypatch.setenv("BAOKE_DATABASE_URL", world.engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("COLUMNS", "200")
    return world


def test_tasks_list_shows_the_calls_with_masked_mobiles(cli_env: World) -> None:
    world = cli_env
    cid = _customer(world)
    _phone_touch(world, cid)
    _dispatch(world)
    (task,) = _tasks(world)
    mobile = _row(world, m.Customer, id=cid)["mobile"]
    masked = f"{mobile[3:6]}****{mobile[-4:]}"

    runner = CliRunner()
    listed = runner.invoke(cli.app, ["tasks", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.stdout)
    assert (row["id"], row["dealer"], row["role"]) == (task["id"], "D001", "customer_manager")
    assert (row["customer_id"], row["mobile"]) == (cid, masked)
    assert mobile[3:] not in listed.stdout

    screen = runner.invoke(cli.app, ["tasks", "list"])
    assert screen.exit_code == 0, screen.output
    assert masked in screen.stdout and "致电客户" in screen.stdout
    assert mobile[3:] not in screen.stdout

    other = runner.invoke(cli.app, ["tasks", "list", "--role", "advisor", "--json"])
    assert json.loads(other.stdout) == []
    done = runner.invoke(cli.app, ["tasks", "list", "--status", "done", "--json"])
    assert json.loads(done.stdout) == []


def test_tasks_list_shows_the_due_time_in_business_time(cli_env: World) -> None:
    world = cli_env
    cid = _customer(world)
    world.insert(
        m.Task,
        customer_id=cid,
        dealer_id=1,
        role="advisor",
        kind="call",
        title="保养回访",
        due_at=local(D, 18, 30),  # 10:30 UTC
        status="open",
    )
    screen = CliRunner().invoke(cli.app, ["tasks", "list"])
    assert screen.exit_code == 0, screen.output
    assert "2026-11-02 18:30" in screen.stdout, screen.stdout


def test_tasks_log_records_the_outcome(cli_env: World) -> None:
    world = cli_env
    cid = _customer(world)
    touch, _ = _phone_touch(world, cid)
    _dispatch(world)
    (task,) = _tasks(world)

    logged = CliRunner().invoke(cli.app, ["tasks", "log", str(task["id"]), "not_connected"])
    assert logged.exit_code == 0, logged.output
    assert f"task {task['id']}: not_connected logged" in logged.stdout
    (done,) = _tasks(world)
    assert (done["status"], done["outcome"]) == ("done", "not_connected")
    # The touch the task came from learns it too: the call did not get through.
    assert _row(world, m.Touch, id=touch)["status"] == "failed"
    listed = CliRunner().invoke(cli.app, ["tasks", "list", "--status", "done", "--json"])
    assert [r["outcome"] for r in json.loads(listed.stdout)] == ["not_connected"]


def _main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """``baoke ARGS`` through the console script's entry point; its exit code."""
    monkeypatch.setattr(sys, "argv", ["baoke", *args])
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    code = stopped.value.code
    return code if isinstance(code, int) else 1


def test_tasks_log_with_a_bad_outcome_is_one_line_and_exit_2(
    cli_env: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    world = cli_env
    cid = _customer(world)
    _phone_touch(world, cid)
    _dispatch(world)
    (task,) = _tasks(world)

    invoked = CliRunner().invoke(cli.app, ["tasks", "log", str(task["id"]), "maybe"])
    assert isinstance(invoked.exception, InputError)

    assert _main(monkeypatch, "tasks", "log", str(task["id"]), "maybe") == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert "outcome must be one of" in lines[0] and "'maybe'" in lines[0]
    assert "Traceback" not in captured.err

    assert _main(monkeypatch, "tasks", "log", "999999", "connected") == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "no task 999999" in lines[0], captured.err
    (still,) = _tasks(world)
    assert (still["status"], still["outcome"]) == ("open", None)
