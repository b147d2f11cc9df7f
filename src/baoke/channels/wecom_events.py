"""WeCom contact callbacks → ``wecom_relations`` rows and baoke events.

A decrypted ``change_external_contact`` callback (:mod:`baoke.channels.wecom_crypto`) is parsed
by :func:`parse_callback` and applied by :func:`apply_event`:

* ``add_external_contact`` / ``add_half_external_contact``: a customer added a staff member (or
  was added). The relation (staff, external_userid) is inserted or re-activated with the
  contact way's ``state``; the customer is found through another relation of the same
  external_userid, else through the mobiles staff noted on the contact (``remark_mobiles``).
  When the customer is known, a ``wecom_friend_added`` event row is returned.
* ``del_external_contact`` (the staff member deleted the customer) and ``del_follow_user``
  (the customer deleted or blocked the staff member): the relation is marked deleted and a
  ``wecom_friend_deleted`` event row is returned. A deletion WeCom made because the customer
  was transferred (``Source`` ``DELETE_BY_TRANSFER``) is recorded as ``transfer`` and is not
  an event: nobody left.

WeCom repeats a callback it got no quick answer to, so applying one twice must change nothing:
the relation is only written when the callback is newer than what the row already says, an
identical row is not rewritten, and the event row carries a key made of the callback's own
fields (``wecom:<ChangeType>:<UserID>:<ExternalUserID>:<CreateTime>``), which the event store
keeps once. A repeated callback returns the same event row again, so an event lost between the
relation update and the event store still arrives on the retry.

The returned rows are what :func:`baoke.journeys.event_files.read_event_rows` reads.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from baoke.channels.protocol import ProviderError
from baoke.channels.wecom_crypto import WecomCryptoError, parse_xml
from baoke.ingest.validate import InvalidValue, normalise_mobile
from baoke.store import models as m

__all__ = [
    "ADD_TYPES",
    "DELETE_TYPES",
    "WecomEvent",
    "apply_event",
    "event_id",
    "parse_callback",
    "transfer_relations",
]

log = logging.getLogger(__name__)

ADD_TYPES = ("add_external_contact", "add_half_external_contact")
DELETE_TYPES = {"del_external_contact": "staff", "del_follow_user": "customer"}
_BY_TRANSFER = "DELETE_BY_TRANSFER"
_EVENT_ID_MAX = 124  # events.event_key is 128 with its "ext:" prefix

FetchContact = Callable[[str, str], list[str]]
"""``(external_userid, userid) -> remark mobiles``; the adapter's ``remark_mobiles``."""

_relations = m.table(m.WecomRelation)
_staff = m.table(m.Staff)
_customers = m.table(m.Customer)


@dataclass(frozen=True)
class WecomEvent:
    """One ``change_external_contact`` callback, as WeCom sent it (times in UTC)."""

    change_type: str
    user_id: str
    external_userid: str
    state: str | None
    welcome_code: str | None
    source: str | None
    created_at: dt.datetime
    fail_reason: str | None
    create_time: int  # the CreateTime seconds, as in the callback
    corp_id: str | None = None


def _text(root: Any, tag: str) -> str | None:
    node = root.find(tag)
    if node is None or node.text is None:
        return None
    value = str(node.text).strip()
    return value or None


def parse_callback(xml: str) -> WecomEvent | None:
    """The contact event of a decrypted callback; None for any other event (chats, tags …).

    Raises :class:`~baoke.channels.wecom_crypto.WecomCryptoError` for XML that cannot be read
    or a contact event without its user ids.
    """
    root = parse_xml(xml)
    # A self-built app's callback says Event; a suite's says InfoType (document 92277).
    kind = _text(root, "Event") or _text(root, "InfoType")
    if kind != "change_external_contact":
        return None
    change_type = _text(root, "ChangeType")
    user_id = _text(root, "UserID")
    external = _text(root, "ExternalUserID")
    if not change_type or not user_id or not external:
        raise WecomCryptoError(
            "the WeCom contact callback lacks ChangeType, UserID or ExternalUserID"
        )
    stamp = _text(root, "CreateTime") or _text(root, "TimeStamp") or ""
    try:
        seconds = int(stamp)
    except ValueError:
        raise WecomCryptoError("the WeCom contact callback has no CreateTime") from None
    return WecomEvent(
        change_type=change_type,
        user_id=user_id,
        external_userid=external,
        state=_text(root, "State"),
        welcome_code=_text(root, "WelcomeCode"),
        source=_text(root, "Source"),
        created_at=dt.datetime.fromtimestamp(seconds, dt.UTC),
        fail_reason=_text(root, "FailReason"),
        create_time=seconds,
        corp_id=_text(root, "ToUserName") or _text(root, "AuthCorpId"),
    )


def event_id(event: WecomEvent) -> str:
    """The event key of a callback: its own fields, so a repeat has the same key."""
    key = f"wecom:{event.change_type}:{event.user_id}:{event.external_userid}:{event.create_time}"
    if len(key) <= _EVENT_ID_MAX:
        return key
    # Very long user ids: a digest of the same fields keeps the key stable and short enough.
    return "wecom:" + hashlib.sha1(key.encode("utf-8")).hexdigest()


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """A stored time as aware UTC (SQLite gives naive UTC, PostgreSQL aware values)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


# --------------------------------------------------------------------------------------------
# look-ups


def _find_staff(conn: Connection, userid: str) -> tuple[int, str] | None:
    row = conn.execute(
        select(_staff.c.id, _staff.c.staff_no).where(_staff.c.wecom_userid == userid)
    ).first()
    return (int(row.id), str(row.staff_no)) if row is not None else None


def _customer_of_contact(conn: Connection, external_userid: str) -> int | None:
    """The one customer the contact's other relations name; None when none or several."""
    found = {
        int(cid)
        for (cid,) in conn.execute(
            select(_relations.c.customer_id)
            .where(_relations.c.external_userid == external_userid)
            .where(_relations.c.customer_id.is_not(None))
            .distinct()
        )
    }
    return found.pop() if len(found) == 1 else None


def _customer_by_mobiles(conn: Connection, mobiles: Iterable[str]) -> int | None:
    """The one customer whose mobile is among ``mobiles`` (any spelling); None otherwise."""
    numbers: set[str] = set()
    for raw in mobiles:
        try:
            numbers.add(normalise_mobile(raw))
        except InvalidValue:
            continue  # a landline or a typo in the remark: not a way to the customer
    if not numbers:
        return None
    found = [
        int(cid)
        for (cid,) in conn.execute(
            select(_customers.c.id).where(_customers.c.mobile.in_(sorted(numbers)))
        )
    ]
    if len(found) > 1:
        log.info("wecom contact: remark mobiles match %d customers; left unmatched", len(found))
    return found[0] if len(found) == 1 else None


def _relation(conn: Connection, staff_id: int, external_userid: str) -> Any:
    query = (
        select(_relations)
        .where(_relations.c.staff_id == staff_id)
        .where(_relations.c.external_userid == external_userid)
    )
    if conn.dialect.name == "postgresql":
        # Two deliveries of one callback may run at once: the second waits for the first.
        query = query.with_for_update()
    return conn.execute(query).first()


def _insert_new(conn: Connection, values: dict[str, Any]) -> bool:
    """Insert a relation unless (staff, external_userid) exists; True when inserted."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(_relations)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["staff_id", "external_userid"])
    )
    return bool(conn.execute(statement).rowcount)


def _update(conn: Connection, row: Any, values: dict[str, Any]) -> None:
    """Write the values that differ from ``row``; an identical row is not touched."""
    changed = {}
    for key, value in values.items():
        old = getattr(row, key)
        if isinstance(old, dt.datetime):
            old = _utc(old)
        if old != value:
            changed[key] = value
    if changed:
        conn.execute(
            update(_relations)
            .where(_relations.c.id == row.id)
            .values(**changed, updated_at=func.current_timestamp())
        )


# --------------------------------------------------------------------------------------------
# applying a callback


def apply_event(
    conn: Connection, event: WecomEvent, *, fetch_contact: FetchContact | None = None
) -> list[dict[str, Any]]:
    """Apply a contact callback to ``wecom_relations``; the event rows to react on.

    ``conn`` should be in a transaction (``engine.begin()``): the relation and the caller's
    event store commit together. ``fetch_contact`` is asked for the remark mobiles of a
    contact no relation names yet. A callback about a staff member baoke does not know
    (``staff.wecom_userid``) changes nothing. Other change types (``edit_external_contact``,
    ``transfer_fail`` …) change nothing and return no rows: a failed transfer leaves the
    relation where :func:`transfer_relations` put it, to be reviewed by hand.
    """
    if event.change_type in ADD_TYPES:
        return _apply_add(conn, event, fetch_contact)
    if event.change_type in DELETE_TYPES:
        return _apply_delete(conn, event)
    if event.change_type == "transfer_fail":
        log.warning(
            "wecom: a transfer to %s failed (%s); check the relation of that customer",
            event.user_id,
            event.fail_reason or "no reason given",
        )
    return []


def _apply_add(
    conn: Connection, event: WecomEvent, fetch_contact: FetchContact | None
) -> list[dict[str, Any]]:
    staff = _find_staff(conn, event.user_id)
    if staff is None:
        log.info("wecom add: member %s is not a baoke staff member; ignored", event.user_id)
        return []
    staff_id, staff_no = staff
    at = event.created_at
    existing = _relation(conn, staff_id, event.external_userid)
    customer = existing.customer_id if existing is not None else None
    if customer is None:
        customer = _customer_of_contact(conn, event.external_userid)
    if customer is None and fetch_contact is not None:
        try:
            mobiles = fetch_contact(event.external_userid, event.user_id)
        except ProviderError as exc:
            # The friendship is recorded all the same; a re-add or an import links it later.
            log.warning("wecom add: the contact's remark mobiles are not available (%s)", exc)
            mobiles = []
        customer = _customer_by_mobiles(conn, mobiles)
    values: dict[str, Any] = {
        "customer_id": customer,
        "state": event.state,
        "added_at": at,
        "deleted_at": None,
        "deleted_by": None,
    }
    if existing is None:
        inserted = _insert_new(
            conn, {**values, "staff_id": staff_id, "external_userid": event.external_userid}
        )
        if not inserted:  # another delivery of the same callback got there first
            existing = _relation(conn, staff_id, event.external_userid)
    if existing is not None:
        added, deleted = _utc(existing.added_at), _utc(existing.deleted_at)
        # Only a callback newer than the row's last change applies: a late repeat of an add
        # must not undo a deletion that came after it.
        current = (deleted is None and added is not None and at >= added) or (
            deleted is not None and at > deleted
        )
        if not current:
            return []
        values["state"] = event.state or existing.state
        _update(conn, existing, values)
    if customer is None:
        return []
    row: dict[str, Any] = {
        "event_id": event_id(event),
        "type": "wecom_friend_added",
        "customer_id": int(customer),
        "occurred_at": at.isoformat(),
        "staff_no": staff_no,
    }
    if event.state:
        row["channel_code"] = event.state
    return [row]


def _apply_delete(conn: Connection, event: WecomEvent) -> list[dict[str, Any]]:
    staff = _find_staff(conn, event.user_id)
    if staff is None:
        return []
    staff_id, staff_no = staff
    existing = _relation(conn, staff_id, event.external_userid)
    if existing is None:
        # A friendship from before baoke, never reported: nothing to end, nobody to tell.
        return []
    at = event.created_at
    by = "transfer" if event.source == _BY_TRANSFER else DELETE_TYPES[event.change_type]
    added, deleted = _utc(existing.added_at), _utc(existing.deleted_at)
    if deleted is not None:
        # Already deleted: a repeat of this very callback is answered again, anything else
        # (a second deletion, an older callback) changes nothing.
        if not (deleted == at and existing.deleted_by == by):
            return []
    elif added is not None and at < added:
        return []  # older than the (re-)add the row records
    customer = existing.customer_id
    if customer is None:
        customer = _customer_of_contact(conn, event.external_userid)
    _update(conn, existing, {"deleted_at": at, "deleted_by": by, "customer_id": customer})
    if customer is None or by == "transfer":
        return []
    return [
        {
            "event_id": event_id(event),
            "type": "wecom_friend_deleted",
            "customer_id": int(customer),
            "occurred_at": at.isoformat(),
            "deleted_by": by,
            "staff_no": staff_no,
        }
    ]


def transfer_relations(
    conn: Connection, from_staff_id: int, to_staff_id: int, external_userids: Iterable[str]
) -> int:
    """Move relations to the staff member who took the customers over; how many moved.

    Call it for the customers a transfer succeeded for (errcode 0 from
    ``transfer_customer``, or status 1 from ``transfer_result`` to wait for the takeover).
    The relation keeps its customer, state and first ``added_at``. When the new member
    already has a relation with the customer, that one is re-activated and the old one is
    marked deleted by ``transfer``.
    """
    moved = 0
    now = dt.datetime.now(dt.UTC)
    for external in dict.fromkeys(external_userids):
        source = _relation(conn, from_staff_id, external)
        if source is None or source.deleted_at is not None:
            continue
        target = _relation(conn, to_staff_id, external)
        if target is None:
            conn.execute(
                update(_relations)
                .where(_relations.c.id == source.id)
                .values(staff_id=to_staff_id, updated_at=func.current_timestamp())
            )
        else:
            _update(
                conn,
                target,
                {
                    "deleted_at": None,
                    "deleted_by": None,
                    "customer_id": target.customer_id or source.customer_id,
                    "state": target.state or source.state,
                },
            )
            _update(conn, source, {"deleted_at": now, "deleted_by": "transfer"})
        moved += 1
    return moved
