"""Entry rules and operator controls across playbooks, on a fake clock.

Holdout (kept out, goal still recorded), re-entry, cool-down, dealer scope, switching a
playbook off (no new entries; running journeys finish), a changed playbook (running journeys
stay on their version) and an unsubscribe (consent withdrawn, audited, journeys exit).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import polars as pl
from sqlalchemy import select
from tests.journeys.world import World, local

from baoke.journeys.catalog import set_enabled
from baoke.journeys.enrol import stable_share
from baoke.store import models as m

D = dt.date(2026, 6, 1)
CHURN = "churn_winback"


def _day(n: int) -> dt.date:
    return D + dt.timedelta(days=n)


def _at(n: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(_day(n), dt.time(hour, minute))


def _next_id_where(world: World, book: str, held: bool) -> None:
    """Make the next customer id one inside (``held``) or outside ``book``'s 10% holdout."""
    last = world._id()
    while (stable_share(pl.Series([last + 1]), book)[0] < 0.1) != held:
        last = world._id()


def _at_risk(world: World, *, held: bool = False, days: int = 100) -> int:
    """An owner whose last visit was ``days`` before D (at risk from 90 days on)."""
    _next_id_where(world, CHURN, held)
    cid = world.owner(visits=((D - dt.timedelta(days=days), 900),))
    assert (stable_share(pl.Series([cid]), CHURN)[0] < 0.1) == held
    return cid


def _custom(world: World, name: str, body: str) -> None:
    """Write (or rewrite) a custom playbook into the data directory."""
    folder = world.data_dir / "playbooks"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(body, encoding="utf-8")


def _welcome(name: str, entry: str = "", steps: str = "") -> str:
    """A care playbook started by a WeCom friend add: a welcome message, then ``steps``."""
    return f"""\
name: {name}
label: 企微欢迎
kind: care
triggers:
  - event: wecom_friend_added
{entry}steps:
  - id: hello
    send: {{channel: wecom, template: hello}}
{steps}templates:
  hello:
    wecom: "{{{{ greeting }}}}，您好，我是您的专属顾问{{{{ advisor_name }}}}。"
  tips:
    wecom: "{{{{ greeting }}}}，用车小贴士：冬季胎压会下降，记得定期检查。"
  offer:
    wecom: "{{{{ greeting }}}}，新朋友专享：{{{{ offer_detail }}}}。"
"""


def _added(world: World, cid: int, at: dt.datetime) -> None:
    world.event("wecom_friend_added", cid, at, channel_code="store_qr")


def _audit(world: World, action: str) -> list[dict[str, Any]]:
    with world.engine.connect() as conn:
        rows = conn.execute(
            select(m.AuditEntry.actor, m.AuditEntry.entity_id, m.AuditEntry.detail)
            .where(m.AuditEntry.action == action)
            .order_by(m.AuditEntry.id)
        ).all()
    out = []
    for actor, entity_id, detail in rows:
        data = json.loads(detail) if isinstance(detail, str) else detail
        out.append({"actor": actor, "entity_id": entity_id, **(data or {})})
    return out


def _consents(world: World, cid: int) -> dict[str, bool]:
    with world.engine.connect() as conn:
        rows = conn.execute(
            select(m.Consent.channel, m.Consent.granted).where(m.Consent.customer_id == cid)
        ).all()
    return {channel: bool(granted) for channel, granted in rows}


# --------------------------------------------------------------------------------------------
# Holdout
# --------------------------------------------------------------------------------------------


def test_holdout_receives_nothing_but_its_goal_is_recorded(world: World) -> None:
    held = _at_risk(world, held=True)
    treated = _at_risk(world)
    world.run(D)
    (journey,) = world.journeys(held, CHURN)
    assert (journey["status"], journey["step"], journey["finished_at"]) == ("holdout", None, None)
    assert [a for a, _, _ in world.decisions(journey["id"])] == ["holdout"]
    assert world.touches(held, CHURN) == []
    assert world.touches(treated, CHURN) == [("wecom_offer", "wecom", _at(0))]

    world.run(_day(1))  # the treated customer's escalation goes on; the held-out one's does not
    assert world.tasks(held, CHURN) == []
    assert len(world.tasks(treated, CHURN)) == 1

    # The held-out customer comes in for maintenance anyway: the goal is recorded.
    world.event("service_visit", held, local(_day(6), 10), order_type="maintenance")
    (journey,) = world.journeys(held, CHURN)
    assert (journey["status"], journey["goal_met"], journey["end_reason"]) == (
        "holdout",
        True,
        "goal:visit",
    )
    assert journey["finished_at"] is not None
    assert world.touches(held, CHURN) == []


# --------------------------------------------------------------------------------------------
# Re-entry, cool-down, dealer scope (custom playbooks; events only, no daily run needed)
# --------------------------------------------------------------------------------------------


def test_no_re_entry_by_default(world: World) -> None:
    _custom(world, "welcome_once", _welcome("welcome_once"))
    cid = world.owner()
    _added(world, cid, local(D, 10))
    assert world.touches(cid, "welcome_once") == [("hello", "wecom", _at(0, 10))]
    _added(world, cid, local(_day(40), 10))  # deleted and added again, much later
    assert len(world.journeys(cid, "welcome_once")) == 1
    assert len(world.touches(cid, "welcome_once")) == 1


def test_cool_down_counts_from_the_end_of_the_last_journey(world: World) -> None:
    book = "welcome_cooling"
    _custom(world, book, _welcome(book, entry="entry: {re_entry: true, cooldown: 7d}\n"))
    cid = world.owner()
    _added(world, cid, local(D, 10))
    _added(world, cid, local(_day(3), 10))  # 3 days after the journey ended: cooling down
    assert len(world.journeys(cid, book)) == 1
    _added(world, cid, local(_day(8), 10))
    assert world.touches(cid, book) == [
        ("hello", "wecom", _at(0, 10)),
        ("hello", "wecom", _at(8, 10)),
    ]
    assert [j["status"] for j in world.journeys(cid, book)] == ["completed", "completed"]


def test_a_journey_that_did_nothing_starts_no_cool_down(world: World) -> None:
    book = "welcome_by_code"
    _custom(
        world,
        book,
        f"""\
name: {book}
label: 门店活码欢迎
kind: care
triggers:
  - {{id: store, event: wecom_friend_added, where: {{channel_code: store_qr}}}}
  - {{id: elsewhere, event: wecom_friend_added, where: {{channel_code: [expo_qr, web_qr]}}}}
entry: {{re_entry: true, cooldown: 7d}}
steps:
  - id: route
    branch: {{trigger: store, then: hello, else: end}}
  - id: hello
    send: {{channel: wecom, template: hello}}
templates:
  hello:
    wecom: "{{{{ greeting }}}}，欢迎来店，我是{{{{ advisor_name }}}}。"
""",
    )
    cid = world.owner()
    world.event("wecom_friend_added", cid, local(D, 10), channel_code="expo_qr")
    world.event("wecom_friend_added", cid, local(_day(1), 10), channel_code="store_qr")
    world.event("wecom_friend_added", cid, local(_day(2), 10), channel_code="store_qr")
    # The first journey ended at its branch: the second enters at once; the third is cooling.
    assert [(j["trigger"], j["status"]) for j in world.journeys(cid, book)] == [
        ("elsewhere", "completed"),
        ("store", "completed"),
    ]
    assert world.touches(cid, book) == [("hello", "wecom", _at(1, 10))]


def test_dealer_scope(world: World) -> None:
    book = "welcome_store2"
    _custom(world, book, _welcome(book, entry="entry: {dealers: [2]}\n"))
    world.insert(m.Dealer, id=2, code="D002", name="杭州滨江店", brand="星途", phone="0571-1")
    here = world.owner()
    there = world.insert(
        m.Customer, mobile="+8613700000002", name="吴磊", title="先生", home_dealer_id=2
    )
    _added(world, here, local(D, 10))
    _added(world, there, local(D, 11))
    assert world.journeys(here, book) == []
    assert world.touches(there, book) == [("hello", "wecom", _at(0, 11))]
    (journey,) = world.journeys(there, book)
    assert journey["dealer_id"] == 2


# --------------------------------------------------------------------------------------------
# Operator controls
# --------------------------------------------------------------------------------------------


def test_disabled_playbook_takes_no_one_new_but_running_journeys_finish(world: World) -> None:
    first = _at_risk(world, days=100)  # at risk on D
    second = _at_risk(world, days=89)  # at risk from D+1 (90 days)
    world.run(D)
    assert world.touches(first, CHURN) == [("wecom_offer", "wecom", _at(0))]
    with world.engine.begin() as conn:
        set_enabled(conn, world.settings, CHURN, False, actor="ops", reason="offer budget spent")
    assert _audit(world, "playbook.disable") == [
        {"actor": "ops", "entity_id": CHURN, "reason": "offer budget spent"}
    ]

    world.run(_day(1))
    with world.engine.connect() as conn:
        entered = conn.execute(
            select(m.SegmentMembership.entered_on).where(
                m.SegmentMembership.customer_id == second,
                m.SegmentMembership.segment == "at_risk",
            )
        ).scalar_one()
    assert entered == _day(1)  # the second customer became at risk, but nobody new enters
    assert world.journeys(second, CHURN) == []
    # The journey under way goes on: no reply in 24 h, so the service manager calls.
    assert [(s, r, due) for s, r, due, _ in world.tasks(first, CHURN)] == [
        ("manager_call", "service_manager", _at(2))
    ]
    world.run(_day(2))
    (journey,) = world.journeys(first, CHURN)
    assert journey["status"] == "completed"


def test_changed_playbook_keeps_running_journeys_on_their_version(world: World) -> None:
    book = "welcome_series"
    v1 = _welcome(
        book,
        steps="  - id: wait_2d\n    wait: 2d\n  - id: tips\n"
        "    send: {channel: wecom, template: tips}\n",
    )
    _custom(world, book, v1)
    first = world.owner()
    _added(world, first, local(D, 10))
    (old,) = world.journeys(first, book)

    # The operator changes the playbook: after one day an offer instead of tips after two.
    v2 = _welcome(
        book,
        steps="  - id: wait_1d\n    wait: 1d\n  - id: offer\n"
        "    send: {channel: wecom, template: offer}\n",
    )
    _custom(world, book, v2)
    second = world.owner(name="郑洁", title="女士")
    _added(world, second, local(D, 11))
    (new,) = world.journeys(second, book)
    assert new["version"] != old["version"]

    world.run(_day(2))
    assert world.touches(first, book) == [
        ("hello", "wecom", _at(0, 10)),
        ("tips", "wecom", _at(2, 10)),
    ]
    assert world.touches(second, book) == [
        ("hello", "wecom", _at(0, 11)),
        ("offer", "wecom", _at(1, 11)),
    ]
    with world.engine.connect() as conn:
        versions = dict(
            conn.execute(
                select(m.Touch.customer_id, m.Touch.version).where(m.Touch.step != "hello")
            ).all()
        )
        stored = {
            r[0]
            for r in conn.execute(
                select(m.PlaybookVersion.version).where(m.PlaybookVersion.name == book)
            ).all()
        }
    assert versions == {first: old["version"], second: new["version"]}
    assert stored == {old["version"], new["version"]}
    for journey in (*world.journeys(first, book), *world.journeys(second, book)):
        assert journey["status"] == "completed"


# --------------------------------------------------------------------------------------------
# Unsubscribe
# --------------------------------------------------------------------------------------------


def test_td_reply_withdraws_consent_is_audited_and_exits(world: World) -> None:
    sms_td = _at_risk(world)
    wecom_td = _at_risk(world)
    happy = _at_risk(world)
    world.run(D)
    world.event("reply_keyword", sms_td, local(D, 12), keyword=" td ")  # SMS reply by default
    world.event("reply_keyword", wecom_td, local(D, 12, 5), keyword="退订", channel="wecom")
    world.event("reply_keyword", happy, local(D, 12, 10), keyword="好的，周六过来", channel="wecom")

    assert _consents(world, sms_td) == {
        "sms": False,
        "wecom": True,
        "push": True,
        "email": True,
        "phone": True,
    }
    assert _consents(world, wecom_td)["wecom"] is False
    assert _consents(world, wecom_td)["sms"] is True
    assert set(_consents(world, happy).values()) == {True}
    audit = _audit(world, "consent.withdraw")
    assert [(a["actor"], a["entity_id"], a["channel"], a["via"]) for a in audit] == [
        ("customer", str(sms_td), "sms", "reply_keyword"),
        ("customer", str(wecom_td), "wecom", "reply_keyword"),
    ]
    for cid in (sms_td, wecom_td):
        (journey,) = world.journeys(cid, CHURN)
        assert (journey["status"], journey["end_reason"]) == ("exited", "unsubscribed")
        assert world.decisions(journey["id"])[-1][0] == "exit"

    world.run(_day(1))
    for cid in (sms_td, wecom_td, happy):
        assert world.tasks(cid, CHURN) == []  # the reply ended the happy one's escalation
    (journey,) = world.journeys(happy, CHURN)
    assert (journey["status"], journey["end_reason"]) == ("completed", "end")
