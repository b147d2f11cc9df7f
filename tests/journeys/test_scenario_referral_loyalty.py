"""Referral loop and loyalty points on a fake clock: one notice per stage or ledger line.

Referral (推荐有礼): the referrer hears when the friend registers (points), test-drives
(thanks) and buys (a gift link). Loyalty: points earned (push > WeCom > SMS) or redeemed
(push > WeCom). Both come from imported records (derived at the daily run) or from event files.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from sqlalchemy import update
from tests.journeys.world import World, local

from baoke.journeys.run import ingest_events
from baoke.store import models as m

D = dt.date(2026, 6, 1)
REFERRAL = "referral_loop"
LOYALTY = "loyalty_points"


def _day(n: int) -> dt.date:
    return D + dt.timedelta(days=n)


def _at(n: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(_day(n), dt.time(hour, minute))


def test_referrer_hears_of_each_stage(world: World) -> None:
    referrer = world.owner(visits=((D - dt.timedelta(days=30), 600),))
    friend = world.owner(name="孙丽", title="女士", delivered=D - dt.timedelta(days=400))
    referral = world.insert(
        m.Referral,
        referral_no="R1",
        referrer_id=referrer,
        referee_id=friend,
        referee_name="孙丽",
        referee_mobile="+8613900000001",
        stage="registered",
        stage_at=local(D, 10),
    )
    world.run(D)  # the record becomes a referral_stage event for the referrer
    assert world.touches(referrer, REFERRAL) == [
        ("points_notice", "wecom,push,sms", _at(0, 10)),
    ]

    # The friend test-drives on D+3: the record moves on, the next run tells the referrer.
    table = m.Referral.__table__
    with world.engine.begin() as conn:
        conn.execute(
            update(table)
            .where(table.c.id == referral)
            .values(stage="test_drive", stage_at=local(_day(3), 15))
        )
    world.run(_day(3))
    before = world.counts()
    world.run(_day(3))
    assert world.counts() == before

    # The purchase arrives as an event.
    world.event(
        "referral_stage", referrer, local(_day(10), 11), stage="purchase", referee_name="孙丽"
    )
    assert world.touches(referrer, REFERRAL) == [
        ("points_notice", "wecom,push,sms", _at(0, 10)),
        ("test_drive_thanks", "wecom,sms", _at(3, 15)),
        ("gift_link", "wecom,sms", _at(10, 11)),
    ]
    journeys = world.journeys(referrer, REFERRAL)
    assert [(j["trigger"], j["status"]) for j in journeys] == [
        ("referee_registered", "completed"),
        ("referee_test_drive", "completed"),
        ("referee_purchased", "completed"),
    ]
    assert world.touches(friend, REFERRAL) == []
    assert world.tasks(referrer, REFERRAL) == []


def test_points_earned_and_redeemed(world: World) -> None:
    cid = world.owner(visits=((D - dt.timedelta(days=30), 600),))
    # Ledger lines as the loyalty system exports them: free-text reasons.
    world.insert(
        m.LoyaltyEntry,
        entry_key="P1",
        customer_id=cid,
        occurred_at=local(D, 12),
        points=500,
        reason="保养",
        reference="WO1",
    )
    world.run(D)
    earned = ("earned_notice", "push,wecom,sms", _at(0, 12))
    assert world.touches(cid, LOYALTY) == [earned]
    before = world.counts()
    world.run(D)
    assert world.counts() == before

    world.insert(
        m.LoyaltyEntry,
        entry_key="P2",
        customer_id=cid,
        occurred_at=local(_day(2), 16),
        points=-300,
        reason="商城兑换券",  # unknown wording, points spent: a redemption, never "earned"
    )
    world.run(_day(2))
    redeemed = ("redeemed_notice", "push,wecom", _at(2, 16))
    assert world.touches(cid, LOYALTY) == [earned, redeemed]

    world.event("points_changed", cid, local(_day(5), 9), reason="activity", points=100)
    world.event("points_changed", cid, local(_day(6), 9), reason="redemption", points=200)
    assert world.touches(cid, LOYALTY) == [
        earned,
        redeemed,
        ("earned_notice", "push,wecom,sms", _at(5, 9)),
        ("redeemed_notice", "push,wecom", _at(6, 9)),
    ]
    journeys = world.journeys(cid, LOYALTY)
    assert [j["trigger"] for j in journeys] == [
        "points_earned",
        "points_redeemed",
        "points_earned",
        "points_redeemed",
    ]
    assert {j["status"] for j in journeys} == {"completed"}


def test_two_ledger_lines_in_one_batch_make_two_notices(world: World, tmp_path: Path) -> None:
    cid = world.owner()
    world.run(_day(0))
    rows = [
        {
            "type": "points_changed",
            "customer_id": cid,
            "occurred_at": _iso(1, 10),
            "reason": "service",
            "points": 300,
        },
        {
            "type": "points_changed",
            "customer_id": cid,
            "occurred_at": _iso(1, 15),
            "reason": "redemption",
            "points": 200,
        },
    ]
    path = tmp_path / "ledger.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    ingest_events(world.settings, world.engine, path, until=local(_day(1), 16))
    assert [(s, at) for s, _, at in world.touches(cid, LOYALTY)] == [
        ("earned_notice", _at(1, 10)),
        ("redeemed_notice", _at(1, 15)),
    ]


def _iso(n: int, hour: int) -> str:
    return local(_day(n), hour).isoformat()
