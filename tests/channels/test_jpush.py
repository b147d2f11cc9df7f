"""The JPush adapter against the loopback JPush, over a real socket."""

from __future__ import annotations

import base64
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from tests.channels.support import refusal, serve

from baoke.channels.jpush import JPushAdapter, make, sendno
from baoke.channels.loopback.base import Request, Response
from baoke.channels.loopback.jpush import JPushServer
from baoke.channels.protocol import Adapter, AdapterContext, Message, ProviderError
from baoke.errors import ConfigError

APP_KEY = "7d431e42dfa6a6d693ac2d04"
MASTER_SECRET = "5e987ac6d2e04d95a9d8f0d1-master"


def message(customer_id: int, **changes: Any) -> Message:
    fields: dict[str, Any] = {
        "touch_id": 500 + customer_id,
        "key": f"touch-{customer_id}",
        "channel": "push",
        "customer_id": customer_id,
        "dealer_id": 3,
        "address": f"c{customer_id}",
        "text": f"您的爱车（客户{customer_id}）已到 5000 公里保养时间，点此预约。",
        "subject": "保养提醒",
        "marketing": False,
    }
    fields.update(changes)
    return Message(**fields)


@pytest.fixture(scope="module")
def shared() -> Iterator[JPushServer]:
    # One server for the module: stopping one waits out serve_forever's poll interval.
    yield from serve(JPushServer(APP_KEY, MASTER_SECRET))


@pytest.fixture
def server(shared: JPushServer) -> JPushServer:
    shared.reset()
    return shared


def adapter_for(server: JPushServer, secret: str = MASTER_SECRET, **options: Any) -> JPushAdapter:
    context = AdapterContext(
        name="jpush",
        options={"endpoint": server.url, "report_endpoint": server.url, **options},
        secrets={"BAOKE_JPUSH_APP_KEY": APP_KEY, "BAOKE_JPUSH_MASTER_SECRET": secret},
    )
    return make(context)


def test_success_pushes_a_service_notification(server: JPushServer) -> None:
    adapter = adapter_for(server, time_to_live=3600, apns_production=False)
    assert isinstance(adapter, Adapter)
    assert (adapter.channel, adapter.max_batch, adapter.rate, adapter.idempotent) == (
        "push",
        1,
        10.0,
        False,
    )
    results = adapter.send([message(42)])
    adapter.close()

    assert len(results) == 1
    assert results[0].outcome == "sent" and results[0].touch_id == 542
    assert results[0].provider_id == server.records[0]["msg_id"]
    assert server.accepted == {"touch-42": 1}

    body = server.pushes[0]
    assert body["platform"] == "all"
    assert body["audience"] == {"alias": ["c42"]}
    note = body["notification"]
    text = "您的爱车（客户42）已到 5000 公里保养时间，点此预约。"
    assert note["android"]["alert"] == text and note["android"]["title"] == "保养提醒"
    assert note["android"]["extras"] == {"touch_key": "touch-42"}
    assert note["ios"]["alert"] == {"title": "保养提醒", "body": text}
    assert note["hmos"]["alert"] == text and note["hmos"]["title"] == "保养提醒"
    assert note["hmos"]["intent"] == {"url": "action.system.home"}
    options = body["options"]
    assert options["classification"] == 1
    assert options["third_party_channel"]["vivo"] == {"classification": 1}
    assert options["sendno"] == sendno(542) == 542
    assert options["time_to_live"] == 3600
    assert options["apns_production"] is False


def test_marketing_is_classified_as_marketing_everywhere(server: JPushServer) -> None:
    adapter = adapter_for(
        server,
        android_channel_id="service",
        android_marketing_channel_id="promo",
        xiaomi_channel_id="138397",
        xiaomi_marketing_channel_id="138398",
        huawei_category="DEVICE_REMINDER",
        hmos_category="DEVICE_REMINDER",
    )
    adapter.send([message(1, marketing=True, subject=None, key="m1")])
    adapter.send([message(2, key="s2")])
    adapter.close()
    marketing, service = server.pushes
    assert marketing["options"]["classification"] == 0
    assert marketing["options"]["third_party_channel"] == {
        "vivo": {"classification": 0},
        "xiaomi": {"channel_id": "138398"},
        "huawei": {"category": "MARKETING"},
    }
    assert marketing["notification"]["android"]["channel_id"] == "promo"
    assert marketing["notification"]["hmos"]["category"] == "MARKETING"
    assert "title" not in marketing["notification"]["android"]  # no subject, no title option
    assert service["options"]["third_party_channel"] == {
        "vivo": {"classification": 1},
        "xiaomi": {"channel_id": "138397"},
        "huawei": {"category": "DEVICE_REMINDER"},
    }
    assert service["notification"]["android"]["channel_id"] == "service"
    assert service["notification"]["hmos"]["category"] == "DEVICE_REMINDER"


def test_title_option_stands_in_for_a_missing_subject(server: JPushServer) -> None:
    adapter = adapter_for(server, title="星辰汽车")
    adapter.send([message(5, subject=None)])
    adapter.close()
    note = server.pushes[0]["notification"]
    assert note["android"]["title"] == "星辰汽车"
    assert note["ios"]["alert"]["title"] == "星辰汽车"
    assert note["hmos"]["category"] == "MARKETING"  # the safe default without approval


def test_basic_auth_carries_app_key_and_master_secret(server: JPushServer) -> None:
    seen: list[str] = []

    class Recording(JPushServer):
        def answer(self, request: Request) -> Response:
            seen.append(request.headers.get("authorization", ""))
            return super().answer(request)

    with Recording(APP_KEY, MASTER_SECRET) as fake:
        adapter = adapter_for(fake)  # type: ignore[arg-type]
        adapter.send([message(7)])
        adapter.close()
    expected = base64.b64encode(f"{APP_KEY}:{MASTER_SECRET}".encode()).decode()
    assert seen == [f"Basic {expected}"]


def test_throttling_raises_throttled(server: JPushServer) -> None:
    server.mode = "throttle"
    adapter = adapter_for(server)
    caught = refusal(adapter, [message(1)])
    assert caught.value.kind == "throttled" and not caught.value.maybe_sent
    assert "2002" in str(caught.value)


def test_auth_failure_raises_auth_without_the_secret(server: JPushServer) -> None:
    adapter = adapter_for(server, secret="wrong-master-secret")
    caught = refusal(adapter, [message(1)])
    assert caught.value.kind == "auth"
    assert "wrong-master-secret" not in str(caught.value)
    assert not server.accepted


def test_timeout_is_transient_and_maybe_sent(server: JPushServer) -> None:
    server.mode = "timeout"
    server.hang_seconds = 1.5
    adapter = adapter_for(server, timeout=0.3)
    caught = refusal(adapter, [message(1)])
    assert caught.value.kind == "transient" and caught.value.maybe_sent
    assert server.accepted == {"touch-1": 1}  # it did reach the phone: do not resend blindly
    assert adapter.reconcile([message(1)]) is None


def test_malformed_reply_is_transient_and_maybe_sent(server: JPushServer) -> None:
    server.mode = "malformed"
    adapter = adapter_for(server)
    caught = refusal(adapter, [message(1)])
    assert caught.value.kind == "transient" and caught.value.maybe_sent


def test_server_error_is_transient(server: JPushServer) -> None:
    server.mode = "error"
    adapter = adapter_for(server)
    caught = refusal(adapter, [message(1)])
    assert caught.value.kind == "transient" and not caught.value.maybe_sent


def test_connection_refused_is_transient_not_maybe_sent() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    adapter = make(
        AdapterContext(
            name="jpush",
            options={"endpoint": f"http://127.0.0.1:{port}"},
            secrets={"BAOKE_JPUSH_APP_KEY": APP_KEY, "BAOKE_JPUSH_MASTER_SECRET": "x"},
        )
    )
    caught = refusal(adapter, [message(1)])
    assert caught.value.kind == "transient" and not caught.value.maybe_sent


def test_an_unbound_alias_fails_that_message_only(server: JPushServer) -> None:
    server.mode = "partial"  # c3, c6 … have no device
    adapter = adapter_for(server, max_batch=10)
    results = adapter.send([message(i) for i in range(1, 7)])
    adapter.close()
    outcomes = {r.touch_id - 500: r.outcome for r in results}
    assert outcomes == {1: "sent", 2: "sent", 3: "failed", 4: "sent", 5: "sent", 6: "failed"}
    assert all("1011" in (r.error or "") for r in results if r.outcome == "failed")
    assert server.requests == 6  # personalised texts: one push each
    assert set(server.accepted) == {"touch-1", "touch-2", "touch-4", "touch-5"}


def test_no_device_for_the_alias_is_a_failed_message_not_an_error(server: JPushServer) -> None:
    server.unbound.add("c77")
    adapter = adapter_for(server)
    (result,) = adapter.send([message(77)])
    adapter.close()
    assert result.outcome == "failed"
    assert result.error == "jpush 1011: cannot find user by this audience"


def test_identical_texts_share_one_push_when_batching_is_on(server: JPushServer) -> None:
    adapter = adapter_for(server, max_batch=100)
    same = {"text": "召回通知：请尽快到店检查安全气囊。", "subject": "召回"}
    batch = [message(i, **same) for i in (10, 11, 12)] + [message(13)]
    results = adapter.send(batch)
    adapter.close()
    assert [r.outcome for r in results] == ["sent"] * 4
    assert len(server.pushes) == 2
    assert server.pushes[0]["audience"] == {"alias": ["c10", "c11", "c12"]}
    assert server.pushes[0]["notification"]["android"]["extras"] == {}
    assert len({r.provider_id for r in results[:3]}) == 1


def test_a_later_request_failing_keeps_the_earlier_results() -> None:
    class ThrottleSecond(JPushServer):
        def answer(self, request: Request) -> Response:
            if self.requests >= 2:
                self.mode = "throttle"
            return super().answer(request)

    with ThrottleSecond(APP_KEY, MASTER_SECRET) as fake:
        adapter = adapter_for(fake, max_batch=10)  # type: ignore[arg-type]
        results = adapter.send([message(1), message(2), message(3)])
        adapter.close()
    assert [(r.touch_id - 500, r.outcome) for r in results] == [
        (1, "sent"),
        (2, "retry"),
        (3, "retry"),
    ]


def test_a_later_request_in_doubt_is_not_sent_again() -> None:
    class HangSecond(JPushServer):
        def answer(self, request: Request) -> Response:
            if self.requests >= 2:
                self.mode = "timeout"
            return super().answer(request)

    with HangSecond(APP_KEY, MASTER_SECRET) as fake:
        fake.hang_seconds = 1.5
        adapter = adapter_for(fake, max_batch=10, timeout=0.3)  # type: ignore[arg-type]
        results = adapter.send([message(1), message(2), message(3)])
        adapter.close()
    assert [(r.touch_id - 500, r.outcome) for r in results] == [
        (1, "sent"),
        (2, "doubt"),  # reconciled by the dispatcher, never pushed again blind
        (3, "retry"),
    ]
    assert "may have been pushed" in (results[1].error or "")


def test_an_alias_of_another_customer_is_refused_before_sending(server: JPushServer) -> None:
    adapter = adapter_for(server)
    results = adapter.send([message(8, address="c9"), message(10, address="c 10")])
    adapter.close()
    assert [r.outcome for r in results] == ["failed", "failed"]
    assert server.requests == 0
    relaxed = adapter_for(server, check_alias=False)
    assert relaxed.send([message(8, address="member_8")])[0].outcome == "sent"
    relaxed.close()


def test_concurrent_sends_share_one_client(server: JPushServer) -> None:
    adapter = adapter_for(server)
    outcomes: list[str] = []

    def work(start: int) -> None:
        for i in range(start, start + 5):
            outcomes.extend(r.outcome for r in adapter.send([message(i)]))

    threads = [threading.Thread(target=work, args=(n * 10 + 1,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    adapter.close()
    assert outcomes == ["sent"] * 20
    assert len(server.accepted) == 20 and set(server.accepted.values()) == {1}


# -- receipts ---------------------------------------------------------------------------------


def test_poll_receipts_reports_delivered_pushes(server: JPushServer) -> None:
    adapter = adapter_for(server)
    sent = [adapter.send([message(i)])[0].provider_id for i in (1, 2)]
    assert all(sent)
    first, second = (str(msg_id) for msg_id in sent)
    server.received[second] = 0  # that phone is still offline
    receipts = adapter.poll_receipts([first, second, first])
    adapter.close()
    assert [(r.provider_id, r.status, r.key) for r in receipts] == [
        (first, "delivered", f"jpush:received:{first}")
    ]
    assert receipts[0].detail == "jpush_received=1"
    assert receipts[0].at.tzinfo is not None


def test_poll_receipts_from_a_report_base_with_a_path(server: JPushServer) -> None:
    adapter = adapter_for(server, report_endpoint=server.url + "/v3/report/")
    server.received["77"] = 2
    (receipt,) = adapter.poll_receipts(["77"])
    adapter.close()
    assert receipt.detail == "jpush_received=2"


def test_poll_receipts_asks_100_ids_at_a_time(server: JPushServer) -> None:
    adapter = adapter_for(server)
    for i in range(250):
        server.received[str(9_000 + i)] = 1
    receipts = adapter.poll_receipts([str(9_000 + i) for i in range(250)])
    adapter.close()
    assert len(receipts) == 250 and server.requests == 3


def test_poll_receipts_errors(server: JPushServer) -> None:
    adapter = adapter_for(server)
    server.mode = "throttle"
    with pytest.raises(ProviderError) as throttled:
        adapter.poll_receipts(["1"])
    server.mode = "malformed"
    with pytest.raises(ProviderError) as malformed:
        adapter.poll_receipts(["1"])
    adapter.close()
    assert throttled.value.kind == "throttled"
    assert malformed.value.kind == "transient" and not malformed.value.maybe_sent
    assert adapter.poll_receipts([]) == []


# -- configuration ----------------------------------------------------------------------------


def test_make_names_the_missing_secret_not_its_value() -> None:
    with pytest.raises(ConfigError, match="BAOKE_JPUSH_MASTER_SECRET"):
        make(AdapterContext(name="jpush", options={}, secrets={"BAOKE_JPUSH_APP_KEY": APP_KEY}))
    with pytest.raises(ConfigError, match="max_batch"):
        make(
            AdapterContext(
                name="jpush",
                options={"max_batch": 5000},
                secrets={"BAOKE_JPUSH_APP_KEY": "a", "BAOKE_JPUSH_MASTER_SECRET": "b"},
            )
        )
