"""Reading what one day's arbitration needs from the store, in a fixed number of set queries.

Everything that can change during the day is read live from the operational store, not from
the nightly profile snapshot: a consent withdrawn by a TD reply at 15:31, a WeCom friend
deleted, a complaint opened by an event — each is seen by the very next decision. Only the
value tier and push reachability (which needs the app-activity window) come from the profile.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import polars as pl
from sqlalchemy import Connection

from baoke.ingest.store_io import fetch_by_keys, query_frame
from baoke.journeys.catalog import Catalog
from baoke.journeys.effects import complaints_open_by_events
from baoke.policy.arbiter import (
    ACCESS_SCHEMA,
    CANDIDATE_SCHEMA,
    CUSTOMER_SCHEMA,
    MIX_SCHEMA,
    SPEND_SCHEMA,
    STATS_SCHEMA,
    USAGE_SCHEMA,
    UTC,
    Inputs,
    month_start,
    week_start,
)
from baoke.policy.settings import PolicySettings
from baoke.store import models as m
from baoke.store.models import table

__all__ = ["COUNTED", "DISPATCHED", "OPEN_STATUSES", "channel_access", "load_inputs"]

OPEN_STATUSES = ("candidate", "deferred")
"""Touch statuses the policy still has to decide."""
COUNTED = ("scheduled", "sent", "delivered", "opened", "clicked", "replied")
"""Touch statuses that count against caps and budgets: planned to go, or gone."""
DISPATCHED = ("sent", "delivered", "opened", "clicked", "replied")
"""Touch statuses that tell how a channel performs (sent, with what came of it)."""
_RESPONDED = ("clicked", "replied")
_OPEN_COMPLAINT = ("open", "in_progress")


def _marks(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _local_start(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC)


def load_inputs(
    conn: Connection,
    catalog: Catalog,
    policy: PolicySettings,
    day: dt.date,
    zone: ZoneInfo,
    *,
    not_before: dt.datetime | None = None,
) -> Inputs:
    """The day's open candidates and everything the arbiter needs about their customers."""
    end = _local_start(day + dt.timedelta(days=1), zone)
    candidates = _candidates(conn, catalog, end)
    if candidates.height == 0:
        # Nothing open (a rerun, a quiet event batch): nothing else is worth reading.
        return Inputs(
            day,
            zone,
            candidates,
            pl.DataFrame(schema=CUSTOMER_SCHEMA),
            pl.DataFrame(schema=ACCESS_SCHEMA),
            not_before=not_before,
        )
    customers = candidates["customer_id"].unique()
    window = _local_start(min(month_start(day), week_start(day)), zone)
    lookback = _local_start(day - dt.timedelta(days=policy.choice.lookback_days), zone)
    spend, mix = _committed(conn, month_start(day), day)
    return Inputs(
        day=day,
        zone=zone,
        candidates=candidates,
        customers=_customers(conn, customers),
        access=channel_access(conn, candidates, zone),
        usage=_usage(conn, catalog, customers, window, end),
        spend=spend,
        mix=mix,
        stats=_stats(conn, lookback, end),
        not_before=not_before,
    )


def _candidates(conn: Connection, catalog: Catalog, end: dt.datetime) -> pl.DataFrame:
    return pl.concat([_touch_candidates(conn, catalog, end), _call_candidates(conn, catalog, end)])


def _playbook_facts(catalog: Catalog) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "playbook": list(catalog.current),
            "kind": [b.kind for b in catalog.current.values()],
            "on_collision": [b.on_collision for b in catalog.current.values()],
        },
        schema={"playbook": pl.String(), "kind": pl.String(), "on_collision": pl.String()},
    )


def _call_candidates(conn: Connection, catalog: Catalog, end: dt.datetime) -> pl.DataFrame:
    """Calls a playbook proposed that the policy has not reviewed: phone touches by staff."""
    rows = query_frame(
        conn,
        "SELECT id, customer_id, playbook, step, template, created_at FROM tasks "
        "WHERE planned_at IS NULL AND kind = 'call' AND playbook IS NOT NULL "
        "AND created_at < ?",
        [end],
        {
            "id": pl.Int64(),
            "customer_id": pl.Int64(),
            "playbook": pl.String(),
            "step": pl.String(),
            "template": pl.String(),
            "created_at": UTC,
        },
    )
    return (
        rows.join(_playbook_facts(catalog), on="playbook", how="left")
        .select(
            (-pl.col("id")).alias("candidate_id"),
            pl.lit(True).alias("is_task"),
            "customer_id",
            "playbook",
            "step",
            "template",
            # A playbook no longer in the library: its calls count as service work.
            pl.col("kind").fill_null("service").alias("priority"),
            pl.lit(["phone"]).alias("channels"),
            pl.col("created_at").alias("moment"),
            pl.col("created_at").alias("proposed_at"),
            pl.lit("drop").alias("on_collision"),
        )
        .cast(CANDIDATE_SCHEMA)  # type: ignore[arg-type]
    )


def _touch_candidates(conn: Connection, catalog: Catalog, end: dt.datetime) -> pl.DataFrame:
    rows = query_frame(
        conn,
        "SELECT id, customer_id, playbook, step, template, priority, channels, scheduled_at, "
        f"proposed_at FROM touches WHERE status IN ({_marks(OPEN_STATUSES)}) "
        "AND scheduled_at < ?",
        [end],
        {
            "id": pl.Int64(),
            "customer_id": pl.Int64(),
            "playbook": pl.String(),
            "step": pl.String(),
            "template": pl.String(),
            "priority": pl.String(),
            "channels": pl.String(),
            "scheduled_at": UTC,
            "proposed_at": UTC,
        },
    )
    rules = _playbook_facts(catalog).drop("kind")
    return (
        rows.join(rules, on="playbook", how="left")
        .select(
            pl.col("id").alias("candidate_id"),
            pl.lit(False).alias("is_task"),
            "customer_id",
            "playbook",
            "step",
            "template",
            "priority",
            pl.col("channels")
            .fill_null("")
            .str.split(",")
            .list.eval(pl.element().filter(pl.element() != "")),
            pl.col("scheduled_at").alias("moment"),
            pl.coalesce("proposed_at", "scheduled_at").alias("proposed_at"),
            pl.col("on_collision").fill_null("defer"),
        )
        .cast(CANDIDATE_SCHEMA)  # type: ignore[arg-type]
    )


def open_complaints(conn: Connection, ids: pl.Series) -> pl.DataFrame:
    """``customer_id`` and ``complaint_since`` of the customers with a complaint still open,
    on record or known only from events."""
    complaints = fetch_by_keys(
        conn,
        table(m.Complaint),
        ["customer_id"],
        pl.DataFrame({"customer_id": ids}),
        ["status", "opened_at"],
    )
    on_record = (
        complaints.filter(pl.col("status").is_in(list(_OPEN_COMPLAINT)))
        .group_by("customer_id")
        .agg(pl.col("opened_at").min())
    )
    by_events = complaints_open_by_events(conn, ids)
    return (
        pl.concat([on_record, by_events.cast(on_record.schema)])
        .group_by("customer_id")
        .agg(pl.col("opened_at").min().alias("complaint_since"))
    )


def _customers(conn: Connection, ids: pl.Series) -> pl.DataFrame:
    keys = pl.DataFrame({"id": ids})
    people = fetch_by_keys(conn, table(m.Customer), ["id"], keys, ["contact_from", "contact_to"])
    tiers = fetch_by_keys(
        conn,
        table(m.CustomerProfile),
        ["customer_id"],
        keys.rename({"id": "customer_id"}),
        ["value_tier"],
    )
    open_since = open_complaints(conn, ids)
    return (
        people.rename({"id": "customer_id"})
        .join(tiers, on="customer_id", how="left")
        .join(open_since, on="customer_id", how="left")
        .select(
            "customer_id",
            pl.col("value_tier").fill_null("none").alias("tier"),
            "contact_from",
            "contact_to",
            "complaint_since",
        )
        .cast(CUSTOMER_SCHEMA)  # type: ignore[arg-type]
    )


def channel_access(conn: Connection, candidates: pl.DataFrame, zone: ZoneInfo) -> pl.DataFrame:
    """Reachability and consent for every (customer, channel) a candidate may use."""
    pairs = (
        candidates.select("customer_id", pl.col("channels").alias("channel"))
        .explode("channel")
        .drop_nulls()
        .unique()
    )
    ids = pairs.select(pl.col("customer_id").alias("id")).unique()
    people = fetch_by_keys(
        conn, table(m.Customer), ["id"], ids, ["mobile", "mobile_status", "email"]
    ).rename({"id": "customer_id"})
    push = fetch_by_keys(
        conn,
        table(m.CustomerProfile),
        ["customer_id"],
        ids.rename({"id": "customer_id"}),
        ["push_reachable"],
    )
    friends = _wecom_friends(conn, ids["id"])
    consents = _consents(conn, ids["id"])
    facts = (
        pairs.join(people, on="customer_id", how="left")
        .join(push, on="customer_id", how="left")
        .join(friends, on="customer_id", how="left")
        .join(consents, on=["customer_id", "channel"], how="left")
        .with_columns(pl.col("friend").fill_null(False))
    )
    ch = pl.col("channel")
    mobile_ok = pl.col("mobile").is_not_null() & (pl.col("mobile_status") == "valid")
    reachable = (
        pl.when(ch.is_in(["sms", "phone"]))
        .then(mobile_ok)
        .when(ch == "wecom")
        .then(pl.col("friend"))
        .when(ch == "push")
        .then(pl.col("push_reachable").fill_null(False))
        .when(ch == "email")
        .then(pl.col("email").is_not_null())
        .otherwise(False)
    )
    why = (
        pl.when(ch.is_in(["sms", "phone"]) & pl.col("mobile").is_not_null())
        .then(pl.format("mobile marked {}", pl.col("mobile_status")))
        .when(ch.is_in(["sms", "phone"]))
        .then(pl.lit("no mobile on record"))
        .when(ch == "wecom")
        .then(
            pl.when(pl.col("friend_deleted_at").is_not_null())
            .then(
                pl.format(
                    "not a WeCom friend (deleted on {})",
                    pl.col("friend_deleted_at")
                    .dt.convert_time_zone(str(zone))
                    .dt.strftime("%Y-%m-%d"),
                )
            )
            .otherwise(pl.lit("not a WeCom friend"))
        )
        .when(ch == "push")
        .then(pl.lit("push not enabled (no app notifications, or no app use in 90 days)"))
        .when(ch == "email")
        .then(pl.lit("no e-mail address"))
    )
    # Adding the advisor on WeCom is the customer's own opt-in; an explicit refusal or a
    # withdrawal on record overrides it.
    implicit = (ch == "wecom") & pl.col("friend") & pl.col("consent").is_null()
    return facts.select(
        "customer_id",
        "channel",
        reachable.alias("reachable"),
        pl.when(reachable).then(pl.lit(None, pl.String)).otherwise(why).alias("unreachable_why"),
        pl.when(implicit)
        .then(pl.lit("granted"))
        .otherwise(pl.col("consent").fill_null("none"))
        .alias("consent"),
        pl.when(implicit)
        .then(pl.col("friend_at"))
        .otherwise(pl.col("consent_at"))
        .alias("consent_at"),
        pl.when(implicit)
        .then(pl.lit("added the advisor on WeCom"))
        .otherwise(pl.col("consent_detail"))
        .alias("consent_detail"),
    ).cast(ACCESS_SCHEMA)  # type: ignore[arg-type]


def _consents(conn: Connection, ids: pl.Series) -> pl.DataFrame:
    rows = fetch_by_keys(
        conn,
        table(m.Consent),
        ["customer_id"],
        pl.DataFrame({"customer_id": ids}),
        ["channel", "granted", "basis", "granted_at", "withdrawn_at", "source"],
        where="purpose = 'marketing'",
    )
    withdrawn = pl.col("withdrawn_at").is_not_null() & (
        ~pl.col("granted")
        | pl.col("granted_at").is_null()
        | (pl.col("withdrawn_at") >= pl.col("granted_at"))
    )
    return rows.select(
        "customer_id",
        "channel",
        pl.when(withdrawn)
        .then(pl.lit("withdrawn"))
        .when(pl.col("granted"))
        .then(pl.lit("granted"))
        .otherwise(pl.lit("none"))
        .alias("consent"),
        pl.when(withdrawn).then("withdrawn_at").otherwise("granted_at").alias("consent_at"),
        pl.when(withdrawn)
        .then(pl.col("source"))
        .otherwise(pl.col("basis"))
        .alias("consent_detail"),
    )


def _wecom_friends(conn: Connection, ids: pl.Series) -> pl.DataFrame:
    """Whether each customer has an active WeCom friendship, with the store's latest word.

    A ``wecom_friend_deleted`` event by the customer after the latest add ends it even before
    the relation records are re-imported.
    """
    keys = pl.DataFrame({"customer_id": ids})
    relations = fetch_by_keys(
        conn, table(m.WecomRelation), ["customer_id"], keys, ["added_at", "deleted_at"]
    )
    events = fetch_by_keys(
        conn,
        table(m.Event),
        ["customer_id"],
        keys,
        ["type", "occurred_at", "attributes"],
        where="type IN ('wecom_friend_added', 'wecom_friend_deleted')",
    )
    by_customer = (
        pl.col("attributes").str.json_path_match("$.deleted_by").fill_null("customer") == "customer"
    )
    deleted_events = (
        events.filter((pl.col("type") == "wecom_friend_deleted") & by_customer)
        .group_by("customer_id")
        .agg(pl.col("occurred_at").max().alias("event_deleted_at"))
    )
    added_events = (
        events.filter(pl.col("type") == "wecom_friend_added")
        .group_by("customer_id")
        .agg(pl.col("occurred_at").max().alias("event_added_at"))
    )
    active = (
        relations.group_by("customer_id")
        .agg(
            pl.col("added_at").filter(pl.col("deleted_at").is_null()).max().alias("active_at"),
            pl.col("added_at").max().alias("added_at"),
            pl.col("deleted_at").max().alias("deleted_at"),
        )
        .join(added_events, on="customer_id", how="full", coalesce=True)
        .join(deleted_events, on="customer_id", how="full", coalesce=True)
    )
    added = pl.max_horizontal("active_at", "event_added_at")
    deleted = pl.col("event_deleted_at")
    friend = added.is_not_null() & (deleted.is_null() | (deleted < added))
    return active.select(
        "customer_id",
        friend.alias("friend"),
        added.alias("friend_at"),
        pl.max_horizontal("deleted_at", "event_deleted_at").alias("friend_deleted_at"),
    )


def _usage(
    conn: Connection, catalog: Catalog, customers: pl.Series, since: dt.datetime, end: dt.datetime
) -> pl.DataFrame:
    """Touches planned or sent, and call tasks, since the week's or month's start."""
    touches = query_frame(
        conn,
        "SELECT customer_id, channel, priority, scheduled_at AS at FROM touches "
        f"WHERE status IN ({_marks(COUNTED)}) AND scheduled_at >= ? AND scheduled_at < ?",
        [since, end],
        {k: v for k, v in USAGE_SCHEMA.items() if k != "is_task"},
    ).with_columns(pl.lit(False).alias("is_task"))
    # Calls the policy let through (or that predate it); not the ones it cancelled.
    calls = query_frame(
        conn,
        "SELECT customer_id, playbook, created_at AS at FROM tasks WHERE kind = 'call' "
        "AND planned_at IS NOT NULL AND status <> 'cancelled' "
        "AND created_at >= ? AND created_at < ?",
        [since, end],
        {"customer_id": pl.Int64(), "playbook": pl.String(), "at": UTC},
    )
    kinds = _playbook_facts(catalog).select("playbook", pl.col("kind").alias("priority"))
    calls = calls.join(kinds, on="playbook", how="left").select(
        "customer_id",
        pl.lit("phone").alias("channel"),
        # A call nobody proposed through a playbook (a manual task) is service work.
        pl.col("priority").fill_null("service"),
        pl.lit(True).alias("is_task"),
        "at",
    )
    wanted = pl.DataFrame({"customer_id": customers})
    both = pl.concat([touches.select(list(USAGE_SCHEMA)), calls.select(list(USAGE_SCHEMA))])
    return both.cast(USAGE_SCHEMA).join(  # type: ignore[arg-type]
        wanted, on="customer_id", how="semi"
    )


def _committed(conn: Connection, first: dt.date, day: dt.date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """What the policy let go this month (touches and calls): spend per playbook, and the
    count per tier (as decided) and channel for the mix."""
    rows = query_frame(
        conn,
        "SELECT playbook, tier, channel, count(*) AS n, sum(cost_fen) AS spent_fen "
        "FROM policy_decisions WHERE outcome = 'scheduled' AND plan_date >= ? "
        "AND plan_date <= ? GROUP BY playbook, tier, channel",
        [first, day],
        {
            "playbook": pl.String(),
            "tier": pl.String(),
            "channel": pl.String(),
            "n": pl.Int64(),
            "spent_fen": pl.Int64(),
        },
    )
    spend = (
        rows.filter(pl.col("playbook").is_not_null())
        .group_by("playbook")
        .agg(pl.col("spent_fen").sum())
        .cast(SPEND_SCHEMA)  # type: ignore[arg-type]
    )
    mix = rows.group_by("tier", "channel").agg(pl.col("n").sum()).cast(MIX_SCHEMA)  # type: ignore[arg-type]
    return spend.select(list(SPEND_SCHEMA)), mix.select(list(MIX_SCHEMA))


def _stats(conn: Connection, since: dt.datetime, end: dt.datetime) -> pl.DataFrame:
    # Counted per customer first, then joined to the tiers: one profile lookup per customer
    # rather than per touch (a quarter less time over 90 days of a 20,000-customer group).
    return query_frame(
        conn,
        "SELECT COALESCE(p.value_tier, 'none') AS tier, t.channel, sum(t.sent) AS sent, "
        "sum(t.responded) AS responded FROM (SELECT customer_id, channel, count(*) AS sent, "
        f"sum(CASE WHEN status IN ({_marks(_RESPONDED)}) THEN 1 ELSE 0 END) AS responded "
        f"FROM touches WHERE status IN ({_marks(DISPATCHED)}) AND scheduled_at >= ? "
        "AND scheduled_at < ? GROUP BY customer_id, channel) t "
        "LEFT JOIN customer_profiles p ON p.customer_id = t.customer_id "
        "GROUP BY COALESCE(p.value_tier, 'none'), t.channel",
        [since, end],
        STATS_SCHEMA,
    )
