"""Property tests: whatever the day looks like, a plan never breaks the contact policy.

Random customers (tiers, accepted hours, open complaints), histories (usage in the day, week and
month, spend), consents and reachability (withdrawals included), candidates (priorities, channel
lists, moments over the day, on_collision, call tasks) and valid settings are arbitrated, and
the plan is checked against the rules as the arbiter's module doc states them, counted here
independently from the inputs and the decisions:

* the tier's monthly cap and the one-a-day rule count non-service touches (the one-a-day rule
  only messages, not calls); a channel cap counts non-service touches unless ``counts_service``;
  each is measured as usage in its window plus what the plan schedules;
* marketing keeps to the quiet hours narrowed by the customer's, service to the service hours
  (calls to neither), and nothing goes before ``not_before``;
* nothing goes on a channel without consent (service on a service-basis channel excepted), with
  consent withdrawn, or unreachable; no marketing reaches a customer in the holdout or with an
  open complaint; non-service spend stays within every budget (service may exceed it);
* every candidate gets one decision, a deferral lands after the day, and the plan does not
  depend on the order of the input rows.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from baoke.policy.arbiter import (
    ACCESS_SCHEMA,
    CANDIDATE_SCHEMA,
    CUSTOMER_SCHEMA,
    MIX_SCHEMA,
    OUTCOMES,
    SPEND_SCHEMA,
    STATS_SCHEMA,
    USAGE_SCHEMA,
    Inputs,
    arbitrate,
    holdout_share,
    month_start,
    week_start,
)
from baoke.policy.settings import TIERS, ChannelCap, PolicySettings
from baoke.touches import CHANNELS, PRIORITY_CLASSES

ZONE = ZoneInfo("Asia/Shanghai")
# A Monday, a Wednesday, a Sunday, and a Tuesday whose week began in the month before.
DAYS = (dt.date(2026, 11, 23), dt.date(2026, 11, 25), dt.date(2026, 11, 29), dt.date(2026, 12, 1))
PLAYBOOKS = ("alpha", "beta", "gamma")
CUSTOMER_POOL = range(1, 61)
SHARES = dict(
    zip(CUSTOMER_POOL, holdout_share(pl.Series(list(CUSTOMER_POOL))).to_list(), strict=True)
)
# Rules that never stop a service notice.
NOT_FOR_SERVICE = {
    "holdout",
    "complaint",
    "collision",
    "cap.tier",
    "budget.playbook",
    "budget.total",
    "restraint",
}

Row = dict[str, Any]


@dataclass
class World:
    day: dt.date
    policy: PolicySettings
    candidates: list[Row]
    customers: list[Row]
    access: list[Row]
    usage: list[Row]
    spend: list[Row]
    mix: list[Row]
    stats: list[Row]
    not_before: dt.datetime | None

    def inputs(self, shuffle: random.Random | None = None) -> Inputs:
        def frame(rows: list[Row], schema: dict[str, pl.DataType]) -> pl.DataFrame:
            rows = rows[:]
            if shuffle is not None:
                shuffle.shuffle(rows)
            return pl.DataFrame(rows, schema=schema, orient="row")

        return Inputs(
            day=self.day,
            zone=ZONE,
            candidates=frame(self.candidates, CANDIDATE_SCHEMA),
            customers=frame(self.customers, CUSTOMER_SCHEMA),
            access=frame(self.access, ACCESS_SCHEMA),
            usage=frame(self.usage, USAGE_SCHEMA),
            spend=frame(self.spend, SPEND_SCHEMA),
            mix=frame(self.mix, MIX_SCHEMA),
            stats=frame(self.stats, STATS_SCHEMA),
            not_before=self.not_before,
        )


# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------


def local(day: dt.date, minute: int) -> dt.datetime:
    """``minute`` minutes after local midnight of ``day`` (may be negative), in UTC."""
    start = dt.datetime.combine(day, dt.time(), ZONE)
    return (start + dt.timedelta(minutes=minute)).astimezone(dt.UTC)


times = st.builds(dt.time, st.integers(0, 23), st.sampled_from([0, 30]))


@st.composite
def windows(draw: st.DrawFn) -> tuple[dt.time, dt.time]:
    # Hypothesis leans to the first choices: the usual windows come first.
    common = [(8, 21), (8, 21), (9, 20), (0, 23), (12, 13)]
    start, end = draw(st.sampled_from(common)) if draw(st.booleans()) else (None, None)
    if start is None or end is None:
        start = draw(st.integers(0, 22))
        end = draw(st.integers(start + 1, 23))
    return dt.time(start), dt.time(end, draw(st.sampled_from([0, 30])))


@st.composite
def policies(draw: st.DrawFn, busy: bool = False) -> PolicySettings:
    caps = draw(
        st.just(PolicySettings().channel_caps)
        | st.dictionaries(
            st.sampled_from(CHANNELS),
            st.builds(
                ChannelCap,
                max=st.integers(0, 3),
                per=st.sampled_from(["day", "week", "month"]),
                counts_service=st.booleans(),
            ),
            max_size=5,
        )
    )
    return PolicySettings(
        holdout=0.0 if busy else draw(st.sampled_from([0.0, 0.0, 0.05, 0.3])),
        quiet_hours=draw(windows()),
        service_hours=draw(windows()),
        service_classes=draw(st.sampled_from([("service",), ("service", "care")])),
        service_basis_channels=tuple(
            draw(st.lists(st.sampled_from(CHANNELS), unique=True, max_size=3))
        ),
        marketing_per_day=draw(st.sampled_from([1, 1, 2, 0])),
        monthly_caps={t: draw(st.sampled_from([3, 6, 10, 1, 0])) for t in TIERS},
        channel_caps=caps,
        cost_fen={c: draw(st.sampled_from([7, 2, 60, 750, 0])) for c in CHANNELS},
        monthly_budget_yuan=draw(st.none() | st.integers(0, 4)),
        playbook_budgets_yuan=draw(
            st.dictionaries(st.sampled_from(PLAYBOOKS), st.integers(0, 3), max_size=3)
        ),
        high_value_restraint=draw(st.booleans()),
        max_defer_days=7 if busy else draw(st.sampled_from([7, 7, 7, 7, 2, 0])),
    )


@st.composite
def worlds(draw: st.DrawFn, busy: bool = False) -> World:
    """A random day; ``busy``: one or two customers with many candidates, all reachable and
    consenting, none held out, complaining or expired, so that the rounds have work to do."""
    day = draw(st.sampled_from(DAYS))
    policy = draw(policies(busy))
    people = draw(
        st.lists(st.sampled_from(CUSTOMER_POOL), min_size=1, max_size=2 if busy else 3, unique=True)
    )

    customers = []
    for customer in people:
        if not busy and draw(st.sampled_from([False] * 9 + [True])):
            continue  # not in the customers frame: no tier, no hours, no complaint
        hours = draw(st.sampled_from([False, False, True])) and draw(st.tuples(times, times))
        complaint = None if busy else draw(st.sampled_from([None] * 8 + [-60 * 24 * 3, -30]))
        customers.append(
            {
                "customer_id": customer,
                "tier": draw(st.sampled_from(TIERS)),
                "contact_from": hours[0] if hours else None,
                "contact_to": hours[1] if hours else None,
                "complaint_since": local(day, complaint) if complaint is not None else None,
            }
        )

    access = []
    for customer in people:
        for channel in CHANNELS:
            kind = "ok" if busy else draw(st.sampled_from(["ok"] * 4 + ["missing", "unreachable"]))
            if kind == "missing":
                continue
            consent = (
                "granted"
                if busy
                else draw(st.sampled_from(["granted"] * 4 + ["none", "withdrawn"]))
            )
            access.append(
                {
                    "customer_id": customer,
                    "channel": channel,
                    "reachable": kind == "ok",
                    "unreachable_why": None if kind == "ok" else draw(st.none() | st.just("gone")),
                    "consent": consent,
                    "consent_at": local(day, draw(st.integers(-60 * 24 * 90, 60 * 20))),
                    "consent_detail": draw(st.none() | st.just("form")),
                }
            )

    usage = []
    for _ in range(draw(st.integers(0, 12))):
        task = draw(st.sampled_from([False, False, False, True]))
        usage.append(
            {
                "customer_id": draw(st.sampled_from(people)),
                "channel": "phone" if task else draw(st.sampled_from(CHANNELS)),
                "priority": draw(st.sampled_from(PRIORITY_CLASSES)),
                "is_task": task,
                # From five weeks back up to the end of the day (the store reads before it).
                "at": local(day, draw(st.integers(-60 * 24 * 35, 60 * 24 - 1))),
            }
        )

    spend = [
        {"playbook": p, "spent_fen": draw(st.integers(0, 400))}
        for p in PLAYBOOKS
        if draw(st.booleans())
    ]
    mix = [
        {"tier": t, "channel": c, "n": draw(st.integers(0, 30))}
        for t, c in draw(
            st.lists(st.tuples(st.sampled_from(TIERS), st.sampled_from(CHANNELS)), unique=True)
        )
    ]
    stats = []
    for t, c in draw(
        st.lists(st.tuples(st.sampled_from(TIERS), st.sampled_from(CHANNELS)), unique=True)
    ):
        n = draw(st.integers(0, 2_000))
        stats.append({"tier": t, "channel": c, "sent": n, "responded": draw(st.integers(0, n))})

    candidates = []
    count = st.integers(3, 9) if busy else st.integers(0, 9) | st.integers(4, 9)
    for i in range(1, draw(count) + 1):
        task = draw(st.sampled_from([False, False, True] if busy else [False, False, False, True]))
        # Today, or from yesterday (a deferral); before the end of the day.
        today = draw(st.sampled_from([True] * 4 + [False]))
        moment = local(day, draw(st.integers(0, 60 * 24 - 1) if today else st.integers(-1440, -1)))
        # Most were proposed for now; a deferred one waits since days ago.
        days = 0 if busy else draw(st.sampled_from([0] * 6 + [1, 3, 8]))
        waited = dt.timedelta(days=days, minutes=draw(st.integers(0, 600)) if days else 0)
        channels = (
            ["phone"]
            if task
            else []
            if draw(st.sampled_from([False] * 15 + [True]))
            else draw(st.lists(st.sampled_from(CHANNELS), unique=True, min_size=1, max_size=3))
        )
        candidates.append(
            {
                "candidate_id": -i if task else i,
                "is_task": task,
                "customer_id": draw(st.sampled_from(people)),
                "playbook": draw(st.sampled_from(PLAYBOOKS)),
                "step": f"s{i}",
                "template": f"t{i}",
                "priority": draw(st.sampled_from(PRIORITY_CLASSES)),
                "channels": channels,
                "moment": moment,
                "proposed_at": moment - waited,
                "on_collision": "drop" if task else draw(st.sampled_from(["defer", "drop"])),
            }
        )

    minute = draw(st.none() | st.integers(0, 60 * 24 - 1))
    not_before = local(day, minute) if minute is not None else None
    return World(day, policy, candidates, customers, access, usage, spend, mix, stats, not_before)


# --------------------------------------------------------------------------------------------
# The rules, counted independently
# --------------------------------------------------------------------------------------------


def local_date(moment: dt.datetime) -> dt.date:
    return moment.astimezone(ZONE).date()


def local_time(moment: dt.datetime) -> dt.time:
    return moment.astimezone(ZONE).time()


def in_period(moment: dt.datetime, day: dt.date, per: str) -> bool:
    start = {"day": day, "week": week_start(day), "month": month_start(day)}[per]
    return start <= local_date(moment) <= day


def inside(t: dt.time, start: dt.time, end: dt.time) -> bool:
    if start < end:
        return start <= t < end
    return t >= start or t < end  # wraps midnight


def usable(world: World, cand: Row, channel: str, access: dict[tuple[int, str], Row]) -> bool:
    row = access.get((cand["customer_id"], channel))
    if row is None or not row["reachable"] or row["consent"] == "withdrawn":
        return False
    service = world.policy.is_service(cand["priority"])
    return row["consent"] == "granted" or (
        service and channel in world.policy.service_basis_channels
    )


def check_plan(world: World, decisions: pl.DataFrame) -> None:
    policy, day = world.policy, world.day
    cands = {c["candidate_id"]: c for c in world.candidates}
    people = {c["customer_id"]: c for c in world.customers}
    access = {(a["customer_id"], a["channel"]): a for a in world.access}
    rows = decisions.to_dicts()
    day_start = dt.datetime.combine(day, dt.time(), ZONE).astimezone(dt.UTC)
    day_end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), ZONE).astimezone(dt.UTC)

    # One decision per candidate.
    assert sorted(r["candidate_id"] for r in rows) == sorted(cands)
    assert len(rows) == len(cands)

    def service(row: Row) -> bool:
        return policy.is_service(row["priority"])

    for r in rows:
        cand = cands[r["candidate_id"]]
        for key in ("customer_id", "is_task", "playbook", "step", "priority"):
            assert r[key] == cand[key]
        person = people.get(cand["customer_id"])
        assert r["tier"] == (person["tier"] if person else "none")
        assert r["outcome"] in OUTCOMES
        waited = (day - local_date(cand["proposed_at"])).days
        assert (r["rule"] == "expired") == (waited > policy.max_defer_days), r
        if service(r):
            assert r["rule"] not in NOT_FOR_SERVICE, r
        if cand["is_task"]:
            assert r["rule"] not in {"collision", "quiet_hours"}, r
        complaint = person is not None and person["complaint_since"] is not None
        held = SHARES[cand["customer_id"]] < policy.holdout
        if not service(r) and (complaint or held):
            assert r["outcome"] == "suppressed", r
            assert r["rule"] in {"expired", "holdout", "complaint"}, r

        if r["outcome"] == "deferred":
            assert day_end <= r["send_at"] < day_end + dt.timedelta(days=1), r
        if r["outcome"] == "rerouted":
            assert r["cost_fen"] == 0 and r["channel"] == "wecom", r
            assert not service(r)
        if r["outcome"] not in {"scheduled", "rerouted"}:
            continue
        # Sent: on a usable channel of the step, inside the day and the allowed hours.
        assert r["channel"] in cand["channels"], r
        assert usable(world, cand, r["channel"], access), r
        if r["outcome"] == "scheduled":
            assert r["cost_fen"] == policy.cost_fen[r["channel"]], r
        send_at = r["send_at"]
        assert day_start <= send_at < day_end, r
        assert send_at >= cand["moment"], r
        if world.not_before is not None:
            assert send_at >= world.not_before, r
        if cand["is_task"]:
            continue
        t = local_time(send_at)
        start, end = policy.service_hours if service(r) else policy.quiet_hours
        assert start <= t < end, r
        if not service(r) and person is not None:
            c_from, c_to = person["contact_from"], person["contact_to"]
            if c_from is not None and c_to is not None and c_from != c_to:
                assert inside(t, c_from, c_to), r

    scheduled = [r for r in rows if r["outcome"] == "scheduled"]

    # The tier's monthly cap: non-service touches, calls included.
    month_used = Counter(
        u["customer_id"]
        for u in world.usage
        if not policy.is_service(u["priority"]) and in_period(u["at"], day, "month")
    )
    month_new = Counter(r["customer_id"] for r in scheduled if not service(r))
    for customer, n in month_new.items():
        limit = policy.monthly_caps[by_customer_tier(people, customer)]
        assert month_used[customer] + n <= limit, (customer, month_used[customer], n, limit)
    for r in rows:
        if r["rule"] == "cap.tier":
            customer = r["customer_id"]
            limit = policy.monthly_caps[by_customer_tier(people, customer)]
            assert month_used[customer] + month_new[customer] >= limit, r

    # One marketing touch a day: messages only.
    day_used = Counter(
        u["customer_id"]
        for u in world.usage
        if not policy.is_service(u["priority"])
        and not u["is_task"]
        and in_period(u["at"], day, "day")
    )
    day_new = Counter(r["customer_id"] for r in scheduled if not service(r) and not r["is_task"])
    for customer, n in day_new.items():
        assert day_used[customer] + n <= policy.marketing_per_day, (customer, day_used, n)
    for r in rows:
        if r["rule"] == "collision":
            customer = r["customer_id"]
            # A collision needs the day's messages to be full, calls not counted.
            assert day_used[customer] + day_new[customer] >= policy.marketing_per_day, r

    # Channel caps.
    def cap_count(customer: int, channel: str, cap: ChannelCap) -> tuple[int, int]:
        used = sum(
            1
            for u in world.usage
            if u["customer_id"] == customer
            and u["channel"] == channel
            and (cap.counts_service or not policy.is_service(u["priority"]))
            and in_period(u["at"], day, cap.per)
        )
        new = sum(
            1
            for r in scheduled
            if r["customer_id"] == customer
            and r["channel"] == channel
            and (cap.counts_service or not service(r))
        )
        return used, new

    for customer in {c["customer_id"] for c in world.candidates}:
        for channel, cap in policy.channel_caps.items():
            used, new = cap_count(customer, channel, cap)
            if new:
                assert used + new <= cap.max, (customer, channel, cap, used, new)
    for r in rows:
        if r["rule"] != "cap.channel":
            continue
        cand = cands[r["candidate_id"]]
        # Every channel it could have used was full (and binds it).
        for channel in cand["channels"]:
            if not usable(world, cand, channel, access):
                continue
            binding = policy.channel_caps.get(channel)
            assert binding is not None and (binding.counts_service or not service(r)), r
            used, new = cap_count(r["customer_id"], channel, binding)
            assert used + new >= binding.max, (r, channel, used, new)

    # Budgets: non-service spend stays inside; service may go over.
    spent = {s["playbook"]: s["spent_fen"] for s in world.spend}
    marketing = [r for r in scheduled if not service(r)]
    for playbook, yuan in policy.playbook_budgets_yuan.items():
        mine = [r["cost_fen"] for r in marketing if r["playbook"] == playbook]
        if mine:
            assert spent.get(playbook, 0) + sum(mine) <= yuan * 100, (playbook, mine)
    if policy.monthly_budget_yuan is not None and marketing:
        total = sum(spent.values()) + sum(r["cost_fen"] for r in marketing)
        assert total <= policy.monthly_budget_yuan * 100, total
    for r in rows:
        if r["rule"] == "budget.playbook":
            assert r["playbook"] in policy.playbook_budgets_yuan, r
        if r["rule"] == "budget.total":
            assert policy.monthly_budget_yuan is not None, r


def by_customer_tier(people: dict[int, Row], customer: int) -> str:
    person = people.get(customer)
    return str(person["tier"]) if person else "none"


# --------------------------------------------------------------------------------------------
# The properties
# --------------------------------------------------------------------------------------------

FAST = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FAST
@given(world=worlds(), seed=st.integers(0, 2**16))
def test_no_plan_breaks_the_policy_and_row_order_does_not_matter(world: World, seed: int) -> None:
    plan = arbitrate(world.inputs(), world.policy)
    check_plan(world, plan.decisions)
    again = arbitrate(world.inputs(random.Random(seed)), world.policy)
    assert_frame_equal(plan.decisions, again.decisions)
    assert plan.rounds == again.rounds


@FAST
@given(world=worlds(busy=True))
def test_a_busy_day_keeps_the_caps_and_the_one_a_day_rule(world: World) -> None:
    plan = arbitrate(world.inputs(), world.policy)
    check_plan(world, plan.decisions)
    assert plan.rounds <= max(Counter(c["customer_id"] for c in world.candidates).values())


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds())
def test_the_same_inputs_give_the_same_plan(world: World) -> None:
    first = arbitrate(world.inputs(), world.policy)
    second = arbitrate(world.inputs(), world.policy)
    assert_frame_equal(first.decisions, second.decisions)
