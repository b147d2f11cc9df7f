"""Maintenance cadences on a fake clock: one playbook per value tier, entered on the tier segment.

High (≥ ¥5,000 in 12 months): WeCom every week, an SMS when maintenance is due in 15-21 days,
the advisor's call when 84-90 days have passed since the last visit. Mid: WeCom every two
weeks with a member-benefit push every four, an SMS when maintenance is due in 15-28 days.
Low: the due reminder only (push, else SMS). A customer who moves to another tier leaves the
cadence (``left_segment``) and enters the new tier's; an open complaint pauses the cadence
until it is resolved.

Every owner here bought the car 1,000 days before E and drove 91 km a day (91,000 km at the
visit on E), so maintenance is next due 110 days after the visit (10,000 km).
"""

from __future__ import annotations

import datetime as dt

from tests.journeys.world import World, local

from baoke.store import models as m

E = dt.date(2025, 6, 2)  # everybody's maintenance visit, and the first daily run (a Monday)
HIGH, MID, LOW = "maintenance_cadence_high", "maintenance_cadence_mid", "maintenance_cadence_low"


def _day(n: int) -> dt.date:
    return E + dt.timedelta(days=n)


def _at(n: int, hour: int = 0) -> dt.datetime:
    """Local wall time n days after E (as the world reports it)."""
    return dt.datetime.combine(_day(n), dt.time(hour))


def _maintenance(world: World, cid: int, n: int, yuan: int, km: int) -> None:
    world.insert(
        m.ServiceOrder,
        order_no=f"WO{cid}-{n}",
        dealer_id=1,
        vehicle_id=world.vehicle_of(cid),
        customer_id=cid,
        advisor_id=1,
        order_type="maintenance",
        settled_on=_day(n),
        amount_fen=yuan * 100,
        mileage_km=km,
    )


def _owner(world: World, yuan: int, km: int = 91_000) -> int:
    cid = world.owner(delivered=_day(-1000))
    _maintenance(world, cid, 0, yuan, km)
    return cid


def _tasks(world: World, cid: int, book: str) -> list[tuple[str, str, dt.datetime]]:
    return [(s, r, due) for s, r, due, _ in world.tasks(cid, book)]


def _mid_cycle(start: int, end: int, hour: int = 0) -> list[tuple[str, str, dt.datetime]]:
    """The mid cadence's touches from day ``start`` (a wecom_a week) to day ``end``."""
    touches = []
    for n in range(start, end + 1, 14):
        if (n - start) % 28 == 0:
            touches.append(("wecom_a", "wecom", _at(n, hour)))
        else:
            touches += [("wecom_b", "wecom", _at(n, hour)), ("benefit_push", "push", _at(n, hour))]
    return touches


def test_tier_cadences_due_reminders_tier_change_and_complaint_pause(world: World) -> None:
    high = _owner(world, 6000)
    mid = _owner(world, 3000)
    low = _owner(world, 800)
    # Mid tier, maintenance not due for a year (10 km a day): only the rhythm, and a complaint.
    paused = _owner(world, 3000, km=10_000)

    world.run(E)
    for cid, book, tier in (
        (high, HIGH, "tier_high"),
        (mid, MID, "tier_mid"),
        (low, LOW, "tier_low"),
    ):
        (journey,) = world.journeys(cid, book)
        assert (journey["status"], journey["trigger"]) == ("active", tier)
        assert world.decisions(journey["id"])[0] == (
            "enrol",
            None,
            f"entered segment {tier} on {E}",
        )
    assert world.touches(high, HIGH) == [("weekly_wecom", "wecom", _at(0))]
    assert world.touches(mid, MID) == [("wecom_a", "wecom", _at(0))]
    assert world.touches(low, LOW) == []
    # One cadence each: the tier's.
    for cid, others in ((high, (MID, LOW)), (mid, (HIGH, LOW)), (low, (HIGH, MID))):
        assert all(world.journeys(cid, book) == [] for book in others)

    # The same day again creates nothing.
    before = world.counts()
    world.run(E)
    assert world.counts() == before

    # A complaint at 14:00 on day 30 pauses the mid cadence of one customer, after its two
    # first fortnights; a daily run while it is open keeps it paused.
    world.event("complaint_opened", paused, local(_day(30), 14), severity="medium")
    (journey,) = world.journeys(paused, MID)
    assert journey["status"] == "paused"
    world.run(_day(42))
    (journey,) = world.journeys(paused, MID)
    assert journey["status"] == "paused"
    assert world.touches(paused, MID) == _mid_cycle(0, 28)
    # Resolved at 10:00 on day 50: the cadence goes on from there, with the fortnight it missed.
    world.event("complaint_resolved", paused, local(_day(50), 10), severity="medium")
    (journey,) = world.journeys(paused, MID)
    assert journey["status"] == "active"
    actions = [a for a, _, _ in world.decisions(journey["id"])]
    assert actions.count("pause") == actions.count("resume") == 1
    assert world.touches(paused, MID) == [
        *_mid_cycle(0, 28),
        ("wecom_b", "wecom", _at(50, 10)),
        ("benefit_push", "push", _at(50, 10)),
    ]

    # Day 77, 84, 91: the quarter since the last visit, then the due date 19 days ahead.
    world.run(_day(77))
    # The mid customer's maintenance on day 90 spends them into the high tier.
    _maintenance(world, mid, 90, 2500, 91_000 + 90 * 91)
    for n in (84, 91):
        world.run(_day(n))
        if n == 84:
            assert _tasks(world, high, HIGH) == [("quarterly_call", "advisor", _at(87))]
            assert world.touches(low, LOW) == []

    weekly = [("weekly_wecom", "wecom", _at(n)) for n in range(0, 92, 7)]
    assert world.touches(high, HIGH) == [*weekly, ("due_sms", "sms", _at(91))]
    assert _tasks(world, high, HIGH) == [("quarterly_call", "advisor", _at(87))]
    assert world.touches(low, LOW) == [("due_reminder", "push,sms", _at(91))]
    assert _tasks(world, low, LOW) == []
    (journey,) = world.journeys(low, LOW)
    assert journey["status"] == "active"

    # Mid: due in 26 days on day 84 (inside 15-28), then the customer left the tier on day 91.
    assert world.touches(mid, MID) == [*_mid_cycle(0, 84), ("due_sms_a", "sms", _at(84))]
    (journey,) = world.journeys(mid, MID)
    assert (journey["status"], journey["end_reason"]) == ("exited", "left_segment")
    assert world.decisions(journey["id"])[-1] == (
        "exit",
        "wecom_b",
        "exit: left_segment (left segment tier_mid)",
    )
    # … and entered the high tier's cadence the same day (maintenance now due on day 200).
    (journey,) = world.journeys(mid, HIGH)
    assert (journey["status"], journey["trigger"]) == ("active", "tier_high")
    assert world.touches(mid, HIGH) == [("weekly_wecom", "wecom", _at(91))]

    # The paused customer's rhythm continued from the resumption, every two weeks.
    assert world.touches(paused, MID) == [
        *_mid_cycle(0, 28),
        ("wecom_b", "wecom", _at(50, 10)),
        ("benefit_push", "push", _at(50, 10)),
        ("wecom_a", "wecom", _at(64, 10)),
        ("wecom_b", "wecom", _at(78, 10)),
        ("benefit_push", "push", _at(78, 10)),
    ]
    assert _tasks(world, paused, MID) == []
