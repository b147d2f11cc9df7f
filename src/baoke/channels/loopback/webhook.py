"""A receiver of baoke's webhook contract (:mod:`baoke.channels.webhook`), as a well-behaved
gateway implements it: it checks the signature and its age, and accepts each message key once.

A message whose key it already accepted is answered ``accepted`` again with the first id, is
not counted again in ``accepted`` and is listed in ``duplicates``: a test sees both that the
adapter resent and that the customer got it once.

Modes (see :class:`~baoke.channels.loopback.base.LoopbackServer`): ``ok``; ``throttle`` (429);
``auth`` (401 whatever the signature); ``timeout`` (accept, then answer too late);
``malformed`` (a 200 that is not JSON); ``error`` (500); ``partial`` (rejects every 3rd
message of a request); ``incomplete`` (leaves out the result of every 2nd message).
"""

from __future__ import annotations

import json
import time
from typing import Any

from baoke.channels.loopback.base import LoopbackServer, Request, Response
from baoke.channels.webhook import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

__all__ = ["WebhookServer"]


def _json(status: int, payload: Any) -> Response:
    return Response(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"))


class WebhookServer(LoopbackServer):
    """The fake receiver. ``secret`` is the shared key; ``tolerance_s`` the accepted age."""

    def __init__(self, secret: bytes | str, *, tolerance_s: float = 300) -> None:
        super().__init__()
        self.secret = secret.encode("utf-8") if isinstance(secret, str) else secret
        self.tolerance_s = tolerance_s
        self.duplicates: list[str] = []
        self.idempotency_keys: list[str] = []
        self.bad_signatures = 0
        self._ids: dict[str, str] = {}  # message key → the id it was accepted under

    def _forget(self) -> None:
        super()._forget()
        self.hang_seconds = 5.0
        self.duplicates.clear()
        self.idempotency_keys.clear()
        self.bad_signatures = 0
        self._ids.clear()

    def answer(self, request: Request) -> Response:
        """Verify, dedupe and answer one POST."""
        if request.method != "POST":
            return _json(405, {"error": "POST only"})
        if self.mode == "auth":
            return _json(401, {"error": "unknown client"})
        timestamp = request.headers.get(TIMESTAMP_HEADER.lower(), "")
        signature = request.headers.get(SIGNATURE_HEADER.lower(), "")
        if not verify(
            self.secret,
            timestamp,
            request.body,
            signature,
            now=time.time(),
            tolerance_s=self.tolerance_s,
        ):
            with self.lock:
                self.bad_signatures += 1
            return _json(401, {"error": "bad signature"})
        if self.mode == "throttle":
            return _json(429, {"error": "slow down"})
        if self.mode == "error":
            return _json(500, {"error": "internal error"})
        key = request.headers.get(IDEMPOTENCY_HEADER.lower())
        if not key:
            return _json(400, {"error": "Idempotency-Key missing"})
        try:
            messages = json.loads(request.body)["messages"]
        except (ValueError, KeyError, TypeError):
            return _json(400, {"error": "body is not {'messages': [...]}"})
        with self.lock:
            self.idempotency_keys.append(key)
        results = [self._one(index, message) for index, message in enumerate(messages)]
        if self.mode == "incomplete":
            results = results[::2]
        if self.mode == "timeout":
            self.hang()
        if self.mode == "malformed":
            return Response(200, b"<html>upstream busy</html>", "text/html")
        return _json(200, {"results": results})

    def _one(self, index: int, message: dict[str, Any]) -> dict[str, Any]:
        touch_id = message.get("touch_id")
        if self.mode == "partial" and index % 3 == 2:
            return {"touch_id": touch_id, "status": "rejected", "error": "E_OPTED_OUT"}
        key = str(message.get("key"))
        with self.lock:
            known = self._ids.get(key)
            if known is not None:
                self.duplicates.append(key)
                return {"touch_id": touch_id, "status": "accepted", "id": known}
            provider_id = f"wh-{len(self._ids) + 1}"
            self._ids[key] = provider_id
        self.accept(key, dict(message, id=provider_id))
        return {"touch_id": touch_id, "status": "accepted", "id": provider_id}
