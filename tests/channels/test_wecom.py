"""The WeCom adapter against the loopback qyapi server, over real sockets.

Mass-send tasks, fail_list, throttling, auth failures, token expiry and single-flight refresh,
timeouts, malformed replies, welcome messages, result polling, transfers, and that neither the
access token nor the secret ever shows in an error or a log line.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from tests.channels.support import serve

from baoke.channels.loopback.base import Request, Response
from baoke.channels.loopback.wecom import (
    CORP_ID,
    SECRET,
    WecomLoopback,
    contact_event_xml,
    encrypted_callback,
)
from baoke.channels.protocol import Adapter, AdapterContext, Message, ProviderError
from baoke.channels.wecom import AccessTokens, WecomAdapter, WecomApiError, make, send_welcome
from baoke.channels.wecom_events import parse_callback
from baoke.errors import ConfigError

CALLBACK_TOKEN = "cbToken123"
CALLBACK_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"


@pytest.fixture
def server() -> Iterator[WecomLoopback]:
    yield from serve(WecomLoopback())


def _context(url: str, **options: Any) -> AdapterContext:
    secrets = options.pop("secrets", None)
    return AdapterContext(
        name="wecom",
        options={"corp_id": CORP_ID, "endpoint": url, "rate": 1000, "timeout": 2, **options},
        secrets=secrets if secrets is not None else {"BAOKE_WECOM_SECRET": SECRET},
    )


@pytest.fixture
def adapter(server: WecomLoopback) -> Iterator[WecomAdapter]:
    made = make(_context(server.url))
    yield made
    made.close()


_touches = iter(range(1, 10**6))


def _message(address: str, text: str, sender: str | None = "zhangsan") -> Message:
    touch = next(_touches)
    return Message(
        touch_id=touch,
        key=f"touch:{touch}",
        channel="wecom",
        customer_id=touch,
        dealer_id=1,
        address=address,
        text=text,
        sender=sender,
    )


def _contacts(server: WecomLoopback, count: int, userid: str = "zhangsan") -> list[str]:
    ids = [f"wmEXT{userid}{i:04d}" for i in range(count)]
    for external in ids:
        server.add_contact(external, userid)
    return ids


def _secrets_absent(server: WecomLoopback, text: str) -> None:
    assert SECRET not in text
    for token in server.tokens:
        assert token not in text


# -- factory and protocol ----------------------------------------------------------------------


def test_make_is_an_adapter(adapter: WecomAdapter) -> None:
    assert isinstance(adapter, Adapter)
    assert (adapter.name, adapter.channel) == ("wecom", "wecom")
    assert adapter.max_batch == 200
    assert adapter.idempotent is False
    assert adapter.reconcile([_message("wmX", "hi")]) is None
    assert SECRET not in repr(adapter)


def test_make_defaults() -> None:
    made = make(
        AdapterContext(
            name="wecom", options={"corp_id": CORP_ID}, secrets={"BAOKE_WECOM_SECRET": "s"}
        )
    )
    assert made.endpoint == "https://qyapi.weixin.qq.com"
    assert (made.rate, made.max_batch) == (20.0, 200)
    made.close()


@pytest.mark.parametrize(
    ("options", "secrets", "needle"),
    [
        ({}, {"BAOKE_WECOM_SECRET": "s"}, "corp_id"),
        ({"corp_id": CORP_ID}, {}, "BAOKE_WECOM_SECRET"),
        ({"corp_id": CORP_ID, "rate": 0}, {"BAOKE_WECOM_SECRET": "s"}, "rate"),
        ({"corp_id": CORP_ID, "max_batch": 2.5}, {"BAOKE_WECOM_SECRET": "s"}, "max_batch"),
        ({"corp_id": CORP_ID, "endpoint": "qyapi"}, {"BAOKE_WECOM_SECRET": "s"}, "endpoint"),
        ({"corp_id": CORP_ID, "welcome": ["x"]}, {"BAOKE_WECOM_SECRET": "s"}, "welcome"),
    ],
)
def test_make_refuses_bad_config(
    options: dict[str, Any], secrets: dict[str, str], needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle):
        make(AdapterContext(name="wecom", options=options, secrets=secrets))


# -- send --------------------------------------------------------------------------------------


def test_send_one_task_per_sender_and_text(server: WecomLoopback, adapter: WecomAdapter) -> None:
    a, b, c = _contacts(server, 3)
    (d,) = _contacts(server, 1, userid="lisi")
    batch = [
        _message(a, "张先生，您的爱车该保养了"),
        _message(b, "李女士，您的爱车该保养了"),
        _message(c, "张先生，您的爱车该保养了"),  # same sender and text as the first
        _message(d, "王先生，您的爱车该保养了", sender="lisi"),
        _message("wmEXTnobody", "hi", sender=None),
    ]
    results = {r.touch_id: r for r in adapter.send(batch)}
    assert len(results) == 5
    first, second, third, fourth, fifth = (results[m.touch_id] for m in batch)
    assert [first.outcome, second.outcome, third.outcome, fourth.outcome] == ["sent"] * 4
    assert first.provider_id == third.provider_id  # one task for both
    assert len({first.provider_id, second.provider_id, fourth.provider_id}) == 3
    assert (fifth.outcome, fifth.error) == ("failed", "no WeCom sender")
    assert server.calls["externalcontact/add_msg_template"] == 3
    assert server.gettoken_calls == 1
    assert server.accepted[f"zhangsan:{a}:张先生，您的爱车该保养了"] == 1
    assert server.accepted[f"lisi:{d}:王先生，您的爱车该保养了"] == 1
    task = server.tasks[str(first.provider_id)]
    assert (task["sender"], sorted(task["status"])) == ("zhangsan", sorted([a, c]))


def test_fail_list_fails_those_customers(server: WecomLoopback, adapter: WecomAdapter) -> None:
    (known,) = _contacts(server, 1)
    stranger = "wmEXTnotacontact"
    batch = [_message(known, "同一条"), _message(stranger, "同一条")]
    results = {r.touch_id: r for r in adapter.send(batch)}
    assert results[batch[0].touch_id].outcome == "sent"
    failed = results[batch[1].touch_id]
    assert failed.outcome == "failed"
    assert failed.error is not None and "fail_list" in failed.error


def test_partial_mode(server: WecomLoopback, adapter: WecomAdapter) -> None:
    server.mode = "partial"
    ids = _contacts(server, 4)
    batch = [_message(x, "群发内容") for x in ids]
    outcomes = [r.outcome for r in sorted(adapter.send(batch), key=lambda r: r.touch_id)]
    assert outcomes == ["sent", "failed", "sent", "failed"]


def test_request_error_fails_only_its_group(server: WecomLoopback, adapter: WecomAdapter) -> None:
    a, b = _contacts(server, 2)
    batch = [_message(a, ""), _message(b, "有内容")]  # an empty text: errcode 41041
    results = {r.touch_id: r for r in adapter.send(batch)}
    bad, good = results[batch[0].touch_id], results[batch[1].touch_id]
    assert bad.outcome == "failed" and bad.error is not None and "41041" in bad.error
    assert good.outcome == "sent"


def test_throttled(server: WecomLoopback, adapter: WecomAdapter) -> None:
    server.mode = "throttle"
    (a,) = _contacts(server, 1)
    with pytest.raises(ProviderError) as caught:
        adapter.send([_message(a, "hi")])
    assert caught.value.kind == "throttled"
    assert caught.value.maybe_sent is False
    assert "45009" in str(caught.value)


@pytest.mark.parametrize("errcode", [40001, 60020])
def test_auth_failure(server: WecomLoopback, adapter: WecomAdapter, errcode: int) -> None:
    server.mode = "auth"
    server.auth_errcode = errcode
    (a,) = _contacts(server, 1)
    with pytest.raises(ProviderError) as caught:
        adapter.send([_message(a, "hi")])
    assert caught.value.kind == "auth"
    assert str(errcode) in str(caught.value)
    _secrets_absent(server, str(caught.value))


def test_wrong_secret_is_auth_and_not_quoted(server: WecomLoopback) -> None:
    wrong = "wrong-secret-do-not-print"
    made = make(_context(server.url, secrets={"BAOKE_WECOM_SECRET": wrong}))
    (a,) = _contacts(server, 1)
    with pytest.raises(ProviderError) as caught:
        made.send([_message(a, "hi")])
    made.close()
    assert caught.value.kind == "auth"
    assert wrong not in str(caught.value)


def test_expired_token_is_fetched_again_once(server: WecomLoopback, adapter: WecomAdapter) -> None:
    (a,) = _contacts(server, 1)
    assert adapter.send([_message(a, "one")])[0].outcome == "sent"
    server.mode = "expired"  # the next call answers 42001 and retires the token
    result = adapter.send([_message(a, "two")])[0]
    assert result.outcome == "sent"
    assert server.gettoken_calls == 2
    assert server.calls["externalcontact/add_msg_template"] == 3  # one refused, one repeated
    assert server.accepted[f"zhangsan:{a}:two"] == 1


def test_token_refused_twice_is_auth(server: WecomLoopback) -> None:
    class Refusing(WecomLoopback):
        def answer(self, request: Request) -> Response:
            if request.path.endswith("add_msg_template"):
                return Response(200, b'{"errcode": 40014, "errmsg": "invalid access_token"}')
            return super().answer(request)

    for fake in serve(Refusing()):
        made = make(_context(fake.url))
        with pytest.raises(ProviderError) as caught:
            made.send([_message("wmX", "hi")])
        made.close()
        assert caught.value.kind == "auth"
        assert fake.gettoken_calls == 2  # fetched again once, not in a loop


def test_one_gettoken_for_eight_threads(server: WecomLoopback, adapter: WecomAdapter) -> None:
    ids = _contacts(server, 16)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker(external: str) -> None:
        barrier.wait()
        result = adapter.send([_message(external, f"hello {external}")])
        with lock:
            outcomes.extend(r.outcome for r in result)

    def run(batch: list[str]) -> None:
        threads = [threading.Thread(target=worker, args=(x,)) for x in batch]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    run(ids[:8])
    assert outcomes == ["sent"] * 8
    assert server.gettoken_calls == 1
    # WeCom retires the token early: eight threads see 42001 with it, one fetches a new one.
    server.expire_tokens()
    run(ids[8:])
    assert outcomes == ["sent"] * 16
    assert server.gettoken_calls == 2


def test_token_kept_until_five_minutes_before_expiry(server: WecomLoopback) -> None:
    now = [1000.0]
    made = WecomAdapter(
        CORP_ID,
        SECRET,
        endpoint=server.url,
        rate=1000,
        clock=lambda: now[0],
        sleep=lambda _s: None,
    )
    (a,) = _contacts(server, 1)
    made.send([_message(a, "1")])
    now[0] += 7200 - 301
    made.send([_message(a, "2")])
    assert server.gettoken_calls == 1
    now[0] += 2  # inside the last five minutes
    made.send([_message(a, "3")])
    assert server.gettoken_calls == 2
    made.close()


def test_short_lived_tokens_are_kept_half_their_life() -> None:
    now = [0.0]
    tokens = AccessTokens(clock=lambda: now[0])
    fetched: list[int] = []

    def fetch() -> tuple[str, int]:
        fetched.append(1)
        return f"t{len(fetched)}", 60

    assert tokens.get("corp", "s", fetch) == "t1"
    now[0] = 29
    assert tokens.get("corp", "s", fetch) == "t1"
    now[0] = 31
    assert tokens.get("corp", "s", fetch) == "t2"
    # one token per (corp, secret)
    assert tokens.get("corp", "other", fetch) == "t3"
    tokens.invalidate("corp", "s", "stale")  # not the current one: kept
    assert tokens.get("corp", "s", fetch) == "t2"
    tokens.invalidate("corp", "s", "t2")
    assert tokens.get("corp", "s", fetch) == "t4"


def test_timeout_may_have_sent(server: WecomLoopback) -> None:
    made = make(_context(server.url, timeout=0.3))
    made.send([_message("wmX", "warm the token")])  # fetch the token before the hang
    server.mode = "timeout"
    server.hang_seconds = 1.5
    with pytest.raises(ProviderError) as caught:
        made.send([_message("wmX", "hi")])
    made.close()
    assert caught.value.kind == "transient"
    assert caught.value.maybe_sent is True


def test_malformed_reply_may_have_sent(server: WecomLoopback, adapter: WecomAdapter) -> None:
    server.mode = "malformed"
    with pytest.raises(ProviderError) as caught:
        adapter.send([_message("wmX", "hi")])
    assert (caught.value.kind, caught.value.maybe_sent) == ("transient", True)


def test_http_500_is_transient_and_not_sent(server: WecomLoopback, adapter: WecomAdapter) -> None:
    server.mode = "error"
    with pytest.raises(ProviderError) as caught:
        adapter.send([_message("wmX", "hi")])
    assert (caught.value.kind, caught.value.maybe_sent) == ("transient", False)


def test_connection_refused_is_transient() -> None:
    dead = WecomLoopback().start()
    url = dead.url
    dead.stop()
    made = make(_context(url))
    with pytest.raises(ProviderError) as caught:
        made.send([_message("wmX", "hi")])
    made.close()
    assert (caught.value.kind, caught.value.maybe_sent) == ("transient", False)


class _FailsAfterFirstTask(WecomLoopback):
    """Accepts the first mass send, then answers the others with ``failure``."""

    def __init__(self, failure: str) -> None:
        super().__init__()
        self.failure = failure

    def answer(self, request: Request) -> Response:
        if request.path.endswith("add_msg_template") and self.tasks:
            if self.failure == "throttle":
                return Response(200, b'{"errcode": 45009, "errmsg": "api freq out of limit"}')
            return Response(200, b"<html>gateway</html>", "text/html")
        return super().answer(request)


@pytest.mark.parametrize("failure", ["throttle", "malformed"])
def test_later_request_failure_keeps_earlier_tasks(failure: str) -> None:
    for fake in serve(_FailsAfterFirstTask(failure)):
        ids = _contacts(fake, 3)
        made = make(_context(fake.url))
        batch = [_message(x, f"text {x}") for x in ids]
        results = {r.touch_id: r for r in made.send(batch)}
        made.close()
        first, second, third = (results[m.touch_id] for m in batch)
        assert first.outcome == "sent"
        if failure == "throttle":
            assert second.outcome == "retry"
        else:
            # the second task may exist: in doubt, not repeated blind
            assert second.outcome == "doubt"
            assert second.error is not None and "may exist" in second.error
        assert third.outcome == "retry"
        assert len(fake.tasks) == 1


def test_token_never_logged(
    server: WecomLoopback, adapter: WecomAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    (a,) = _contacts(server, 1)
    adapter.send([_message(a, "hi")])
    server.mode = "expired"
    adapter.send([_message(a, "again")])
    assert "HTTP Request" in caplog.text  # httpx did log the requests …
    assert "access_token=***" in caplog.text  # … with the token blanked
    _secrets_absent(server, caplog.text)


# -- welcome messages --------------------------------------------------------------------------


def test_welcome_once_then_already(server: WecomLoopback, adapter: WecomAdapter) -> None:
    assert adapter.send_welcome("WELCOME1", "您好，我是您的专属顾问") == "sent"
    assert send_welcome(adapter, "WELCOME1", "您好") == "already"  # 41051
    assert server.accepted["welcome:WELCOME1"] == 1
    assert server.records[-1]["text"] == "您好，我是您的专属顾问"


def test_welcome_being_distributed_is_retryable(
    server: WecomLoopback, adapter: WecomAdapter
) -> None:
    server.busy_welcome_codes.add("BUSY")
    with pytest.raises(WecomApiError) as caught:
        adapter.send_welcome("BUSY", "hi")
    assert (caught.value.kind, caught.value.errcode) == ("transient", 41096)
    server.busy_welcome_codes.clear()
    assert adapter.send_welcome("BUSY", "hi") == "sent"


def test_welcome_text_by_state(server: WecomLoopback) -> None:
    made = make(
        _context(server.url, welcome={"showroom": "欢迎到店", "default": "您好，我是您的顾问"})
    )
    assert made.welcome_text("showroom") == "欢迎到店"
    assert made.welcome_text("invoice_qr") == "您好，我是您的顾问"
    assert made.welcome_text(None) == "您好，我是您的顾问"
    made.close()
    bare = make(_context(server.url))
    assert bare.welcome_text("showroom") is None
    bare.close()


def test_welcome_within_its_window_from_a_callback(
    server: WecomLoopback,
) -> None:
    """The add callback, decrypted with the adapter's callback secrets, gives the code."""
    made = make(
        _context(
            server.url,
            welcome={"showroom": "欢迎光临杭州西湖店"},
            secrets={
                "BAOKE_WECOM_SECRET": SECRET,
                "BAOKE_WECOM_TOKEN": CALLBACK_TOKEN,
                "BAOKE_WECOM_AES_KEY": CALLBACK_KEY,
            },
        )
    )
    crypto = made.callback_crypto()
    plain = contact_event_xml(
        "add_external_contact",
        "zhangsan",
        "wmEXT1",
        create_time=1_780_000_000,
        state="showroom",
        welcome_code="CODE-1",
    )
    query, body = encrypted_callback(crypto, plain)
    event = parse_callback(
        crypto.decrypt(query["msg_signature"], query["timestamp"], query["nonce"], body.decode())
    )
    assert event is not None and event.welcome_code == "CODE-1"
    text = made.welcome_text(event.state)
    assert text is not None
    assert made.send_welcome(event.welcome_code, text) == "sent"
    assert server.records[-1] == {"welcome_code": "CODE-1", "text": "欢迎光临杭州西湖店"}
    made.close()


def test_callback_secrets_are_read_lazily(server: WecomLoopback, adapter: WecomAdapter) -> None:
    (a,) = _contacts(server, 1)
    assert adapter.send([_message(a, "hi")])[0].outcome == "sent"  # no callback secrets needed
    with pytest.raises(ConfigError, match="BAOKE_WECOM_TOKEN"):
        adapter.callback_crypto()


# -- results -----------------------------------------------------------------------------------


def test_poll_results(server: WecomLoopback, adapter: WecomAdapter) -> None:
    server.result_page = 2  # make the client follow next_cursor
    ids = _contacts(server, 5)
    results = adapter.send([_message(x, "同一条群发") for x in ids])
    msgid = str(results[0].provider_id)
    server.set_result(msgid, ids[1], 2)  # no longer a friend
    server.set_result(msgid, ids[2], 3)  # already got another mass message
    server.set_result(msgid, ids[3], 0)  # not confirmed yet
    receipts = {r.address: r for r in adapter.poll_results(msgid, "zhangsan")}
    assert set(receipts) == {ids[0], ids[1], ids[2], ids[4]}
    assert receipts[ids[0]].status == "delivered"
    assert receipts[ids[1]].status == "failed"
    assert receipts[ids[2]].status == "failed"
    assert receipts[ids[2]].detail is not None and "cap" in receipts[ids[2]].detail
    assert receipts[ids[0]].key == f"wecom:result:{msgid}:{ids[0]}"
    assert receipts[ids[0]].provider_id == msgid
    assert receipts[ids[0]].at.tzinfo is not None
    # polling again gives the same keys (idempotent receipts)
    again = {r.key for r in adapter.poll_results(msgid, "zhangsan")}
    assert again == {r.key for r in receipts.values()}


def test_poll_results_of_unknown_task(server: WecomLoopback, adapter: WecomAdapter) -> None:
    with pytest.raises(WecomApiError) as caught:
        adapter.poll_results("msgNOPE", "zhangsan")
    assert caught.value.kind == "permanent"


# -- contacts and transfers --------------------------------------------------------------------


def test_remark_mobiles(server: WecomLoopback, adapter: WecomAdapter) -> None:
    server.add_contact("wmEXT1", "lisi", remark_mobiles=("13900000002",))
    server.add_contact("wmEXT1", "zhangsan", remark_mobiles=("138 0000 0001", "13900000002"))
    assert adapter.remark_mobiles("wmEXT1", "zhangsan") == ["138 0000 0001", "13900000002"]
    assert adapter.remark_mobiles("wmEXTunknown", "zhangsan") == []


def test_transfer_resigned_in_chunks(server: WecomLoopback, adapter: WecomAdapter) -> None:
    ids = _contacts(server, 249, userid="departed")
    stranger = "wmEXTstranger"
    outcome = adapter.transfer_resigned("departed", "lisi", [*ids, stranger])
    assert len(outcome) == 250
    assert {outcome[x] for x in ids} == {0}
    assert outcome[stranger] == 40096
    assert server.calls["externalcontact/resigned/transfer_customer"] == 3  # 100 + 100 + 50
    assert all(len(t["external_userid"]) <= 100 for t in server.transfers)
    assert server.followers(ids[0]) == ["lisi"]


def test_transfer_in_service_with_message(server: WecomLoopback, adapter: WecomAdapter) -> None:
    ids = _contacts(server, 3)
    outcome = adapter.transfer_in_service("zhangsan", "lisi", ids, "您好，之后由李顾问为您服务")
    assert outcome == dict.fromkeys(ids, 0)
    assert server.calls["externalcontact/transfer_customer"] == 1
    assert server.transfers[0]["transfer_success_msg"] == "您好，之后由李顾问为您服务"


def test_transfer_stops_when_throttled(server: WecomLoopback) -> None:
    class ThrottlesSecondChunk(WecomLoopback):
        refused = 0

        def answer(self, request: Request) -> Response:
            if request.path.endswith("transfer_customer") and self.transfers:
                self.refused += 1
                return Response(200, b'{"errcode": 45009, "errmsg": "api freq out of limit"}')
            return super().answer(request)

    for fake in serve(ThrottlesSecondChunk()):
        ids = _contacts(fake, 250, userid="departed")
        made = make(_context(fake.url))
        outcome = made.transfer_resigned("departed", "lisi", ids)
        made.close()
        assert [outcome[x] for x in ids[:100]] == [0] * 100
        assert {outcome[x] for x in ids[100:]} == {45009}
        # throttled: the third chunk was not tried
        assert (len(fake.transfers), fake.refused) == (1, 1)
