"""Unit tests of the contact-policy arbiter, one rule at a time, on small hand-made frames.

Each test asserts the outcome, the rule and the recorded reason (with its numbers), since the
reason is what an operator reads in ``baoke policy explain``. The business day is Monday
2026-11-23 in Asia/Shanghai (UTC+8, no DST): local 00:00 is 2026-11-22 16:00 UTC.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from baoke.policy.arbiter import (
    ACCESS_SCHEMA,
    CANDIDATE_SCHEMA,
    CUSTOMER_SCHEMA,
    DECISION_SCHEMA,
    MIX_SCHEMA,
    SPEND_SCHEMA,
    STATS_SCHEMA,
    USAGE_SCHEMA,
    Inputs,
    Plan,
    arbitrate,
    holdout_share,
)
from baoke.policy.settings import ChannelChoice, PolicySettings
from baoke.touches import CHANNELS

ZONE = ZoneInfo("Asia/Shanghai")
DAY = dt.date(2026, 11, 23)  # a Monday
DEFAULT = PolicySettings()

Row = dict[str, Any]


def at(hour: int, minute: int = 0, day: dt.date = DAY) -> dt.datetime:
    """A local time of ``day`` as a UTC moment."""
    return dt.datetime.combine(day, dt.time(hour, minute), ZONE).astimezone(dt.UTC)


def _ids(pick: Any, n: int) -> list[int]:
    pool = pl.Series(range(1, 2_000))
    shares = holdout_share(pool)
    return [int(i) for i, s in zip(pool, shares, strict=True) if pick(s)][:n]


# Customers well outside any holdout used here, and some inside the default 5%.
A, B, C, D = _ids(lambda s: s >= 0.5, 4)
HELD, HELD_2 = _ids(lambda s: s < 0.03, 2)


def share_of(customer: int) -> float:
    return float(holdout_share(pl.Series([customer]))[0])


def cand(
    cid: int,
    customer: int = A,
    *,
    priority: str = "retention",
    channels: Sequence[str] = ("sms",),
    moment: dt.datetime | None = None,
    proposed_at: dt.datetime | None = None,
    playbook: str = "pb",
    step: str = "s1",
    on_collision: str = "defer",
    task: bool = False,
) -> Row:
    moment = moment or at(0)
    return {
        "candidate_id": cid,
        "is_task": task,
        "customer_id": customer,
        "playbook": playbook,
        "step": step,
        "template": f"{playbook}.{step}",
        "priority": priority,
        "channels": list(channels),
        "moment": moment,
        "proposed_at": proposed_at or moment,
        "on_collision": on_collision,
    }


def call(cid: int, customer: int = A, **kw: Any) -> Row:
    """A call task proposed by a playbook (negative id, phone only, dropped on collision)."""
    return cand(-cid, customer, channels=("phone",), task=True, on_collision="drop", **kw)


def person(
    customer: int,
    tier: str = "mid",
    hours: tuple[dt.time, dt.time] | None = None,
    complaint: dt.datetime | None = None,
) -> Row:
    return {
        "customer_id": customer,
        "tier": tier,
        "contact_from": hours[0] if hours else None,
        "contact_to": hours[1] if hours else None,
        "complaint_since": complaint,
    }


GRANTED_AT = at(10, day=dt.date(2026, 1, 5))


def access(
    customer: int,
    channel: str,
    *,
    reachable: bool = True,
    why: str | None = None,
    consent: str = "granted",
    consent_at: dt.datetime | None = GRANTED_AT,
    detail: str | None = "written authorisation at purchase",
) -> Row:
    return {
        "customer_id": customer,
        "channel": channel,
        "reachable": reachable,
        "unreachable_why": why,
        "consent": consent,
        "consent_at": consent_at,
        "consent_detail": detail,
    }


def used(
    customer: int,
    channel: str,
    when: dt.datetime,
    priority: str = "retention",
    *,
    task: bool = False,
) -> Row:
    return {
        "customer_id": customer,
        "channel": channel,
        "priority": priority,
        "is_task": task,
        "at": when,
    }


def frame(rows: Iterable[Row], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=schema, orient="row")


def run(
    candidates: Sequence[Row],
    *,
    customers: Sequence[Row] | None = None,
    access_rows: Sequence[Row] | None = None,
    usage: Sequence[Row] = (),
    spend: dict[str, int] | None = None,
    mix: Sequence[tuple[str, str, int]] = (),
    stats: Sequence[tuple[str, str, int, int]] = (),
    policy: PolicySettings = DEFAULT,
    not_before: dt.datetime | None = None,
    day: dt.date = DAY,
) -> Plan:
    """Arbitrate ``candidates``; by default every customer is mid tier, reachable and consenting
    on every channel, with nothing used or spent."""
    people = sorted({c["customer_id"] for c in candidates})
    if customers is None:
        customers = [person(p) for p in people]
    if access_rows is None:
        access_rows = [access(p, ch) for p in people for ch in CHANNELS]
    inputs = Inputs(
        day=day,
        zone=ZONE,
        candidates=frame(candidates, CANDIDATE_SCHEMA),
        customers=frame(customers, CUSTOMER_SCHEMA),
        access=frame(access_rows, ACCESS_SCHEMA),
        usage=frame(usage, USAGE_SCHEMA),
        spend=frame(
            [{"playbook": k, "spent_fen": v} for k, v in (spend or {}).items()], SPEND_SCHEMA
        ),
        mix=frame(({"tier": t, "channel": c, "n": n} for t, c, n in mix), MIX_SCHEMA),
        stats=frame(
            ({"tier": t, "channel": c, "sent": s, "responded": r} for t, c, s, r in stats),
            STATS_SCHEMA,
        ),
        not_before=not_before,
    )
    plan = arbitrate(inputs, policy)
    assert plan.decisions.schema == pl.Schema(DECISION_SCHEMA)
    assert sorted(plan.decisions["candidate_id"]) == sorted(c["candidate_id"] for c in candidates)
    return plan


def decision(plan: Plan, cid: int) -> Row:
    rows = plan.decisions.filter(pl.col("candidate_id") == cid).to_dicts()
    assert len(rows) == 1, rows
    return rows[0]


def check(
    plan: Plan,
    cid: int,
    outcome: str,
    rule: str,
    reason: str,
    *,
    channel: str | None = None,
    send_at: dt.datetime | None = None,
    cost: int | None = None,
) -> Row:
    row = decision(plan, cid)
    assert (row["outcome"], row["rule"], row["reason"]) == (outcome, rule, reason)
    if channel is not None:
        assert row["channel"] == channel
    if send_at is not None:
        assert row["send_at"] == send_at
    if cost is not None:
        assert row["cost_fen"] == cost
    return row


def sent(channel: str, hhmm: str, expected: str, cost: str, skipped: str = "") -> str:
    """The reason of a scheduled touch."""
    tail = f" (skipped: {skipped})" if skipped else ""
    return f"{channel} at 2026-11-23 {hhmm}: expected response {expected}%, cost {cost}{tail}"


SMS_0800 = sent("sms", "08:00", "1.2", "¥0.07")
WECOM_0800 = sent("wecom", "08:00", "11.5", "¥0.02")
TOMORROW_0800 = at(8, day=DAY + dt.timedelta(days=1))


def test_the_customer_ids_chosen_for_the_tests_sit_where_they_should() -> None:
    assert all(share_of(c) >= 0.5 for c in (A, B, C, D))
    assert all(share_of(c) < 0.03 for c in (HELD, HELD_2))
    assert at(0) == dt.datetime(2026, 11, 22, 16, tzinfo=dt.UTC)


# --------------------------------------------------------------------------------------------
# Expiry
# --------------------------------------------------------------------------------------------


def test_a_touch_waiting_longer_than_max_defer_days_expires() -> None:
    old = cand(1, proposed_at=at(9, day=dt.date(2026, 11, 15)))  # 8 days
    border = cand(2, B, proposed_at=at(9, day=dt.date(2026, 11, 16)))  # 7 days
    plan = run([old, border])
    check(plan, 1, "suppressed", "expired", "expired: waiting since 2026-11-15, longer than 7 days")
    check(plan, 2, "scheduled", "sent", SMS_0800)


def test_expiry_counts_local_days_and_follows_the_setting() -> None:
    # 2026-11-15 17:00 UTC is 2026-11-16 01:00 in Shanghai: waited 7 local days, not 8.
    local_16th = cand(1, proposed_at=dt.datetime(2026, 11, 15, 17, tzinfo=dt.UTC))
    plan = run([local_16th])
    check(plan, 1, "scheduled", "sent", SMS_0800)
    strict = PolicySettings(max_defer_days=0)
    plan = run([local_16th, cand(2, B, priority="service")], policy=strict)
    check(plan, 1, "suppressed", "expired", "expired: waiting since 2026-11-16, longer than 0 days")
    check(plan, 2, "scheduled", "sent", SMS_0800)


def test_service_notices_expire_too() -> None:
    plan = run([cand(1, priority="service", proposed_at=at(8, day=dt.date(2026, 11, 1)))])
    check(plan, 1, "suppressed", "expired", "expired: waiting since 2026-11-01, longer than 7 days")


# --------------------------------------------------------------------------------------------
# Holdout
# --------------------------------------------------------------------------------------------


def test_global_holdout_stops_marketing_and_records_the_draw() -> None:
    plan = run(
        [
            cand(1, HELD, priority="marketing"),
            cand(2, HELD_2, priority="care"),
            cand(3, A, priority="marketing"),
        ]
    )
    for cid, customer in ((1, HELD), (2, HELD_2)):
        draw = round(share_of(customer), 4)
        check(
            plan,
            cid,
            "suppressed",
            "holdout",
            f"holdout: in the 5% global holdout (draw {draw}): no marketing, to measure lift",
        )
    check(plan, 3, "scheduled", "sent", SMS_0800)


def test_service_notices_are_exempt_from_the_holdout() -> None:
    plan = run([cand(1, HELD, priority="service"), call(2, HELD_2, priority="service")])
    check(plan, 1, "scheduled", "sent", SMS_0800)
    assert decision(plan, -2)["outcome"] == "scheduled"


def test_holdout_share_setting_moves_the_line() -> None:
    share = share_of(A)
    wide = PolicySettings(holdout=min(0.99, share + 0.01))
    plan = run([cand(1, A, priority="marketing")], policy=wide)
    assert decision(plan, 1)["rule"] == "holdout"
    assert f"(draw {round(share, 4)})" in decision(plan, 1)["reason"]
    none = PolicySettings(holdout=0.0)
    plan = run([cand(1, HELD, priority="marketing")], policy=none)
    check(plan, 1, "scheduled", "sent", SMS_0800)


# --------------------------------------------------------------------------------------------
# Complaints
# --------------------------------------------------------------------------------------------


def test_an_open_complaint_pauses_marketing_but_not_service() -> None:
    since = at(10, 30, day=dt.date(2026, 11, 20))
    plan = run(
        [
            cand(1, priority="marketing"),
            cand(2, priority="care", playbook="care"),
            cand(3, priority="service", playbook="svc"),
            call(4, priority="retention"),
        ],
        customers=[person(A, complaint=since)],
    )
    reason = "complaint: open since 2026-11-20 10:30: marketing paused until it is resolved"
    for cid in (1, 2, -4):
        check(plan, cid, "suppressed", "complaint", reason)
    check(plan, 3, "scheduled", "sent", SMS_0800)


# --------------------------------------------------------------------------------------------
# Reachability and consent
# --------------------------------------------------------------------------------------------


def test_an_unreachable_channel_falls_to_the_next_in_the_steps_preference() -> None:
    plan = run(
        [cand(1, channels=("wecom", "sms"))],
        access_rows=[
            access(A, "wecom", reachable=False, why="not a WeCom friend (deleted on 2026-11-02)"),
            access(A, "sms"),
        ],
    )
    check(
        plan,
        1,
        "scheduled",
        "sent",
        sent("sms", "08:00", "1.2", "¥0.07", "wecom not a WeCom friend (deleted on 2026-11-02)"),
        channel="sms",
        cost=7,
    )


def test_a_missing_access_row_is_unreachable_with_the_channels_default_reason() -> None:
    plan = run([cand(1, channels=("wecom", "sms"))], access_rows=[access(A, "sms")])
    check(
        plan,
        1,
        "scheduled",
        "sent",
        sent("sms", "08:00", "1.2", "¥0.07", "wecom not a WeCom friend"),
    )


def test_no_usable_channel_is_suppressed_with_each_channels_reason() -> None:
    plan = run(
        [cand(1, channels=("wecom", "sms", "email", "push"))],
        access_rows=[
            access(A, "wecom", reachable=False, why=None),
            access(A, "sms", consent="none", consent_at=None, detail=None),
            access(A, "push", reachable=False, why="push not enabled (no app use in 90 days)"),
        ],
    )
    check(
        plan,
        1,
        "suppressed",
        "unreachable",
        "no usable channel: wecom: not a WeCom friend; sms: no marketing consent on sms; "
        "email: no e-mail address; push: push not enabled (no app use in 90 days)",
    )


def test_the_first_channels_block_names_the_rule() -> None:
    plan = run(
        [cand(1, channels=("sms", "wecom")), cand(2, B, channels=())],
        access_rows=[
            access(A, "sms", consent="none"),
            access(A, "wecom", reachable=False, why="not a WeCom friend"),
        ],
    )
    check(
        plan,
        1,
        "suppressed",
        "consent",
        "no usable channel: sms: no marketing consent on sms; wecom: not a WeCom friend",
    )
    check(plan, 2, "suppressed", "no_channel", "no usable channel: the step names none")


def test_an_unsubscribe_blocks_even_service_notices() -> None:
    # 07:10 on the 10th in Shanghai is still the 9th in UTC: the reason gives the local date.
    withdrawn = access(
        A, "sms", consent="withdrawn", consent_at=at(7, 10, day=dt.date(2026, 11, 10)), detail="TD"
    )
    plan = run(
        [cand(1, priority="service"), call(2, priority="service")],
        access_rows=[
            withdrawn,
            access(A, "phone", consent="withdrawn", consent_at=at(9), detail=None),
        ],
    )
    check(
        plan,
        1,
        "suppressed",
        "unsubscribed",
        "no usable channel: sms: unsubscribed on 2026-11-10 (TD)",
    )
    check(
        plan,
        -2,
        "suppressed",
        "unsubscribed",
        "no usable channel: phone: unsubscribed on 2026-11-23",
    )


def test_an_unsubscribe_on_one_channel_leaves_the_others() -> None:
    plan = run(
        [cand(1, priority="service", channels=("sms", "wecom"))],
        access_rows=[
            access(A, "sms", consent="withdrawn", consent_at=at(12, day=dt.date(2026, 11, 10))),
            access(A, "wecom"),
        ],
    )
    skipped = "sms unsubscribed on 2026-11-10 (written authorisation at purchase)"
    check(plan, 1, "scheduled", "sent", sent("wecom", "08:00", "11.5", "¥0.02", skipped))


def test_service_needs_no_marketing_consent_on_sms_or_phone_but_does_on_email() -> None:
    no_consent = [
        access(A, ch, consent="none", consent_at=None, detail=None) for ch in ("sms", "phone")
    ] + [access(A, "email", consent="none", consent_at=None, detail=None)]
    plan = run(
        [
            cand(1, priority="service", channels=("sms",)),
            cand(2, priority="service", channels=("email",), playbook="mail"),
            call(3, priority="service"),
            cand(4, priority="care", channels=("sms",), playbook="care"),
        ],
        access_rows=no_consent,
    )
    check(plan, 1, "scheduled", "sent", SMS_0800, channel="sms")
    check(
        plan, 2, "suppressed", "consent", "no usable channel: email: no marketing consent on email"
    )
    assert decision(plan, -3)["outcome"] == "scheduled"
    check(plan, 4, "suppressed", "consent", "no usable channel: sms: no marketing consent on sms")


def test_service_basis_channels_is_a_setting() -> None:
    policy = PolicySettings(service_basis_channels=("email",))
    plan = run(
        [cand(1, priority="service", channels=("sms", "email"))],
        access_rows=[access(A, ch, consent="none") for ch in ("sms", "email")],
        policy=policy,
    )
    skipped = "sms no marketing consent on sms"
    check(plan, 1, "scheduled", "sent", sent("email", "08:00", "2.0", "¥0.04", skipped))


# --------------------------------------------------------------------------------------------
# Quiet hours
# --------------------------------------------------------------------------------------------


def test_a_candidate_at_midnight_goes_at_the_windows_opening() -> None:
    plan = run([cand(1, moment=at(0)), cand(2, B, moment=at(13, 15))])
    check(plan, 1, "scheduled", "sent", SMS_0800, send_at=at(8))
    check(plan, 2, "scheduled", "sent", sent("sms", "13:15", "1.2", "¥0.07"), send_at=at(13, 15))


def test_the_customers_own_hours_narrow_the_window() -> None:
    plan = run(
        [cand(1, A), cand(2, B, moment=at(19))],
        customers=[
            person(A, hours=(dt.time(10), dt.time(18))),
            person(B, hours=(dt.time(10), dt.time(18))),
        ],
    )
    check(plan, 1, "scheduled", "sent", sent("sms", "10:00", "1.2", "¥0.07"), send_at=at(10))
    check(
        plan,
        2,
        "deferred",
        "quiet_hours",
        "quiet hours: the window 10:00-18:00, customer accepts 10:00-18:00 has closed for the "
        "day; moved to 2026-11-24 10:00",
        send_at=at(10, day=DAY + dt.timedelta(days=1)),
    )


def test_a_customer_window_wrapping_midnight_narrows_to_the_piece_inside_the_policy() -> None:
    plan = run(
        [cand(1, A), cand(2, B), cand(3, C)],
        customers=[
            # 20:00-06:00: only 20:00-21:00 is inside the quiet hours.
            person(A, hours=(dt.time(20), dt.time(6))),
            # 19:00-09:30: the morning piece 08:00-09:30 comes first in the day.
            person(B, hours=(dt.time(19), dt.time(9, 30))),
            # A window equal at both ends means no restriction.
            person(C, hours=(dt.time(9), dt.time(9))),
        ],
    )
    check(plan, 1, "scheduled", "sent", sent("sms", "20:00", "1.2", "¥0.07"), send_at=at(20))
    check(plan, 2, "scheduled", "sent", SMS_0800, send_at=at(8))
    check(plan, 3, "scheduled", "sent", SMS_0800, send_at=at(8))


def test_a_candidate_after_the_window_is_deferred_to_the_next_days_opening() -> None:
    plan = run([cand(1, moment=at(21, 30)), cand(2, B, moment=at(21))])
    reason = "quiet hours: the window 08:00-21:00 has closed for the day; moved to 2026-11-24 08:00"
    check(plan, 1, "deferred", "quiet_hours", reason, send_at=TOMORROW_0800)
    # The window is half-open: 21:00 itself is closed.
    check(plan, 2, "deferred", "quiet_hours", reason, send_at=TOMORROW_0800)
    assert decision(plan, 1)["channel"] is None


def test_not_before_is_honoured() -> None:
    two_pm = at(14)
    plan = run(
        [cand(1, moment=at(9)), cand(2, B, moment=at(16, 45)), call(3, C, moment=at(6))],
        not_before=two_pm,
    )
    check(plan, 1, "scheduled", "sent", sent("sms", "14:00", "1.2", "¥0.07"), send_at=two_pm)
    check(plan, 2, "scheduled", "sent", sent("sms", "16:45", "1.2", "¥0.07"), send_at=at(16, 45))
    assert decision(plan, -3)["send_at"] == two_pm


def test_not_before_in_the_business_zone_is_the_same_moment() -> None:
    local_two_pm = dt.datetime(2026, 11, 23, 14, tzinfo=ZONE)
    plan = run([cand(1, moment=at(9))], not_before=local_two_pm)
    check(plan, 1, "scheduled", "sent", sent("sms", "14:00", "1.2", "¥0.07"), send_at=at(14))


def test_not_before_after_the_window_defers() -> None:
    plan = run([cand(1, moment=at(9))], not_before=at(21, 5))
    check(
        plan,
        1,
        "deferred",
        "quiet_hours",
        "quiet hours: the window 08:00-21:00 has closed for the day; moved to 2026-11-24 08:00",
        send_at=TOMORROW_0800,
    )


def test_a_customer_window_that_leaves_no_time_is_suppressed() -> None:
    plan = run(
        [cand(1, A), cand(2, B)],
        customers=[
            person(A, hours=(dt.time(22), dt.time(7))),
            person(B, hours=(dt.time(21), dt.time(23))),
        ],
    )
    check(
        plan,
        1,
        "suppressed",
        "quiet_hours",
        "quiet hours: customer accepts 22:00-07:00 leaves no time inside 08:00-21:00",
    )
    check(
        plan,
        2,
        "suppressed",
        "quiet_hours",
        "quiet hours: customer accepts 21:00-23:00 leaves no time inside 08:00-21:00",
    )


def test_service_notices_keep_to_service_hours() -> None:
    policy = PolicySettings(
        quiet_hours=(dt.time(9), dt.time(20)), service_hours=(dt.time(7), dt.time(22))
    )
    plan = run(
        [cand(1, A, priority="service"), cand(2, B), cand(3, C, priority="service", moment=at(21))],
        policy=policy,
    )
    check(plan, 1, "scheduled", "sent", sent("sms", "07:00", "1.2", "¥0.07"), send_at=at(7))
    check(plan, 2, "scheduled", "sent", sent("sms", "09:00", "1.2", "¥0.07"), send_at=at(9))
    check(plan, 3, "scheduled", "sent", sent("sms", "21:00", "1.2", "¥0.07"), send_at=at(21))


def test_a_deferral_from_yesterday_goes_at_todays_opening() -> None:
    yesterday = at(8, day=DAY - dt.timedelta(days=1))
    plan = run([cand(1, moment=yesterday, proposed_at=at(20, day=dt.date(2026, 11, 20)))])
    check(plan, 1, "scheduled", "sent", SMS_0800, send_at=at(8))


# --------------------------------------------------------------------------------------------
# One marketing touch a day
# --------------------------------------------------------------------------------------------


def test_the_higher_priority_class_wins_the_day_and_the_loser_is_deferred() -> None:
    plan = run(
        [
            cand(1, priority="marketing", moment=at(9), playbook="promo", step="offer"),
            cand(2, priority="care", moment=at(11), playbook="care", step="birthday"),
        ]
    )
    check(plan, 2, "scheduled", "sent", sent("sms", "11:00", "1.2", "¥0.07"))
    check(
        plan,
        1,
        "deferred",
        "collision",
        "collision: one marketing touch a day (care/birthday (care) goes first); "
        "moved to 2026-11-24 08:00",
        send_at=TOMORROW_0800,
    )
    assert plan.rounds == 2


def test_the_collision_loser_is_dropped_when_its_playbook_says_so() -> None:
    plan = run(
        [
            cand(1, priority="retention", playbook="winback", step="w1", on_collision="drop"),
            cand(2, priority="marketing", playbook="promo", step="p1", on_collision="drop"),
        ]
    )
    check(plan, 1, "scheduled", "sent", SMS_0800)
    check(
        plan,
        2,
        "suppressed",
        "collision",
        "collision: one marketing touch a day (winback/w1 (retention) goes first); "
        "dropped, as the playbook says",
    )


def test_within_a_class_the_earlier_send_time_then_the_lower_id_wins() -> None:
    plan = run(
        [
            cand(5, moment=at(10), step="late"),
            cand(7, moment=at(9), step="early"),
            cand(3, B, moment=at(9), step="b3"),
            cand(4, B, moment=at(9), step="b4"),
        ]
    )
    assert decision(plan, 7)["outcome"] == "scheduled"
    assert decision(plan, 5)["reason"].startswith(
        "collision: one marketing touch a day (pb/early (retention) goes first)"
    )
    assert decision(plan, 3)["outcome"] == "scheduled"
    assert decision(plan, 4)["outcome"] == "deferred"


def test_service_is_never_in_a_collision() -> None:
    plan = run(
        [
            cand(1, priority="service", playbook="svc", step="a"),
            cand(2, priority="service", playbook="svc", step="b"),
            cand(3, priority="marketing", playbook="promo"),
        ],
        usage=[used(A, "push", at(7, 30), "marketing")],
        policy=PolicySettings(marketing_per_day=1),
    )
    check(plan, 1, "scheduled", "sent", SMS_0800)
    check(plan, 2, "scheduled", "sent", SMS_0800)
    check(
        plan,
        3,
        "deferred",
        "collision",
        "collision: one marketing touch a day (1 already planned or sent today); "
        "moved to 2026-11-24 08:00",
    )


def test_usage_from_earlier_plans_today_counts_but_yesterday_does_not() -> None:
    plan = run(
        [cand(1, A), cand(2, B), cand(3, C)],
        usage=[
            used(A, "wecom", at(8)),  # planned this morning
            used(B, "sms", at(20, day=DAY - dt.timedelta(days=1))),  # yesterday
            used(C, "sms", at(9), "service"),  # service does not count
        ],
    )
    check(
        plan,
        1,
        "deferred",
        "collision",
        "collision: one marketing touch a day (1 already planned or sent today); "
        "moved to 2026-11-24 08:00",
    )
    check(plan, 2, "scheduled", "sent", SMS_0800)
    check(plan, 3, "scheduled", "sent", SMS_0800)


def test_marketing_per_day_is_a_setting() -> None:
    policy = PolicySettings(marketing_per_day=2)
    plan = run([cand(1, step="a"), cand(2, step="b"), cand(3, step="c")], policy=policy)
    assert [decision(plan, i)["outcome"] for i in (1, 2, 3)] == [
        "scheduled",
        "scheduled",
        "deferred",
    ]
    assert decision(plan, 3)["reason"].startswith(
        "collision: one marketing touch a day (pb/a (retention) goes first)"
    )


# --------------------------------------------------------------------------------------------
# Tier monthly caps
# --------------------------------------------------------------------------------------------


def _month_usage(customer: int, n: int) -> list[Row]:
    """``n`` marketing touches on earlier November days, plus some that must not count."""
    rows = [used(customer, "push", at(10, day=dt.date(2026, 11, 1 + i))) for i in range(n)]
    rows.append(used(customer, "push", at(10, day=dt.date(2026, 10, 31))))  # last month
    rows.append(used(customer, "sms", at(10, day=dt.date(2026, 11, 2)), "service"))
    return rows


@pytest.mark.parametrize(("tier", "cap"), [("high", 10), ("mid", 6), ("low", 3), ("none", 3)])
def test_the_tier_monthly_cap(tier: str, cap: int) -> None:
    customers = [person(A, tier), person(B, tier)]
    plan = run(
        [cand(1, A, channels=("wecom",)), cand(2, B, channels=("wecom",))],
        customers=customers,
        usage=_month_usage(A, cap) + _month_usage(B, cap - 1),
    )
    check(
        plan,
        1,
        "suppressed",
        "cap.tier",
        f"cap: {tier} tier {cap}/month reached ({cap} sent since 2026-11-01)",
    )
    check(plan, 2, "scheduled", "sent", WECOM_0800)


def test_the_tier_cap_exact_text_for_high() -> None:
    plan = run(
        [cand(1, channels=("sms",))],
        customers=[person(A, "high")],
        usage=_month_usage(A, 10),
    )
    check(
        plan,
        1,
        "suppressed",
        "cap.tier",
        "cap: high tier 10/month reached (10 sent since 2026-11-01)",
    )


def test_service_is_exempt_from_the_tier_cap() -> None:
    plan = run(
        [cand(1, priority="service")], customers=[person(A, "low")], usage=_month_usage(A, 5)
    )
    check(plan, 1, "scheduled", "sent", SMS_0800)


def test_the_tier_cap_counts_what_the_plan_schedules_and_calls() -> None:
    # Low tier, 2 this month: the call (a marketing-class task) takes the third, the message
    # is capped. The call is not a message, so it is no collision.
    plan = run(
        [call(1, moment=at(2)), cand(2, moment=at(9), channels=("wecom",))],
        customers=[person(A, "low")],
        usage=_month_usage(A, 2),
    )
    assert decision(plan, -1)["outcome"] == "scheduled"
    check(
        plan, 2, "suppressed", "cap.tier", "cap: low tier 3/month reached (3 sent since 2026-11-01)"
    )


def test_monthly_caps_are_settings() -> None:
    policy = PolicySettings(monthly_caps={"mid": 0})
    plan = run([cand(1)], policy=policy)
    check(
        plan, 1, "suppressed", "cap.tier", "cap: mid tier 0/month reached (0 sent since 2026-11-01)"
    )


# --------------------------------------------------------------------------------------------
# Channel caps
# --------------------------------------------------------------------------------------------


def test_wecoms_daily_cap_counts_service_so_a_second_touch_picks_sms() -> None:
    plan = run(
        [
            cand(1, priority="service", channels=("wecom",), playbook="svc"),
            cand(2, priority="care", channels=("wecom", "sms"), playbook="care"),
        ]
    )
    check(plan, 1, "scheduled", "sent", WECOM_0800, channel="wecom")
    check(plan, 2, "scheduled", "sent", SMS_0800, channel="sms")


def test_wecoms_daily_cap_defers_a_wecom_only_touch() -> None:
    plan = run(
        [
            cand(1, A, priority="care", channels=("wecom",)),
            cand(2, B, priority="service", channels=("wecom",)),
        ],
        usage=[used(A, "wecom", at(8), "service"), used(B, "wecom", at(8), "service")],
    )
    reason = "cap: wecom 1/day reached (1 since 2026-11-23); moved to 2026-11-24 08:00"
    check(plan, 1, "deferred", "cap.channel", reason, send_at=TOMORROW_0800)
    # A platform's own limit binds service notices too.
    check(plan, 2, "deferred", "cap.channel", reason, send_at=TOMORROW_0800)


def test_sms_weekly_cap_counts_marketing_this_week_only() -> None:
    wednesday = dt.date(2026, 11, 25)
    usage = [
        used(A, "sms", at(10, day=dt.date(2026, 11, 23))),
        used(A, "sms", at(10, day=dt.date(2026, 11, 24))),
        used(B, "sms", at(10, day=dt.date(2026, 11, 22))),  # last week (a Sunday)
        used(B, "sms", at(10, day=dt.date(2026, 11, 24))),
        used(B, "sms", at(7, day=wednesday), "service"),  # service is not counted
    ]
    plan = run(
        [cand(1, A), cand(2, B), cand(3, A, priority="service", playbook="svc")],
        usage=usage,
        day=wednesday,
    )
    check(plan, 1, "suppressed", "cap.channel", "cap: sms 2/week reached (2 since 2026-11-23)")
    assert decision(plan, 2)["outcome"] == "scheduled"
    # The fatigue cap does not bind service.
    assert decision(plan, 3)["outcome"] == "scheduled"


def test_a_capped_channel_falls_to_the_next_and_all_caps_are_named() -> None:
    wednesday = dt.date(2026, 11, 25)
    usage = [
        used(A, "sms", at(10, day=dt.date(2026, 11, 23))),
        used(A, "sms", at(10, day=dt.date(2026, 11, 24))),
        used(A, "wecom", at(7, day=wednesday), "service"),
    ]
    plan = run(
        [cand(1, A, channels=("sms", "wecom")), cand(2, A, channels=("sms", "push"), step="s2")],
        usage=usage,
        day=wednesday,
        policy=PolicySettings(marketing_per_day=2),
    )
    check(
        plan,
        1,
        "suppressed",
        "cap.channel",
        "cap: sms 2/week reached (2 since 2026-11-23); wecom 1/day reached (1 since 2026-11-25)",
    )
    assert decision(plan, 2)["channel"] == "push"


def test_channel_caps_count_what_the_plan_schedules() -> None:
    policy = PolicySettings(marketing_per_day=3)
    plan = run([cand(1, step="a"), cand(2, step="b"), cand(3, step="c")], policy=policy)
    assert decision(plan, 1)["outcome"] == "scheduled"
    assert decision(plan, 2)["outcome"] == "scheduled"
    check(plan, 3, "suppressed", "cap.channel", "cap: sms 2/week reached (2 since 2026-11-23)")


# --------------------------------------------------------------------------------------------
# Channel choice
# --------------------------------------------------------------------------------------------


def test_wecom_beats_sms_when_both_are_usable() -> None:
    plan = run([cand(1, channels=("sms", "wecom"))])
    check(plan, 1, "scheduled", "sent", WECOM_0800, channel="wecom", cost=2)


def test_many_observed_responses_change_the_choice() -> None:
    plan = run(
        [cand(1, A, channels=("wecom", "sms"))],
        stats=[("mid", "sms", 1000, 400), ("mid", "wecom", 1000, 10)],
    )
    # sms: (0.0125 * 200 + 400) / 1200 = 33.5%
    check(plan, 1, "scheduled", "sent", sent("sms", "08:00", "33.5", "¥0.07"), channel="sms")


def test_few_observations_barely_move_the_prior() -> None:
    plan = run([cand(1, channels=("wecom", "sms"))], stats=[("mid", "sms", 10, 4)])
    assert decision(plan, 1)["channel"] == "wecom"
    # Another tier's observations do not count.
    plan = run([cand(1, channels=("wecom", "sms"))], stats=[("low", "sms", 1000, 400)])
    assert decision(plan, 1)["channel"] == "wecom"


def _flat(**kw: Any) -> PolicySettings:
    """Every channel equally responsive, so cost, preference and mix decide."""
    prior = dict.fromkeys(CHANNELS, 0.1)
    return PolicySettings(choice=ChannelChoice(interaction_prior=prior, **kw))


def test_cost_decides_between_equally_responsive_channels() -> None:
    plan = run(
        [cand(1, channels=("sms", "wecom"))],
        policy=_flat(preference_fen=0, mix_weight_fen=0),
    )
    check(plan, 1, "scheduled", "sent", sent("wecom", "08:00", "10.0", "¥0.02"), channel="wecom")


def test_the_steps_preference_decides_between_equal_channels() -> None:
    equal = _flat(mix_weight_fen=0).model_copy(update={"cost_fen": dict.fromkeys(CHANNELS, 5)})
    for order in (("sms", "push"), ("push", "sms")):
        plan = run([cand(1, channels=order)], policy=equal)
        assert decision(plan, 1)["channel"] == order[0]


def test_the_tiers_mix_pulls_towards_the_channel_behind_its_target() -> None:
    policy = _flat(preference_fen=0).model_copy(update={"cost_fen": dict.fromkeys(CHANNELS, 5)})
    # mid targets wecom 50%, sms 30%: with nothing sent yet wecom is further behind.
    plan = run([cand(1, channels=("sms", "wecom"))], policy=policy)
    assert decision(plan, 1)["channel"] == "wecom"
    # This month mid went all to wecom: sms is now behind its target.
    plan = run([cand(1, channels=("sms", "wecom"))], policy=policy, mix=[("mid", "wecom", 40)])
    assert decision(plan, 1)["channel"] == "sms"
    # Another tier's mix is not this one's.
    plan = run([cand(1, channels=("sms", "wecom"))], policy=policy, mix=[("low", "wecom", 40)])
    assert decision(plan, 1)["channel"] == "wecom"


# --------------------------------------------------------------------------------------------
# High-value restraint
# --------------------------------------------------------------------------------------------


def test_high_value_restraint_reroutes_marketing_on_wecom() -> None:
    plan = run(
        [
            cand(1, A, priority="marketing", channels=("wecom", "sms")),
            cand(2, B, priority="retention", channels=("wecom", "sms")),
            cand(3, C, priority="marketing", channels=("wecom", "sms")),
            cand(4, D, priority="marketing", channels=("sms",)),
        ],
        customers=[person(A, "high"), person(B, "high"), person(C, "mid"), person(D, "high")],
    )
    check(
        plan,
        1,
        "rerouted",
        "restraint",
        "high-value restraint: a marketing item goes to the owner group / moments, "
        "not a private WeCom message",
        channel="wecom",
        cost=0,
        send_at=at(8),
    )
    check(plan, 2, "scheduled", "sent", WECOM_0800, cost=2)
    check(plan, 3, "scheduled", "sent", WECOM_0800)
    check(plan, 4, "scheduled", "sent", SMS_0800)


def test_restraint_can_be_switched_off() -> None:
    plan = run(
        [cand(1, priority="marketing", channels=("wecom",))],
        customers=[person(A, "high")],
        policy=PolicySettings(high_value_restraint=False),
    )
    check(plan, 1, "scheduled", "sent", WECOM_0800)


def test_a_rerouted_item_does_not_use_the_day() -> None:
    plan = run(
        [
            cand(1, priority="marketing", channels=("wecom",), step="a"),
            cand(2, priority="marketing", channels=("sms",), step="b"),
        ],
        customers=[person(A, "high")],
    )
    assert decision(plan, 1)["outcome"] == "rerouted"
    check(plan, 2, "scheduled", "sent", SMS_0800)


# --------------------------------------------------------------------------------------------
# Budgets
# --------------------------------------------------------------------------------------------


def test_a_playbook_budget_refuses_marketing_over_it() -> None:
    policy = PolicySettings(playbook_budgets_yuan={"pb": 1})
    plan = run(
        [cand(1, A), cand(2, B, playbook="other")],
        spend={"pb": 95, "other": 5_000},
        policy=policy,
    )
    check(
        plan,
        1,
        "suppressed",
        "budget.playbook",
        "budget: pb ¥1.00/month reached (¥0.95 spent since 2026-11-01)",
    )
    check(plan, 2, "scheduled", "sent", SMS_0800, cost=7)


def test_a_touch_that_just_fits_the_budget_goes() -> None:
    policy = PolicySettings(playbook_budgets_yuan={"pb": 1})
    plan = run([cand(1)], spend={"pb": 93}, policy=policy)
    check(plan, 1, "scheduled", "sent", SMS_0800, cost=7)


def test_service_spends_the_budget_but_is_never_refused() -> None:
    policy = PolicySettings(playbook_budgets_yuan={"pb": 1}, monthly_budget_yuan=1)
    plan = run([cand(1, A, priority="service")], spend={"pb": 99}, policy=policy)
    check(plan, 1, "scheduled", "sent", SMS_0800, cost=7)
    # In one round service goes first: its cost leaves no room for the marketing touch.
    plan = run([cand(1, A, priority="service"), cand(2, B)], spend={"pb": 90}, policy=policy)
    check(plan, 1, "scheduled", "sent", SMS_0800, cost=7)
    check(
        plan,
        2,
        "suppressed",
        "budget.playbook",
        "budget: pb ¥1.00/month reached (¥0.90 spent since 2026-11-01)",
    )
    plan = run([cand(2, B)], spend={"pb": 90}, policy=policy)
    assert decision(plan, 2)["outcome"] == "scheduled"


def test_budgets_count_what_earlier_rounds_spent() -> None:
    policy = PolicySettings(playbook_budgets_yuan={"pb": 1})
    plan = run(
        [cand(1, priority="service"), cand(2, priority="care")], spend={"pb": 90}, policy=policy
    )
    check(plan, 1, "scheduled", "sent", SMS_0800)
    check(
        plan,
        2,
        "suppressed",
        "budget.playbook",
        "budget: pb ¥1.00/month reached (¥0.97 spent since 2026-11-01)",
    )


def test_the_overall_budget() -> None:
    policy = PolicySettings(monthly_budget_yuan=1)
    plan = run(
        [cand(1, A, playbook="x"), cand(2, B, playbook="y", priority="service")],
        spend={"x": 60, "y": 38},
        policy=policy,
    )
    check(
        plan,
        1,
        "suppressed",
        "budget.total",
        "budget: overall ¥1.00/month reached (¥0.98 spent since 2026-11-01)",
    )
    check(plan, 2, "scheduled", "sent", SMS_0800)


def test_a_high_priority_touch_gets_the_budget_first() -> None:
    policy = PolicySettings(monthly_budget_yuan=1)
    plan = run(
        [cand(1, A, priority="marketing"), cand(2, B, priority="care")],
        spend={"pb": 90},
        policy=policy,
    )
    assert decision(plan, 2)["outcome"] == "scheduled"
    assert decision(plan, 1)["rule"] == "budget.total"


# --------------------------------------------------------------------------------------------
# Call tasks
# --------------------------------------------------------------------------------------------


def test_a_call_ignores_quiet_hours_and_the_customers_hours() -> None:
    plan = run(
        [call(1, moment=at(22, 30)), call(2, B, moment=at(6))],
        customers=[person(A, hours=(dt.time(10), dt.time(12))), person(B)],
    )
    check(
        plan,
        -1,
        "scheduled",
        "sent",
        "phone at 2026-11-23 22:30: expected response 30.0%, cost ¥7.50",
        channel="phone",
        send_at=at(22, 30),
        cost=750,
    )
    assert decision(plan, -2)["send_at"] == at(6)


def test_a_call_ignores_the_one_a_day_rule() -> None:
    plan = run(
        [cand(1, moment=at(9)), call(2, moment=at(10))],
        usage=[used(A, "sms", at(8))],
    )
    assert decision(plan, 1)["rule"] == "collision"
    assert decision(plan, -2)["outcome"] == "scheduled"


def test_a_call_planned_first_does_not_take_the_days_message() -> None:
    # The call comes first in the day (02:00) and is decided in the first round: the message
    # after it is no collision, as it is none when the same call was planned by an earlier run.
    plan = run([call(1, moment=at(2)), cand(2, moment=at(9))])
    assert decision(plan, -1)["outcome"] == "scheduled"
    check(plan, 2, "scheduled", "sent", sent("sms", "09:00", "1.2", "¥0.07"))
    plan = run([cand(2, moment=at(9))], usage=[used(A, "phone", at(2), task=True)])
    check(plan, 2, "scheduled", "sent", sent("sms", "09:00", "1.2", "¥0.07"))


def test_a_call_obeys_holdout_complaint_consent_and_caps() -> None:
    complaint = at(9, day=dt.date(2026, 11, 21))
    plan = run(
        [call(1, HELD), call(2, B), call(3, C), call(4, D)],
        customers=[person(HELD), person(B, complaint=complaint), person(C), person(D)],
        access_rows=[
            access(HELD, "phone"),
            access(B, "phone"),
            access(C, "phone", consent="none"),
            access(D, "phone"),
        ],
        usage=[
            used(D, "phone", at(10, day=dt.date(2026, 11, 3)), task=True),
            used(D, "phone", at(10, day=dt.date(2026, 11, 10)), task=True),
        ],
    )
    assert decision(plan, -1)["rule"] == "holdout"
    check(
        plan,
        -2,
        "suppressed",
        "complaint",
        "complaint: open since 2026-11-21 09:00: marketing paused until it is resolved",
    )
    check(
        plan, -3, "suppressed", "consent", "no usable channel: phone: no marketing consent on phone"
    )
    check(plan, -4, "suppressed", "cap.channel", "cap: phone 2/month reached (2 since 2026-11-01)")


# --------------------------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------------------------


def _busy_day() -> tuple[list[Row], list[Row], list[Row]]:
    cands = [
        cand(1, A, priority="marketing", channels=("wecom", "sms"), moment=at(9)),
        cand(2, A, priority="care", channels=("sms", "wecom"), moment=at(11), playbook="care"),
        cand(3, A, priority="service", channels=("wecom",), playbook="svc"),
        call(4, A, moment=at(7)),
        cand(5, B, priority="marketing", channels=("wecom", "push"), moment=at(22)),
        cand(6, B, priority="retention", channels=("sms",), on_collision="drop"),
        cand(7, B, priority="retention", channels=("push", "email"), step="s2"),
        cand(8, C, priority="marketing", channels=("wecom",)),
        cand(9, C, priority="marketing", channels=("sms",), step="s9"),
        cand(10, HELD, priority="marketing"),
        cand(11, HELD, priority="service"),
        cand(12, D, priority="care", channels=("email", "sms"), moment=at(19, 30)),
    ]
    customers = [
        person(A, "high"),
        person(B, "mid", hours=(dt.time(20), dt.time(7))),
        person(C, "high", complaint=None),
        person(HELD, "low"),
        person(D, "low", hours=(dt.time(12), dt.time(20))),
    ]
    usage = [
        used(A, "sms", at(10, day=dt.date(2026, 11, 20))),
        used(A, "wecom", at(7, 30), "service"),
        used(D, "sms", at(9)),
    ]
    return cands, customers, usage


def test_the_same_inputs_give_the_same_decisions_in_any_row_order() -> None:
    cands, customers, usage = _busy_day()
    policy = PolicySettings(monthly_budget_yuan=20, playbook_budgets_yuan={"care": 1})
    first = run(cands, customers=customers, usage=usage, spend={"care": 90}, policy=policy)
    again = run(cands, customers=customers, usage=usage, spend={"care": 90}, policy=policy)
    assert_frame_equal(first.decisions, again.decisions)
    shuffle = random.Random(7)
    for _ in range(3):
        mixed = [cands[:], customers[:], usage[:]]
        for rows in mixed:
            shuffle.shuffle(rows)
        other = run(mixed[0], customers=mixed[1], usage=mixed[2], spend={"care": 90}, policy=policy)
        assert_frame_equal(first.decisions, other.decisions)
    # The day is busy enough to exercise most rules.
    assert set(first.decisions["outcome"]) == {"scheduled", "deferred", "rerouted", "suppressed"}
    assert first.decisions["candidate_id"].to_list() == sorted(c["candidate_id"] for c in cands)
    assert first.rounds == 4


def test_no_candidates_give_an_empty_plan() -> None:
    plan = run([])
    assert plan.decisions.height == 0
    assert plan.rounds == 0
