"""Complaint recovery on a fake clock: SLA by severity, follow-ups after resolution.

A complaint opens (an event with its severity, or a complaint record imported and turned into
an event at the next daily run): severe → store manager within 1 h, medium → customer manager
within 4 h, light → advisor within 24 h. The journey then checks every day whether the profile
still shows an open complaint; once resolved: a confirmation call, a WeCom care gift a week
later, an upgrade-invitation call a month later. Marketing (churn win-back) pauses while the
complaint is open; a TD reply ends the marketing but not the recovery.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
from sqlalchemy import func, update
from tests.journeys.world import World, local

from baoke.journeys.enrol import stable_share
from baoke.store import models as m

D = dt.date(2026, 6, 1)  # a Monday
BOOK = "complaint_recovery"
CHURN = "churn_winback"


def _day(n: int) -> dt.date:
    return D + dt.timedelta(days=n)


def _at(n: int, hour: int, minute: int = 0) -> dt.datetime:
    """Local wall time n days after D (as the world reports it)."""
    return dt.datetime.combine(_day(n), dt.time(hour, minute))


def _at_risk(world: World) -> int:
    """An owner whose last visit was 100 days before D: enters at_risk (churn win-back) on D."""
    cid = world.owner(visits=((D - dt.timedelta(days=100), 900),))
    share = stable_share(pl.Series([cid]), CHURN)[0]
    assert share >= 0.1, "the test customer must not fall in churn_winback's holdout"
    return cid


def _complaint(world: World, cid: int, severity: str, opened: dt.datetime, no: str) -> int:
    return world.insert(
        m.Complaint,
        complaint_no=no,
        customer_id=cid,
        dealer_id=1,
        opened_at=opened,
        severity=severity,
        status="open",
    )


def _resolve(world: World, complaint: int, at: dt.datetime) -> None:
    table = m.Complaint.__table__
    with world.engine.begin() as conn:
        # Stamped as every writer of the store stamps a change (the importer's bulk_update):
        # updated_at is what the profile snapshot reads changes by.
        conn.execute(
            update(table)
            .where(table.c.id == complaint)
            .values(
                status="resolved",
                resolved_at=at,
                satisfaction=4,
                updated_at=func.current_timestamp(),
            )
        )


def _tasks(world: World, cid: int, book: str = BOOK) -> list[tuple[str, str, dt.datetime]]:
    return [(s, r, due) for s, r, due, _ in world.tasks(cid, book)]


def test_severe_complaint_pauses_winback_and_follows_up_after_resolution(world: World) -> None:
    cid = _at_risk(world)
    world.run(D)
    assert world.touches(cid, CHURN) == [("wecom_offer", "wecom", _at(0, 0))]

    # A severe complaint at 10:00 on D, as an event (the record is imported as well).
    complaint = _complaint(world, cid, "severe", local(D, 10), "C1")
    world.event("complaint_opened", cid, local(D, 10), severity="severe", complaint_no="C1")
    assert _tasks(world, cid) == [("severe_call", "store_manager", _at(0, 11))]
    (journey,) = world.journeys(cid, BOOK)
    # Waiting a day before the first check (a wait step leaves the journey on the next step).
    assert (journey["status"], journey["trigger"], journey["step"]) == (
        "active",
        "severe",
        "resolved_check",
    )
    (churn,) = world.journeys(cid, CHURN)
    assert churn["status"] == "paused"

    # A midday run on D+3: still open, the daily checks loop; the paused win-back waits even
    # though its 24 h fallback ran out during the pause.
    world.run(_day(3), until=local(_day(3), 12))
    assert _tasks(world, cid) == [("severe_call", "store_manager", _at(0, 11))]
    assert world.journeys(cid, CHURN)[0]["status"] == "paused"
    assert world.tasks(cid, CHURN) == []
    assert len(world.touches(cid, CHURN)) == 1

    # Resolved at 15:00 on D+3; the next daily run sees no open complaint.
    _resolve(world, complaint, local(_day(3), 15))
    world.run(_day(4))
    assert _tasks(world, cid) == [
        ("severe_call", "store_manager", _at(0, 11)),
        ("confirm_call", "customer_manager", _at(5, 10)),  # made at D+4 10:00, within 1 day
    ]
    # The win-back resumed at the resolution and went on with its escalation from there.
    churn_actions = [a for a, _, _ in world.decisions(churn["id"])]
    assert churn_actions[:5] == ["enrol", "send", "wait", "pause", "resume"]
    assert _tasks(world, cid, CHURN) == [("manager_call", "service_manager", _at(4, 15))]

    # The same day again creates nothing.
    before = world.counts()
    world.run(_day(4))
    assert world.counts() == before

    world.run(_day(33))  # catches up the week's and the month's waits
    assert world.touches(cid, BOOK) == [("care_gift", "wecom", _at(10, 10))]  # a week later
    assert _tasks(world, cid) == [
        ("severe_call", "store_manager", _at(0, 11)),
        ("confirm_call", "customer_manager", _at(5, 10)),
        ("upgrade_invite_call", "customer_manager", _at(35, 10)),  # made D+33, a month on
    ]
    (journey,) = world.journeys(cid, BOOK)
    assert (journey["status"], journey["end_reason"]) == ("completed", "end")
    assert world.touches(cid, BOOK) == [("care_gift", "wecom", _at(10, 10))]


def test_sla_by_severity_from_events_and_records(world: World) -> None:
    # Owners without a visit since their delivery two years ago: "lost" customers, whose
    # complaints are answered all the same.
    medium = world.owner(name="李娜", title="女士")
    light = world.owner(name="王芳", title="女士")
    severe = world.owner(name="赵刚")
    # Medium through the event path at 09:00 (its record is imported too, later the same day).
    world.event("complaint_opened", medium, local(D, 9), severity="medium", complaint_no="C1")
    _complaint(world, medium, "medium", local(D, 9), "C1")
    # Light and severe only as imported records: events derived at the daily run.
    _complaint(world, light, "light", local(D, 14), "C2")
    _complaint(world, severe, "severe", local(D, 20), "C3")
    world.run(D)
    assert _tasks(world, medium) == [("medium_call", "customer_manager", _at(0, 13))]
    assert _tasks(world, light) == [("light_contact", "advisor", _at(1, 14))]
    assert _tasks(world, severe) == [("severe_call", "store_manager", _at(0, 21))]
    # One journey each: the record of the medium complaint does not start a second one.
    for cid, trigger in ((medium, "medium"), (light, "light"), (severe, "severe")):
        (journey,) = world.journeys(cid, BOOK)
        assert (journey["trigger"], journey["status"], journey["step"]) == (
            trigger,
            "active",
            "resolved_check",
        )
        assert world.touches(cid, BOOK) == []
    before = world.counts()
    world.run(D)
    assert world.counts() == before


def test_td_reply_ends_winback_but_not_complaint_recovery(world: World) -> None:
    cid = _at_risk(world)
    world.run(D)
    complaint = _complaint(world, cid, "light", local(D, 10), "C1")
    world.event("complaint_opened", cid, local(D, 10), severity="light", complaint_no="C1")
    assert world.journeys(cid, CHURN)[0]["status"] == "paused"

    world.event("reply_keyword", cid, local(D, 11), keyword="TD", channel="sms")
    (churn,) = world.journeys(cid, CHURN)
    assert (churn["status"], churn["end_reason"]) == ("exited", "unsubscribed")
    (journey,) = world.journeys(cid, BOOK)
    assert journey["status"] == "active"

    # Resolved early on D+1: the recovery carries on with its confirmation call.
    _resolve(world, complaint, local(_day(1), 8))
    world.run(_day(1))
    assert _tasks(world, cid) == [
        ("light_contact", "advisor", _at(1, 10)),
        ("confirm_call", "customer_manager", _at(2, 10)),
    ]
    assert world.journeys(cid, BOOK)[0]["status"] == "active"
    assert world.tasks(cid, CHURN) == []
    assert world.journeys(cid, CHURN)[0]["status"] == "exited"


def test_winback_entered_during_an_open_complaint_waits_for_it(world: World) -> None:
    """Marketing stays quiet while a complaint is open, also for a journey that starts then."""
    cid = _at_risk(world)  # at risk (90 days without a visit) from D-10 on
    complaint = _complaint(world, cid, "medium", local(_day(-12), 10), "C1")
    world.run(_day(-12))
    assert _tasks(world, cid) == [("medium_call", "customer_manager", _at(-12, 14))]
    world.run(_day(-10))
    (churn,) = world.journeys(cid, CHURN)
    assert churn["enrolled_at"] is not None
    assert churn["status"] == "paused"
    assert world.touches(cid, CHURN) == []
    _resolve(world, complaint, local(_day(-9), 9))
    world.run(_day(-9))
    assert world.journeys(cid, CHURN)[0]["status"] == "active"
    assert world.touches(cid, CHURN) == [("wecom_offer", "wecom", _at(-9, 9))]
