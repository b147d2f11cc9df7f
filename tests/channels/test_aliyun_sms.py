"""The Aliyun SMS adapter against the loopback Dysmsapi, over a real socket."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from tests.channels.support import outcomes, refusal, serve

from baoke.channels.aliyun_sms import (
    CALLBACK_ACK,
    AliyunSms,
    acs3_headers,
    acs3_sign,
    classify,
    make,
    parse_report,
    parse_up,
    percent_encode,
)
from baoke.channels.loopback.aliyun import AliyunSmsServer
from baoke.channels.protocol import Adapter, AdapterContext, Message, ProviderError
from baoke.errors import ConfigError, InputError

KEY_ID = "LTAI5tTestKeyId0001"
KEY_SECRET = "aliyun-test-secret-never-shown"
TEMPLATE = "maintenance/reminder"
CODE = "SMS_100001"


@pytest.fixture(scope="module")
def shared() -> Iterator[AliyunSmsServer]:
    yield from serve(AliyunSmsServer(KEY_ID, KEY_SECRET))


@pytest.fixture
def server(shared: AliyunSmsServer) -> AliyunSmsServer:
    shared.reset()
    shared.hang_seconds = 5.0
    return shared


def context(
    server: AliyunSmsServer | None, secret: str = KEY_SECRET, **options: Any
) -> AdapterContext:
    base: dict[str, Any] = {
        # Configuration tests need no server: nothing listens on the discard port.
        "endpoint": server.url if server else "http://127.0.0.1:9",
        "sign_name": "某某汽车",
        "templates": {TEMPLATE: CODE},
    }
    return AdapterContext(
        name="aliyun",
        options={**base, **options},
        secrets={"BAOKE_ALIYUN_ACCESS_KEY_ID": KEY_ID, "BAOKE_ALIYUN_ACCESS_KEY_SECRET": secret},
    )


@pytest.fixture
def adapter(server: AliyunSmsServer) -> Iterator[AliyunSms]:
    made = make(context(server))
    yield made
    made.close()


@pytest.fixture
def single(server: AliyunSmsServer) -> Iterator[AliyunSms]:
    made = make(context(server, batch=False))
    yield made
    made.close()


def message(
    n: int, *, ref: str = "ref-1", template: str | None = TEMPLATE, **extra: Any
) -> Message:
    return Message(
        touch_id=n,
        key=f"touch-{n}",
        channel="sms",
        customer_id=n,
        dealer_id=1,
        address=f"1380013{n:04d}",
        text=f"【某某汽车】客户{n}您好，您的爱车6月1日该保养了",
        playbook="maintenance",
        template=template,
        params={"name": f"客户{n}", "date": "6月1日"},
        send_ref=ref,
        **extra,
    )


# -- the signature ---------------------------------------------------------------------------------

# The worked example of Aliyun's "V3版本请求体&签名机制" (help.aliyun.com/document_detail/2593177,
# English: alibabacloud.com/help/en/sdk/product-overview/v3-request-structure-and-signature),
# section "固定参数示例 / Fixed parameter values": its inputs and every published intermediate.
DOC_CANONICAL_REQUEST = (
    "POST\n"
    "/\n"
    "ImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai\n"
    "host:ecs.cn-shanghai.aliyuncs.com\n"
    "x-acs-action:RunInstances\n"
    "x-acs-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
    "x-acs-date:2023-10-26T10:22:32Z\n"
    "x-acs-signature-nonce:3156853299f313e23d1673dc12e1703d\n"
    "x-acs-version:2014-05-26\n"
    "\n"
    "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version\n"
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)
DOC_SIGNATURE = "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"


def test_signature_reproduces_aliyuns_published_v3_example() -> None:
    signed = acs3_sign(
        method="POST",
        canonical_uri="/",
        query={
            "RegionId": "cn-shanghai",
            "ImageId": "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
        },
        headers={
            "host": "ecs.cn-shanghai.aliyuncs.com",
            "x-acs-action": "RunInstances",
            "x-acs-version": "2014-05-26",
            "x-acs-date": "2023-10-26T10:22:32Z",
            "x-acs-signature-nonce": "3156853299f313e23d1673dc12e1703d",
            "x-acs-content-sha256": (
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            ),
            # Not signed: V3 signs x-acs-*, host and content-type only.
            "user-agent": "AlibabaCloud (Mac OS X; x86_64) Java/1.8.0_352-b08",
            "accept": "application/json",
        },
        body=b"",
        access_key_id="YourAccessKeyId",
        access_key_secret="YourAccessKeySecret",
    )
    assert signed.canonical_request == DOC_CANONICAL_REQUEST
    assert signed.hashed_canonical_request == (
        "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
    )
    assert signed.string_to_sign == (
        "ACS3-HMAC-SHA256\n7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
    )
    assert signed.signature == DOC_SIGNATURE
    assert signed.authorization == (
        "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;x-acs-action;"
        "x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,"
        f"Signature={DOC_SIGNATURE}"
    )


def test_percent_encoding_follows_rfc_3986() -> None:
    assert percent_encode("a b*c~d-_.") == "a%20b%2Ac~d-_."
    assert percent_encode("某") == "%E6%9F%90"
    assert percent_encode('{"a":"1"}') == "%7B%22a%22%3A%221%22%7D"


def test_form_requests_sign_their_content_type_and_body_hash() -> None:
    body = b"PhoneNumbers=13800138000"
    headers = acs3_headers(
        host="dysmsapi.aliyuncs.com",
        action="SendSms",
        body=body,
        access_key_id="id",
        access_key_secret="secret",
        date="2023-10-26T10:22:32Z",
        nonce="n1",
    )
    assert (
        "SignedHeaders=content-type;host;x-acs-action;x-acs-content-sha256;x-acs-date;"
        "x-acs-signature-nonce;x-acs-version,"
    ) in headers["authorization"]
    assert headers["x-acs-content-sha256"] == hashlib.sha256(body).hexdigest()
    # Another nonce, another signature: a replay cannot reuse one.
    other = acs3_headers(
        host="dysmsapi.aliyuncs.com",
        action="SendSms",
        body=body,
        access_key_id="id",
        access_key_secret="secret",
        date="2023-10-26T10:22:32Z",
        nonce="n2",
    )
    assert other["authorization"] != headers["authorization"]


# -- sending ---------------------------------------------------------------------------------------


def test_the_adapter_implements_the_protocol(adapter: AliyunSms, single: AliyunSms) -> None:
    assert isinstance(adapter, Adapter)
    assert (adapter.name, adapter.channel, adapter.max_batch) == ("aliyun", "sms", 100)
    assert single.max_batch == 1
    assert adapter.rate == 50.0
    assert adapter.idempotent is False


def test_one_message_goes_out_with_sendsms(server: AliyunSmsServer, single: AliyunSms) -> None:
    results = single.send([message(1, ref="ref-one")])
    assert [r.outcome for r in results] == ["sent"]
    assert results[0].provider_id and results[0].provider_id.endswith("^0")
    assert server.accepted == {f"13800130001|ref-one|{CODE}": 1}
    (record,) = server.records
    assert record["action"] == "SendSms"
    assert record["phone"] == "13800130001"
    assert record["template_code"] == CODE
    assert record["params"] == {"name": "客户1", "date": "6月1日"}
    assert record["out_id"] == "ref-one"
    assert record["sign_name"] == "某某汽车"
    assert record["biz_id"] == results[0].provider_id


def test_a_batch_is_one_sendbatchsms_with_each_numbers_params(
    server: AliyunSmsServer, adapter: AliyunSms
) -> None:
    batch = [message(n, ref="ref-b") for n in range(1, 6)]
    results = adapter.send(batch)
    assert outcomes(results) == dict.fromkeys(range(1, 6), "sent")
    assert server.requests == 1
    assert len({r.provider_id for r in results}) == 1  # one BizId for the request
    by_phone = {r["phone"]: r for r in server.records}
    assert {r["action"] for r in server.records} == {"SendBatchSms"}
    assert by_phone["13800130003"]["params"] == {"name": "客户3", "date": "6月1日"}
    assert all(r["out_id"] == "ref-b" for r in server.records)
    assert sum(server.accepted.values()) == 5


def test_a_batch_over_100_messages_is_cut_into_requests(
    server: AliyunSmsServer, adapter: AliyunSms
) -> None:
    results = adapter.send([message(n, ref="ref-big") for n in range(1, 151)])
    assert {r.outcome for r in results} == {"sent"}
    assert server.requests == 2
    assert sum(server.accepted.values()) == 150


def test_many_threads_share_one_adapter(server: AliyunSmsServer, single: AliyunSms) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        chunks = list(pool.map(lambda n: single.send([message(n, ref=f"r{n}")]), range(1, 121)))
    assert all(chunk[0].outcome == "sent" for chunk in chunks)
    assert len(server.accepted) == 120
    assert set(server.accepted.values()) == {1}


def test_a_message_without_an_approved_template_fails_without_a_request(
    server: AliyunSmsServer, adapter: AliyunSms
) -> None:
    results = adapter.send([message(1, template="birthday/greeting")])
    assert results[0].outcome == "failed"
    assert results[0].error == "no approved Aliyun template for birthday/greeting"
    assert server.requests == 0


def test_the_messages_own_template_code_is_the_fallback(
    server: AliyunSmsServer, adapter: AliyunSms
) -> None:
    results = adapter.send([message(1, template="birthday/greeting", template_code="SMS_777")])
    assert results[0].outcome == "sent"
    assert server.records[0]["template_code"] == "SMS_777"


def test_a_mixed_batch_sends_the_mapped_and_fails_the_unmapped(
    server: AliyunSmsServer, adapter: AliyunSms
) -> None:
    results = adapter.send([message(1), message(2, template="x/unknown"), message(3)])
    assert outcomes(results) == {1: "sent", 2: "failed", 3: "sent"}
    assert server.requests == 1


# -- failures --------------------------------------------------------------------------------------


def test_throttling_fails_the_request(server: AliyunSmsServer, adapter: AliyunSms) -> None:
    server.mode = "throttle"
    with pytest.raises(ProviderError) as caught:
        adapter.send([message(1), message(2)])
    assert caught.value.kind == "throttled"
    assert not caught.value.maybe_sent
    assert "Throttling.User" in str(caught.value)
    assert not server.accepted


def test_an_unknown_key_is_an_auth_failure(server: AliyunSmsServer, adapter: AliyunSms) -> None:
    server.mode = "auth"
    with pytest.raises(ProviderError) as caught:
        adapter.send([message(1)])
    assert caught.value.kind == "auth"
    assert "InvalidAccessKeyId.NotFound" in str(caught.value)


def test_a_wrong_secret_fails_the_signature_check_and_never_shows(
    server: AliyunSmsServer,
) -> None:
    wrong = make(context(server, secret="the-wrong-secret-value"))
    caught = refusal(wrong, [message(1)])
    assert caught.value.kind == "auth"
    assert "SignatureDoesNotMatch" in str(caught.value)
    assert "the-wrong-secret-value" not in str(caught.value)
    assert KEY_SECRET not in str(caught.value)
    assert not server.accepted


def test_a_timeout_after_the_body_went_out_is_in_doubt_and_reconciles(
    server: AliyunSmsServer,
) -> None:
    slow = make(context(server, timeout=0.3))
    server.mode, server.hang_seconds = "timeout", 1.0
    try:
        with pytest.raises(ProviderError) as caught:
            slow.send([message(1, ref="ref-t"), message(2, ref="ref-t")])
        assert caught.value.kind == "transient"
        assert caught.value.maybe_sent
        server.mode = "ok"
        found = slow.reconcile([message(1, ref="ref-t"), message(2, ref="ref-t")])
    finally:
        slow.close()
    assert found == {1: "ref-t", 2: "ref-t"}


def test_an_unreadable_reply_is_in_doubt(server: AliyunSmsServer, adapter: AliyunSms) -> None:
    server.mode = "malformed"
    with pytest.raises(ProviderError) as caught:
        adapter.send([message(1)])
    assert caught.value.kind == "transient"
    assert caught.value.maybe_sent


def test_a_server_error_is_transient_and_not_in_doubt(
    server: AliyunSmsServer, adapter: AliyunSms
) -> None:
    server.mode = "error"
    with pytest.raises(ProviderError) as caught:
        adapter.send([message(1)])
    assert caught.value.kind == "transient"
    assert not caught.value.maybe_sent


def test_a_refused_connection_is_transient_and_not_in_doubt() -> None:
    gone = make(context(None))  # nothing listens on the discard port
    caught = refusal(gone, [message(1)])
    assert caught.value.kind == "transient"
    assert not caught.value.maybe_sent


def test_a_partly_refused_batch_fails_exactly_the_refused_touches(
    server: AliyunSmsServer, adapter: AliyunSms
) -> None:
    server.mode = "partial"  # every third number is refused
    results = adapter.send([message(n, ref="ref-p") for n in range(1, 7)])
    assert outcomes(results) == {
        1: "sent",
        2: "sent",
        3: "failed",
        4: "sent",
        5: "sent",
        6: "failed",
    }
    refused = {r.touch_id: r.error for r in results if r.outcome == "failed"}
    assert all(
        error and error.startswith("isv.MOBILE_NUMBER_ILLEGAL") for error in refused.values()
    )
    assert sorted(r["phone"] for r in server.records) == [
        "13800130001",
        "13800130002",
        "13800130004",
        "13800130005",
    ]
    assert set(server.accepted.values()) == {1}  # nothing went out twice


def test_partial_refusals_in_single_mode(server: AliyunSmsServer, single: AliyunSms) -> None:
    server.mode = "partial"
    results = [single.send([message(n, ref=f"r{n}")])[0] for n in range(1, 4)]
    assert [r.outcome for r in results] == ["sent", "sent", "failed"]


def test_a_number_over_its_daily_cap_waits_alone(
    server: AliyunSmsServer, adapter: AliyunSms
) -> None:
    server.refuse["13800130002"] = "isv.BUSINESS_LIMIT_CONTROL"
    results = adapter.send([message(n, ref="ref-c") for n in range(1, 4)])
    assert outcomes(results) == {1: "sent", 2: "retry", 3: "sent"}
    assert sum(server.accepted.values()) == 2


def test_a_refused_template_fails_the_whole_request(server: AliyunSmsServer) -> None:
    strict = AliyunSmsServer(KEY_ID, KEY_SECRET, templates={"SMS_200002": ["name", "date"]})
    strict.start()
    made = make(context(strict))
    try:
        results = made.send([message(1), message(2)])
    finally:
        made.close()
        strict.stop()
    assert {r.outcome for r in results} == {"failed"}
    assert all(r.error and r.error.startswith("isv.SMS_TEMPLATE_ILLEGAL") for r in results)


@pytest.mark.parametrize(
    ("code", "meaning"),
    [
        ("OK", "ok"),
        ("Throttling.User", "throttled"),
        ("isv.DAY_LIMIT_CONTROL", "throttled"),
        ("isv.BUSINESS_LIMIT_CONTROL", "retry"),
        ("InvalidAccessKeyId.NotFound", "auth"),
        ("SignatureDoesNotMatch", "auth"),
        ("isv.DENY_IP_RANGE", "auth"),
        ("Forbidden.RAM", "auth"),
        ("isv.MOBILE_NUMBER_ILLEGAL", "message"),
        ("isv.TEMPLATE_MISSING_PARAMETERS", "message"),
        ("isv.SMS_CONTENT_ILLEGAL", "message"),
        ("isv.SMS_TEMPLATE_ILLEGAL", "request"),
        ("isp.SYSTEM_ERROR", "transient"),
        ("InternalError", "transient"),
    ],
)
def test_codes_are_classified(code: str, meaning: str) -> None:
    assert classify(code) == meaning


# -- reconciliation --------------------------------------------------------------------------------


def test_reconcile_finds_what_was_accepted_and_not_what_was_not(
    server: AliyunSmsServer, adapter: AliyunSms
) -> None:
    adapter.send([message(1, ref="ref-a"), message(2, ref="ref-a")])
    never = message(3, ref="ref-never")
    other_ref = message(1, ref="ref-other")  # same number, another request
    assert adapter.reconcile([message(1, ref="ref-a"), message(2, ref="ref-a"), never]) == {
        1: "ref-a",
        2: "ref-a",
    }
    assert adapter.reconcile([other_ref]) == {}


def test_reconcile_after_single_sends(server: AliyunSmsServer, single: AliyunSms) -> None:
    single.send([message(7, ref="ref-7")])
    assert single.reconcile([message(7, ref="ref-7"), message(8, ref="ref-8")]) == {7: "ref-7"}


def test_reconcile_pages_through_query_send_details(
    server: AliyunSmsServer, single: AliyunSms
) -> None:
    for n in range(60):  # 60 earlier messages to one number: two pages of 50
        single.send([message(1, ref=f"old-{n}")])
    assert single.reconcile([message(1, ref="old-0")]) == {1: "old-0"}


# -- callbacks -------------------------------------------------------------------------------------


def test_the_callback_ack_is_what_aliyun_expects() -> None:
    assert json.loads(CALLBACK_ACK) == {"code": 0, "msg": "接收成功"}


def test_sms_reports_become_receipts() -> None:
    body = json.dumps(
        [
            {
                "phone_number": "13900000001",
                "send_time": "2017-01-01 11:12:13",
                "report_time": "2017-01-01 11:12:14",
                "success": True,
                "err_code": "DELIVERED",
                "err_msg": "用户接收成功",
                "sms_size": "1",
                "biz_id": "932702304080415357^0",
                "out_id": "ref-1",
            },
            {
                "phone_number": "13900000002",
                "send_time": "2017-01-01 23:59:00",
                "report_time": "2017-01-02 00:00:05",
                "success": False,
                "err_code": "MK:0001",
                "err_msg": "空号",
                "sms_size": "1",
                "biz_id": "932702304080415357^0",
                "out_id": "ref-1",
            },
        ],
        ensure_ascii=False,
    ).encode()
    delivered, failed = parse_report(body)
    assert delivered.provider_id == "932702304080415357^0"
    assert delivered.status == "delivered"
    assert delivered.address == "13900000001"
    assert delivered.key == "aliyun:report:932702304080415357^0:13900000001"
    assert delivered.at == dt.datetime(2017, 1, 1, 3, 12, 14, tzinfo=dt.UTC)
    assert delivered.detail is None
    assert failed.status == "failed"
    assert failed.detail == "MK:0001 空号"
    assert failed.at == dt.datetime(2017, 1, 1, 16, 0, 5, tzinfo=dt.UTC)  # 00:00:05 +08:00


def test_sms_up_becomes_inbound_replies() -> None:
    body = json.dumps(
        [
            {
                "phone_number": "13900000001",
                "send_time": "2017-09-01 00:00:00",
                "content": "TD",
                "sign_name": "某某汽车",
                "dest_code": "1234",
                "sequence_id": 1234567890,
            }
        ],
        ensure_ascii=False,
    ).encode()
    (reply,) = parse_up(body)
    assert (reply.address, reply.text, reply.channel) == ("13900000001", "TD", "sms")
    assert reply.key == "aliyun:up:1234567890"
    assert reply.at == dt.datetime(2017, 8, 31, 16, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"<html>", "not JSON"),
        (b"[1, 2]", "JSON array of objects"),
        (b'"report"', "JSON array of objects"),
        (b'[{"phone_number": "13900000001", "success": true}]', "no 'biz_id'"),
        (
            b'[{"phone_number": "1", "biz_id": "b", "success": "maybe", '
            b'"report_time": "2017-01-01 11:12:14"}]',
            "true/false 'success'",
        ),
        (
            b'[{"phone_number": "1", "biz_id": "b", "success": true, "report_time": "yesterday"}]',
            "expected yyyy-MM-dd HH:mm:ss",
        ),
    ],
)
def test_a_broken_report_body_is_an_input_error(body: bytes, says: str) -> None:
    with pytest.raises(InputError, match=says):
        parse_report(body)


def test_a_broken_up_body_is_an_input_error() -> None:
    with pytest.raises(InputError, match="no 'sequence_id'"):
        parse_up(b'[{"phone_number": "13900000001", "content": "TD"}]')
    with pytest.raises(InputError, match="not JSON"):
        parse_up(b"\xff\xfe")


# -- configuration ---------------------------------------------------------------------------------


def test_the_sign_name_is_required() -> None:
    with pytest.raises(ConfigError, match="needs the option sign_name"):
        make(context(None, sign_name=""))


def test_the_sign_name_may_be_written_with_brackets() -> None:
    made = make(context(None, sign_name="【某某汽车】"))
    made.close()
    assert made.sign_name == "某某汽车"


def test_a_missing_secret_names_its_variable() -> None:
    bare = AdapterContext(name="aliyun", options={"sign_name": "某某汽车"}, secrets={})
    with pytest.raises(ConfigError, match="BAOKE_ALIYUN_ACCESS_KEY_ID"):
        make(bare)


@pytest.mark.parametrize(
    ("option", "value"),
    [("templates", ["SMS_1"]), ("batch", "yes"), ("rate", 0), ("timeout", -1), ("endpoint", "x")],
)
def test_bad_options_are_config_errors(option: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=option):
        make(context(None, **{option: value}))
