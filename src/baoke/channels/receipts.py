"""Receipts that must be fetched: WeCom mass-send results and JPush delivery counts.

SMS providers push their receipts to the callbacks; WeCom and JPush have to be asked.
:func:`poll` asks them about the touches they accepted in the last ``days`` that have no
receipt yet, and applies what they answer through the same event path as a callback (keys
from the providers' own ids, so polling twice changes nothing). ``baoke dispatch receipts``
runs it; schedule it every few minutes beside the dispatcher.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from typing import Any

from sqlalchemy import Engine, bindparam, select

from baoke.channels.inbound import Applied, apply, receipt_events
from baoke.channels.messages import wecom_senders
from baoke.channels.protocol import ProviderError, Receipt
from baoke.channels.registry import Providers
from baoke.config import Settings
from baoke.store import models as m
from baoke.store.models import table

__all__ = ["poll"]

log = logging.getLogger("baoke.dispatch.receipts")


def _awaiting(engine: Engine, since: dt.datetime, providers: list[str]) -> list[dict[str, Any]]:
    """Touches sent through these providers since ``since`` that are still only 'sent'."""
    outbox, touches = table(m.OutboxEntry), table(m.Touch)
    query = (
        select(
            touches.c.id,
            touches.c.customer_id,
            touches.c.provider_message_id,
            outbox.c.provider,
        )
        .join(outbox, outbox.c.touch_id == touches.c.id)
        .where(
            outbox.c.status == "sent",
            outbox.c.finished_at >= bindparam("since", type_=outbox.c.finished_at.type),
            outbox.c.provider.in_(providers),
            touches.c.status == "sent",
            touches.c.provider_message_id.is_not(None),
        )
    )
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query, {"since": since}).mappings()]


def poll(
    settings: Settings, engine: Engine, *, days: int = 3, now: dt.datetime | None = None
) -> Applied:
    """Ask WeCom and JPush about the touches they accepted; apply the receipts."""
    since = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=days)
    providers = Providers(settings, engine)
    receipts: list[Receipt] = []
    try:
        names = {n for route in settings.channels.routes.values() for n in route}
        pollable = {
            name: providers.get(name)
            for name in sorted(names)
            if hasattr(providers.get(name), "poll_results")
            or hasattr(providers.get(name), "poll_receipts")
        }
        if not pollable:
            return Applied()
        rows = _awaiting(engine, since, list(pollable))
        by_provider: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            by_provider[row["provider"]].append(row)
        for name, members in by_provider.items():
            try:
                receipts.extend(_ask(engine, pollable[name], members))
            except ProviderError as exc:
                log.warning("receipts from %s not fetched: %s", name, exc)
    finally:
        providers.close()
    with engine.connect() as conn:
        events, unmatched = receipt_events(conn, receipts)
    done = apply(settings, engine, events)
    done.unmatched += unmatched
    return done


def _ask(engine: Engine, adapter: Any, rows: list[dict[str, Any]]) -> list[Receipt]:
    ids = sorted({str(r["provider_message_id"]) for r in rows})
    if hasattr(adapter, "poll_receipts"):  # JPush: counts by msg_id
        return list(adapter.poll_receipts(ids))
    # WeCom: a task's results are asked of the staff member who sent it (the customer's live
    # friendship, as at send time).
    with engine.connect() as conn:
        senders = wecom_senders(conn, [r["customer_id"] for r in rows])
    asked: set[tuple[str, str]] = set()
    out: list[Receipt] = []
    for row in rows:
        sender = senders.get(row["customer_id"])
        key = (str(row["provider_message_id"]), sender[1] if sender else "")
        if sender is None or key in asked:
            continue
        asked.add(key)
        out.extend(adapter.poll_results(*key))
    return out
