"""From claimed outbox rows to messages: address, render, link, and check once more.

The contact policy decided hours or days ago; by send time a customer may have replied TD,
deleted the advisor on WeCom, or the dispatcher may have been down past the sending hours.
:func:`prepare` therefore re-checks reachability, consent and the sending window for each
claimed row before it becomes a :class:`Message`, and says what happens to the others:
suppressed (with the reason), expired (waited too long), or due again at the next opening.

Everything is read with a fixed number of statements per claim, never one per touch.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import polars as pl
from sqlalchemy import Connection, select

from baoke.channels.outbox import Claimed, Settled
from baoke.channels.protocol import Message
from baoke.config import Settings
from baoke.journeys.catalog import Catalog
from baoke.journeys.context import build_contexts, render_message
from baoke.playbooks.templates import TemplateError, template_variables
from baoke.policy.inputs import channel_access, open_complaints
from baoke.store import models as m
from baoke.store.models import table

__all__ = ["Prepared", "addressed", "prepare", "wecom_senders"]

_URL_RE = re.compile(r"https?://[^\s，。！？、；）)】\"'<>]+")
# Sentence punctuation right after a link is the sentence's, not the link's.
_TRAILING = ".,!?;:"
_CODE_ALPHABET = "23456789abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"
_CHUNK = 900  # ids per IN list (well inside SQLite's parameter limit)


@dataclass
class Prepared:
    """What became of a claim: messages to send, rows settled, rows due again later."""

    ready: list[tuple[Claimed, Message]] = field(default_factory=list)
    settled: list[Settled] = field(default_factory=list)
    later: list[tuple[int, str, dt.datetime | None, str | None]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)  # short_links rows to insert


def prepare(
    conn: Connection,
    settings: Settings,
    catalog: Catalog,
    claimed: Sequence[Claimed],
    now: dt.datetime,
) -> Prepared:
    """Turn claimed rows into messages, or settle or postpone the ones that must not go now."""
    out = Prepared()
    if not claimed:
        return out
    touches = _touches(conn, [c.touch_id for c in claimed])
    senders = wecom_senders(conn, [t["customer_id"] for t in touches.values()])
    access = _access(conn, settings, touches)
    complaints = _complaints(conn, touches)
    contexts = build_contexts(
        conn,
        list({t["customer_id"] for t in touches.values()}),
        as_of=now.astimezone(settings.zone).date(),
        settings=settings,
    )
    known_links = _existing_links(conn, [c.touch_id for c in claimed])
    for row in claimed:
        touch = touches[row.touch_id]  # the outbox's foreign key keeps its touch
        stop = _stop_reason(settings, touch, access, now) or _complaint_pause(
            settings, touch, complaints
        )
        if stop is not None:
            state, why, due = stop
            if state == "pending":
                out.later.append((row.id, "pending", due, why))
            else:
                out.settled.append(Settled(row.id, row.touch_id, state, None, why))
            continue
        try:
            message = _message(settings, catalog, touch, contexts, senders)
        except (TemplateError, KeyError, ValueError) as exc:
            out.settled.append(Settled(row.id, row.touch_id, "failed", None, f"cannot send: {exc}"))
            continue
        message = _with_links(settings, message, known_links, out.links, now)
        out.ready.append((row, message))
    return out


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _chunks(ids: Sequence[int]) -> list[list[int]]:
    unique = list(dict.fromkeys(ids))
    return [unique[i : i + _CHUNK] for i in range(0, len(unique), _CHUNK)]


def _touches(conn: Connection, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    t, c = table(m.Touch), table(m.Customer)
    query = select(
        t.c.id,
        t.c.idempotency_key,
        t.c.customer_id,
        t.c.dealer_id,
        t.c.channel,
        t.c.template,
        t.c.playbook,
        t.c.version,
        t.c.priority,
        t.c.proposed_at,
        t.c.scheduled_at,
        c.c.mobile,
        c.c.email,
    ).join(c, c.c.id == t.c.customer_id)
    found: dict[int, dict[str, Any]] = {}
    for chunk in _chunks(ids):
        for row in conn.execute(query.where(t.c.id.in_(chunk))).mappings().all():
            found[row["id"]] = dict(row)
    return found


def wecom_senders(conn: Connection, customers: Sequence[int]) -> dict[int, tuple[str, str]]:
    """(external_userid, staff userid) of each customer's most recent live WeCom friendship."""
    r, s = table(m.WecomRelation), table(m.Staff)
    query = (
        select(r.c.customer_id, r.c.external_userid, s.c.wecom_userid)
        .join(s, s.c.id == r.c.staff_id)
        .where(r.c.deleted_at.is_(None), s.c.status == "active", s.c.wecom_userid.is_not(None))
        .order_by(r.c.added_at)
    )
    found: dict[int, tuple[str, str]] = {}
    for chunk in _chunks(customers):
        for cid, external, userid in conn.execute(query.where(r.c.customer_id.in_(chunk))).all():
            found[cid] = (external, userid)  # ordered by added_at: the latest wins
    return found


def _access(
    conn: Connection, settings: Settings, touches: dict[int, dict[str, Any]]
) -> dict[tuple[int, str], dict[str, Any]]:
    pairs = pl.DataFrame(
        {
            "customer_id": [t["customer_id"] for t in touches.values()],
            "channels": [[t["channel"]] for t in touches.values()],
        },
        schema={"customer_id": pl.Int64, "channels": pl.List(pl.String)},
    )
    if pairs.height == 0:
        return {}
    frame = channel_access(conn, pairs, settings.zone)
    return {(r["customer_id"], r["channel"]): r for r in frame.iter_rows(named=True)}


def _complaints(conn: Connection, touches: dict[int, dict[str, Any]]) -> dict[int, dt.datetime]:
    """When each customer's open complaint was opened (customers without one are absent)."""
    ids = pl.Series("customer_id", list({t["customer_id"] for t in touches.values()}), pl.Int64)
    if ids.len() == 0:
        return {}
    frame = open_complaints(conn, ids)
    return dict(
        zip(frame["customer_id"].to_list(), frame["complaint_since"].to_list(), strict=True)
    )


def _complaint_pause(
    settings: Settings, touch: dict[str, Any], complaints: dict[int, dt.datetime]
) -> tuple[str, str, dt.datetime | None] | None:
    """A complaint opened after the plan pauses marketing at send time, as the plan would."""
    since = complaints.get(touch["customer_id"])
    if since is None or settings.policy.is_service(touch["priority"]):
        return None
    day = since.astimezone(settings.zone).date() if since.tzinfo else since.date()
    return "suppressed", f"at send time: complaint open since {day}", None


def _existing_links(conn: Connection, touch_ids: Sequence[int]) -> dict[tuple[int, str], str]:
    links = table(m.ShortLink)
    found: dict[tuple[int, str], str] = {}
    for chunk in _chunks(touch_ids):
        query = select(links.c.touch_id, links.c.url, links.c.code).where(
            links.c.touch_id.in_(chunk)
        )
        for touch_id, url, code in conn.execute(query):
            found[(touch_id, url)] = code
    return found


# --------------------------------------------------------------------------------------------
# The checks at send time
# --------------------------------------------------------------------------------------------


def _stop_reason(
    settings: Settings,
    touch: dict[str, Any],
    access: dict[tuple[int, str], dict[str, Any]],
    now: dt.datetime,
) -> tuple[str, str, dt.datetime | None] | None:
    """(state, why, due again) for a touch that must not go now; None when it may."""
    policy = settings.policy
    channel = touch["channel"]
    service = policy.is_service(touch["priority"])
    facts = access.get((touch["customer_id"], channel))
    zone = settings.zone
    if facts is None or not facts["reachable"]:
        why = (facts or {}).get("unreachable_why") or f"not reachable on {channel}"
        return "suppressed", f"at send time: {why}", None
    if facts["consent"] == "withdrawn":
        on = facts["consent_at"].astimezone(zone).date() if facts["consent_at"] else "?"
        return "suppressed", f"at send time: unsubscribed from {channel} on {on}", None
    if facts["consent"] != "granted" and not (service and channel in policy.service_basis_channels):
        return "suppressed", f"at send time: no marketing consent on {channel}", None
    if channel == "phone":
        return None  # a call task: staff place it within its SLA, not bound by quiet hours
    start, end = policy.service_hours if service else policy.quiet_hours
    local = now.astimezone(zone)
    if start <= local.time() < end:
        return None
    proposed = touch["proposed_at"] or touch["scheduled_at"] or now
    if proposed.tzinfo is None:
        proposed = proposed.replace(tzinfo=dt.UTC)
    if now - proposed > dt.timedelta(days=settings.dispatch.stale_days):
        return "expired", f"expired: proposed {proposed.astimezone(zone):%Y-%m-%d}, not sent", None
    day = local.date() if local.time() < start else local.date() + dt.timedelta(days=1)
    opening = dt.datetime.combine(day, start, zone).astimezone(dt.UTC)
    return "pending", f"outside sending hours {start:%H:%M}-{end:%H:%M}: waits", opening


# --------------------------------------------------------------------------------------------
# Building the message
# --------------------------------------------------------------------------------------------


def _address(touch: dict[str, Any], senders: dict[int, tuple[str, str]]) -> tuple[str, str | None]:
    channel, cid = touch["channel"], touch["customer_id"]
    if channel in ("sms", "phone"):
        if not touch["mobile"]:
            raise ValueError("no mobile on record")
        return str(touch["mobile"]), None
    if channel == "email":
        if not touch["email"]:
            raise ValueError("no e-mail address")
        return str(touch["email"]), None
    if channel == "wecom":
        if cid not in senders:
            raise ValueError("no live WeCom friendship with an active staff member")
        external, userid = senders[cid]
        return external, userid
    return f"c{cid}", None  # push: the alias the app binds at login


def _message(
    settings: Settings,
    catalog: Catalog,
    touch: dict[str, Any],
    contexts: dict[int, dict[str, object]],
    senders: dict[int, tuple[str, str]],
) -> Message:
    channel = touch["channel"]
    book = catalog.get(touch["playbook"], touch["version"])
    context = contexts[touch["customer_id"]]
    variant_channel = channel
    if channel == "phone" and book.template(touch["template"]).variant("phone") is None:
        variant_channel = "script"
    rendered = render_message(book, touch["template"], variant_channel, context)
    variant = book.template(touch["template"]).variant(variant_channel)
    assert variant is not None  # render_message raised otherwise
    params = {
        name: "" if context.get(name) is None else str(context.get(name))
        for name in template_variables(variant.text)
    }
    address, sender = _address(touch, senders)
    return Message(
        touch_id=touch["id"],
        key=touch["idempotency_key"],
        channel=channel,
        customer_id=touch["customer_id"],
        dealer_id=touch["dealer_id"],
        address=address,
        text=rendered.text,
        subject=rendered.subject,
        sender=sender,
        playbook=touch["playbook"],
        template=f"{touch['playbook']}/{touch['template']}",
        params=params,
        marketing=not settings.policy.is_service(touch["priority"]),
    )


def _code() -> str:
    # One read of the system's randomness per code (not one per character); the modulo bias
    # of 256 over 56 letters does not matter for a link code.
    return "".join(_CODE_ALPHABET[b % len(_CODE_ALPHABET)] for b in secrets.token_bytes(8))


def _with_links(
    settings: Settings,
    message: Message,
    known: dict[tuple[int, str], str],
    new_rows: list[dict[str, Any]],
    now: dt.datetime,
) -> Message:
    """Per-touch short links for the message's links, and an unsubscribe link for e-mail."""
    base = settings.channels.short_link_base
    text = message.text
    if base:

        def shorten(found: re.Match[str]) -> str:
            whole = found.group(0)
            url = whole.rstrip(_TRAILING)
            if url.startswith(base):
                return whole
            code = _link_code(known, new_rows, message.touch_id, url, "link", now)
            return base + code + whole[len(url) :]

        text = _URL_RE.sub(shorten, text)
        # An SMS provider sends its approved template with these values: a link among them
        # must be the same short link the text shows.
        params = {name: _URL_RE.sub(shorten, value) for name, value in message.params.items()}
    else:
        params = dict(message.params)
    unsubscribe = None
    if message.channel == "email" and settings.channels.unsubscribe_base:
        code = _link_code(
            known, new_rows, message.touch_id, "unsubscribe:email", "unsubscribe", now
        )
        unsubscribe = settings.channels.unsubscribe_base + code
    if text == message.text and unsubscribe is None and params == message.params:
        return message
    return replace(message, text=text, params=params, unsubscribe_url=unsubscribe)


def _link_code(
    known: dict[tuple[int, str], str],
    new_rows: list[dict[str, Any]],
    touch_id: int,
    url: str,
    purpose: str,
    now: dt.datetime,
) -> str:
    """The touch's code for ``url``: the one it already has (a retry), else a new one."""
    code = known.get((touch_id, url))
    if code is None:
        code = _code()
        known[(touch_id, url)] = code
        new_rows.append(
            {
                "code": code,
                "touch_id": touch_id,
                "url": url,
                "purpose": purpose,
                "created_at": now,
                "clicks": 0,
            }
        )
    return code


def addressed(conn: Connection, rows: Sequence[Claimed]) -> list[tuple[Claimed, Message]]:
    """Messages of rows in doubt, addressed and carrying their ``send_ref``, for reconciliation.

    The text is not rendered again: a provider is asked about its records, which are keyed by
    address and reference. A row that cannot be addressed any more is left out (it goes back
    to the queue, where the send-time checks settle it).
    """
    touches = _touches(conn, [r.touch_id for r in rows])
    senders = wecom_senders(conn, [t["customer_id"] for t in touches.values()])
    out: list[tuple[Claimed, Message]] = []
    for row in rows:
        touch = touches.get(row.touch_id)
        if touch is None:
            continue
        try:
            address, sender = _address(touch, senders)
        except ValueError:
            continue
        message = Message(
            touch_id=touch["id"],
            key=touch["idempotency_key"],
            channel=touch["channel"],
            customer_id=touch["customer_id"],
            dealer_id=touch["dealer_id"],
            address=address,
            text="",
            sender=sender,
            playbook=touch["playbook"],
            template=f"{touch['playbook']}/{touch['template']}",
            send_ref=row.send_ref,
        )
        out.append((row, message))
    return out
