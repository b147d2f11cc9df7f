"""Find channel providers by name: built-in ones and third-party packages' entry points.

A provider is a factory ``make(context: AdapterContext) -> Adapter`` published under the
``baoke.channels`` entry-point group. baoke's own are declared in its pyproject; a package of
one's own adds, say, ``[project.entry-points."baoke.channels"] mysms = "mysms:make"`` and
``sms = ["mysms", "aliyun"]`` in baoke.toml routes SMS through it first. A route names a
provider; its table ``[channels.providers.<name>]`` may say ``type = "aliyun"`` to use another
name for the same kind (two accounts of one provider, say).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from baoke.channels.protocol import Adapter, AdapterContext
from baoke.channels.secrets import load_secrets
from baoke.config import Settings
from baoke.errors import ConfigError

__all__ = ["Providers", "available", "factory"]

Factory = Callable[[AdapterContext], Adapter]
GROUP = "baoke.channels"


@cache
def available() -> dict[str, Any]:
    """Every installed provider's entry point, by name."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def factory(name: str) -> Factory:
    """The factory of provider ``name``; a ConfigError listing the known ones otherwise."""
    found = available().get(name)
    if found is None:
        known = ", ".join(sorted(available()))
        raise ConfigError(f"unknown channel provider '{name}' (installed: {known})")
    try:
        loaded = found.load()
    except Exception as exc:  # a third-party package that fails to import
        raise ConfigError(
            f"channel provider '{name}' ({found.value}) cannot be loaded: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not callable(loaded):
        raise ConfigError(f"channel provider '{name}' ({found.value}) is not a factory")
    return loaded  # type: ignore[no-any-return]


class Providers:
    """The adapters of a settings' routes, made on first use and closed together."""

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.secrets = load_secrets()
        self._made: dict[str, Adapter] = {}

    def route(self, channel: str) -> list[str]:
        """The providers of ``channel``, in order of preference."""
        routes = self.settings.channels.routes
        if channel not in routes:
            raise ConfigError(f"no provider is configured for channel '{channel}'")
        return routes[channel]

    def get(self, name: str) -> Adapter:
        """The adapter of provider ``name`` (made once)."""
        if name not in self._made:
            options = self.settings.channels.providers.get(name, {})
            context = AdapterContext(
                name=name,
                options=options,
                secrets=self.secrets,
                engine=self.engine,
                data_dir=Path(self.settings.data_dir),
            )
            # ``type`` lets one provider serve twice under two names (two Aliyun accounts).
            adapter = factory(str(options.get("type", name)))(context)
            if not isinstance(adapter, Adapter):
                raise ConfigError(f"channel provider '{name}' does not implement the protocol")
            self._made[name] = adapter
        return self._made[name]

    def check(self) -> dict[str, str]:
        """Make every routed provider now: a configuration error surfaces before any claim."""
        seen: dict[str, str] = {}
        for channel, names in self.settings.channels.routes.items():
            for name in names:
                adapter = self.get(name)
                if adapter.channel not in (channel, "*"):
                    raise ConfigError(
                        f"provider '{name}' serves {adapter.channel}, not {channel} "
                        f"(check [channels] {channel} = ...)"
                    )
                seen[name] = adapter.channel
        return seen

    def close(self) -> None:
        """Close every adapter made."""
        for adapter in self._made.values():
            adapter.close()
        self._made.clear()
