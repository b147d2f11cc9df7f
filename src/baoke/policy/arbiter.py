"""Arbitrating one day: every candidate touch is scheduled, moved, rerouted or dropped, with why.

:func:`arbitrate` is a pure function over frames (:class:`Inputs` → :class:`Plan`): the store
is read by :mod:`baoke.policy.inputs` and written by :mod:`baoke.policy.plan`, so the rules can
be tested, property-checked and benchmarked without a database.

The day is decided set-based, in two parts:

1. **Rules of one candidate** (all candidates at once): a touch deferred too long expires; the
   global holdout and an open complaint stop marketing; each channel the step allows is
   checked for reachability and consent (an unsubscribe stops service notices too); the send
   time is placed inside the allowed hours (quiet hours narrowed by the customer's own), or
   the touch moves to the next day's opening.
2. **Rounds**: each customer's remaining candidates are ranked (priority class, send time,
   touch id) and decided one rank per round, for every customer at once. A round checks the
   one-marketing-touch-a-day rule (the loser defers or drops as its playbook says), the tier's
   monthly cap, the channel caps, picks the best remaining channel by expected response, cost,
   the step's preference and the tier's mix, applies high-value restraint, then the budgets,
   and counts what it scheduled before the next round. The rounds are as many as the most
   candidates one customer has on the day, not as many as customers.

Service notices (``PolicySettings.service_classes``) are exempt from the holdout, the complaint
pause, fatigue caps and blocking by budget (they still spend it); never from consent
withdrawals or from a platform's own cap (WeCom's one mass message a day).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import polars as pl

from baoke.journeys.enrol import stable_share
from baoke.policy.settings import TIERS, PolicySettings
from baoke.touches import CHANNELS, PRIORITY_CLASSES

__all__ = [
    "ACCESS_SCHEMA",
    "CANDIDATE_SCHEMA",
    "CUSTOMER_SCHEMA",
    "DECISION_SCHEMA",
    "MIX_SCHEMA",
    "OUTCOMES",
    "SPEND_SCHEMA",
    "STATS_SCHEMA",
    "USAGE_SCHEMA",
    "Inputs",
    "Plan",
    "arbitrate",
    "holdout_share",
    "month_start",
    "week_start",
]

UTC = pl.Datetime("us", "UTC")

OUTCOMES = ("scheduled", "deferred", "rerouted", "suppressed")
"""What a candidate becomes: sent at a time, moved to a later slot, sent as group/moments
content instead of a private message, or dropped."""

# A candidate is a touch (``candidate_id`` its id) or a call task proposed by a playbook
# (``candidate_id`` minus the task's id, ``is_task`` true, channels ["phone"]).
CANDIDATE_SCHEMA: dict[str, pl.DataType] = {
    "candidate_id": pl.Int64(),
    "is_task": pl.Boolean(),
    "customer_id": pl.Int64(),
    "playbook": pl.String(),
    "step": pl.String(),
    "template": pl.String(),
    "priority": pl.String(),
    "channels": pl.List(pl.String()),  # in the step's order of preference
    "moment": UTC,  # when the journey proposed it (or the slot it was deferred to)
    "proposed_at": UTC,  # when it was first proposed (a deferral does not move this)
    "on_collision": pl.String(),  # defer / drop
}
CUSTOMER_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.Int64(),
    "tier": pl.String(),  # high / mid / low / none
    "contact_from": pl.Time(),
    "contact_to": pl.Time(),
    "complaint_since": UTC,  # an open complaint, opened then; null: none open
}
# One row per customer and channel known to the store (a missing row: unreachable, no consent).
ACCESS_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.Int64(),
    "channel": pl.String(),
    "reachable": pl.Boolean(),
    "unreachable_why": pl.String(),  # null when reachable
    "consent": pl.String(),  # granted / withdrawn / none
    "consent_at": UTC,  # granted or withdrawn then
    "consent_detail": pl.String(),  # basis of the grant, or what withdrew it
}
# Touches (and call tasks) already planned or sent in the month and week, for the caps.
USAGE_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.Int64(),
    "channel": pl.String(),
    "priority": pl.String(),
    "is_task": pl.Boolean(),  # a call task (counts for caps, not for the one-a-day rule)
    "at": UTC,
}
# Spend so far this month, per playbook (all customers).
SPEND_SCHEMA: dict[str, pl.DataType] = {"playbook": pl.String(), "spent_fen": pl.Int64()}
# This month's touches per tier and channel (all customers), for the mix.
MIX_SCHEMA: dict[str, pl.DataType] = {
    "tier": pl.String(),
    "channel": pl.String(),
    "n": pl.Int64(),
}
# Observed outcomes per tier and channel over the look-back, to update the priors.
STATS_SCHEMA: dict[str, pl.DataType] = {
    "tier": pl.String(),
    "channel": pl.String(),
    "sent": pl.Int64(),
    "responded": pl.Int64(),
}
DECISION_SCHEMA: dict[str, pl.DataType] = {
    "candidate_id": pl.Int64(),
    "is_task": pl.Boolean(),
    "customer_id": pl.Int64(),
    "playbook": pl.String(),
    "step": pl.String(),
    "template": pl.String(),
    "priority": pl.String(),
    "tier": pl.String(),
    "outcome": pl.String(),
    "rule": pl.String(),
    "channel": pl.String(),
    "send_at": UTC,
    "cost_fen": pl.Int64(),
    "reason": pl.String(),
}

_HOLDOUT_SALT = "policy:holdout"
_UNREACHABLE = {
    "sms": "no valid mobile",
    "phone": "no valid mobile",
    "wecom": "not a WeCom friend",
    "push": "push not enabled",
    "email": "no e-mail address",
}


@dataclass
class Inputs:
    """Everything one day's arbitration reads (frames of the schemas above)."""

    day: dt.date
    zone: ZoneInfo
    candidates: pl.DataFrame
    customers: pl.DataFrame
    access: pl.DataFrame
    usage: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=USAGE_SCHEMA))
    spend: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=SPEND_SCHEMA))
    mix: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=MIX_SCHEMA))
    stats: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=STATS_SCHEMA))
    # Nothing is sent before this moment (a plan made at 14:00 for today); None: the day start.
    not_before: dt.datetime | None = None


@dataclass
class Plan:
    """The day's decisions, one per candidate (see :data:`DECISION_SCHEMA`)."""

    day: dt.date
    decisions: pl.DataFrame
    rounds: int = 0

    def outcome(self, name: str) -> pl.DataFrame:
        """The decisions with this outcome."""
        return self.decisions.filter(pl.col("outcome") == name)


# --------------------------------------------------------------------------------------------
# Calendar
# --------------------------------------------------------------------------------------------


def month_start(day: dt.date) -> dt.date:
    """The first day of ``day``'s month."""
    return day.replace(day=1)


def week_start(day: dt.date) -> dt.date:
    """The Monday of ``day``'s ISO week."""
    return day - dt.timedelta(days=day.weekday())


def _local_midnight(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC)


def _at_local(day: dt.date, seconds: pl.Expr, zone: ZoneInfo) -> pl.Expr:
    """The UTC moment ``seconds`` after local midnight of ``day`` (time zone rules applied)."""
    midnight = dt.datetime.combine(day, dt.time())
    return (
        (pl.lit(midnight, pl.Datetime("us")) + pl.duration(seconds=seconds))
        .dt.replace_time_zone(str(zone), ambiguous="earliest", non_existent="null")
        .dt.convert_time_zone("UTC")
    )


def _seconds(time: pl.Expr) -> pl.Expr:
    return (time.cast(pl.Int64) // 1_000_000_000).cast(pl.Int64)


def _hhmm(seconds: pl.Expr) -> pl.Expr:
    return pl.format(
        "{}:{}",
        (seconds // 3600).cast(pl.String).str.zfill(2),
        (seconds % 3600 // 60).cast(pl.String).str.zfill(2),
    )


def _local_text(moment: pl.Expr, zone: ZoneInfo) -> pl.Expr:
    return moment.dt.convert_time_zone(str(zone)).dt.strftime("%Y-%m-%d %H:%M")


def holdout_share(customer_ids: pl.Series) -> pl.Series:
    """Each customer's stable draw for the global holdout (see ``stable_share``)."""
    return stable_share(customer_ids, _HOLDOUT_SALT)


def _yuan(fen: pl.Expr) -> pl.Expr:
    return pl.format(
        "¥{}.{}", (fen // 100).cast(pl.String), (fen % 100).cast(pl.String).str.zfill(2)
    )


# --------------------------------------------------------------------------------------------
# Part 1: the rules of one candidate
# --------------------------------------------------------------------------------------------


def _rank_of(priority: pl.Expr) -> pl.Expr:
    return priority.replace_strict(
        {p: i for i, p in enumerate(PRIORITY_CLASSES)}, default=len(PRIORITY_CLASSES)
    ).cast(pl.Int64)


def _prepare(inputs: Inputs, policy: PolicySettings) -> pl.DataFrame:
    """Candidates joined with their customer, the hold-out draw and the day's send window."""
    cands = inputs.candidates.join(inputs.customers, on="customer_id", how="left")
    service = pl.col("priority").is_in(list(policy.service_classes))
    share = holdout_share(cands["customer_id"])

    def secs(t: dt.time) -> int:
        return t.hour * 3600 + t.minute * 60 + t.second

    (q_from, q_to), (s_from, s_to) = policy.quiet_hours, policy.service_hours
    # A call is placed by staff within its SLA: no send window of its own.
    task = pl.col("is_task")
    open_s = pl.when(task).then(0).when(service).then(secs(s_from)).otherwise(secs(q_from))
    close_s = pl.when(task).then(86_400).when(service).then(secs(s_to)).otherwise(secs(q_to))
    return (
        cands.with_columns(
            pl.Series("share", share),
            service.alias("service"),
            _rank_of(pl.col("priority")).alias("prank"),
            # A tier the policy does not know (none, or a custom one) is treated as none.
            pl.when(pl.col("tier").is_in(list(TIERS))).then("tier").otherwise(pl.lit("none")),
            open_s.alias("policy_open"),
            close_s.alias("policy_close"),
            _seconds(pl.col("contact_from")).alias("c_from"),
            _seconds(pl.col("contact_to")).alias("c_to"),
        )
        .with_columns(_customer_window())
        .drop("c_from", "c_to")
    )


def _customer_window() -> list[pl.Expr]:
    """The policy's window narrowed by the customer's accepted hours (which may wrap midnight).

    A wrapping range (22:00-07:00) is two pieces; the piece that overlaps the policy window
    first in the day is taken.
    """
    lo, hi = pl.col("policy_open"), pl.col("policy_close")
    c_from, c_to = pl.col("c_from"), pl.col("c_to")
    has = c_from.is_not_null() & c_to.is_not_null() & (c_from != c_to) & ~pl.col("is_task")
    plain = c_from < c_to
    # Wrapping: [0, c_to) and [c_from, 24h); the morning piece if it meets the window.
    morning = pl.min_horizontal(hi, c_to) > lo
    open_ = (
        pl.when(~has)
        .then(lo)
        .when(plain)
        .then(pl.max_horizontal(lo, c_from))
        .when(morning)
        .then(lo)
        .otherwise(pl.max_horizontal(lo, c_from))
    )
    close = (
        pl.when(~has)
        .then(hi)
        .when(plain)
        .then(pl.min_horizontal(hi, c_to))
        .when(morning)
        .then(pl.min_horizontal(hi, c_to))
        .otherwise(hi)
    )
    hours = (
        pl.when(has)
        .then(pl.format("customer accepts {}-{}", _hhmm(c_from), _hhmm(c_to)))
        .otherwise(pl.lit(None, pl.String))
    )
    return [open_.alias("win_open"), close.alias("win_close"), hours.alias("hours_note")]


def _channel_options(cands: pl.DataFrame, inputs: Inputs, policy: PolicySettings) -> pl.DataFrame:
    """One row per candidate and allowed channel: usable or not, why, and its base score."""
    service_basis = list(policy.service_basis_channels)
    options = (
        cands.select("candidate_id", "customer_id", "tier", "service", "channels")
        .with_columns(pl.int_ranges(pl.col("channels").list.len()).alias("position"))
        .explode("channels", "position")
        .rename({"channels": "channel"})
        .filter(pl.col("channel").is_not_null())
        .join(inputs.access, on=["customer_id", "channel"], how="left")
        .with_columns(
            pl.col("reachable").fill_null(False),
            pl.col("consent").fill_null("none"),
        )
    )
    withdrawn = pl.col("consent") == "withdrawn"
    no_consent = (pl.col("consent") == "none") & ~(
        pl.col("service") & pl.col("channel").is_in(service_basis)
    )
    default_why = pl.col("channel").replace_strict(_UNREACHABLE, default="unreachable")
    blocked = (
        pl.when(~pl.col("reachable"))
        .then(pl.coalesce("unreachable_why", default_why))
        .when(withdrawn)
        .then(
            pl.format(
                "unsubscribed on {}{}",
                pl.col("consent_at").dt.convert_time_zone(str(inputs.zone)).dt.strftime("%Y-%m-%d"),
                pl.when(pl.col("consent_detail").is_not_null())
                .then(pl.format(" ({})", pl.col("consent_detail")))
                .otherwise(pl.lit("")),
            )
        )
        .when(no_consent)
        .then(pl.format("no marketing consent on {}", pl.col("channel")))
        .otherwise(pl.lit(None, pl.String))
    )
    rule = (
        pl.when(~pl.col("reachable"))
        .then(pl.lit("unreachable"))
        .when(withdrawn)
        .then(pl.lit("unsubscribed"))
        .when(no_consent)
        .then(pl.lit("consent"))
    )
    options = options.with_columns(blocked.alias("blocked"), rule.alias("block_rule"))
    return _with_scores(options, inputs, policy)


def _with_scores(options: pl.DataFrame, inputs: Inputs, policy: PolicySettings) -> pl.DataFrame:
    """Expected response (priors updated by observed outcomes), cost, preference and mix."""
    choice = policy.choice
    priors = pl.DataFrame(
        {
            "channel": list(CHANNELS),
            "prior": [choice.interaction_prior[c] for c in CHANNELS],
            "cost_fen": [policy.cost_fen[c] for c in CHANNELS],
        }
    )
    tier_totals = inputs.mix.group_by("tier").agg(pl.col("n").sum().alias("tier_n"))
    targets = pl.DataFrame(
        [
            {"tier": tier, "channel": ch, "target": shares.get(ch, 0.0)}
            for tier, shares in policy.channel_mix.items()
            for ch in CHANNELS
        ],
        schema={"tier": pl.String(), "channel": pl.String(), "target": pl.Float64()},
    )
    strength = float(choice.prior_strength)
    sent = pl.col("sent").fill_null(0).cast(pl.Float64)
    responded = pl.col("responded").fill_null(0).cast(pl.Float64)
    expected = (pl.col("prior") * strength + responded) / (strength + sent)
    share = (pl.col("n").fill_null(0) / pl.col("tier_n")).fill_null(0.0).fill_nan(0.0)
    mix = pl.when(pl.col("target").is_not_null()).then(
        (pl.col("target") - share) * choice.mix_weight_fen
    )
    # All but the preference depends on the (tier, channel) pair alone: worked out once per
    # pair, then joined to the options once.
    pairs = (
        options.select("tier", "channel")
        .unique()
        .join(priors, on="channel", how="left")
        .join(inputs.stats, on=["tier", "channel"], how="left")
        .join(inputs.mix, on=["tier", "channel"], how="left")
        .join(tier_totals, on="tier", how="left")
        .join(targets, on=["tier", "channel"], how="left")
        .with_columns(expected.alias("expected"), mix.fill_null(0.0).alias("_mix"))
        .drop("prior", "sent", "responded", "n", "tier_n", "target")
    )
    return (
        options.join(pairs, on=["tier", "channel"], how="left")
        .with_columns(
            (
                pl.col("expected") * choice.response_value_fen
                - pl.col("cost_fen")
                - pl.col("position") * choice.preference_fen
                + pl.col("_mix")
            ).alias("score")
        )
        .drop("_mix")
    )


def _decided(
    frame: pl.DataFrame, outcome: str, rule: pl.Expr | str, reason: pl.Expr
) -> pl.DataFrame:
    """Decision rows for ``frame`` (candidates), without channel or time unless set."""
    rule_expr = pl.lit(rule) if isinstance(rule, str) else rule
    cols = frame.columns
    return frame.select(
        "candidate_id",
        "is_task",
        "customer_id",
        "playbook",
        "step",
        "template",
        "priority",
        "tier",
        pl.lit(outcome).alias("outcome"),
        rule_expr.alias("rule"),
        (pl.col("channel") if "channel" in cols else pl.lit(None, pl.String)).alias("channel"),
        (pl.col("send_at") if "send_at" in cols else pl.lit(None, UTC)).alias("send_at"),
        (pl.col("cost") if "cost" in cols else pl.lit(0, pl.Int64))
        .cast(pl.Int64)
        .alias("cost_fen"),
        reason.alias("reason"),
    )


def _single_rules(
    cands: pl.DataFrame, options: pl.DataFrame, inputs: Inputs, policy: PolicySettings
) -> tuple[list[pl.DataFrame], pl.DataFrame]:
    """Decide what one candidate's own facts decide; returns (decisions, still open)."""
    out: list[pl.DataFrame] = []
    zone = inputs.zone
    day = inputs.day
    marketing = ~pl.col("service")

    proposed_day = pl.col("proposed_at").dt.convert_time_zone(str(zone)).dt.date()
    waited = (pl.lit(day) - proposed_day).dt.total_days()
    expired = waited > policy.max_defer_days
    out.append(
        _decided(
            cands.filter(expired),
            "suppressed",
            "expired",
            pl.format(
                "expired: waiting since {}, longer than {} days",
                proposed_day.cast(pl.String),
                pl.lit(policy.max_defer_days),
            ),
        )
    )
    cands = cands.filter(~expired)

    held = marketing & (pl.col("share") < policy.holdout)
    out.append(
        _decided(
            cands.filter(held),
            "suppressed",
            "holdout",
            pl.format(
                "holdout: in the {}% global holdout (draw {}): no marketing, to measure lift",
                pl.lit(_percent(policy.holdout)),
                pl.col("share").round(4).cast(pl.String),
            ),
        )
    )
    cands = cands.filter(~held)

    complaint = marketing & pl.col("complaint_since").is_not_null()
    out.append(
        _decided(
            cands.filter(complaint),
            "suppressed",
            "complaint",
            pl.format(
                "complaint: open since {}: marketing paused until it is resolved",
                _local_text(pl.col("complaint_since"), zone),
            ),
        )
    )
    cands = cands.filter(~complaint)

    usable = options.filter(pl.col("blocked").is_null()).select("candidate_id").unique()
    unusable = cands.join(usable, on="candidate_id", how="anti")
    # Only the candidates left without a channel need their reasons spelled out.
    why = (
        options.join(unusable.select("candidate_id"), on="candidate_id", how="semi")
        .sort("candidate_id", "position")
        .group_by("candidate_id", maintain_order=True)
        .agg(
            pl.format("{}: {}", "channel", "blocked").str.join("; ").alias("why"),
            pl.col("block_rule").first().alias("first_rule"),
        )
    )
    unusable = unusable.join(why, on="candidate_id", how="left")
    out.append(
        _decided(
            unusable,
            "suppressed",
            pl.col("first_rule").fill_null("no_channel"),
            pl.format("no usable channel: {}", pl.col("why").fill_null("the step names none")),
        )
    )
    cands = cands.join(usable, on="candidate_id", how="semi")
    timed, decided = _place_in_hours(cands, inputs)
    out.extend(decided)
    return out, timed


def _percent(share: float) -> str:
    return f"{share * 100:g}"


def _place_in_hours(cands: pl.DataFrame, inputs: Inputs) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """The send time inside the day's window; after it closes, the next day's opening."""
    zone, day = inputs.zone, inputs.day
    empty = pl.col("win_open") >= pl.col("win_close")
    out = [
        _decided(
            cands.filter(empty),
            "suppressed",
            "quiet_hours",
            pl.format(
                "quiet hours: {} leaves no time inside {}-{}",
                pl.col("hours_note"),
                _hhmm(pl.col("policy_open")),
                _hhmm(pl.col("policy_close")),
            ),
        )
    ]
    cands = cands.filter(~empty)
    start = _local_midnight(day, zone)
    floor = max(start, inputs.not_before) if inputs.not_before is not None else start
    floor = floor.astimezone(dt.UTC)  # given in any zone; a literal of the UTC dtype must be UTC
    opens = _at_local(day, pl.col("win_open"), zone)
    closes = _at_local(day, pl.col("win_close"), zone)
    cands = cands.with_columns(
        pl.max_horizontal(pl.col("moment"), opens, pl.lit(floor, UTC)).alias("send_at"),
        closes.alias("closes_at"),
        _at_local(day + dt.timedelta(days=1), pl.col("win_open"), zone).alias("next_open"),
    )
    late = pl.col("send_at") >= pl.col("closes_at")
    hours = pl.format(
        "{}-{}{}",
        _hhmm(pl.col("win_open")),
        _hhmm(pl.col("win_close")),
        pl.when(pl.col("hours_note").is_not_null())
        .then(pl.format(", {}", pl.col("hours_note")))
        .otherwise(pl.lit("")),
    )
    out.append(
        _decided(
            cands.filter(late).with_columns(pl.col("next_open").alias("send_at")),
            "deferred",
            "quiet_hours",
            pl.format(
                "quiet hours: the window {} has closed for the day; moved to {}",
                hours,
                _local_text(pl.col("next_open"), zone),
            ),
        )
    )
    return cands.filter(~late), out


# --------------------------------------------------------------------------------------------
# Part 2: rounds
# --------------------------------------------------------------------------------------------


def _windows(usage: pl.DataFrame, inputs: Inputs, policy: PolicySettings) -> pl.DataFrame:
    """Usage rows flagged by the windows they fall in (today, this week, this month)."""
    zone, day = inputs.zone, inputs.day
    # Compared as instants (the windows' local midnights in UTC): no time zone conversion of
    # millions of rows.
    at = pl.col("at")
    end = pl.lit(_local_midnight(day + dt.timedelta(days=1), zone), UTC)

    def since(first: dt.date) -> pl.Expr:
        return (at >= pl.lit(_local_midnight(first, zone), UTC)) & (at < end)

    return usage.with_columns(
        since(day).alias("in_day"),
        since(week_start(day)).alias("in_week"),
        since(month_start(day)).alias("in_month"),
        pl.col("priority").is_in(list(policy.service_classes)).alias("service"),
    )


def _initial_state(inputs: Inputs, policy: PolicySettings) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per customer (marketing today and this month) and per customer and channel counts."""
    used = _windows(inputs.usage, inputs, policy)
    marketing = ~pl.col("service")
    per_customer = used.group_by("customer_id").agg(
        (marketing & pl.col("in_day") & ~pl.col("is_task")).sum().cast(pl.Int64).alias("day_mkt"),
        (marketing & pl.col("in_month")).sum().cast(pl.Int64).alias("month_mkt"),
    )
    per_channel = used.group_by("customer_id", "channel").agg(
        *(
            (pl.col(f"in_{p}") & cond).sum().cast(pl.Int64).alias(f"{p}_{kind}")
            for p in ("day", "week", "month")
            for kind, cond in (("all", pl.lit(True)), ("mkt", marketing))
        )
    )
    return per_customer.with_columns(pl.lit(None, pl.String).alias("day_first")), per_channel


_COUNT_COLUMNS = [f"{p}_{k}" for p in ("day", "week", "month") for k in ("all", "mkt")]


def _cap_frame(policy: PolicySettings) -> pl.DataFrame:
    caps = policy.channel_caps
    return pl.DataFrame(
        {
            "channel": list(caps),
            "cap_max": [c.max for c in caps.values()],
            "cap_per": [c.per for c in caps.values()],
            "cap_service": [c.counts_service for c in caps.values()],
        },
        schema={
            "channel": pl.String(),
            "cap_max": pl.Int64(),
            "cap_per": pl.String(),
            "cap_service": pl.Boolean(),
        },
    )


def _period_count() -> pl.Expr:
    """The count a channel cap is measured by: its period, all touches or marketing only."""

    def counted(period: str) -> pl.Expr:
        return (
            pl.when(pl.col("cap_service"))
            .then(pl.col(f"{period}_all"))
            .otherwise(pl.col(f"{period}_mkt"))
        )

    return (
        pl.when(pl.col("cap_per") == "day")
        .then(counted("day"))
        .when(pl.col("cap_per") == "week")
        .then(counted("week"))
        .otherwise(counted("month"))
        .fill_null(0)
    )


def _period_start(day: dt.date) -> pl.Expr:
    return (
        pl.when(pl.col("cap_per") == "day")
        .then(pl.lit(day.isoformat()))
        .when(pl.col("cap_per") == "week")
        .then(pl.lit(week_start(day).isoformat()))
        .otherwise(pl.lit(month_start(day).isoformat()))
    )


def _round(
    current: pl.DataFrame,
    options: pl.DataFrame,
    customers: pl.DataFrame,
    channels: pl.DataFrame,
    caps: pl.DataFrame,
    budgets: _Budgets,
    inputs: Inputs,
    policy: PolicySettings,
) -> tuple[list[pl.DataFrame], pl.DataFrame]:
    """Decide one candidate per customer; returns (decisions, scheduled rows to count)."""
    out: list[pl.DataFrame] = []
    zone, day = inputs.zone, inputs.day
    cur = current.join(customers, on="customer_id", how="left").with_columns(
        pl.col("day_mkt").fill_null(0), pl.col("month_mkt").fill_null(0)
    )
    marketing = ~pl.col("service")

    # The one-a-day rule is about messages: a call is a playbook's follow-up to one.
    collided = marketing & ~pl.col("is_task") & (pl.col("day_mkt") >= policy.marketing_per_day)
    lost = cur.filter(collided)
    first = pl.coalesce(
        pl.format("{} goes first", pl.col("day_first")),
        pl.format("{} already planned or sent today", pl.lit(policy.marketing_per_day)),
    )
    base = pl.format("collision: one marketing touch a day ({})", first)
    out.append(
        _decided(
            lost.filter(pl.col("on_collision") == "defer").with_columns(
                pl.col("next_open").alias("send_at")
            ),
            "deferred",
            "collision",
            pl.format("{}; moved to {}", base, _local_text(pl.col("next_open"), zone)),
        )
    )
    out.append(
        _decided(
            lost.filter(pl.col("on_collision") != "defer"),
            "suppressed",
            "collision",
            pl.format("{}; dropped, as the playbook says", base),
        )
    )
    cur = cur.filter(~collided)

    caps_by_tier = pl.DataFrame(
        {"tier": list(TIERS), "tier_cap": [policy.monthly_caps[t] for t in TIERS]}
    )
    cur = cur.join(caps_by_tier, on="tier", how="left")
    capped = marketing & (pl.col("month_mkt") >= pl.col("tier_cap"))
    out.append(
        _decided(
            cur.filter(capped),
            "suppressed",
            "cap.tier",
            pl.format(
                "cap: {} tier {}/month reached ({} sent since {})",
                "tier",
                "tier_cap",
                "month_mkt",
                pl.lit(month_start(day).isoformat()),
            ),
        )
    )
    cur = cur.filter(~capped)

    opts = (
        options.join(cur.select("candidate_id"), on="candidate_id", how="semi")
        .filter(pl.col("blocked").is_null())
        .join(channels, on=["customer_id", "channel"], how="left")
        .join(caps, on="channel", how="left")
        .with_columns(pl.col(c).fill_null(0) for c in _COUNT_COLUMNS)
        .with_columns(_period_count().alias("used"))
    )
    binds = pl.col("cap_max").is_not_null() & (pl.col("cap_service") | ~pl.col("service"))
    opts = opts.with_columns((binds & (pl.col("used") >= pl.col("cap_max"))).alias("capped"))
    best = (
        opts.filter(~pl.col("capped"))
        .sort(["candidate_id", "score", "position"], descending=[False, True, False])
        .unique("candidate_id", keep="first", maintain_order=True)
        .select("candidate_id", "channel", "expected", pl.col("cost_fen").alias("cost"), "score")
    )
    cap_why = (
        opts.filter(pl.col("capped"))
        .sort("candidate_id", "position")
        .group_by("candidate_id", maintain_order=True)
        .agg(
            pl.format(
                "{} {}/{} reached ({} since {})",
                "channel",
                "cap_max",
                "cap_per",
                "used",
                _period_start(day),
            )
            .str.join("; ")
            .alias("cap_why"),
            (pl.col("cap_per") == "day").all().alias("only_today"),
        )
    )
    none_left = cur.join(best, on="candidate_id", how="anti").join(
        cap_why, on="candidate_id", how="left"
    )
    wait = pl.col("only_today").fill_null(False)
    out.append(
        _decided(
            none_left.filter(wait).with_columns(pl.col("next_open").alias("send_at")),
            "deferred",
            "cap.channel",
            pl.format("cap: {}; moved to {}", "cap_why", _local_text(pl.col("next_open"), zone)),
        )
    )
    out.append(
        _decided(
            none_left.filter(~wait),
            "suppressed",
            "cap.channel",
            pl.format("cap: {}", pl.col("cap_why").fill_null("every channel is capped")),
        )
    )
    chosen = cur.join(best, on="candidate_id", how="inner")

    restrained = (
        pl.lit(policy.high_value_restraint)
        & (pl.col("tier") == "high")
        & (pl.col("priority") == PRIORITY_CLASSES[-1])
        & (pl.col("channel") == "wecom")
    )
    out.append(
        _decided(
            chosen.filter(restrained).with_columns(pl.lit(0, pl.Int64).alias("cost")),
            "rerouted",
            "restraint",
            pl.lit(
                "high-value restraint: a marketing item goes to the owner group / moments, "
                "not a private WeCom message"
            ),
        )
    )
    chosen = chosen.filter(~restrained)
    chosen, over = budgets.spend(chosen)
    out.extend(over)
    skipped = (
        options.join(chosen.select("candidate_id"), on="candidate_id", how="semi")
        .filter(pl.col("blocked").is_not_null())
        .sort("candidate_id", "position")
        .group_by("candidate_id", maintain_order=True)
        .agg(pl.format("{} {}", "channel", "blocked").str.join("; ").alias("skipped"))
    )
    chosen = chosen.join(skipped, on="candidate_id", how="left")
    out.append(
        _decided(
            chosen,
            "scheduled",
            pl.lit("sent"),
            pl.format(
                "{} at {}: expected response {}%, cost {}{}",
                "channel",
                _local_text(pl.col("send_at"), zone),
                (pl.col("expected") * 100).round(1).cast(pl.String),
                _yuan(pl.col("cost")),
                pl.when(pl.col("skipped").is_not_null())
                .then(pl.format(" (skipped: {})", pl.col("skipped")))
                .otherwise(pl.lit("")),
            ),
        )
    )
    return out, chosen


class _Budgets:
    """Monthly budgets per playbook and overall, spent in rank order within each round."""

    def __init__(self, inputs: Inputs, policy: PolicySettings) -> None:
        self.day = inputs.day
        self.caps = {k: v * 100 for k, v in policy.playbook_budgets_yuan.items()}
        self.total_cap = (
            policy.monthly_budget_yuan * 100 if policy.monthly_budget_yuan is not None else None
        )
        self.spent = {str(p): int(s) for p, s in inputs.spend.iter_rows()}
        self.total = sum(self.spent.values())

    def spend(self, chosen: pl.DataFrame) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
        """Keep what the budgets allow (service is never blocked); returns (kept, dropped)."""
        if not self.caps and self.total_cap is None:
            self._count(chosen)
            return chosen, []
        ordered = chosen.sort(["prank", "score", "candidate_id"], descending=[False, True, False])
        out: list[pl.DataFrame] = []
        since = month_start(self.day).isoformat()
        if self.caps:
            caps = pl.DataFrame(
                {"playbook": list(self.caps), "pb_cap": list(self.caps.values())},
                schema={"playbook": pl.String(), "pb_cap": pl.Int64()},
            )
            spent = pl.DataFrame(
                {"playbook": list(self.spent), "pb_spent": list(self.spent.values())},
                schema={"playbook": pl.String(), "pb_spent": pl.Int64()},
            )
            ordered = ordered.join(caps, on="playbook", how="left").join(
                spent, on="playbook", how="left"
            )
            ordered = ordered.with_columns(pl.col("pb_spent").fill_null(0))
            # In rank order, service first: service spends but is never refused. The running
            # sum only grows, so from the first refusal on, every marketing touch is refused.
            running = pl.col("cost").cum_sum().over("playbook") + pl.col("pb_spent")
            over = (
                pl.col("pb_cap").is_not_null() & ~pl.col("service") & (running > pl.col("pb_cap"))
            )
            ordered = ordered.with_columns(over.alias("over"))
            out.append(
                _decided(
                    ordered.filter(pl.col("over")),
                    "suppressed",
                    "budget.playbook",
                    pl.format(
                        "budget: {} {}/month reached ({} spent since {})",
                        "playbook",
                        _yuan(pl.col("pb_cap")),
                        _yuan(pl.col("pb_spent")),
                        pl.lit(since),
                    ),
                )
            )
            ordered = ordered.filter(~pl.col("over")).drop("pb_cap", "pb_spent", "over")
        if self.total_cap is not None:
            running = pl.col("cost").cum_sum() + self.total
            over = ~pl.col("service") & (running > self.total_cap)
            ordered = ordered.with_columns(over.alias("over"))
            out.append(
                _decided(
                    ordered.filter(pl.col("over")),
                    "suppressed",
                    "budget.total",
                    pl.format(
                        "budget: overall {}/month reached ({} spent since {})",
                        _yuan(pl.lit(self.total_cap)),
                        _yuan(pl.lit(self.total)),
                        pl.lit(since),
                    ),
                )
            )
            ordered = ordered.filter(~pl.col("over")).drop("over")
        self._count(ordered)
        return ordered, out

    def _count(self, kept: pl.DataFrame) -> None:
        for playbook, cost in kept.group_by("playbook").agg(pl.col("cost").sum()).iter_rows():
            self.spent[str(playbook)] = self.spent.get(str(playbook), 0) + int(cost)
            self.total += int(cost)


def _count_round(
    customers: pl.DataFrame, channels: pl.DataFrame, sent: pl.DataFrame, policy: PolicySettings
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Add a round's scheduled touches to the running counts."""
    if sent.height == 0:
        return customers, channels
    mkt = (~pl.col("service")).cast(pl.Int64)
    # The one-a-day rule counts messages only (as _initial_state does): a call is no message.
    message = ~pl.col("service") & ~pl.col("is_task")
    label = pl.format("{}/{} ({})", "playbook", "step", "priority")
    add_c = sent.group_by("customer_id").agg(
        message.cast(pl.Int64).sum().alias("d"),
        mkt.sum().alias("m"),
        pl.when(message).then(label).drop_nulls().first().alias("lbl"),
    )
    customers = (
        customers.join(add_c, on="customer_id", how="full", coalesce=True)
        .with_columns(
            (pl.col("day_mkt").fill_null(0) + pl.col("d").fill_null(0)).alias("day_mkt"),
            (pl.col("month_mkt").fill_null(0) + pl.col("m").fill_null(0)).alias("month_mkt"),
            pl.coalesce("day_first", "lbl").alias("day_first"),
        )
        .drop("d", "m", "lbl")
    )
    add_ch = sent.group_by("customer_id", "channel").agg(
        pl.len().cast(pl.Int64).alias("a"), mkt.sum().alias("k")
    )
    channels = (
        channels.join(add_ch, on=["customer_id", "channel"], how="full", coalesce=True)
        .with_columns(
            *(
                (
                    pl.col(c).fill_null(0) + pl.col("a" if c.endswith("all") else "k").fill_null(0)
                ).alias(c)
                for c in _COUNT_COLUMNS
            )
        )
        .drop("a", "k")
    )
    return customers, channels


# Candidate columns the rules of one candidate use and the rounds do not.
_DONE_WITH = (
    "moment",
    "proposed_at",
    "contact_from",
    "contact_to",
    "complaint_since",
    "share",
    "policy_open",
    "policy_close",
    "win_open",
    "win_close",
    "hours_note",
    "closes_at",
)


def _rank_in_runs(key: str) -> pl.Expr:
    """0, 1, 2 … within each run of equal ``key`` of a frame sorted by it (no group-by)."""
    row = pl.int_range(pl.len(), dtype=pl.Int64)
    start = pl.when(pl.col(key) != pl.col(key).shift()).then(row).otherwise(None)
    return (row - start.fill_null(0).cum_max()).alias("rank")


def arbitrate(inputs: Inputs, policy: PolicySettings) -> Plan:
    """Decide every candidate of the day (see the module doc); deterministic for its inputs."""
    cands = _prepare(inputs, policy)
    options = _channel_options(cands, inputs, policy)
    # From here on the options stand for the channel lists: every filter and join of the
    # candidates is cheaper without a list column to copy.
    decisions, open_ = _single_rules(cands.drop("channels"), options, inputs, policy)
    # The rounds need neither the customer's facts nor the send window any more (only its
    # result, send_at and next_open): fewer columns to sort, filter and join in every round.
    open_ = (
        open_.drop(*_DONE_WITH)
        .sort(["customer_id", "prank", "send_at", "candidate_id"])
        .with_columns(_rank_in_runs("customer_id"))
    )
    # The rounds read only the open candidates' options, and the counts of the channels they
    # could use (the other pairs are never looked up): fewer rows to join, round after round.
    options = options.join(open_.select("candidate_id"), on="candidate_id", how="semi")
    customers, channels = _initial_state(inputs, policy)
    channels = channels.join(
        options.filter(pl.col("blocked").is_null()).select("customer_id", "channel"),
        on=["customer_id", "channel"],
        how="semi",
    )
    caps = _cap_frame(policy)
    budgets = _Budgets(inputs, policy)
    rounds = int(open_.select(pl.col("rank").max() + 1).item() or 0)
    for r in range(rounds):
        current = open_.filter(pl.col("rank") == r)
        out, sent = _round(current, options, customers, channels, caps, budgets, inputs, policy)
        decisions.extend(out)
        customers, channels = _count_round(customers, channels, sent, policy)
    frames = [d for d in decisions if d.height]
    result = (
        pl.concat(frames, how="vertical_relaxed").cast(DECISION_SCHEMA)  # type: ignore[arg-type]
        if frames
        else pl.DataFrame(schema=DECISION_SCHEMA)
    )
    # A dropped candidate is neither sent nor paid for: no time, no cost.
    dropped = pl.col("outcome") == "suppressed"
    result = result.with_columns(
        pl.when(dropped).then(None).otherwise(pl.col("send_at")).alias("send_at"),
        pl.when(dropped).then(0).otherwise(pl.col("cost_fen")).alias("cost_fen"),
    )
    return Plan(inputs.day, result.sort("candidate_id"), rounds)
