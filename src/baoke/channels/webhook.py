"""A generic, signed HTTP POST adapter: hand touches to a CTI, a customer's own gateway or any
other system that speaks this small contract.

The contract (also in ``docs/channels/``)
------------------------------------------

Request: ``POST <url>`` with ``Content-Type: application/json; charset=utf-8`` and the body::

    {"messages": [{"touch_id": 17, "key": "…", "channel": "sms", "customer_id": 42,
                   "dealer_id": 3, "address": "13800138000", "text": "…", "subject": null,
                   "template": "maintenance/due", "params": {"name": "王先生"},
                   "marketing": false, "template_code": null, "sender": null,
                   "html": null, "unsubscribe_url": null}, …]}

Headers:

- ``X-Baoke-Timestamp``: Unix time in seconds when the request was signed;
- ``X-Baoke-Signature: sha256=<hex>``: HMAC-SHA256, keyed with the shared secret
  ``BAOKE_WEBHOOK_SECRET``, of ``"<timestamp>.<body>"`` (the raw body bytes as sent);
- ``Idempotency-Key``: the outbox's ``send_ref`` for the request, or the touch key when the
  request carries one message. A resend of the same request carries the same key.

Response (HTTP 200)::

    {"results": [{"touch_id": 17, "status": "accepted", "id": "gw-981", "error": null}, …]}

``status`` is ``accepted`` (taken; ``id`` is the receiver's reference), ``rejected`` (refused
for good, ``error`` says why) or ``retry`` (refused for now). A message without a result is
retried. HTTP 401/403 means the signature or key was refused, 429 "slow down", 5xx "try later";
other 4xx codes fail the whole request.

The receiver's duty: verify the signature and the timestamp (:func:`verify`), and **drop a
message whose ``key`` it has already accepted**, answering ``accepted`` again with the same
``id``. That is what lets baoke send a message in doubt (a timeout) again without a customer
getting it twice, so the adapter declares ``idempotent = True``.

:func:`sign` and :func:`post_signed` are reused by the dispatcher's emergency alert webhook.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from baoke.channels.hosts import is_loopback
from baoke.channels.httpjson import transport_error
from baoke.channels.protocol import (
    AdapterContext,
    Message,
    ProviderError,
    SendOutcome,
    SendResult,
)
from baoke.errors import ConfigError

__all__ = [
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookAdapter",
    "idempotency_key",
    "make",
    "post_signed",
    "sign",
    "verify",
]

SIGNATURE_HEADER = "X-Baoke-Signature"
TIMESTAMP_HEADER = "X-Baoke-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
USER_AGENT = "baoke-webhook/1"
_STATUSES: dict[str, SendOutcome] = {"accepted": "sent", "rejected": "failed", "retry": "retry"}


def _key_bytes(secret: bytes | str) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def sign(secret: bytes | str, timestamp: str, body: bytes) -> str:
    """The ``X-Baoke-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of
    ``"<timestamp>.<body>"`` keyed with ``secret``."""
    mac = hmac.new(_key_bytes(secret), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: bytes | str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float | datetime,
    tolerance_s: float = 300,
) -> bool:
    """Whether ``signature`` is the signature of ``body`` at ``timestamp`` and the timestamp
    lies within ``tolerance_s`` seconds of ``now`` (Unix seconds or an aware datetime).

    The comparison takes constant time, so a caller cannot learn the signature byte by byte;
    the tolerance bounds how long a captured request can be replayed.
    """
    if not (timestamp.isascii() and timestamp.isdigit()):
        return False
    now_s = now.timestamp() if isinstance(now, datetime) else float(now)
    if abs(now_s - int(timestamp)) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).encode("ascii")
    return hmac.compare_digest(expected, signature.strip().encode("utf-8"))


def _dumps(payload: Mapping[str, Any]) -> bytes:
    # Compact UTF-8 (Chinese text stays readable in a receiver's log); the signature covers
    # these exact bytes, so they are built once and sent as they are.
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _signed_headers(secret: bytes | str, body: bytes, idempotency_key: str) -> dict[str, str]:
    timestamp = str(int(time.time()))
    return {
        "Content-Type": "application/json; charset=utf-8",
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
        IDEMPOTENCY_HEADER: idempotency_key,
    }


def _status_error(who: str, response: httpx.Response) -> ProviderError | None:
    """The ProviderError for a non-2xx answer; None for 2xx."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    excerpt = response.text[:200].replace("\n", " ") if response.content else ""
    detail = f"{who}: HTTP {status}" + (f" {excerpt}" if excerpt else "")
    if status in (401, 403):
        return ProviderError("auth", detail)
    if status == 429:
        return ProviderError("throttled", detail)
    if status >= 500 or status in (404, 405, 408, 410, 425):
        # 404/405/410 are usually a wrong URL: retried (and counted toward the circuit
        # breaker) rather than failing the customers' messages for good.
        return ProviderError("transient", detail)
    return ProviderError("permanent", detail)


def post_signed(url: str, secret: bytes | str, payload: Mapping[str, Any], timeout: float) -> None:
    """POST ``payload`` as signed JSON to ``url`` (the emergency alert webhook).

    The ``Idempotency-Key`` is a digest of the body, so a repeated alert is recognisable.
    Raises :class:`ProviderError` when no 2xx answer came back.
    """
    body = _dumps(payload)
    key = "alert-" + hashlib.sha256(body).hexdigest()[:32]
    try:
        response = httpx.post(
            url, content=body, headers=_signed_headers(secret, body, key), timeout=timeout
        )
    except httpx.HTTPError as exc:
        raise transport_error("alert webhook", exc) from None
    error = _status_error("alert webhook", response)
    if error is not None:
        raise error


def _message_json(message: Message) -> dict[str, Any]:
    return {
        "touch_id": message.touch_id,
        "key": message.key,
        "channel": message.channel,
        "customer_id": message.customer_id,
        "dealer_id": message.dealer_id,
        "address": message.address,
        "text": message.text,
        "subject": message.subject,
        "template": message.template,
        "params": dict(message.params),
        "marketing": message.marketing,
        "template_code": message.template_code,
        "sender": message.sender,
        "html": message.html,
        "unsubscribe_url": message.unsubscribe_url,
    }


def idempotency_key(batch: Sequence[Message]) -> str:
    """The request's ``Idempotency-Key``: its ``send_ref``; for one message without one, its
    key; otherwise a digest of the messages' keys (the same batch gives the same value)."""
    refs = {message.send_ref for message in batch}
    if len(refs) == 1:
        (ref,) = refs
        if ref:
            return ref
    if len(batch) == 1:
        return batch[0].key
    joined = "\n".join(sorted(message.key for message in batch))
    return "batch-" + hashlib.sha256(joined.encode("utf-8")).hexdigest()[:32]


class WebhookAdapter:
    """POST batches of messages to a receiver that implements the contract above."""

    idempotent = True

    def __init__(
        self,
        *,
        url: str,
        secret: bytes | str,
        name: str = "webhook",
        channel: str = "sms",
        max_batch: int = 100,
        rate: float = 10.0,
        timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.channel = channel
        self.max_batch = max_batch
        self.rate = rate
        self._url = url
        self._secret = _key_bytes(secret)
        self._client = httpx.Client(timeout=timeout, follow_redirects=False)

    def send(self, batch: Sequence[Message]) -> list[SendResult]:
        """POST the batch; one result per message from the receiver's answer (a message it
        did not answer for is retried). Raises ProviderError when the request failed."""
        if not batch:
            return []
        who = f"webhook '{self.name}'"
        body = _dumps({"messages": [_message_json(message) for message in batch]})
        headers = _signed_headers(self._secret, body, idempotency_key(batch))
        try:
            response = self._client.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise transport_error(who, exc) from None
        error = _status_error(who, response)
        if error is not None:
            raise error
        answers = _results(response)
        if answers is None:
            # A 2xx we cannot read: the receiver may have taken the messages.
            raise ProviderError(
                "transient",
                f"{who}: unreadable reply (HTTP {response.status_code})",
                maybe_sent=True,
            )
        results = []
        for message in batch:
            answer = answers.get(message.touch_id)
            if answer is None:
                results.append(SendResult(message.touch_id, "retry", error="no result"))
            else:
                results.append(_result(message.touch_id, answer))
        return results

    def reconcile(self, batch: Sequence[Message]) -> dict[int, str] | None:
        """None: the contract has no lookup; receivers dedupe a resend instead."""
        return None

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


def _results(response: httpx.Response) -> dict[int, Mapping[str, Any]] | None:
    """The receiver's results by touch id; None when the body is not the contract's JSON."""
    try:
        data = response.json()
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        return None
    answers: dict[int, Mapping[str, Any]] = {}
    for item in data["results"]:
        if not isinstance(item, dict):
            continue
        touch_id = item.get("touch_id")
        if isinstance(touch_id, str) and touch_id.isdigit():
            touch_id = int(touch_id)
        if isinstance(touch_id, int) and not isinstance(touch_id, bool):
            answers.setdefault(touch_id, item)  # the first answer for a touch counts
    return answers


def _result(touch_id: int, answer: Mapping[str, Any]) -> SendResult:
    status = answer.get("status")
    provider_id = answer.get("id")
    error = answer.get("error")
    outcome = _STATUSES.get(status) if isinstance(status, str) else None
    if outcome is None:
        return SendResult(touch_id, "retry", error=f"unknown status {status!r}")
    return SendResult(
        touch_id,
        outcome,
        provider_id=None if provider_id is None else str(provider_id),
        error=None if error is None else str(error)[:500],
    )


def make(context: AdapterContext) -> WebhookAdapter:
    """The adapter for ``[channels.providers.<name>]`` with ``url`` (required), ``channel``
    (``sms``), ``max_batch`` (100), ``rate`` (10/s), ``timeout`` (10 s), ``allow_http``
    (false) and ``secret_name`` (``webhook_secret``, read as ``BAOKE_WEBHOOK_SECRET``)."""
    url = context.option("url")
    if not url or not isinstance(url, str):
        raise ConfigError(f"channel provider '{context.name}' needs the option url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"channel provider '{context.name}': url must be an http(s) URL")
    if (
        parts.scheme == "http"
        and not is_loopback(parts.hostname)
        and not context.option("allow_http", False)
    ):
        # The body carries phone numbers and names: in the clear only on purpose.
        raise ConfigError(
            f"channel provider '{context.name}': url must use https "
            "(set allow_http = true for a receiver on a trusted network)"
        )
    max_batch = int(context.option("max_batch", 100))
    if not 1 <= max_batch <= 10_000:
        raise ConfigError(f"channel provider '{context.name}': max_batch must be 1-10000")
    secret = context.secret(str(context.option("secret_name", "webhook_secret")))
    return WebhookAdapter(
        url=url,
        secret=secret,
        name=context.name,
        channel=str(context.option("channel", "sms")),
        max_batch=max_batch,
        rate=float(context.option("rate", 10.0)),
        timeout=float(context.option("timeout", 10.0)),
    )
