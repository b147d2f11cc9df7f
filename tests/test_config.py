"""Settings: defaults, baoke.toml, environment precedence and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from baoke.config import load_settings
from baoke.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("BAOKE_DATA_DIR", "BAOKE_DATABASE_URL", "BAOKE_TIMEZONE", "BAOKE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults() -> None:
    settings = load_settings()
    assert settings.url == "sqlite:///baoke-data/baoke.db"
    assert settings.timezone == "Asia/Shanghai"
    assert settings.profiles.tier_high_yuan == 5000 and settings.profiles.lost_days == 180


def test_toml_then_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "baoke.toml").write_text(
        'data_dir = "store"\n[profiles]\nat_risk_days = 60\nlost_days = 120\n', encoding="utf-8"
    )
    settings = load_settings()
    assert settings.url == "sqlite:///store/baoke.db"
    assert (settings.profiles.at_risk_days, settings.profiles.lost_days) == (60, 120)
    monkeypatch.setenv("BAOKE_DATA_DIR", "elsewhere")
    monkeypatch.setenv("BAOKE_PROFILES__LOST_DAYS", "150")
    settings = load_settings()
    assert settings.url == "sqlite:///elsewhere/baoke.db"
    assert settings.profiles.lost_days == 150 and settings.profiles.at_risk_days == 60


def test_inconsistent_thresholds_are_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "baoke.toml").write_text(
        "[profiles]\nat_risk_days = 200\nlost_days = 100\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError, match="at_risk_days must be less than lost_days"):
        load_settings()


def test_missing_config_file_named_by_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAOKE_CONFIG", "nope.toml")
    with pytest.raises(ConfigError, match=r"nope\.toml"):
        load_settings()


def test_message_defaults() -> None:
    messages = load_settings().messages
    assert messages.signature == "保客汽车服务" and messages.brand is None
    assert (messages.offer_name, messages.offer_days) == ("回厂关怀礼", 7)
    assert messages.member_levels[0] == (0, "普卡") and messages.member_levels[-1][1] == "铂金卡"


def test_messages_from_toml_and_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "baoke.toml").write_text(
        '[messages]\nsignature = "星途汽车"\nbrand = "星途"\n'
        'member_levels = [[0, "会员"], [1000, "金卡"]]\n',
        encoding="utf-8",
    )
    messages = load_settings().messages
    assert (messages.signature, messages.brand) == ("星途汽车", "星途")
    assert messages.member_levels == [(0, "会员"), (1000, "金卡")]
    monkeypatch.setenv("BAOKE_MESSAGES__OFFER_DAYS", "3")
    assert load_settings().messages.offer_days == 3


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ('member_levels = [[0, "普卡"], [20000, "金卡"], [5000, "银卡"]]', "strictly increasing"),
        ('member_levels = [[100, "普卡"]]', "must start at 0"),
        ("member_levels = []", "at least one level"),
        ("offer_days = 0", "offer_days"),
        ('signature = "【星途汽车】"', "without brackets"),
    ],
)
def test_bad_messages_are_one_clear_error(tmp_path: Path, table: str, problem: str) -> None:
    (tmp_path / "baoke.toml").write_text(f"[messages]\n{table}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=problem):
        load_settings()
