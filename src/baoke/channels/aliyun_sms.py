"""Aliyun SMS (Dysmsapi, API version 2017-05-25) over httpx, signed with ACS3-HMAC-SHA256.

Requests are RPC style: ``POST /`` to ``dysmsapi.aliyuncs.com`` with the action in the
``x-acs-action`` header and the parameters as a form body, signed with Aliyun's V3 signature
(help.aliyun.com/document_detail/2593177.html). :func:`acs3_sign` is the signature as a pure
function; the tests check it against the worked example that page publishes.

With option ``batch`` (the default) a request is one ``SendBatchSms`` of up to 100 numbers, each
with its own template parameters; otherwise one ``SendSms`` per message. Aliyun answers a whole
request with one ``Code`` and one ``BizId``, so a number-specific refusal inside a batch (an
invalid number, a number over its daily cap, a parameter the filter rejects) refuses the whole
batch: nothing was sent, and the adapter sends that batch again one message at a time, so the
other messages go out and each refusal lands on its own touch.

The API is not idempotent (Aliyun says so: "接口不幂等，需自行去重"). ``OutId`` carries the
outbox's ``send_ref``; after a request in doubt, :meth:`AliyunSms.reconcile` asks
``QuerySendDetails`` for each number and matches on it.

Delivery receipts (``SmsReport``) and replies (``SmsUp``) come as HTTP pushes of JSON arrays:
:func:`parse_report` and :func:`parse_up` read them, and the receiver answers
:data:`CALLBACK_ACK`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import httpx

from baoke.channels.httpjson import (
    SHANGHAI,
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
    "Acs3Signature",
    "AliyunSms",
    "acs3_headers",
    "acs3_sign",
    "classify",
    "make",
    "parse_authorization",
    "parse_report",
    "parse_up",
    "percent_encode",
]

API_VERSION = "2017-05-25"
DEFAULT_ENDPOINT = "https://dysmsapi.aliyuncs.com"
ALGORITHM = "ACS3-HMAC-SHA256"
BATCH_LIMIT = 100  # SendBatchSms: PhoneNumberJson holds at most 100 numbers
CALLBACK_ACK = b'{"code":0,"msg":"\\u63a5\\u6536\\u6210\\u529f"}'
"""What the SmsReport / SmsUp receiver answers (HTTP 200): ``{"code":0,"msg":"接收成功"}``."""

_FORM = "application/x-www-form-urlencoded"


# -- the V3 signature ---------------------------------------------------------------------------


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as Aliyun signs it: unreserved ``A-Z a-z 0-9 - _ . ~`` stay, the rest
    (UTF-8) becomes ``%XX`` — a space is ``%20`` and ``*`` is ``%2A``, never ``+``."""
    return quote(value, safe="-_.~")


def _is_signed(name: str) -> bool:
    # V3 signs every x-acs-* header, host and content-type (the other headers may be changed
    # by a proxy on the way, so they are left out).
    return name.startswith("x-acs-") or name in ("host", "content-type")


@dataclass(frozen=True)
class Acs3Signature:
    """The steps of one ACS3-HMAC-SHA256 signature, for the request and for tests."""

    canonical_request: str
    hashed_canonical_request: str
    string_to_sign: str
    signed_headers: str
    signature: str
    authorization: str


def acs3_sign(
    *,
    method: str,
    canonical_uri: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    access_key_id: str,
    access_key_secret: str,
) -> Acs3Signature:
    """Sign one request with Aliyun's V3 method (help.aliyun.com/document_detail/2593177).

    ``headers`` are the request's headers; those that V3 signs (``x-acs-*``, ``host``,
    ``content-type``) enter the canonical request, lower-cased, sorted and trimmed. ``query`` is
    the URL's parameters (empty for the form-body requests this adapter makes); ``body`` the
    exact bytes sent. Pure: the date and nonce are whatever ``headers`` say.
    """
    entries = sorted((name.lower(), value.strip()) for name, value in headers.items())
    signed = [(name, value) for name, value in entries if _is_signed(name)]
    canonical_headers = "".join(f"{name}:{value}\n" for name, value in signed)
    signed_headers = ";".join(name for name, _ in signed)
    canonical_query = "&".join(
        f"{name}={value}"
        for name, value in sorted(
            (percent_encode(name), percent_encode(value)) for name, value in query.items()
        )
    )
    canonical_request = "\n".join(
        [
            method.upper(),
            canonical_uri,
            canonical_query,
            canonical_headers,
            signed_headers,
            hashlib.sha256(body).hexdigest(),
        ]
    )
    hashed = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    string_to_sign = f"{ALGORITHM}\n{hashed}"
    signature = hmac.new(
        access_key_secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256
    ).hexdigest()
    authorization = (
        f"{ALGORITHM} Credential={access_key_id},SignedHeaders={signed_headers},"
        f"Signature={signature}"
    )
    return Acs3Signature(
        canonical_request, hashed, string_to_sign, signed_headers, signature, authorization
    )


def acs3_headers(
    *,
    host: str,
    action: str,
    body: bytes,
    access_key_id: str,
    access_key_secret: str,
    date: str,
    nonce: str,
    version: str = API_VERSION,
    content_type: str = _FORM,
) -> dict[str, str]:
    """The signed headers of an RPC ``POST /`` with a form body (``date`` as
    ``yyyy-MM-ddTHH:mm:ssZ`` UTC, ``nonce`` unique per request)."""
    headers = {
        "host": host,
        "x-acs-action": action,
        "x-acs-version": version,
        "x-acs-date": date,
        "x-acs-signature-nonce": nonce,
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
        "content-type": content_type,
    }
    signed = acs3_sign(
        method="POST",
        canonical_uri="/",
        query={},
        headers=headers,
        body=body,
        access_key_id=access_key_id,
        access_key_secret=access_key_secret,
    )
    headers["authorization"] = signed.authorization
    return headers


def parse_authorization(value: str) -> tuple[str, list[str], str] | None:
    """``(access key id, signed header names, signature)`` of an ACS3 Authorization header;
    None when it is not one."""
    fields = authorization_fields(value, ALGORITHM)
    if fields is None:
        return None
    try:
        return fields["Credential"], fields["SignedHeaders"].split(";"), fields["Signature"]
    except KeyError:
        return None


# -- response codes -----------------------------------------------------------------------------

CodeClass = Literal["ok", "throttled", "auth", "transient", "retry", "message", "request"]
"""What a ``Code`` means for the messages of the request.

``throttled`` / ``auth`` / ``transient``: the account or the service — the whole request fails
(ProviderError). ``retry``: this number must wait (per-number flow control). ``message``: this
message is refused (its number, its parameters). ``request``: everything in the request is
refused for good (template, signature).
"""

# Account-wide flow control and console quotas: nothing can go out for a while.
_THROTTLED = {"Throttling", "isv.DAY_LIMIT_CONTROL", "isv.MONTH_LIMIT_CONTROL"}
# The key, the source IP or the account: the circuit opens and the next provider takes over.
_AUTH = {
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "InvalidTimeStamp.Expired",
    "isv.DENY_IP_RANGE",
    "isp.RAM_PERMISSION_DENY",
    "isv.OUT_OF_SERVICE",
    "isv.AMOUNT_NOT_ENOUGH",
    "isv.PRODUCT_UN_SUBSCRIPT",
    "isv.PRODUCT_UNSUBSCRIBE",
    "isv.ACCOUNT_NOT_EXISTS",
    "isv.ACCOUNT_ABNORMAL",
}
_AUTH_PREFIXES = ("InvalidAccessKeyId", "Forbidden", "InvalidSecurityToken")
_TRANSIENT = {"InternalError", "ServiceUnavailable", "SignatureNonceUsed", "UnknownError"}
# Per-number flow control (same sign + template to one number: 50 a day by default,
# help.aliyun.com/document_detail/44335.htm): only that number waits.
_RETRY = {"isv.BUSINESS_LIMIT_CONTROL"}
# Refusals that belong to one message of a batch: its number or its parameters.
_MESSAGE = {
    "isv.MOBILE_NUMBER_ILLEGAL",
    "isv.TEMPLATE_MISSING_PARAMETERS",
    "isv.SMS_CONTENT_ILLEGAL",
    "isv.BLACK_KEY_CONTROL_LIMIT",
    "isv.PARAM_LENGTH_LIMIT",
    "isv.PARAM_NOT_SUPPORT_URL",
    "isv.TEMPLATE_PARAMS_ILLEGAL",
    "isv.INVALID_JSON_PARAM",
}


def classify(code: str) -> CodeClass:
    """What an Aliyun ``Code`` means (see :data:`CodeClass`); an unknown ``isv.*`` code (a
    problem on our side) refuses the request, an unknown ``isp.*`` (the platform's) is
    transient."""
    if code == "OK":
        return "ok"
    if code in _THROTTLED or code.startswith("Throttling"):
        return "throttled"
    if code in _AUTH or code.startswith(_AUTH_PREFIXES):
        return "auth"
    if code in _TRANSIENT or code.startswith(("isp.", "ServiceUnavailable", "InternalError")):
        return "transient"
    if code in _RETRY:
        return "retry"
    if code in _MESSAGE:
        return "message"
    return "request"


# -- the adapter --------------------------------------------------------------------------------


def _describe(reply: Mapping[str, Any], kind: CodeClass) -> str:
    code = str(reply.get("Code"))
    if kind == "auth":
        # A SignatureDoesNotMatch message echoes the server's string to sign, mobiles included:
        # the code and the request id are enough to look it up.
        return f"{code} (RequestId {reply.get('RequestId', '?')})"
    text = str(reply.get("Message") or "")[:200]
    return f"{code}: {text}" if text else code


Planned = tuple[Message, str]  # a message and its template code


class AliyunSms:
    """The Aliyun SMS adapter (see the module's docstring). Thread-safe: one keep-alive
    ``httpx.Client`` is shared by the dispatcher's threads; nothing else changes after
    construction."""

    channel = "sms"
    idempotent = False

    def __init__(
        self,
        *,
        name: str = "aliyun",
        access_key_id: str,
        access_key_secret: str,
        sign_name: str,
        endpoint: str = DEFAULT_ENDPOINT,
        templates: Mapping[str, str] | None = None,
        batch: bool = True,
        rate: float = 50.0,
        timeout: float = 5.0,
        reconcile_days: int = 2,
    ) -> None:
        self.name = name
        self.sign_name = sign_name
        self.templates = dict(templates or {})
        self.batch = batch
        self.max_batch = BATCH_LIMIT if batch else 1
        self.rate = rate
        self.reconcile_days = reconcile_days
        self._key_id = access_key_id
        self._key_secret = access_key_secret
        parts = urlsplit(endpoint)
        self._host = parts.netloc
        self._url = f"{parts.scheme}://{parts.netloc}/"
        # Aliyun asks for no client-side retry (a retried timeout may send twice): httpx does
        # not retry by default. Keep-alive connections serve the dispatcher's threads.
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
            headers={"accept": "application/json"},
        )

    # -- templates ------------------------------------------------------------------------------

    def template_code(self, message: Message) -> str | None:
        """The approved template code of ``message``: the ``templates`` option's entry for its
        ``playbook/template`` name, else the message's own ``template_code``."""
        if message.template and message.template in self.templates:
            return self.templates[message.template]
        return message.template_code or None

    # -- sending --------------------------------------------------------------------------------

    def send(self, batch: Sequence[Message]) -> list[SendResult]:
        """Send ``batch``: one SendBatchSms per template (or one SendSms per message)."""
        results: list[SendResult] = []
        ready: list[Planned] = []
        for message in batch:
            code = self.template_code(message)
            if code is None:
                name = message.template or f"touch {message.touch_id}"
                error = f"no approved Aliyun template for {name}"
                results.append(SendResult(message.touch_id, "failed", error=error))
            else:
                ready.append((message, code))
        results.extend(send_in_turn(self._plan(ready), self._send_group))
        return results

    def _plan(self, ready: list[Planned]) -> list[list[Planned]]:
        if not self.batch:
            return [[item] for item in ready]
        # The dispatcher sends one template per batch; grouping keeps a mixed batch correct.
        by_code: dict[str, list[Planned]] = {}
        for item in ready:
            by_code.setdefault(item[1], []).append(item)
        return [
            group[start : start + BATCH_LIMIT]
            for group in by_code.values()
            for start in range(0, len(group), BATCH_LIMIT)
        ]

    def _send_group(self, group: list[Planned]) -> list[SendResult]:
        if len(group) == 1:
            # A lone message is a SendSms either way: same template, same parameters, one id.
            message, code = group[0]
            params = {
                "PhoneNumbers": message.address,
                "SignName": self.sign_name,
                "TemplateCode": code,
                "OutId": message.send_ref or message.key,
            }
            if message.params:
                params["TemplateParam"] = _json(dict(message.params))
            return self._results(self._call("SendSms", params), [message])
        messages = [message for message, _ in group]
        params = {
            "PhoneNumberJson": _json([m.address for m in messages]),
            "SignNameJson": _json([self.sign_name] * len(messages)),
            "TemplateCode": group[0][1],
            "TemplateParamJson": _json([dict(m.params) for m in messages]),
            "OutId": _batch_ref(messages),
        }
        reply = self._call("SendBatchSms", params)
        kind = classify(str(reply.get("Code")))
        if kind in ("retry", "message"):
            # One number or one message's parameters refused the whole batch, and nothing was
            # sent: one request per message finds which, and lets the others go.
            return send_in_turn([[item] for item in group], self._send_group)
        return self._results(reply, messages)

    def _results(self, reply: Mapping[str, Any], messages: list[Message]) -> list[SendResult]:
        kind = classify(str(reply.get("Code")))
        if kind == "ok":
            biz_id = reply.get("BizId")
            provider_id = str(biz_id) if biz_id else None
            return [SendResult(m.touch_id, "sent", provider_id) for m in messages]
        error = _describe(reply, kind)
        if kind in ("throttled", "auth", "transient"):
            raise ProviderError(kind, f"Aliyun {error}")
        outcome: Literal["retry", "failed"] = "retry" if kind == "retry" else "failed"
        return [SendResult(m.touch_id, outcome, error=error) for m in messages]

    def _call(self, action: str, params: Mapping[str, str]) -> dict[str, Any]:
        """POST one signed request; the JSON reply (any HTTP status that carries a ``Code``)."""
        body = "&".join(
            f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items())
        ).encode("ascii")
        headers = acs3_headers(
            host=self._host,
            action=action,
            body=body,
            access_key_id=self._key_id,
            access_key_secret=self._key_secret,
            date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            nonce=secrets.token_hex(16),
        )
        who = f"Aliyun {action}"
        response = post(self._client, self._url, content=body, headers=headers, who=who)
        reply = json_or_none(response)
        if isinstance(reply, dict) and reply.get("Code"):
            return reply
        raise unreadable_reply(who, response.status_code)

    # -- reconciliation -------------------------------------------------------------------------

    def reconcile(self, batch: Sequence[Message]) -> dict[int, str]:
        """Which messages of ``batch`` Aliyun has, by ``QuerySendDetails`` per number over the
        last ``reconcile_days`` days (Asia/Shanghai) and a match on ``OutId``.

        QuerySendDetails does not return the BizId, so the provider id of a message found here
        is its ``OutId`` (the ``send_ref``), which its SmsReport receipts carry as ``out_id``.
        """
        refs = {m.send_ref or m.key for m in batch}
        by_phone: dict[str, list[Message]] = {}
        for message in batch:
            by_phone.setdefault(message.address, []).append(message)
        found: dict[int, str] = {}
        today = dt.datetime.now(SHANGHAI).date()
        for phone, messages in by_phone.items():
            for back in range(self.reconcile_days):
                day = today - dt.timedelta(days=back)
                for detail in self._details(phone, day):
                    out_id = str(detail.get("OutId") or "")
                    if out_id not in refs:
                        continue
                    touch = self._match(messages, found, out_id, detail.get("TemplateCode"))
                    if touch is not None:
                        found[touch] = out_id
                if all(m.touch_id in found for m in messages):
                    break
        return found

    def _match(
        self, messages: list[Message], found: Mapping[int, str], out_id: str, template: Any
    ) -> int | None:
        # Prefer the message whose own send_ref is the OutId; a batch carries one OutId for all.
        open_ = [
            m
            for m in messages
            if m.touch_id not in found and (template is None or self.template_code(m) == template)
        ]
        for message in open_:
            if (message.send_ref or message.key) == out_id:
                return message.touch_id
        return open_[0].touch_id if open_ else None

    def _details(self, phone: str, day: dt.date) -> list[dict[str, Any]]:
        details: list[dict[str, Any]] = []
        for page in range(1, 21):  # at most 1,000 records a number a day
            params = {
                "PhoneNumber": phone,
                "SendDate": day.strftime("%Y%m%d"),
                "PageSize": "50",
                "CurrentPage": str(page),
            }
            reply = self._call("QuerySendDetails", params)
            kind = classify(str(reply.get("Code")))
            if kind in ("throttled", "auth", "transient"):
                raise ProviderError(kind, f"Aliyun QuerySendDetails {_describe(reply, kind)}")
            if kind != "ok":
                return details  # e.g. an invalid number: nothing can have been sent to it
            dtos = (reply.get("SmsSendDetailDTOs") or {}).get("SmsSendDetailDTO") or []
            details.extend(d for d in dtos if isinstance(d, dict))
            if not dtos or len(details) >= int(reply.get("TotalCount") or 0):
                break
        return details

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


def _batch_ref(messages: list[Message]) -> str:
    # SendBatchSms has one OutId for the request: the dispatcher gives a request one send_ref;
    # if the messages differ, the first one's stands and reconcile matches any of the batch's.
    return messages[0].send_ref or messages[0].key


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# -- callbacks ----------------------------------------------------------------------------------


_REPORT = "Aliyun SmsReport callback"
_UP = "Aliyun SmsUp callback"
_ARRAY = "a JSON array of objects"


def _national(phone: str) -> str:
    digits = phone.lstrip("+")
    for prefix in ("0086", "86"):
        if digits.startswith(prefix) and len(digits) == len(prefix) + 11:
            return digits[len(prefix) :]
    return phone


def parse_report(body: bytes) -> list[Receipt]:
    """Receipts from an SmsReport push (help.aliyun.com/document_detail/101867.html): a JSON
    array of ``{phone_number, send_time, report_time, success, err_code, err_msg, sms_size,
    biz_id, out_id}``. ``report_time`` is Asia/Shanghai local time; the receipts are in UTC.
    A malformed body raises InputError."""
    receipts: list[Receipt] = []
    for index, item in enumerate(callback_items(body, _REPORT, _ARRAY)):
        biz_id = callback_field(item, "biz_id", _REPORT, index)
        phone = _national(callback_field(item, "phone_number", _REPORT, index))
        success = item.get("success")
        if isinstance(success, str) and success.lower() in ("true", "false"):
            success = success.lower() == "true"
        if not isinstance(success, bool):
            raise InputError(f"{_REPORT}: item {index} has no true/false 'success'")
        at = shanghai_time(callback_field(item, "report_time", _REPORT, index), _REPORT, index)
        detail = None
        if not success:
            detail = " ".join(str(item.get(k) or "") for k in ("err_code", "err_msg")).strip()
        receipts.append(
            Receipt(
                provider_id=biz_id,
                status="delivered" if success else "failed",
                at=at,
                key=f"aliyun:report:{biz_id}:{phone}",
                address=phone,
                detail=detail or None,
                send_ref=str(item.get("out_id") or "") or None,
            )
        )
    return receipts


def parse_up(body: bytes) -> list[Inbound]:
    """Replies from an SmsUp push (help.aliyun.com/knowledge_detail/60127.html): a JSON array
    of ``{phone_number, send_time, content, sign_name, dest_code, sequence_id}``. A malformed
    body raises InputError."""
    replies: list[Inbound] = []
    for index, item in enumerate(callback_items(body, _UP, _ARRAY)):
        sequence = callback_field(item, "sequence_id", _UP, index)
        phone = _national(callback_field(item, "phone_number", _UP, index))
        content = item.get("content")
        if not isinstance(content, str):
            raise InputError(f"{_UP}: item {index} has no 'content'")
        at = shanghai_time(callback_field(item, "send_time", _UP, index), _UP, index)
        replies.append(Inbound(address=phone, text=content, at=at, key=f"aliyun:up:{sequence}"))
    return replies


# -- the factory --------------------------------------------------------------------------------


def _templates(context: AdapterContext) -> dict[str, str]:
    value = context.option("templates", {}) or {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()
    ):
        raise context.option_error("templates", 'a table of "playbook/template" = "SMS_xxx"')
    return dict(value)


def make(context: AdapterContext) -> AliyunSms:
    """The Aliyun adapter of ``[channels.providers.<name>]``.

    Options: ``sign_name`` (required), ``endpoint``, ``templates``, ``batch`` (default true),
    ``rate`` (requests/s, default 50), ``timeout`` (s, default 5), ``reconcile_days`` (default
    2). Secrets: ``BAOKE_ALIYUN_ACCESS_KEY_ID``, ``BAOKE_ALIYUN_ACCESS_KEY_SECRET``.
    """
    sign_name = context.option("sign_name")
    if not isinstance(sign_name, str) or not sign_name.strip("【】[] "):
        raise ConfigError(
            f"channel provider '{context.name}' needs the option sign_name (the approved SMS "
            f'signature, e.g. sign_name = "某某汽车") in [channels.providers.{context.name}]'
        )
    endpoint = context.option("endpoint", DEFAULT_ENDPOINT)
    if not isinstance(endpoint, str) or urlsplit(endpoint).scheme not in ("http", "https"):
        raise context.option_error("endpoint", "an http(s) URL")
    batch = context.option("batch", True)
    if not isinstance(batch, bool):
        raise context.option_error("batch", "true or false")
    days = context.option("reconcile_days", 2)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 30:
        raise context.option_error("reconcile_days", "a whole number of days from 1 to 30")
    return AliyunSms(
        name=context.name,
        access_key_id=context.secret("aliyun_access_key_id"),
        access_key_secret=context.secret("aliyun_access_key_secret"),
        # The platform adds the 【】 itself; a sign written with them is the same sign.
        sign_name=sign_name.strip().strip("【】[]"),
        endpoint=endpoint,
        templates=_templates(context),
        batch=batch,
        rate=context.positive_number("rate", 50.0),
        timeout=context.positive_number("timeout", 5.0),
        reconcile_days=days,
    )
