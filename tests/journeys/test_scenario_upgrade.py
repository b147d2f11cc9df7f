"""Upgrade / replacement on a fake clock: a trade-in offer to owners of older cars who browse.

An owner whose car is at least five years old and who viewed the new SUVs at least twice in 30
days enters replacement_candidates: a WeCom trade-in offer at once; a reply within 3 days goes
to a sales consultant, otherwise a reminder (push, else SMS) 11 days later. A purchase ends the
journey; an owner who bought recently never gets it, even with a high upgrade score.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
from sqlalchemy import select
from tests.journeys.world import World, local

from baoke.journeys.enrol import stable_share
from baoke.store import models as m

D = dt.date(2026, 6, 1)
BOOK = "upgrade_replacement"


def _day(n: int) -> dt.date:
    return D + dt.timedelta(days=n)


def _at(n: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(_day(n), dt.time(hour, minute))


def _skip_holdout(world: World) -> None:
    """Make the next customer id one outside the playbook's 10% holdout."""
    last = world._id()
    while stable_share(pl.Series([last + 1]), BOOK)[0] < 0.1:
        last = world._id()


def _views(world: World, cid: int, *targets: str) -> None:
    for i, target in enumerate(targets):
        world.insert(
            m.BehaviourEvent,
            event_key=f"bv{cid}-{i}",
            customer_id=cid,
            occurred_at=local(D - dt.timedelta(days=3 + i), 20),
            event_type="model_view",
            source="app",
            target=target,
        )


def _old_car_owner(world: World, name: str = "张伟") -> int:
    """A six-year-old car, serviced a month ago, and two views of new SUVs this month."""
    _skip_holdout(world)
    cid = world.owner(
        name=name, delivered=dt.date(2020, 5, 10), visits=((D - dt.timedelta(days=30), 800),)
    )
    _views(world, cid, "穹岳", "灵犀EV")
    return cid


def _members(world: World, segment: str) -> set[int]:
    with world.engine.connect() as conn:
        rows = conn.execute(
            select(m.SegmentMembership.customer_id).where(
                m.SegmentMembership.segment == segment, m.SegmentMembership.exited_on.is_(None)
            )
        ).all()
    return {int(r[0]) for r in rows}


def test_trade_in_offer_then_reminder_and_no_recent_buyer(world: World) -> None:
    owner = _old_car_owner(world)
    # Bought 18 months ago, but a high upgrade score (views, 120,000 km, an open lead): in the
    # segment, yet the audience (24 months since delivery at least) keeps the offer away.
    _skip_holdout(world)
    recent = world.owner(
        name="刘洋",
        delivered=D - dt.timedelta(days=548),
        visits=((D - dt.timedelta(days=40), 600),),
    )
    world.insert(
        m.MileageReading,
        vehicle_id=world.vehicle_of(recent),
        read_on=D - dt.timedelta(days=10),
        odometer_km=120_000,
        source="app",
    )
    world.insert(
        m.Lead,
        lead_no="L1",
        dealer_id=1,
        customer_id=recent,
        model_of_interest="穹岳 2.0T 七座",
        stage="inquiry",
        status="open",
        created_on=D - dt.timedelta(days=15),
    )
    _views(world, recent, "穹岳", "穹岳", "拓界")
    world.run(D)
    assert {owner, recent} <= _members(world, "replacement_candidates")
    assert world.touches(owner, BOOK) == [("wecom_trade_in", "wecom", _at(0))]
    assert world.journeys(recent, BOOK) == []
    before = world.counts()
    world.run(D)
    assert world.counts() == before

    # No reply within 3 days: the reminder 11 days after that, push first, SMS otherwise.
    world.run(_day(14))
    assert world.touches(owner, BOOK) == [
        ("wecom_trade_in", "wecom", _at(0)),
        ("reminder", "push,sms", _at(14)),
    ]
    assert world.tasks(owner, BOOK) == []
    (journey,) = world.journeys(owner, BOOK)
    assert (journey["status"], journey["end_reason"], journey["goal_met"]) == (
        "completed",
        "end",
        False,
    )
    assert world.journeys(recent, BOOK) == []


def test_reply_goes_to_sales_and_purchase_meets_the_goal(world: World) -> None:
    replies = _old_car_owner(world)
    buys = _old_car_owner(world, name="周敏")
    world.run(D)
    for cid in (replies, buys):
        assert world.touches(cid, BOOK) == [("wecom_trade_in", "wecom", _at(0))]

    world.event("reply_keyword", replies, local(_day(2), 10), keyword="置换", channel="wecom")
    assert [(s, r, due) for s, r, due, _ in world.tasks(replies, BOOK)] == [
        ("sales_call", "sales_consultant", _at(3, 10))
    ]
    world.event("purchase", buys, local(_day(5), 16), model="穹岳 2.0T 七座")
    (bought,) = world.journeys(buys, BOOK)
    assert (bought["status"], bought["goal_met"], bought["end_reason"]) == (
        "completed",
        True,
        "goal:purchase",
    )

    world.run(_day(14))
    # Neither gets the reminder: one is with sales, the other bought.
    assert world.touches(replies, BOOK) == [("wecom_trade_in", "wecom", _at(0))]
    assert world.touches(buys, BOOK) == [("wecom_trade_in", "wecom", _at(0))]
    assert world.tasks(buys, BOOK) == []
    (journey,) = world.journeys(replies, BOOK)
    assert (journey["status"], journey["goal_met"]) == ("completed", False)
