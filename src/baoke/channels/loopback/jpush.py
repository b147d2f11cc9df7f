"""JPush REST API v3 as the adapter sees it: ``POST /v3/push`` and ``GET /v3/received/detail``.

It checks HTTP Basic ``appKey:masterSecret`` (401, error 1004 otherwise), reads the push the
way JPush does (an alias audience of at most 1,000, a notification), and answers
``{"sendno": "…", "msg_id": "…"}``. An alias in ``unbound`` has no device: a push whose
aliases are all unbound is answered 400 with error 1011, as JPush does. Each accepted alias is
recorded under the touch key the adapter puts in the extras (the alias when there is none), so
a duplicate push shows as a count above one.

Modes (see :class:`~baoke.channels.loopback.base.LoopbackServer`): ``ok``; ``throttle`` (429,
error 2002); ``auth`` (401, 1004); ``timeout`` (accept the push, then answer too late);
``malformed`` (a 200 that is not JSON); ``error`` (500, 1000); ``partial`` (aliases whose
number is a multiple of 3 are unbound as well).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from baoke.channels.loopback.base import LoopbackServer, Request, Response

__all__ = ["JPushServer"]

_RECEIVED_FIELDS = (
    "android_pns_received",
    "ios_apns_received",
    "ios_msg_received",
    "quickapp_jpush_received",
    "hmos_hmpns_received",
)


def _error(status: int, code: int, message: str) -> Response:
    body = {"error": {"code": code, "message": message}}
    return Response(status, json.dumps(body).encode("utf-8"))


class JPushServer(LoopbackServer):
    """The fake JPush. ``received[msg_id]`` is how many devices got a push (the report API
    answers it as ``jpush_received``); a test may lower it to model a device still offline."""

    def __init__(self, app_key: str = "test-app-key", master_secret: str = "test-secret") -> None:
        super().__init__()
        self.app_key = app_key
        self.master_secret = master_secret
        self.unbound: set[str] = set()
        self.received: dict[str, int] = {}
        self.pushes: list[dict[str, Any]] = []  # every push body accepted, in order
        self._next_id = 18_100_000_000

    def _forget(self) -> None:
        super()._forget()
        self.hang_seconds = 5.0
        self.unbound.clear()
        self.received.clear()
        self.pushes.clear()

    def _authorised(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return decoded == f"{self.app_key}:{self.master_secret}"

    def _is_bound(self, alias: str) -> bool:
        if alias in self.unbound:
            return False
        if self.mode == "partial":
            digits = "".join(ch for ch in alias if ch.isdigit())
            return not (digits and int(digits) % 3 == 0)
        return True

    def answer(self, request: Request) -> Response:
        """Route to the push or the report endpoint."""
        if self.mode == "auth" or not self._authorised(request):
            return _error(401, 1004, "Authen failed")
        if self.mode == "throttle":
            return _error(429, 2002, "Rate limit exceeded")
        if self.mode == "error":
            return _error(500, 1000, "Server Internal error")
        if request.method == "POST" and request.path == "/v3/push":
            return self._push(request)
        # The Beijing data centre serves the report API under /v3/report.
        if request.method == "GET" and request.path in (
            "/v3/received/detail",
            "/v3/report/received/detail",
        ):
            return self._received(request)
        return _error(404, 1020, "not found")

    def _push(self, request: Request) -> Response:
        try:
            body = json.loads(request.body)
            aliases = body["audience"]["alias"]
            notification = body["notification"]
            options = body.get("options", {})
        except (ValueError, KeyError, TypeError):
            return _error(400, 1003, "Parameter value is invalid")
        if not isinstance(aliases, list) or not 1 <= len(aliases) <= 1000:
            return _error(400, 1003, "audience alias must hold 1-1000 aliases")
        if not isinstance(notification, dict) or not notification.get("alert"):
            return _error(400, 1002, "notification alert is required")
        bound = [alias for alias in aliases if self._is_bound(str(alias))]
        if not bound:
            return _error(400, 1011, "cannot find user by this audience")
        with self.lock:
            self._next_id += 1
            msg_id = str(self._next_id)
            self.received[msg_id] = len(bound)
            self.pushes.append(body)
        extras = (notification.get("android") or {}).get("extras") or {}
        for alias in bound:
            key = str(extras.get("touch_key") or alias)
            self.accept(key, {"msg_id": msg_id, "alias": alias, "payload": body})
        if self.mode == "timeout":
            self.hang()
        if self.mode == "malformed":
            return Response(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
        reply = {"sendno": str(options.get("sendno", 0)), "msg_id": msg_id}
        return Response(200, json.dumps(reply).encode("utf-8"))

    def _received(self, request: Request) -> Response:
        ids = [i for i in ",".join(request.query.get("msg_ids", [])).split(",") if i]
        if not ids or len(ids) > 100:
            return _error(400, 1003, "msg_ids must hold 1-100 ids")
        if self.mode == "timeout":
            self.hang()
        if self.mode == "malformed":
            return Response(200, b"not json", "text/plain")
        entries = []
        for msg_id in ids:
            with self.lock:
                count = self.received.get(msg_id)
            entry: dict[str, Any] = {"msg_id": msg_id, "jpush_received": count}
            entry.update(dict.fromkeys(_RECEIVED_FIELDS, 0 if count is not None else None))
            entry["android_pns_sent"] = 0 if count is not None else None
            entries.append(entry)
        return Response(200, json.dumps(entries).encode("utf-8"))
