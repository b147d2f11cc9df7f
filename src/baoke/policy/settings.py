"""The contact policy's settings (``[policy]`` in baoke.toml), with DOMAIN.md's defaults.

Every number here is a default an operations director can change; ``docs/policy.md`` says
where each comes from. Validation is strict: a cap, share or window that cannot mean anything
is refused with one readable message (``baoke.config.load_settings``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from baoke.touches import CHANNELS, PRIORITY_CLASSES

__all__ = ["TIERS", "ChannelCap", "ChannelChoice", "PolicySettings"]

TIERS = ("high", "mid", "low", "none")
"""Value tiers as the policy sees them; ``none`` is a customer without one (a prospect)."""

Period = Literal["day", "week", "month"]


class ChannelCap(BaseModel):
    """At most ``max`` touches on a channel per ``per`` (business day, ISO week, month)."""

    max: int = Field(ge=0)
    per: Period
    # A platform's own limit (WeCom delivers one mass message a day) binds service notices
    # too; a fatigue cap only binds marketing.
    counts_service: bool = False


class ChannelChoice(BaseModel):
    """How a step's channels are ranked for a customer (see docs/policy.md, channel choice)."""

    # What one interaction (a reply, a click, a connected call) is worth, in fen.
    response_value_fen: int = Field(default=2_000, ge=0)
    # Taken off the score per place a channel stands behind the step's first choice.
    preference_fen: int = Field(default=100, ge=0)
    # Score per unit of (target share - share so far this month) of the tier's channel mix.
    mix_weight_fen: int = Field(default=100, ge=0)
    # How many observed touches the prior is worth: below this, DOMAIN's rates dominate.
    prior_strength: int = Field(default=200, ge=1)
    # Outcomes of touches sent in this many days update the priors.
    lookback_days: int = Field(default=90, ge=1)
    # DOMAIN's matrix, interaction rate per touch (the midpoint of each range).
    interaction_prior: dict[str, float] = Field(
        default_factory=lambda: {
            "sms": 0.0125,
            "phone": 0.30,
            "wecom": 0.115,
            "push": 0.035,
            "email": 0.02,
        }
    )

    @field_validator("interaction_prior")
    @classmethod
    def _rates(cls, value: dict[str, float]) -> dict[str, float]:
        _known_channels(value)
        if any(not 0 <= rate <= 1 for rate in value.values()):
            raise ValueError("interaction rates are shares between 0 and 1")
        missing = [c for c in CHANNELS if c not in value]
        if missing:
            raise ValueError(f"interaction_prior needs a rate for {', '.join(missing)}")
        return value


def _known_channels(value: Mapping[str, object]) -> None:
    unknown = [c for c in value if c not in CHANNELS]
    if unknown:
        raise ValueError(f"unknown channel {unknown[0]!r}; channels are {', '.join(CHANNELS)}")


def _hours(value: object) -> tuple[dt.time, dt.time]:
    if isinstance(value, list | tuple) and len(value) == 2:
        try:
            start, end = (
                v if isinstance(v, dt.time) else dt.time.fromisoformat(str(v)) for v in value
            )
        except ValueError:
            pass
        else:
            if start < end:
                return start, end
    raise ValueError(
        'hours are ["HH:MM", "HH:MM"], the start before the end, e.g. ["08:00", "21:00"]'
    )


# DOMAIN's defaults. A table in baoke.toml that names some entries keeps these for the rest:
# setting the high tier's cap must not drop the mid tier's to nothing, nor lift WeCom's limit.
_MONTHLY_CAPS = {"high": 10, "mid": 6, "low": 3, "none": 3}
_CHANNEL_CAPS = {
    "wecom": ChannelCap(max=1, per="day", counts_service=True),
    "sms": ChannelCap(max=2, per="week"),
    "phone": ChannelCap(max=2, per="month"),
    "push": ChannelCap(max=3, per="week"),
    "email": ChannelCap(max=4, per="month"),
}
_CHANNEL_MIX = {
    "high": {"wecom": 0.6, "phone": 0.2, "sms": 0.2},
    "mid": {"wecom": 0.5, "sms": 0.3, "push": 0.2},
    "low": {"sms": 0.6, "push": 0.4},
}
_COST_FEN = {"sms": 7, "wecom": 2, "push": 1, "email": 4, "phone": 750}


class PolicySettings(BaseModel):
    """Consent, quiet hours, caps, priorities, budgets, holdout and channel choice."""

    # Share of customers held out of all marketing (stable by customer), to measure lift.
    holdout: float = Field(default=0.05, ge=0, lt=1)
    # Marketing (every class but the service ones) only inside these business hours; the
    # customer's own accepted hours narrow them. Service notices keep to service_hours.
    quiet_hours: tuple[dt.time, dt.time] = (dt.time(8), dt.time(21))
    service_hours: tuple[dt.time, dt.time] = (dt.time(8), dt.time(21))
    # Priority classes that are service notices: exempt from fatigue caps, holdout, the
    # complaint pause and the marketing budget (never from consent withdrawals).
    service_classes: tuple[str, ...] = ("service",)
    # Channels on which a service notice needs no marketing consent: the service contract is
    # its legal basis (PIPL Art. 13(2)). An unsubscribe on the channel still stops it.
    service_basis_channels: tuple[str, ...] = ("sms", "phone")
    # Marketing touches per customer per business day.
    marketing_per_day: int = Field(default=1, ge=0)
    # Marketing touches per customer per month, by value tier (DOMAIN: high 8-10, mid 4-6,
    # low 2-3).
    # A table in baoke.toml overrides only the entries it names; the others keep these.
    monthly_caps: dict[str, int] = Field(default_factory=lambda: dict(_MONTHLY_CAPS))
    channel_caps: dict[str, ChannelCap] = Field(default_factory=lambda: dict(_CHANNEL_CAPS))
    # The tier's channel mix target (DOMAIN scenario 2), shares of its touches.
    channel_mix: dict[str, dict[str, float]] = Field(default_factory=lambda: dict(_CHANNEL_MIX))
    # Cost per touch in fen (DOMAIN's matrix, the midpoint rounded up).
    cost_fen: dict[str, int] = Field(default_factory=lambda: dict(_COST_FEN))
    # Monthly budgets in yuan: overall, and per playbook. None or absent: no budget.
    monthly_budget_yuan: int | None = Field(default=None, ge=0)
    playbook_budgets_yuan: dict[str, int] = Field(default_factory=dict)
    # High-value restraint: a marketing-class item for a high-tier customer goes to the
    # group / moments content instead of a private WeCom message.
    high_value_restraint: bool = True
    # A deferred touch is dropped once it has waited this many days.
    max_defer_days: int = Field(default=7, ge=0)
    choice: ChannelChoice = Field(default_factory=ChannelChoice)

    @field_validator("quiet_hours", "service_hours", mode="before")
    @classmethod
    def _window(cls, value: object) -> tuple[dt.time, dt.time]:
        return _hours(value)

    @field_validator("service_classes")
    @classmethod
    def _classes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [c for c in value if c not in PRIORITY_CLASSES]
        if unknown:
            raise ValueError(
                f"unknown priority class {unknown[0]!r}; classes are {', '.join(PRIORITY_CLASSES)}"
            )
        return value

    @field_validator("service_basis_channels")
    @classmethod
    def _basis(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        _known_channels(dict.fromkeys(value))
        return value

    @field_validator("monthly_caps")
    @classmethod
    def _tiers(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = [t for t in value if t not in TIERS]
        if unknown:
            raise ValueError(f"unknown tier {unknown[0]!r}; tiers are {', '.join(TIERS)}")
        if any(n < 0 for n in value.values()):
            raise ValueError("monthly caps are counts of touches, 0 or more")
        return {**_MONTHLY_CAPS, **value}

    @field_validator("channel_caps")
    @classmethod
    def _caps(cls, value: dict[str, ChannelCap]) -> dict[str, ChannelCap]:
        _known_channels(value)
        return {**_CHANNEL_CAPS, **value}

    @field_validator("channel_mix")
    @classmethod
    def _mix(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for tier, shares in value.items():
            if tier not in TIERS:
                raise ValueError(f"unknown tier {tier!r} in channel_mix")
            _known_channels(shares)
            if any(s < 0 for s in shares.values()) or sum(shares.values()) > 1.000001:
                raise ValueError(f"channel_mix.{tier}: shares are 0 or more and add up to 1")
        return {**_CHANNEL_MIX, **value}

    @field_validator("cost_fen")
    @classmethod
    def _costs(cls, value: dict[str, int]) -> dict[str, int]:
        _known_channels(value)
        if any(c < 0 for c in value.values()):
            raise ValueError("costs are fen, 0 or more")
        return {**_COST_FEN, **value}

    @field_validator("playbook_budgets_yuan")
    @classmethod
    def _budgets(cls, value: dict[str, int]) -> dict[str, int]:
        if any(b < 0 for b in value.values()):
            raise ValueError("budgets are yuan, 0 or more")
        return value

    @model_validator(mode="after")
    def _service_not_everything(self) -> PolicySettings:
        if set(self.service_classes) >= set(PRIORITY_CLASSES):
            raise ValueError("service_classes cannot be every class: nothing would be marketing")
        return self

    def is_service(self, priority: str) -> bool:
        """Whether a priority class is a service notice here."""
        return priority in self.service_classes
