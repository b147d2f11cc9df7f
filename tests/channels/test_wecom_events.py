"""WeCom contact callbacks applied to a real store (SQLite and PostgreSQL).

Friend added / deleted update ``wecom_relations`` and give event rows the event path accepts;
an unknown contact is matched by the mobiles staff noted on it (fetched from the loopback
server); a repeated callback changes nothing; a late repeat does not undo a later change;
transfers move the relations.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, func, insert, select
from tests.channels.support import serve
from tests.journeys.world import ZONE

from baoke.channels.loopback.wecom import (
    CORP_ID,
    SECRET,
    WecomLoopback,
    contact_event_xml,
    encrypted_callback,
)
from baoke.channels.protocol import AdapterContext
from baoke.channels.wecom import WecomAdapter, make
from baoke.channels.wecom_crypto import WecomCryptoError
from baoke.channels.wecom_events import (
    WecomEvent,
    apply_event,
    event_id,
    parse_callback,
    transfer_relations,
)
from baoke.journeys.event_files import read_event_rows, store_events
from baoke.store import models as m

T0 = 1_780_000_000  # CreateTime seconds
EXT = "wmAJ2GCAAAXtWyujaWJHDDGi0mAAAA"


@pytest.fixture
def store(engine: Engine) -> Engine:
    """A dealer, two staff members on WeCom, one without, and two customers."""
    with engine.begin() as conn:
        conn.execute(insert(m.Dealer.__table__).values(id=1, code="D001", name="杭州西湖店"))
        conn.execute(
            insert(m.Staff.__table__),
            [
                {"id": 1, "staff_no": "S1", "dealer_id": 1, "name": "王磊", "role": "advisor",
                 "wecom_userid": "zhangsan"},
                {"id": 2, "staff_no": "S2", "dealer_id": 1, "name": "李强", "role": "advisor",
                 "wecom_userid": "lisi"},
                {"id": 3, "staff_no": "S3", "dealer_id": 1, "name": "赵敏", "role": "advisor",
                 "wecom_userid": None},
            ],
        )  # fmt: skip
        conn.execute(
            insert(m.Customer.__table__),
            [
                {"id": 11, "mobile": "+8613800000001", "name": "张伟"},
                {"id": 12, "mobile": "+8613900000002", "name": "李娜"},
            ],
        )
    return engine


@pytest.fixture
def server() -> Iterator[WecomLoopback]:
    yield from serve(WecomLoopback())


@pytest.fixture
def adapter(server: WecomLoopback) -> Iterator[WecomAdapter]:
    made = make(
        AdapterContext(
            name="wecom",
            options={"corp_id": CORP_ID, "endpoint": server.url, "rate": 1000},
            secrets={
                "BAOKE_WECOM_SECRET": SECRET,
                "BAOKE_WECOM_TOKEN": "cbToken",
                "BAOKE_WECOM_AES_KEY": "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
            },
        )
    )
    yield made
    made.close()


def _event(change_type: str, at: int = T0, *, user: str = "zhangsan", **kw: Any) -> WecomEvent:
    external = kw.pop("ext", EXT)
    event = parse_callback(contact_event_xml(change_type, user, external, create_time=at, **kw))
    assert event is not None
    return event


def _apply(engine: Engine, event: WecomEvent, **kw: Any) -> list[dict[str, Any]]:
    with engine.begin() as conn:
        return apply_event(conn, event, **kw)


def _relations(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(m.WecomRelation.__table__).order_by(m.WecomRelation.id)).all()
    return [dict(r._mapping) for r in rows]


def _link(engine: Engine, staff_id: int, customer_id: int | None, ext: str = EXT) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(m.WecomRelation.__table__).values(
                staff_id=staff_id,
                customer_id=customer_id,
                external_userid=ext,
                added_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            )
        )


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


def _check_rows(conn: Connection, rows: list[dict[str, Any]]) -> int:
    events, rejected = read_event_rows(rows, conn, zone=ZONE, source="wecom")
    assert rejected == []
    return store_events(conn, events)


# -- parsing -----------------------------------------------------------------------------------


def test_parse_documented_add_event() -> None:
    xml = """<xml>
      <ToUserName><![CDATA[toUser]]></ToUserName>
      <FromUserName><![CDATA[sys]]></FromUserName>
      <CreateTime>1403610513</CreateTime>
      <MsgType><![CDATA[event]]></MsgType>
      <Event><![CDATA[change_external_contact]]></Event>
      <ChangeType><![CDATA[add_external_contact]]></ChangeType>
      <UserID><![CDATA[zhangsan]]></UserID>
      <ExternalUserID><![CDATA[woAJ2GCAAAXtWyujaWJHDDGi0mAAAA]]></ExternalUserID>
      <State><![CDATA[teststate]]></State>
      <WelcomeCode><![CDATA[WELCOMECODE]]></WelcomeCode>
    </xml>"""
    event = parse_callback(xml)
    assert event == WecomEvent(
        change_type="add_external_contact",
        user_id="zhangsan",
        external_userid="woAJ2GCAAAXtWyujaWJHDDGi0mAAAA",
        state="teststate",
        welcome_code="WELCOMECODE",
        source=None,
        created_at=dt.datetime(2014, 6, 24, 11, 48, 33, tzinfo=dt.UTC),
        fail_reason=None,
        create_time=1403610513,
        corp_id="toUser",
    )
    assert event_id(event) == (
        "wecom:add_external_contact:zhangsan:woAJ2GCAAAXtWyujaWJHDDGi0mAAAA:1403610513"
    )


def test_parse_other_events_and_bad_ones() -> None:
    chat = (
        "<xml><CreateTime>1</CreateTime><Event><![CDATA[change_external_chat]]></Event>"
        "<ChatId>wrx</ChatId><ChangeType>create</ChangeType></xml>"
    )
    assert parse_callback(chat) is None
    assert parse_callback("<xml><MsgType>text</MsgType><Content>hi</Content></xml>") is None
    with pytest.raises(WecomCryptoError, match="UserID"):
        parse_callback(
            "<xml><Event>change_external_contact</Event><ChangeType>add_external_contact"
            "</ChangeType><CreateTime>1</CreateTime></xml>"
        )
    transfer_fail = _event("transfer_fail", fail_reason="customer_refused")
    assert transfer_fail.fail_reason == "customer_refused"
    deleted = _event("del_external_contact", source="DELETE_BY_TRANSFER")
    assert deleted.source == "DELETE_BY_TRANSFER"


def test_long_ids_give_a_short_stable_key() -> None:
    event = _event("add_half_external_contact", user="u" * 64, ext="e" * 64)
    key = event_id(event)
    assert len(key) <= 124 and key.startswith("wecom:")
    assert key == event_id(_event("add_half_external_contact", user="u" * 64, ext="e" * 64))


# -- friend added ------------------------------------------------------------------------------


def test_add_of_a_known_contact(store: Engine) -> None:
    _link(store, staff_id=2, customer_id=11)  # the customer is already lisi's contact
    rows = _apply(store, _event("add_external_contact", state="showroom_d001"))
    assert rows == [
        {
            "event_id": f"wecom:add_external_contact:zhangsan:{EXT}:{T0}",
            "type": "wecom_friend_added",
            "customer_id": 11,
            "occurred_at": "2026-05-28T20:26:40+00:00",
            "staff_no": "S1",
            "channel_code": "showroom_d001",
        }
    ]
    mine = [r for r in _relations(store) if r["staff_id"] == 1]
    assert len(mine) == 1
    assert (mine[0]["customer_id"], mine[0]["state"]) == (11, "showroom_d001")
    assert _utc(mine[0]["added_at"]) == dt.datetime.fromtimestamp(T0, dt.UTC)
    assert mine[0]["deleted_at"] is None
    with store.begin() as conn:
        assert _check_rows(conn, rows) == 1


def test_unknown_contact_matched_by_remark_mobile(
    store: Engine, server: WecomLoopback, adapter: WecomAdapter
) -> None:
    server.add_contact(EXT, "zhangsan", remark_mobiles=("139-0000-0002", "0571-88886666"))
    rows = _apply(
        store,
        _event("add_half_external_contact", state="invoice_qr"),
        fetch_contact=adapter.remark_mobiles,
    )
    assert [(r["type"], r["customer_id"], r["channel_code"]) for r in rows] == [
        ("wecom_friend_added", 12, "invoice_qr")
    ]
    assert [r["customer_id"] for r in _relations(store)] == [12]
    assert server.calls["externalcontact/get"] == 1


def test_unknown_contact_without_a_match(
    store: Engine, server: WecomLoopback, adapter: WecomAdapter
) -> None:
    server.add_contact(EXT, "zhangsan", remark_mobiles=("13700000009",))
    rows = _apply(store, _event("add_external_contact"), fetch_contact=adapter.remark_mobiles)
    assert rows == []  # nobody to react for …
    (relation,) = _relations(store)  # … but the friendship is recorded
    assert (relation["staff_id"], relation["customer_id"]) == (1, None)
    # Once an import links the customer, a later add (re-add) finds it.
    _link(store, staff_id=2, customer_id=11)
    rows = _apply(store, _event("add_external_contact", T0 + 60))
    assert [r["customer_id"] for r in rows] == [11]


def test_contact_lookup_failure_still_records_the_friendship(
    store: Engine, server: WecomLoopback, adapter: WecomAdapter
) -> None:
    server.mode = "throttle"
    rows = _apply(store, _event("add_external_contact"), fetch_contact=adapter.remark_mobiles)
    assert rows == []
    assert [(r["staff_id"], r["customer_id"]) for r in _relations(store)] == [(1, None)]


def test_add_for_a_member_baoke_does_not_know(store: Engine) -> None:
    assert _apply(store, _event("add_external_contact", user="stranger")) == []
    assert _relations(store) == []


def test_duplicate_callback_changes_nothing(store: Engine) -> None:
    _link(store, staff_id=2, customer_id=11)
    event = _event("add_external_contact", state="showroom")
    first = _apply(store, event)
    before = _relations(store)
    second = _apply(store, event)
    assert second == first  # the same row again: the event store keeps its key once
    assert _relations(store) == before  # not even updated_at moved
    with store.begin() as conn:
        assert _check_rows(conn, first) == 1
        assert _check_rows(conn, second) == 0
        count = conn.execute(select(func.count()).select_from(m.Event.__table__)).scalar_one()
    assert count == 1


def test_encrypted_callback_end_to_end(
    store: Engine, server: WecomLoopback, adapter: WecomAdapter
) -> None:
    """As the callback route does it: decrypt, parse, apply, welcome."""
    server.add_contact(EXT, "zhangsan", remark_mobiles=("13800000001",))
    crypto = adapter.callback_crypto()
    plain = contact_event_xml(
        "add_external_contact", "zhangsan", EXT, create_time=T0, state="s1", welcome_code="W1"
    )
    query, body = encrypted_callback(crypto, plain)
    for _ in range(2):  # WeCom delivers it twice (no answer within 5 s the first time)
        signed, stamp, nonce = query["msg_signature"], query["timestamp"], query["nonce"]
        xml = crypto.decrypt(signed, stamp, nonce, body.decode())
        event = parse_callback(xml)
        assert event is not None
        with store.begin() as conn:
            rows = apply_event(conn, event, fetch_contact=adapter.remark_mobiles)
            _check_rows(conn, rows)
    with store.connect() as conn:
        stored = conn.execute(select(m.Event.__table__)).all()
    assert [(e.type, e.customer_id) for e in stored] == [("wecom_friend_added", 11)]
    assert len(_relations(store)) == 1


# -- friend deleted ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change_type", "by"), [("del_follow_user", "customer"), ("del_external_contact", "staff")]
)
def test_delete(store: Engine, change_type: str, by: str) -> None:
    _link(store, staff_id=1, customer_id=11)
    rows = _apply(store, _event(change_type))
    assert rows == [
        {
            "event_id": f"wecom:{change_type}:zhangsan:{EXT}:{T0}",
            "type": "wecom_friend_deleted",
            "customer_id": 11,
            "occurred_at": "2026-05-28T20:26:40+00:00",
            "deleted_by": by,
            "staff_no": "S1",
        }
    ]
    (relation,) = _relations(store)
    assert _utc(relation["deleted_at"]) == dt.datetime.fromtimestamp(T0, dt.UTC)
    assert relation["deleted_by"] == by
    with store.begin() as conn:
        assert _check_rows(conn, rows) == 1
    # repeated: the same answer, no change
    before = _relations(store)
    assert _apply(store, _event(change_type)) == rows
    assert _relations(store) == before


def test_delete_by_transfer_is_no_event(store: Engine) -> None:
    _link(store, staff_id=1, customer_id=11)
    assert _apply(store, _event("del_external_contact", source="DELETE_BY_TRANSFER")) == []
    assert _relations(store)[0]["deleted_by"] == "transfer"


def test_delete_of_an_unknown_friendship(store: Engine) -> None:
    assert _apply(store, _event("del_follow_user")) == []
    assert _relations(store) == []


def test_late_repeat_of_an_add_does_not_undo_a_delete(store: Engine) -> None:
    _link(store, staff_id=2, customer_id=11)
    add = _event("add_external_contact", T0, state="showroom")
    assert _apply(store, add)
    assert _apply(store, _event("del_follow_user", T0 + 3600))
    assert _apply(store, add) == []  # WeCom's retry of the add arrives after the delete
    mine = next(r for r in _relations(store) if r["staff_id"] == 1)
    assert mine["deleted_by"] == "customer"
    # an older delete after a newer re-add is ignored as well
    assert _apply(store, _event("add_external_contact", T0 + 7200, state="again"))
    assert _apply(store, _event("del_external_contact", T0 + 3000)) == []
    mine = next(r for r in _relations(store) if r["staff_id"] == 1)
    assert (mine["deleted_at"], mine["deleted_by"], mine["state"]) == (None, None, "again")


def test_readd_after_delete(store: Engine) -> None:
    _link(store, staff_id=1, customer_id=11)
    _apply(store, _event("del_follow_user", T0))
    rows = _apply(store, _event("add_external_contact", T0 + 86400, state="winback"))
    assert [r["type"] for r in rows] == ["wecom_friend_added"]
    (relation,) = _relations(store)
    assert (relation["deleted_at"], relation["deleted_by"]) == (None, None)
    assert relation["state"] == "winback"
    assert _utc(relation["added_at"]) == dt.datetime.fromtimestamp(T0 + 86400, dt.UTC)


def test_other_change_types_change_nothing(store: Engine) -> None:
    _link(store, staff_id=1, customer_id=11)
    before = _relations(store)
    assert _apply(store, _event("edit_external_contact")) == []
    assert _apply(store, _event("transfer_fail", user="lisi", fail_reason="customer_refused")) == []
    assert _relations(store) == before


# -- transfers ---------------------------------------------------------------------------------


def test_transfer_relations_after_a_transfer(
    store: Engine, server: WecomLoopback, adapter: WecomAdapter
) -> None:
    others = ["wmEXT2", "wmEXT3"]
    for ext in (EXT, *others):
        _link(store, staff_id=1, customer_id=None, ext=ext)
        server.add_contact(ext, "zhangsan")
    _link(store, staff_id=2, customer_id=12, ext="wmEXT3")  # lisi already has this one
    outcome = adapter.transfer_resigned("zhangsan", "lisi", [EXT, *others, "wmEXTnone"])
    assert outcome["wmEXTnone"] == 40096
    done = [ext for ext, code in outcome.items() if code == 0]
    with store.begin() as conn:
        assert transfer_relations(conn, 1, 2, done) == 3
        assert transfer_relations(conn, 1, 2, done) == 0  # nothing left to move
    by_key = {(r["staff_id"], r["external_userid"]): r for r in _relations(store)}
    assert by_key[(2, EXT)]["deleted_at"] is None
    assert (1, EXT) not in by_key
    assert by_key[(2, "wmEXT3")]["customer_id"] == 12
    assert by_key[(1, "wmEXT3")]["deleted_by"] == "transfer"
    # a deletion callback WeCom sends for the old owner finds nothing active to end
    assert _apply(store, _event("del_external_contact", source="DELETE_BY_TRANSFER")) == []
