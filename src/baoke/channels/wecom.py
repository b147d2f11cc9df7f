"""WeCom (企业微信) 客户联系: mass-send tasks, welcome messages, results and transfers.

The adapter calls the server API at ``options["endpoint"]`` (https://qyapi.weixin.qq.com by
default) with a self-built app's secret (``BAOKE_WECOM_SECRET``) that the admin added under
客户联系 → 可调用接口的应用; the WeCom page under docs/channels/ walks through the console.

What ``send`` does: WeCom does not let a server message a customer directly. A mass send
(``externalcontact/add_msg_template``) creates a *task* for the staff member named in
``sender``; the member confirms it in the WeCom client, and only then does the customer get
it. So outcome ``sent`` means "the task was created"; :meth:`WecomAdapter.poll_results` later
reports, per customer, whether it went out (``delivered``) or not (``failed``). One task goes
to one sender with one text, so a batch is split by (sender, text): the dispatcher renders
personalised texts, which usually means one request per message.

Access tokens are cached per (corp id, secret) until five minutes before they expire, fetched
by one thread while the others wait (WeCom rate-limits ``gettoken``), and fetched again once
when WeCom says the token is invalid or expired. Neither the token nor the secret ever appears
in an error or a log line.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import httpx

from baoke.channels.protocol import (
    AdapterContext,
    ErrorKind,
    Message,
    ProviderError,
    Receipt,
    SendResult,
)
from baoke.channels.wecom_crypto import WecomCrypto
from baoke.errors import ConfigError

__all__ = [
    "DEFAULT_ENDPOINT",
    "AccessTokens",
    "WecomAdapter",
    "WecomApiError",
    "error_kind",
    "make",
    "send_welcome",
]

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://qyapi.weixin.qq.com"
TRANSFER_CHUNK = 100  # transfer_customer and resigned/transfer_customer take ≤100 ids (96325/96331)
_RESULT_PAGE = 1000  # get_groupmsg_send_result: limit ≤1000

# errcodes (document 90455 and CHANNELS.md §1.9)
_REFETCH_TOKEN = frozenset({40001, 40014, 42001})  # invalid secret / invalid token / expired
_AUTH = frozenset({40001, 40013, 40014, 42001, 41001, 48002, 60020})
_THROTTLED = frozenset({45009, 45033})
_TRANSIENT = frozenset({-1})
WELCOME_ALREADY = 41051  # the customer already got a welcome (or started chatting)
WELCOME_BUSY = 41096  # another app holds the welcome_code for now: not a success, may retry
NOT_A_CONTACT = 84061  # externalcontact/get: no such external contact

_RESULT_STATUS = {
    1: ("delivered", None),
    2: ("failed", "wecom: the customer is no longer the sender's contact"),
    3: ("failed", "wecom: the customer already received another mass message (monthly cap)"),
}

_SECRET_QUERY = re.compile(r"((?:access_token|corpsecret)=)[^&\s\"']+", re.IGNORECASE)


def _redact(text: str) -> str:
    """``text`` without any access_token or corpsecret value (httpx errors quote the URL)."""
    return _SECRET_QUERY.sub(r"\1***", text)


class _RedactQuery(logging.Filter):
    """Blank the token in httpx's own request log lines ("HTTP Request: POST https://…")."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(
                _redact(str(a)) if isinstance(a, httpx.URL | str) else a for a in args
            )
        record.msg = _redact(str(record.msg))
        return True


_FILTER = _RedactQuery()


def _protect_httpx_log() -> None:
    # httpx logs every request URL at INFO, and WeCom takes the token in the query string.
    logger = logging.getLogger("httpx")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


def error_kind(errcode: int) -> ErrorKind:
    """How the dispatcher should treat a WeCom errcode (for a whole request)."""
    if errcode in _TRANSIENT:
        return "transient"
    if errcode in _THROTTLED:
        return "throttled"
    if errcode in _AUTH:
        return "auth"
    return "permanent"


class WecomApiError(ProviderError):
    """A WeCom request that failed; ``errcode`` is WeCom's (None: no readable answer)."""

    def __init__(
        self, kind: ErrorKind, message: str, *, errcode: int | None = None, maybe_sent: bool = False
    ) -> None:
        super().__init__(kind, message, maybe_sent=maybe_sent)
        self.errcode = errcode


# --------------------------------------------------------------------------------------------
# access tokens and pacing


class AccessTokens:
    """Access tokens by (corp id, secret), refreshed by one thread at a time.

    A token is kept until ``margin`` seconds (five minutes, or half its life when WeCom gives
    less than ten) before its ``expires_in``. ``invalidate`` drops a token WeCom refused, but
    only if it is still the current one: eight threads that all got 42001 with the same token
    cause one ``gettoken``, not eight.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, margin: float = 300.0) -> None:
        self._clock = clock
        self._margin = margin
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}

    @staticmethod
    def _key(corp_id: str, secret: str) -> tuple[str, str]:
        # A digest, so the cache's keys do not hold the secret itself.
        return corp_id, hashlib.sha256(secret.encode("utf-8")).hexdigest()

    def _valid(self, key: tuple[str, str]) -> str | None:
        entry = self._tokens.get(key)
        if entry is not None and entry[1] > self._clock():
            return entry[0]
        return None

    def get(self, corp_id: str, secret: str, fetch: Callable[[], tuple[str, int]]) -> str:
        """The cached token, or a new one from ``fetch() -> (token, expires_in)``."""
        key = self._key(corp_id, secret)
        token = self._valid(key)
        if token is not None:
            return token
        with self._lock:
            # Another thread may have fetched it while this one waited for the lock.
            token = self._valid(key)
            if token is not None:
                return token
            token, expires_in = fetch()
            keep = max(0.0, expires_in - min(self._margin, expires_in / 2))
            self._tokens[key] = (token, self._clock() + keep)
            return token

    def invalidate(self, corp_id: str, secret: str, stale: str) -> None:
        """Forget ``stale`` if it is still the cached token."""
        key = self._key(corp_id, secret)
        with self._lock:
            entry = self._tokens.get(key)
            if entry is not None and entry[0] == stale:
                del self._tokens[key]


class _Pacer:
    """At most ``rate`` requests per second across threads (one send may make many requests)."""

    def __init__(
        self, rate: float, clock: Callable[[], float], sleep: Callable[[float], None]
    ) -> None:
        self._interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = 0.0

    def wait(self) -> None:
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self._interval
        if slot > now:
            self._sleep(slot - now)


# --------------------------------------------------------------------------------------------
# the adapter


def _errcode(data: Mapping[str, Any]) -> int:
    code = data.get("errcode", 0)
    return code if isinstance(code, int) else -1


def _utc(seconds: Any) -> dt.datetime:
    if isinstance(seconds, int | float) and seconds > 0:
        return dt.datetime.fromtimestamp(seconds, dt.UTC)
    return dt.datetime.now(dt.UTC)


class WecomAdapter:
    """The WeCom provider: ``send`` creates mass-send tasks; the rest serves the callbacks.

    Thread-safe: the token cache, the pacer and the ``httpx.Client`` are shared by threads.
    """

    channel = "wecom"
    idempotent = False  # add_msg_template takes no idempotency key: a repeat is a second task

    def __init__(
        self,
        corp_id: str,
        secret: str,
        *,
        name: str = "wecom",
        endpoint: str = DEFAULT_ENDPOINT,
        rate: float = 20.0,
        max_batch: int = 200,
        timeout: float = 10.0,
        welcome: Mapping[str, str] | None = None,
        callback_secret: Callable[[str], str] | None = None,
        tokens: AccessTokens | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.corp_id = corp_id
        self._secret = secret
        self.endpoint = endpoint.rstrip("/")
        self.rate = float(rate)
        self.max_batch = int(max_batch)
        self.welcome = dict(welcome or {})
        self._callback_secret = callback_secret
        self._crypto: WecomCrypto | None = None
        self._tokens = tokens if tokens is not None else AccessTokens(clock)
        self._pacer = _Pacer(self.rate, clock, sleep)
        self._client = httpx.Client(timeout=httpx.Timeout(timeout), headers={"User-Agent": "baoke"})
        _protect_httpx_log()

    def __repr__(self) -> str:
        return f"WecomAdapter({self.name!r}, corp_id={self.corp_id!r}, endpoint={self.endpoint!r})"

    # -- HTTP ------------------------------------------------------------------------------------

    def _exchange(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str],
        body: Mapping[str, Any] | None,
        sending: bool,
    ) -> dict[str, Any]:
        """One HTTP request; its JSON object, or a WecomApiError without any secret in it.

        ``sending``: the request creates something (a task, a welcome, a transfer), so a lost
        answer after the body went out means it may have been done.
        """
        where = f"wecom {path}"
        try:
            response = self._client.request(
                method, f"{self.endpoint}/cgi-bin/{path}", params=params, json=body
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise WecomApiError(
                "transient", f"{where}: cannot connect ({type(exc).__name__})"
            ) from None
        except httpx.TimeoutException as exc:
            raise WecomApiError(
                "transient",
                f"{where}: no answer in time ({type(exc).__name__})",
                maybe_sent=sending,
            ) from None
        except httpx.HTTPError as exc:
            raise WecomApiError(
                "transient",
                f"{where}: {type(exc).__name__}: {_redact(str(exc))[:200]}",
                maybe_sent=sending,
            ) from None
        if response.status_code >= 500:
            # WeCom's front end answers 5xx before the API ran: nothing was created.
            raise WecomApiError("transient", f"{where}: HTTP {response.status_code}")
        if response.status_code in (401, 403):
            raise WecomApiError("auth", f"{where}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise WecomApiError(
                "permanent", f"{where}: HTTP {response.status_code} (check the endpoint option)"
            )
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise WecomApiError(
                "transient", f"{where}: the reply is not a JSON object", maybe_sent=sending
            )
        return data

    def _api_error(self, path: str, data: Mapping[str, Any]) -> WecomApiError:
        code = _errcode(data)
        text = _redact(str(data.get("errmsg") or ""))
        # errmsg carries a "more info at …, hint: […]" tail; the code and its start are enough.
        text = text.split(", more info")[0][:160]
        return WecomApiError(error_kind(code), f"wecom {path}: errcode {code} {text}", errcode=code)

    def _fetch_token(self) -> tuple[str, int]:
        params = {"corpid": self.corp_id, "corpsecret": self._secret}
        data = self._exchange("GET", "gettoken", params=params, body=None, sending=False)
        if _errcode(data) != 0:
            raise self._api_error("gettoken", data)
        token, expires_in = data.get("access_token"), data.get("expires_in", 7200)
        if not isinstance(token, str) or not token or not isinstance(expires_in, int):
            raise WecomApiError("transient", "wecom gettoken: the reply has no access_token")
        return token, expires_in

    def _token(self) -> str:
        return self._tokens.get(self.corp_id, self._secret, self._fetch_token)

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        sending: bool = False,
    ) -> dict[str, Any]:
        """Call ``/cgi-bin/<path>`` with the access token; the reply when its errcode is 0.

        A refused token (40001, 40014, 42001) is fetched again once and the call repeated;
        any other errcode raises :class:`WecomApiError`.
        """
        for attempt in range(2):
            token = self._token()
            self._pacer.wait()
            query = {**(params or {}), "access_token": token}
            data = self._exchange(method, path, params=query, body=body, sending=sending)
            code = _errcode(data)
            if code == 0:
                return data
            if code in _REFETCH_TOKEN and attempt == 0:
                log.info("wecom %s: errcode %s, fetching a new access token", path, code)
                self._tokens.invalidate(self.corp_id, self._secret, token)
                continue
            raise self._api_error(path, data)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- Adapter protocol ------------------------------------------------------------------------

    def send(self, batch: Sequence[Message]) -> list[SendResult]:
        """Create one mass-send task per (sender, text); one result per message.

        A message without ``sender`` (the staff member's WeCom userid) fails. Customers in the
        reply's ``fail_list`` fail; the others are ``sent`` with the task's ``msgid``. When the
        first request fails as a whole it raises; when a later one does, the earlier tasks
        stand, the failed group is ``retry`` (or ``failed`` if it may have been created, so a
        customer never gets it twice) and the groups not tried are ``retry``.
        """
        results: list[SendResult] = []
        groups: dict[tuple[str, str], list[Message]] = {}
        for message in batch:
            if not message.sender:
                results.append(SendResult(message.touch_id, "failed", error="no WeCom sender"))
            elif not message.address:
                results.append(
                    SendResult(message.touch_id, "failed", error="no WeCom external_userid")
                )
            else:
                groups.setdefault((message.sender, message.text), []).append(message)
        accepted = False
        pending = list(groups.items())
        for index, ((sender, text), messages) in enumerate(pending):
            try:
                reply = self._add_msg_template(sender, text, [m.address for m in messages])
            except WecomApiError as exc:
                if exc.kind == "permanent":
                    results.extend(
                        SendResult(m.touch_id, "failed", error=str(exc)) for m in messages
                    )
                    continue
                if not accepted:
                    raise
                results.extend(self._after_failure(exc, messages, pending[index + 1 :]))
                break
            accepted = True
            failed = {str(x) for x in reply.get("fail_list") or []}
            msgid = str(reply["msgid"])
            for m in messages:
                if m.address in failed:
                    results.append(
                        SendResult(
                            m.touch_id,
                            "failed",
                            error="wecom: in fail_list (not the sender's contact, or the "
                            "customer's mass-message cap is reached)",
                        )
                    )
                else:
                    results.append(SendResult(m.touch_id, "sent", provider_id=msgid))
        return results

    @staticmethod
    def _after_failure(
        exc: WecomApiError,
        messages: list[Message],
        rest: list[tuple[tuple[str, str], list[Message]]],
    ) -> list[SendResult]:
        if exc.maybe_sent:
            out = [
                SendResult(
                    m.touch_id,
                    "doubt",
                    error=f"{exc} — the task may exist (check 群发助手 in the WeCom admin console)",
                )
                for m in messages
            ]
        else:
            out = [SendResult(m.touch_id, "retry", error=str(exc)) for m in messages]
        note = f"not sent: an earlier request of the batch failed ({exc})"
        out.extend(SendResult(m.touch_id, "retry", error=note) for _, group in rest for m in group)
        return out

    def _add_msg_template(self, sender: str, text: str, addresses: list[str]) -> dict[str, Any]:
        body = {
            "chat_type": "single",
            "external_userid": list(dict.fromkeys(addresses)),
            "sender": sender,
            "text": {"content": text},
        }
        path = "externalcontact/add_msg_template"
        reply = self.call("POST", path, body=body, sending=True)
        failed = {str(x) for x in reply.get("fail_list") or []}
        if not reply.get("msgid") and any(a not in failed for a in addresses):
            raise WecomApiError(
                "transient", f"wecom {path}: the reply has no msgid", maybe_sent=True
            )
        return reply

    def reconcile(self, batch: Sequence[Message]) -> dict[int, str] | None:
        """None: WeCom cannot tell.

        ``add_msg_template`` takes no reference of ours, and finding a task again means
        paging ``get_groupmsg_list_v2`` by creator and time and matching texts, which cannot
        tell two tasks of the same text apart. A task in doubt is therefore not repeated.
        """
        return None

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    # -- callbacks: crypto and welcome messages ----------------------------------------------------

    def callback_crypto(self) -> WecomCrypto:
        """The crypto of the callback URL, from ``BAOKE_WECOM_TOKEN`` and
        ``BAOKE_WECOM_AES_KEY`` (read on first use: sending does not need them)."""
        if self._crypto is None:
            if self._callback_secret is None:
                raise ConfigError("the WeCom callback secrets are not available to this adapter")
            self._crypto = WecomCrypto(
                self._callback_secret("wecom_token"),
                self._callback_secret("wecom_aes_key"),
                self.corp_id,
            )
        return self._crypto

    def welcome_text(self, state: str | None) -> str | None:
        """The welcome text for a contact way's ``state`` (``welcome`` option), else its
        ``default``; None when neither is configured."""
        if state and state in self.welcome:
            return self.welcome[state]
        return self.welcome.get("default")

    def send_welcome(self, welcome_code: str, text: str) -> str:
        """Send the welcome message of an add event: ``"sent"``, or ``"already"`` (41051).

        Call it within 20 seconds of the event, once. 41096 (another app is sending with this
        code) raises a transient :class:`WecomApiError`, which may be retried inside the window.
        """
        body = {"welcome_code": welcome_code, "text": {"content": text}}
        try:
            self.call("POST", "externalcontact/send_welcome_msg", body=body, sending=True)
        except WecomApiError as exc:
            if exc.errcode == WELCOME_ALREADY:
                return "already"
            if exc.errcode == WELCOME_BUSY:
                raise WecomApiError(
                    "transient",
                    "wecom send_welcome_msg: errcode 41096 the welcome is being sent by another "
                    "app; retry within the 20 seconds",
                    errcode=WELCOME_BUSY,
                ) from None
            raise
        return "sent"

    # -- mass-send results -------------------------------------------------------------------------

    def poll_results(self, msgid: str, sender: str) -> list[Receipt]:
        """Per-customer outcome of a mass-send task (``get_groupmsg_send_result``).

        Status 1 (sent) → ``delivered``; 2 (not a friend) and 3 (the customer already got
        another mass message) → ``failed``; 0 (the member has not confirmed yet) gives no
        receipt. The receipt key ``wecom:result:<msgid>:<external_userid>`` makes a repeated
        poll idempotent.
        """
        receipts: list[Receipt] = []
        cursor = ""
        for _ in range(10_000):  # a bound, not a limit: 10 million customers per task
            body: dict[str, Any] = {"msgid": msgid, "userid": sender, "limit": _RESULT_PAGE}
            if cursor:
                body["cursor"] = cursor
            data = self.call("POST", "externalcontact/get_groupmsg_send_result", body=body)
            for row in data.get("send_list") or []:
                status = row.get("status")
                external = row.get("external_userid")
                if status not in _RESULT_STATUS or not external:
                    continue
                outcome, detail = _RESULT_STATUS[status]
                receipts.append(
                    Receipt(
                        provider_id=msgid,
                        status=outcome,
                        at=_utc(row.get("send_time")),
                        key=f"wecom:result:{msgid}:{external}",
                        address=str(external),
                        detail=detail,
                    )
                )
            cursor = str(data.get("next_cursor") or "")
            if not cursor:
                break
        return receipts

    # -- contacts and transfers --------------------------------------------------------------------

    def remark_mobiles(self, external_userid: str, userid: str) -> list[str]:
        """The mobiles staff noted on a contact (``externalcontact/get`` →
        ``follow_user[].remark_mobiles``): ``userid``'s first, then the other members'.

        This is the ``fetch_contact`` of :func:`baoke.channels.wecom_events.apply_event`.
        """
        mine: list[str] = []
        others: list[str] = []
        cursor = ""
        for _ in range(100):
            params = {"external_userid": external_userid}
            if cursor:
                params["cursor"] = cursor
            try:
                data = self.call("GET", "externalcontact/get", params=params)
            except WecomApiError as exc:
                if exc.errcode == NOT_A_CONTACT:
                    return []
                raise
            for follow in data.get("follow_user") or []:
                target = mine if follow.get("userid") == userid else others
                target.extend(str(x) for x in follow.get("remark_mobiles") or [] if x)
            cursor = str(data.get("next_cursor") or "")
            if not cursor:
                break
        return list(dict.fromkeys(mine + others))

    def transfer_resigned(
        self, handover_userid: str, takeover_userid: str, external_userids: Iterable[str]
    ) -> dict[str, int]:
        """Hand a departed member's customers to another (离职继承, ≤100 per request).

        Returns each customer's errcode: 0 means the transfer started (WeCom completes it after
        24 hours). A request that failed as a whole gives its errcode to each customer of it
        (-1 when no answer came); after a throttled, auth or transient failure the remaining
        customers are not tried and get the same code. Retry the non-zero ones later.
        """
        return self._transfer(
            "externalcontact/resigned/transfer_customer",
            {"handover_userid": handover_userid, "takeover_userid": takeover_userid},
            external_userids,
        )

    def transfer_in_service(
        self,
        handover_userid: str,
        takeover_userid: str,
        external_userids: Iterable[str],
        transfer_success_msg: str | None = None,
    ) -> dict[str, int]:
        """Hand a serving member's customers to another (在职继承); as
        :meth:`transfer_resigned`. ``transfer_success_msg`` (≤200 characters) is what the
        customer is told; WeCom's default text otherwise."""
        fields = {"handover_userid": handover_userid, "takeover_userid": takeover_userid}
        if transfer_success_msg:
            fields["transfer_success_msg"] = transfer_success_msg
        return self._transfer("externalcontact/transfer_customer", fields, external_userids)

    def _transfer(
        self, path: str, fields: Mapping[str, str], external_userids: Iterable[str]
    ) -> dict[str, int]:
        ids = list(dict.fromkeys(external_userids))
        results: dict[str, int] = {}
        for start in range(0, len(ids), TRANSFER_CHUNK):
            chunk = ids[start : start + TRANSFER_CHUNK]
            try:
                data = self.call(
                    "POST", path, body={**fields, "external_userid": chunk}, sending=True
                )
            except WecomApiError as exc:
                code = exc.errcode if exc.errcode is not None else -1
                if exc.kind == "permanent":
                    results.update(dict.fromkeys(chunk, code))
                    continue
                log.warning("%s; %d customers not transferred", exc, len(ids) - start)
                results.update(dict.fromkeys(ids[start:], code))
                break
            answered = {
                str(row.get("external_userid")): int(row.get("errcode", -1))
                for row in data.get("customer") or []
            }
            for external in chunk:
                results[external] = answered.get(external, -1)
        return results


def send_welcome(client: WecomAdapter, welcome_code: str, text: str) -> str:
    """Send an add event's welcome message through ``client``: ``"sent"`` or ``"already"``.

    See :meth:`WecomAdapter.send_welcome`.
    """
    return client.send_welcome(welcome_code, text)


# --------------------------------------------------------------------------------------------
# factory


def _positive(context: AdapterContext, option: str, default: float) -> float:
    value = context.option(option, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(
            f"channel provider '{context.name}': option {option} must be a positive number"
        )
    return float(value)


def make(context: AdapterContext) -> WecomAdapter:
    """The WeCom adapter of ``[channels.providers.wecom]``.

    Options: ``corp_id`` (required), ``endpoint``, ``rate`` (requests per second, 20),
    ``max_batch`` (200), ``timeout`` (seconds, 10), ``welcome`` (contact-way ``state`` →
    welcome text; ``default`` for any other state). Secret: ``BAOKE_WECOM_SECRET``; the
    callback's ``BAOKE_WECOM_TOKEN`` and ``BAOKE_WECOM_AES_KEY`` are read when first needed.
    """
    corp_id = context.option("corp_id")
    if not isinstance(corp_id, str) or not corp_id.strip():
        raise ConfigError(
            f"channel provider '{context.name}' needs the option corp_id "
            "(the CorpID shown under 我的企业 → 企业信息)"
        )
    endpoint = context.option("endpoint", DEFAULT_ENDPOINT)
    if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"channel provider '{context.name}': option endpoint must be a URL")
    welcome = context.option("welcome") or {}
    if not isinstance(welcome, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in welcome.items()
    ):
        raise ConfigError(
            f"channel provider '{context.name}': option welcome must map a contact way's state "
            "to a text"
        )
    max_batch = _positive(context, "max_batch", 200)
    if max_batch != int(max_batch):
        raise ConfigError(f"channel provider '{context.name}': option max_batch must be whole")
    return WecomAdapter(
        corp_id.strip(),
        context.secret("wecom_secret"),
        name=context.name or "wecom",
        endpoint=endpoint,
        rate=_positive(context, "rate", 20.0),
        max_batch=int(max_batch),
        timeout=_positive(context, "timeout", 10.0),
        welcome=dict(welcome),
        callback_secret=context.secret,
    )
