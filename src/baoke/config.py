"""Settings from the environment (``BAOKE_*``) and an optional ``baoke.toml``.

Precedence, highest first: environment variables, ``baoke.toml`` (the file named by
``BAOKE_CONFIG``, else ``./baoke.toml``), built-in defaults.
"""

from __future__ import annotations

import itertools
import os
import re
import tomllib
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from baoke.channels.settings import ChannelSettings, DispatchSettings
from baoke.errors import ConfigError
from baoke.policy.settings import PolicySettings


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the ``[baoke]`` table (or the top level) of a ``baoke.toml`` file."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        if self.path is None or not self.path.exists():
            return {}
        try:
            data = tomllib.loads(self.path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{self.path}: not valid TOML: {exc}") from exc
        table = data.get("baoke", data)
        known = set(self.settings_cls.model_fields)
        return {k: v for k, v in table.items() if k in known}


def config_file_path() -> Path | None:
    """The baoke.toml in force: ``BAOKE_CONFIG`` if set, else ``./baoke.toml`` if present."""
    explicit = os.environ.get("BAOKE_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.exists():
            raise ConfigError(f"BAOKE_CONFIG points to {path}, which does not exist")
        return path
    local = Path("baoke.toml")
    return local if local.exists() else None


class ProfileSettings(BaseModel):
    """Thresholds of the profile engine (``[profiles]`` in baoke.toml); defaults from DOMAIN."""

    tier_high_yuan: int = Field(default=5_000, ge=0, description="12-month spend for 'high'")
    tier_mid_yuan: int = Field(default=2_000, ge=0, description="12-month spend for 'mid'")
    new_owner_months: int = Field(default=3, ge=1)
    onboarding_months: int = Field(default=6, ge=1)
    at_risk_days: int = Field(default=90, ge=1, description="no visit for this long: at risk")
    lost_days: int = Field(default=180, ge=1, description="no visit for this long: lost")
    maintenance_interval_km: int = Field(default=10_000, ge=1_000)
    maintenance_interval_months: int = Field(default=12, ge=1)
    first_maintenance_km: int = Field(default=5_000, ge=500)
    first_maintenance_months: int = Field(default=6, ge=1)
    default_km_per_year: int = Field(default=13_000, ge=1_000)
    events_window_days: int = Field(
        default=400, ge=31, description="how much event history the analytical snapshot keeps"
    )

    @model_validator(mode="after")
    def _ordered(self) -> ProfileSettings:
        if self.tier_mid_yuan > self.tier_high_yuan:
            raise ValueError("tier_mid_yuan must not exceed tier_high_yuan")
        if self.new_owner_months > self.onboarding_months:
            raise ValueError("new_owner_months must not exceed onboarding_months")
        if self.at_risk_days >= self.lost_days:
            raise ValueError("at_risk_days must be less than lost_days")
        return self


# An SMS signature as the carriers register it: 2-16 characters, no brackets or spaces (the
# template adds the 【】). The same rule as the template validator's 【signature】 check.
_SIGNATURE_RE = re.compile(r"[^【】\[\]\s]{2,16}")


class MessageSettings(BaseModel):
    """What personalised messages say besides the customer's data (``[messages]`` in baoke.toml).

    The journey engine fills these into every template context (see
    :mod:`baoke.journeys.context`); a per-touch value (a festival, points just earned) overrides.
    """

    # The SMS signature registered with the carriers, without the 【】 brackets.
    signature: str = "保客汽车服务"
    # The brand named in messages; None: the customer's dealer's brand, else the car's brand.
    brand: str | None = None
    # Short booking link (an SMS segment is 70 characters, so keep it short).
    booking_link: str = "https://bk.example.cn/b"
    # The standing return-to-store offer: its short name and what it gives.
    offer_name: str = "回厂关怀礼"
    offer_detail: str = "免费检测+工时8折"
    # The offer holds for this many days from the day the message is prepared.
    offer_days: int = Field(default=7, ge=1)
    # Gift redemption link (referral rewards, care moments).
    gift_link: str = "https://bk.example.cn/g"
    # Loyalty levels as [min_points, name], lowest first, strictly increasing, starting at 0
    # (so every balance has a level).
    member_levels: list[tuple[int, str]] = Field(
        default_factory=lambda: [(0, "普卡"), (5_000, "银卡"), (20_000, "金卡"), (50_000, "铂金卡")]
    )

    @field_validator("signature")
    @classmethod
    def _signature_shape(cls, value: str) -> str:
        if not _SIGNATURE_RE.fullmatch(value):
            raise ValueError(
                "signature is 2-16 characters without brackets or spaces, e.g. 保客汽车服务"
            )
        return value

    @field_validator("member_levels")
    @classmethod
    def _levels_ordered(cls, value: list[tuple[int, str]]) -> list[tuple[int, str]]:
        if not value:
            raise ValueError("member_levels needs at least one level")
        if value[0][0] != 0:
            raise ValueError("the first member level must start at 0 points")
        mins = [low for low, _ in value]
        if any(b <= a for a, b in itertools.pairwise(mins)):
            raise ValueError("member_levels must be in strictly increasing order of min_points")
        if any(not name.strip() for _, name in value):
            raise ValueError("every member level needs a name")
        return value


class Settings(BaseSettings):
    """Runtime settings. Secrets (provider keys) are read by the channel adapters, not here."""

    model_config = SettingsConfigDict(
        env_prefix="BAOKE_", extra="ignore", env_nested_delimiter="__"
    )

    data_dir: Path = Field(default=Path("baoke-data"), description="where baoke keeps its files")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default an SQLite file in data_dir. "
        "PostgreSQL: postgresql+psycopg://user@host/db",
    )
    timezone: str = Field(default="Asia/Shanghai", description="business time zone")
    import_batch_rows: int = Field(default=50_000, ge=100, description="rows per import chunk")
    profiles: ProfileSettings = Field(default_factory=ProfileSettings)
    messages: MessageSettings = Field(default_factory=MessageSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    channels: ChannelSettings = Field(default_factory=ChannelSettings)
    dispatch: DispatchSettings = Field(default_factory=DispatchSettings)
    # The bearer token the HTTP API accepts (``BAOKE_API_TOKEN``); None: the API refuses all.
    api_token: SecretStr | None = Field(default=None, description="HTTP API bearer token")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls, config_file_path()))

    @property
    def url(self) -> str:
        """The database URL in force."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'baoke.db').as_posix()}"

    @cached_property
    def zone(self) -> ZoneInfo:
        """The business time zone as a ZoneInfo."""
        return ZoneInfo(self.timezone)


def load_settings(**overrides: Any) -> Settings:
    """Load settings, turning validation problems into one readable ConfigError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc
