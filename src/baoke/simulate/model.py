"""The parameters of the customer response model, read from a documented TOML file.

The shipped file (``response.toml`` next to this module) is the default; ``--model FILE`` reads
another one. Every section and key is checked: a typo or a rate outside 0-1 is one readable
:class:`~baoke.errors.InputError`, never a silent default.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from baoke.errors import InputError
from baoke.touches import CHANNELS

__all__ = ["DEFAULT_MODEL", "ResponseModel", "load_model"]

TIERS = ("high", "mid", "low", "none")
Share = Annotated[float, Field(ge=0, le=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _range(value: tuple[float, float]) -> tuple[float, float]:
    lo, hi = value
    if not 0 <= lo <= hi <= 1:
        raise ValueError("a range is [low, high] with 0 <= low <= high <= 1")
    return value


def _by_tier(value: dict[str, float]) -> dict[str, float]:
    missing = [t for t in TIERS if t not in value]
    unknown = [t for t in value if t not in TIERS]
    if missing or unknown:
        raise ValueError(f"needs exactly the tiers {', '.join(TIERS)}")
    return value


class ChannelRates(_Strict):
    """Per-customer rate ranges of one channel (DOMAIN's matrix)."""

    delivered: tuple[float, float]
    opened: tuple[float, float]
    interacted: tuple[float, float]

    _check = field_validator("delivered", "opened", "interacted")(_range)


class Relevance(_Strict):
    """How relevant content lifts response (seed 001: segment-matched converts ~2.3x)."""

    relevant: float = Field(gt=0)
    irrelevant: float = Field(gt=0)
    due_window_days: int = Field(ge=0)
    due_playbooks: tuple[str, ...] = ()
    market_playbooks: tuple[str, ...] = ()


class Reaction(_Strict):
    """The chance of a reaction per delivered touch: base + per_excess x excess."""

    base: Share
    per_excess: Share


class Fatigue(_Strict):
    """Tolerance of touches and the reactions to too many."""

    tolerance: dict[str, float]
    tolerance_sigma: float = Field(ge=0)
    irrelevant_weight: float = Field(ge=0)
    unsubscribe: Reaction
    wecom_block: Reaction
    complaint: Reaction
    response_damping: float = Field(ge=0)
    drift_per_excess: Share
    drift_on_reaction: Share

    _tiers = field_validator("tolerance")(_by_tier)


class Visits(_Strict):
    """The customer's own service rhythm and what touches add to it."""

    interval_days: dict[str, float]
    interval_sigma: float = Field(ge=0)
    first_maintenance_days: int = Field(ge=1)
    natural_return: Share
    window_before_days: int = Field(ge=0)
    window_after_days: int = Field(ge=1)
    memory_days: int = Field(ge=1)
    interaction_lift: float = Field(ge=1)
    reminder_lift: float = Field(ge=1)
    interaction_books: Share
    booked_show: Share
    repairs_per_year: float = Field(ge=0)
    maintenance_yuan: dict[str, float]
    repair_yuan: float = Field(ge=0)
    km_per_day: float = Field(ge=0)

    _tiers = field_validator("interval_days", "maintenance_yuan")(_by_tier)


class Loyalty(_Strict):
    """Loyalty by tier, churn when overdue, return after a win-back, recovery paradox."""

    beta: dict[str, tuple[float, float]]
    overdue_after_days: int = Field(ge=0)
    overdue_decay: Share
    winback_regain: Share
    recovery_bonus: Share
    late_recovery_penalty: Share

    @field_validator("beta")
    @classmethod
    def _beta(cls, value: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        _by_tier({k: 0.0 for k in value})
        if any(a <= 0 or b <= 0 for a, b in value.values()):
            raise ValueError("Beta parameters are positive")
        return value


class Staff(_Strict):
    """How the simulated staff work their call tasks and complaints."""

    median_share_of_sla: float = Field(gt=0)
    sigma: float = Field(ge=0)
    never_done: Share
    resolve_days: tuple[int, int]
    severity_share: dict[str, float]

    @field_validator("severity_share")
    @classmethod
    def _severities(cls, value: dict[str, float]) -> dict[str, float]:
        if set(value) != {"severe", "medium", "light"} or abs(sum(value.values()) - 1) > 1e-6:
            raise ValueError("severity_share has severe, medium and light, adding up to 1")
        return value


class Purchases(_Strict):
    """Who is in the market for a new car and what touches add to it."""

    market_car_age_years: float = Field(ge=0)
    market_share: Share
    yearly_purchase: Share
    interaction_lift: float = Field(ge=1)
    price_yuan: float = Field(ge=0)


class Satisfaction(_Strict):
    """Step sizes of the 0-100 satisfaction proxy."""

    start: float = Field(ge=0, le=100)
    sigma: float = Field(ge=0)
    interaction: float
    excess_touch: float
    reaction: float
    complaint: float
    recovered: float
    visit: float


class ResponseModel(_Strict):
    """Every parameter of the response model (see ``response.toml`` and docs/simulation.md)."""

    channels: dict[str, ChannelRates]
    relevance: Relevance
    fatigue: Fatigue
    visits: Visits
    loyalty: Loyalty
    staff: Staff
    purchases: Purchases
    satisfaction: Satisfaction

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: dict[str, ChannelRates]) -> dict[str, ChannelRates]:
        missing = [c for c in CHANNELS if c not in value]
        unknown = [c for c in value if c not in CHANNELS]
        if missing or unknown:
            raise ValueError(f"channels needs exactly {', '.join(CHANNELS)}")
        return value


DEFAULT_MODEL = "response.toml"


def load_model(path: Path | None = None) -> ResponseModel:
    """The model in ``path``, or the shipped default; one InputError naming what is wrong."""
    where = str(path) if path else DEFAULT_MODEL
    try:
        if path is None:
            text = resources.files("baoke.simulate").joinpath(DEFAULT_MODEL).read_text("utf-8")
        else:
            text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except FileNotFoundError:
        raise InputError(f"{where}: no such model file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{where}: not valid TOML: {exc}") from None
    try:
        return ResponseModel.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
            for error in exc.errors()[:3]
        ]
        raise InputError(f"{where}: {'; '.join(problems)}") from None
