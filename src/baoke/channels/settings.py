"""Which providers serve each channel, and how the dispatcher paces and protects them.

``[channels]`` in baoke.toml names, per channel, the providers in order of preference (the
first whose circuit is closed sends; the others are its failover), and holds one table per
provider under ``[channels.providers.<name>]`` with its non-secret options (endpoint, sign
name, template codes, rate). Secrets never live here: see :mod:`baoke.channels.secrets`.

``[dispatch]`` sets the outbox's pace and patience; ``[dispatch.emergency]`` the 1-3-5
monitor's thresholds. The defaults send everything to the sandbox (a file per channel) and
phone touches to the staff's task list, so a new install sends nothing real.
"""

from __future__ import annotations

from typing import Any

from pydantic import AnyHttpUrl, BaseModel, Field, field_validator, model_validator

from baoke.touches import CHANNELS

__all__ = ["ChannelSettings", "DispatchSettings", "EmergencySettings"]


def _default_routes() -> dict[str, list[str]]:
    return {channel: ["tasks" if channel == "phone" else "sandbox"] for channel in CHANNELS}


class ChannelSettings(BaseModel):
    """``[channels]``: the provider chain of each channel and each provider's options."""

    routes: dict[str, list[str]] = Field(default_factory=_default_routes)
    providers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # Links in a message become per-touch short links under this base, served by ``baoke
    # serve`` at /s/<code>; a click is recorded on its touch. Empty: links are left alone.
    short_link_base: str = "https://bk.example.cn/s/"
    # Where unsubscribe links in e-mails point (the code is appended).
    unsubscribe_base: str = "https://bk.example.cn/u/"

    @model_validator(mode="before")
    @classmethod
    def _routes_at_top(cls, data: Any) -> Any:
        # baoke.toml writes ``sms = ["aliyun", "tencent"]`` directly under [channels].
        if not isinstance(data, dict):
            return data
        routes = dict(data.get("routes") or {})
        rest: dict[str, Any] = {}
        fields = set(cls.model_fields) - {"routes"}
        for key, value in data.items():
            if key in fields:
                rest[key] = value
            elif key != "routes":
                # A channel, or a typo of one: the routes' validator names what is unknown.
                routes[key] = [value] if isinstance(value, str) else value
        defaults = _default_routes()
        defaults.update(routes)
        return {**rest, "routes": defaults}

    @field_validator("routes")
    @classmethod
    def _known_channels(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = sorted(set(value) - set(CHANNELS))
        if unknown:
            raise ValueError(f"unknown channel(s) {', '.join(unknown)}; known: {CHANNELS}")
        empty = sorted(k for k, v in value.items() if not v)
        if empty:
            raise ValueError(f"channel(s) {', '.join(empty)} need at least one provider")
        return value

    @field_validator("short_link_base", "unsubscribe_base")
    @classmethod
    def _url_or_empty(cls, value: str) -> str:
        if value:
            AnyHttpUrl(value)
        return value


class EmergencySettings(BaseModel):
    """``[dispatch.emergency]``: when the monitor pauses a batch (DOMAIN's 1-3-5 rule)."""

    window_minutes: int = Field(default=10, ge=1, le=1440)
    # A batch is paused when, inside the window, at least ``min_attempts`` sends were tried
    # and this share of them failed …
    failure_rate: float = Field(default=0.2, gt=0, le=1)
    min_attempts: int = Field(default=50, ge=1)
    # … or this share of its recipients unsubscribed or complained (min_sent sends at least) …
    unsubscribe_rate: float = Field(default=0.02, gt=0, le=1)
    complaint_rate: float = Field(default=0.005, gt=0, le=1)
    min_sent: int = Field(default=100, ge=1)
    # … or it sent more than this many messages in one minute (a runaway batch) …
    # (twice the fastest rate measured through the batch API: a big batch at full speed is
    # not a runaway)
    max_per_minute: int = Field(default=600_000, ge=1)
    # … or one customer got more than one message of the same batch.
    alert_webhook: str | None = None  # POSTed (HMAC-signed) when a batch is paused


class DispatchSettings(BaseModel):
    """``[dispatch]``: how the dispatcher claims, retries and protects the providers."""

    claim_size: int = Field(default=1_000, ge=1, le=50_000, description="rows per claim")
    lease_seconds: int = Field(default=120, ge=1, description="a claim's life before recovery")
    # Against a real provider a one-message request takes tens of milliseconds: 32 in flight
    # keep one-request-per-message providers near 500/s (docs/benchmarks.md).
    concurrency: int = Field(default=32, ge=1, le=128, description="provider requests at once")
    max_attempts: int = Field(default=5, ge=1)
    backoff_seconds: float = Field(default=30.0, ge=0)
    backoff_cap_seconds: float = Field(default=3_600.0, ge=0)
    circuit_failures: int = Field(default=5, ge=1, description="failures in a row that open it")
    circuit_cooldown_seconds: float = Field(default=60.0, ge=0)
    # A marketing touch found due outside the sending hours (the dispatcher was down) waits
    # for the next opening; one older than this is expired instead.
    stale_days: int = Field(default=7, ge=1)
    poll_seconds: float = Field(default=2.0, gt=0, description="idle wait between claims")
    # How often the 1-3-5 monitor reads the batches while dispatching (DOMAIN: detect an
    # abnormal send within one minute).
    monitor_seconds: float = Field(default=5.0, ge=0, le=60)
    # ``baoke dispatch --forever`` fetches WeCom and JPush receipts this often (0: never; then
    # schedule ``baoke dispatch receipts``).
    receipts_minutes: float = Field(default=5.0, ge=0)
    emergency: EmergencySettings = Field(default_factory=EmergencySettings)
