"""Why a customer did or did not get a message: the policy's decisions for one customer and day.

``baoke plan explain 1042`` answers a store manager's "why didn't 张先生 get the reminder?" on
one screen: who the customer is (masked), how much of this month's allowance is used, what
each channel allows, and every candidate of the day with what became of it and why. Reading
it is data access, so it is written to the audit log.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
from sqlalchemy import Connection, insert

from baoke.config import Settings
from baoke.errors import InputError
from baoke.ingest.store_io import query_frame
from baoke.journeys.catalog import load_catalog
from baoke.journeys.context import build_contexts
from baoke.policy.arbiter import DECISION_SCHEMA, month_start
from baoke.policy.inputs import COUNTED, channel_access
from baoke.privacy import mask_mobile
from baoke.store import models as m
from baoke.store.models import table
from baoke.touches import CHANNELS

__all__ = ["OUTCOME_WORDS", "explain_customer", "find_customer"]

OUTCOME_WORDS = {
    "scheduled": "sent",
    "deferred": "moved",
    "rerouted": "to group/moments",
    "suppressed": "dropped",
}
"""How each outcome reads to a store manager."""

# The stored decision: the arbiter's, keyed by touch or task, with its plan date.
_DECISION_SCHEMA: dict[str, pl.DataType] = {
    "touch_id": pl.Int64(),
    "task_id": pl.Int64(),
    "plan_date": pl.Date(),
    **{
        k: v
        for k, v in DECISION_SCHEMA.items()
        if k not in ("candidate_id", "is_task", "customer_id")
    },
}


def find_customer(conn: Connection, who: str) -> int:
    """A customer id from an id or a mobile number (InputError if there is none)."""
    digits = who.strip().removeprefix("+86")
    if digits.isdigit() and len(digits) == 11 and digits.startswith("1"):
        found = query_frame(
            conn, "SELECT id FROM customers WHERE mobile = ?", [f"+86{digits}"], {"id": pl.Int64()}
        )
        if found.height:
            return int(found["id"][0])
        raise InputError(f"no customer with mobile {mask_mobile('+86' + digits)}")
    if not digits.isdigit():
        raise InputError(f"a customer is named by id or mobile, not {who!r}")
    found = query_frame(
        conn, "SELECT id FROM customers WHERE id = ?", [int(digits)], {"id": pl.Int64()}
    )
    if not found.height:
        raise InputError(f"no customer {digits}")
    return int(digits)


def explain_customer(
    conn: Connection,
    settings: Settings,
    customer: int,
    day: dt.date | None,
    *,
    actor: str = "cli",
) -> dict[str, Any]:
    """The customer, this month's use of the caps, the channels, and the day's decisions.

    ``day`` None: the latest day the policy decided anything for the customer.
    """
    if day is None:
        latest = query_frame(
            conn,
            "SELECT max(plan_date) AS d FROM policy_decisions WHERE customer_id = ?",
            [customer],
            {"d": pl.Date()},
        )
        day = latest["d"][0] if latest.height and latest["d"][0] is not None else None
    decisions = (
        query_frame(
            conn,
            "SELECT touch_id, task_id, plan_date, playbook, step, template, priority, tier, "
            "outcome, rule, channel, send_at, cost_fen, reason FROM policy_decisions "
            "WHERE customer_id = ? AND plan_date = ?",
            [customer, day],
            _DECISION_SCHEMA,
        ).sort("send_at", "touch_id", "task_id", nulls_last=True)
        if day is not None
        else pl.DataFrame(schema=_DECISION_SCHEMA)
    )
    catalog = load_catalog(conn, settings, record=False)
    labels = {name: book.label for name, book in catalog.current.items()}
    as_of = day or dt.datetime.now(settings.zone).date()
    context = build_contexts(conn, [customer], as_of=as_of, settings=settings).get(customer, {})
    policy = settings.policy
    tier = str(decisions["tier"][0]) if decisions.height else _tier(conn, customer)
    used = _used_this_month(conn, customer, as_of, settings)
    result = {
        "customer_id": customer,
        "greeting": _greeting(context),
        "mobile": mask_mobile(_mobile(conn, customer)),
        "tier": tier,
        "day": day.isoformat() if day else None,
        "month": {
            "marketing_sent": used["marketing"],
            "cap": policy.monthly_caps.get(tier, policy.monthly_caps["none"]),
            "by_channel": used["by_channel"],
        },
        "channels": _channels(conn, customer, settings.zone),
        "decisions": [_decision(row, labels, settings) for row in decisions.to_dicts()],
    }
    _audit(conn, customer, day, actor)
    return result


def _decision(row: dict[str, Any], labels: dict[str, str], settings: Settings) -> dict[str, Any]:
    send_at = row["send_at"]
    return {
        **row,
        "plan_date": row["plan_date"].isoformat(),
        "send_at": send_at.isoformat() if send_at else None,
        "send_at_local": send_at.astimezone(settings.zone).strftime("%m-%d %H:%M")
        if send_at
        else None,
        "playbook_label": labels.get(row["playbook"] or "", row["playbook"]),
        "outcome_words": OUTCOME_WORDS.get(row["outcome"], row["outcome"]),
    }


def _greeting(context: dict[str, object]) -> str:
    surname, title = context.get("surname"), context.get("title")
    return f"{surname}{title}" if surname and title else "客户"


def _mobile(conn: Connection, customer: int) -> str | None:
    found = query_frame(
        conn, "SELECT mobile FROM customers WHERE id = ?", [customer], {"mobile": pl.String()}
    )
    return str(found["mobile"][0]) if found.height and found["mobile"][0] else None


def _tier(conn: Connection, customer: int) -> str:
    found = query_frame(
        conn,
        "SELECT value_tier FROM customer_profiles WHERE customer_id = ?",
        [customer],
        {"value_tier": pl.String()},
    )
    return str(found["value_tier"][0]) if found.height and found["value_tier"][0] else "none"


def _used_this_month(
    conn: Connection, customer: int, day: dt.date, settings: Settings
) -> dict[str, Any]:
    zone = settings.zone
    start = dt.datetime.combine(month_start(day), dt.time(), zone).astimezone(dt.UTC)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.UTC)
    marks = ", ".join(f"'{s}'" for s in COUNTED)
    rows = query_frame(
        conn,
        "SELECT channel, priority FROM touches WHERE customer_id = ? "
        f"AND status IN ({marks}) AND scheduled_at >= ? AND scheduled_at < ?",
        [customer, start, end],
        {"channel": pl.String(), "priority": pl.String()},
    )
    marketing = rows.filter(~pl.col("priority").is_in(list(settings.policy.service_classes)))
    by_channel = dict(rows["channel"].value_counts().sort("channel").iter_rows())
    return {"marketing": marketing.height, "by_channel": by_channel}


def _channels(conn: Connection, customer: int, zone: ZoneInfo) -> list[dict[str, Any]]:
    probe = pl.DataFrame(
        {"customer_id": [customer], "channels": [list(CHANNELS)]},
        schema={"customer_id": pl.Int64(), "channels": pl.List(pl.String())},
    )
    access = channel_access(conn, probe, zone)
    out = []
    order = {c: i for i, c in enumerate(CHANNELS)}
    for row in sorted(access.to_dicts(), key=lambda r: order.get(r["channel"], len(order))):
        at = row["consent_at"].astimezone(zone).strftime("%Y-%m-%d") if row["consent_at"] else None
        out.append(
            {
                "channel": row["channel"],
                "reachable": row["reachable"],
                "unreachable_why": row["unreachable_why"],
                "consent": row["consent"],
                "consent_detail": row["consent_detail"],
                "consent_at": at,
            }
        )
    return out


def _audit(conn: Connection, customer: int, day: dt.date | None, actor: str) -> None:
    conn.execute(
        insert(table(m.AuditEntry)).values(
            at=dt.datetime.now(dt.UTC),
            actor=actor,
            action="policy.explain",
            entity="customer",
            entity_id=str(customer),
            detail={"plan_date": day.isoformat() if day else None},
        )
    )
