"""A loopback Tencent Cloud SMS (API 2021-01-11): SendSms and PullSmsSendStatusByPhoneNumber.

It answers as the documented API 3.0 does: ``POST /`` with a JSON body, the action in
``X-TC-Action``, and a reply ``{"Response": {…, "RequestId"}}`` — HTTP 200 even for an error,
which is ``{"Response": {"Error": {"Code", "Message"}, "RequestId"}}``. Every request's
TC3-HMAC-SHA256 signature is checked against the configured SecretId / SecretKey: an unknown id
answers ``AuthFailure.SecretIdNotFound``, a timestamp more than five minutes off
``AuthFailure.SignatureExpire``, a wrong signature ``AuthFailure.SignatureFailure``.

``mode`` (see :class:`~baoke.channels.loopback.base.LoopbackServer`):

- ``throttle``: ``RequestLimitExceeded``, nothing accepted;
- ``auth``: ``AuthFailure.SecretIdNotFound``;
- ``timeout``: the messages are accepted, then the answer waits ``hang_seconds``;
- ``malformed``: the messages are accepted and the reply is cut short;
- ``error``: HTTP 500, nothing accepted;
- ``partial``: every third number of a SendSms is refused in its ``SendStatusSet`` entry with
  ``FailedOperation.PhoneNumberInBlacklist``; the others are accepted.

``refuse`` maps a mobile (11 digits) to a per-number ``Code`` to answer for it in any mode, e.g.
``LimitExceeded.PhoneNumberDailyLimit``. Each accepted message is recorded with ``phone``,
``template_code`` (the TemplateId), ``params`` (the TemplateParamSet), ``session_context``,
``sign_name``, ``serial_no`` and ``at``; ``accepted`` counts them by
``phone|session_context|template``. The status pull answers from those records, as if every
receipt had already come back.
"""

from __future__ import annotations

import datetime as dt
import hmac
import itertools
import json
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

from baoke.channels.loopback.base import LoopbackServer, Refused, Request, Response
from baoke.channels.tencent_sms import API_VERSION, SERVICE, parse_authorization, tc3_sign

__all__ = ["TencentSmsServer"]

_E164 = re.compile(r"(?:\+86|0086|86)?(1\d{10})")
_MAX_SKEW = 300  # seconds: "相差超过五分钟" fails the signature


class TencentSmsServer(LoopbackServer):
    """The fake SMS API. ``templates`` (TemplateId → number of variables), when given, makes
    unknown ids ``FailedOperation.TemplateIncorrectOrUnapproved`` and a wrong parameter count
    ``FailedOperation.TemplateParamSetNotMatchApprovedTemplate``."""

    def __init__(
        self,
        secret_id: str = "AKIDloopbackTencentSecretId0001",
        secret_key: str = "loopback-tencent-secret-key",
        *,
        sdk_app_id: str = "1400006666",
        templates: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        self.secret_id = secret_id
        self.secret_key = secret_key
        self.sdk_app_id = sdk_app_id
        self.templates = dict(templates) if templates is not None else None
        self.refuse: dict[str, str] = {}
        self._by_phone: dict[str, list[dict[str, Any]]] = {}
        self._ids = itertools.count(1)

    def _forget(self) -> None:
        super()._forget()
        self.refuse.clear()
        self._by_phone.clear()

    # -- answers ---------------------------------------------------------------------------------

    @staticmethod
    def _reply(payload: Mapping[str, Any], status: int = 200) -> Response:
        body = json.dumps({"Response": payload}, ensure_ascii=False, separators=(",", ":"))
        return Response(status, body.encode())

    def _error(self, code: str, message: str, status: int = 200) -> Response:
        payload = {"Error": {"Code": code, "Message": message}, "RequestId": str(uuid.uuid4())}
        return self._reply(payload, status)

    def answer(self, request: Request) -> Response:
        """One API 3.0 request."""
        if request.method != "POST" or request.path != "/":
            return self._error("InvalidAction", "The action requested is invalid.")
        if self.mode == "error":
            return self._error("InternalError", "An internal error has occurred.", status=500)
        if self.mode == "auth":
            return self._error(
                "AuthFailure.SecretIdNotFound",
                "The SecretId is not found, please ensure that your SecretId is correct.",
            )
        problem = self._verify(request)
        if problem is not None:
            return problem
        if self.mode == "throttle":
            return self._error(
                "RequestLimitExceeded",
                "Your current request times equals to `3001` in a second, which exceeds the "
                "frequency limit `3000` for a second. Please reduce the frequency of calls.",
            )
        headers = request.headers
        if headers.get("x-tc-version") != API_VERSION:
            return self._error("NoSuchVersion", "The requested version does not exist.")
        if not headers.get("x-tc-region"):
            return self._error(
                "MissingParameter", "The request is missing a required parameter `Region`."
            )
        try:
            body = json.loads(request.body)
        except ValueError:
            return self._error("FailedOperation.FailResolvePacket", "请求包解析失败")
        if not isinstance(body, dict):
            return self._error("FailedOperation.FailResolvePacket", "请求包解析失败")
        action = headers.get("x-tc-action")
        try:
            if action == "SendSms":
                payload = self._send_sms(body)
            elif action == "PullSmsSendStatusByPhoneNumber":
                payload = self._pull(body)
            else:
                return self._error("InvalidAction", "The action requested is invalid.")
        except Refused as refused:
            return self._error(refused.code, refused.message)
        if self.mode == "timeout":
            self.hang()
        if self.mode == "malformed":
            return Response(200, b'{"Response":{"SendStatusSet":[{"SerialNo":"2640:')
        return self._reply(payload)

    # -- the signature ---------------------------------------------------------------------------

    def _verify(self, request: Request) -> Response | None:
        headers = request.headers
        parsed = parse_authorization(headers.get("authorization", ""))
        if parsed is None:
            return self._error(
                "AuthFailure.InvalidAuthorization",
                "The Authorization header does not conform to Tencent Cloud standards.",
            )
        secret_id, date, service, signed_names, signature = parsed
        if secret_id != self.secret_id:
            return self._error(
                "AuthFailure.SecretIdNotFound",
                "The SecretId is not found, please ensure that your SecretId is correct.",
            )
        try:
            timestamp = int(headers.get("x-tc-timestamp", ""))
        except ValueError:
            timestamp = 0
        if abs(time.time() - timestamp) > _MAX_SKEW:
            return self._error(
                "AuthFailure.SignatureExpire",
                "Signature expired, timestamp and server time differ by more than 5 minutes.",
            )
        scope_date = dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d")
        names = set(signed_names)
        failure = self._error(
            "AuthFailure.SignatureFailure",
            "The provided credentials could not be validated. "
            "Please check your signature is correct.",
        )
        if date != scope_date or service != SERVICE or not {"content-type", "host"} <= names:
            return failure
        if not all(name in headers for name in signed_names):
            return failure
        expected = tc3_sign(
            secret_id=secret_id,
            secret_key=self.secret_key,
            service=service,
            headers={name: headers[name] for name in signed_names},
            payload=request.body,
            timestamp=timestamp,
            method=request.method,
        ).signature
        if not hmac.compare_digest(expected, signature):
            return failure
        return None

    # -- actions ---------------------------------------------------------------------------------

    def _send_sms(self, body: Mapping[str, Any]) -> dict[str, Any]:
        numbers = body.get("PhoneNumberSet")
        template = body.get("TemplateId")
        if not isinstance(numbers, list) or not numbers or not template:
            raise Refused("MissingParameter", "The request is missing a required parameter.")
        if body.get("SmsSdkAppId") != self.sdk_app_id:
            raise Refused("InvalidParameterValue.SdkAppIdNotExist", "SdkAppId不存在")
        if len(numbers) > 200:
            raise Refused("LimitExceeded.PhoneNumberCountLimit", "单次提交的手机号个数超过200个")
        sign = body.get("SignName")
        if not isinstance(sign, str) or not sign:
            raise Refused("FailedOperation.SignatureIncorrectOrUnapproved", "签名未审批或格式错误")
        params = body.get("TemplateParamSet") or []
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            raise Refused("InvalidParameterValue.TemplateParameterFormatError", "模板参数格式错误")
        if self.templates is not None:
            count = self.templates.get(str(template))
            if count is None:
                raise Refused(
                    "FailedOperation.TemplateIncorrectOrUnapproved", "模板未审批或内容不匹配"
                )
            if count != len(params):
                raise Refused(
                    "FailedOperation.TemplateParamSetNotMatchApprovedTemplate",
                    "请求内容与审核通过的模板内容不匹配",
                )
        context = body.get("SessionContext")
        if context is not None and len(str(context).encode()) >= 512:
            raise Refused("InvalidParameterValue.ContentLengthLimit", "SessionContext过长")
        statuses: list[dict[str, Any]] = []
        now = time.time()
        for index, raw in enumerate(numbers):
            match = _E164.fullmatch(str(raw))
            entry: dict[str, Any] = {
                "SerialNo": "",
                "PhoneNumber": str(raw),
                "Fee": 0,
                "SessionContext": context or "",
                "IsoCode": "CN",
            }
            code = "InvalidParameterValue.IncorrectPhoneNumber"
            message = "手机号格式错误"
            if match is not None:
                phone = match.group(1)
                entry["PhoneNumber"] = "+86" + phone
                refused = self.refuse.get(phone)
                if refused:
                    code, message = refused, "refused by the loopback's refuse table"
                elif self.mode == "partial" and index % 3 == 2:
                    code, message = (
                        "FailedOperation.PhoneNumberInBlacklist",
                        "手机号在免打扰名单库中",
                    )
                else:
                    serial = f"2640:{next(self._ids):020d}"
                    record = {
                        "phone": phone,
                        "e164": "+86" + phone,
                        "template_code": str(template),
                        "params": list(params),
                        "session_context": context,
                        "sign_name": sign,
                        "serial_no": serial,
                        "at": now,
                    }
                    self.accept(f"{phone}|{context}|{template}", record)
                    with self.lock:
                        self._by_phone.setdefault(phone, []).append(record)
                    entry.update(SerialNo=serial, Fee=1)
                    code, message = "Ok", "send success"
            entry["Code"] = code
            entry["Message"] = message
            statuses.append(entry)
        return {"SendStatusSet": statuses, "RequestId": str(uuid.uuid4())}

    def _pull(self, body: Mapping[str, Any]) -> dict[str, Any]:
        begin, limit = body.get("BeginTime"), body.get("Limit")
        if not isinstance(begin, int) or not isinstance(limit, int) or body.get("Offset") != 0:
            raise Refused("MissingParameter", "The request is missing a required parameter.")
        if body.get("SmsSdkAppId") != self.sdk_app_id:
            raise Refused("InvalidParameterValue.SdkAppIdNotExist", "SdkAppId不存在")
        if not 1 <= limit <= 100:
            raise Refused("InvalidParameterValue", "Limit最多100")
        match = _E164.fullmatch(str(body.get("PhoneNumber", "")))
        if match is None:
            raise Refused("InvalidParameterValue.IncorrectPhoneNumber", "手机号格式错误")
        end = body.get("EndTime")
        end_at = end if isinstance(end, int) else float("inf")
        with self.lock:
            rows = [
                r for r in self._by_phone.get(match.group(1), []) if begin <= r["at"] <= end_at
            ][:limit]
        entries = [
            {
                "UserReceiveTime": int(r["at"]),
                "CountryCode": "86",
                "SubscriberNumber": r["phone"],
                "PhoneNumber": r["e164"],
                "SerialNo": r["serial_no"],
                "ReportStatus": "SUCCESS",
                "Description": "DELIVRD",
                "SessionContext": r["session_context"] or "",
            }
            for r in rows
        ]
        return {"PullSmsSendStatusSet": entries, "RequestId": str(uuid.uuid4())}
