"""Churn win-back on a fake clock: WeCom now, a call 24 h later, SMS if the call fails."""

from __future__ import annotations

import datetime as dt

from tests.journeys.world import World, local

D = dt.date(2026, 11, 2)
BOOK = "churn_winback"


def _at_risk(world: World) -> int:
    # Delivered two years ago, last visit 100 days before D: at risk (90-180 days).
    return world.owner(visits=((D - dt.timedelta(days=100), 900),))


def test_no_reply_then_call_not_connected_then_sms(world: World) -> None:
    cid = _at_risk(world)
    world.run(D)
    assert world.touches(cid, BOOK) == [("wecom_offer", "wecom", dt.datetime(2026, 11, 2))]
    assert world.tasks(cid, BOOK) == []
    world.run(D + dt.timedelta(days=1))
    tasks = world.tasks(cid, BOOK)
    assert [(s, r, due) for s, r, due, _ in tasks] == [
        ("manager_call", "service_manager", dt.datetime(2026, 11, 4))
    ]
    world.event(
        "call_outcome",
        cid,
        local(D + dt.timedelta(days=1), 15, 30),
        outcome="not_connected",
        task_id=tasks[0][3],
    )
    assert world.touches(cid, BOOK)[1] == ("sms_offer", "sms", dt.datetime(2026, 11, 3, 15, 30))
    (journey,) = world.journeys(cid, BOOK)
    assert journey["status"] == "completed"
    actions = [a for a, _, _ in world.decisions(journey["id"])]
    assert actions == [
        "enrol",
        "send",
        "wait",
        "fallback",
        "task",
        "wait",
        "wake",
        "fallback",
        "send",
    ]


def test_reply_ends_the_escalation(world: World) -> None:
    cid = _at_risk(world)
    world.run(D)
    world.event("reply_keyword", cid, local(D, 10), keyword="好的，周六过来", channel="wecom")
    world.run(D + dt.timedelta(days=1))
    assert world.tasks(cid, BOOK) == []
    (journey,) = world.journeys(cid, BOOK)
    assert journey["status"] == "completed"


def test_visit_meets_the_goal(world: World) -> None:
    cid = _at_risk(world)
    world.run(D)
    world.event("service_visit", cid, local(D, 16), order_type="maintenance")
    world.run(D + dt.timedelta(days=1))
    (journey,) = world.journeys(cid, BOOK)
    assert (journey["status"], journey["goal_met"], journey["end_reason"]) == (
        "completed",
        True,
        "goal:visit",
    )
    assert world.tasks(cid, BOOK) == []


def test_same_day_twice_makes_nothing_new(world: World) -> None:
    cid = _at_risk(world)
    world.run(D)
    world.run(D)
    assert len(world.touches(cid, BOOK)) == 1
    assert len(world.journeys(cid, BOOK)) == 1
