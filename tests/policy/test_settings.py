"""The ``[policy]`` settings: DOMAIN's defaults, partial tables, and one clear error each."""

from __future__ import annotations

import datetime as dt

import pytest

from baoke.config import load_settings
from baoke.errors import ConfigError
from baoke.policy.settings import PolicySettings


def test_defaults_are_domains() -> None:
    policy = PolicySettings()
    assert policy.quiet_hours == (dt.time(8), dt.time(21))
    assert policy.monthly_caps == {"high": 10, "mid": 6, "low": 3, "none": 3}
    wecom = policy.channel_caps["wecom"]
    assert (wecom.max, wecom.per, wecom.counts_service) == (1, "day", True)
    assert policy.holdout == 0.05 and policy.marketing_per_day == 1


def test_a_partial_table_keeps_the_other_defaults() -> None:
    policy = PolicySettings.model_validate(
        {
            "monthly_caps": {"high": 8},
            "channel_caps": {"sms": {"max": 1, "per": "week"}},
            "channel_mix": {"low": {"sms": 1.0}},
            "cost_fen": {"sms": 5},
            "quiet_hours": ["09:00", "20:00"],
        }
    )
    assert policy.monthly_caps == {"high": 8, "mid": 6, "low": 3, "none": 3}
    assert policy.channel_caps["sms"].max == 1
    assert policy.channel_caps["wecom"].max == 1  # WeCom's own limit is not lifted
    assert policy.channel_mix["low"] == {"sms": 1.0}
    assert policy.channel_mix["high"]["wecom"] == 0.6
    assert policy.cost_fen == {"sms": 5, "wecom": 2, "push": 1, "email": 4, "phone": 750}
    assert policy.quiet_hours == (dt.time(9), dt.time(20))


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"quiet_hours": ["21:00", "08:00"]}, "the start before the end"),
        ({"quiet_hours": ["8h", "21:00"]}, "hours are"),
        ({"holdout": 1.5}, "policy.holdout"),
        ({"monthly_caps": {"vip": 5}}, "unknown tier 'vip'"),
        ({"cost_fen": {"fax": 1}}, "unknown channel 'fax'"),
        ({"cost_fen": {"sms": -1}}, "costs are fen"),
        ({"channel_mix": {"high": {"wecom": 0.8, "sms": 0.8}}}, "add up to 1"),
        ({"service_classes": ["urgent"]}, "unknown priority class 'urgent'"),
        ({"service_classes": ["service", "care", "retention", "marketing"]}, "nothing would be"),
        ({"channel_caps": {"sms": {"max": 2, "per": "year"}}}, "policy.channel_caps.sms.per"),
    ],
)
def test_a_wrong_setting_is_one_clear_error(policy: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(policy=policy)
    text = str(caught.value)
    assert text.startswith("invalid settings: ") and message in text
    assert "\n" not in text
