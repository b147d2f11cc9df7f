"""The SMTP adapter against a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from tests.channels.support import refusal

from baoke.channels.protocol import Adapter, AdapterContext, Message, ProviderError
from baoke.channels.smtp import SmtpAdapter, make, marketing_subject, message_id
from baoke.errors import ConfigError

# The AUTH server runs without TLS on purpose (security = "none" on loopback).
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

SENDER = "service@dealer.example.cn"
PASSWORD = "smtp-pa55-Xq9"
UNSUBSCRIBE = "https://bk.example.cn/u/Xk3f9Q"


def message(n: int, **changes: Any) -> Message:
    fields: dict[str, Any] = {
        "touch_id": 900 + n,
        "key": f"touch:{900 + n}:spring",
        "channel": "email",
        "customer_id": n,
        "dealer_id": 3,
        "address": f"owner{n}@example.com",
        "text": f"李女士您好：\n\n您的爱车已行驶 {n}0000 公里，春季保养享 8 折。\n.这一行以点开头",
        "subject": "春季保养提醒",
        "marketing": False,
    }
    fields.update(changes)
    return Message(**fields)


# -- the server ---------------------------------------------------------------------------------


@dataclass
class Received:
    peer: Any
    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    def parsed(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Recorder:
    """An aiosmtpd handler that records what arrived and misbehaves on request."""

    received: list[Received] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)  # 550 at RCPT
    defer: set[str] = field(default_factory=set)  # 451 at RCPT
    drop_at_rcpt: set[str] = field(default_factory=set)  # hang up before DATA
    drop_after_data: set[str] = field(default_factory=set)  # hang up instead of the reply
    data_reply: dict[str, str] = field(default_factory=dict)  # a final reply by recipient
    hang_after_data: float = 0.0

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.drop_at_rcpt:
            assert server.transport is not None
            server.transport.close()
            return "250 OK"
        if address in self.refuse:
            return "550 5.1.1 <" + address + ">: mailbox unavailable"
        if address in self.defer:
            return "451 4.7.1 greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes) and envelope.mail_from is not None
        self.received.append(
            Received(session.peer, envelope.mail_from, list(envelope.rcpt_tos), envelope.content)
        )
        if self.hang_after_data:
            await asyncio.sleep(self.hang_after_data)
        recipient = envelope.rcpt_tos[0]
        if recipient in self.drop_after_data:
            assert server.transport is not None
            server.transport.close()
            return "250 OK"
        return self.data_reply.get(recipient, "250 2.0.0 queued")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@dataclass
class Server:
    handler: Recorder
    port: int


def _start(handler: Recorder, **kwargs: Any) -> tuple[Controller, Server]:
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    return controller, Server(handler, port)


@pytest.fixture(scope="module")
def plain_server() -> Iterator[Server]:
    controller, server = _start(Recorder())
    yield server
    controller.stop()


@pytest.fixture
def plain(plain_server: Server) -> Server:
    plain_server.handler.reset()
    return plain_server


def _authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = (
        isinstance(data, LoginPassword)
        and data.login == b"dealer"
        and data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535


@pytest.fixture(scope="module")
def auth_server() -> Iterator[Server]:
    controller, server = _start(
        Recorder(), authenticator=_authenticator, auth_required=True, auth_require_tls=False
    )
    yield server
    controller.stop()


@dataclass
class Tls:
    cert: Path
    server_context: ssl.SSLContext


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A self-signed certificate for 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return Tls(cert_path, context)


def adapter_for(server: Server, **options: Any) -> SmtpAdapter:
    secrets = {"BAOKE_SMTP_PASSWORD": options.pop("password", PASSWORD)}
    context = AdapterContext(
        name="smtp",
        options={
            "host": "127.0.0.1",
            "port": server.port,
            "security": "none",
            "sender": SENDER,
            "sender_name": "星辰汽车4S店",
            "sender_contact": "400-800-1234",
            **options,
        },
        secrets=secrets,
    )
    return make(context)


# -- the message --------------------------------------------------------------------------------


def test_subject_prefix_rule() -> None:
    assert marketing_subject("春季保养特惠") == "【广告】春季保养特惠"
    assert marketing_subject("广告：春季保养特惠") == "广告：春季保养特惠"
    assert marketing_subject("【广告】春季保养特惠") == "【广告】春季保养特惠"
    assert marketing_subject("[AD] Spring service") == "[AD] Spring service"
    assert marketing_subject("AD 春季保养") == "AD 春季保养"
    assert marketing_subject("ADAS 升级免费检测") == "【广告】ADAS 升级免费检测"


def test_message_id_is_stable_and_valid() -> None:
    first = message_id("touch:901:spring", "dealer.example.cn")
    assert first == message_id("touch:901:spring", "dealer.example.cn")
    assert first != message_id("touch:902:spring", "dealer.example.cn")
    assert first.startswith("<touch-901-spring.") and first.endswith("@dealer.example.cn>")
    assert message_id("a:b", "d.cn") != message_id("a-b", "d.cn")


def test_a_marketing_mail_carries_the_ad_marks(plain: Server) -> None:
    adapter = adapter_for(plain)
    assert isinstance(adapter, Adapter)
    assert (adapter.channel, adapter.max_batch, adapter.rate, adapter.idempotent) == (
        "email",
        20,
        5.0,
        False,
    )
    sent = message(1, marketing=True, unsubscribe_url=UNSUBSCRIBE)
    (result,) = adapter.send([sent])
    adapter.close()

    assert result.outcome == "sent"
    (arrived,) = plain.handler.received
    assert arrived.mail_from == SENDER and arrived.rcpt_tos == ["owner1@example.com"]
    assert all(byte < 128 for byte in arrived.content)  # 7-bit clean on the wire
    mail = arrived.parsed()
    assert mail["Subject"] == "【广告】春季保养提醒"
    assert mail["Message-ID"] == result.provider_id == message_id(sent.key, "dealer.example.cn")
    assert mail["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    sender = mail["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == ("星辰汽车4S店", SENDER)
    assert mail.get_content_type() == "multipart/alternative"
    text_part, html_part = mail.iter_parts()
    assert text_part.get_content_type() == "text/plain"
    assert html_part.get_content_type() == "text/html"
    text = text_part.get_content()
    assert "您的爱车已行驶 10000 公里，春季保养享 8 折。" in text
    assert "\n.这一行以点开头" in text  # the leading dot survived dot-stuffing
    assert UNSUBSCRIBE in text and "退订" in text
    assert "400-800-1234" in text and SENDER in text
    page = html_part.get_content()
    assert "<p>李女士您好：</p>" in page
    assert f'<a href="{UNSUBSCRIBE}">' in page
    assert "星辰汽车4S店" in page


def test_a_long_or_chinese_unsubscribe_url_stays_one_readable_header(plain: Server) -> None:
    adapter = adapter_for(plain)
    long_url = "https://bk.example.cn/u/" + "Xk3f9Q" * 25 + "?来源=邮件"
    adapter.send([message(1, marketing=True, unsubscribe_url=long_url)])
    adapter.close()
    raw = plain.handler.received[0].content
    header = next(
        line for line in raw.split(b"\r\n") if line.startswith(b"List-Unsubscribe:")
    ).decode("ascii")
    assert header == (
        "List-Unsubscribe: <https://bk.example.cn/u/"
        + "Xk3f9Q" * 25
        + "?%E6%9D%A5%E6%BA%90=%E9%82%AE%E4%BB%B6>"
    )


def test_a_service_mail_has_no_ad_marks(plain: Server) -> None:
    adapter = adapter_for(plain)
    html_body = "<html><body><p>保养预约已确认：<b>周六 9:00</b></p></body></html>"
    adapter.send([message(2, html=html_body)])
    adapter.close()
    mail = plain.handler.received[0].parsed()
    assert mail["Subject"] == "春季保养提醒"
    assert mail["List-Unsubscribe"] is None
    text_part, html_part = mail.iter_parts()
    assert "退订" not in text_part.get_content()
    assert html_part.get_content().strip() == html_body


def test_marketing_without_a_link_offers_a_reply_and_no_header(plain: Server) -> None:
    adapter = adapter_for(plain)
    adapter.send([message(3, marketing=True, subject="广告：新车置换补贴")])
    adapter.close()
    mail = plain.handler.received[0].parsed()
    assert mail["Subject"] == "广告：新车置换补贴"
    assert mail["List-Unsubscribe"] is None
    text_part, html_part = mail.iter_parts()
    assert "回复本邮件“退订”" in text_part.get_content()
    assert "回复本邮件“退订”" in html_part.get_content()


def test_a_missing_subject_falls_back_to_the_option_then_the_first_line(plain: Server) -> None:
    adapter = adapter_for(plain, subject="星辰汽车客户关怀")
    adapter.send([message(4, subject=None)])
    adapter.close()
    plain_adapter = adapter_for(plain)
    plain_adapter.send([message(5, subject=None)])
    plain_adapter.close()
    first, second = (r.parsed() for r in plain.handler.received)
    assert first["Subject"] == "星辰汽车客户关怀"
    assert second["Subject"] == "李女士您好："


# -- outcomes -----------------------------------------------------------------------------------


def test_partial_batch_one_session(plain: Server) -> None:
    plain.handler.refuse.add("owner2@example.com")
    plain.handler.defer.add("owner3@example.com")
    plain.handler.data_reply["owner5@example.com"] = "554 5.7.1 message rejected as spam"
    adapter = adapter_for(plain)
    results = adapter.send([message(n) for n in range(1, 6)])
    adapter.close()
    assert [(r.touch_id - 900, r.outcome) for r in results] == [
        (1, "sent"),
        (2, "failed"),
        (3, "retry"),
        (4, "sent"),
        (5, "failed"),
    ]
    assert results[1].error is not None and results[1].error.startswith("smtp 550")
    assert results[2].error is not None and results[2].error.startswith("smtp 451")
    arrived = plain.handler.received
    assert [r.rcpt_tos for r in arrived] == [
        ["owner1@example.com"],
        ["owner4@example.com"],
        ["owner5@example.com"],
    ]
    assert len({r.peer for r in arrived}) == 1  # one SMTP session for the batch


def test_the_connection_is_reused_per_thread(plain: Server) -> None:
    adapter = adapter_for(plain)
    adapter.send([message(1)])
    adapter.send([message(2)])
    other: list[Any] = []
    thread = threading.Thread(target=lambda: other.extend(adapter.send([message(3)])))
    thread.start()
    thread.join()
    adapter.close()
    peers = [r.peer for r in plain.handler.received]
    assert peers[0] == peers[1] != peers[2]
    assert [r.outcome for r in other] == ["sent"]


def test_a_connection_dropped_between_batches_is_replaced(plain: Server) -> None:
    plain.handler.drop_after_data.add("owner1@example.com")
    adapter = adapter_for(plain)
    with pytest.raises(ProviderError):
        adapter.send([message(1)])
    (result,) = adapter.send([message(2)])
    adapter.close()
    assert result.outcome == "sent"


def test_a_4xx_final_reply_is_retried(plain: Server) -> None:
    plain.handler.data_reply["owner1@example.com"] = "451 4.3.0 mailbox busy"
    adapter = adapter_for(plain)
    (result,) = adapter.send([message(1)])
    adapter.close()
    assert result.outcome == "retry"


def test_login_with_the_password_secret(auth_server: Server) -> None:
    auth_server.handler.reset()
    adapter = adapter_for(auth_server, username="dealer")
    (result,) = adapter.send([message(1)])
    adapter.close()
    assert result.outcome == "sent" and len(auth_server.handler.received) == 1


def test_auth_failure_raises_auth_without_the_password(auth_server: Server) -> None:
    auth_server.handler.reset()
    adapter = adapter_for(auth_server, username="dealer", password="wrong-password-123")
    caught = refusal(adapter, [message(1)])
    assert caught.value.kind == "auth"
    assert "wrong-password-123" not in str(caught.value) and PASSWORD not in str(caught.value)
    assert not auth_server.handler.received


def test_no_login_where_the_server_requires_one_is_an_auth_error(auth_server: Server) -> None:
    auth_server.handler.reset()
    adapter = adapter_for(auth_server)
    caught = refusal(adapter, [message(1)])
    assert caught.value.kind == "auth" and "530" in str(caught.value)


def test_throttling_421_is_transient(plain: Server) -> None:
    plain.handler.data_reply["owner1@example.com"] = "421 4.7.0 too many messages, slow down"
    adapter = adapter_for(plain)
    caught = refusal(adapter, [message(1)])
    assert caught.value.kind == "transient" and not caught.value.maybe_sent


def test_timeout_after_data_is_maybe_sent(plain: Server) -> None:
    plain.handler.hang_after_data = 1.5
    adapter = adapter_for(plain, timeout=0.3)
    caught = refusal(adapter, [message(1)])
    assert caught.value.kind == "transient" and caught.value.maybe_sent
    assert len(plain.handler.received) == 1  # the server has the message


def test_disconnect_after_data_is_maybe_sent(plain: Server) -> None:
    plain.handler.drop_after_data.add("owner1@example.com")
    adapter = adapter_for(plain)
    caught = refusal(adapter, [message(1)])
    assert caught.value.kind == "transient" and caught.value.maybe_sent


def test_disconnect_before_data_is_transient_not_maybe_sent(plain: Server) -> None:
    plain.handler.drop_at_rcpt.add("owner1@example.com")
    adapter = adapter_for(plain)
    caught = refusal(adapter, [message(1)])
    assert caught.value.kind == "transient" and not caught.value.maybe_sent


def test_a_drop_mid_batch_keeps_earlier_results_and_does_not_resend(plain: Server) -> None:
    plain.handler.drop_after_data.add("owner2@example.com")
    adapter = adapter_for(plain)
    results = adapter.send([message(1), message(2), message(3)])
    adapter.close()
    assert [(r.touch_id - 900, r.outcome) for r in results] == [
        (1, "sent"),
        (2, "doubt"),  # left to reconciliation, never resent blind
        (3, "retry"),
    ]
    assert "may have accepted it" in (results[1].error or "")


def test_malformed_final_reply_is_maybe_sent(plain: Server) -> None:
    plain.handler.data_reply["owner1@example.com"] = "thanks!"
    adapter = adapter_for(plain)
    caught = refusal(adapter, [message(1)])
    assert caught.value.kind == "transient" and caught.value.maybe_sent


def test_malformed_greeting_is_transient() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    adapter = adapter_for(Server(Recorder(), port))
    caught = refusal(adapter, [message(1)])
    listener.close()
    thread.join(timeout=2)
    assert caught.value.kind == "transient" and not caught.value.maybe_sent


def test_connection_refused_is_transient() -> None:
    adapter = adapter_for(Server(Recorder(), free_port()))
    caught = refusal(adapter, [message(1)])
    assert caught.value.kind == "transient" and not caught.value.maybe_sent


def test_an_invalid_address_fails_without_a_session(plain: Server) -> None:
    adapter = adapter_for(plain)
    results = adapter.send([message(1, address="not-an-address"), message(2)])
    adapter.close()
    assert [r.outcome for r in results] == ["failed", "sent"]


# -- TLS ----------------------------------------------------------------------------------------


def test_starttls_with_a_private_ca(tls: Tls) -> None:
    handler = Recorder()
    controller, server = _start(handler, tls_context=tls.server_context, require_starttls=True)
    try:
        adapter = adapter_for(server, security="starttls", ca_file=str(tls.cert))
        (result,) = adapter.send([message(1)])
        adapter.close()
        untrusted = adapter_for(server, security="starttls")
        caught = refusal(untrusted, [message(2)])
    finally:
        controller.stop()
    assert result.outcome == "sent" and len(handler.received) == 1
    assert caught.value.kind == "auth" and "certificate" in str(caught.value)


def test_starttls_refuses_a_server_without_it(plain: Server) -> None:
    adapter = adapter_for(plain, security="starttls", host="localhost")
    caught = refusal(adapter, [message(1)])
    assert caught.value.kind == "auth" and "STARTTLS" in str(caught.value)
    assert not plain.handler.received


def test_implicit_tls(tls: Tls) -> None:
    handler = Recorder()
    controller, server = _start(handler, ssl_context=tls.server_context)
    try:
        adapter = adapter_for(server, security="ssl", ca_file=str(tls.cert))
        (result,) = adapter.send([message(1)])
        adapter.close()
    finally:
        controller.stop()
    assert result.outcome == "sent" and len(handler.received) == 1


# -- configuration ------------------------------------------------------------------------------


def test_make_checks_its_options() -> None:
    with pytest.raises(ConfigError, match="sender"):
        make(AdapterContext(name="smtp", options={}, secrets={}))
    with pytest.raises(ConfigError, match="loopback"):
        make(
            AdapterContext(
                name="smtp",
                options={"sender": SENDER, "security": "none", "host": "smtp.example.cn"},
                secrets={},
            )
        )
    with pytest.raises(ConfigError, match="BAOKE_SMTP_PASSWORD"):
        make(
            AdapterContext(
                name="smtp", options={"sender": SENDER, "username": "dealer"}, secrets={}
            )
        )
    adapter = make(
        AdapterContext(name="smtp", options={"sender": SENDER, "security": "ssl"}, secrets={})
    )
    assert adapter.options.port == 465 and adapter.reconcile([message(1)]) is None
    with pytest.raises(ConfigError, match="ASCII") as caught:
        make(
            AdapterContext(
                name="smtp",
                options={"sender": SENDER, "username": "dealer"},
                secrets={"BAOKE_SMTP_PASSWORD": "密码123"},
            )
        )
    assert "密码123" not in str(caught.value)
