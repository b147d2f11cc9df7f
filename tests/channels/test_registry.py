"""Channel providers found by name through the ``baoke.channels`` entry points, and the
``[channels]`` settings that route each channel to them.

A configuration mistake (an unknown provider, a provider routed for a channel it does not
serve, a missing secret, an unknown channel) is one clear ConfigError before anything is sent,
and an error never shows a secret's value.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from baoke.channels.protocol import Adapter
from baoke.channels.registry import Providers, available, factory
from baoke.channels.settings import ChannelSettings
from baoke.config import Settings, load_settings
from baoke.errors import ConfigError
from baoke.touches import CHANNELS

BUILT_IN = ("sandbox", "tasks", "webhook", "aliyun", "tencent", "wecom", "jpush", "smtp")


@pytest.fixture(autouse=True)
def no_ambient_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No baoke.toml, secrets file or provider secret of the machine running the tests."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BAOKE_CONFIG", raising=False)
    monkeypatch.delenv("BAOKE_SECRETS_FILE", raising=False)
    for name in (
        "BAOKE_ALIYUN_ACCESS_KEY_ID",
        "BAOKE_ALIYUN_ACCESS_KEY_SECRET",
        "BAOKE_WEBHOOK_SECRET",
        "BAOKE_WECOM_SECRET",
    ):
        monkeypatch.delenv(name, raising=False)
    yield


def _settings(tmp_path: Path, channels: dict[str, Any]) -> Settings:
    return Settings(data_dir=tmp_path / "data", channels=ChannelSettings.model_validate(channels))


# -- the entry points ---------------------------------------------------------------------------


def test_the_built_in_providers_are_installed_entry_points() -> None:
    installed = available()
    assert set(BUILT_IN) <= set(installed)
    assert installed["sandbox"].value == "baoke.channels.sandbox:make"
    assert installed["tasks"].value == "baoke.channels.phone:make"


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_built_in_provider_loads_as_a_factory(name: str) -> None:
    assert callable(factory(name))


def test_an_unknown_provider_names_the_installed_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        factory("mysms")
    message = str(caught.value)
    assert "unknown channel provider 'mysms'" in message
    for name in BUILT_IN:
        assert name in message


def test_an_unknown_provider_in_a_route_fails_the_check(tmp_path: Path) -> None:
    providers = Providers(_settings(tmp_path, {"sms": ["aliyun_typo"]}))
    with pytest.raises(ConfigError, match=r"unknown channel provider 'aliyun_typo' \(installed: "):
        providers.check()


def test_the_default_routes_check_out(tmp_path: Path, engine: Engine) -> None:
    providers = Providers(_settings(tmp_path, {}), engine)
    try:
        assert providers.check() == {"sandbox": "*", "tasks": "phone"}
        assert providers.route("sms") == ["sandbox"]
        assert providers.route("phone") == ["tasks"]
        adapter = providers.get("tasks")
        assert isinstance(adapter, Adapter)
        assert providers.get("tasks") is adapter  # made once
    finally:
        providers.close()


def test_a_provider_routed_for_another_channel_fails_the_check(
    tmp_path: Path, engine: Engine
) -> None:
    providers = Providers(_settings(tmp_path, {"sms": ["tasks"]}), engine)
    with pytest.raises(ConfigError) as caught:
        providers.check()
    message = str(caught.value)
    assert "provider 'tasks' serves phone, not sms" in message
    assert "[channels] sms" in message


def test_a_webhook_for_push_cannot_carry_sms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BAOKE_WEBHOOK_SECRET", "whsec-0123456789")
    settings = _settings(
        tmp_path,
        {
            "sms": ["webhook"],
            "providers": {"webhook": {"url": "http://127.0.0.1:9/hook", "channel": "push"}},
        },
    )
    with pytest.raises(ConfigError, match="serves push, not sms") as caught:
        Providers(settings).check()
    assert "whsec-0123456789" not in str(caught.value)


def test_the_tasks_provider_needs_the_store(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs the store"):
        Providers(_settings(tmp_path, {})).check()


def test_a_missing_secret_names_the_variable_and_no_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_id = "LTAI5tVerySecretKeyId42"
    monkeypatch.setenv("BAOKE_ALIYUN_ACCESS_KEY_ID", key_id)
    settings = _settings(
        tmp_path, {"sms": ["aliyun"], "providers": {"aliyun": {"sign_name": "杭州星途"}}}
    )
    with pytest.raises(ConfigError) as caught:
        Providers(settings).check()
    message = str(caught.value)
    assert "BAOKE_ALIYUN_ACCESS_KEY_SECRET" in message
    assert "'aliyun'" in message
    assert key_id not in message


def test_a_secret_in_the_secrets_file_satisfies_the_provider(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = tmp_path / "secrets.env"
    secrets.write_text(
        "BAOKE_ALIYUN_ACCESS_KEY_ID=LTAI5tFromFile\n"
        'BAOKE_ALIYUN_ACCESS_KEY_SECRET="file-secret-value"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("BAOKE_SECRETS_FILE", str(secrets))
    settings = _settings(
        tmp_path,
        {
            "sms": ["aliyun"],
            "phone": ["sandbox"],
            "providers": {"aliyun": {"sign_name": "【杭州星途】"}},
        },
    )
    providers = Providers(settings)
    try:
        assert providers.check() == {"aliyun": "sms", "sandbox": "*"}
        assert "file-secret-value" not in repr(providers.get("aliyun"))
    finally:
        providers.close()


# -- [channels] settings --------------------------------------------------------------------------


def test_a_route_at_the_top_of_the_channels_table(tmp_path: Path) -> None:
    settings = load_settings(channels={"sms": ["aliyun", "tencent"], "email": "sandbox"})
    routes = settings.channels.routes
    assert routes["sms"] == ["aliyun", "tencent"]
    assert routes["email"] == ["sandbox"]  # one name is a route of one
    assert routes["phone"] == ["tasks"]  # the others keep their defaults
    assert set(routes) == set(CHANNELS)


def test_the_channels_table_of_baoke_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "baoke.toml"
    config.write_text(
        "[channels]\n"
        'sms = ["aliyun", "tencent"]\n'
        'short_link_base = "https://s.dealer.cn/"\n'
        "[channels.providers.aliyun]\n"
        'sign_name = "杭州星途"\n'
        "rate = 20\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("BAOKE_CONFIG", str(config))
    settings = load_settings()
    assert settings.channels.routes["sms"] == ["aliyun", "tencent"]
    assert settings.channels.routes["wecom"] == ["sandbox"]
    assert settings.channels.providers["aliyun"] == {"sign_name": "杭州星途", "rate": 20}
    assert settings.channels.short_link_base == "https://s.dealer.cn/"


@pytest.mark.parametrize(
    ("channels", "needle"),
    [
        ({"sms": []}, "sms need at least one provider"),
        ({"routes": {"fax": ["sandbox"]}}, "unknown channel(s) fax"),
        ({"fax": ["sandbox"]}, "unknown channel(s) fax"),
        ({"smss": ["aliyun"]}, "unknown channel(s) smss"),
    ],
)
def test_an_unknown_channel_or_an_empty_route_is_one_clear_error(
    channels: dict[str, Any], needle: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(channels=channels)
    message = str(caught.value)
    assert needle in message
    assert "\n" not in message


def test_an_unknown_channel_in_baoke_toml_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "baoke.toml"
    config.write_text('[channels]\nwechat = ["wecom"]\n', encoding="utf-8")
    monkeypatch.setenv("BAOKE_CONFIG", str(config))
    with pytest.raises(ConfigError, match="wechat"):
        load_settings()


def test_a_short_link_base_must_be_a_url() -> None:
    with pytest.raises(ConfigError, match="short_link_base"):
        load_settings(channels={"short_link_base": "bk.example.cn/s/"})
    assert load_settings(channels={"short_link_base": ""}).channels.short_link_base == ""
