"""E-mail over SMTP with the standard library's :mod:`smtplib`.

Each thread keeps one connection (STARTTLS by default, or implicit TLS) and sends a batch of up
to ``max_batch`` messages through it, one transaction per recipient. A message is a
``multipart/alternative`` with a plain-text and an HTML part, and carries what the rules for
commercial e-mail ask for (CHANNELS.md §4.3, §7.5):

- a marketing subject starts with 「【广告】」 unless it already starts with 广告 or AD
  (《互联网电子邮件服务管理办法》 Art. 13);
- a marketing body ends with the sender's identity and a way to refuse further mail: the
  unsubscribe link, or a reply to the sender's address (Art. 14; 《广告法》 Art. 43);
- ``List-Unsubscribe`` and ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 2369,
  RFC 8058) when the message has an unsubscribe URL, so mail clients offer their own button.

The ``Message-ID`` is derived from the touch key and the sender's domain: a message sent again
carries the same id, which mail systems and clients recognise. It is the provider id.

How an SMTP answer maps to the protocol: a refused recipient (5xx to ``RCPT``) fails that
message; a 4xx reply retries it; a refused login is ``ProviderError("auth")``; a refused
connection or one lost before the message data went out is ``transient``; one lost after the
data went out and before the server's final reply is ``transient`` and ``maybe_sent`` (the
server may have queued it). SMTP cannot be asked afterwards, so ``reconcile`` answers None.

Options (``[channels.providers.smtp]``): ``host`` (localhost), ``port`` (587 / 465 / 25 by
``security``), ``security`` (``starttls``, ``ssl``, or ``none`` for a server on loopback only),
``username`` (log in when set, with the secret ``BAOKE_SMTP_PASSWORD``), ``sender`` (required),
``sender_name``, ``sender_contact`` (address or phone stated in marketing mail),
``envelope_from`` (bounce address, default ``sender``), ``reply_to``, ``subject`` (when a
message has none), ``ca_file`` (a private CA), ``local_hostname`` (the EHLO name),
``timeout`` (30 s), ``max_batch`` (20), ``rate`` (5 sessions/s).
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import re
import smtplib
import ssl
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime
from typing import Any, Literal, cast
from urllib.parse import quote

from baoke.channels.hosts import is_loopback
from baoke.channels.protocol import (
    AdapterContext,
    ErrorKind,
    Message,
    ProviderError,
    SendOutcome,
    SendResult,
)
from baoke.errors import ConfigError

__all__ = [
    "AD_PREFIX",
    "SmtpAdapter",
    "SmtpOptions",
    "make",
    "marketing_subject",
    "message_id",
]

Security = Literal["starttls", "ssl", "none"]
AD_PREFIX = "【广告】"
_DEFAULT_PORTS: dict[str, int] = {"starttls": 587, "ssl": 465, "none": 25}
# 7-bit transfer encodings (base64 / quoted-printable): no dependence on the server's 8BITMIME.
# refold_source="none" leaves the headers set raw (List-Unsubscribe) as they are: folding would
# turn a long URL into RFC 2047 encoded words, which mail clients do not read as a link.
_POLICY = SMTP_POLICY.clone(cte_type="7bit", refold_source="none")
# Already marked as an ad: 广告 or AD at the front, perhaps inside brackets. "AD" must stand
# alone, so a subject that starts with "ADAS" is still prefixed.
_MARKED = re.compile(r"^[\s【\[（(〔「<《]*(?:广告|AD(?![A-Za-z0-9]))")
_ADDRESS = re.compile(r"^[^@\s<>(),;:\"\[\]\\]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
_URL = re.compile(r"https?://[^\s<>\"'）》，。]+")
_MSGID_UNSAFE = re.compile(r"[^A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]")


def marketing_subject(subject: str) -> str:
    """The subject of a commercial e-mail: 「【广告】」 in front unless it starts with 广告/AD."""
    return subject if _MARKED.match(subject) else AD_PREFIX + subject


def message_id(key: str, domain: str) -> str:
    """The ``Message-ID`` of the touch with idempotency key ``key``: the same key gives the
    same id, so a resend is recognisable. The key is kept readable where RFC 5322 allows it,
    and a digest keeps two keys that clean up alike apart."""
    readable = _MSGID_UNSAFE.sub("-", key).strip(".")[:64] or "touch"
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]
    return f"<{readable}.{digest}@{domain}>"


def _text_to_html(text: str) -> str:
    """Plain text as simple HTML: paragraphs at blank lines, breaks at newlines, links live."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    rendered = []
    for paragraph in paragraphs:
        escaped = html.escape(paragraph, quote=True)
        linked = _URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', escaped)
        rendered.append("<p>" + linked.replace("\n", "<br>\n") + "</p>")
    body = "\n".join(rendered)
    return (
        '<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8"></head>\n'
        f'<body style="font-family:sans-serif;line-height:1.6">\n{body}\n</body></html>\n'
    )


def _header_url(url: str) -> str:
    """The URL as a header may carry it: one line of ASCII (other characters %-encoded)."""
    return quote("".join(url.split()), safe=":/?#[]@!$&'()*+,;=%~")


def _clean_header(value: str) -> str:
    # A CR or LF in a header would start a new header line (header injection).
    return " ".join(value.split())


@dataclass(frozen=True)
class SmtpOptions:
    """The provider's options, read once by :func:`make`."""

    sender: str
    host: str = "localhost"
    port: int = 587
    security: Security = "starttls"
    username: str | None = None
    sender_name: str | None = None
    sender_contact: str | None = None
    envelope_from: str | None = None
    reply_to: str | None = None
    subject: str | None = None
    ca_file: str | None = None
    local_hostname: str | None = None
    timeout: float = 30.0
    max_batch: int = 20
    rate: float = 5.0

    @property
    def domain(self) -> str:
        """The sender's domain (for the Message-ID)."""
        return self.sender.rpartition("@")[2].lower()


class _SessionLost(Exception):
    """The SMTP session cannot go on (dropped, 421, sender refused)."""

    def __init__(self, kind: ErrorKind, reason: str, *, maybe_sent: bool = False) -> None:
        super().__init__(reason)
        self.kind: ErrorKind = kind
        self.maybe_sent = maybe_sent


def _reply(code: int, text: bytes | str) -> str:
    decoded = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return f"smtp {code} {' '.join(decoded.split())[:200]}".rstrip()


def _dot_stuff(data: bytes) -> bytes:
    """The DATA payload: CRLF line ends, leading dots doubled, the closing ``.`` line."""
    data = re.sub(rb"\r\n|\r|\n", b"\r\n", data)
    data = re.sub(rb"(?m)^\.", b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


class SmtpAdapter:
    """Sends e-mail; see the module docstring."""

    channel = "email"
    idempotent = False

    def __init__(self, options: SmtpOptions, *, password: str | None = None, name: str = "smtp"):
        self.name = name
        self.options = options
        self.max_batch = options.max_batch
        self.rate = options.rate
        self._password = password
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[smtplib.SMTP] = set()

    # -- composing ---------------------------------------------------------------------------

    def compose(self, message: Message) -> EmailMessage:
        """The e-mail for one message (also usable to preview it)."""
        opts = self.options
        subject = message.subject or opts.subject or _first_line(message.text)
        subject = _clean_header(subject)
        if message.marketing:
            subject = marketing_subject(subject)
        mail = EmailMessage(policy=_POLICY)
        mail["Subject"] = subject
        mail["From"] = Address(display_name=opts.sender_name or "", addr_spec=opts.sender)
        mail["To"] = message.address
        mail["Date"] = format_datetime(datetime.now(UTC))
        mail["Message-ID"] = message_id(message.key, opts.domain)
        if opts.reply_to:
            mail["Reply-To"] = opts.reply_to
        url = _header_url(message.unsubscribe_url) if message.unsubscribe_url else None
        if url:
            mail.set_raw("List-Unsubscribe", f"<{url}>")
            mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        text = message.text
        body_html = message.html or _text_to_html(message.text)
        if message.marketing:
            text = text.rstrip() + "\n\n" + self._footer_text(url)
            body_html = _insert_footer(body_html, self._footer_html(url))
        mail.set_content(text, subtype="plain", charset="utf-8")
        mail.add_alternative(body_html, subtype="html", charset="utf-8")
        return mail

    def _identity(self) -> str:
        opts = self.options
        who = f"{opts.sender_name} <{opts.sender}>" if opts.sender_name else opts.sender
        return f"发件人：{who}" + (
            f"，联系方式：{opts.sender_contact}" if opts.sender_contact else ""
        )

    def _footer_text(self, url: str | None) -> str:
        refuse = (
            f"退订：如不希望再收到此类邮件，请打开 {url} 退订，或直接回复本邮件“退订”。"
            if url
            else "退订：如不希望再收到此类邮件，请直接回复本邮件“退订”。"
        )
        return f"——\n{self._identity()}\n{refuse}\n"

    def _footer_html(self, url: str | None) -> str:
        identity = html.escape(self._identity())
        if url:
            link = html.escape(url, quote=True)
            refuse = (
                f'退订：如不希望再收到此类邮件，请<a href="{link}">点此退订</a>（{link}），'
                "或直接回复本邮件“退订”。"
            )
        else:
            refuse = "退订：如不希望再收到此类邮件，请直接回复本邮件“退订”。"
        return f'<hr><p style="color:#888;font-size:12px">{identity}<br>\n{refuse}</p>\n'

    # -- sending -----------------------------------------------------------------------------

    def send(self, batch: Sequence[Message]) -> list[SendResult]:
        """Send the batch in one SMTP session of this thread. Raises ProviderError when the
        session fails before the first message is through; later, the messages not yet sent
        are retried (one whose data went out unanswered is failed, not sent twice)."""
        if not batch:
            return []
        smtp = self._connection()
        results: list[SendResult] = []
        for index, message in enumerate(batch):
            try:
                results.append(self._send_one(smtp, message))
            except _SessionLost as lost:
                self._discard(smtp)
                if index == 0:
                    raise ProviderError(lost.kind, str(lost), maybe_sent=lost.maybe_sent) from None
                if lost.maybe_sent:
                    note = f"{lost} — the server may have accepted it"
                    results.append(SendResult(message.touch_id, "doubt", error=note))
                else:
                    results.append(SendResult(message.touch_id, "retry", error=str(lost)))
                results.extend(
                    SendResult(m.touch_id, "retry", error=str(lost)) for m in batch[index + 1 :]
                )
                break
        return results

    def _send_one(self, smtp: smtplib.SMTP, message: Message) -> SendResult:
        """One SMTP transaction: MAIL, RCPT, DATA. Raises _SessionLost."""
        touch = message.touch_id
        if not (message.address.isascii() and _ADDRESS.match(message.address)):
            return SendResult(touch, "failed", error="smtp: not a valid (ASCII) e-mail address")
        mail = self.compose(message)
        mid = str(mail["Message-ID"])
        payload = _dot_stuff(mail.as_bytes(policy=_POLICY))
        envelope_from = self.options.envelope_from or self.options.sender

        code, text = self._command(smtp, lambda: smtp.mail(envelope_from))
        if code >= 500:
            # Every message of this sender would be refused alike: a configuration matter.
            raise _SessionLost("auth", f"sender refused: {_reply(code, text)}")
        if code >= 400:
            self._reset(smtp)
            return SendResult(touch, "retry", error=_reply(code, text))
        code, text = self._command(smtp, lambda: smtp.rcpt(message.address))
        if code not in (250, 251):
            self._reset(smtp)
            return SendResult(touch, _refusal(code), error=_reply(code, text))
        code, text = self._command(smtp, lambda: smtp.docmd("DATA"))
        if code != 354:
            self._reset(smtp)
            return SendResult(touch, _refusal(code), error=_reply(code, text))
        try:
            smtp.send(payload)
            code, text = smtp.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            raise _SessionLost(
                "transient",
                f"smtp: connection lost after the message data ({type(exc).__name__})",
                maybe_sent=True,
            ) from None
        if code == 250:
            return SendResult(touch, "sent", provider_id=mid)
        if code == 421:
            raise _SessionLost("transient", _reply(code, text))
        if 400 <= code < 500:
            return SendResult(touch, "retry", error=_reply(code, text))
        if 500 <= code < 600:
            return SendResult(touch, "failed", error=_reply(code, text))
        # A final reply we cannot read: the server may have queued the message.
        raise _SessionLost("transient", f"unreadable final reply ({code})", maybe_sent=True)

    @staticmethod
    def _command(smtp: smtplib.SMTP, call: Callable[[], tuple[int, bytes]]) -> tuple[int, bytes]:
        """Run one command before the data went out; a lost session or 421 raises."""
        try:
            code, text = call()
        except (smtplib.SMTPException, OSError) as exc:
            raise _SessionLost(
                "transient", f"smtp: connection lost ({type(exc).__name__})"
            ) from None
        if code == 421 or code < 0:
            raise _SessionLost("transient", _reply(code, text))
        return code, text

    def _reset(self, smtp: smtplib.SMTP) -> None:
        self._command(smtp, smtp.rset)

    # -- connections -------------------------------------------------------------------------

    def _connection(self) -> smtplib.SMTP:
        """This thread's open connection, checked with NOOP; a new one otherwise."""
        smtp: smtplib.SMTP | None = getattr(self._local, "smtp", None)
        if smtp is not None:
            try:
                code = smtp.noop()[0]
            except (smtplib.SMTPException, OSError):
                code = -1
            if code == 250:
                return smtp
            self._discard(smtp)
        smtp = self._connect()
        self._local.smtp = smtp
        with self._lock:
            self._open.add(smtp)
        return smtp

    def _tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.options.ca_file)

    def _connect(self) -> smtplib.SMTP:
        opts = self.options
        where = f"{opts.host}:{opts.port}"
        smtp: smtplib.SMTP | None = None
        try:
            if opts.security == "ssl":
                smtp = smtplib.SMTP_SSL(
                    opts.host,
                    opts.port,
                    local_hostname=opts.local_hostname,
                    timeout=opts.timeout,
                    context=self._tls_context(),
                )
            else:
                smtp = smtplib.SMTP(
                    opts.host, opts.port, local_hostname=opts.local_hostname, timeout=opts.timeout
                )
            smtp.ehlo()
            if opts.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise ProviderError(
                        "auth", f"smtp {where} does not offer STARTTLS; not sending in the clear"
                    )
                smtp.starttls(context=self._tls_context())
                smtp.ehlo()
            if opts.username:
                smtp.login(opts.username, self._password or "")
            return smtp
        except ProviderError:
            _close_quietly(smtp)
            raise
        except smtplib.SMTPAuthenticationError as exc:
            _close_quietly(smtp)
            # The server's code only: the reply may echo what was sent.
            raise ProviderError(
                "auth", f"smtp {where}: login as {opts.username} refused ({exc.smtp_code})"
            ) from None
        except smtplib.SMTPNotSupportedError:
            _close_quietly(smtp)
            raise ProviderError("auth", f"smtp {where} does not offer AUTH") from None
        except ssl.SSLCertVerificationError as exc:
            _close_quietly(smtp)
            raise ProviderError(
                "auth", f"smtp {where}: TLS certificate not trusted ({exc.verify_message})"
            ) from None
        except smtplib.SMTPResponseException as exc:
            _close_quietly(smtp)
            kind: ErrorKind = "transient" if exc.smtp_code < 500 else "auth"
            raise ProviderError(
                kind, f"smtp {where}: {_reply(exc.smtp_code, exc.smtp_error)}"
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            _close_quietly(smtp)
            raise ProviderError(
                "transient", f"smtp {where}: cannot connect ({type(exc).__name__})"
            ) from None

    def _discard(self, smtp: smtplib.SMTP) -> None:
        _close_quietly(smtp)
        with self._lock:
            self._open.discard(smtp)
        if getattr(self._local, "smtp", None) is smtp:
            self._local.smtp = None

    def reconcile(self, batch: Sequence[Message]) -> dict[int, str] | None:
        """None: an SMTP server cannot be asked what it accepted."""
        return None

    def close(self) -> None:
        """QUIT every thread's connection."""
        with self._lock:
            connections = list(self._open)
            self._open.clear()
        for smtp in connections:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                _close_quietly(smtp)


def _refusal(code: int) -> SendOutcome:
    """A refused command: 5xx for good, anything else for now."""
    return "failed" if code >= 500 else "retry"


def _close_quietly(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        with contextlib.suppress(OSError):
            smtp.close()


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= 40 else line[:39] + "…"
    return "(无主题)"


def _insert_footer(body_html: str, footer: str) -> str:
    at = body_html.lower().rfind("</body>")
    return body_html[:at] + footer + body_html[at:] if at >= 0 else body_html + footer


def _text(options: Mapping[str, Any], name: str) -> str | None:
    value = options.get(name)
    return None if value in (None, "") else str(value)


def _clean_text(options: Mapping[str, Any], name: str) -> str | None:
    value = _text(options, name)
    return None if value is None else _clean_header(value)


def make(context: AdapterContext) -> SmtpAdapter:
    """The adapter for ``[channels.providers.<name>]`` (options in the module docstring)."""
    raw = context.options
    name = context.name
    sender = raw.get("sender")
    if not isinstance(sender, str) or not sender.isascii() or not _ADDRESS.match(sender):
        raise ConfigError(f"channel provider '{name}' needs the option sender (an e-mail address)")
    security = str(raw.get("security", "starttls"))
    if security not in _DEFAULT_PORTS:
        raise ConfigError(f"channel provider '{name}': security must be starttls, ssl or none")
    host = str(raw.get("host", "localhost"))
    if security == "none" and not is_loopback(host):
        # Passwords and customers' mail in the clear: only to a relay on this machine.
        raise ConfigError(
            f"channel provider '{name}': security = \"none\" is only allowed for a server on "
            "loopback (127.0.0.1); use starttls or ssl"
        )
    max_batch = int(raw.get("max_batch", 20))
    if not 1 <= max_batch <= 1_000:
        raise ConfigError(f"channel provider '{name}': max_batch must be 1-1000")
    options = SmtpOptions(
        sender=sender,
        host=host,
        port=int(raw.get("port") or _DEFAULT_PORTS[security]),
        security=cast(Security, security),  # checked above
        username=_text(raw, "username"),
        sender_name=_clean_text(raw, "sender_name"),
        sender_contact=_clean_text(raw, "sender_contact"),
        envelope_from=_text(raw, "envelope_from"),
        reply_to=_text(raw, "reply_to"),
        subject=_text(raw, "subject"),
        ca_file=_text(raw, "ca_file"),
        local_hostname=_text(raw, "local_hostname"),
        timeout=float(raw.get("timeout", 30.0)),
        max_batch=max_batch,
        rate=float(raw.get("rate", 5.0)),
    )
    password = None
    if options.username is not None:
        password = context.secret("smtp_password")
        if not (password.isascii() and options.username.isascii()):
            # smtplib encodes AUTH as ASCII; providers' passwords and 授权码 are ASCII anyway.
            raise ConfigError(
                f"channel provider '{name}': the username and BAOKE_SMTP_PASSWORD must be ASCII"
            )
    return SmtpAdapter(options, password=password, name=name)
