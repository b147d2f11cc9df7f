"""What comes back after a message went out, through the real HTTP app.

Short links counted and redirected, SMS delivery receipts and replies pushed by Aliyun and
Tencent, WeCom's signed and encrypted contact callbacks, e-mail unsubscribe pages and logged
calls: each one reaches the touch, the consent or the relation it is about, a repeated push
changes nothing, and a push without the callback token is refused.

Messages are planned by the real contact policy and sent by the real dispatcher (to the sandbox
files, or to the loopback Aliyun and WeCom servers); the app runs in ``TestClient``.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import socket
from collections.abc import Iterator
from email.message import EmailMessage
from itertools import count
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, select, text, update
from tests.journeys.world import World, local

from baoke.api.app import create_app
from baoke.channels import aliyun_sms, tencent_sms
from baoke.channels.dispatcher import Dispatcher, DispatchResult
from baoke.channels.loopback.aliyun import AliyunSmsServer
from baoke.channels.loopback.wecom import (
    CORP_ID,
    SECRET,
    WecomLoopback,
    contact_event_xml,
    encrypted_callback,
    verification_query,
)
from baoke.channels.settings import ChannelSettings
from baoke.channels.wecom_crypto import WecomCrypto
from baoke.config import Settings
from baoke.journeys.catalog import load_catalog
from baoke.policy.arbiter import holdout_share
from baoke.policy.plan import plan_day
from baoke.store import models as m
from baoke.store.models import table

D = dt.date(2026, 11, 2)  # a Monday, in the past: the callbacks' moments are before "now"
API_TOKEN = "t"
CALLBACK_TOKEN = "cb-0123456789abcdef"
WECOM_TOKEN = "cbToken123"
WECOM_AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
ALIYUN_KEY_ID = "LTAI5tLoopbackKeyId"
ALIYUN_KEY_SECRET = "loopback-aliyun-secret"
BOOKING = "https://bk.example.cn/b"  # [messages] booking_link, in the SMS templates
_keys = count(1)


# -- the world ---------------------------------------------------------------------------------


@pytest.fixture
def world(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    """A dealer, two staff members with WeCom ids, an API token and a callback token."""
    monkeypatch.delenv("BAOKE_SECRETS_FILE", raising=False)
    monkeypatch.setenv("BAOKE_CALLBACK_TOKEN", CALLBACK_TOKEN)
    made = World(engine, tmp_path / "data")
    with engine.begin() as conn:
        conn.execute(text("UPDATE staff SET wecom_userid = staff_no"))
    made.settings = _settings(made)
    return made


def _settings(world: World, **channels: Any) -> Settings:
    return Settings(
        data_dir=world.data_dir,
        database_url=world.engine.url.render_as_string(hide_password=False),
        api_token=SecretStr(API_TOKEN),
        channels=ChannelSettings.model_validate(channels),
    )


def _client(world: World) -> TestClient:
    return TestClient(create_app(world.settings, world.engine))


def _auth(token: str = API_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _not_held_out(world: World) -> int:
    """A customer id outside the global holdout (the world's own ids count up from 1)."""
    for cid in range(900, 2000):
        if holdout_share(pl.Series([cid]))[0] >= world.settings.policy.holdout:
            return cid
    raise AssertionError("no id outside the holdout")


def _owner(world: World, **kw: Any) -> int:
    return world.owner(customer_id=_not_held_out(world), **kw)


def _national(world: World, customer: int) -> str:
    """The customer's mobile as the SMS providers report it: 11 digits."""
    mobile = str(_one(world, "SELECT mobile FROM customers WHERE id = :c", c=customer)["mobile"])
    return mobile.removeprefix("+86")


def _planned(
    world: World,
    customer: int,
    at: dt.datetime,
    *,
    channel: str = "sms",
    playbook: str = "service_calendar",
    template: str = "maintenance_booking",
    priority: str = "service",
) -> int:
    """A touch a journey step proposed, planned by the contact policy: scheduled, in the outbox."""
    with world.engine.connect() as conn:
        version = load_catalog(conn, world.settings, record=False).current[playbook].version
    touch = world.insert(
        m.Touch,
        idempotency_key=f"test:{channel}:{next(_keys)}",
        customer_id=customer,
        dealer_id=1,
        channel=channel,
        channels=channel,
        template=template,
        playbook=playbook,
        version=version,
        step="test_step",
        priority=priority,
        status="candidate",
        scheduled_at=at,
        proposed_at=at,
        cost_fen=0,
    )
    plan_day(world.settings, world.engine, at.astimezone(world.settings.zone).date())
    row = _touch(world, touch)
    assert (row["status"], row["channel"]) == ("scheduled", channel), row
    return touch


def _dispatch(world: World, at: dt.datetime | None = None) -> DispatchResult:
    moment = at or local(D, 9)
    dispatcher = Dispatcher(world.settings, world.engine, clock=lambda: moment)
    try:
        return dispatcher.run()
    finally:
        dispatcher.close()


def _one(world: World, sql: str, **params: Any) -> dict[str, Any]:
    rows = world.frame(sql, **params).to_dicts()
    assert len(rows) == 1, rows
    return rows[0]


def _touch(world: World, touch: int) -> dict[str, Any]:
    with world.engine.connect() as conn:
        row = conn.execute(select(table(m.Touch)).where(m.Touch.id == touch)).one()
    return dict(row._mapping)


def _history(world: World, touch: int, status: str) -> int:
    rows = world.frame(
        "SELECT count(*) AS n FROM touch_status_history WHERE touch_id = :t AND status = :s",
        t=touch,
        s=status,
    )
    return int(rows["n"][0])


def _count(world: World, sql: str, **params: Any) -> int:
    return int(world.frame(sql, **params).to_series()[0])


def _consent(world: World, customer: int, channel: str) -> dict[str, Any]:
    return _one(
        world,
        "SELECT granted, withdrawn_at, source FROM consents "
        "WHERE customer_id = :c AND channel = :ch AND purpose = 'marketing'",
        c=customer,
        ch=channel,
    )


def _sandbox(world: World, channel: str) -> list[dict[str, Any]]:
    path = world.data_dir / "sandbox" / f"{channel}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _stamp(at: dt.datetime) -> str:
    """A moment as the Chinese SMS providers write it: Asia/Shanghai wall time."""
    return at.astimezone(Settings().zone).strftime("%Y-%m-%d %H:%M:%S")


# -- short links -------------------------------------------------------------------------------


def test_a_link_in_a_message_becomes_a_short_link_that_counts_clicks(world: World) -> None:
    cid = _owner(world)
    touch = _planned(world, cid, local(D, 9))
    assert _dispatch(world).sent == 1

    (link,) = world.frame(
        "SELECT code, url, purpose, clicks, first_clicked_at FROM short_links WHERE touch_id = :t",
        t=touch,
    ).to_dicts()
    assert (link["url"], link["purpose"], link["clicks"]) == (BOOKING, "link", 0)
    assert link["first_clicked_at"] is None
    (sent,) = [r for r in _sandbox(world, "sms") if r["touch_id"] == touch]
    short = world.settings.channels.short_link_base + link["code"]
    assert short in sent["text"]
    assert BOOKING not in sent["text"]  # the customer gets the per-touch link only

    client = _client(world)
    first = client.get(f"/s/{link['code']}", follow_redirects=False)
    assert first.status_code == 302
    assert first.headers["location"] == BOOKING
    clicked = _one(
        world, "SELECT clicks, first_clicked_at FROM short_links WHERE code = :c", c=link["code"]
    )
    assert clicked["clicks"] == 1 and clicked["first_clicked_at"] is not None
    assert _touch(world, touch)["status"] == "clicked"
    assert _history(world, touch, "clicked") == 1

    again = client.get(f"/s/{link['code']}", follow_redirects=False)
    assert (again.status_code, again.headers["location"]) == (302, BOOKING)
    after = _one(
        world, "SELECT clicks, first_clicked_at FROM short_links WHERE code = :c", c=link["code"]
    )
    assert after["clicks"] == 2
    assert after["first_clicked_at"] == clicked["first_clicked_at"]
    assert _history(world, touch, "clicked") == 1  # counted, but no second event
    assert _count(world, "SELECT count(*) FROM events WHERE type = 'touch_status'") == 1

    missing = client.get("/s/nosuchcode", follow_redirects=False)
    assert missing.status_code == 404
    assert "链接已失效" in missing.text


def test_a_link_followed_by_punctuation_keeps_its_own_address(world: World) -> None:
    # A dealer's own playbook writes a full stop after the link: the stop is text, not address.
    books = world.data_dir / "playbooks"
    books.mkdir(parents=True)
    (books / "link_check.yaml").write_text(
        "name: link_check\n"
        "label: 链接检查\n"
        "description: 一条带链接的短信\n"
        "kind: retention\n"
        "triggers:\n"
        "  - segment: at_risk\n"
        "steps:\n"
        "  - id: promo\n"
        "    send: {channel: sms, template: promo}\n"
        "templates:\n"
        "  promo:\n"
        '    sms: "【{{ signature }}】{{ greeting }}，详情见{{ booking_link }}. 回复TD退订"\n',
        encoding="utf-8",
    )
    cid = _owner(world)
    touch = _planned(world, cid, local(D, 9), playbook="link_check", template="promo")
    _dispatch(world)
    (link,) = world.frame(
        "SELECT code, url FROM short_links WHERE touch_id = :t", t=touch
    ).to_dicts()
    assert link["url"] == BOOKING
    (sent,) = _sandbox(world, "sms")
    assert (
        f"详情见{world.settings.channels.short_link_base}{link['code']}. 回复TD退订" in sent["text"]
    )


def test_a_message_sent_again_keeps_its_short_link(world: World) -> None:
    cid = _owner(world)
    touch = _planned(world, cid, local(D, 9))
    _dispatch(world)
    (code,) = world.frame("SELECT code FROM short_links WHERE touch_id = :t", t=touch)["code"]
    # A dispatcher that died after the send: the row is claimed and sent again.
    with world.engine.begin() as conn:
        conn.execute(
            update(table(m.OutboxEntry))
            .where(m.OutboxEntry.touch_id == touch)
            .values(status="pending")
        )
    _dispatch(world)
    assert world.frame("SELECT code FROM short_links WHERE touch_id = :t", t=touch)[
        "code"
    ].to_list() == [code]
    texts = [r["text"] for r in _sandbox(world, "sms") if r["touch_id"] == touch]
    assert len(texts) == 2 and texts[0] == texts[1]


# -- Aliyun SMS pushes ---------------------------------------------------------------------------


@pytest.fixture
def aliyun(monkeypatch: pytest.MonkeyPatch) -> Iterator[AliyunSmsServer]:
    monkeypatch.setenv("BAOKE_ALIYUN_ACCESS_KEY_ID", ALIYUN_KEY_ID)
    monkeypatch.setenv("BAOKE_ALIYUN_ACCESS_KEY_SECRET", ALIYUN_KEY_SECRET)
    server = AliyunSmsServer(ALIYUN_KEY_ID, ALIYUN_KEY_SECRET)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _through_aliyun(world: World, server: AliyunSmsServer) -> None:
    world.settings = _settings(
        world,
        sms=["aliyun"],
        providers={
            "aliyun": {
                "sign_name": "杭州星途",
                "endpoint": server.url,
                "templates": {"service_calendar/maintenance_booking": "SMS_100001"},
            }
        },
    )


def _report(biz_id: str, phone: str, at: dt.datetime, *, success: bool = True) -> list[Any]:
    """An SmsReport push as help.aliyun.com/document_detail/101867 documents it."""
    return [
        {
            "phone_number": phone,
            "send_time": _stamp(at - dt.timedelta(seconds=3)),
            "report_time": _stamp(at),
            "success": success,
            "err_code": "DELIVERED" if success else "MK:0001",
            "err_msg": "用户接收成功" if success else "空号",
            "sms_size": "1",
            "biz_id": biz_id,
            "out_id": "ref-1",
        }
    ]


def test_an_aliyun_delivery_report_marks_the_touch_delivered_once(
    world: World, aliyun: AliyunSmsServer
) -> None:
    _through_aliyun(world, aliyun)
    cid = _owner(world)
    touch = _planned(world, cid, local(D, 9))
    done = _dispatch(world)
    assert done.by_provider == {"aliyun": 1}
    (record,) = aliyun.records
    sent = _touch(world, touch)
    assert sent["status"] == "sent"
    assert sent["provider_message_id"] == record["biz_id"]

    client = _client(world)
    body = _report(record["biz_id"], _national(world, cid), local(D, 9, 1))
    url = f"/callbacks/aliyun/report?token={CALLBACK_TOKEN}"
    answer = client.post(url, json=body)
    assert answer.status_code == 200
    assert answer.content == aliyun_sms.CALLBACK_ACK
    assert json.loads(answer.content) == {"code": 0, "msg": "接收成功"}
    assert _touch(world, touch)["status"] == "delivered"
    assert _history(world, touch, "delivered") == 1

    again = client.post(url, json=body)  # Aliyun pushes again when it missed the answer
    assert (again.status_code, again.content) == (200, aliyun_sms.CALLBACK_ACK)
    assert _touch(world, touch)["status"] == "delivered"
    assert _history(world, touch, "delivered") == 1


def test_a_batch_report_reaches_the_touch_of_its_number(
    world: World, aliyun: AliyunSmsServer
) -> None:
    # SendBatchSms answers one BizId for every number of the request: the number tells the
    # touches apart.
    _through_aliyun(world, aliyun)
    first = _owner(world)
    second = world.owner(customer_id=first + 1)
    touches = [_planned(world, cid, local(D, 9)) for cid in (first, second)]
    assert _dispatch(world).requests == 1
    biz_ids = {_touch(world, t)["provider_message_id"] for t in touches}
    assert len(biz_ids) == 1
    body = _report(biz_ids.pop(), "86" + _national(world, second), local(D, 9, 1))
    answer = _client(world).post(f"/callbacks/aliyun/report?token={CALLBACK_TOKEN}", json=body)
    assert answer.status_code == 200
    assert [_touch(world, t)["status"] for t in touches] == ["sent", "delivered"]


def test_the_short_link_reaches_the_customer_through_an_sms_template(
    world: World, aliyun: AliyunSmsServer
) -> None:
    # Aliyun sends the approved template with its parameters, not baoke's text: the link the
    # customer gets is the template parameter's, which must be the per-touch short link too.
    _through_aliyun(world, aliyun)
    cid = _owner(world)
    touch = _planned(world, cid, local(D, 9))
    _dispatch(world)
    (code,) = world.frame("SELECT code FROM short_links WHERE touch_id = :t", t=touch)["code"]
    (record,) = aliyun.records
    sent = " ".join(record["params"].values())
    assert world.settings.channels.short_link_base + code in sent
    assert BOOKING not in record["params"].values()


def test_an_aliyun_failure_report_marks_the_touch_failed(
    world: World, aliyun: AliyunSmsServer
) -> None:
    _through_aliyun(world, aliyun)
    cid = _owner(world)
    touch = _planned(world, cid, local(D, 9))
    _dispatch(world)
    (record,) = aliyun.records
    body = _report(record["biz_id"], _national(world, cid), local(D, 9, 2), success=False)
    answer = _client(world).post(f"/callbacks/aliyun/report?token={CALLBACK_TOKEN}", json=body)
    assert answer.status_code == 200
    assert _touch(world, touch)["status"] == "failed"


def test_sms_pushes_need_the_callback_token(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    cid = _owner(world)
    touch = _planned(world, cid, local(D, 9))
    _dispatch(world)
    body = _report(
        str(_touch(world, touch)["provider_message_id"]), _national(world, cid), local(D, 9, 1)
    )
    client = _client(world)
    for url in (
        "/callbacks/aliyun/report",
        "/callbacks/aliyun/report?token=",
        "/callbacks/aliyun/report?token=wrong-token",
        f"/callbacks/tencent/status?token={CALLBACK_TOKEN}x",
    ):
        answer = client.post(url, json=body)
        assert answer.status_code == 401, url
        assert CALLBACK_TOKEN not in answer.text
    monkeypatch.delenv("BAOKE_CALLBACK_TOKEN")
    off = client.post(f"/callbacks/aliyun/report?token={CALLBACK_TOKEN}", json=body)
    assert off.status_code == 503
    assert "BAOKE_CALLBACK_TOKEN" in off.text
    assert _touch(world, touch)["status"] == "sent"
    assert _count(world, "SELECT count(*) FROM events") == 0


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("aliyun/report", b"this is not json"),
        ("aliyun/report", b'[{"phone_number": "13800000001", "success": true}]'),
        ("aliyun/report", b'{"not": "a list"}'),
        ("aliyun/up", b'[{"phone_number": "13800000001", "content": "TD"}]'),
        ("tencent/status", b"[{]"),
        ("tencent/status", b'[{"sid": "x", "mobile": "1", "report_status": "MAYBE"}]'),
        ("tencent/reply", b'{"mobile": "13800000001", "text": "TD", "time": "yesterday"}'),
    ],
)
def test_a_push_that_cannot_be_read_is_a_400_and_stores_nothing(
    world: World, path: str, body: bytes
) -> None:
    before = _count(world, "SELECT count(*) FROM events")
    answer = _client(world).post(
        f"/callbacks/{path}?token={CALLBACK_TOKEN}",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 400, answer.text
    assert _count(world, "SELECT count(*) FROM events") == before
    assert _count(world, "SELECT count(*) FROM touch_status_history") == 0


def test_an_unknown_push_is_a_404(world: World) -> None:
    answer = _client(world).post(f"/callbacks/aliyun/nothing?token={CALLBACK_TOKEN}", json=[])
    assert answer.status_code == 404


def test_a_report_for_no_known_message_is_acknowledged_and_changes_nothing(world: World) -> None:
    cid = _owner(world)
    touch = _planned(world, cid, local(D, 9))
    _dispatch(world)
    body = _report("999999999^0", _national(world, cid), local(D, 9, 1))
    answer = _client(world).post(f"/callbacks/aliyun/report?token={CALLBACK_TOKEN}", json=body)
    assert (answer.status_code, answer.content) == (200, aliyun_sms.CALLBACK_ACK)
    assert _touch(world, touch)["status"] == "sent"
    assert _count(world, "SELECT count(*) FROM events") == 0


def test_an_aliyun_td_reply_unsubscribes_and_the_next_sms_is_suppressed(world: World) -> None:
    cid = _owner(world)
    # A marketing SMS planned for 10:00, before the customer replies TD to an earlier one.
    offer = _planned(
        world,
        cid,
        local(D, 10),
        playbook="upgrade_replacement",
        template="trade_in_reminder",
        priority="marketing",
    )
    reply = [
        {
            "phone_number": _national(world, cid),
            "send_time": _stamp(local(D, 9, 30)),
            "content": "TD",
            "sign_name": "杭州星途",
            "dest_code": "1234",
            "sequence_id": 1200345,
        }
    ]
    client = _client(world)
    url = f"/callbacks/aliyun/up?token={CALLBACK_TOKEN}"
    answer = client.post(url, json=reply)
    assert (answer.status_code, answer.content) == (200, aliyun_sms.CALLBACK_ACK)
    sms = _consent(world, cid, "sms")
    assert sms["granted"] in (False, 0)
    assert sms["withdrawn_at"] is not None
    assert _consent(world, cid, "wecom")["withdrawn_at"] is None  # TD on SMS stops SMS
    assert client.post(url, json=reply).status_code == 200  # repeated: one event
    assert _count(world, "SELECT count(*) FROM events WHERE type = 'reply_keyword'") == 1

    done = _dispatch(world, local(D, 10))
    assert (done.sent, done.suppressed) == (0, 1)
    outbox = _one(world, "SELECT status, last_error FROM outbox WHERE touch_id = :t", t=offer)
    assert outbox["status"] == "suppressed"
    assert "unsubscribed" in outbox["last_error"]
    assert _touch(world, offer)["status"] == "suppressed"
    assert not (world.data_dir / "sandbox" / "sms.jsonl").exists()


# -- Tencent SMS pushes --------------------------------------------------------------------------


def test_a_tencent_status_report_marks_the_touch_delivered(world: World) -> None:
    cid = _owner(world)
    touch = _planned(world, cid, local(D, 9))
    _dispatch(world)
    serial = "2640:3124511631316913372251318"
    with world.engine.begin() as conn:  # as if Tencent had sent it and answered this SerialNo
        conn.execute(
            update(table(m.Touch)).where(m.Touch.id == touch).values(provider_message_id=serial)
        )
    body = [
        {
            "user_receive_time": _stamp(local(D, 9, 1)),
            "nationcode": "86",
            "mobile": _national(world, cid),
            "report_status": "SUCCESS",
            "errmsg": "DELIVRD",
            "description": "用户短信送达成功",
            "sid": serial,
        }
    ]
    client = _client(world)
    url = f"/callbacks/tencent/status?token={CALLBACK_TOKEN}"
    answer = client.post(url, json=body)
    assert (answer.status_code, answer.content) == (200, tencent_sms.CALLBACK_ACK)
    assert _touch(world, touch)["status"] == "delivered"
    assert client.post(url, json=body).status_code == 200
    assert _history(world, touch, "delivered") == 1


def test_a_tencent_reply_unsubscribes(world: World) -> None:
    cid = _owner(world)
    offer = _planned(
        world,
        cid,
        local(D, 10),
        playbook="upgrade_replacement",
        template="trade_in_reminder",
        priority="marketing",
    )
    body = {
        "extend": "",
        "mobile": _national(world, cid),
        "nationcode": "86",
        "sign": "杭州星途",
        "text": "退订",
        "time": int(local(D, 9, 30).timestamp()),
    }
    answer = _client(world).post(f"/callbacks/tencent/reply?token={CALLBACK_TOKEN}", json=body)
    assert (answer.status_code, answer.content) == (200, tencent_sms.CALLBACK_ACK)
    assert _consent(world, cid, "sms")["withdrawn_at"] is not None
    assert _dispatch(world, local(D, 10)).suppressed == 1
    assert _touch(world, offer)["status"] == "suppressed"


# -- WeCom callbacks -----------------------------------------------------------------------------


@pytest.fixture
def wecom(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[WecomLoopback]:
    """The loopback qyapi, configured as the WeCom provider with its callback secrets."""
    monkeypatch.setenv("BAOKE_WECOM_SECRET", SECRET)
    monkeypatch.setenv("BAOKE_WECOM_TOKEN", WECOM_TOKEN)
    monkeypatch.setenv("BAOKE_WECOM_AES_KEY", WECOM_AES_KEY)
    server = WecomLoopback()
    server.start()
    world.settings = _settings(
        world,
        wecom=["wecom"],
        providers={"wecom": {"corp_id": CORP_ID, "endpoint": server.url, "timeout": 2}},
    )
    try:
        yield server
    finally:
        server.stop()


def _crypto() -> WecomCrypto:
    return WecomCrypto(WECOM_TOKEN, WECOM_AES_KEY, CORP_ID)


def test_wecom_url_verification_answers_the_echo(world: World, wecom: WecomLoopback) -> None:
    client = _client(world)
    answer = client.get(f"/callbacks/wecom?{verification_query(_crypto(), '8571320245551')}")
    assert answer.status_code == 200
    assert answer.text == "8571320245551"  # as it is: no quotes, no newline

    forged = WecomCrypto("another-token", WECOM_AES_KEY, CORP_ID)
    refused = client.get(f"/callbacks/wecom?{verification_query(forged, '8571320245551')}")
    assert refused.status_code == 403
    assert "8571320245551" not in refused.text
    assert WECOM_TOKEN not in refused.text and WECOM_AES_KEY not in refused.text


def test_wecom_callbacks_without_the_provider_are_refused(world: World) -> None:
    # The default routes: no WeCom provider configured, nothing to check a signature with.
    answer = _client(world).get(f"/callbacks/wecom?{verification_query(_crypto(), 'echo')}")
    assert answer.status_code == 503


def test_a_customer_deleting_the_advisor_ends_the_relation_and_wecom(
    world: World, wecom: WecomLoopback
) -> None:
    cid = _owner(world)
    external = f"wm{cid}"
    at = local(D, 7)
    xml = contact_event_xml("del_follow_user", "S1", external, create_time=int(at.timestamp()))
    query, body = encrypted_callback(_crypto(), xml)
    client = _client(world)

    forged = dict(query, msg_signature="0" * 40)
    assert client.post("/callbacks/wecom", params=forged, content=body).status_code == 403
    relation = _one(
        world,
        "SELECT deleted_at, deleted_by FROM wecom_relations WHERE external_userid = :e",
        e=external,
    )
    assert relation["deleted_at"] is None

    answer = client.post("/callbacks/wecom", params=query, content=body)
    assert (answer.status_code, answer.text) == (200, "")
    relation = _one(
        world,
        "SELECT deleted_at, deleted_by FROM wecom_relations WHERE external_userid = :e",
        e=external,
    )
    assert relation["deleted_at"] is not None
    assert relation["deleted_by"] == "customer"
    # WeCom repeats a callback it got no quick answer to: the same event, once.
    assert client.post("/callbacks/wecom", params=query, content=body).status_code == 200
    deleted = "SELECT count(*) FROM events WHERE type = 'wecom_friend_deleted' AND customer_id = :c"
    assert _count(world, deleted, c=cid) == 1

    # The next plan does not choose WeCom for this customer: the care message goes by SMS.
    with world.engine.connect() as conn:
        version = load_catalog(conn, world.settings, record=False).current["care_moments"].version
    touch = world.insert(
        m.Touch,
        idempotency_key=f"test:care:{next(_keys)}",
        customer_id=cid,
        dealer_id=1,
        channel="wecom",
        channels="wecom,sms",
        template="birthday",
        playbook="care_moments",
        version=version,
        step="test_step",
        priority="care",
        status="candidate",
        scheduled_at=local(D, 12),
        proposed_at=local(D, 12),
        cost_fen=0,
    )
    plan_day(world.settings, world.engine, D)
    row = _touch(world, touch)
    assert (row["status"], row["channel"]) == ("scheduled", "sms")
    reason = _one(world, "SELECT reason FROM policy_decisions WHERE touch_id = :t", t=touch)
    assert "not a WeCom friend" in reason["reason"]


def test_a_wecom_message_planned_before_the_deletion_is_suppressed_at_send_time(
    world: World, wecom: WecomLoopback
) -> None:
    cid = _owner(world)
    wecom.add_contact(f"wm{cid}", "S1")
    touch = _planned(
        world,
        cid,
        local(D, 9),
        channel="wecom",
        playbook="care_moments",
        template="birthday",
        priority="care",
    )
    at = int(local(D, 8).timestamp())
    xml = contact_event_xml("del_follow_user", "S1", f"wm{cid}", create_time=at)
    query, body = encrypted_callback(_crypto(), xml)
    assert _client(world).post("/callbacks/wecom", params=query, content=body).status_code == 200

    done = _dispatch(world, local(D, 9))
    assert (done.sent, done.suppressed) == (0, 1)
    outbox = _one(world, "SELECT status, last_error FROM outbox WHERE touch_id = :t", t=touch)
    assert outbox["status"] == "suppressed"
    assert "not a WeCom friend" in outbox["last_error"]
    assert wecom.calls["externalcontact/add_msg_template"] == 0


def test_a_new_wecom_friend_is_matched_welcomed_and_reachable(
    world: World, wecom: WecomLoopback
) -> None:
    cid = world.owner(customer_id=_not_held_out(world), wecom=False)
    mobile = _national(world, cid)
    wecom.add_contact("wmNewFriend01", "S1", remark_mobiles=(mobile,), state="store_qr")
    world.settings = _settings(
        world,
        wecom=["wecom"],
        providers={
            "wecom": {
                "corp_id": CORP_ID,
                "endpoint": wecom.url,
                "timeout": 2,
                "welcome": {"store_qr": "您好，我是您的专属服务顾问王磊。"},
            }
        },
    )
    at = local(D, 8)
    xml = contact_event_xml(
        "add_external_contact",
        "S1",
        "wmNewFriend01",
        create_time=int(at.timestamp()),
        state="store_qr",
        welcome_code="WELCOMECODE01",
    )
    query, body = encrypted_callback(_crypto(), xml)
    client = _client(world)
    assert client.post("/callbacks/wecom", params=query, content=body).status_code == 200
    relation = _one(
        world,
        "SELECT customer_id, staff_id, state, deleted_at FROM wecom_relations "
        "WHERE external_userid = 'wmNewFriend01'",
    )
    assert (relation["customer_id"], relation["staff_id"]) == (cid, 1)
    assert (relation["state"], relation["deleted_at"]) == ("store_qr", None)
    assert wecom.accepted["welcome:WELCOMECODE01"] == 1
    added = "SELECT count(*) FROM events WHERE type = 'wecom_friend_added' AND customer_id = :c"
    assert _count(world, added, c=cid) == 1
    assert client.post("/callbacks/wecom", params=query, content=body).status_code == 200
    assert wecom.accepted["welcome:WELCOMECODE01"] == 1  # a code is used once
    assert _count(world, added, c=cid) == 1

    # The new friend is reachable on WeCom: the care message goes from the advisor's account.
    with world.engine.connect() as conn:
        version = load_catalog(conn, world.settings, record=False).current["care_moments"].version
    touch = world.insert(
        m.Touch,
        idempotency_key=f"test:care:{next(_keys)}",
        customer_id=cid,
        dealer_id=1,
        channel="wecom",
        channels="wecom,sms",
        template="birthday",
        playbook="care_moments",
        version=version,
        step="test_step",
        priority="care",
        status="candidate",
        scheduled_at=local(D, 9),
        proposed_at=local(D, 9),
        cost_fen=0,
    )
    plan_day(world.settings, world.engine, D)
    assert _touch(world, touch)["channel"] == "wecom"
    assert _dispatch(world).by_provider == {"wecom": 1}
    (sent,) = [r for r in wecom.records if "msgid" in r]
    assert (sent["sender"], sent["external_userid"]) == ("S1", "wmNewFriend01")
    assert "生日快乐" in sent["text"]
    assert _touch(world, touch)["provider_message_id"] == sent["msgid"]


def test_a_wecom_callback_for_another_corp_or_an_unknown_member_changes_nothing(
    world: World, wecom: WecomLoopback
) -> None:
    cid = _owner(world)
    at = int(local(D, 7).timestamp())
    client = _client(world)
    # Signed with our token and key, but sealed for another corp: refused.
    other = WecomCrypto(WECOM_TOKEN, WECOM_AES_KEY, "wwAnotherCorp0001")
    xml = contact_event_xml("del_follow_user", "S1", f"wm{cid}", create_time=at)
    query, body = encrypted_callback(other, xml)
    assert client.post("/callbacks/wecom", params=query, content=body).status_code == 403
    # A member baoke does not know: acknowledged, nothing to change.
    xml = contact_event_xml("del_follow_user", "nobody", f"wm{cid}", create_time=at)
    query, body = encrypted_callback(_crypto(), xml)
    assert client.post("/callbacks/wecom", params=query, content=body).status_code == 200
    # Not XML at all.
    garbage = client.post("/callbacks/wecom", params=query, content=b"{not xml")
    assert garbage.status_code == 403
    relation = _one(
        world, "SELECT deleted_at FROM wecom_relations WHERE external_userid = :e", e=f"wm{cid}"
    )
    assert relation["deleted_at"] is None
    assert _count(world, "SELECT count(*) FROM events") == 0


# -- e-mail unsubscribe ---------------------------------------------------------------------------


def test_an_email_carries_an_unsubscribe_link_that_withdraws_email_consent(world: World) -> None:
    cid = _owner(world)
    with world.engine.begin() as conn:
        conn.execute(
            update(table(m.Customer))
            .where(m.Customer.id == cid)
            .values(email="zhang.wei@example.cn")
        )
    touch = _planned(
        world, cid, local(D, 9), channel="email", template="usage_notes", priority="care"
    )
    assert _dispatch(world).sent == 1
    (mail,) = _sandbox(world, "email")
    assert mail["touch_id"] == touch
    assert mail["subject"] and mail["text"]
    (link,) = world.frame(
        "SELECT code, url FROM short_links WHERE touch_id = :t AND purpose = 'unsubscribe'",
        t=touch,
    ).to_dicts()

    client = _client(world)
    page = client.get(f"/u/{link['code']}")
    assert page.status_code == 200
    assert f'<form method="post" action="/u/{link["code"]}">' in page.text
    assert _consent(world, cid, "email")["withdrawn_at"] is None  # looking is not unsubscribing

    done = client.post(f"/u/{link['code']}")
    assert done.status_code == 200
    assert "已退订" in done.text
    email = _consent(world, cid, "email")
    assert email["granted"] in (False, 0) and email["withdrawn_at"] is not None
    assert _consent(world, cid, "sms")["withdrawn_at"] is None
    assert client.post(f"/u/{link['code']}").status_code == 200  # a second click: still fine
    assert _count(world, "SELECT count(*) FROM events WHERE type = 'unsubscribe'") == 1

    assert client.get("/u/nosuchcode").status_code == 404
    assert client.post("/u/nosuchcode").status_code == 404


class _Inbox:
    """An aiosmtpd handler keeping every message it is given."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.messages.append(envelope.content)
        return "250 2.0.0 queued"


@pytest.fixture
def inbox() -> Iterator[tuple[_Inbox, int]]:
    """A real SMTP server on loopback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    handler = _Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def test_a_marketing_email_offers_one_click_unsubscribe(
    world: World, inbox: tuple[_Inbox, int]
) -> None:
    handler, port = inbox
    world.settings = _settings(
        world,
        email=["smtp"],
        providers={
            "smtp": {
                "host": "127.0.0.1",
                "port": port,
                "security": "none",
                "sender": "service@dealer.example.cn",
                "sender_name": "杭州西湖店",
            }
        },
    )
    cid = _owner(world)
    with world.engine.begin() as conn:
        conn.execute(
            update(table(m.Customer)).where(m.Customer.id == cid).values(email="zw@example.cn")
        )
    touch = _planned(
        world, cid, local(D, 9), channel="email", template="usage_notes", priority="marketing"
    )
    assert _dispatch(world).by_provider == {"smtp": 1}
    (code,) = world.frame(
        "SELECT code FROM short_links WHERE touch_id = :t AND purpose = 'unsubscribe'", t=touch
    )["code"]
    link = world.settings.channels.unsubscribe_base + code
    (raw,) = handler.messages
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    assert mail["List-Unsubscribe"] == f"<{link}>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert isinstance(mail, EmailMessage)
    plain = mail.get_body(preferencelist=("plain",))
    assert plain is not None and link in plain.get_content()

    # The mail client's own button posts the RFC 8058 form to the link.
    answer = _client(world).post(
        f"/u/{code}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200
    assert _consent(world, cid, "email")["withdrawn_at"] is not None


# -- calls and the dispatch state -----------------------------------------------------------------


def test_a_call_logged_not_connected_sends_the_fallback_sms(world: World) -> None:
    # The API logs a call at the real now, and the win-back waits one day for it: the world's
    # days are yesterday and today here.
    today = dt.datetime.now(world.settings.zone).date()
    cid = world.owner(visits=((today - dt.timedelta(days=101), 900),))
    world.run(today - dt.timedelta(days=1))
    world.run(today, until=dt.datetime.now(dt.UTC))
    ((step, role, _, task),) = world.tasks(cid, "churn_winback")
    assert (step, role) == ("manager_call", "service_manager")

    answer = _client(world).post(
        f"/api/tasks/{task}/outcome", json={"outcome": "not_connected"}, headers=_auth()
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["stored"] == 1
    done = _one(world, "SELECT status, outcome, completed_at FROM tasks WHERE id = :t", t=task)
    assert (done["status"], done["outcome"]) == ("done", "not_connected")
    assert done["completed_at"] is not None
    steps = [s for s, _, _ in world.touches(cid, "churn_winback")]
    assert steps == ["wecom_offer", "sms_offer"]


def test_call_outcomes_are_checked(world: World) -> None:
    cid = _owner(world)
    task = world.insert(
        m.Task,
        customer_id=cid,
        dealer_id=1,
        role="advisor",
        kind="call",
        title="回访",
        due_at=local(D, 18),
        status="open",
    )
    client = _client(world)
    url = f"/api/tasks/{task}/outcome"
    assert client.post(url, json={"outcome": "connected"}).status_code == 401
    assert client.post(url, json={"outcome": "connected"}, headers=_auth("x")).status_code == 401
    missing = client.post(
        "/api/tasks/999999/outcome", json={"outcome": "connected"}, headers=_auth()
    )
    assert missing.status_code == 404
    bad = client.post(url, json={"outcome": "maybe"}, headers=_auth())
    assert bad.status_code == 422
    assert "not_connected" in bad.text  # names the outcomes there are
    assert client.post(url, json=["connected"], headers=_auth()).status_code == 400
    still = _one(world, "SELECT status, outcome FROM tasks WHERE id = :t", t=task)
    assert (still["status"], still["outcome"]) == ("open", None)
    assert _count(world, "SELECT count(*) FROM events") == 0

    ok = client.post(url, json={"outcome": "booked"}, headers=_auth())
    assert ok.status_code == 200
    done = _one(world, "SELECT status, outcome FROM tasks WHERE id = :t", t=task)
    assert (done["status"], done["outcome"]) == ("done", "booked")


def test_the_dispatch_state_counts_the_outbox(world: World) -> None:
    cid = _owner(world)
    _planned(world, cid, local(D, 9))
    later = _planned(world, cid, local(D, 11), template="insurance_renewal")
    client = _client(world)
    assert client.get("/api/dispatch").status_code == 401
    before = client.get("/api/dispatch", headers=_auth()).json()
    assert before["outbox"] == {"pending": {"sms": 2}}
    assert before["routes"]["sms"] == ["sandbox"] and before["routes"]["phone"] == ["tasks"]
    assert before["pauses"] == [] and before["unknown"] == []

    _dispatch(world, local(D, 9))
    after = client.get("/api/dispatch", headers=_auth()).json()
    assert after["outbox"] == {"pending": {"sms": 1}, "sent": {"sms": 1}}
    assert _touch(world, later)["status"] == "scheduled"
