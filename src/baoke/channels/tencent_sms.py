"""Tencent Cloud SMS (API 2021-01-11) over httpx, signed with TC3-HMAC-SHA256.

Every call is ``POST /`` to ``sms.tencentcloudapi.com`` with a JSON body and the action in
``X-TC-Action``, signed with Tencent's signature v3 ("签名方法 v3",
cloud.tencent.com/document/api/213/30654; every product's API docs carry the same text).
:func:`tc3_sign` is the signature as a pure function; the tests check it against the worked
example that page publishes.

One ``SendSms`` carries up to 200 numbers (``PhoneNumberSet``, E.164) but one
``TemplateParamSet`` for all of them, so a batch is sent as one request per distinct parameter
set: a personalised template (a name, a plate number) costs one request per message. The reply
has a ``SendStatusSet`` entry per number: ``Ok`` is sent (its ``SerialNo`` is the provider id),
``LimitExceeded.*`` waits, ``FailedOperation.*`` / ``InvalidParameterValue.*`` fail.

``SessionContext`` carries the outbox's ``send_ref`` and comes back in the status pull:
:meth:`TencentSms.reconcile` asks ``PullSmsSendStatusByPhoneNumber`` per number and matches on
it. Delivery receipts and replies are pushed to callback URLs: :func:`parse_status` and
:func:`parse_reply` read them, and the receiver answers :data:`CALLBACK_ACK`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from baoke.channels.httpjson import (
    authorization_fields,
    callback_field,
    callback_items,
    json_or_none,
    post,
    send_in_turn,
    shanghai_time,
    unreadable_reply,
)
from baoke.channels.protocol import (
    AdapterContext,
    Inbound,
    Message,
    ProviderError,
    Receipt,
    SendResult,
)
from baoke.errors import ConfigError, InputError

__all__ = [
    "ALGORITHM",
    "API_VERSION",
    "CALLBACK_ACK",
    "DEFAULT_ENDPOINT",
    "SERVICE",
    "Tc3Signature",
    "TencentSms",
    "e164",
    "make",
    "parse_authorization",
    "parse_reply",
    "parse_status",
    "tc3_headers",
    "tc3_sign",
]

API_VERSION = "2021-01-11"
SERVICE = "sms"
DEFAULT_ENDPOINT = "https://sms.tencentcloudapi.com"
DEFAULT_REGION = "ap-guangzhou"
ALGORITHM = "TC3-HMAC-SHA256"
BATCH_LIMIT = 200  # PhoneNumberSet: at most 200 numbers per request
CONTENT_TYPE = "application/json; charset=utf-8"
CALLBACK_ACK = b'{"result":0,"errmsg":"OK"}'
"""What the status / reply callback receiver answers (HTTP 200)."""


# -- the TC3 signature ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Tc3Signature:
    """The steps of one TC3-HMAC-SHA256 signature, for the request and for tests."""

    canonical_request: str
    string_to_sign: str
    credential_scope: str
    signed_headers: str
    signature: str
    authorization: str


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def tc3_sign(
    *,
    secret_id: str,
    secret_key: str,
    service: str,
    headers: Mapping[str, str],
    payload: bytes,
    timestamp: int,
    method: str = "POST",
    canonical_uri: str = "/",
    canonical_query: str = "",
) -> Tc3Signature:
    """Sign one request with TC3-HMAC-SHA256 (Tencent Cloud "签名方法 v3").

    ``headers`` are the headers to sign (at least ``content-type`` and ``host``); names and
    values are lower-cased and trimmed, as the method says. ``payload`` is the exact body sent,
    ``timestamp`` the ``X-TC-Timestamp`` (its UTC date scopes the key). Pure.
    """
    entries = sorted(
        (name.lower().strip(), value.lower().strip()) for name, value in headers.items()
    )
    canonical_headers = "".join(f"{name}:{value}\n" for name, value in entries)
    signed_headers = ";".join(name for name, _ in entries)
    canonical_request = "\n".join(
        [
            method.upper(),
            canonical_uri,
            canonical_query,
            canonical_headers,
            signed_headers,
            hashlib.sha256(payload).hexdigest(),
        ]
    )
    # The date is UTC: an Asia/Shanghai date would break every call between 00:00 and 08:00.
    date = dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d")
    scope = f"{date}/{service}/tc3_request"
    string_to_sign = "\n".join(
        [
            ALGORITHM,
            str(timestamp),
            scope,
            hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
        ]
    )
    secret_date = _hmac(f"TC3{secret_key}".encode(), date)
    secret_service = _hmac(secret_date, service)
    secret_signing = _hmac(secret_service, "tc3_request")
    signature = hmac.new(secret_signing, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    authorization = (
        f"{ALGORITHM} Credential={secret_id}/{scope}, SignedHeaders={signed_headers}, "
        f"Signature={signature}"
    )
    return Tc3Signature(
        canonical_request, string_to_sign, scope, signed_headers, signature, authorization
    )


def tc3_headers(
    *,
    host: str,
    action: str,
    payload: bytes,
    secret_id: str,
    secret_key: str,
    timestamp: int,
    region: str = DEFAULT_REGION,
    version: str = API_VERSION,
    service: str = SERVICE,
) -> dict[str, str]:
    """The headers of one signed API 3.0 ``POST /`` with a JSON body.

    ``content-type`` and ``host`` are signed, as the SDKs do (tencentcloud-sdk-python); the
    action, version and region travel beside them.
    """
    signed = tc3_sign(
        secret_id=secret_id,
        secret_key=secret_key,
        service=service,
        headers={"content-type": CONTENT_TYPE, "host": host},
        payload=payload,
        timestamp=timestamp,
    )
    return {
        "authorization": signed.authorization,
        "content-type": CONTENT_TYPE,
        "host": host,
        "x-tc-action": action,
        "x-tc-timestamp": str(timestamp),
        "x-tc-version": version,
        "x-tc-region": region,
    }


def parse_authorization(value: str) -> tuple[str, str, str, list[str], str] | None:
    """``(secret id, date, service, signed header names, signature)`` of a TC3 Authorization
    header; None when it is not one."""
    fields = authorization_fields(value, ALGORITHM)
    if fields is None:
        return None
    try:
        secret_id, date, service, terminator = fields["Credential"].rsplit("/", 3)
        signed = fields["SignedHeaders"].split(";")
        signature = fields["Signature"]
    except (KeyError, ValueError):
        return None
    if terminator != "tc3_request":
        return None
    return secret_id, date, service, signed, signature


def e164(address: str) -> str:
    """A mainland mobile as Tencent wants it: ``+86`` and the 11 digits (an address already
    in E.164 stays)."""
    value = address.strip()
    if value.startswith("+"):
        return value
    if value.startswith("0086"):
        return "+" + value[2:]
    if value.startswith("86") and len(value) == 13:
        return "+" + value
    return "+86" + value


# -- response codes -------------------------------------------------------------------------------

RequestClass = Literal["auth", "throttled", "transient", "retry", "failed"]


def _request_class(code: str) -> RequestClass:
    """What an ``Error.Code`` of the whole request means."""
    if code.startswith(("AuthFailure", "UnauthorizedOperation")) or code in (
        "FailedOperation.InsufficientBalanceInSmsPackage",
        "IpInBlacklist",
        "IpNotInWhitelist",
        "InvalidParameterValue.SdkAppIdNotExist",
    ):
        # The key, the source IP, the app or the account's balance: fail over.
        return "auth"
    if code.startswith("RequestLimitExceeded") or code in (
        "LimitExceeded.AppDailyLimit",
        "LimitExceeded.AppGlobalDailyLimit",
        "LimitExceeded.AppMainlandChinaDailyLimit",
        "LimitExceeded.DailyLimit",
    ):
        return "throttled"
    if code.startswith(("InternalError", "ResourceUnavailable")) or code == "ServiceUnavailable":
        return "transient"
    if code == "FailedOperation.MarketingSendTimeConstraint":
        return "retry"  # marketing SMS only 08:00-22:00: later, not never
    return "failed"  # the template, the signature, a parameter: refused for good


def _number_outcome(code: str) -> Literal["sent", "retry", "failed"]:
    """What one ``SendStatusSet`` entry's ``Code`` means for its message."""
    if code == "Ok":
        return "sent"
    if code.startswith(("LimitExceeded", "InternalError")) or code == (
        "FailedOperation.MarketingSendTimeConstraint"
    ):
        return "retry"
    return "failed"


class _Refused(Exception):
    """The whole request was refused, for the messages' sake (not the account's)."""

    def __init__(self, kind: RequestClass, error: str) -> None:
        super().__init__(error)
        self.kind = kind
        self.error = error


# -- the adapter ----------------------------------------------------------------------------------

Planned = tuple[Message, str, tuple[str, ...]]  # a message, its TemplateId, its TemplateParamSet


class TencentSms:
    """The Tencent Cloud SMS adapter (see the module's docstring). Thread-safe: one keep-alive
    ``httpx.Client`` is shared; nothing else changes after construction."""

    channel = "sms"
    idempotent = False
    # The status pull lists a message only once its carrier receipt came: ask after that.
    reconcile_after = 300.0

    def __init__(
        self,
        *,
        name: str = "tencent",
        secret_id: str,
        secret_key: str,
        sdk_app_id: str,
        sign_name: str,
        endpoint: str = DEFAULT_ENDPOINT,
        region: str = DEFAULT_REGION,
        templates: Mapping[str, str] | None = None,
        template_params: Mapping[str, Sequence[str]] | None = None,
        batch: bool = True,
        rate: float = 50.0,
        timeout: float = 5.0,
        reconcile_hours: int = 48,
    ) -> None:
        self.name = name
        self.sdk_app_id = sdk_app_id
        self.sign_name = sign_name
        self.region = region
        self.templates = dict(templates or {})
        self.template_params = {k: list(v) for k, v in (template_params or {}).items()}
        self.batch = batch
        self.max_batch = BATCH_LIMIT if batch else 1
        self.rate = rate
        self.reconcile_hours = reconcile_hours
        self._secret_id = secret_id
        self._secret_key = secret_key
        parts = urlsplit(endpoint)
        self._host = parts.netloc
        self._url = f"{parts.scheme}://{parts.netloc}/"
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )

    # -- templates ------------------------------------------------------------------------------

    def template_id(self, message: Message) -> str | None:
        """The approved TemplateId of ``message``: the ``templates`` option's entry for its
        ``playbook/template`` name, else the message's own ``template_code``."""
        if message.template and message.template in self.templates:
            return self.templates[message.template]
        return message.template_code or None

    def template_param_set(self, message: Message) -> list[str]:
        """``TemplateParamSet``: the values of ``message.params`` in the order the
        ``template_params`` option lists for its template ({1}, {2}, …), else in the params'
        own order. KeyError names a listed variable the message lacks."""
        order = self.template_params.get(message.template or "")
        if order is None:
            return [str(value) for value in message.params.values()]
        return [str(message.params[name]) for name in order]

    # -- sending --------------------------------------------------------------------------------

    def send(self, batch: Sequence[Message]) -> list[SendResult]:
        """Send ``batch``: one SendSms per template and parameter set (≤ 200 numbers each)."""
        results: list[SendResult] = []
        ready: list[Planned] = []
        for message in batch:
            template = self.template_id(message)
            name = message.template or f"touch {message.touch_id}"
            if template is None:
                error = f"no approved Tencent template for {name}"
                results.append(SendResult(message.touch_id, "failed", error=error))
                continue
            try:
                values = tuple(self.template_param_set(message))
            except KeyError as missing:
                error = f"template {name} needs the parameter {missing.args[0]}"
                results.append(SendResult(message.touch_id, "failed", error=error))
                continue
            ready.append((message, template, values))
        results.extend(send_in_turn(self._plan(ready), self._send_group))
        return results

    def _plan(self, ready: list[Planned]) -> list[list[Planned]]:
        if not self.batch:
            return [[item] for item in ready]
        groups: dict[tuple[str, tuple[str, ...]], list[Planned]] = {}
        for item in ready:
            groups.setdefault((item[1], item[2]), []).append(item)
        return [
            group[start : start + BATCH_LIMIT]
            for group in groups.values()
            for start in range(0, len(group), BATCH_LIMIT)
        ]

    def _send_group(self, group: list[Planned]) -> list[SendResult]:
        messages = [item[0] for item in group]
        first = messages[0]
        payload = {
            "PhoneNumberSet": [e164(m.address) for m in messages],
            "SmsSdkAppId": self.sdk_app_id,
            "TemplateId": group[0][1],
            "SignName": self.sign_name,
            "TemplateParamSet": list(group[0][2]),
            # One SessionContext per request: the dispatcher gives a request one send_ref.
            "SessionContext": first.send_ref or first.key,
        }
        try:
            response = self._call("SendSms", payload)
        except _Refused as refused:
            outcome: Literal["retry", "failed"] = "retry" if refused.kind == "retry" else "failed"
            return [SendResult(m.touch_id, outcome, error=refused.error) for m in messages]
        statuses = response.get("SendStatusSet")
        if not isinstance(statuses, list):
            raise ProviderError("transient", "Tencent SendSms: no SendStatusSet", maybe_sent=True)
        by_number: dict[str, list[Mapping[str, Any]]] = {}
        for status in statuses:
            if isinstance(status, Mapping):
                by_number.setdefault(e164(str(status.get("PhoneNumber", ""))), []).append(status)
        results: list[SendResult] = []
        for message in messages:
            queue = by_number.get(e164(message.address))
            if not queue:
                # Tencent answered without this number: whether it went out is unknown.
                raise ProviderError(
                    "transient",
                    "Tencent SendSms: a number is missing from SendStatusSet",
                    maybe_sent=True,
                )
            status = queue.pop(0)
            code = str(status.get("Code", ""))
            result = _number_outcome(code)
            if result == "sent":
                serial = status.get("SerialNo")
                results.append(
                    SendResult(message.touch_id, "sent", str(serial) if serial else None)
                )
            else:
                text = str(status.get("Message") or "")[:200]
                error = f"{code}: {text}" if text else code
                results.append(SendResult(message.touch_id, result, error=error))
        return results

    def _call(self, action: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """POST one signed request; the reply's ``Response`` object. A request-level ``Error``
        raises ProviderError when it is the account's or the service's (auth, throttled,
        transient), ``_Refused`` when it is the messages' (a template, a parameter)."""
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = tc3_headers(
            host=self._host,
            action=action,
            payload=body,
            secret_id=self._secret_id,
            secret_key=self._secret_key,
            timestamp=int(time.time()),
            region=self.region,
        )
        who = f"Tencent {action}"
        response = post(self._client, self._url, content=body, headers=headers, who=who)
        reply = json_or_none(response)
        inner = reply.get("Response") if isinstance(reply, dict) else None
        if not isinstance(inner, dict):
            raise unreadable_reply(who, response.status_code)
        error = inner.get("Error")
        if isinstance(error, dict):
            code = str(error.get("Code", ""))
            kind = _request_class(code)
            text = str(error.get("Message") or "")[:200]
            described = f"{code} (RequestId {inner.get('RequestId', '?')})"
            if kind in ("auth", "throttled", "transient"):
                raise ProviderError(kind, f"Tencent {described}")
            raise _Refused(kind, f"{code}: {text}" if text else code)
        return inner

    # -- reconciliation -------------------------------------------------------------------------

    def reconcile(self, batch: Sequence[Message]) -> dict[int, str]:
        """Which messages of ``batch`` Tencent has: ``PullSmsSendStatusByPhoneNumber`` per
        number over the last ``reconcile_hours`` and a match on ``SessionContext``.

        The pull lists messages whose carrier receipt has come back; one sent a moment ago may
        not show yet.
        """
        refs = {m.send_ref or m.key for m in batch}
        by_phone: dict[str, list[Message]] = {}
        for message in batch:
            by_phone.setdefault(e164(message.address), []).append(message)
        found: dict[int, str] = {}
        begin = int(time.time()) - self.reconcile_hours * 3600
        for phone, messages in by_phone.items():
            payload = {
                "BeginTime": begin,
                "Offset": 0,
                "Limit": 100,
                "PhoneNumber": phone,
                "SmsSdkAppId": self.sdk_app_id,
            }
            try:
                response = self._call("PullSmsSendStatusByPhoneNumber", payload)
            except _Refused:
                continue  # e.g. an invalid number: nothing can have gone to it
            for entry in response.get("PullSmsSendStatusSet") or []:
                if not isinstance(entry, Mapping):
                    continue
                context = str(entry.get("SessionContext") or "")
                serial = entry.get("SerialNo")
                if context not in refs or not serial:
                    continue
                open_ = [m for m in messages if m.touch_id not in found]
                mine = [m for m in open_ if (m.send_ref or m.key) == context]
                chosen = (mine or open_)[:1]
                if chosen:
                    found[chosen[0].touch_id] = str(serial)
        return found

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


# -- callbacks ------------------------------------------------------------------------------------


_STATUS = "Tencent status callback"
_REPLY = "Tencent reply callback"
# The reply callback sends one object, the status callback an array.
_OBJECTS = "a JSON object or array of objects"


def parse_status(body: bytes) -> list[Receipt]:
    """Receipts from a status callback (cloud.tencent.com/document/product/382/5807): a JSON
    array of ``{user_receive_time, nationcode, mobile, report_status, errmsg, description,
    sid}``. ``user_receive_time`` is Asia/Shanghai local time; the receipts are in UTC. A
    malformed body raises InputError."""
    receipts: list[Receipt] = []
    for index, item in enumerate(callback_items(body, _STATUS, _OBJECTS)):
        sid = callback_field(item, "sid", _STATUS, index)
        mobile = callback_field(item, "mobile", _STATUS, index)
        report = callback_field(item, "report_status", _STATUS, index).upper()
        if report not in ("SUCCESS", "FAIL"):
            raise InputError(
                f"{_STATUS}: item {index} has report_status {report!r}, expected SUCCESS or FAIL"
            )
        at = shanghai_time(
            callback_field(item, "user_receive_time", _STATUS, index), _STATUS, index
        )
        detail = None
        if report == "FAIL":
            detail = " ".join(str(item.get(k) or "") for k in ("errmsg", "description")).strip()
        receipts.append(
            Receipt(
                provider_id=sid,
                status="delivered" if report == "SUCCESS" else "failed",
                at=at,
                key=f"tencent:status:{sid}:{report}",
                address=mobile,
                detail=detail or None,
            )
        )
    return receipts


def parse_reply(body: bytes) -> list[Inbound]:
    """Replies from a reply callback (cloud.tencent.com/document/product/382/5809): ``{extend,
    mobile, nationcode, sign, text, time}`` with ``time`` a Unix timestamp (one object, or an
    array of them). A malformed body raises InputError."""
    replies: list[Inbound] = []
    for index, item in enumerate(callback_items(body, _REPLY, _OBJECTS)):
        mobile = callback_field(item, "mobile", _REPLY, index)
        text = item.get("text")
        if not isinstance(text, str):
            raise InputError(f"{_REPLY}: item {index} has no 'text'")
        moment = item.get("time")
        if isinstance(moment, bool) or not isinstance(moment, int | float | str):
            raise InputError(f"{_REPLY}: item {index} has no Unix 'time'")
        try:
            at = dt.datetime.fromtimestamp(int(moment), dt.UTC)
        except (ValueError, OverflowError, OSError) as exc:
            raise InputError(
                f"{_REPLY}: item {index} has a time {moment!r}, expected Unix seconds"
            ) from exc
        # The same reply pushed twice has the same number, second and text.
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        replies.append(
            Inbound(
                address=mobile,
                text=text,
                at=at,
                key=f"tencent:reply:{mobile}:{int(moment)}:{digest}",
            )
        )
    return replies


# -- the factory ----------------------------------------------------------------------------------


def _required(context: AdapterContext, name: str, example: str) -> str:
    value = context.option(name)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # sdk_app_id = 1400006666 written as a number
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"channel provider '{context.name}' needs the option {name} (e.g. {name} = "
            f"{example}) in [channels.providers.{context.name}]"
        )
    return value.strip()


def make(context: AdapterContext) -> TencentSms:
    """The Tencent adapter of ``[channels.providers.<name>]``.

    Options: ``sdk_app_id`` and ``sign_name`` (required), ``endpoint``, ``region`` (default
    ap-guangzhou), ``templates``, ``template_params``, ``batch`` (default true), ``rate``
    (requests/s, default 50), ``timeout`` (s, default 5), ``reconcile_hours`` (default 48).
    Secrets: ``BAOKE_TENCENT_SECRET_ID``, ``BAOKE_TENCENT_SECRET_KEY``.
    """
    sdk_app_id = _required(context, "sdk_app_id", '"1400006666"')
    sign_name = _required(context, "sign_name", '"某某汽车"').strip("【】[]")
    endpoint = context.option("endpoint", DEFAULT_ENDPOINT)
    if not isinstance(endpoint, str) or urlsplit(endpoint).scheme not in ("http", "https"):
        raise context.option_error("endpoint", "an http(s) URL")
    region = context.option("region", DEFAULT_REGION)
    if not isinstance(region, str) or not region:
        raise context.option_error("region", 'a region name such as "ap-guangzhou"')
    templates = context.option("templates", {}) or {}
    if not isinstance(templates, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str | int) and not isinstance(v, bool)
        for k, v in templates.items()
    ):
        raise context.option_error("templates", 'a table of "playbook/template" = "<TemplateId>"')
    order = context.option("template_params", {}) or {}
    if not isinstance(order, Mapping) or not all(
        isinstance(k, str)
        and isinstance(v, list | tuple)
        and all(isinstance(name, str) for name in v)
        for k, v in order.items()
    ):
        raise context.option_error(
            "template_params", 'a table of "playbook/template" = ["name", "date", …]'
        )
    batch = context.option("batch", True)
    if not isinstance(batch, bool):
        raise context.option_error("batch", "true or false")
    hours = context.option("reconcile_hours", 48)
    if isinstance(hours, bool) or not isinstance(hours, int) or not 1 <= hours <= 7 * 24:
        # PullSmsSendStatusByPhoneNumber reaches 7 days back.
        raise context.option_error("reconcile_hours", "a whole number of hours from 1 to 168")
    return TencentSms(
        name=context.name,
        secret_id=context.secret("tencent_secret_id"),
        secret_key=context.secret("tencent_secret_key"),
        sdk_app_id=sdk_app_id,
        sign_name=sign_name,
        endpoint=endpoint,
        region=region,
        templates={k: str(v) for k, v in templates.items()},
        template_params={k: list(v) for k, v in order.items()},
        batch=batch,
        rate=context.positive_number("rate", 50.0),
        timeout=context.positive_number("timeout", 5.0),
        reconcile_hours=hours,
    )
