"""What providers and customers call back on: receipts, replies, WeCom events, links.

- ``POST /callbacks/aliyun/report`` and ``/callbacks/aliyun/up`` (SmsReport, SmsUp),
  ``POST /callbacks/tencent/status`` and ``/callbacks/tencent/reply``: the SMS providers'
  HTTP pushes. They carry no signature of their own, so the URL configured in the provider's
  console carries ``?token=<BAOKE_CALLBACK_TOKEN>``, compared in constant time. The answer is
  the acknowledgement the provider documents; a body that cannot be read is a 400 (the
  provider retries it, and nothing was stored).
- ``GET /callbacks/wecom`` (URL verification) and ``POST /callbacks/wecom`` (events): signed
  and encrypted by WeCom (WXBizMsgCrypt), checked before anything is read. A friend added
  or deleted updates the relation and reaches the journeys; an add with a welcome code gets
  its welcome message sent after the answer, inside WeCom's 20-second window.
- ``GET /s/<code>``: a short link in a message; counts the click on its touch and redirects.
- ``GET /u/<code>`` shows a one-button page, ``POST /u/<code>`` unsubscribes from e-mail
  (the ``List-Unsubscribe-Post`` one-click form posts here too).

Every callback is idempotent: the events carry the provider's own identifiers as their keys.
"""

from __future__ import annotations

import datetime as dt
import hmac
import html
import logging
import re
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import BackgroundTasks, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from sqlalchemy import Engine, select

from baoke.channels import aliyun_sms, tencent_sms
from baoke.channels.inbound import apply, click_event, receipt_events, reply_events
from baoke.channels.protocol import Inbound, Receipt
from baoke.channels.registry import Providers
from baoke.channels.secrets import load_secrets
from baoke.channels.wecom import WecomAdapter
from baoke.channels.wecom_crypto import WecomCryptoError
from baoke.channels.wecom_events import apply_event, parse_callback
from baoke.config import Settings
from baoke.errors import BaokeError, InputError
from baoke.store import models as m
from baoke.store.models import table

__all__ = ["RedactTokens", "mount_callbacks"]

log = logging.getLogger("baoke.callbacks")
_TOKEN_RE = re.compile(r"((?:^|[?&])(?:token|access_token|echostr)=)[^&\s]*")


class RedactTokens(logging.Filter):
    """Blank the callback token in access-log lines (providers put it in the URL)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_RE.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args
            )
        return True


_SMS_PUSHES: dict[tuple[str, str], tuple[Callable[[bytes], list[Any]], bytes]] = {
    ("aliyun", "report"): (aliyun_sms.parse_report, aliyun_sms.CALLBACK_ACK),
    ("aliyun", "up"): (aliyun_sms.parse_up, aliyun_sms.CALLBACK_ACK),
    ("tencent", "status"): (tencent_sms.parse_status, tencent_sms.CALLBACK_ACK),
    ("tencent", "reply"): (tencent_sms.parse_reply, tencent_sms.CALLBACK_ACK),
}

_PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>{title}</title>
</head><body style="font-family:sans-serif;max-width:32em;margin:3em auto;padding:0 1em">
<h1 style="font-size:1.3em">{title}</h1>{body}</body></html>"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=html.escape(title), body=body), status_code=status)


def mount_callbacks(app: FastAPI, settings: Settings, store: Engine) -> None:
    """Add the callback, short-link and unsubscribe routes to ``app``."""
    providers = Providers(settings, store)
    logging.getLogger("uvicorn.access").addFilter(RedactTokens())

    def token_ok(token: str | None) -> None:
        expected = load_secrets().get("BAOKE_CALLBACK_TOKEN")
        if not expected:
            raise HTTPException(503, "callbacks are off: set BAOKE_CALLBACK_TOKEN")
        if not hmac.compare_digest((token or "").encode(), expected.encode()):
            raise HTTPException(401, "missing or wrong callback token")

    @app.post("/callbacks/{provider}/{kind}")
    async def sms_push(
        provider: str, kind: str, request: Request, token: Annotated[str | None, Query()] = None
    ) -> Response:
        handler = _SMS_PUSHES.get((provider, kind))
        if handler is None:
            raise HTTPException(404, f"no callback {provider}/{kind}")
        token_ok(token)
        parse, ack = handler
        try:
            items = parse(await request.body())
        except InputError as exc:
            raise HTTPException(400, str(exc)) from exc
        receipts = [i for i in items if isinstance(i, Receipt)]
        replies = [i for i in items if isinstance(i, Inbound)]
        with store.connect() as conn:
            rows, unmatched = receipt_events(conn, receipts)
        rows.extend(reply_events(replies))
        done = apply(settings, store, rows)
        if unmatched or done.rejected:
            log.warning(
                "%s %s: %d item(s) for no known touch, %d rejected",
                provider,
                kind,
                unmatched,
                len(done.rejected),
            )
        return Response(ack, media_type="application/json")

    def wecom() -> WecomAdapter:
        try:
            adapter = providers.get("wecom")
        except BaokeError as exc:
            raise HTTPException(503, f"WeCom is not configured: {exc}") from exc
        if not isinstance(adapter, WecomAdapter):
            raise HTTPException(503, "the 'wecom' provider is not baoke's WeCom adapter")
        return adapter

    @app.get("/callbacks/wecom")
    def wecom_verify(
        msg_signature: str, timestamp: str, nonce: str, echostr: str
    ) -> PlainTextResponse:
        try:
            plain = wecom().callback_crypto().verify_url(msg_signature, timestamp, nonce, echostr)
        except (WecomCryptoError, BaokeError) as exc:
            raise HTTPException(403, str(exc)) from exc
        return PlainTextResponse(plain)

    @app.post("/callbacks/wecom")
    async def wecom_event(
        request: Request,
        background: BackgroundTasks,
        msg_signature: str,
        timestamp: str,
        nonce: str,
    ) -> PlainTextResponse:
        adapter = wecom()
        body = (await request.body()).decode("utf-8", errors="replace")
        try:
            xml = adapter.callback_crypto().decrypt(msg_signature, timestamp, nonce, body)
            event = parse_callback(xml)
        except (WecomCryptoError, BaokeError) as exc:
            raise HTTPException(403, str(exc)) from exc
        if event is None:
            return PlainTextResponse("")  # chats, tags …: acknowledged, not used
        if event.welcome_code:
            text = adapter.welcome_text(event.state)
            if text:
                background.add_task(_welcome, adapter, event.welcome_code, text)
        with store.begin() as conn:
            rows = apply_event(conn, event, fetch_contact=adapter.remark_mobiles)
        if rows:
            background.add_task(apply, settings, store, rows)
        # WeCom retries unless answered within 5 seconds: answer first, react after.
        return PlainTextResponse("")

    @app.get("/s/{code}")
    def short_link(code: str) -> Response:
        now = dt.datetime.now(dt.UTC)
        with store.begin() as conn:
            try:
                url, rows = click_event(conn, code, now)
            except KeyError:
                return _page("链接已失效", "<p>这个链接不存在或已失效。</p>", 404)
        if rows:
            apply(settings, store, rows)
        return RedirectResponse(url, status_code=302)

    def unsubscribe_link(code: str) -> tuple[int, int]:
        links = table(m.ShortLink)
        touches = table(m.Touch)
        with store.connect() as conn:
            row = conn.execute(
                select(touches.c.customer_id, links.c.touch_id)
                .join(touches, touches.c.id == links.c.touch_id)
                .where(links.c.code == code, links.c.purpose == "unsubscribe")
            ).first()
        if row is None:
            raise HTTPException(404, "no such unsubscribe link")
        return int(row[0]), int(row[1])

    @app.get("/u/{code}")
    def unsubscribe_page(code: str) -> HTMLResponse:
        unsubscribe_link(code)
        form = (
            f'<p>确认后，我们将不再向这个邮箱发送邮件。</p><form method="post" action="/u/{code}">'
            '<button type="submit">确认退订</button></form>'
        )
        return _page("退订邮件", form)

    @app.post("/u/{code}")
    def unsubscribe(code: str) -> HTMLResponse:
        customer, _ = unsubscribe_link(code)
        row = {
            "event_id": f"unsubscribe:{code}",
            "type": "unsubscribe",
            "customer_id": customer,
            "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
            "channel": "email",
        }
        apply(settings, store, [row])
        return _page("已退订", "<p>您已退订，我们不会再向这个邮箱发送邮件。</p>")


def _welcome(adapter: WecomAdapter, code: str, text: str) -> None:
    try:
        adapter.send_welcome(code, text)
    except Exception as exc:  # a welcome that could not go must not break the callback
        log.warning("wecom welcome message not sent: %s", type(exc).__name__)
