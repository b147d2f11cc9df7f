"""The simulated outcomes, fed back to baoke the way real ones arrive.

Delivery and read receipts go through the same matching as the providers' callbacks
(:func:`baoke.channels.inbound.receipt_events`), clicks through the short-link counter
(:func:`~baoke.channels.inbound.click_event`), TD replies through the SMS reply path, WeCom
deletions and e-mail or push opt-outs as the events their callbacks make, call outcomes as a
staff member logs them (:func:`~baoke.channels.inbound.call_outcome_events`). Every event row
is checked like ``POST /api/events`` and stored; the next daily run processes them in their
order. Visits, complaints and new cars arrive as DMS export files (CSV with the DMS's Chinese
headers) imported through the normal import, with validation and quarantine.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
from sqlalchemy import Connection, Engine

from baoke.channels.inbound import (
    call_outcome_events,
    click_event,
    receipt_events,
    reply_events,
)
from baoke.channels.protocol import Inbound, Receipt
from baoke.ingest.kinds import KINDS
from baoke.ingest.pipeline import import_file
from baoke.journeys.event_files import read_event_rows, store_events

__all__ = ["Fed", "dms_frame", "feed_events", "import_dms", "message_events"]


@dataclass
class Fed:
    """What one day fed back: events stored, rows imported, anything refused."""

    events: int = 0
    rejected: list[str] = field(default_factory=list)
    imported: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    unmatched_receipts: int = 0


def _iso(at: dt.datetime) -> str:
    return at.isoformat()


def message_events(
    conn: Connection, touches: pl.DataFrame, reactions: pl.DataFrame
) -> tuple[list[dict[str, Any]], int]:
    """Event rows for the day's message outcomes; and receipts no touch matched.

    ``touches`` has touch_id, customer_id, channel, provider_message_id, link, sent_at, at,
    delivered, opened, interacted; ``reactions`` has the same plus reaction and mobile.
    """
    receipts: list[Receipt] = []
    clicks: list[tuple[str, dt.datetime]] = []
    for row in touches.iter_rows(named=True):
        pid, tid = row["provider_message_id"], row["touch_id"]
        if pid is None:
            continue
        sent = row["sent_at"] + dt.timedelta(seconds=5)
        status = "delivered" if row["delivered"] else "failed"
        receipts.append(Receipt(pid, status, sent, f"sim:{tid}:{status}"))
        # SMS has no read receipt; the others report reads.
        if row["opened"] and row["channel"] != "sms":
            receipts.append(Receipt(pid, "opened", row["at"], f"sim:{tid}:opened"))
        if row["interacted"]:
            later = row["at"] + dt.timedelta(minutes=1)
            if row["link"]:
                clicks.append((row["link"], later))
            else:
                receipts.append(Receipt(pid, "replied", later, f"sim:{tid}:replied"))
    rows, unmatched = receipt_events(conn, receipts)
    for code, at in clicks:
        _, events = click_event(conn, code, at)
        rows.extend(events)
    replies: list[Inbound] = []
    for row in reactions.iter_rows(named=True):
        cid, at, channel, key = row["customer_id"], row["at"], row["channel"], row["touch_id"]
        if row["reaction"] == "unsubscribe" and channel == "sms" and row["mobile"]:
            replies.append(Inbound(row["mobile"], "TD", at, f"sim:{key}:td", "sms"))
        elif row["reaction"] == "unsubscribe":
            rows.append(_event(f"sim:{key}:unsubscribe", "unsubscribe", cid, at, channel=channel))
        elif row["reaction"] == "block":
            rows.append(
                _event(f"sim:{key}:block", "wecom_friend_deleted", cid, at, deleted_by="customer")
            )
    rows.extend(reply_events(replies))
    return rows, unmatched


def call_events(conn: Connection, calls: pl.DataFrame) -> list[dict[str, Any]]:
    """``call_outcome`` rows (and the phone touch's status) for calls made (task_id, outcome,
    at), as a staff member logging them would make."""
    rows: list[dict[str, Any]] = []
    for task_id, outcome, at in calls.select("task_id", "outcome", "at").iter_rows():
        try:
            rows.extend(call_outcome_events(conn, int(task_id), str(outcome), at))
        except KeyError:
            continue  # the task is gone (a replaced journey's); nobody can log it
    return rows


def _event(key: str, kind: str, customer_id: int, at: dt.datetime, **attrs: Any) -> dict[str, Any]:
    return {"event_id": key, "type": kind, "customer_id": customer_id, "occurred_at": _iso(at)} | (
        attrs
    )


def feed_events(engine: Engine, zone: ZoneInfo, rows: Sequence[dict[str, Any]], fed: Fed) -> None:
    """Check and store event rows, as ``POST /api/events`` does (processing is the next run's)."""
    if not rows:
        return
    with engine.begin() as conn:
        events, rejected = read_event_rows(list(rows), conn, zone=zone, source="simulation")
        fed.rejected.extend(f"{rows[i].get('type')}: {why}" for i, why in rejected)
        fed.events += store_events(conn, events)


def dms_frame(kind: str, columns: Mapping[str, Sequence[Any] | np.ndarray]) -> pl.DataFrame:
    """A DMS export as the dealer system writes it: each field under its first Chinese header."""
    headers = {f.name: f.headers[0] for f in KINDS[kind].fields}
    return pl.DataFrame({headers[name]: list(values) for name, values in columns.items()})


def import_dms(
    engine: Engine,
    zone: ZoneInfo,
    directory: Path,
    day: dt.date,
    frames: dict[str, pl.DataFrame],
    fed: Fed,
) -> None:
    """Write each non-empty frame as ``<directory>/<day>/<kind>.csv`` and import it."""
    folder = directory / day.isoformat()
    for kind, frame in frames.items():
        if frame.height == 0:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{kind}.csv"
        frame.write_csv(path)
        summary = import_file(engine, kind, path, tz=zone)
        fed.imported[kind] = fed.imported.get(kind, 0) + summary.inserted + summary.updated
        if summary.quarantined:
            fed.quarantined[kind] = fed.quarantined.get(kind, 0) + summary.quarantined
