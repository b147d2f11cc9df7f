"""A WeCom (qyapi.weixin.qq.com) fake: the 客户联系 endpoints baoke calls, and callbacks.

It answers as WeCom documents: ``gettoken`` issues tokens with a lifetime, every other call
checks its ``access_token`` (40014 unknown, 42001 expired), ``add_msg_template`` creates a task
and lists the customers it cannot reach in ``fail_list``, ``send_welcome_msg`` takes a code
once (41051 after), transfers answer per customer. ``mode`` misbehaves on purpose:

* ``throttle``: errcode 45009 on every API call; ``auth``: ``auth_errcode`` (40001, or 60020
  for an IP not on the trusted list) on every call, gettoken included;
* ``expired``: the next API call answers 42001 once and retires its token, so the client must
  fetch a new one;
* ``timeout``: hold each API call ``hang_seconds``; ``malformed``: an HTML page;
  ``error``: HTTP 500; ``partial``: every second customer of a mass send lands in fail_list.

Contacts are set up with :meth:`WecomLoopback.add_contact`. :func:`encrypted_callback` and
:func:`contact_event_xml` build a real encrypted callback for the callback route's tests.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.parse
from collections import Counter
from typing import Any

from baoke.channels.loopback.base import LoopbackServer, Request, Response
from baoke.channels.wecom_crypto import WecomCrypto, signature

__all__ = [
    "CORP_ID",
    "SECRET",
    "WecomLoopback",
    "contact_event_xml",
    "encrypted_callback",
    "verification_query",
]

CORP_ID = "ww0123456789abcdef"
SECRET = "loopback-secret-0123456789"
_TRANSFER_MAX = 100


def _json(payload: dict[str, Any], status: int = 200) -> Response:
    return Response(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"))


def _err(code: int, message: str) -> Response:
    return _json({"errcode": code, "errmsg": message})


class WecomLoopback(LoopbackServer):
    """The fake. ``token_lifetime`` is the ``expires_in`` gettoken gives (seconds)."""

    def __init__(self, corp_id: str = CORP_ID, secret: str = SECRET) -> None:
        super().__init__()
        self.corp_id = corp_id
        self.secret = secret
        self.token_lifetime = 7200
        self.auth_errcode = 40001
        self.gettoken_calls = 0
        self.calls: Counter[str] = Counter()
        self.tokens: dict[str, float] = {}  # token → expiry (monotonic)
        # external_userid → {"name": …, "follow_user": [{"userid", "remark_mobiles", "state"}]}
        self.contacts: dict[str, dict[str, Any]] = {}
        # msgid → {"sender", "text", "status": {external_userid: 0|1|2|3}}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.used_welcome_codes: set[str] = set()
        self.busy_welcome_codes: set[str] = set()
        self.transfers: list[dict[str, Any]] = []
        self.result_page = 1000  # the largest page get_groupmsg_send_result gives
        self._expire_next = False
        self._ids = 0

    # -- set-up helpers ----------------------------------------------------------------------

    def add_contact(
        self,
        external_userid: str,
        userid: str,
        *,
        remark_mobiles: tuple[str, ...] = (),
        state: str | None = None,
        name: str = "客户",
    ) -> None:
        """Make ``external_userid`` a contact of member ``userid``."""
        with self.lock:
            contact = self.contacts.setdefault(
                external_userid,
                {"external_userid": external_userid, "name": name, "follow_user": []},
            )
            contact["follow_user"].append(
                {
                    "userid": userid,
                    "remark_mobiles": list(remark_mobiles),
                    "state": state or "",
                    "createtime": int(time.time()),
                }
            )

    def followers(self, external_userid: str) -> list[str]:
        """The members ``external_userid`` is a contact of."""
        contact = self.contacts.get(external_userid) or {}
        return [f["userid"] for f in contact.get("follow_user", [])]

    def set_result(self, msgid: str, external_userid: str, status: int) -> None:
        """Say what became of one customer of a task (0 pending, 1 sent, 2/3 failed)."""
        with self.lock:
            self.tasks[msgid]["status"][external_userid] = status

    def expire_tokens(self) -> None:
        """Retire every token now (WeCom may invalidate tokens before their time)."""
        with self.lock:
            for token in self.tokens:
                self.tokens[token] = 0.0

    # -- answers -----------------------------------------------------------------------------

    def answer(self, request: Request) -> Response:
        path = request.path.removeprefix("/cgi-bin/")
        with self.lock:
            self.calls[path] += 1
        if self.mode == "auth":
            return _err(self.auth_errcode, "not allow to access from your ip, hint: [loopback]")
        if self.mode == "error":
            return Response(500, b"<html>502 Bad Gateway</html>", "text/html")
        if path == "gettoken":
            return self._gettoken(request)
        if self.mode == "malformed":
            return Response(200, b"<html>oops</html>", "text/html")
        if self.mode == "timeout":
            self.hang()
        if self.mode == "throttle":
            return _err(45009, "api freq out of limit")
        refused = self._check_token(request)
        if refused is not None:
            return refused
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return _err(47001, "data format error")
        handler = {
            "externalcontact/add_msg_template": self._add_msg_template,
            "externalcontact/send_welcome_msg": self._send_welcome_msg,
            "externalcontact/get_groupmsg_send_result": self._send_result,
            "externalcontact/resigned/transfer_customer": self._transfer,
            "externalcontact/transfer_customer": self._transfer,
        }.get(path)
        if path == "externalcontact/get":
            return self._get_contact(request)
        if handler is None:
            return _err(404, f"no such api {path} in the loopback")
        return handler(body)

    def _gettoken(self, request: Request) -> Response:
        corp = (request.query.get("corpid") or [""])[0]
        secret = (request.query.get("corpsecret") or [""])[0]
        with self.lock:
            self.gettoken_calls += 1
        if corp != self.corp_id:
            return _err(40013, "invalid corpid")
        if secret != self.secret:
            return _err(40001, "invalid credential")
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = time.monotonic() + self.token_lifetime
        return _json(
            {
                "errcode": 0,
                "errmsg": "ok",
                "access_token": token,
                "expires_in": self.token_lifetime,
            }
        )

    def _check_token(self, request: Request) -> Response | None:
        token = (request.query.get("access_token") or [""])[0]
        with self.lock:
            expiry = self.tokens.get(token)
            if expiry is None:
                return _err(40014, "invalid access_token")
            if self.mode == "expired" and not self._expire_next:
                # Once per "expired" mode: retire this token and say so.
                self._expire_next = True
                self.tokens[token] = 0.0
                return _err(42001, "access_token expired")
            if expiry <= time.monotonic():
                return _err(42001, "access_token expired")
        return None

    def _next_id(self, prefix: str) -> str:
        with self.lock:
            self._ids += 1
            return f"{prefix}{self._ids:06d}"

    def _add_msg_template(self, body: dict[str, Any]) -> Response:
        sender = body.get("sender")
        externals = body.get("external_userid") or []
        text = ((body.get("text") or {}).get("content")) or ""
        if body.get("chat_type", "single") != "single" or not isinstance(externals, list):
            return _err(40058, "invalid request parameter")
        if not sender:
            return _err(40003, "invalid userid")
        if not text:
            return _err(41041, "text content is empty")
        failed: list[str] = []
        accepted: list[str] = []
        for index, external in enumerate(externals):
            # "partial": as if every second customer had reached the monthly cap.
            partial = self.mode == "partial" and index % 2 == 1
            if partial or sender not in self.followers(external):
                failed.append(external)
            else:
                accepted.append(external)
        msgid = self._next_id("msgGAAA")
        with self.lock:
            self.tasks[msgid] = {
                "sender": sender,
                "text": text,
                "status": dict.fromkeys(accepted, 1),
            }
        for external in accepted:
            self.accept(
                f"{sender}:{external}:{text}",
                {"msgid": msgid, "sender": sender, "external_userid": external, "text": text},
            )
        return _json({"errcode": 0, "errmsg": "ok", "fail_list": failed, "msgid": msgid})

    def _send_welcome_msg(self, body: dict[str, Any]) -> Response:
        code = str(body.get("welcome_code") or "")
        text = ((body.get("text") or {}).get("content")) or ""
        if not code:
            return _err(41053, "welcome_code is empty")
        with self.lock:
            if code in self.busy_welcome_codes:
                return _err(41096, "welcome msg is being distributed")
            if code in self.used_welcome_codes:
                return _err(41051, "externaluser has started chatting")
            self.used_welcome_codes.add(code)
        self.accept(f"welcome:{code}", {"welcome_code": code, "text": text})
        return _json({"errcode": 0, "errmsg": "ok"})

    def _send_result(self, body: dict[str, Any]) -> Response:
        task = self.tasks.get(str(body.get("msgid")))
        if task is None or task["sender"] != body.get("userid"):
            return _err(41063, "msgid not exist or not created by this user")
        limit = min(int(body.get("limit") or 500), self.result_page)
        start = int(body.get("cursor") or 0)
        rows = sorted(task["status"].items())
        page = rows[start : start + limit]
        send_list = [
            {
                "external_userid": external,
                "chat_id": "",
                "userid": task["sender"],
                "status": status,
                **({"send_time": int(time.time())} if status == 1 else {}),
            }
            for external, status in page
        ]
        more = start + limit < len(rows)
        return _json(
            {
                "errcode": 0,
                "errmsg": "ok",
                "send_list": send_list,
                **({"next_cursor": str(start + limit)} if more else {}),
            }
        )

    def _transfer(self, body: dict[str, Any]) -> Response:
        handover, takeover = body.get("handover_userid"), body.get("takeover_userid")
        externals = body.get("external_userid") or []
        if not handover or not takeover:
            return _err(40003, "invalid userid")
        if len(externals) > _TRANSFER_MAX:
            return _err(40058, "external_userid exceed max length 100")
        customers = []
        with self.lock:
            self.transfers.append(dict(body))
        for external in externals:
            follows = (self.contacts.get(external) or {}).get("follow_user", [])
            mine = [f for f in follows if f["userid"] == handover]
            if not mine:
                customers.append({"external_userid": external, "errcode": 40096})
                continue
            with self.lock:
                mine[0]["userid"] = takeover
            customers.append({"external_userid": external, "errcode": 0})
        return _json({"errcode": 0, "errmsg": "ok", "customer": customers})

    def _get_contact(self, request: Request) -> Response:
        external = (request.query.get("external_userid") or [""])[0]
        contact = self.contacts.get(external)
        if contact is None:
            return _err(84061, "not external contact")
        return _json(
            {
                "errcode": 0,
                "errmsg": "ok",
                "external_contact": {
                    "external_userid": external,
                    "name": contact["name"],
                    "type": 1,
                },
                "follow_user": contact["follow_user"],
            }
        )


# --------------------------------------------------------------------------------------------
# callbacks, as WeCom posts them


def contact_event_xml(
    change_type: str,
    user_id: str,
    external_userid: str,
    *,
    create_time: int,
    corp_id: str = CORP_ID,
    state: str | None = None,
    welcome_code: str | None = None,
    source: str | None = None,
    fail_reason: str | None = None,
) -> str:
    """The decrypted XML of a ``change_external_contact`` callback (document 92277)."""
    optional = [
        ("State", state),
        ("WelcomeCode", welcome_code),
        ("Source", source),
        ("FailReason", fail_reason),
    ]
    extra = "".join(f"<{tag}><![CDATA[{value}]]></{tag}>" for tag, value in optional if value)
    return (
        f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName>"
        "<FromUserName><![CDATA[sys]]></FromUserName>"
        f"<CreateTime>{create_time}</CreateTime>"
        "<MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[change_external_contact]]></Event>"
        f"<ChangeType><![CDATA[{change_type}]]></ChangeType>"
        f"<UserID><![CDATA[{user_id}]]></UserID>"
        f"<ExternalUserID><![CDATA[{external_userid}]]></ExternalUserID>"
        f"{extra}</xml>"
    )


def encrypted_callback(
    crypto: WecomCrypto,
    plaintext_xml: str,
    *,
    timestamp: str | None = None,
    nonce: str | None = None,
    agent_id: str = "1000002",
) -> tuple[dict[str, str], bytes]:
    """The query (``msg_signature``, ``timestamp``, ``nonce``) and body of the POST WeCom
    sends for ``plaintext_xml``; post them to ``/callbacks/wecom``."""
    stamp = timestamp or str(int(time.time()))
    once = nonce or str(secrets.randbelow(10**10))
    encrypted = crypto.encrypt_text(plaintext_xml)
    body = (
        f"<xml><ToUserName><![CDATA[{crypto.receive_id}]]></ToUserName>"
        f"<Encrypt><![CDATA[{encrypted}]]></Encrypt>"
        f"<AgentID><![CDATA[{agent_id}]]></AgentID></xml>"
    )
    query = {
        "msg_signature": signature(crypto.token, stamp, once, encrypted),
        "timestamp": stamp,
        "nonce": once,
    }
    return query, body.encode("utf-8")


def verification_query(crypto: WecomCrypto, echo: str, *, timestamp: str = "1409659589") -> str:
    """The URL-encoded query of WeCom's GET URL verification whose answer is ``echo``."""
    nonce = str(secrets.randbelow(10**9))
    encrypted = crypto.encrypt_text(echo)
    return urllib.parse.urlencode(
        {
            "msg_signature": signature(crypto.token, timestamp, nonce, encrypted),
            "timestamp": timestamp,
            "nonce": nonce,
            "echostr": encrypted,
        }
    )
