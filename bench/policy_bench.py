"""Contact policy: arbitrate one business day's candidates, set-based; and plan it end to end.

    python bench/policy_bench.py --scale 1.0          # 2,000,000 candidates: arbitrate alone
    python bench/policy_bench.py --store --scale 0.1  # plan_day against an SQLite store
    python bench/policy_bench.py --scale 0.1 --json

``--scale 1.0`` is 1,000,000 customers with 2,000,000 candidates for 2026-11-23
(Asia/Shanghai), generated with numpy and polars from ``--seed``. The customers have a value
tier (high 15 % / mid 35 % / low 40 % / none 10 %), ~10 % accepted contact hours of their own
(some wrapping midnight, some leaving no time at all), ~1 % an open complaint; an access row
per customer and channel (WeCom friend ~60 %, valid mobile ~97 %, push ~35 %, e-mail ~40 %;
marketing consent mostly granted, ~3 % withdrawn on one channel); 2-4 touches each already
planned or sent this month (some today), with the month's spend per playbook, the mix per
tier and channel and the observed response per tier and channel that follow from them.

The candidates (about 2 per customer, skewed: some have 4-6) come from the built-in
playbooks with their priority classes (service / care / retention / marketing) and channel
lists; most are due at local midnight, some during the day (some after the quiet hours
start), a fifth were proposed days earlier and deferred (a few past the seven-day limit), and
a few are call tasks. Default policy settings, plus two playbook budgets and an overall
budget set to bind part-way through the day.

Default mode: only ``arbitrate`` is timed (best and median of ``--repeat`` runs, one plan
alive at a time); peak RSS is the process's (``getrusage``), inputs included. ``--store``: the
same world written into a fresh SQLite store in a temporary directory (``--workdir`` to keep
it), then ``plan_day`` (read, arbitrate, write: its own phase timings, and its own peak RSS)
and ``plan_day`` again, which must decide nothing. On the same seed the store path reads back
inputs that arbitrate to the same decisions as the generated frames (the frames hold every
customer's access rows and usage; the store reads only the candidates' customers).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import shutil
import sqlite3
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
from sqlalchemy import Engine, insert

from baoke.config import Settings
from baoke.ingest.store_io import bulk_insert
from baoke.playbooks.library import load_library
from baoke.policy.arbiter import (
    ACCESS_SCHEMA,
    CANDIDATE_SCHEMA,
    CUSTOMER_SCHEMA,
    MIX_SCHEMA,
    SPEND_SCHEMA,
    STATS_SCHEMA,
    USAGE_SCHEMA,
    Inputs,
    Plan,
    arbitrate,
)
from baoke.policy.plan import plan_day
from baoke.policy.settings import TIERS, PolicySettings
from baoke.store import models as m
from baoke.store.db import ensure_schema, make_engine
from baoke.store.models import table
from baoke.touches import CHANNELS

DAY = dt.date(2026, 11, 23)  # a Monday: the ISO week starts on the day
ZONE_NAME = "Asia/Shanghai"
HOUR_US = 3_600 * 1_000_000
DAY_US = 24 * HOUR_US

# What the playbooks propose on a day: (playbook, step, template, priority, channels, share).
# Priority of a call = its playbook's kind (as baoke.policy.inputs reads it).
SENDS = [
    ("maintenance_cadence_mid", "wecom_a", "fortnight_care", "care", ["wecom"], 0.16),
    ("maintenance_cadence_mid", "due_sms_a", "maintenance_due", "service", ["sms"], 0.12),
    (
        "maintenance_cadence_mid",
        "benefit_push",
        "member_benefits",
        "marketing",
        ["push", "wecom"],
        0.10,
    ),
    ("maintenance_cadence_high", "weekly_wecom", "weekly_care", "care", ["wecom", "sms"], 0.06),
    ("service_calendar", "usage_notes", "usage_notes", "care", ["wecom", "email"], 0.06),
    (
        "service_calendar",
        "maintenance_booking",
        "maintenance_booking",
        "service",
        ["wecom", "sms"],
        0.10,
    ),
    (
        "service_calendar",
        "insurance_quote",
        "insurance_renewal",
        "marketing",
        ["wecom", "sms"],
        0.08,
    ),
    ("churn_winback", "wecom_offer", "missed_you", "retention", ["wecom"], 0.08),
    ("churn_winback", "sms_offer", "winback_sms", "retention", ["sms"], 0.04),
    ("care_moments", "birthday_wish", "birthday", "care", ["wecom", "sms"], 0.06),
    ("upgrade_replacement", "wecom_trade_in", "trade_in_offer", "marketing", ["wecom"], 0.06),
    ("upgrade_replacement", "reminder", "trade_in_reminder", "marketing", ["push", "sms"], 0.04),
]
CALLS = [
    ("churn_winback", "manager_call", "winback_call", "retention", "service_manager", 0.010),
    ("upgrade_replacement", "sales_call", "sales_call", "marketing", "sales_consultant", 0.005),
    ("service_calendar", "insurance_task", "insurance_call", "service", "customer_manager", 0.005),
]
# Candidates per customer on the day (mean ~2; some have 4-6).
PER_CUSTOMER = [0.12, 0.28, 0.30, 0.15, 0.08, 0.05, 0.02]
# Accepted contact hours (from, to) and how often each is chosen; the last two wrap midnight
# and the very last leaves nothing inside 08:00-21:00.
HOURS = [
    ((9, 0), (18, 0), 0.30),
    ((10, 0), (20, 0), 0.20),
    ((12, 0), (14, 0), 0.10),
    ((18, 0), (21, 0), 0.15),
    ((19, 0), (22, 0), 0.10),
    ((20, 0), (8, 0), 0.10),
    ((22, 0), (7, 0), 0.05),
]
# Marketing consent on record (wecom: adding the advisor is the opt-in).
CONSENT_SHARE = {"sms": 0.93, "phone": 0.90, "push": 0.88, "email": 0.85, "wecom": 0.0}
# Share of a channel's past touches that got a reply or a click.
RESPONSE = {"wecom": 0.13, "sms": 0.015, "push": 0.03, "email": 0.02, "phone": 0.35}
BASES = ["written", "online_form", "app"]
WITHDRAWERS = ["TD reply", "unsubscribe link", "call centre"]
PUSH_WHY = "push not enabled (no app notifications, or no app use in 90 days)"


# --------------------------------------------------------------------------------------------
# The world: one frame per kind of fact, shared by the frame bench and the store bench
# --------------------------------------------------------------------------------------------


@dataclass
class World:
    """The generated facts; :func:`inputs_of` turns them into the arbiter's frames."""

    people: pl.DataFrame  # customer_id, tier, hours, complaint, mobile, WeCom, push, e-mail
    consents: pl.DataFrame  # marketing consent records (granted, or withdrawn)
    candidates: pl.DataFrame  # CANDIDATE_SCHEMA + status (candidate / deferred)
    usage: pl.DataFrame  # USAGE_SCHEMA + playbook, step, template, status, cost_fen, tier


def _utc(micros: np.ndarray) -> pl.Series:
    return pl.Series(micros.astype(np.int64)).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")


def _pick(values: list[str], idx: np.ndarray) -> pl.Series:
    return pl.Series(values, dtype=pl.String).gather(pl.Series(idx, dtype=pl.Int64))


def _local_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), ZoneInfo(ZONE_NAME)).astimezone(dt.UTC)


def _micros(moment: dt.datetime) -> int:
    return int(moment.timestamp()) * 1_000_000


def make_world(scale: float, seed: int, settings: Settings) -> World:
    """Customers, consents, the day's candidates and the month's usage (vectorised, seeded)."""
    rng = np.random.default_rng(seed)
    n = max(10, round(1_000_000 * scale))
    ids = np.arange(1, n + 1, dtype=np.int64)
    start = _micros(_local_start(DAY))

    # ---- customers ---------------------------------------------------------------------------
    tier = rng.choice(len(TIERS), n, p=[0.15, 0.35, 0.40, 0.10])
    has_hours = rng.random(n) < 0.10
    which = rng.choice(len(HOURS), n, p=[h[2] for h in HOURS])
    from_s = np.array([h[0][0] * 3600 + h[0][1] * 60 for h in HOURS])[which]
    to_s = np.array([h[1][0] * 3600 + h[1][1] * 60 for h in HOURS])[which]
    complaint = rng.random(n) < 0.01
    mobile = rng.choice(3, n, p=[0.97, 0.01, 0.02])  # valid / none on record / marked invalid
    friend = rng.random(n) < 0.60
    deleted = ~friend & (rng.random(n) < 0.08)  # was a friend once
    push = rng.random(n) < 0.35
    email = rng.random(n) < 0.40
    friend_at = start - rng.integers(30 * DAY_US, 1500 * DAY_US, n)
    people = pl.DataFrame(
        {
            "customer_id": ids,
            "tier": _pick(list(TIERS), tier),
            "contact_from": pl.Series(from_s * 1_000_000_000).cast(pl.Time),
            "contact_to": pl.Series(to_s * 1_000_000_000).cast(pl.Time),
            "has_hours": has_hours,
            "complaint_since": _utc(start - rng.integers(1 * DAY_US, 40 * DAY_US, n)),
            "has_complaint": complaint,
            "mobile_state": _pick(["valid", "none", "invalid"], mobile),
            "friend": friend,
            "friend_at": _utc(friend_at),
            "friend_deleted_at": _utc(start - rng.integers(1 * DAY_US, 300 * DAY_US, n)),
            "deleted": deleted,
            "push": push,
            "email": email,
        }
    ).with_columns(
        pl.when("has_hours").then("contact_from").alias("contact_from"),
        pl.when("has_hours").then("contact_to").alias("contact_to"),
        pl.when("has_complaint").then("complaint_since").alias("complaint_since"),
        pl.when("friend").then("friend_at").alias("friend_at"),
        pl.when("deleted").then("friend_deleted_at").alias("friend_deleted_at"),
    )
    people = people.drop("has_hours", "has_complaint")

    # ---- consents: granted on most channels, ~3 % withdrawn on one --------------------------
    withdraws = rng.random(n) < 0.03
    withdrawn_on = rng.choice(len(CHANNELS), n)
    parts = []
    for c, channel in enumerate(CHANNELS):
        granted = rng.random(n) < CONSENT_SHARE[channel]
        out = withdraws & (withdrawn_on == c)
        granted_at = start - rng.integers(200 * DAY_US, 2000 * DAY_US, n)
        if channel == "wecom":
            granted_at = np.where(friend, friend_at, granted_at)
        withdrawn_at = start - rng.integers(HOUR_US, 180 * DAY_US, n)
        # A withdrawal comes after the grant it withdraws (else the store reads a new grant).
        granted_at = np.where(out, np.minimum(granted_at, withdrawn_at - DAY_US), granted_at)
        keep = granted | out
        parts.append(
            pl.DataFrame(
                {
                    "customer_id": ids[keep],
                    "channel": channel,
                    "granted": True,
                    "basis": _pick(BASES, rng.integers(0, len(BASES), n)[keep]),
                    "granted_at": _utc(granted_at[keep]),
                    "withdrawn_at": _utc(withdrawn_at[keep]),
                    "out": out[keep],
                    "source": _pick(WITHDRAWERS, rng.integers(0, len(WITHDRAWERS), n)[keep]),
                }
            ).with_columns(
                pl.when("out").then("withdrawn_at").alias("withdrawn_at"),
                pl.when("out").then("source").alias("source"),
            )
        )
    consents = pl.concat(parts).drop("out")

    # ---- the day's candidates ----------------------------------------------------------------
    counts = rng.choice(len(PER_CUSTOMER), n, p=PER_CUSTOMER)
    diff = 2 * n - int(counts.sum())
    if diff > 0:
        counts[rng.choice(np.flatnonzero(counts < 6), diff, replace=False)] += 1
    elif diff < 0:
        counts[rng.choice(np.flatnonzero(counts > 0), -diff, replace=False)] -= 1
    owner = rng.permutation(np.repeat(ids, counts))
    total = owner.size
    kinds = [(*s[:5], False) for s in SENDS] + [(*c[:4], ["phone"], True) for c in CALLS]
    shares = [s[5] for s in SENDS] + [c[5] for c in CALLS]
    kind = rng.choice(len(kinds), total, p=np.array(shares) / sum(shares))
    is_task = np.array([k[5] for k in kinds])[kind]
    draw = rng.random(total)
    # 70 % due at local midnight; 20 % deferred from an earlier day to today's opening; 10 %
    # proposed during the day (events), some after the quiet hours start. Calls: the night run.
    deferred = ~is_task & (draw >= 0.70) & (draw < 0.90)
    waited = rng.choice(
        np.arange(1, 10), total, p=[0.35, 0.22, 0.14, 0.1, 0.07, 0.05, 0.03, 0.02, 0.02]
    )
    during = rng.integers(6 * HOUR_US, 23 * HOUR_US + 30 * 60 * 1_000_000, total)
    moment = np.where(draw < 0.70, start, start + during)
    moment = np.where(deferred, start + 8 * HOUR_US, moment)
    moment = np.where(is_task, start + rng.integers(0, HOUR_US, total), moment)
    proposed = np.where(
        deferred, start - waited * DAY_US + rng.integers(0, 14 * HOUR_US, total), moment
    )
    touch_ids = np.cumsum(~is_task)
    task_ids = np.cumsum(is_task)
    collide = {name: e.book.on_collision for name, e in load_library(settings).items()}
    playbooks = [k[0] for k in kinds]
    candidates = pl.DataFrame(
        {
            "candidate_id": np.where(is_task, -task_ids, touch_ids),
            "is_task": is_task,
            "customer_id": owner,
            "playbook": _pick(playbooks, kind),
            "step": _pick([k[1] for k in kinds], kind),
            "template": _pick([k[2] for k in kinds], kind),
            "priority": _pick([k[3] for k in kinds], kind),
            "channels": pl.Series([k[4] for k in kinds], dtype=pl.List(pl.String)).gather(kind),
            "moment": _utc(moment),
            "proposed_at": _utc(proposed),
            "on_collision": _pick(
                [("drop" if k[5] else collide.get(k[0], "defer")) for k in kinds], kind
            ),
            "status": np.where(deferred, "deferred", "candidate"),
        }
    )

    # ---- the month so far: 2-4 touches per customer, some today; a few calls -----------------
    reach = np.stack(
        [
            mobile == 0,  # sms
            friend,  # wecom
            push,
            email,
            mobile == 0,  # phone
        ],
        axis=1,
    )
    per = rng.integers(2, 5, n)
    who = np.repeat(ids, per)
    u = who.size
    sends = len(SENDS)
    skind = rng.choice(sends, u, p=np.array(shares[:sends]) / sum(shares[:sends]))
    first = np.array([CHANNELS.index(s[4][0]) for s in SENDS])[skind]
    second = np.array([CHANNELS.index(s[4][-1]) for s in SENDS])[skind]
    used_on = np.where(reach[who - 1, first], first, second)  # channel index
    today = rng.random(u) < 0.05
    days_back = rng.integers(1, 23, u)  # Nov 1 .. Nov 22
    at = np.where(
        today,
        start + rng.integers(8 * HOUR_US, 10 * HOUR_US, u),
        start - days_back * DAY_US + rng.integers(8 * HOUR_US, 21 * HOUR_US, u),
    )
    responded = rng.random(u) < np.array([RESPONSE[c] for c in CHANNELS])[used_on]
    status = np.where(
        today,
        "scheduled",
        np.where(
            responded,
            np.where(used_on == CHANNELS.index("wecom"), "replied", "clicked"),
            np.where(rng.random(u) < 0.9, "delivered", "sent"),
        ),
    )
    cost = np.array([settings.policy.cost_fen[c] for c in CHANNELS])
    touches = pl.DataFrame(
        {
            "customer_id": who,
            "channel": _pick(list(CHANNELS), used_on),
            "priority": _pick([s[3] for s in SENDS], skind),
            "is_task": False,
            "at": _utc(at),
            "playbook": _pick([s[0] for s in SENDS], skind),
            "step": _pick([s[1] for s in SENDS], skind),
            "template": _pick([s[2] for s in SENDS], skind),
            "status": status,
            "cost_fen": cost[used_on],
        }
    )
    called = ids[rng.random(n) < 0.02]
    ckind = rng.choice(len(CALLS), called.size, p=[c[5] / sum(x[5] for x in CALLS) for c in CALLS])
    calls = pl.DataFrame(
        {
            "customer_id": called,
            "channel": "phone",
            "priority": _pick([c[3] for c in CALLS], ckind),
            "is_task": True,
            "at": _utc(start - rng.integers(1, 23, called.size) * DAY_US + 10 * HOUR_US),
            "playbook": _pick([c[0] for c in CALLS], ckind),
            "step": _pick([c[1] for c in CALLS], ckind),
            "template": _pick([c[2] for c in CALLS], ckind),
            "status": "done",
            "cost_fen": settings.policy.cost_fen["phone"],
        }
    )
    usage = (
        pl.concat([touches, calls], how="vertical_relaxed")
        .join(people.select("customer_id", "tier"), on="customer_id", how="left")
        .with_columns(pl.col("cost_fen").cast(pl.Int64))
    )
    return World(people, consents, candidates, usage)


def _access(world: World) -> pl.DataFrame:
    """Every customer x channel: reachability and consent, as ``channel_access`` derives them."""
    consent = world.consents.select(
        "customer_id",
        "channel",
        pl.when(pl.col("withdrawn_at").is_not_null())
        .then(pl.lit("withdrawn"))
        .otherwise(pl.lit("granted"))
        .alias("consent"),
        pl.coalesce("withdrawn_at", "granted_at").alias("consent_at"),
        pl.when(pl.col("withdrawn_at").is_not_null())
        .then("source")
        .otherwise("basis")
        .alias("consent_detail"),
    )
    p = world.people
    mobile_ok = pl.col("mobile_state") == "valid"
    mobile_why = (
        pl.when(pl.col("mobile_state") == "none")
        .then(pl.lit("no mobile on record"))
        .otherwise(pl.format("mobile marked {}", "mobile_state"))
    )
    wecom_why = (
        pl.when(pl.col("friend_deleted_at").is_not_null())
        .then(
            pl.format(
                "not a WeCom friend (deleted on {})",
                pl.col("friend_deleted_at").dt.strftime("%Y-%m-%d"),
            )
        )
        .otherwise(pl.lit("not a WeCom friend"))
    )
    facts = {
        "sms": (mobile_ok, mobile_why),
        "wecom": (pl.col("friend"), wecom_why),
        "push": (pl.col("push"), pl.lit(PUSH_WHY)),
        "email": (pl.col("email"), pl.lit("no e-mail address")),
        "phone": (mobile_ok, mobile_why),
    }
    rows = pl.concat(
        [
            p.select(
                "customer_id",
                pl.lit(ch).alias("channel"),
                ok.alias("reachable"),
                pl.when(ok).then(pl.lit(None, pl.String)).otherwise(why).alias("unreachable_why"),
                "friend",
                "friend_at",
            )
            for ch, (ok, why) in facts.items()
        ]
    ).join(consent, on=["customer_id", "channel"], how="left")
    implicit = (pl.col("channel") == "wecom") & pl.col("friend") & pl.col("consent").is_null()
    return rows.select(
        "customer_id",
        "channel",
        "reachable",
        "unreachable_why",
        pl.when(implicit)
        .then(pl.lit("granted"))
        .otherwise(pl.col("consent").fill_null("none"))
        .alias("consent"),
        pl.when(implicit).then("friend_at").otherwise("consent_at").alias("consent_at"),
        pl.when(implicit)
        .then(pl.lit("added the advisor on WeCom"))
        .otherwise("consent_detail")
        .alias("consent_detail"),
    ).cast(ACCESS_SCHEMA)  # type: ignore[arg-type]


_DISPATCHED = ["sent", "delivered", "opened", "clicked", "replied"]


def month_facts(world: World) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(spend per playbook, mix per tier and channel, observed stats per tier and channel)."""
    used = world.usage
    spend = used.group_by("playbook").agg(pl.col("cost_fen").sum().alias("spent_fen"))
    mix = used.group_by("tier", "channel").agg(pl.len().cast(pl.Int64).alias("n"))
    stats = (
        used.filter(~pl.col("is_task") & pl.col("status").is_in(_DISPATCHED))
        .group_by("tier", "channel")
        .agg(
            pl.len().cast(pl.Int64).alias("sent"),
            pl.col("status").is_in(["clicked", "replied"]).sum().cast(pl.Int64).alias("responded"),
        )
    )
    return (
        spend.sort("playbook").cast(SPEND_SCHEMA),  # type: ignore[arg-type]
        mix.sort("tier", "channel").cast(MIX_SCHEMA),  # type: ignore[arg-type]
        stats.sort("tier", "channel").cast(STATS_SCHEMA),  # type: ignore[arg-type]
    )


def inputs_of(world: World, settings: Settings) -> Inputs:
    """The arbiter's frames for the world's day."""
    spend, mix, stats = month_facts(world)
    customers = world.people.select(
        "customer_id", "tier", "contact_from", "contact_to", "complaint_since"
    ).cast(CUSTOMER_SCHEMA)  # type: ignore[arg-type]
    return Inputs(
        day=DAY,
        zone=settings.zone,
        candidates=world.candidates.select(list(CANDIDATE_SCHEMA)).cast(CANDIDATE_SCHEMA),  # type: ignore[arg-type]
        customers=customers,
        access=_access(world),
        usage=world.usage.select(list(USAGE_SCHEMA)).cast(USAGE_SCHEMA),  # type: ignore[arg-type]
        spend=spend,
        mix=mix,
        stats=stats,
    )


def bench_policy(world: World, settings: Settings) -> PolicySettings:
    """Default settings, with two playbook budgets and an overall one that bind part-way.

    Each budget is this month's spend plus a share of what the day could cost at most (every
    candidate on its first channel): churn_winback 45 %, upgrade_replacement 35 %, all 55 %.
    """
    spend, _, _ = month_facts(world)
    spent = dict(spend.iter_rows())
    cost = settings.policy.cost_fen
    bound = dict(
        world.candidates.group_by("playbook")
        .agg(pl.col("channels").list.first().replace_strict(cost, default=0).sum())
        .iter_rows()
    )

    def yuan(fen: float) -> int:
        return int(fen // 100)

    budgets = {
        name: yuan(spent.get(name, 0) + share * bound.get(name, 0))
        for name, share in (("churn_winback", 0.45), ("upgrade_replacement", 0.35))
    }
    total = yuan(sum(spent.values()) + 0.55 * sum(bound.values()))
    return settings.policy.model_copy(
        update={"playbook_budgets_yuan": budgets, "monthly_budget_yuan": total}
    )


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------


def peak_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """Resident memory now."""
    with open("/proc/self/status") as status:
        line = next(x for x in status if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def outcome_table(plan: Plan) -> list[dict[str, Any]]:
    """Decisions per outcome and rule, most first."""
    return (
        plan.decisions.group_by("outcome", "rule")
        .agg(pl.len().alias("n"))
        .sort(["n", "outcome", "rule"], descending=[True, False, False])
        .to_dicts()
    )


def run_arbitration(args: argparse.Namespace) -> dict[str, Any]:
    """Generate the frames, then time ``arbitrate`` alone, ``--repeat`` times."""
    settings = Settings(data_dir=Path(tempfile.gettempdir()) / "baoke-policy-bench")
    started = time.perf_counter()
    world = make_world(args.scale, args.seed, settings)
    inputs = inputs_of(world, settings)
    policy = bench_policy(world, settings)
    generated = time.perf_counter() - started
    del world
    held = rss_mb()
    seconds: list[float] = []
    prints: set[int] = set()
    plan: Plan | None = None
    for _ in range(args.repeat):
        plan = None  # one plan alive at a time: the peak is the inputs' and one run's
        lap = time.perf_counter()
        plan = arbitrate(inputs, policy)
        seconds.append(time.perf_counter() - lap)
        prints.add(int(plan.decisions.hash_rows().sum()))
    assert plan is not None
    same = len(prints) == 1
    if args.save:
        plan.decisions.write_parquet(args.save)
    n = inputs.candidates.height
    return {
        "mode": "arbitrate",
        "scale": args.scale,
        "seed": args.seed,
        "customers": inputs.customers.height,
        "candidates": n,
        "calls": int(inputs.candidates["is_task"].sum()),
        "access_rows": inputs.access.height,
        "usage_rows": inputs.usage.height,
        "budgets_yuan": {**policy.playbook_budgets_yuan, "overall": policy.monthly_budget_yuan},
        "generate_seconds": round(generated, 2),
        "seconds": [round(s, 3) for s in seconds],
        "best_seconds": round(min(seconds), 3),
        "median_seconds": round(statistics.median(seconds), 3),
        "candidates_per_second": round(n / min(seconds)),
        "rounds": plan.rounds,
        "decisions": plan.decisions.height,
        "identical_across_runs": same,
        "inputs_rss_mb": round(held),
        "peak_rss_mb": round(peak_mb()),
        "outcomes": dict(sorted(plan.decisions["outcome"].value_counts().iter_rows())),
        "by_rule": outcome_table(plan),
    }


# --------------------------------------------------------------------------------------------
# The store: the same world as records, then plan_day
# --------------------------------------------------------------------------------------------


def _insert(engine: Engine, model: type[m.Base], frame: pl.DataFrame, chunk: int = 200_000) -> None:
    """Bulk insert in chunks (the SQLite path materialises each chunk's rows in Python)."""
    with engine.begin() as conn:
        for offset in range(0, frame.height, chunk):
            bulk_insert(conn, table(model), frame.slice(offset, chunk))


def fill_store(engine: Engine, world: World) -> dict[str, int]:
    """Write the world as an import and the journeys would have left it; returns row counts."""
    asof = DAY - dt.timedelta(days=1)
    with engine.begin() as conn:
        conn.execute(insert(table(m.Dealer)).values(id=1, code="D001", name="杭州西湖店"))
        conn.execute(
            insert(table(m.Staff)),
            [
                {"id": 1, "staff_no": "S1", "dealer_id": 1, "name": "王磊", "role": "advisor"},
                {"id": 2, "staff_no": "S2", "dealer_id": 1, "name": "李强", "role": "manager"},
            ],
        )
    p = world.people
    cid = pl.col("customer_id")
    customers = p.select(
        cid.alias("id"),
        pl.when(pl.col("mobile_state") != "none")
        .then(pl.format("+8613{}", cid.cast(pl.String).str.zfill(9)))
        .alias("mobile"),
        pl.when(pl.col("mobile_state") == "invalid")
        .then(pl.lit("invalid"))
        .otherwise(pl.lit("valid"))
        .alias("mobile_status"),
        pl.when("email").then(pl.format("c{}@example.com", cid)).alias("email"),
        "contact_from",
        "contact_to",
        pl.lit(1).alias("home_dealer_id"),
    )
    mobile_ok = pl.col("mobile_state") == "valid"
    profiles = p.select(
        "customer_id",
        pl.lit(asof).alias("as_of"),
        pl.lit(True).alias("is_owner"),
        pl.when(pl.col("tier") != "none").then("tier").alias("value_tier"),
        pl.lit("active").alias("lifecycle_stage"),
        pl.lit(0).alias("spend_12m_fen"),
        pl.lit(0).alias("visits_12m"),
        pl.col("complaint_since").is_not_null().alias("open_complaint"),
        mobile_ok.alias("sms_reachable"),
        pl.col("friend").alias("wecom_reachable"),
        pl.col("push").alias("push_reachable"),
        pl.col("email").alias("email_reachable"),
        mobile_ok.alias("phone_reachable"),
    )
    relations = p.filter(pl.col("friend") | pl.col("deleted")).select(
        "customer_id",
        pl.lit(1).alias("staff_id"),
        pl.format("wm{}", cid).alias("external_userid"),
        pl.coalesce("friend_at", pl.col("friend_deleted_at") - pl.duration(days=400)).alias(
            "added_at"
        ),
        pl.col("friend_deleted_at").alias("deleted_at"),
        pl.when("deleted").then(pl.lit("customer")).alias("deleted_by"),
    )
    complaints = p.filter(pl.col("complaint_since").is_not_null()).select(
        pl.format("CP{}", cid).alias("complaint_no"),
        "customer_id",
        pl.lit(1).alias("dealer_id"),
        pl.col("complaint_since").alias("opened_at"),
        pl.lit("medium").alias("severity"),
        pl.lit("open").alias("status"),
    )
    consents = world.consents.select(
        "customer_id",
        "channel",
        pl.lit("marketing").alias("purpose"),
        "granted",
        "basis",
        "granted_at",
        "withdrawn_at",
        "source",
    )
    c = world.candidates
    sends = c.filter(~pl.col("is_task"))
    touches = sends.select(
        pl.col("candidate_id").alias("id"),
        pl.format("bench:{}", "candidate_id").alias("idempotency_key"),
        "customer_id",
        pl.col("channels").list.first().alias("channel"),
        "template",
        "playbook",
        "step",
        "priority",
        pl.lit(0).alias("cost_fen"),
        "status",
        pl.col("moment").alias("scheduled_at"),
        pl.col("channels").list.join(",").alias("channels"),
        "proposed_at",
    )
    roles = {name: role for name, *_, role, _ in CALLS}
    calls = c.filter(pl.col("is_task")).select(
        (-pl.col("candidate_id")).alias("id"),
        pl.format("bench:call:{}", -pl.col("candidate_id")).alias("idempotency_key"),
        "customer_id",
        pl.lit(1).alias("dealer_id"),
        pl.col("playbook").replace_strict(roles).alias("role"),
        pl.lit("call").alias("kind"),
        pl.format("{} {}", "playbook", "step").alias("title"),
        (pl.col("moment") + pl.duration(days=1)).alias("due_at"),
        pl.lit("open").alias("status"),
        "playbook",
        "step",
        "template",
        pl.col("moment").alias("created_at"),
    )
    # The month so far: touches and calls with their decisions (spend and mix are read there).
    u = world.usage
    first_touch = int(sends.select(pl.col("candidate_id").max().fill_null(0)).item()) + 1
    first_task = int(calls.select(pl.col("id").max().fill_null(0)).item()) + 1
    u = u.with_columns(
        pl.when(~pl.col("is_task"))
        .then(first_touch + pl.int_range(pl.len()).over("is_task"))
        .alias("touch_id"),
        pl.when(pl.col("is_task"))
        .then(first_task + pl.int_range(pl.len()).over("is_task"))
        .alias("task_id"),
    )
    past_touches = u.filter(~pl.col("is_task")).select(
        pl.col("touch_id").alias("id"),
        pl.format("bench:past:{}", "touch_id").alias("idempotency_key"),
        "customer_id",
        "channel",
        "template",
        "playbook",
        "step",
        "priority",
        "cost_fen",
        "status",
        pl.col("at").alias("scheduled_at"),
        pl.when(pl.col("status") != "scheduled").then("at").alias("sent_at"),
        pl.col("channel").alias("channels"),
        pl.col("at").alias("proposed_at"),
    )
    past_calls = u.filter(pl.col("is_task")).select(
        pl.col("task_id").alias("id"),
        pl.format("bench:pastcall:{}", "task_id").alias("idempotency_key"),
        "customer_id",
        pl.lit(1).alias("dealer_id"),
        pl.col("playbook").replace_strict(roles).alias("role"),
        pl.lit("call").alias("kind"),
        pl.format("{} {}", "playbook", "step").alias("title"),
        (pl.col("at") + pl.duration(days=1)).alias("due_at"),
        pl.lit("done").alias("status"),
        "playbook",
        "step",
        "template",
        pl.col("at").alias("created_at"),
        pl.col("at").alias("planned_at"),
    )
    decisions = u.select(
        pl.int_range(1, pl.len() + 1).alias("id"),
        "touch_id",
        "task_id",
        "customer_id",
        pl.col("at").dt.convert_time_zone(ZONE_NAME).dt.date().alias("plan_date"),
        "playbook",
        "step",
        "template",
        "priority",
        "tier",
        pl.lit("scheduled").alias("outcome"),
        pl.lit("sent").alias("rule"),
        "channel",
        pl.col("at").alias("send_at"),
        "cost_fen",
        pl.lit("bench: planned earlier this month").alias("reason"),
        pl.col("at").alias("decided_at"),
    )
    written: dict[str, int] = {}
    for model, frame in (
        (m.Customer, customers),
        (m.CustomerProfile, profiles),
        (m.Consent, consents),
        (m.WecomRelation, relations),
        (m.Complaint, complaints),
        (m.Touch, pl.concat([touches, past_touches], how="diagonal_relaxed")),
        (m.Task, pl.concat([calls, past_calls], how="diagonal_relaxed")),
        (m.PolicyDecision, decisions),
    ):
        _insert(engine, model, frame)
        written[model.__tablename__] = written.get(model.__tablename__, 0) + frame.height
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    return written


def reset_peak() -> None:
    """Reset this process's peak RSS (VmHWM), so the next phase's peak is its own."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def hwm_mb() -> float:
    """Peak resident memory since the last reset."""
    with open("/proc/self/status") as status:
        line = next(x for x in status if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def run_store(args: argparse.Namespace) -> dict[str, Any]:
    """Fill a fresh SQLite store with the world, then ``plan_day`` twice."""
    keep = args.workdir is not None
    root = args.workdir or Path(tempfile.mkdtemp(prefix="baoke-policy-"))
    data = root / "data"
    url = f"sqlite:///{(data / 'baoke.db').as_posix()}"
    if (data / "baoke.db").exists():
        raise SystemExit(f"{data / 'baoke.db'} exists: give an empty --workdir")
    base = Settings(data_dir=data, database_url=url)
    started = time.perf_counter()
    world = make_world(args.scale, args.seed, base)
    policy = bench_policy(world, base)
    settings = Settings(data_dir=data, database_url=url, policy=policy)
    generated = time.perf_counter() - started
    engine = make_engine(settings.url)
    ensure_schema(engine)
    lap = time.perf_counter()
    written = fill_store(engine, world)
    filled = time.perf_counter() - lap
    n_customers = world.people.height
    del world
    fill_peak = hwm_mb()  # generation and fill (before the resets below)
    runs = []
    for _ in range(2):
        reset_peak()
        lap = time.perf_counter()
        result, plan = plan_day(settings, engine, DAY)
        wall = time.perf_counter() - lap
        runs.append(
            {
                "wall_seconds": round(wall, 2),
                "timings": result.timings,
                "candidates": result.candidates,
                "rounds": result.rounds,
                "outcomes": result.outcomes,
                "peak_rss_mb": round(hwm_mb()),
                "by_rule": outcome_table(plan) if plan.decisions.height else [],
            }
        )
    engine.dispose()
    db_mb = (data / "baoke.db").stat().st_size / 2**20
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "mode": "store",
        "scale": args.scale,
        "seed": args.seed,
        "customers": n_customers,
        "store": f"SQLite {sqlite3.sqlite_version}",
        "generate_seconds": round(generated, 2),
        "fill_seconds": round(filled, 1),
        "rows_written": written,
        "db_mb": round(db_mb),
        "budgets_yuan": {**policy.playbook_budgets_yuan, "overall": policy.monthly_budget_yuan},
        "plan": runs[0],
        "rerun": runs[1],
        "fill_peak_rss_mb": round(fill_peak),
        "workdir": str(root) if keep else None,
    }


# --------------------------------------------------------------------------------------------


def _machine() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(x for x in info if x.startswith("model name")).split(":", 1)[1].strip()
    except (OSError, StopIteration):
        cpu = platform.processor() or "?"
    return (
        f"{platform.machine()} ({cpu}), {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, polars {pl.__version__}"
    )


def _print_rules(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        print(f"    {row['outcome']:<10} {row['rule']:<16} {row['n']:>10,}")


def main() -> None:
    """Run the benchmark and print the figures (a summary, or JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale",
        type=float,
        default=None,
        help="1.0 = 1,000,000 customers (default 1.0; 0.1 with --store)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3, help="arbitrate runs (best is kept)")
    parser.add_argument("--store", action="store_true", help="plan_day against an SQLite store")
    parser.add_argument("--workdir", type=Path, default=None, help="--store: keep the store here")
    parser.add_argument("--save", type=Path, default=None, help="write the decisions (parquet)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.scale is None:
        args.scale = 0.1 if args.store else 1.0
    report = run_store(args) if args.store else run_arbitration(args)
    report["machine"] = _machine()
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return
    print(report["machine"])
    if report["mode"] == "arbitrate":
        print(
            f"{report['customers']:,} customers, {report['candidates']:,} candidates "
            f"({report['calls']:,} calls) on {DAY}; {report['access_rows']:,} access rows, "
            f"{report['usage_rows']:,} usage rows; generated in {report['generate_seconds']:.1f}s"
        )
        print(f"  budgets (yuan): {report['budgets_yuan']}")
        print(
            f"  arbitrate: best {report['best_seconds']:.2f}s, median "
            f"{report['median_seconds']:.2f}s of {report['seconds']}; "
            f"{report['candidates_per_second']:,} candidates/s; {report['rounds']} rounds"
        )
        print(
            f"  memory: inputs {report['inputs_rss_mb']:,} MB resident, "
            f"peak {report['peak_rss_mb']:,} MB; identical across runs: "
            f"{report['identical_across_runs']}"
        )
        print(f"  outcomes: {report['outcomes']}")
        _print_rules(report["by_rule"])
        if report["candidates"] >= 2_000_000:
            verdict = "met" if report["best_seconds"] <= 10 else "NOT met"
            print(f"  target: 2,000,000 candidates arbitrated in <= 10 s: {verdict}")
        return
    print(
        f"{report['customers']:,} customers into {report['store']} "
        f"({report['db_mb']:,} MB): filled in {report['fill_seconds']:.0f}s"
    )
    print(f"  rows: {report['rows_written']}")
    print(f"  budgets (yuan): {report['budgets_yuan']}")
    for label, run in (("plan_day", report["plan"]), ("plan_day again", report["rerun"])):
        phases = ", ".join(f"{k} {v:.2f}s" for k, v in run["timings"].items())
        print(
            f"  {label}: {run['wall_seconds']:.1f}s wall ({phases}); "
            f"{run['candidates']:,} candidates, {run['rounds']} rounds, "
            f"peak {run['peak_rss_mb']:,} MB"
        )
        print(f"    outcomes: {run['outcomes']}")
    _print_rules(report["plan"]["by_rule"])
    if report["workdir"]:
        print(f"  store kept in {report['workdir']}")
    print(f"  peak while generating and filling the store: {report['fill_peak_rss_mb']:,} MB")


if __name__ == "__main__":
    main()
