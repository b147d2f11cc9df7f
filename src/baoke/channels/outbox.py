"""The outbox's states and the statements that move rows between them.

``pending`` (due at ``due_at``) → ``sending`` (claimed: ``claimed_by`` holds it until
``lease_until``; ``provider`` and ``send_ref`` are written before the request goes out) →
``sent`` | ``failed`` | ``suppressed`` (consent gone by send time) | ``expired`` (waited too
long) — or back to ``pending`` with a later ``due_at`` (a retry, or the sending hours are
over). A request that may have reached the provider leaves its rows ``in_doubt``; so does a
claim whose lease ran out (its dispatcher died). Recovery asks the provider about their
``send_ref``: what it has becomes ``sent``, what it has not goes back to ``pending``, and what it
cannot tell waits as ``unknown`` for an operator (unless the provider dedupes by key itself).

A claim is one statement. On PostgreSQL it takes rows ``FOR UPDATE SKIP LOCKED``, so several
dispatcher processes share the outbox without waiting on each other or taking a row twice; on
SQLite the single writer lock does the same.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, DateTime, String, TextClause, bindparam, text

__all__ = [
    "FINAL",
    "Claimed",
    "Settled",
    "claim",
    "expired_leases",
    "refund",
    "release",
    "set_route",
    "settle",
]

FINAL = ("sent", "failed", "suppressed", "expired", "cancelled")
"""Outbox states a row never leaves."""


def timed(sql: str, *names: str, texts: tuple[str, ...] = ()) -> TextClause:
    """``text(sql)`` with its time parameters typed, so SQLite gets its stored UTC format, and
    ``texts`` typed as strings, so PostgreSQL reads a parameter used twice as one type."""
    return text(sql).bindparams(
        *(bindparam(name, type_=DateTime(timezone=True)) for name in names),
        *(bindparam(name, type_=String()) for name in texts),
    )


@dataclass(frozen=True)
class Claimed:
    """One claimed outbox row."""

    id: int
    touch_id: int
    channel: str
    batch: str | None
    attempts: int
    provider: str | None = None
    send_ref: str | None = None


@dataclass(frozen=True)
class Settled:
    """The end of one row: its outbox state, the touch's status, and why."""

    outbox_id: int
    touch_id: int
    state: str  # one of FINAL
    provider_id: str | None = None
    detail: str | None = None


_RETURNING = "RETURNING id, touch_id, channel, batch, attempts, provider, send_ref"


def _paused_filter(paused_batches: Sequence[str], paused_channels: Sequence[str]) -> str:
    parts = []
    if paused_batches:
        parts.append("(batch IS NULL OR batch NOT IN :paused_batches)")
    if paused_channels:
        parts.append("channel NOT IN :paused_channels")
    return "".join(f" AND {p}" for p in parts)


def claim(
    conn: Connection,
    *,
    worker: str,
    now: dt.datetime,
    lease: dt.timedelta,
    limit: int,
    channels: Sequence[str] | None = None,
    paused_batches: Sequence[str] = (),
    paused_channels: Sequence[str] = (),
) -> list[Claimed]:
    """Claim up to ``limit`` due rows, oldest first; they are ``sending`` until the lease ends."""
    where = "status = 'pending' AND due_at <= :now" + _paused_filter(
        paused_batches, paused_channels
    )
    if channels:
        where += " AND channel IN :channels"
    lock = " FOR UPDATE SKIP LOCKED" if conn.dialect.name == "postgresql" else ""
    statement = timed(
        "UPDATE outbox SET status = 'sending', claimed_by = :worker, lease_until = :lease, "
        "attempts = attempts + 1, provider = NULL, send_ref = NULL "
        f"WHERE id IN (SELECT id FROM outbox WHERE {where} ORDER BY due_at, id "
        f"LIMIT :limit{lock}) {_RETURNING}",
        "lease",
        "now",
    )
    params: dict[str, Any] = {"worker": worker, "lease": now + lease, "now": now, "limit": limit}
    statement = _expanding(statement, params, channels, paused_batches, paused_channels)
    rows = conn.execute(statement, params).all()
    return sorted((Claimed(*row) for row in rows), key=lambda c: c.id)


def expired_leases(
    conn: Connection, *, worker: str, now: dt.datetime, lease: dt.timedelta, limit: int
) -> list[Claimed]:
    """Take over rows in doubt: ``in_doubt``, or ``sending`` past their lease (a dead claim).

    The rows stay ``in_doubt`` under the new claim until they are reconciled; their
    ``provider`` and ``send_ref`` are kept, since recovery must ask about exactly them.
    """
    lock = " FOR UPDATE SKIP LOCKED" if conn.dialect.name == "postgresql" else ""
    statement = timed(
        "UPDATE outbox SET status = 'in_doubt', claimed_by = :worker, lease_until = :lease "
        "WHERE id IN (SELECT id FROM outbox WHERE (status = 'sending' AND lease_until < :now) "
        "OR (status = 'in_doubt' AND (lease_until IS NULL OR lease_until < :now)) "
        f"ORDER BY id LIMIT :limit{lock}) {_RETURNING}",
        "lease",
        "now",
    )
    params = {"worker": worker, "lease": now + lease, "now": now, "limit": limit}
    rows = conn.execute(statement, params).all()
    return sorted((Claimed(*row) for row in rows), key=lambda c: c.id)


def set_route(conn: Connection, routes: Iterable[tuple[int, str, str]]) -> None:
    """Record (outbox id, provider, send_ref) before the request goes out."""
    rows = [{"i": i, "p": provider, "r": ref} for i, provider, ref in routes]
    if rows:
        conn.execute(text("UPDATE outbox SET provider = :p, send_ref = :r WHERE id = :i"), rows)


def release(
    conn: Connection,
    rows: Iterable[tuple[int, str, dt.datetime | None, str | None]],
) -> None:
    """Put rows into a non-final state: (outbox id, state, new due time or None, why).

    ``pending`` with a due time retries later; ``in_doubt`` waits for reconciliation;
    ``unknown`` waits for an operator.
    """
    params = [{"i": i, "s": state, "d": due, "e": why} for i, state, due, why in rows]
    if not params:
        return
    # ``in_doubt`` keeps its time as the lease: reconciliation waits until then, so a provider
    # still working on the request has answered before it is asked.
    conn.execute(
        timed(
            "UPDATE outbox SET status = :s, last_error = :e, "
            "due_at = CASE WHEN :s = 'pending' THEN COALESCE(:d, due_at) ELSE due_at END, "
            "lease_until = CASE WHEN :s = 'in_doubt' THEN :d ELSE NULL END, "
            "claimed_by = CASE WHEN :s = 'pending' THEN NULL ELSE claimed_by END, "
            # Queued again, the row owes no provider anything: the next claim routes it anew.
            "provider = CASE WHEN :s = 'pending' THEN NULL ELSE provider END, "
            "send_ref = CASE WHEN :s = 'pending' THEN NULL ELSE send_ref END WHERE id = :i",
            "d",
            texts=("s",),
        ),
        params,
    )


def refund(conn: Connection, ids: Iterable[int]) -> None:
    """Take back the attempt a claim counted, for rows that were never tried (circuit open)."""
    params = [{"i": i} for i in ids]
    if params:
        conn.execute(text("UPDATE outbox SET attempts = attempts - 1 WHERE id = :i"), params)


def settle(conn: Connection, rows: Sequence[Settled], now: dt.datetime) -> None:
    """Finish rows: the outbox state, the touch's status (never backwards) and its history."""
    if not rows:
        return
    conn.execute(
        timed(
            "UPDATE outbox SET status = :s, finished_at = :now, lease_until = NULL, "
            "last_error = :e WHERE id = :i",
            "now",
            texts=("s",),
        ),
        [
            {
                "s": r.state,
                "now": now,
                "e": None if r.state == "sent" else r.detail,
                "i": r.outbox_id,
            }
            for r in rows
        ],
    )
    # A receipt can beat the dispatcher's own write (a fast gateway): only a touch still
    # 'scheduled' takes the dispatch's status; the provider's id and the time are kept anyway.
    conn.execute(
        timed(
            "UPDATE touches SET status = CASE WHEN status = 'scheduled' THEN :s ELSE status END, "
            "sent_at = CASE WHEN :s = 'sent' THEN :now ELSE sent_at END, "
            "provider_message_id = COALESCE(:p, provider_message_id), updated_at = :now "
            "WHERE id = :t",
            "now",
            texts=("s",),
        ),
        [{"s": r.state, "now": now, "p": r.provider_id, "t": r.touch_id} for r in rows],
    )
    conn.execute(
        timed(
            "INSERT INTO touch_status_history (touch_id, status, at, detail) "
            "VALUES (:t, :s, :now, :d)",
            "now",
        ),
        [{"t": r.touch_id, "s": r.state, "now": now, "d": r.detail} for r in rows],
    )


def _expanding(
    statement: Any,
    params: dict[str, Any],
    channels: Sequence[str] | None,
    paused_batches: Sequence[str],
    paused_channels: Sequence[str],
) -> Any:
    for name, values in (
        ("channels", channels),
        ("paused_batches", paused_batches),
        ("paused_channels", paused_channels),
    ):
        if values:
            params[name] = list(values)
            statement = statement.bindparams(bindparam(name, expanding=True))
    return statement
