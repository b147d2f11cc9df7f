"""Settings from the environment (``BAOKE_*``) and an optional ``baoke.toml``.

Precedence, highest first: environment variables, ``baoke.toml`` (the file named by
``BAOKE_CONFIG``, else ``./baoke.toml``), built-in defaults.
"""

from __future__ import annotations

import os
import tomllib
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from baoke.errors import ConfigError


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


class Settings(BaseSettings):
    """Runtime settings. Secrets (provider keys) are read by the channel adapters, not here."""

    model_config = SettingsConfigDict(env_prefix="BAOKE_", extra="ignore")

    data_dir: Path = Field(default=Path("baoke-data"), description="where baoke keeps its files")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default an SQLite file in data_dir. "
        "PostgreSQL: postgresql+psycopg://user@host/db",
    )
    timezone: str = Field(default="Asia/Shanghai", description="business time zone")
    import_batch_rows: int = Field(default=50_000, ge=100, description="rows per import chunk")

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
