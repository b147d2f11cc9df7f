"""The one small protocol every channel provider implements, and what flows through it.

The dispatcher (:mod:`baoke.channels.dispatcher`) claims due touches from the outbox, renders
them into :class:`Message` objects and hands a batch of at most ``adapter.max_batch`` of them to
``adapter.send``. The adapter answers one :class:`SendResult` per message, or raises
:class:`ProviderError` when the whole request failed. A request that may have reached the
provider (a timeout after the body was sent, a reply that cannot be read) says so with
``maybe_sent=True``: the dispatcher then asks ``adapter.reconcile`` before it sends again, so a
customer never gets the same message twice.

Adapters are synchronous and thread-safe: the dispatcher may call ``send`` from several threads
at once to keep a provider with one-message requests busy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from sqlalchemy import Engine

from baoke.errors import ConfigError

__all__ = [
    "Adapter",
    "AdapterContext",
    "Inbound",
    "Message",
    "ProviderError",
    "Receipt",
    "SendResult",
]

SendOutcome = Literal["sent", "failed", "retry", "doubt"]
"""Per message: accepted by the provider; refused for good; refused for now (try later); may
have been accepted (a later request of a batch lost its answer): reconciled, never resent blind."""

ErrorKind = Literal["transient", "throttled", "auth", "permanent"]


@dataclass(frozen=True)
class Message:
    """One rendered touch, addressed for its channel.

    ``address`` is what the provider delivers to: an 11-digit mainland mobile (SMS, phone), an
    e-mail address, a WeCom ``external_userid`` (with the staff member's WeCom ``userid`` in
    ``sender``), or a JPush alias (``c<customer id>``, bound by the app at login).
    ``key`` is the touch's idempotency key; adapters pass it to providers that accept one
    (``OutId``, ``SessionContext``, ``Message-ID``, an ``Idempotency-Key`` header).
    ``template_code`` and ``params`` are the provider-approved template and its variables
    (SMS providers send only approved templates); ``text`` is the message as the customer
    reads it, for providers that take free text and for the record.
    """

    touch_id: int
    key: str
    channel: str
    customer_id: int
    dealer_id: int | None
    address: str
    text: str
    subject: str | None = None
    html: str | None = None
    sender: str | None = None
    playbook: str | None = None
    template: str | None = None  # baoke's own "playbook/template" name
    template_code: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    marketing: bool = True
    unsubscribe_url: str | None = None
    send_ref: str | None = None  # the reference sent with the provider request (see outbox)


@dataclass(frozen=True)
class SendResult:
    """What the provider said about one message of a request."""

    touch_id: int
    outcome: SendOutcome
    provider_id: str | None = None  # BizId, SerialNo, msg_id, msgid, Message-ID …
    error: str | None = None  # the provider's code and text; never a secret


class ProviderError(Exception):
    """A whole request failed.

    ``kind``: ``transient`` (5xx, connection refused, timeout) and ``throttled`` are retried
    with backoff and count toward the circuit breaker; ``auth`` (bad key, IP not allowed)
    opens the circuit at once and fails over; ``permanent`` fails every message of the
    request. ``maybe_sent``: the provider may have accepted the request (the body was sent
    and no readable answer came back); the dispatcher reconciles before sending again.
    """

    def __init__(self, kind: ErrorKind, message: str, *, maybe_sent: bool = False) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.maybe_sent = maybe_sent


@dataclass(frozen=True)
class Receipt:
    """A provider's report on a message it accepted (a delivery receipt, a read, a click).

    ``provider_id`` is what ``SendResult.provider_id`` was; ``address`` tells apart the
    messages of a batch request that share one id (Aliyun's ``BizId``). ``status`` is one of
    :data:`baoke.journeys.vocabulary.TOUCH_STATUSES`. ``key`` makes a repeated callback
    idempotent (it becomes the event's key).
    """

    provider_id: str
    status: str
    at: Any  # datetime (UTC)
    key: str
    address: str | None = None
    detail: str | None = None
    send_ref: str | None = None  # the request's reference, when the provider echoes it (OutId)


@dataclass(frozen=True)
class Inbound:
    """A customer's reply (SMS 上行) or another inbound event, not tied to one message id."""

    address: str
    text: str
    at: Any  # datetime (UTC)
    key: str
    channel: str = "sms"


@dataclass(frozen=True)
class AdapterContext:
    """What an adapter factory gets besides its own options.

    ``options`` is the provider's table of ``[channels.providers.<name>]`` in baoke.toml;
    ``secret(name)`` reads ``BAOKE_<NAME>`` from the environment or the secrets file and fails
    with a ConfigError naming the variable (never its value). ``engine`` is the store, for the
    adapters that write to it (phone tasks).
    """

    name: str
    options: Mapping[str, Any]
    secrets: Mapping[str, str]
    engine: Engine | None = None
    data_dir: Any = None  # pathlib.Path

    def secret(self, name: str) -> str:
        """The secret ``BAOKE_<NAME>``; a ConfigError naming it when it is not set."""
        variable = f"BAOKE_{name.upper()}"
        value = self.secrets.get(variable)
        if not value:
            raise ConfigError(
                f"channel provider '{self.name}' needs the secret {variable} "
                "(set it in the environment or the secrets file)"
            )
        return value

    def option(self, name: str, default: Any = None) -> Any:
        """One option of the provider's table, or ``default``."""
        return self.options.get(name, default)

    def option_error(self, name: str, expected: str) -> ConfigError:
        """The one-line error for option ``name`` when it is not ``expected``."""
        return ConfigError(
            f"channel provider '{self.name}': option '{name}' must be {expected} "
            f"(in [channels.providers.{self.name}])"
        )

    def positive_number(self, name: str, default: float) -> float:
        """Option ``name`` as a positive number (``rate``, ``timeout`` …)."""
        value = self.option(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise self.option_error(name, "a positive number")
        return float(value)


@runtime_checkable
class Adapter(Protocol):
    """A channel provider.

    ``name`` is the provider's registry name (``aliyun``); ``channel`` the channel it serves.
    ``max_batch`` is how many messages one ``send`` call may carry (1: one request per
    message). ``rate`` is how many ``send`` calls per second the provider allows us.
    ``idempotent``: the provider itself drops a repeated ``key`` (a webhook receiver that
    dedupes on ``Idempotency-Key``), so a message in doubt may simply be sent again.
    """

    name: str
    channel: str
    max_batch: int
    rate: float
    idempotent: bool

    def send(self, batch: Sequence[Message]) -> list[SendResult]:
        """Send one request; one result per message, in any order. Raises ProviderError."""
        ...

    def reconcile(self, batch: Sequence[Message]) -> dict[int, str] | None:
        """Which of these messages (sent with ``send_ref``) the provider has: touch id to its
        provider id. None: this provider cannot tell."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
