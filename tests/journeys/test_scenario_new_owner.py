"""New owner activation on a fake clock: the first six months after a delivery.

A delivery enters the playbook two ways: a ``vehicle_delivered`` event (the CRM, at the
moment of the handover) or a vehicle row with its delivery date, turned into an event by the
daily run (enrolled at 00:00 of that day), also when the row is imported after that day's run.
From there: the advisor's thank-you call (due within 8 h) and the delivery SMS; +3 days a task
to add the customer on WeCom; +1 week new-car tips (WeCom, else email); +2 weeks the membership
invitation (push, else WeCom); +1 month (30 days) the first-maintenance booking reminder; then
a weekly look at the profile: a satisfaction call once the first maintenance is done, or the
end at six months.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
from tests.journeys.world import ZONE, World, local

from baoke.journeys.enrol import stable_share
from baoke.store import models as m

D = dt.date(2026, 3, 2)  # the delivery day, a Monday
BOOK = "new_owner_activation"
HOLDOUT = 0.05  # entry.holdout of the playbook


def _day(n: int) -> dt.date:
    return D + dt.timedelta(days=n)


def _at(n: int, hour: int = 0) -> dt.datetime:
    """Local wall time n days after D (as the world reports it)."""
    return dt.datetime.combine(_day(n), dt.time(hour))


def _local(value: dt.datetime) -> dt.datetime:
    """A stored moment as local wall time (SQLite keeps naive UTC)."""
    aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return aware.astimezone(ZONE).replace(tzinfo=None)


def _share(cid: int) -> float:
    return float(stable_share(pl.Series([cid]), BOOK)[0])


def _owner(world: World) -> int:
    cid = world.owner(delivered=D)
    assert _share(cid) >= HOLDOUT, "a test customer must not fall in the playbook's holdout"
    return cid


def _held_out_id() -> int:
    """A customer id (above the world's own) that the playbook holds out."""
    return next(i for i in range(10_000, 20_000) if _share(i) < HOLDOUT)


def _tasks(world: World, cid: int) -> list[tuple[str, str, dt.datetime]]:
    return [(s, r, due) for s, r, due, _ in world.tasks(cid, BOOK)]


def _timeline(hour: int) -> tuple[list[tuple[str, str, dt.datetime]], ...]:
    """Touches and tasks of the first month, for a journey that started at ``hour`` on D."""
    touches = [
        ("delivery_sms", "sms", _at(0, hour)),
        ("new_car_tips", "wecom,email", _at(7, hour)),
        ("member_invite", "push,wecom", _at(14, hour)),
        ("first_maintenance_booking", "wecom,sms", _at(30, hour)),
    ]
    tasks = [
        ("thank_you_call", "advisor", _at(0, hour + 8)),
        ("add_wecom", "advisor", _at(4, hour)),  # made at +3 days, due within 1 day
    ]
    return touches, tasks


def test_delivery_by_event_and_by_record_walks_the_timeline(world: World) -> None:
    by_record = _owner(world)
    by_event = _owner(world)
    held = world.owner(delivered=D, customer_id=_held_out_id())

    # The CRM reports the handover at 10:00; the vehicle rows come with the night's import.
    world.event("vehicle_delivered", by_event, local(D, 10), series="远峰", model="远峰 2.0T")
    world.run(D)
    record_touches, record_tasks = _timeline(0)
    event_touches, event_tasks = _timeline(10)
    for cid, touches, tasks in (
        (by_record, record_touches, record_tasks),
        (by_event, event_touches, event_tasks),
    ):
        assert world.touches(cid, BOOK) == touches[:1]
        assert _tasks(world, cid) == tasks[:1]
    (record_journey,) = world.journeys(by_record, BOOK)
    (event_journey,) = world.journeys(by_event, BOOK)  # the record of it enrols nobody again
    assert record_journey["trigger"] == event_journey["trigger"] == "vehicle_delivered"
    assert world.decisions(record_journey["id"])[0][2].startswith("event vehicle_delivered")

    # The held-out customer has a journey that does nothing, to measure against.
    (holdout,) = world.journeys(held, BOOK)
    assert (holdout["status"], holdout["step"]) == ("holdout", None)
    assert [a for a, _, _ in world.decisions(holdout["id"])] == ["holdout"]

    # The same day again creates nothing.
    before = world.counts()
    world.run(D)
    assert world.counts() == before

    # A delivery of the same day whose record is imported only after the day's run.
    late = _owner(world)

    # +3 days: the late record is an event now, enrolled at its day's start; the WeCom task,
    # nothing early. +30 days: a run catches up every wait since.
    for n, touched, tasked in ((3, 1, 2), (30, 4, 2)):
        world.run(_day(n))
        for cid, touches, tasks in (
            (by_record, record_touches, record_tasks),
            (late, record_touches, record_tasks),
            (by_event, event_touches, event_tasks),
        ):
            assert world.touches(cid, BOOK) == touches[:touched], n
            assert _tasks(world, cid) == tasks[:tasked], n

    (journey,) = world.journeys(late, BOOK)
    assert _local(journey["enrolled_at"]) == _at(0)

    # First maintenance on day 35; the weekly check on day 37 calls for a satisfaction call.
    for cid in (by_record, late, by_event):
        world.visit(cid, world.vehicle_of(cid), _day(35))
    world.run(_day(37))
    for cid, hour in ((by_record, 0), (late, 0), (by_event, 10)):
        assert _tasks(world, cid)[2:] == [("satisfaction_call", "advisor", _at(39, hour))]
        (journey,) = world.journeys(cid, BOOK)
        assert (journey["status"], journey["end_reason"]) == ("completed", "end")
        actions = [(a, s) for a, s, _ in world.decisions(journey["id"])]
        assert actions[-4:] == [
            ("send", "first_maintenance_booking"),
            ("wait", "wait_week"),
            ("branch", "first_maintenance_check"),
            ("task", "satisfaction_call"),
        ]

    # The holdout got nothing through all of it.
    assert world.touches(held, BOOK) == []
    assert world.tasks(held, BOOK) == []


def test_no_first_maintenance_ends_at_six_months(world: World) -> None:
    gives_up = _owner(world)  # comes in for a repair, never for the first maintenance
    never_back = _owner(world)  # never comes back at all
    world.run(D)
    # A repair on day 100 keeps one a customer; the other one never comes back.
    world.insert(
        m.ServiceOrder,
        order_no="WO-R1",
        dealer_id=1,
        vehicle_id=world.vehicle_of(gives_up),
        customer_id=gives_up,
        order_type="repair",
        settled_on=_day(100),
        amount_fen=30_000,
    )
    world.run(_day(177))  # five months: every weekly check since day 37 said no
    for cid in (gives_up, never_back):
        (journey,) = world.journeys(cid, BOOK)
        assert (journey["status"], journey["step"]) == ("active", "first_maintenance_check")
        assert _local(journey["wake_at"]) == _at(184)
    world.run(_day(184))  # six months (the weekly check on day 184)
    (journey,) = world.journeys(gives_up, BOOK)
    assert (journey["status"], journey["end_reason"]) == ("completed", "end")
    decisions = world.decisions(journey["id"])
    assert decisions[-1] == (
        "branch",
        "give_up_check",
        "if months_since_delivery >= 6: yes -> end",
    )
    # Without any visit for six months the owner is lost: that exit comes first, same day.
    (journey,) = world.journeys(never_back, BOOK)
    assert (journey["status"], journey["end_reason"]) == ("exited", "lost")
    touches, tasks = _timeline(0)
    for cid in (gives_up, never_back):
        assert world.touches(cid, BOOK) == touches
        assert _tasks(world, cid) == tasks  # no satisfaction call
        (journey,) = world.journeys(cid, BOOK)
        checks = [r for a, s, r in world.decisions(journey["id"]) if s == "give_up_check"]
        assert len(checks) == (22 if cid == gives_up else 21)  # days 37, 44, …, 177 (184)
