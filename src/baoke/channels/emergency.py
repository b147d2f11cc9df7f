"""The emergency stop (DOMAIN's 1-3-5: detect an abnormal send within 1 minute, pause the
batch within 3, start talking to customers within 5).

A *batch* is one playbook's sends of one plan day (``2026-12-01/churn_winback``), the unit an
operator recognises and the unit that goes wrong together (a bad template, a wrong segment).
While dispatching, :func:`check` runs every few seconds over the recent window and pauses a
batch when:

- its failure rate is too high (``failure_rate`` of at least ``min_attempts`` tries);
- too many of its recipients unsubscribed (``unsubscribe_rate``) or complained
  (``complaint_rate``) after it reached them (at least ``min_sent`` sends);
- it sent more than ``max_per_minute`` in the last minute (a runaway);
- one customer got the same template of it twice on one channel (never intended).

A pause stops new claims of the batch at once (the dispatcher reads pauses before every
claim), is written to the audit log, logged as an error and POSTed, signed, to the alert
webhook. ``baoke pause`` / ``baoke resume`` do the same by hand, for a batch, a channel or
everything. After a resume, the monitor judges the batch only on what happens next.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from baoke.channels.outbox import timed
from baoke.channels.secrets import load_secrets
from baoke.config import Settings
from baoke.errors import InputError
from baoke.store import models as m
from baoke.store.models import table

__all__ = [
    "Pauses",
    "active_pauses",
    "check",
    "list_pauses",
    "pause",
    "readings",
    "resume",
]

log = logging.getLogger("baoke.dispatch.emergency")

SCOPES = ("all", "channel", "batch")


@dataclass(frozen=True)
class Pauses:
    """What is paused now."""

    everything: bool
    channels: list[str]
    batches: list[str]


def active_pauses(engine: Engine) -> Pauses:
    """The pauses in force."""
    pauses = table(m.DispatchPause)
    with engine.connect() as conn:
        rows = conn.execute(
            select(pauses.c.scope, pauses.c.target).where(pauses.c.resumed_at.is_(None))
        ).all()
    return Pauses(
        everything=any(scope == "all" for scope, _ in rows),
        channels=sorted({t for s, t in rows if s == "channel" and t}),
        batches=sorted({t for s, t in rows if s == "batch" and t}),
    )


def list_pauses(conn: Connection, *, include_resumed: bool = False) -> list[dict[str, Any]]:
    """Pauses (in force, or all), newest first."""
    pauses = table(m.DispatchPause)
    query = select(pauses).order_by(pauses.c.id.desc())
    if not include_resumed:
        query = query.where(pauses.c.resumed_at.is_(None))
    return [dict(row) for row in conn.execute(query).mappings()]


def _audit(
    conn: Connection, actor: str, action: str, entity_id: str, detail: dict[str, Any]
) -> None:
    conn.execute(
        insert(table(m.AuditEntry)).values(
            actor=actor, action=action, entity="dispatch", entity_id=entity_id, detail=detail
        )
    )


def pause(
    engine: Engine,
    settings: Settings,
    *,
    scope: str,
    target: str | None,
    reason: str,
    actor: str,
    now: dt.datetime | None = None,
) -> int | None:
    """Pause a batch, a channel or everything; None when that pause is already in force."""
    if scope not in SCOPES:
        raise InputError(f"unknown pause scope {scope!r}; use one of {', '.join(SCOPES)}")
    if (scope == "all") != (target is None):
        raise InputError("a channel or batch pause names its target; --all names none")
    at = now or dt.datetime.now(dt.UTC)
    pauses = table(m.DispatchPause)
    with engine.begin() as conn:
        already = conn.execute(
            select(pauses.c.id).where(
                pauses.c.scope == scope,
                pauses.c.target.is_(None) if target is None else pauses.c.target == target,
                pauses.c.resumed_at.is_(None),
            )
        ).first()
        if already is not None:
            return None
        pause_id = conn.execute(
            insert(pauses)
            .values(scope=scope, target=target, reason=reason, paused_at=at, paused_by=actor)
            .returning(pauses.c.id)
        ).scalar_one()
        detail = {"scope": scope, "target": target, "reason": reason}
        _audit(conn, actor, "dispatch_pause", str(pause_id), detail)
    what = "all dispatch" if scope == "all" else f"{scope} {target}"
    log.error("PAUSED %s by %s: %s", what, actor, reason)
    _alert(settings, {"event": "paused", "id": pause_id, "at": at.isoformat(), **detail})
    return int(pause_id)


def resume(
    engine: Engine,
    settings: Settings,
    *,
    scope: str,
    target: str | None,
    actor: str,
    now: dt.datetime | None = None,
) -> int:
    """Lift the matching pauses in force (``all`` lifts every pause); how many were lifted."""
    at = now or dt.datetime.now(dt.UTC)
    pauses = table(m.DispatchPause)
    matching: Any = pauses.c.resumed_at.is_(None)
    if scope != "all":
        matching = matching & (pauses.c.scope == scope) & (pauses.c.target == target)
    with engine.begin() as conn:
        ids = [row[0] for row in conn.execute(select(pauses.c.id).where(matching))]
        if ids:
            conn.execute(
                update(pauses).where(pauses.c.id.in_(ids)).values(resumed_at=at, resumed_by=actor)
            )
            detail = {"scope": scope, "target": target, "lifted": ids}
            _audit(conn, actor, "dispatch_resume", ",".join(map(str, ids)), detail)
    if ids:
        log.warning("resumed %s by %s (%d pause(s))", target or scope, actor, len(ids))
        _alert(settings, {"event": "resumed", "at": at.isoformat(), "lifted": ids})
    return len(ids)


def _alert(settings: Settings, payload: dict[str, Any]) -> None:
    """POST the alert to the configured webhook; a failure to alert is logged, never raised."""
    url = settings.dispatch.emergency.alert_webhook
    if not url:
        return
    secrets = load_secrets()
    secret = secrets.get("BAOKE_ALERT_SECRET") or secrets.get("BAOKE_WEBHOOK_SECRET") or ""
    from baoke.channels.webhook import post_signed

    try:
        post_signed(url, secret.encode(), payload, timeout=5.0)
    except Exception as exc:  # an alert must not stop the pause it reports
        log.error("alert webhook failed: %s", type(exc).__name__)


# --------------------------------------------------------------------------------------------
# The monitor
# --------------------------------------------------------------------------------------------

_READINGS = """
SELECT o.batch,
       SUM(CASE WHEN o.status = 'sent' THEN 1 ELSE 0 END) AS sent,
       SUM(CASE WHEN o.status = 'failed' THEN 1 ELSE 0 END) AS failed,
       SUM(CASE WHEN o.status = 'sent' AND o.finished_at >= :minute THEN 1 ELSE 0 END)
           AS last_minute
FROM outbox o
WHERE o.batch IS NOT NULL AND o.finished_at >= :since AND o.status IN ('sent', 'failed')
GROUP BY o.batch
"""

_REACTIONS = """
SELECT o.batch, COUNT(DISTINCT c.customer_id) AS n
FROM outbox o
JOIN touches t ON t.id = o.touch_id
JOIN {source}
WHERE o.batch IS NOT NULL AND o.status = 'sent' AND o.finished_at >= :since
GROUP BY o.batch
"""
# An unsubscribe is a consent withdrawn after the message reached the customer; a complaint
# an opened complaint after it.
_UNSUBSCRIBED = (
    "consents c ON c.customer_id = t.customer_id AND c.withdrawn_at >= o.finished_at "
    "AND c.withdrawn_at >= :since"
)
_COMPLAINED = (
    "events c ON c.customer_id = t.customer_id AND c.type = 'complaint_opened' "
    "AND c.occurred_at >= o.finished_at AND c.occurred_at >= :since"
)
_DUPLICATES = """
SELECT o.batch, COUNT(*) AS n FROM (
    SELECT o.batch, t.customer_id, t.template, t.channel
    FROM outbox o JOIN touches t ON t.id = o.touch_id
    WHERE o.batch IS NOT NULL AND o.status = 'sent' AND o.finished_at >= :since
    GROUP BY o.batch, t.customer_id, t.template, t.channel HAVING COUNT(*) > 1
) o GROUP BY o.batch
"""


def readings(conn: Connection, since: dt.datetime, now: dt.datetime) -> dict[str, dict[str, int]]:
    """Per batch since ``since``: sent, failed, sent in the last minute, unsubscribed,
    complained, duplicated."""
    params = {"since": since, "minute": now - dt.timedelta(minutes=1)}
    out: dict[str, dict[str, int]] = {}
    for batch, sent, failed, minute in conn.execute(timed(_READINGS, "since", "minute"), params):
        out[batch] = {
            "sent": int(sent or 0),
            "failed": int(failed or 0),
            "last_minute": int(minute or 0),
            "unsubscribed": 0,
            "complained": 0,
            "duplicated": 0,
        }
    for name, source in (("unsubscribed", _UNSUBSCRIBED), ("complained", _COMPLAINED)):
        for batch, n in conn.execute(timed(_REACTIONS.format(source=source), "since"), params):
            out.setdefault(batch, _empty())[name] = int(n)
    for batch, n in conn.execute(timed(_DUPLICATES, "since"), params):
        out.setdefault(batch, _empty())["duplicated"] = int(n)
    return out


def _empty() -> dict[str, int]:
    return dict.fromkeys(
        ("sent", "failed", "last_minute", "unsubscribed", "complained", "duplicated"), 0
    )


def _verdict(settings: Settings, reading: dict[str, int]) -> str | None:
    """Why a batch's reading is abnormal, with its numbers; None when it is not."""
    limits = settings.dispatch.emergency
    tried = reading["sent"] + reading["failed"]
    sent = reading["sent"]
    if tried >= limits.min_attempts and reading["failed"] / tried >= limits.failure_rate:
        share = reading["failed"] / tried
        return (
            f"failure rate {share:.0%} ({reading['failed']} of {tried} tries; "
            f"limit {limits.failure_rate:.0%})"
        )
    if sent >= limits.min_sent and reading["unsubscribed"] / sent >= limits.unsubscribe_rate:
        return (
            f"{reading['unsubscribed']} of {sent} recipients unsubscribed "
            f"({reading['unsubscribed'] / sent:.1%}; limit {limits.unsubscribe_rate:.1%})"
        )
    if sent >= limits.min_sent and reading["complained"] / sent >= limits.complaint_rate:
        return (
            f"{reading['complained']} of {sent} recipients complained "
            f"({reading['complained'] / sent:.1%}; limit {limits.complaint_rate:.1%})"
        )
    if reading["last_minute"] > limits.max_per_minute:
        return f"{reading['last_minute']} sent in the last minute (limit {limits.max_per_minute})"
    if reading["duplicated"]:
        return f"{reading['duplicated']} customer(s) got the same message of this batch twice"
    return None


def check(engine: Engine, settings: Settings, now: dt.datetime) -> list[str]:
    """Pause every batch whose recent reading is abnormal; the batches newly paused."""
    window = dt.timedelta(minutes=settings.dispatch.emergency.window_minutes)
    since = now - window
    pauses = table(m.DispatchPause)
    with engine.connect() as conn:
        found = readings(conn, since, now)
        if not found:
            return []
        rows = conn.execute(
            select(pauses.c.target, pauses.c.resumed_at).where(pauses.c.scope == "batch")
        ).all()
        paused = {t for t, resumed in rows if resumed is None}
        resumed_at: dict[str, dt.datetime] = {}
        for target, at in rows:
            if at is not None:
                at = at if at.tzinfo else at.replace(tzinfo=dt.UTC)
                if at > since and (target not in resumed_at or at > resumed_at[target]):
                    resumed_at[target] = at
        # A batch resumed inside the window is judged on what happened since the resume.
        for batch, at in resumed_at.items():
            if batch in found:
                found[batch] = readings(conn, at, now).get(batch, _empty())
    newly = []
    for batch, reading in sorted(found.items()):
        if batch in paused:
            continue
        why = _verdict(settings, reading)
        if why is None:
            continue
        detail = json.dumps(reading)
        if pause(
            engine,
            settings,
            scope="batch",
            target=batch,
            reason=f"{why} [{detail}]",
            actor="monitor",
            now=now,
        ):
            newly.append(batch)
    return newly
