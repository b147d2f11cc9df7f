"""The contact policy through the real store: the daily run plans, events take effect before
the next decision, calls are reviewed, deferred touches come back, and plans are idempotent.

Records go in as an import or a journey would leave them (``tests.journeys.world``); days pass
with the real daily run and events arrive through the real event path.
"""

from __future__ import annotations

import datetime as dt
from itertools import count
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import Engine, select, update
from tests.journeys.world import ZONE, World, local

from baoke.journeys.catalog import load_catalog
from baoke.policy.arbiter import holdout_share
from baoke.policy.explain import explain_customer
from baoke.policy.inputs import load_inputs
from baoke.policy.plan import plan_day, summarise
from baoke.store import models as m

D = dt.date(2026, 11, 2)  # a Monday
_keys = count(1)


@pytest.fixture
def world(engine: Engine, tmp_path: Path) -> World:
    """A dealer with two staff members and no customers yet."""
    return World(engine, tmp_path / "data")


def _at_risk(world: World, **kw: Any) -> int:
    # Last visit 100 days before D: at risk, so the win-back enrols on D.
    return world.owner(visits=((D - dt.timedelta(days=100), 900),), **kw)


def _touch(world: World, customer: int, at: dt.datetime, **kw: Any) -> int:
    """A candidate touch as a journey step leaves it."""
    values: dict[str, Any] = {
        "idempotency_key": f"test:{next(_keys)}",
        "customer_id": customer,
        "dealer_id": 1,
        "channel": "sms",
        "channels": "sms",
        "template": "maintenance_due",
        "playbook": "service_calendar",
        "step": "due_reminder",
        "priority": "service",
        "status": "candidate",
        "scheduled_at": at,
        "proposed_at": at,
        "cost_fen": 0,
    }
    values.update(kw)
    return world.insert(m.Touch, **values)


def _touch_row(world: World, touch: int) -> dict[str, Any]:
    with world.engine.connect() as conn:
        row = conn.execute(select(m.Touch.__table__).where(m.Touch.id == touch)).one()
    return dict(row._mapping)


def _decisions(world: World, customer: int) -> list[dict[str, Any]]:
    with world.engine.connect() as conn:
        rows = conn.execute(
            select(m.PolicyDecision.__table__)
            .where(m.PolicyDecision.customer_id == customer)
            .order_by(m.PolicyDecision.plan_date, m.PolicyDecision.id)
        ).all()
    return [dict(r._mapping) for r in rows]


def _plan(world: World, day: dt.date, **kw: Any) -> dict[str, int]:
    result, _ = plan_day(world.settings, world.engine, day, **kw)
    return result.outcomes


def _local(value: dt.datetime) -> dt.datetime:
    aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return aware.astimezone(ZONE).replace(tzinfo=None)


def _not_held_out(world: World) -> int:
    """A customer id outside the global holdout (ids count up from 1 in the world)."""
    for cid in range(900, 2000):
        if holdout_share(pl.Series([cid]))[0] >= world.settings.policy.holdout:
            return cid
    raise AssertionError("no id outside the holdout")


def test_the_daily_run_schedules_the_winback_at_the_opening_of_the_day(world: World) -> None:
    cid = _at_risk(world, customer_id=_not_held_out(world))
    result = world.run(D)
    assert result.plan["outcomes"].get("scheduled", 0) >= 1
    (touch,) = world.frame(
        "SELECT id, status, channel, scheduled_at, proposed_at, cost_fen FROM touches "
        "WHERE customer_id = :c",
        c=cid,
    ).to_dicts()
    assert touch["status"] == "scheduled"
    assert touch["channel"] == "wecom"
    assert touch["cost_fen"] == world.settings.policy.cost_fen["wecom"]
    assert _local(_touch_row(world, touch["id"])["scheduled_at"]) == dt.datetime(2026, 11, 2, 8)
    assert _local(_touch_row(world, touch["id"])["proposed_at"]) == dt.datetime(2026, 11, 2)
    outbox = world.frame("SELECT touch_id, channel, status FROM outbox").to_dicts()
    assert outbox == [{"touch_id": touch["id"], "channel": "wecom", "status": "pending"}]
    (decision,) = _decisions(world, cid)
    assert decision["outcome"] == "scheduled" and decision["rule"] == "sent"
    assert decision["reason"].startswith("wecom at 2026-11-02 08:00: expected response")

    # The same day again decides nothing twice.
    before = (world.counts(), len(_decisions(world, cid)))
    assert world.run(D).plan["candidates"] == 0
    assert (world.counts(), len(_decisions(world, cid))) == before
    assert world.frame("SELECT count(*) AS n FROM outbox")["n"][0] == 1


def test_not_a_wecom_friend_drops_the_message_and_the_manager_calls(world: World) -> None:
    cid = _at_risk(world, wecom=False, customer_id=_not_held_out(world))
    world.run(D)
    (decision,) = _decisions(world, cid)
    assert decision["outcome"] == "suppressed"
    assert decision["rule"] == "unreachable"
    assert decision["reason"] == "no usable channel: wecom: not a WeCom friend"
    # The journey sees the message could not go and escalates to the call the next day; the
    # policy reviews the call (phone consent, caps) and leaves it with the staff.
    world.run(D + dt.timedelta(days=1))
    tasks = world.frame(
        "SELECT id, step, status, planned_at FROM tasks WHERE customer_id = :c", c=cid
    ).to_dicts()
    assert [(t["step"], t["status"]) for t in tasks] == [("manager_call", "open")]
    assert tasks[0]["planned_at"] is not None
    call = _decisions(world, cid)[-1]
    assert (call["task_id"], call["touch_id"]) == (tasks[0]["id"], None)
    assert (call["outcome"], call["channel"]) == ("scheduled", "phone")


def test_a_call_for_a_customer_in_the_global_holdout_is_cancelled(world: World) -> None:
    held = next(c for c in range(900, 3000) if holdout_share(pl.Series([c]))[0] < 0.05)
    cid = _at_risk(world, wecom=False, customer_id=held)
    world.run(D)
    world.run(D + dt.timedelta(days=1))
    rows = {d["rule"] for d in _decisions(world, cid)}
    assert rows == {"holdout"}
    (task,) = world.frame("SELECT status FROM tasks WHERE customer_id = :c", c=cid).to_dicts()
    assert task["status"] == "cancelled"


def test_a_td_reply_stops_the_next_sms_even_a_service_notice(world: World) -> None:
    cid = world.owner(customer_id=_not_held_out(world))
    world.event("reply_keyword", cid, local(D, 10), keyword="TD")
    touch = _touch(world, cid, local(D, 11))
    assert _plan(world, D) == {"suppressed": 1}
    (decision,) = _decisions(world, cid)
    assert decision["rule"] == "unsubscribed"
    assert decision["reason"] == (
        "no usable channel: sms: unsubscribed on 2026-11-02 (reply_keyword)"
    )
    assert _touch_row(world, touch)["status"] == "suppressed"


def test_a_wecom_deletion_event_moves_the_message_to_the_next_channel(world: World) -> None:
    cid = world.owner(customer_id=_not_held_out(world))
    world.event("wecom_friend_deleted", cid, local(D, 9), deleted_by="customer")
    touch = _touch(
        world,
        cid,
        local(D, 12),
        channels="wecom,sms",
        channel="wecom",
        playbook="care_moments",
        priority="care",
    )
    assert _plan(world, D) == {"scheduled": 1}
    row = _touch_row(world, touch)
    assert (row["status"], row["channel"]) == ("scheduled", "sms")
    (decision,) = _decisions(world, cid)
    assert "skipped: wecom not a WeCom friend (deleted on 2026-11-02)" in decision["reason"]


def test_a_complaint_opened_by_an_event_pauses_marketing_but_not_service(world: World) -> None:
    cid = world.owner(customer_id=_not_held_out(world))
    world.event("complaint_opened", cid, local(D, 9), severity="medium", complaint_no="C-9")
    offer = _touch(world, cid, local(D, 10), playbook="upgrade_replacement", priority="marketing")
    notice = _touch(world, cid, local(D, 10))
    _plan(world, D)
    by_touch = {d["touch_id"]: d for d in _decisions(world, cid)}
    assert by_touch[offer]["rule"] == "complaint"
    assert by_touch[offer]["reason"].startswith("complaint: open since 2026-11-02 09:00")
    assert by_touch[notice]["outcome"] == "scheduled"


def test_a_late_candidate_is_deferred_and_sent_at_the_next_opening(world: World) -> None:
    cid = world.owner(customer_id=_not_held_out(world))
    touch = _touch(world, cid, local(D, 22, 30), playbook="care_moments", priority="care")
    assert _plan(world, D) == {"deferred": 1}
    row = _touch_row(world, touch)
    assert row["status"] == "deferred"
    assert _local(row["scheduled_at"]) == dt.datetime(2026, 11, 3, 8)
    assert _local(row["proposed_at"]) == dt.datetime(2026, 11, 2, 22, 30)
    assert _plan(world, D) == {}  # nothing left for the day
    assert _plan(world, D + dt.timedelta(days=1)) == {"scheduled": 1}
    days = [(d["plan_date"], d["outcome"]) for d in _decisions(world, cid)]
    assert days == [(D, "deferred"), (D + dt.timedelta(days=1), "scheduled")]


def test_a_deferred_touch_expires_after_max_defer_days(world: World) -> None:
    cid = world.owner(customer_id=_not_held_out(world))
    old = D - dt.timedelta(days=world.settings.policy.max_defer_days + 1)
    _touch(world, cid, local(old, 9), status="deferred", scheduled_at=local(D, 8))
    assert _plan(world, D) == {"suppressed": 1}
    (decision,) = _decisions(world, cid)
    assert decision["rule"] == "expired"


def test_a_dry_run_writes_nothing(world: World) -> None:
    cid = world.owner(customer_id=_not_held_out(world))
    touch = _touch(world, cid, local(D, 10))
    result, plan = plan_day(world.settings, world.engine, D, dry_run=True)
    assert result.outcomes == {"scheduled": 1}
    assert plan.decisions["candidate_id"].to_list() == [touch]
    assert _touch_row(world, touch)["status"] == "candidate"
    assert _decisions(world, cid) == []


def test_the_second_plan_of_a_day_counts_what_the_first_scheduled(world: World) -> None:
    cid = world.owner(customer_id=_not_held_out(world))
    first = _touch(world, cid, local(D, 9), playbook="care_moments", priority="care")
    assert _plan(world, D) == {"scheduled": 1}
    # An event later in the day proposes another marketing message: one a day is the rule.
    _touch(world, cid, local(D, 15), playbook="churn_winback", priority="retention")
    assert _plan(world, D, not_before=local(D, 15)) == {"deferred": 1}
    last = _decisions(world, cid)[-1]
    assert last["rule"] == "collision"
    assert "1 already planned or sent today" in last["reason"]
    assert _touch_row(world, first)["status"] == "scheduled"


def test_summary_and_explanation_read_the_stored_plan(world: World) -> None:
    cid = world.owner(name="张伟", customer_id=_not_held_out(world))
    _touch(world, cid, local(D, 9))
    _touch(
        world,
        cid,
        local(D, 9),
        playbook="upgrade_replacement",
        priority="marketing",
        channels="email",
        channel="email",
    )
    with world.engine.begin() as conn:
        conn.execute(update(m.Customer).where(m.Customer.id == cid).values(email=None))
    _plan(world, D)
    with world.engine.begin() as conn:
        summary = summarise(conn, D)
        found = explain_customer(conn, world.settings, cid, None)
        audit = conn.execute(
            select(m.AuditEntry.action, m.AuditEntry.entity_id).where(
                m.AuditEntry.action == "policy.explain"
            )
        ).all()
    assert summary["touches"] == 1
    assert summary["by_channel"] == [{"channel": "sms", "touches": 1, "cost_fen": 7}]
    assert summary["not_sent_by_rule"] == [{"outcome": "suppressed", "rule": "unreachable", "n": 1}]
    assert found["greeting"] == "张先生"
    assert found["day"] == D.isoformat()
    assert [d["outcome_words"] for d in found["decisions"]] == ["sent", "dropped"]
    assert found["decisions"][1]["reason"] == "no usable channel: email: no e-mail address"
    channels = {c["channel"]: c for c in found["channels"]}
    assert channels["sms"]["consent"] == "granted" and channels["sms"]["reachable"]
    assert audit == [("policy.explain", str(cid))]


def test_a_plan_that_fails_half_way_leaves_the_day_open(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    import baoke.policy.plan as plan_module

    cid = world.owner(customer_id=_not_held_out(world))
    touch = _touch(world, cid, local(D, 10))
    real = plan_module.bulk_insert

    def fail_on_outbox(conn: Any, table: Any, frame: pl.DataFrame) -> None:
        if table.name == "outbox":
            raise RuntimeError("disk full")  # after the touches and decisions were written
        real(conn, table, frame)

    monkeypatch.setattr(plan_module, "bulk_insert", fail_on_outbox)
    with pytest.raises(RuntimeError):
        plan_day(world.settings, world.engine, D)
    assert _touch_row(world, touch)["status"] == "candidate"
    assert _decisions(world, cid) == []
    monkeypatch.setattr(plan_module, "bulk_insert", real)
    assert _plan(world, D) == {"scheduled": 1}
    assert world.frame("SELECT count(*) AS n FROM outbox")["n"][0] == 1


def test_the_response_statistics_count_the_lookback_by_tier_and_channel(world: World) -> None:
    high, low, unprofiled = world.owner(), world.owner(), world.owner()
    profile = {
        "as_of": D,
        "is_owner": True,
        "lifecycle_stage": "maintained",
        "spend_12m_fen": 0,
        "visits_12m": 1,
        "open_complaint": False,
        **dict.fromkeys(
            (f"{c}_reachable" for c in ("sms", "wecom", "push", "email", "phone")), True
        ),
    }
    with world.engine.begin() as conn:
        conn.execute(
            m.CustomerProfile.__table__.insert(),
            [
                {**profile, "customer_id": who, "value_tier": tier}
                for who, tier in ((high, "high"), (low, "low"))
            ],
        )
    inside, before = local(D - dt.timedelta(days=10), 10), local(D - dt.timedelta(days=91), 10)
    for who, channel, status, at in (
        (high, "sms", "replied", inside),
        (high, "sms", "delivered", inside),
        (high, "sms", "clicked", inside),
        (high, "wecom", "sent", inside),
        (high, "sms", "replied", before),  # before the 90 days
        (low, "sms", "opened", inside),
        (low, "sms", "failed", inside),  # not dispatched: says nothing of the channel
        (low, "sms", "replied", inside),
        (unprofiled, "wecom", "clicked", inside),
    ):
        _touch(world, who, at, channel=channel, status=status)
    _touch(world, low, local(D, 9))  # an open candidate, so the day has something to plan
    with world.engine.connect() as conn:
        catalog = load_catalog(conn, world.settings)
        stats = load_inputs(conn, catalog, world.settings.policy, D, ZONE).stats
    assert sorted(stats.rows()) == [
        ("high", "sms", 3, 2),
        ("high", "wecom", 1, 0),
        ("low", "sms", 2, 1),
        ("none", "wecom", 1, 1),
    ]
