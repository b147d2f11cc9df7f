"""The webhook adapter against the loopback receiver, over a real socket."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from tests.channels.support import refusal, serve

from baoke.channels.loopback.base import Request, Response
from baoke.channels.loopback.webhook import WebhookServer
from baoke.channels.protocol import Adapter, AdapterContext, Message, ProviderError
from baoke.channels.webhook import (
    WebhookAdapter,
    idempotency_key,
    make,
    post_signed,
    sign,
    verify,
)
from baoke.errors import ConfigError

SECRET = "s3cret-webhook-key-不外传"


def message(touch_id: int, **changes: Any) -> Message:
    fields: dict[str, Any] = {
        "touch_id": touch_id,
        "key": f"touch-{touch_id}",
        "channel": "sms",
        "customer_id": 1000 + touch_id,
        "dealer_id": 7,
        "address": f"1380013{touch_id:04d}",
        "text": f"王先生您好，您的爱车已到保养时间（{touch_id}）。",
        "template": "maintenance/due",
        "params": {"name": "王先生"},
        "marketing": False,
    }
    fields.update(changes)
    return Message(**fields)


@pytest.fixture(scope="module")
def shared() -> Iterator[WebhookServer]:
    # One server for the module: stopping one waits out serve_forever's poll interval.
    yield from serve(WebhookServer(SECRET))


@pytest.fixture
def server(shared: WebhookServer) -> WebhookServer:
    shared.reset()
    return shared


def adapter_for(server: WebhookServer, **options: Any) -> WebhookAdapter:
    context = AdapterContext(
        name="cti",
        options={"url": server.url + "/baoke", **options},
        secrets={"BAOKE_WEBHOOK_SECRET": SECRET},
    )
    return make(context)


# -- signing ----------------------------------------------------------------------------------


def test_sign_is_hmac_sha256_of_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    body = '{"a":"保养"}'.encode()
    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(b"k", "1700000000", body) == "sha256=" + expected
    assert sign("k", "1700000000", body) == sign(b"k", "1700000000", body)


def test_verify_checks_signature_body_and_age() -> None:
    body = b'{"messages":[]}'
    signature = sign(b"k", "1700000000", body)
    assert verify(b"k", "1700000000", body, signature, now=1700000100)
    assert verify(b"k", "1700000000", body, signature, now=datetime.fromtimestamp(1700000000, UTC))
    assert not verify(b"k", "1700000000", body, signature, now=1700000301)  # too old
    assert not verify(b"k", "1700000000", body, signature, now=1699999000)  # from the future
    assert verify(b"k", "1700000000", body, signature, now=1700000900, tolerance_s=1000)
    assert not verify(b"other", "1700000000", body, signature, now=1700000000)
    assert not verify(b"k", "1700000000", body + b" ", signature, now=1700000000)
    assert not verify(b"k", "1700000001", body, signature, now=1700000000)
    assert not verify(b"k", "17e8", body, signature, now=1700000000)
    assert not verify(b"k", "1700000000", body, "sha256=" + "0" * 64, now=1700000000)
    assert not verify(b"k", "1700000000", body, "签名", now=1700000000)


def test_idempotency_key_prefers_send_ref_then_key_then_digest() -> None:
    assert idempotency_key([message(1, send_ref="ref-9"), message(2, send_ref="ref-9")]) == "ref-9"
    assert idempotency_key([message(1)]) == "touch-1"
    digest = idempotency_key([message(1), message(2)])
    assert digest.startswith("batch-")
    assert idempotency_key([message(2), message(1)]) == digest


# -- sending ----------------------------------------------------------------------------------


def test_success_sends_the_contract_and_maps_the_results(server: WebhookServer) -> None:
    adapter = adapter_for(server, channel="sms")
    assert isinstance(adapter, Adapter)
    assert (adapter.channel, adapter.max_batch, adapter.idempotent) == ("sms", 100, True)
    batch = [message(1, send_ref="out-1"), message(2, send_ref="out-1")]
    results = adapter.send(batch)
    adapter.close()

    assert [(r.touch_id, r.outcome) for r in results] == [(1, "sent"), (2, "sent")]
    assert {r.provider_id for r in results} == {"wh-1", "wh-2"}
    assert server.accepted == {"touch-1": 1, "touch-2": 1}
    assert server.idempotency_keys == ["out-1"]
    first = server.records[0]
    assert first["text"] == "王先生您好，您的爱车已到保养时间（1）。"
    assert first["params"] == {"name": "王先生"}
    assert first["customer_id"] == 1001 and first["dealer_id"] == 7
    assert first["marketing"] is False and first["template"] == "maintenance/due"


def test_a_resend_is_deduplicated_by_the_receiver(server: WebhookServer) -> None:
    adapter = adapter_for(server)
    first = adapter.send([message(1)])
    again = adapter.send([message(1)])
    adapter.close()
    assert first[0].provider_id == again[0].provider_id == "wh-1"
    assert again[0].outcome == "sent"
    assert server.accepted["touch-1"] == 1
    assert server.duplicates == ["touch-1"]


def test_partial_batch_maps_rejections_to_failed(server: WebhookServer) -> None:
    server.mode = "partial"
    adapter = adapter_for(server)
    results = adapter.send([message(i) for i in range(1, 7)])
    adapter.close()
    outcomes = {r.touch_id: r.outcome for r in results}
    assert outcomes == {1: "sent", 2: "sent", 3: "failed", 4: "sent", 5: "sent", 6: "failed"}
    assert {r.error for r in results if r.outcome == "failed"} == {"E_OPTED_OUT"}
    assert set(server.accepted) == {"touch-1", "touch-2", "touch-4", "touch-5"}


def test_missing_results_are_retried(server: WebhookServer) -> None:
    server.mode = "incomplete"
    adapter = adapter_for(server)
    results = adapter.send([message(i) for i in range(1, 5)])
    adapter.close()
    assert [(r.touch_id, r.outcome) for r in results] == [
        (1, "sent"),
        (2, "retry"),
        (3, "sent"),
        (4, "retry"),
    ]


def test_throttling_raises_throttled(server: WebhookServer) -> None:
    server.mode = "throttle"
    adapter = adapter_for(server)
    caught = refusal(adapter, [message(1)])
    assert caught.value.kind == "throttled" and not caught.value.maybe_sent


def test_auth_failure_raises_auth_without_the_secret(server: WebhookServer) -> None:
    server.mode = "auth"
    adapter = adapter_for(server)
    caught = refusal(adapter, [message(1)])
    assert caught.value.kind == "auth"
    assert SECRET not in str(caught.value)


def test_a_wrong_secret_is_refused_by_the_receiver(server: WebhookServer) -> None:
    context = AdapterContext(
        name="cti",
        options={"url": server.url},
        secrets={"BAOKE_WEBHOOK_SECRET": "not-the-shared-secret"},
    )
    adapter = make(context)
    caught = refusal(adapter, [message(1)])
    assert caught.value.kind == "auth"
    assert server.bad_signatures == 1 and not server.accepted
    assert "not-the-shared-secret" not in str(caught.value)


def test_a_stale_signature_is_refused(server: WebhookServer) -> None:
    body = b'{"messages":[]}'
    old = str(int(time.time()) - 3600)
    import httpx

    response = httpx.post(
        server.url,
        content=body,
        headers={
            "X-Baoke-Timestamp": old,
            "X-Baoke-Signature": sign(SECRET, old, body),
            "Idempotency-Key": "k",
        },
    )
    assert response.status_code == 401


def test_timeout_is_transient_and_maybe_sent(server: WebhookServer) -> None:
    server.mode = "timeout"
    server.hang_seconds = 1.5
    adapter = adapter_for(server, timeout=0.3)
    caught = refusal(adapter, [message(1)])
    assert caught.value.kind == "transient" and caught.value.maybe_sent
    # The receiver did take it: a resend is deduplicated on the key (idempotent adapter).
    assert server.accepted["touch-1"] == 1


def test_malformed_reply_is_transient_and_maybe_sent(server: WebhookServer) -> None:
    server.mode = "malformed"
    adapter = adapter_for(server)
    caught = refusal(adapter, [message(1)])
    assert caught.value.kind == "transient" and caught.value.maybe_sent


def test_server_error_is_transient_not_maybe_sent(server: WebhookServer) -> None:
    server.mode = "error"
    adapter = adapter_for(server)
    caught = refusal(adapter, [message(1)])
    assert caught.value.kind == "transient" and not caught.value.maybe_sent


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_connection_refused_is_transient_not_maybe_sent() -> None:
    url = f"http://127.0.0.1:{closed_port()}/"
    adapter = make(
        AdapterContext(name="cti", options={"url": url}, secrets={"BAOKE_WEBHOOK_SECRET": "x"})
    )
    caught = refusal(adapter, [message(1)])
    assert caught.value.kind == "transient" and not caught.value.maybe_sent


class _Scripted(WebhookServer):
    """Answers one fixed response, to test how odd receivers are read."""

    response = Response(200, b"")

    def answer(self, request: Request) -> Response:
        return self.response


@pytest.fixture(scope="module")
def scripted() -> Iterator[_Scripted]:
    with _Scripted(SECRET) as fake:
        yield fake  # type: ignore[misc]


def scripted_adapter(fake: _Scripted, response: Response) -> WebhookAdapter:
    fake.response = response
    context = AdapterContext(
        name="cti", options={"url": fake.url}, secrets={"BAOKE_WEBHOOK_SECRET": SECRET}
    )
    return make(context)


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (400, b'{"error":"bad"}', "permanent"),
        (422, b"", "permanent"),
        (403, b"", "auth"),
        (404, b"not found", "transient"),
        (503, b"", "transient"),
    ],
)
def test_http_statuses_map_to_error_kinds(
    scripted: _Scripted, status: int, body: bytes, kind: str
) -> None:
    adapter = scripted_adapter(scripted, Response(status, body))
    caught = refusal(adapter, [message(1)])
    assert caught.value.kind == kind


def test_unknown_statuses_and_foreign_touch_ids_are_retried(scripted: _Scripted) -> None:
    reply = {
        "results": [
            {"touch_id": "1", "status": "accepted", "id": 55},
            {"touch_id": 2, "status": "queued"},
            {"touch_id": 99, "status": "accepted"},
            "junk",
        ]
    }
    adapter = scripted_adapter(scripted, Response(200, json.dumps(reply).encode()))
    results = adapter.send([message(1), message(2), message(3)])
    adapter.close()
    assert [(r.touch_id, r.outcome, r.provider_id) for r in results] == [
        (1, "sent", "55"),
        (2, "retry", None),
        (3, "retry", None),
    ]


def test_empty_batch_sends_nothing(server: WebhookServer) -> None:
    adapter = adapter_for(server)
    assert adapter.send([]) == []
    adapter.close()
    assert server.requests == 0


# -- post_signed ------------------------------------------------------------------------------


def test_post_signed_delivers_a_verifiable_alert(server: WebhookServer) -> None:
    post_signed(server.url, SECRET, {"key": "alert-1", "messages": []}, timeout=2.0)
    assert server.requests == 1 and server.bad_signatures == 0
    assert server.idempotency_keys[0].startswith("alert-")


def test_post_signed_raises_on_refusal(server: WebhookServer) -> None:
    server.mode = "auth"
    with pytest.raises(ProviderError) as caught:
        post_signed(server.url, SECRET, {"messages": []}, timeout=2.0)
    assert caught.value.kind == "auth"


def test_post_signed_body_and_headers_are_what_a_receiver_verifies() -> None:
    seen: dict[str, Any] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen["ok"] = verify(
                SECRET,
                self.headers["X-Baoke-Timestamp"],
                body,
                self.headers["X-Baoke-Signature"],
                now=time.time(),
            )
            seen["body"] = json.loads(body)
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/alert"
        post_signed(url, SECRET.encode(), {"batch": "春季保养", "paused": True}, timeout=2.0)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert seen == {"ok": True, "body": {"batch": "春季保养", "paused": True}}


# -- configuration ----------------------------------------------------------------------------


def test_make_requires_url_and_secret() -> None:
    with pytest.raises(ConfigError, match="url"):
        make(AdapterContext(name="cti", options={}, secrets={"BAOKE_WEBHOOK_SECRET": "x"}))
    with pytest.raises(ConfigError, match="BAOKE_WEBHOOK_SECRET"):
        make(AdapterContext(name="cti", options={"url": "https://gw.example.cn/"}, secrets={}))


def test_make_refuses_plain_http_off_loopback_unless_allowed() -> None:
    secrets = {"BAOKE_WEBHOOK_SECRET": "x"}
    with pytest.raises(ConfigError, match="https"):
        make(AdapterContext(name="cti", options={"url": "http://10.0.0.5/"}, secrets=secrets))
    adapter = make(
        AdapterContext(
            name="cti",
            options={"url": "http://10.0.0.5/", "allow_http": True, "channel": "phone"},
            secrets=secrets,
        )
    )
    assert adapter.channel == "phone"
    adapter.close()


def test_make_reads_a_named_secret() -> None:
    adapter = make(
        AdapterContext(
            name="gw2",
            options={"url": "https://gw.example.cn/", "secret_name": "gw2_secret", "max_batch": 5},
            secrets={"BAOKE_GW2_SECRET": "y"},
        )
    )
    assert adapter.max_batch == 5
    adapter.close()
