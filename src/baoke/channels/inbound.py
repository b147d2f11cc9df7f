"""What comes back from the providers and the customers, turned into baoke's own events.

Delivery receipts become ``touch_status`` events of the touch they report on (found by the
provider's message id, and the address when one id covers a whole batch request); replies
become ``reply_keyword`` events (a TD unsubscribes at once, through the journeys' own event
path); a click on a short link becomes ``clicked``; a logged call becomes ``call_outcome``.
Every event carries a key derived from the provider's own identifiers, so a callback the
provider repeats (they all retry) is stored once and changes nothing the second time.

:func:`apply` hands the events to :func:`baoke.journeys.run.react`, exactly as ``POST
/api/events`` does: stored, processed and planned before the callback is answered.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from baoke.channels.protocol import Inbound, Receipt
from baoke.config import Settings
from baoke.errors import InputError
from baoke.journeys.event_files import read_event_rows
from baoke.journeys.run import react
from baoke.journeys.vocabulary import CALL_OUTCOMES
from baoke.store import models as m
from baoke.store.models import table

__all__ = [
    "Applied",
    "apply",
    "call_outcome_events",
    "click_event",
    "log_call",
    "receipt_events",
    "reply_events",
]

# What a logged call means for the touch it came from (a phone touch's task).
_CALL_TOUCH_STATUS = {
    "connected": "replied",
    "booked": "replied",
    "refused": "replied",
    "not_connected": "failed",
    "wrong_number": "failed",
}


@dataclass
class Applied:
    """What a batch of inbound events did."""

    received: int = 0
    stored: int = 0
    unmatched: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    effects: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain counts, for JSON and logs."""
        return {
            "received": self.received,
            "stored": self.stored,
            "unmatched": self.unmatched,
            "rejected": [{"index": i, "reason": r} for i, r in self.rejected],
            "effects": self.effects,
        }


def _iso(at: dt.datetime) -> str:
    return (at if at.tzinfo else at.replace(tzinfo=dt.UTC)).isoformat()


def receipt_events(
    conn: Connection, receipts: Sequence[Receipt]
) -> tuple[list[dict[str, Any]], int]:
    """``touch_status`` event rows for the receipts whose touch is known; and how many not."""
    if not receipts:
        return [], 0
    touches, customers = table(m.Touch), table(m.Customer)
    ids = list({r.provider_id for r in receipts})
    found: dict[str, list[tuple[str, int, str | None]]] = {}
    for start in range(0, len(ids), 900):
        query = (
            select(
                touches.c.provider_message_id,
                touches.c.idempotency_key,
                touches.c.customer_id,
                customers.c.mobile,
            )
            .join(customers, customers.c.id == touches.c.customer_id)
            .where(touches.c.provider_message_id.in_(ids[start : start + 900]))
        )
        for pid, key, cid, mobile in conn.execute(query):
            found.setdefault(pid, []).append((key, cid, mobile))
    by_ref = _by_send_ref(
        conn, [r.send_ref for r in receipts if r.send_ref and r.provider_id not in found]
    )
    shared = [c for group in found.values() if len(group) > 1 for c in group]
    externals = _external_ids(conn, [cid for _, cid, _ in shared])
    rows: list[dict[str, Any]] = []
    unmatched = 0
    for receipt in receipts:
        candidates = found.get(receipt.provider_id) or by_ref.get(receipt.send_ref or "", [])
        address = receipt.address
        if len(candidates) > 1 and address:
            # One id for several messages (a batch request, a WeCom task): the address
            # tells them apart, a mobile or a WeCom external_userid.
            candidates = [
                c
                for c in candidates
                if _same_mobile(c[2], address) or address in externals.get(c[1], ())
            ]
        if len(candidates) != 1:
            unmatched += 1
            continue
        key, cid, _ = candidates[0]
        rows.append(
            {
                "event_id": receipt.key,
                "type": "touch_status",
                "customer_id": cid,
                "occurred_at": _iso(receipt.at),
                "touch": key,
                "status": receipt.status,
            }
        )
    return rows, unmatched


def _by_send_ref(conn: Connection, refs: list[str]) -> dict[str, list[tuple[str, int, str | None]]]:
    """Touches by the reference their request carried (written before it went out): a receipt
    that beats the dispatcher's own record, or one for a reconciled message, still finds its
    touch."""
    outbox, touches, customers = table(m.OutboxEntry), table(m.Touch), table(m.Customer)
    found: dict[str, list[tuple[str, int, str | None]]] = {}
    unique = list(dict.fromkeys(refs))
    for start in range(0, len(unique), 900):
        query = (
            select(
                outbox.c.send_ref,
                touches.c.idempotency_key,
                touches.c.customer_id,
                customers.c.mobile,
            )
            .join(touches, touches.c.id == outbox.c.touch_id)
            .join(customers, customers.c.id == touches.c.customer_id)
            .where(outbox.c.send_ref.in_(unique[start : start + 900]))
        )
        for ref, key, cid, mobile in conn.execute(query):
            found.setdefault(ref, []).append((key, cid, mobile))
    return found


def _external_ids(conn: Connection, customers: list[int]) -> dict[int, set[str]]:
    relations = table(m.WecomRelation)
    found: dict[int, set[str]] = {}
    unique = list(dict.fromkeys(customers))
    for start in range(0, len(unique), 900):
        query = select(relations.c.customer_id, relations.c.external_userid).where(
            relations.c.customer_id.in_(unique[start : start + 900])
        )
        for cid, external in conn.execute(query):
            found.setdefault(cid, set()).add(external)
    return found


def _same_mobile(stored: str | None, reported: str) -> bool:
    if not stored:
        return False
    digits = "".join(ch for ch in reported if ch.isdigit())
    return stored.endswith(digits[-11:]) if len(digits) >= 11 else False


def reply_events(replies: Sequence[Inbound]) -> list[dict[str, Any]]:
    """``reply_keyword`` event rows: the customer is found by mobile (or WeCom id)."""
    rows = []
    for reply in replies:
        ref = "external_userid" if reply.channel == "wecom" else "mobile"
        rows.append(
            {
                "event_id": reply.key,
                "type": "reply_keyword",
                ref: reply.address,
                "occurred_at": _iso(reply.at),
                "keyword": reply.text.strip()[:64] or "(empty)",
                "channel": reply.channel,
            }
        )
    return rows


def click_event(conn: Connection, code: str, at: dt.datetime) -> tuple[str, list[dict[str, Any]]]:
    """Count a click on short link ``code``; its target and, for the first click, the event.

    Raises KeyError for an unknown code.
    """
    links, touches = table(m.ShortLink), table(m.Touch)
    row = conn.execute(
        select(
            links.c.url,
            links.c.clicks,
            links.c.touch_id,
            touches.c.idempotency_key,
            touches.c.customer_id,
        )
        .join(touches, touches.c.id == links.c.touch_id)
        .where(links.c.code == code, links.c.purpose == "link")
    ).first()
    if row is None:
        raise KeyError(code)
    url, clicks, _touch_id, key, cid = row
    conn.execute(
        update(links)
        .where(links.c.code == code)
        .values(
            clicks=links.c.clicks + 1,
            first_clicked_at=at if clicks == 0 else links.c.first_clicked_at,
        )
    )
    if clicks:
        return url, []  # counted; the touch is already 'clicked'
    event = {
        "event_id": f"click:{code}",
        "type": "touch_status",
        "customer_id": cid,
        "occurred_at": _iso(at),
        "touch": key,
        "status": "clicked",
    }
    return url, [event]


def call_outcome_events(
    conn: Connection, task_id: int, outcome: str, at: dt.datetime
) -> list[dict[str, Any]]:
    """The ``call_outcome`` event of a task, and the touch status when a phone touch made it.

    Raises KeyError for an unknown task.
    """
    tasks, touches = table(m.Task), table(m.Touch)
    row = conn.execute(
        select(tasks.c.customer_id, tasks.c.idempotency_key).where(tasks.c.id == task_id)
    ).first()
    if row is None:
        raise KeyError(task_id)
    cid, task_key = row
    stamp = int(at.timestamp())
    events: list[dict[str, Any]] = [
        {
            "event_id": f"call:{task_id}:{outcome}:{stamp}",
            "type": "call_outcome",
            "customer_id": cid,
            "occurred_at": _iso(at),
            "outcome": outcome,
            "task_id": task_id,
        }
    ]
    touch_key = (task_key or "").removeprefix("touch:")
    if task_key and task_key.startswith("touch:") and outcome in _CALL_TOUCH_STATUS:
        known = conn.execute(
            select(touches.c.id).where(touches.c.idempotency_key == touch_key)
        ).first()
        if known is not None:
            events.append(
                {
                    "event_id": f"call:{task_id}:touch:{stamp}",
                    "type": "touch_status",
                    "customer_id": cid,
                    "occurred_at": _iso(at),
                    "touch": touch_key,
                    "status": _CALL_TOUCH_STATUS[outcome],
                }
            )
    return events


def apply(settings: Settings, engine: Engine, rows: Sequence[dict[str, Any]]) -> Applied:
    """Check, store and react to inbound event rows (as ``POST /api/events`` does)."""
    done = Applied(received=len(rows))
    if not rows:
        return done
    with engine.connect() as conn:
        events, rejected = read_event_rows(list(rows), conn, zone=settings.zone)
    done.rejected = list(rejected)
    if events.height == 0:
        return done
    stored, result, _ = react(settings, engine, events)
    done.stored = stored
    done.effects = dict(result.effects)
    return done


def log_call(settings: Settings, engine: Engine, task_id: int, outcome: str) -> Applied:
    """Record a call's outcome through the events path; the playbooks react at once."""
    if outcome not in CALL_OUTCOMES:
        raise InputError(f"outcome must be one of {', '.join(CALL_OUTCOMES)}, not {outcome!r}")
    with engine.connect() as conn:
        try:
            rows = call_outcome_events(conn, task_id, outcome, dt.datetime.now(dt.UTC))
        except KeyError:
            raise InputError(f"no task {task_id}") from None
    return apply(settings, engine, rows)
