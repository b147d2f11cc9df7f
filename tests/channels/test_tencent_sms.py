"""The Tencent Cloud SMS adapter against the loopback SMS API, over a real socket."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from tests.channels.support import outcomes, refusal, serve

from baoke.channels.loopback.tencent import TencentSmsServer
from baoke.channels.protocol import Adapter, AdapterContext, Message, ProviderError
from baoke.channels.tencent_sms import (
    CALLBACK_ACK,
    TencentSms,
    e164,
    make,
    parse_reply,
    parse_status,
    tc3_headers,
    tc3_sign,
)
from baoke.errors import ConfigError, InputError

SECRET_ID = "AKIDtestTencentSecretId0001"
SECRET_KEY = "tencent-test-secret-never-shown"
APP_ID = "1400006666"
TEMPLATE = "maintenance/reminder"
TEMPLATE_ID = "1110"


@pytest.fixture(scope="module")
def shared() -> Iterator[TencentSmsServer]:
    yield from serve(TencentSmsServer(SECRET_ID, SECRET_KEY, sdk_app_id=APP_ID))


@pytest.fixture
def server(shared: TencentSmsServer) -> TencentSmsServer:
    shared.reset()
    shared.hang_seconds = 5.0
    return shared


def context(
    server: TencentSmsServer | None, secret: str = SECRET_KEY, **options: Any
) -> AdapterContext:
    base: dict[str, Any] = {
        # Configuration tests need no server: nothing listens on the discard port.
        "endpoint": server.url if server else "http://127.0.0.1:9",
        "sdk_app_id": APP_ID,
        "sign_name": "某某汽车",
        "templates": {TEMPLATE: TEMPLATE_ID},
    }
    return AdapterContext(
        name="tencent",
        options={**base, **options},
        secrets={"BAOKE_TENCENT_SECRET_ID": SECRET_ID, "BAOKE_TENCENT_SECRET_KEY": secret},
    )


@pytest.fixture
def adapter(server: TencentSmsServer) -> Iterator[TencentSms]:
    made = make(context(server))
    yield made
    made.close()


@pytest.fixture
def single(server: TencentSmsServer) -> Iterator[TencentSms]:
    made = make(context(server, batch=False))
    yield made
    made.close()


def message(
    n: int,
    *,
    ref: str = "ref-1",
    template: str | None = TEMPLATE,
    params: dict[str, str] | None = None,
    **extra: Any,
) -> Message:
    return Message(
        touch_id=n,
        key=f"touch-{n}",
        channel="sms",
        customer_id=n,
        dealer_id=1,
        address=f"1850123{n:04d}",
        text="【某某汽车】您的爱车6月1日该保养了",
        playbook="maintenance",
        template=template,
        params={"date": "6月1日", "store": "望京店"} if params is None else params,
        send_ref=ref,
        **extra,
    )


# -- the signature ---------------------------------------------------------------------------------

# The worked example of Tencent Cloud's "签名方法 v3" (cloud.tencent.com/document/api/213/30654;
# the same text is in every product's API docs): DescribeInstances on cvm.tencentcloudapi.com,
# X-TC-Timestamp 1551113065 (2019-02-26 00:44:25 in UTC+8, so the UTC date 2019-02-25 scopes it).
DOC_PAYLOAD = (
    b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
)
DOC_CANONICAL_REQUEST = (
    "POST\n"
    "/\n"
    "\n"
    "content-type:application/json; charset=utf-8\n"
    "host:cvm.tencentcloudapi.com\n"
    "\n"
    "content-type;host\n"
    "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
)
DOC_STRING_TO_SIGN = (
    "TC3-HMAC-SHA256\n"
    "1551113065\n"
    "2019-02-25/cvm/tc3_request\n"
    "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
)
DOC_HEADERS = {"content-type": "application/json; charset=utf-8", "host": "cvm.tencentcloudapi.com"}


@pytest.mark.parametrize(
    ("secret_id", "secret_key", "signature"),
    [
        # The international edition's text (tencentcloud.com, "Signature v3"): key pair
        # AKID…EXAMPLE / Gu5t9xGARNpq86cd98joQYCN3EXAMPLE.
        (
            "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
            "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
            "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168",
        ),
        # The Chinese edition (cloud.tencent.com 213/30654) masks its demo key with asterisks
        # and signs with the masked strings as they are.
        (
            "AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******",
            "Gu5t9xGARNpq86cd98joQYCN3*******",
            "2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c",
        ),
    ],
)
def test_signature_reproduces_tencents_published_v3_example(
    secret_id: str, secret_key: str, signature: str
) -> None:
    signed = tc3_sign(
        secret_id=secret_id,
        secret_key=secret_key,
        service="cvm",
        headers=DOC_HEADERS,
        payload=DOC_PAYLOAD,
        timestamp=1551113065,
    )
    assert hashlib.sha256(DOC_PAYLOAD).hexdigest() == (
        "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
    )
    assert signed.canonical_request == DOC_CANONICAL_REQUEST
    assert signed.string_to_sign == DOC_STRING_TO_SIGN
    assert signed.signature == signature
    assert signed.authorization == (
        f"TC3-HMAC-SHA256 Credential={secret_id}/2019-02-25/cvm/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={signature}"
    )


def test_the_request_headers_carry_the_action_beside_the_signature() -> None:
    headers = tc3_headers(
        host="sms.tencentcloudapi.com",
        action="SendSms",
        payload=b"{}",
        secret_id="id",
        secret_key="key",
        timestamp=1551113065,
        region="ap-shanghai",
    )
    assert headers["x-tc-action"] == "SendSms"
    assert headers["x-tc-version"] == "2021-01-11"
    assert headers["x-tc-region"] == "ap-shanghai"
    assert headers["x-tc-timestamp"] == "1551113065"
    assert headers["authorization"].startswith(
        "TC3-HMAC-SHA256 Credential=id/2019-02-25/sms/tc3_request, SignedHeaders=content-type;host,"
    )


@pytest.mark.parametrize(
    ("address", "number"),
    [
        ("18501234444", "+8618501234444"),
        ("8618501234444", "+8618501234444"),
        ("008618501234444", "+8618501234444"),
        ("+8618501234444", "+8618501234444"),
    ],
)
def test_numbers_are_sent_in_e164(address: str, number: str) -> None:
    assert e164(address) == number


# -- sending ---------------------------------------------------------------------------------------


def test_the_adapter_implements_the_protocol(adapter: TencentSms, single: TencentSms) -> None:
    assert isinstance(adapter, Adapter)
    assert (adapter.name, adapter.channel, adapter.max_batch) == ("tencent", "sms", 200)
    assert single.max_batch == 1
    assert adapter.idempotent is False


def test_one_message(server: TencentSmsServer, single: TencentSms) -> None:
    results = single.send([message(1, ref="ref-one")])
    assert [r.outcome for r in results] == ["sent"]
    assert results[0].provider_id and results[0].provider_id.startswith("2640:")
    assert server.accepted == {f"18501230001|ref-one|{TEMPLATE_ID}": 1}
    (record,) = server.records
    assert record["phone"] == "18501230001"
    assert record["e164"] == "+8618501230001"
    assert record["template_code"] == TEMPLATE_ID
    assert record["params"] == ["6月1日", "望京店"]  # the params' own order
    assert record["session_context"] == "ref-one"
    assert record["sign_name"] == "某某汽车"
    assert record["serial_no"] == results[0].provider_id


def test_a_batch_with_one_parameter_set_is_one_request(
    server: TencentSmsServer, adapter: TencentSms
) -> None:
    results = adapter.send([message(n, ref="ref-b") for n in range(1, 6)])
    assert outcomes(results) == dict.fromkeys(range(1, 6), "sent")
    assert server.requests == 1
    assert len({r.provider_id for r in results}) == 5  # a SerialNo per number
    assert sum(server.accepted.values()) == 5


def test_personalised_messages_take_one_request_per_parameter_set(
    server: TencentSmsServer, adapter: TencentSms
) -> None:
    batch = [
        message(1, params={"name": "张三"}),
        message(2, params={"name": "李四"}),
        message(3, params={"name": "张三"}),
    ]
    results = adapter.send(batch)
    assert outcomes(results) == {1: "sent", 2: "sent", 3: "sent"}
    assert server.requests == 2
    assert {r["phone"]: r["params"] for r in server.records} == {
        "18501230001": ["张三"],
        "18501230002": ["李四"],
        "18501230003": ["张三"],
    }


def test_template_params_put_the_values_in_the_templates_order(server: TencentSmsServer) -> None:
    made = make(context(server, template_params={TEMPLATE: ["store", "date"]}))
    try:
        results = made.send([message(1)])
    finally:
        made.close()
    assert results[0].outcome == "sent"
    assert server.records[0]["params"] == ["望京店", "6月1日"]


def test_a_variable_the_message_lacks_fails_it(server: TencentSmsServer) -> None:
    made = make(context(server, template_params={TEMPLATE: ["name", "date"]}))
    try:
        results = made.send([message(1)])
    finally:
        made.close()
    assert results[0].outcome == "failed"
    assert results[0].error == f"template {TEMPLATE} needs the parameter name"
    assert server.requests == 0


def test_a_message_without_an_approved_template_fails_without_a_request(
    server: TencentSmsServer, adapter: TencentSms
) -> None:
    results = adapter.send([message(1, template="birthday/greeting")])
    assert results[0].outcome == "failed"
    assert results[0].error == "no approved Tencent template for birthday/greeting"
    assert server.requests == 0


def test_the_messages_own_template_code_is_the_fallback(
    server: TencentSmsServer, adapter: TencentSms
) -> None:
    results = adapter.send([message(1, template="birthday/greeting", template_code="2220")])
    assert results[0].outcome == "sent"
    assert server.records[0]["template_code"] == "2220"


def test_many_threads_share_one_adapter(server: TencentSmsServer, single: TencentSms) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        chunks = list(pool.map(lambda n: single.send([message(n, ref=f"r{n}")]), range(1, 121)))
    assert all(chunk[0].outcome == "sent" for chunk in chunks)
    assert len(server.accepted) == 120
    assert set(server.accepted.values()) == {1}


# -- failures --------------------------------------------------------------------------------------


def test_throttling_fails_the_request(server: TencentSmsServer, adapter: TencentSms) -> None:
    server.mode = "throttle"
    with pytest.raises(ProviderError) as caught:
        adapter.send([message(1), message(2)])
    assert caught.value.kind == "throttled"
    assert not caught.value.maybe_sent
    assert "RequestLimitExceeded" in str(caught.value)
    assert not server.accepted


def test_an_unknown_secret_id_is_an_auth_failure(
    server: TencentSmsServer, adapter: TencentSms
) -> None:
    server.mode = "auth"
    with pytest.raises(ProviderError) as caught:
        adapter.send([message(1)])
    assert caught.value.kind == "auth"
    assert "AuthFailure.SecretIdNotFound" in str(caught.value)


def test_a_wrong_key_fails_the_signature_check_and_never_shows(server: TencentSmsServer) -> None:
    wrong = make(context(server, secret="the-wrong-secret-value"))
    caught = refusal(wrong, [message(1)])
    assert caught.value.kind == "auth"
    assert "AuthFailure.SignatureFailure" in str(caught.value)
    assert "the-wrong-secret-value" not in str(caught.value)
    assert SECRET_KEY not in str(caught.value)
    assert not server.accepted


def test_a_timeout_after_the_body_went_out_is_in_doubt_and_reconciles(
    server: TencentSmsServer,
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
    serials = {r["phone"]: r["serial_no"] for r in server.records}
    assert found == {1: serials["18501230001"], 2: serials["18501230002"]}


def test_an_unreadable_reply_is_in_doubt(server: TencentSmsServer, adapter: TencentSms) -> None:
    server.mode = "malformed"
    with pytest.raises(ProviderError) as caught:
        adapter.send([message(1)])
    assert caught.value.kind == "transient"
    assert caught.value.maybe_sent


def test_a_server_error_is_transient_and_not_in_doubt(
    server: TencentSmsServer, adapter: TencentSms
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
    server: TencentSmsServer, adapter: TencentSms
) -> None:
    server.mode = "partial"  # every third number of a request is refused
    results = adapter.send([message(n, ref="ref-p") for n in range(1, 7)])
    assert outcomes(results) == {
        1: "sent",
        2: "sent",
        3: "failed",
        4: "sent",
        5: "sent",
        6: "failed",
    }
    refused = [r.error for r in results if r.outcome == "failed"]
    assert all(e and e.startswith("FailedOperation.PhoneNumberInBlacklist") for e in refused)
    assert server.requests == 1
    assert sorted(r["phone"] for r in server.records) == [
        "18501230001",
        "18501230002",
        "18501230004",
        "18501230005",
    ]


def test_a_number_over_its_limit_waits_alone(server: TencentSmsServer, adapter: TencentSms) -> None:
    server.refuse["18501230002"] = "LimitExceeded.PhoneNumberDailyLimit"
    results = adapter.send([message(n) for n in range(1, 4)])
    assert outcomes(results) == {1: "sent", 2: "retry", 3: "sent"}


def test_an_unapproved_template_fails_the_whole_request() -> None:
    strict = TencentSmsServer(SECRET_ID, SECRET_KEY, sdk_app_id=APP_ID, templates={"9999": 2})
    strict.start()
    made = make(context(strict))
    try:
        results = made.send([message(1), message(2)])
    finally:
        made.close()
        strict.stop()
    assert {r.outcome for r in results} == {"failed"}
    assert all(
        r.error and r.error.startswith("FailedOperation.TemplateIncorrectOrUnapproved")
        for r in results
    )


def test_a_wrong_app_id_is_an_auth_failure(server: TencentSmsServer) -> None:
    made = make(context(server, sdk_app_id="1400000000"))
    caught = refusal(made, [message(1)])
    assert caught.value.kind == "auth"


# -- reconciliation --------------------------------------------------------------------------------


def test_reconcile_finds_what_was_accepted_and_not_what_was_not(
    server: TencentSmsServer, adapter: TencentSms
) -> None:
    results = adapter.send([message(1, ref="ref-a"), message(2, ref="ref-a")])
    sent = {r.touch_id: r.provider_id for r in results}
    never = message(3, ref="ref-never")
    assert adapter.reconcile([message(1, ref="ref-a"), message(2, ref="ref-a"), never]) == sent
    assert adapter.reconcile([message(1, ref="ref-other")]) == {}


def test_reconcile_skips_refused_numbers(server: TencentSmsServer, adapter: TencentSms) -> None:
    server.mode = "partial"
    results = adapter.send([message(n, ref="ref-q") for n in range(1, 4)])
    server.mode = "ok"
    found = adapter.reconcile([message(n, ref="ref-q") for n in range(1, 4)])
    assert found == {r.touch_id: r.provider_id for r in results if r.outcome == "sent"}
    assert 3 not in found


# -- callbacks -------------------------------------------------------------------------------------


def test_the_callback_ack_is_what_tencent_expects() -> None:
    assert json.loads(CALLBACK_ACK) == {"result": 0, "errmsg": "OK"}


def test_status_callbacks_become_receipts() -> None:
    body = json.dumps(
        [
            {
                "user_receive_time": "2015-10-17 08:03:04",
                "nationcode": "86",
                "mobile": "13788888888",
                "report_status": "SUCCESS",
                "errmsg": "DELIVRD",
                "description": "用户短信送达成功",
                "sid": "2640:000000000000000000001",
            },
            {
                "user_receive_time": "2015-10-17 08:03:09",
                "nationcode": "86",
                "mobile": "13788888889",
                "report_status": "FAIL",
                "errmsg": "MK:0001",
                "description": "空号",
                "sid": "2640:000000000000000000002",
            },
        ],
        ensure_ascii=False,
    ).encode()
    delivered, failed = parse_status(body)
    assert delivered.provider_id == "2640:000000000000000000001"
    assert delivered.status == "delivered"
    assert delivered.address == "13788888888"
    assert delivered.key == "tencent:status:2640:000000000000000000001:SUCCESS"
    assert delivered.at == dt.datetime(2015, 10, 17, 0, 3, 4, tzinfo=dt.UTC)
    assert delivered.detail is None
    assert failed.status == "failed"
    assert failed.detail == "MK:0001 空号"
    assert failed.key.endswith(":FAIL")


def test_reply_callbacks_become_inbound_replies() -> None:
    body = json.dumps(
        {
            "extend": "",
            "mobile": "13788888888",
            "nationcode": "86",
            "sign": "某某汽车",
            "text": "TD",
            "time": 1457336869,
        },
        ensure_ascii=False,
    ).encode()
    (reply,) = parse_reply(body)
    assert (reply.address, reply.text, reply.channel) == ("13788888888", "TD", "sms")
    assert reply.at == dt.datetime(2016, 3, 7, 7, 47, 49, tzinfo=dt.UTC)
    digest = hashlib.sha256(b"TD").hexdigest()[:16]
    assert reply.key == f"tencent:reply:13788888888:1457336869:{digest}"
    # The same reply pushed again has the same key; another text another.
    assert parse_reply(body)[0].key == reply.key
    other = parse_reply(body.replace(b'"TD"', b'"T"'))[0]
    assert other.key != reply.key


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{oops", "not JSON"),
        (b"[1]", "JSON object or array of objects"),
        (b'[{"mobile": "13788888888", "report_status": "SUCCESS"}]', "no 'sid'"),
        (
            b'[{"sid": "s", "mobile": "1", "report_status": "LOST", '
            b'"user_receive_time": "2015-10-17 08:03:04"}]',
            "expected SUCCESS or FAIL",
        ),
        (
            b'[{"sid": "s", "mobile": "1", "report_status": "FAIL", "user_receive_time": "now"}]',
            "expected yyyy-MM-dd HH:mm:ss",
        ),
    ],
)
def test_a_broken_status_body_is_an_input_error(body: bytes, says: str) -> None:
    with pytest.raises(InputError, match=says):
        parse_status(body)


def test_a_broken_reply_body_is_an_input_error() -> None:
    with pytest.raises(InputError, match="no 'text'"):
        parse_reply(b'{"mobile": "13788888888", "time": 1457336869}')
    with pytest.raises(InputError, match="Unix 'time'"):
        parse_reply(b'{"mobile": "13788888888", "text": "TD"}')
    with pytest.raises(InputError, match="expected Unix seconds"):
        parse_reply(b'{"mobile": "13788888888", "text": "TD", "time": "soon"}')


# -- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["sdk_app_id", "sign_name"])
def test_required_options(option: str) -> None:
    with pytest.raises(ConfigError, match=f"needs the option {option}"):
        make(context(None, **{option: ""}))


def test_a_numeric_app_id_is_accepted() -> None:
    made = make(context(None, sdk_app_id=1400006666))
    made.close()
    assert made.sdk_app_id == "1400006666"
    assert made.region == "ap-guangzhou"


def test_a_missing_secret_names_its_variable() -> None:
    bare = AdapterContext(
        name="tencent", options={"sdk_app_id": APP_ID, "sign_name": "某某汽车"}, secrets={}
    )
    with pytest.raises(ConfigError, match="BAOKE_TENCENT_SECRET_ID"):
        make(bare)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("templates", ["1110"]),
        ("template_params", {TEMPLATE: "date"}),
        ("batch", 1),
        ("rate", "fast"),
        ("reconcile_hours", 500),
        ("endpoint", "ftp://x"),
    ],
)
def test_bad_options_are_config_errors(option: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=option):
        make(context(None, **{option: value}))
