"""What the HTTP/JSON provider adapters share: the mapping of a request that got no answer to a
:class:`ProviderError`, the signed-POST of the SMS APIs, their ``Authorization`` header's
fields, the reading of JSON callback pushes, and sending a call's requests in turn."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import httpx

from baoke.channels.protocol import Message, ProviderError, SendResult
from baoke.errors import InputError

__all__ = [
    "SHANGHAI",
    "authorization_fields",
    "callback_field",
    "callback_items",
    "json_or_none",
    "post",
    "send_in_turn",
    "shanghai_time",
    "transport_error",
    "unreadable_reply",
]

SHANGHAI = ZoneInfo("Asia/Shanghai")
Item = TypeVar("Item", bound=tuple[Any, ...])  # a planned message: the Message first


# -- requests -----------------------------------------------------------------------------------


def transport_error(who: str, exc: httpx.HTTPError) -> ProviderError:
    """A request that got no HTTP answer. Only the exception's class is named: its text can
    carry the URL, and a URL may hold a token."""
    name = type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        # The request never left this host.
        return ProviderError("transient", f"{who}: cannot connect ({name})")
    if isinstance(exc, httpx.TransportError):
        # The body may have been received and acted on; only the answer is missing.
        return ProviderError("transient", f"{who}: no answer ({name})", maybe_sent=True)
    return ProviderError("transient", f"{who}: request failed ({name})")


def post(
    client: httpx.Client, url: str, *, content: bytes, headers: Mapping[str, str], who: str
) -> httpx.Response:
    """POST one signed SMS API request (``who`` names it in errors, e.g. ``Aliyun SendSms``).

    A request that never left is ``transient``; one whose body went out (read/write timeouts,
    broken connections, an undecodable reply) is ``transient`` and ``maybe_sent``.
    """
    try:
        return client.post(url, content=content, headers=headers)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise ProviderError("transient", f"{who}: {type(exc).__name__}") from exc
    except httpx.RequestError as exc:
        raise ProviderError("transient", f"{who}: {type(exc).__name__}", maybe_sent=True) from exc


def json_or_none(response: httpx.Response) -> Any:
    """The JSON of ``response``'s body; None when it is not JSON."""
    try:
        return json.loads(response.content)
    except ValueError:
        return None


def unreadable_reply(who: str, status: int) -> ProviderError:
    """The error for an answer without the expected JSON. 502/504 are a gateway that gave up
    waiting for the provider; 2xx without a readable body may have been processed. A 500/503
    or a 4xx was not."""
    in_doubt = status < 300 or status in (502, 504)
    return ProviderError(
        "transient", f"{who}: unreadable reply (HTTP {status})", maybe_sent=in_doubt
    )


def authorization_fields(value: str, scheme: str) -> dict[str, str] | None:
    """The ``name=value`` fields of an ``Authorization: <scheme> a=1, b=2`` header; None when
    the scheme differs or a field has no ``=``."""
    found, _, rest = value.partition(" ")
    if found != scheme:
        return None
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, item = part.strip().partition("=")
        if not sep:
            return None
        fields[name] = item
    return fields


# -- callbacks ----------------------------------------------------------------------------------


def callback_items(body: bytes, where: str, expected: str) -> list[dict[str, Any]]:
    """The objects of a JSON callback body: one object or an array of them. ``where`` names
    the callback in errors (``Aliyun SmsReport callback``), ``expected`` what it should be.
    A malformed body raises InputError."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{where}: the body is not JSON ({exc})") from exc
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise InputError(f"{where}: expected {expected}")
    return data


def callback_field(item: Mapping[str, Any], name: str, where: str, index: int) -> str:
    """Item ``index``'s non-empty field ``name`` as text; InputError when it is missing."""
    value = item.get(name)
    if value is None or value == "":
        raise InputError(f"{where}: item {index} has no '{name}'")
    return str(value)


def shanghai_time(value: str, where: str, index: int) -> dt.datetime:
    """A ``yyyy-MM-dd HH:mm:ss`` Asia/Shanghai local time, in UTC; InputError otherwise."""
    try:
        local = dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S")
    except ValueError as exc:
        raise InputError(
            f"{where}: item {index} has a time {value!r}, expected yyyy-MM-dd HH:mm:ss"
        ) from exc
    return local.replace(tzinfo=SHANGHAI).astimezone(dt.UTC)


def send_in_turn(
    requests: Sequence[list[Item]], send: Callable[[list[Item]], list[SendResult]]
) -> list[SendResult]:
    """Send one adapter call's requests in turn (each item a message first).

    A failure before anything went out fails the call as a whole (the dispatcher retries or
    fails over). After that, what is known stands and the rest is retried, or, when the
    failed request may have gone through, the whole call is in doubt and reconciliation
    (by the request's reference) tells which arrived.
    """
    done: list[SendResult] = []
    for index, group in enumerate(requests):
        try:
            done.extend(send(group))
        except ProviderError as exc:
            if not any(result.outcome == "sent" for result in done):
                raise
            if exc.maybe_sent:
                raise ProviderError(exc.kind, str(exc), maybe_sent=True) from exc
            rest: list[Message] = [item[0] for later in requests[index:] for item in later]
            error = f"not sent: {exc}"
            done.extend(SendResult(m.touch_id, "retry", error=error) for m in rest)
            break
    return done
