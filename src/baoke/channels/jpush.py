"""App push through JPush (极光推送) REST API v3, over a synchronous ``httpx.Client``.

One ``POST /v3/push`` per message by default (``max_batch = 1``): texts are personalised, and
JPush pushes one payload to the whole audience of a request. The address is the customer's
JPush alias ``c<customer id>``, which the dealer app binds at login.

The push is classified for the phone makers' channels (CHANNELS.md §5.1): a service reminder
(``message.marketing`` False) is ``options.classification = 1`` and vivo ``classification 1``
(系统消息), a campaign 0 (运营消息); the Xiaomi channel id (私信 / 公信) and the Android
notification channel come from options, as they are registered per app. Labelling marketing
as a service message can get the app's account frozen, so the adapter takes the class from the
message only.

JPush has no lookup by our key, so :meth:`JPushAdapter.reconcile` answers None and the adapter
is not idempotent. Delivery counts come from the report API (:meth:`poll_receipts`).

Options (``[channels.providers.jpush]``): ``endpoint`` (https://api.jpush.cn; the Beijing
data centre is https://bjapi.push.jiguang.cn), ``report_endpoint`` (https://report.jpush.cn;
Beijing https://bjapi.push.jiguang.cn/v3/report),
``title`` (the notification title when a message has no subject), ``timeout`` (10 s),
``rate`` (10 requests/s), ``max_batch`` (1; above 1 identical texts share one push),
``time_to_live`` (seconds JPush keeps it for an offline device), ``apns_production`` (true),
``android_channel_id`` / ``android_marketing_channel_id``, ``xiaomi_channel_id`` /
``xiaomi_marketing_channel_id``, ``huawei_category`` (service messages, once Huawei approved
self-classification), ``hmos_category`` (HarmonyOS service category, default ``MARKETING`` as
an app without self-classification must send), ``hmos_intent_url`` (the page a HarmonyOS tap
opens, default ``action.system.home``), ``check_alias`` (true: the alias must be
``c<customer id>``). Secrets ``BAOKE_JPUSH_APP_KEY`` and ``BAOKE_JPUSH_MASTER_SECRET``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from baoke.channels.httpjson import transport_error
from baoke.channels.protocol import (
    AdapterContext,
    Message,
    ProviderError,
    Receipt,
    SendResult,
)
from baoke.errors import ConfigError

__all__ = ["JPushAdapter", "JPushOptions", "make"]

DEFAULT_ENDPOINT = "https://api.jpush.cn"
DEFAULT_REPORT_ENDPOINT = "https://report.jpush.cn"
MAX_AUDIENCE = 1_000  # aliases per push (JPush audience limit)
MAX_REPORT_IDS = 100  # msg_ids per received/detail query

# JPush error codes (Push API v3 "调用返回" table).
_AUTH_CODES = frozenset({1004, 1008, 2003, 2004})  # bad credentials, bad app key, app barred
_THROTTLE_CODES = frozenset({2002, 2005, 2008})  # call rate, daily volume, broadcast rate
_SERVER_CODES = frozenset({1000, 1030})  # internal error; internal timeout
_NO_TARGET = 1011  # no device bound to the audience

# JPush alias rule: up to 40 bytes of letters, digits, _ and @!#$&*+=.|￥ (and CJK).
_ALIAS = re.compile(r"^[\w@!#$&*+=.|￥]+$")


@dataclass(frozen=True)
class JPushOptions:
    """The provider's options, read once by :func:`make`."""

    endpoint: str = DEFAULT_ENDPOINT
    report_endpoint: str = DEFAULT_REPORT_ENDPOINT
    title: str = ""
    timeout: float = 10.0
    rate: float = 10.0
    max_batch: int = 1
    time_to_live: int | None = None
    apns_production: bool = True
    android_channel_id: str | None = None
    android_marketing_channel_id: str | None = None
    xiaomi_channel_id: str | None = None
    xiaomi_marketing_channel_id: str | None = None
    huawei_category: str | None = None
    hmos_category: str = "MARKETING"
    hmos_intent_url: str = "action.system.home"
    check_alias: bool = True


def sendno(touch_id: int) -> int:
    """JPush's ``sendno`` for a touch: the touch id folded into a positive 31-bit int (JPush
    echoes it back and shows it in its console, so a push can be traced to its touch)."""
    return touch_id % 2_147_483_647


class _Failed(Exception):
    """The push was answered and refused for its messages (400 with an error code)."""


class JPushAdapter:
    """Pushes notifications to aliases; see the module docstring."""

    channel = "push"
    idempotent = False

    def __init__(
        self,
        *,
        app_key: str,
        master_secret: str,
        options: JPushOptions | None = None,
        name: str = "jpush",
    ) -> None:
        self.name = name
        self.options = options or JPushOptions()
        self.max_batch = self.options.max_batch
        self.rate = self.options.rate
        # httpx keeps the credentials on the client; they never appear in our errors.
        self._client = httpx.Client(
            auth=httpx.BasicAuth(app_key, master_secret),
            timeout=self.options.timeout,
            headers={"Accept": "application/json"},
        )

    # -- the payload ------------------------------------------------------------------------

    def payload(self, group: Sequence[Message]) -> dict[str, Any]:
        """The ``/v3/push`` body for messages that share one text (one alias each)."""
        first = group[0]
        opts = self.options
        title = first.subject or opts.title
        marketing = first.marketing
        # The app reads these to report an open against its touch.
        extras = {"touch_key": first.key} if len(group) == 1 else {}

        android: dict[str, Any] = {"alert": first.text, "extras": extras}
        channel_id = opts.android_marketing_channel_id if marketing else opts.android_channel_id
        if title:
            android["title"] = title
        if channel_id:
            android["channel_id"] = channel_id
        ios: dict[str, Any] = {
            "alert": {"title": title, "body": first.text} if title else first.text,
            "sound": "default",
            "extras": extras,
        }
        hmos: dict[str, Any] = {
            "alert": first.text,
            "category": "MARKETING" if marketing else opts.hmos_category,
            # JPush requires hmos.intent; the default opens the app's entry ability.
            "intent": {"url": opts.hmos_intent_url},
            "extras": extras,
        }
        if title:
            hmos["title"] = title

        third_party: dict[str, dict[str, Any]] = {"vivo": {"classification": 0 if marketing else 1}}
        xiaomi = opts.xiaomi_marketing_channel_id if marketing else opts.xiaomi_channel_id
        if xiaomi:
            third_party["xiaomi"] = {"channel_id": xiaomi}
        if opts.huawei_category:
            third_party["huawei"] = {"category": "MARKETING" if marketing else opts.huawei_category}

        options: dict[str, Any] = {
            "sendno": sendno(first.touch_id),
            "apns_production": opts.apns_production,
            "classification": 0 if marketing else 1,
            "third_party_channel": third_party,
        }
        if opts.time_to_live is not None:
            options["time_to_live"] = opts.time_to_live
        return {
            "platform": "all",
            "audience": {"alias": [message.address for message in group]},
            "notification": {"alert": first.text, "android": android, "ios": ios, "hmos": hmos},
            "options": options,
        }

    # -- sending -----------------------------------------------------------------------------

    def send(self, batch: Sequence[Message]) -> list[SendResult]:
        """Push the batch: one request per distinct text (one per message unless max_batch is
        raised for identical texts). Raises ProviderError when the first request fails as a
        whole; a later request's failure only marks its own messages."""
        results: list[SendResult] = []
        groups: dict[tuple[str, str | None, bool], list[Message]] = {}
        for message in batch:
            problem = self._address_problem(message)
            if problem:
                results.append(SendResult(message.touch_id, "failed", error=problem))
                continue
            title = message.subject or self.options.title
            groups.setdefault((message.text, title, message.marketing), []).append(message)

        pending = list(groups.values())
        for index, group in enumerate(pending):
            try:
                msg_id = self._push(group)
            except _Failed as refused:
                results.extend(SendResult(m.touch_id, "failed", error=str(refused)) for m in group)
            except ProviderError as error:
                if index == 0:
                    raise  # nothing of this batch was pushed yet
                # Earlier requests of this batch went out: report them, and keep the
                # customer from a duplicate where this one may have been pushed.
                for later in pending[index:]:
                    for m in later:
                        if later is group and error.maybe_sent:
                            note = f"{error} — it may have been pushed"
                            results.append(SendResult(m.touch_id, "doubt", error=note))
                        else:
                            results.append(SendResult(m.touch_id, "retry", error=str(error)))
                break
            else:
                results.extend(SendResult(m.touch_id, "sent", provider_id=msg_id) for m in group)
        return results

    def _address_problem(self, message: Message) -> str | None:
        alias = message.address
        if not alias or len(alias.encode("utf-8")) > 40 or not _ALIAS.match(alias):
            return "jpush: not a valid alias"
        if self.options.check_alias and alias != f"c{message.customer_id}":
            # A personalised text must not reach another customer's phone.
            return "jpush: the alias is not this customer's (expected c<customer id>)"
        return None

    def _push(self, group: Sequence[Message]) -> str:
        """POST one push; its msg_id. Raises _Failed (refused for these messages) or
        ProviderError (the request failed)."""
        url = self.options.endpoint.rstrip("/") + "/v3/push"
        try:
            response = self._client.post(url, json=self.payload(group))
        except httpx.HTTPError as exc:
            raise transport_error("jpush", exc) from None
        data, code, text = _read(response)
        _raise_for(response.status_code, code, text)
        status = response.status_code
        if status == 200:
            msg_id = data.get("msg_id") if isinstance(data, dict) else None
            if msg_id in (None, "", 0):
                raise ProviderError(
                    "transient", "jpush: unreadable reply (HTTP 200)", maybe_sent=True
                )
            return str(msg_id)
        if status in (404, 405, 410):
            raise ProviderError("transient", f"jpush: HTTP {status} (check the endpoint option)")
        if 400 <= status < 500:
            raise _Failed(f"jpush {code}: {text}" if code is not None else f"jpush: HTTP {status}")
        raise ProviderError("transient", f"jpush: unexpected HTTP {status}", maybe_sent=True)

    # -- receipts ----------------------------------------------------------------------------

    def poll_receipts(self, msg_ids: Sequence[str]) -> list[Receipt]:
        """Delivery receipts for pushes (``GET /v3/received/detail``, 100 ids a call, pushes of
        the last 28 days): a msg_id whose received counts add up above zero is ``delivered``.

        ``at`` is when this poll saw it (JPush reports counts, not times); the key
        ``jpush:received:<msg_id>`` makes a repeated poll idempotent.
        """
        url = _report_url(self.options.report_endpoint)
        receipts: list[Receipt] = []
        ids = [str(msg_id) for msg_id in dict.fromkeys(msg_ids) if str(msg_id)]
        for start in range(0, len(ids), MAX_REPORT_IDS):
            chunk = ids[start : start + MAX_REPORT_IDS]
            try:
                response = self._client.get(url, params={"msg_ids": ",".join(chunk)})
            except httpx.HTTPError as exc:
                # A query sends nothing to anyone: never "maybe sent".
                raise ProviderError("transient", f"jpush report: {type(exc).__name__}") from None
            data, code, text = _read(response)
            _raise_for(response.status_code, code, text)
            if response.status_code != 200 or not isinstance(data, list):
                raise ProviderError(
                    "transient", f"jpush report: unreadable reply (HTTP {response.status_code})"
                )
            now = datetime.now(UTC)
            for entry in data:
                if not isinstance(entry, dict) or entry.get("msg_id") in (None, ""):
                    continue
                counts = {
                    name: value
                    for name, value in entry.items()
                    if name.endswith("_received") and isinstance(value, int) and value > 0
                }
                total = sum(counts.values())
                if total > 0:
                    msg_id = str(entry["msg_id"])
                    detail = ", ".join(f"{name}={value}" for name, value in sorted(counts.items()))
                    receipts.append(
                        Receipt(
                            provider_id=msg_id,
                            status="delivered",
                            at=now,
                            key=f"jpush:received:{msg_id}",
                            detail=detail,
                        )
                    )
        return receipts

    def reconcile(self, batch: Sequence[Message]) -> dict[int, str] | None:
        """None: JPush cannot look a push up by our key."""
        return None

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


def _report_url(endpoint: str) -> str:
    """``/v3/received/detail`` under a host (https://report.jpush.cn), or ``/received/detail``
    under a report base with a path (Beijing: https://bjapi.push.jiguang.cn/v3/report)."""
    base = endpoint.rstrip("/")
    return base + ("/received/detail" if urlsplit(base).path else "/v3/received/detail")


def _read(response: httpx.Response) -> tuple[Any, int | None, str]:
    """The JSON body (None when unreadable) and its ``error.code`` / ``error.message``."""
    try:
        data: Any = response.json()
    except ValueError:
        return None, None, ""
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        code = error.get("code")
        message = str(error.get("message") or "")[:200]
        return data, code if isinstance(code, int) else None, message
    return data, None, ""


def _raise_for(status: int, code: int | None, text: str) -> None:
    """Raise the ProviderError a whole-request failure maps to; nothing otherwise."""
    detail = f"jpush {code}: {text}" if code is not None else f"jpush: HTTP {status}"
    if status == 429 or code in _THROTTLE_CODES:
        raise ProviderError("throttled", detail)
    if status in (401, 403) or code in _AUTH_CODES:
        raise ProviderError("auth", detail)
    if status >= 500 or code in _SERVER_CODES:
        # 1030 / 504 are JPush or its gateway timing out inside: the push may have gone out.
        raise ProviderError("transient", detail, maybe_sent=code == 1030 or status == 504)


def _optional_str(options: Mapping[str, Any], name: str) -> str | None:
    value = options.get(name)
    return None if value in (None, "") else str(value)


def make(context: AdapterContext) -> JPushAdapter:
    """The adapter for ``[channels.providers.<name>]`` (options in the module docstring)."""
    raw = context.options
    max_batch = int(raw.get("max_batch", 1))
    if not 1 <= max_batch <= MAX_AUDIENCE:
        raise ConfigError(f"channel provider '{context.name}': max_batch must be 1-{MAX_AUDIENCE}")
    ttl = raw.get("time_to_live")
    options = JPushOptions(
        endpoint=str(raw.get("endpoint", DEFAULT_ENDPOINT)),
        report_endpoint=str(raw.get("report_endpoint", DEFAULT_REPORT_ENDPOINT)),
        title=str(raw.get("title", "")),
        timeout=float(raw.get("timeout", 10.0)),
        rate=float(raw.get("rate", 10.0)),
        max_batch=max_batch,
        time_to_live=None if ttl is None else int(ttl),
        apns_production=bool(raw.get("apns_production", True)),
        android_channel_id=_optional_str(raw, "android_channel_id"),
        android_marketing_channel_id=_optional_str(raw, "android_marketing_channel_id"),
        xiaomi_channel_id=_optional_str(raw, "xiaomi_channel_id"),
        xiaomi_marketing_channel_id=_optional_str(raw, "xiaomi_marketing_channel_id"),
        huawei_category=_optional_str(raw, "huawei_category"),
        hmos_category=str(raw.get("hmos_category") or "MARKETING"),
        hmos_intent_url=str(raw.get("hmos_intent_url") or "action.system.home"),
        check_alias=bool(raw.get("check_alias", True)),
    )
    return JPushAdapter(
        app_key=context.secret("jpush_app_key"),
        master_secret=context.secret("jpush_master_secret"),
        options=options,
        name=context.name,
    )
