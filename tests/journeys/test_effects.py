"""Which journeys a batch of events concerns, and that only those move to its moment first."""

from __future__ import annotations

import datetime as dt

import polars as pl
from tests.journeys.world import World, local

from baoke.journeys.catalog import load_catalog
from baoke.journeys.effects import concerned_customers
from baoke.journeys.engine import open_profiles
from baoke.journeys.event_files import store_events
from baoke.journeys.run import process_events
from baoke.journeys.steps import UTC
from baoke.profiles.engine import snapshot_path
from baoke.store import models as m

D = dt.date(2026, 11, 2)
BOOK = "churn_winback"
_MINUTE = dt.timedelta(minutes=1)


def _events(*rows: tuple[str, int | None, dt.datetime, str]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"type": kind, "customer_id": who, "occurred_at": at, "attributes": attributes}
            for kind, who, at, attributes in rows
        ],
        schema={
            "type": pl.String(),
            "customer_id": pl.Int64(),
            "occurred_at": UTC,
            "attributes": pl.String(),
        },
    )


def _at_risk(world: World) -> int:
    # Delivered two years ago, last visit 100 days before D: churn win-back enrols on D.
    return world.owner(visits=((D - dt.timedelta(days=100), 900),))


def test_the_customers_of_the_touches_and_tasks_reported_on_are_concerned(world: World) -> None:
    first, second, third, fourth = (world.owner() for _ in range(4))
    touch = world.insert(
        m.Touch,
        customer_id=second,
        channel="sms",
        status="sent",
        idempotency_key="k-touch",
        proposed_at=local(D),
    )
    task = world.insert(
        m.Task,
        customer_id=third,
        dealer_id=1,
        role="advisor",
        kind="call",
        title="回访",
        due_at=local(D, 12),
    )
    at = local(D, 9)
    batch = _events(
        ("wecom_friend_added", first, at, "{}"),
        # Receipts and call logs naming another customer's touch and task concern theirs too.
        ("touch_status", first, at, '{"touch": "k-touch", "status": "delivered"}'),
        ("touch_status", first, at, f'{{"touch": "{touch}", "status": "opened"}}'),
        ("call_outcome", first, at, f'{{"task_id": {task}, "outcome": "connected"}}'),
    )
    with world.engine.connect() as conn:
        concerned = concerned_customers(conn, batch)
        assert concerned is not None
        assert sorted(concerned.to_list()) == [first, second, third]
        assert fourth not in concerned.to_list()
        # A model's price change is about whoever is interested in the model: everyone.
        launch = _events(("price_change", None, at, '{"series": "星途"}'))
        assert concerned_customers(conn, pl.concat([batch, launch])) is None


def test_only_the_journeys_an_event_concerns_move_to_its_moment_first(world: World) -> None:
    told, other = _at_risk(world), _at_risk(world)
    world.run(D)
    # Both WeCom offers wait 24 hours, until the next midnight; one customer adds the
    # dealer's WeCom the next morning.
    at = local(D + dt.timedelta(days=1), 9)
    added = _events(("wecom_friend_added", told, at, "{}")).with_columns(
        pl.lit("added").alias("event_key"), pl.lit("test").alias("source")
    )
    with world.engine.begin() as conn:
        store_events(conn, added)
        catalog = load_catalog(conn, world.settings)
    with open_profiles(snapshot_path(world.settings)) as profiles:
        process_events(world.engine, catalog, profiles, at + _MINUTE, world.settings.zone)
    # The journey the event concerns reached its moment: at midnight the offer went
    # unanswered and the call was made a task. The other one is where the last run left it.
    (moved,) = world.journeys(told, BOOK)
    (waiting,) = world.journeys(other, BOOK)
    assert [a for a, _, _ in world.decisions(moved["id"])][:5] == [
        "enrol",
        "send",
        "wait",
        "fallback",
        "task",
    ]
    assert [a for a, _, _ in world.decisions(waiting["id"])] == ["enrol", "send", "wait"]
    # The rest of the day moves it on to the same decisions at the same moments.
    world.run(D + dt.timedelta(days=1))
    assert [(s, r, due) for s, r, due, _ in world.tasks(other, BOOK)] == [
        (s, r, due) for s, r, due, _ in world.tasks(told, BOOK)
    ]
    assert world.decisions(world.journeys(other, BOOK)[0]["id"]) == world.decisions(moved["id"])
