"""Lost-lead reactivation on a fake clock: the right message for the lost reason and the event.

Prospects whose latest lead was lost (战败) hear about their model when something changes:
price-lost leads on a price change, configuration or delivery-time losses when stock arrives,
anyone on a new model launch; leads lost for an unknown reason get light care when they enter
the segment. A reply within 3 days goes to a sales consultant; a test drive ends the journey.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
from sqlalchemy import select
from tests.journeys.world import World, local

from baoke.journeys.enrol import stable_share
from baoke.store import models as m

D = dt.date(2026, 6, 1)
BOOK = "lost_lead_reactivation"
MODEL = "灵犀EV 长续航版"


def _day(n: int) -> dt.date:
    return D + dt.timedelta(days=n)


def _at(n: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(_day(n), dt.time(hour, minute))


def _prospect(world: World, reason: str | None, *, model: str = MODEL, status: str = "lost") -> int:
    """A prospect (no car) whose lead for ``model`` was lost 20 days before D for ``reason``.

    The id is chosen outside the playbook's 10% holdout, so the journey really runs.
    """
    cid = world._id()
    while stable_share(pl.Series([cid]), BOOK)[0] < 0.1:
        cid = world._id()
    world.insert(
        m.Customer,
        id=cid,
        mobile=f"+86139{cid:08d}",
        name="陈静",
        title="女士",
        home_dealer_id=1,
    )
    world.insert(
        m.Lead,
        lead_no=f"L{cid}",
        dealer_id=1,
        customer_id=cid,
        name="陈静",
        mobile=f"+86139{cid:08d}",
        model_of_interest=model,
        stage="test_drive",
        status=status,
        lost_reason=reason if status == "lost" else None,
        created_on=D - dt.timedelta(days=60),
        lost_on=D - dt.timedelta(days=20) if status == "lost" else None,
    )
    for channel in ("sms", "wecom", "push"):
        world.insert(
            m.Consent,
            customer_id=cid,
            channel=channel,
            purpose="marketing",
            granted=True,
            basis="written",
            granted_at=local(D - dt.timedelta(days=60)),
        )
    world.insert(
        m.WecomRelation,
        customer_id=cid,
        staff_id=1,
        external_userid=f"wm{cid}",
        added_at=local(D - dt.timedelta(days=60), 12),
    )
    return cid


def _tasks(world: World, cid: int) -> list[tuple[str, str, dt.datetime]]:
    return [(s, r, due) for s, r, due, _ in world.tasks(cid, BOOK)]


def test_price_change_offer_then_reply_goes_to_sales(world: World) -> None:
    price = _prospect(world, "price")
    still_open = _prospect(world, None, status="open")  # same model, lead not lost
    other_model = _prospect(world, "price", model="穹岳 2.0T 七座")
    world.run(D)
    for cid in (price, still_open, other_model):
        assert world.journeys(cid, BOOK) == []

    world.event("price_change", None, local(D, 10), model=MODEL, series="灵犀EV")
    assert world.touches(price, BOOK) == [("price_offer", "wecom,sms", _at(0, 10))]
    assert world.touches(still_open, BOOK) == []  # audience: only lost leads
    assert world.journeys(still_open, BOOK) == []
    assert world.journeys(other_model, BOOK) == []  # another model's price is not news
    (journey,) = world.journeys(price, BOOK)
    assert (journey["trigger"], journey["status"], journey["step"]) == (
        "price_change",
        "active",
        "price_follow_up",
    )

    # She replies the next morning: a sales consultant follows up within a day.
    world.event("reply_keyword", price, local(_day(1), 9, 30), keyword="试驾", channel="wecom")
    assert _tasks(world, price) == [("sales_call", "sales_consultant", _at(2, 9, 30))]
    (journey,) = world.journeys(price, BOOK)
    assert (journey["status"], journey["end_reason"]) == ("completed", "end")

    world.run(_day(1))
    before = world.counts()
    world.run(_day(1))
    assert world.counts() == before
    assert len(world.touches(price, BOOK)) == 1


def test_stock_arrival_only_for_configuration_and_delivery_time(world: World) -> None:
    configuration = _prospect(world, "configuration")
    delivery_time = _prospect(world, "delivery_time")
    price = _prospect(world, "price")
    world.run(D)
    # The event names the series only: leads whose model contains it are interested.
    world.event("stock_arrival", None, local(D, 10), series="灵犀EV")
    notice = [("stock_notice", "wecom,sms", _at(0, 10))]
    assert world.touches(configuration, BOOK) == notice
    assert world.touches(delivery_time, BOOK) == notice
    assert world.touches(price, BOOK) == []
    (journey,) = world.journeys(price, BOOK)
    assert (journey["status"], journey["end_reason"]) == ("completed", "end")

    # No reply in 3 days: the journeys end without a task.
    world.run(_day(3))
    for cid in (configuration, delivery_time):
        (journey,) = world.journeys(cid, BOOK)
        assert journey["status"] == "completed"
        assert world.tasks(cid, BOOK) == []
    before = world.counts()
    world.run(_day(3))
    assert world.counts() == before

    # A week later the model's price drops: the price-lost lead, who got nothing from the stock
    # arrival, hears about it now.
    world.event("price_change", None, local(_day(7), 10), model=MODEL)
    assert world.touches(price, BOOK) == [("price_offer", "wecom,sms", _at(7, 10))]
    # The others were contacted 7 days ago: still in their 30-day cool-down.
    assert len(world.journeys(configuration, BOOK)) == 1


def test_new_model_launch_news_and_test_drive_goal(world: World) -> None:
    competitor = _prospect(world, "competitor")
    world.run(D)
    world.event("new_model_launch", None, local(D, 10), series="灵犀EV")
    assert world.touches(competitor, BOOK) == [("new_model_news", "wecom,push", _at(0, 10))]
    # A test drive two days later meets the goal while the journey waits for a reply.
    world.event("test_drive", competitor, local(_day(2), 15), model=MODEL)
    (journey,) = world.journeys(competitor, BOOK)
    assert (journey["status"], journey["goal_met"], journey["end_reason"]) == (
        "completed",
        True,
        "goal:test_drive",
    )
    world.run(_day(4))
    assert world.tasks(competitor, BOOK) == []
    assert len(world.touches(competitor, BOOK)) == 1


def test_unknown_reason_leads_get_light_care(world: World) -> None:
    unknown = _prospect(world, "unknown")
    unrecorded = _prospect(world, None)
    price = _prospect(world, "price")
    world.run(D)  # the first refresh: all three enter their lost-lead segments
    care = [("light_care", "wecom,sms", _at(0, 0))]
    assert world.touches(unknown, BOOK) == care
    assert world.touches(unrecorded, BOOK) == care
    assert world.touches(price, BOOK) == []  # lost_leads_price is no trigger
    for cid in (unknown, unrecorded):
        (journey,) = world.journeys(cid, BOOK)
        assert (journey["trigger"], journey["status"]) == ("lost_leads_unknown", "completed")
    with world.engine.connect() as conn:
        priority = conn.execute(
            select(m.Touch.priority).where(m.Touch.customer_id == unknown)
        ).scalar_one()
    assert priority == "care"
    before = world.counts()
    world.run(D)
    assert world.counts() == before
