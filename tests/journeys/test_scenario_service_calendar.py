"""Service calendar on a fake clock: three dated reminders, routed by the trigger that fired.

Delivery + 30 days: usage notes (WeCom, else email). Maintenance due − 15 days: a booking
reminder with the free inspection (WeCom, else SMS). Insurance expiry − 30 days: a renewal
quote (WeCom, else SMS) and a follow-up task for the customer manager within 2 days. Each
fires at 00:00 of its day and the journey ends at once.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import update
from tests.journeys.world import World

from baoke.store import models as m

S = dt.date(2026, 5, 11)
BOOK = "service_calendar"


def _day(n: int) -> dt.date:
    return S + dt.timedelta(days=n)


def _at(n: int, hour: int = 0) -> dt.datetime:
    """Local wall time n days after S (as the world reports it)."""
    return dt.datetime.combine(_day(n), dt.time(hour))


def _due_in_15_days(world: World) -> int:
    """Bought 1,095 days before S, 91,000 km at the maintenance 95 days before S: 91 km a day,
    the next maintenance (10,000 km) due 110 days after it, on S + 15."""
    cid = world.owner(delivered=_day(-95 - 1000))
    world.insert(
        m.ServiceOrder,
        order_no=f"WO{cid}",
        dealer_id=1,
        vehicle_id=world.vehicle_of(cid),
        customer_id=cid,
        advisor_id=1,
        order_type="maintenance",
        settled_on=_day(-95),
        amount_fen=90_000,
        mileage_km=91_000,
    )
    return cid


def _insured_until(world: World, cid: int, expiry: dt.date) -> None:
    with world.engine.begin() as conn:
        conn.execute(
            update(m.Vehicle).where(m.Vehicle.customer_id == cid).values(insurance_expiry=expiry)
        )


def _tasks(world: World, cid: int) -> list[tuple[str, str, dt.datetime]]:
    return [(s, r, due) for s, r, due, _ in world.tasks(cid, BOOK)]


def test_each_date_trigger_routes_to_its_reminder(world: World) -> None:
    notes = world.owner(delivered=_day(-30))
    booking = _due_in_15_days(world)
    insured = world.owner(delivered=_day(-300))
    _insured_until(world, insured, _day(30))
    # Due for maintenance in 15 days, and the insurance runs out three days after that.
    both = _due_in_15_days(world)
    _insured_until(world, both, _day(33))

    world.run(S)
    assert world.touches(notes, BOOK) == [("usage_notes", "wecom,email", _at(0))]
    assert world.touches(booking, BOOK) == [("maintenance_booking", "wecom,sms", _at(0))]
    assert world.touches(insured, BOOK) == [("insurance_quote", "wecom,sms", _at(0))]
    assert world.touches(both, BOOK) == [("maintenance_booking", "wecom,sms", _at(0))]
    assert _tasks(world, insured) == [("insurance_task", "customer_manager", _at(2))]
    for cid in (notes, booking, both):
        assert _tasks(world, cid) == []

    routes = {
        notes: ("usage_notes", [("route", "if the trigger is usage_notes: yes -> usage_notes")]),
        booking: (
            "maintenance_booking",
            [
                ("route", "if the trigger is usage_notes: no -> route_maintenance"),
                (
                    "route_maintenance",
                    "if the trigger is maintenance_booking: yes -> maintenance_booking",
                ),
            ],
        ),
        insured: (
            "insurance_renewal",
            [
                ("route", "if the trigger is usage_notes: no -> route_maintenance"),
                (
                    "route_maintenance",
                    "if the trigger is maintenance_booking: no -> insurance_quote",
                ),
            ],
        ),
    }
    reasons = {
        "usage_notes": f"delivery_date +30d falls on {S}",
        "maintenance_booking": f"next_maintenance_due_date -15d falls on {S}",
        "insurance_renewal": f"insurance_expiry -30d falls on {S}",
    }
    for cid, (trigger, branches) in routes.items():
        (journey,) = world.journeys(cid, BOOK)
        assert (journey["trigger"], journey["status"], journey["end_reason"]) == (
            trigger,
            "completed",
            "end",
        )
        decisions = world.decisions(journey["id"])
        assert decisions[0] == ("enrol", None, reasons[trigger])
        assert [(s, r) for a, s, r in decisions if a == "branch"] == branches

    # The same day again creates nothing.
    before = world.counts()
    world.run(S)
    assert world.counts() == before

    # Three days later the second customer's insurance quote comes, the reminder before it
    # notwithstanding; nobody else hears anything.
    world.run(_day(3))
    assert world.touches(both, BOOK) == [
        ("maintenance_booking", "wecom,sms", _at(0)),
        ("insurance_quote", "wecom,sms", _at(3)),
    ]
    assert _tasks(world, both) == [("insurance_task", "customer_manager", _at(5))]
    assert [j["trigger"] for j in world.journeys(both, BOOK)] == [
        "maintenance_booking",
        "insurance_renewal",
    ]
    for cid in (notes, booking, insured):
        assert len(world.journeys(cid, BOOK)) == 1
        assert len(world.touches(cid, BOOK)) == 1


def test_two_reminders_on_the_same_day_both_go_out(world: World) -> None:
    # Maintenance due in 15 days and insurance expiring in 30: both reminders fall on S.
    cid = _due_in_15_days(world)
    _insured_until(world, cid, _day(30))
    world.run(S)
    assert world.touches(cid, BOOK) == [
        ("maintenance_booking", "wecom,sms", _at(0)),
        ("insurance_quote", "wecom,sms", _at(0)),
    ]
    assert _tasks(world, cid) == [("insurance_task", "customer_manager", _at(2))]
    before = world.counts()
    world.run(S)
    assert world.counts() == before
