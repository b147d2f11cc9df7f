"""A loopback Aliyun Dysmsapi (2017-05-25): SendSms, SendBatchSms and QuerySendDetails.

It answers as the documented API does: RPC ``POST /`` with the action in ``x-acs-action``, the
parameters as a form body, a JSON reply with ``Code`` (``OK``), ``Message``, ``BizId`` and
``RequestId``. Every request's ACS3-HMAC-SHA256 signature is checked against the configured
AccessKey: an unknown key answers ``InvalidAccessKeyId.NotFound`` (HTTP 404), a wrong signature
``SignatureDoesNotMatch`` (HTTP 400), a stale ``x-acs-date`` ``InvalidTimeStamp.Expired`` and a
reused nonce ``SignatureNonceUsed``, as Aliyun's gateway does.

``mode`` (see :class:`~baoke.channels.loopback.base.LoopbackServer`):

- ``throttle``: ``Throttling.User`` (HTTP 400), nothing accepted;
- ``auth``: ``InvalidAccessKeyId.NotFound`` (HTTP 404);
- ``timeout``: the messages are accepted, then the answer waits ``hang_seconds``;
- ``malformed``: the messages are accepted and the reply is cut short;
- ``error``: HTTP 500 ``InternalError``, nothing accepted;
- ``partial``: every third number the server sees is refused with ``isv.MOBILE_NUMBER_ILLEGAL``
  (and stays refused). Aliyun answers a request with one ``Code``, so a batch holding a refused
  number is refused as a whole, as the real API does.

``refuse`` maps a mobile to a code to answer for any request that holds it (in every mode), e.g.
``isv.BUSINESS_LIMIT_CONTROL`` for a number over its daily cap. Each accepted message is
recorded with ``phone``, ``template_code``, ``params``, ``out_id``, ``sign_name``, ``biz_id``,
``action`` and ``send_date``; ``accepted`` counts them by ``phone|out_id|template_code``.
QuerySendDetails answers from those records.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import itertools
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

from baoke.channels.aliyun_sms import API_VERSION, acs3_sign, parse_authorization
from baoke.channels.loopback.base import LoopbackServer, Refused, Request, Response

__all__ = ["AliyunSmsServer"]

SHANGHAI = ZoneInfo("Asia/Shanghai")
_MOBILE = re.compile(r"(?:\+?86|0086)?(1\d{10})")
_REQUIRED_SIGNED = {
    "host",
    "x-acs-action",
    "x-acs-version",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-content-sha256",
}
_MAX_SKEW = dt.timedelta(minutes=15)  # "x-acs-date … within 15 minutes"


def _mobile(value: str) -> str | None:
    match = _MOBILE.fullmatch(value.strip())
    return match.group(1) if match else None


class AliyunSmsServer(LoopbackServer):
    """The fake Dysmsapi. ``templates`` (code → its variable names), when given, makes unknown
    codes ``isv.SMS_TEMPLATE_ILLEGAL`` and missing variables ``isv.TEMPLATE_MISSING_PARAMETERS``."""

    def __init__(
        self,
        access_key_id: str = "LTAI5tLoopbackKeyId",
        access_key_secret: str = "loopback-aliyun-secret",
        *,
        templates: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        super().__init__()
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self.templates = {k: list(v) for k, v in templates.items()} if templates else None
        self.refuse: dict[str, str] = {}
        self._partial: dict[str, bool] = {}
        self._by_phone: dict[str, list[dict[str, Any]]] = {}
        self._nonces: set[str] = set()
        self._ids = itertools.count(1)

    def _forget(self) -> None:
        super()._forget()
        self.refuse.clear()
        self._partial.clear()
        self._by_phone.clear()

    # -- answers ---------------------------------------------------------------------------------

    @staticmethod
    def _reply(status: int, payload: Mapping[str, Any]) -> Response:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        return Response(status, body)

    def _error(self, status: int, code: str, message: str) -> Response:
        request_id = str(uuid.uuid4()).upper()
        payload = {
            "RequestId": request_id,
            "HostId": "dysmsapi.aliyuncs.com",
            "Code": code,
            "Message": message,
            "Recommend": f"https://api.aliyun.com/troubleshoot?q={code}&product=Dysmsapi",
        }
        return self._reply(status, payload)

    def answer(self, request: Request) -> Response:
        """One Dysmsapi request."""
        if request.method != "POST" or request.path != "/":
            return self._error(
                404,
                "InvalidAction.NotFound",
                "Specified api is not found, please check your url and method.",
            )
        if self.mode == "error":
            return self._error(
                500,
                "InternalError",
                "The request processing has failed due to some unknown error.",
            )
        if self.mode == "auth":
            return self._error(
                404, "InvalidAccessKeyId.NotFound", "Specified access key is not found."
            )
        problem = self._verify(request)
        if problem is not None:
            return problem
        if self.mode == "throttle":
            return self._error(
                400, "Throttling.User", "Request was denied due to user flow control."
            )
        headers = request.headers
        if headers.get("x-acs-version") != API_VERSION:
            return self._error(400, "InvalidVersion", "Specified parameter Version is not valid.")
        params = {
            k: v[0] for k, v in parse_qs(request.body.decode(), keep_blank_values=True).items()
        }
        action = headers.get("x-acs-action")
        try:
            if action == "SendSms":
                payload = self._send_sms(params)
            elif action == "SendBatchSms":
                payload = self._send_batch_sms(params)
            elif action == "QuerySendDetails":
                payload = self._query_send_details(params)
            else:
                return self._error(
                    404,
                    "InvalidAction.NotFound",
                    "Specified api is not found, please check your url and method.",
                )
        except Refused as refused:
            payload = {
                "Code": refused.code,
                "Message": refused.message,
                "RequestId": str(uuid.uuid4()).upper(),
            }
        if self.mode == "timeout":
            self.hang()
        if self.mode == "malformed":
            return Response(200, b'{"RequestId":"5C8E3F9A-","Message":"OK","BizId":"9006')
        return self._reply(200, payload)

    # -- the signature ---------------------------------------------------------------------------

    def _verify(self, request: Request) -> Response | None:
        headers = request.headers
        parsed = parse_authorization(headers.get("authorization", ""))
        if parsed is None:
            return self._error(
                400,
                "IncompleteSignature",
                "The request signature does not conform to Aliyun standards.",
            )
        key_id, signed_names, signature = parsed
        if key_id != self.access_key_id:
            return self._error(
                404, "InvalidAccessKeyId.NotFound", "Specified access key is not found."
            )
        if not set(signed_names) >= _REQUIRED_SIGNED or not all(n in headers for n in signed_names):
            return self._error(
                400,
                "IncompleteSignature",
                "The request signature does not conform to Aliyun standards.",
            )
        if hashlib.sha256(request.body).hexdigest() != headers["x-acs-content-sha256"]:
            return self._error(
                400,
                "SignatureDoesNotMatch",
                "Specified signature is not matched with our calculation.",
            )
        try:
            sent = dt.datetime.fromisoformat(headers["x-acs-date"])  # yyyy-MM-ddTHH:mm:ssZ
        except ValueError:
            sent = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        if sent.tzinfo is None or abs(dt.datetime.now(dt.UTC) - sent) > _MAX_SKEW:
            return self._error(
                400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired."
            )
        expected = acs3_sign(
            method=request.method,
            canonical_uri=request.path,
            query={k: v[0] for k, v in request.query.items()},
            headers={name: headers[name] for name in signed_names},
            body=request.body,
            access_key_id=key_id,
            access_key_secret=self.access_key_secret,
        ).signature
        if not hmac.compare_digest(expected, signature):
            return self._error(
                400,
                "SignatureDoesNotMatch",
                "Specified signature is not matched with our calculation.",
            )
        nonce = headers["x-acs-signature-nonce"]
        with self.lock:
            if nonce in self._nonces:
                reused = True
            else:
                reused = False
                if len(self._nonces) > 200_000:
                    self._nonces.clear()  # the 15-minute window bounds what matters
                self._nonces.add(nonce)
        if reused:
            return self._error(
                400, "SignatureNonceUsed", "Specified signature nonce was used already."
            )
        return None

    # -- actions ---------------------------------------------------------------------------------

    def _check(self, phones: list[str], template: str, params: list[dict[str, str]]) -> None:
        if self.templates is not None:
            names = self.templates.get(template)
            if names is None:
                raise Refused("isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板")
            for one in params:
                if any(name not in one for name in names):
                    raise Refused("isv.TEMPLATE_MISSING_PARAMETERS", "模板变量缺少对应参数值")
        for phone in phones:
            code = self.refuse.get(phone)
            if code:
                raise Refused(code, "refused by the loopback's refuse table")
        if self.mode == "partial":
            with self.lock:
                for phone in phones:
                    if phone not in self._partial:
                        self._partial[phone] = len(self._partial) % 3 == 2
                refused = any(self._partial[phone] for phone in phones)
            if refused:
                raise Refused("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")

    def _record(
        self,
        action: str,
        phones: list[str],
        signs: list[str],
        template: str,
        params: list[dict[str, str]],
        out_id: str | None,
    ) -> str:
        biz_id = f"{next(self._ids):015d}^0"
        now = dt.datetime.now(SHANGHAI)
        for phone, sign, values in zip(phones, signs, params, strict=True):
            record = {
                "action": action,
                "phone": phone,
                "sign_name": sign,
                "template_code": template,
                "params": values,
                "out_id": out_id,
                "biz_id": biz_id,
                "send_date": now.strftime("%Y-%m-%d %H:%M:%S"),
            }
            self.accept(f"{phone}|{out_id}|{template}", record)
            with self.lock:
                self._by_phone.setdefault(phone, []).append(record)
        return biz_id

    @staticmethod
    def _params(raw: str | None) -> dict[str, str]:
        if not raw:
            return {}
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise Refused("isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值")
        return value

    @staticmethod
    def _phones(raw: list[str]) -> list[str]:
        phones = [_mobile(p) for p in raw]
        if not phones or any(p is None for p in phones):
            raise Refused("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")
        return [p for p in phones if p is not None]

    def _send_sms(self, params: Mapping[str, str]) -> dict[str, Any]:
        raw = [p for p in params.get("PhoneNumbers", "").split(",") if p]
        sign, template = params.get("SignName"), params.get("TemplateCode")
        if not raw or not sign or not template:
            raise Refused("isv.INVALID_PARAMETERS", "参数异常")
        if len(raw) > 1000:
            raise Refused("isv.MOBILE_COUNT_OVER_LIMIT", "手机号码数量超过限制")
        phones = self._phones(raw)
        values = [self._params(params.get("TemplateParam"))] * len(phones)
        self._check(phones, template, values)
        biz_id = self._record(
            "SendSms", phones, [sign] * len(phones), template, values, params.get("OutId")
        )
        return {"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": str(uuid.uuid4())}

    def _send_batch_sms(self, params: Mapping[str, str]) -> dict[str, Any]:
        try:
            raw = json.loads(params.get("PhoneNumberJson") or "null")
            signs = json.loads(params.get("SignNameJson") or "null")
            values_raw = json.loads(params.get("TemplateParamJson") or "null")
        except ValueError as exc:
            raise Refused("isv.INVALID_JSON_PARAM", "JSON参数不合法") from exc
        template = params.get("TemplateCode")
        if not isinstance(raw, list) or not isinstance(signs, list) or not template:
            raise Refused("isv.INVALID_PARAMETERS", "参数异常")
        if len(raw) > 100:
            raise Refused("isv.MOBILE_COUNT_OVER_LIMIT", "手机号码数量超过限制")
        if values_raw is None:
            values_raw = [{}] * len(raw)
        if (
            len(signs) != len(raw)
            or not isinstance(values_raw, list)
            or len(values_raw) != len(raw)
        ):
            raise Refused("isv.INVALID_PARAMETERS", "参数异常：数组长度不一致")
        phones = self._phones([str(p) for p in raw])
        values = [self._params(json.dumps(v)) for v in values_raw]
        self._check(phones, template, values)
        biz_id = self._record(
            "SendBatchSms", phones, [str(s) for s in signs], template, values, params.get("OutId")
        )
        return {"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": str(uuid.uuid4())}

    def _query_send_details(self, params: Mapping[str, str]) -> dict[str, Any]:
        phone = _mobile(params.get("PhoneNumber", ""))
        day = params.get("SendDate", "")
        try:
            size = int(params.get("PageSize", ""))
            page = int(params.get("CurrentPage", ""))
        except ValueError as exc:
            raise Refused("isv.INVALID_PARAMETERS", "参数异常") from exc
        if phone is None:
            raise Refused("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")
        if not re.fullmatch(r"\d{8}", day) or not 1 <= size <= 50 or page < 1:
            raise Refused("isv.INVALID_PARAMETERS", "参数异常")
        wanted = f"{day[:4]}-{day[4:6]}-{day[6:]}"
        biz_id = params.get("BizId")
        with self.lock:
            rows = [
                r
                for r in reversed(self._by_phone.get(phone, []))  # newest first
                if r["send_date"].startswith(wanted) and (not biz_id or r["biz_id"] == biz_id)
            ]
        chunk = rows[(page - 1) * size : page * size]
        dtos = [
            {
                "PhoneNum": r["phone"],
                "SendStatus": 3,
                "ErrCode": "DELIVERED",
                "TemplateCode": r["template_code"],
                "Content": f"【{r['sign_name']}】{json.dumps(r['params'], ensure_ascii=False)}",
                "SendDate": r["send_date"],
                "ReceiveDate": r["send_date"],
                "OutId": r["out_id"] or "",
            }
            for r in chunk
        ]
        return {
            "Code": "OK",
            "Message": "OK",
            "RequestId": str(uuid.uuid4()),
            "TotalCount": len(rows),
            "SmsSendDetailDTOs": {"SmsSendDetailDTO": dtos},
        }
