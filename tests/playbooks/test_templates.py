"""Message templates: the sandbox, strict variables, and DOMAIN's SMS rules at validation time."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baoke.playbooks import TemplateError, render, validate_template
from baoke.playbooks.templates import (
    CONTEXT_VARIABLES,
    SAMPLE_CONTEXT,
    TD_LINE,
    sensitive_words,
)

SMS = (
    "【{{ signature }}】{{ greeting }}，您的{{ series }}"
    "预计{{ next_maintenance_due_date | cn_date }}保养"
)


def problems(channel: str, text: str, **kw: str) -> tuple[str, ...]:
    with pytest.raises(TemplateError) as info:
        validate_template(channel, text, name="t", **kw)
    return info.value.problems


def test_sample_context_covers_every_variable() -> None:
    assert set(SAMPLE_CONTEXT) == set(CONTEXT_VARIABLES)


def test_render_personalises() -> None:
    text = "{{ greeting }}，您的爱车已陪伴您行驶{{ odometer_km | thousands }}公里"
    assert render(text, SAMPLE_CONTEXT) == "张先生，您的爱车已陪伴您行驶23,568公里"
    assert render("{{ d | cn_date }}", {"d": dt.date(2025, 1, 5)}) == "1月5日"


def test_cn_date_of_an_unknown_date_is_soon() -> None:
    # The context builder passes None for a date the store does not know; never crash a send.
    assert render("预计{{ d | cn_date }}保养", {"d": None}) == "预计近期保养"


def test_a_valid_sms_has_no_warning() -> None:
    assert validate_template("sms", SMS) == []


def test_unknown_variable_is_named_at_validation() -> None:
    (problem,) = problems("wecom", "{{ greeting }}，{{ advisor }}为您服务")
    assert "unknown variable 'advisor'" in problem
    assert "did you mean 'advisor_name'" in problem
    with pytest.raises(TemplateError, match=r"template 'winback\.sms'"):
        validate_template("sms", "{{ nope }}", name="winback.sms")


def test_syntax_error_names_the_template_line() -> None:
    (problem,) = problems("wecom", "第一行\n{% if greeting %}没有结束")
    assert problem.startswith("syntax error at template line 2")


def test_unknown_filter_and_wrong_type() -> None:
    assert "No filter named 'shout'" in problems("wecom", "{{ greeting | shout }}")[0]
    assert "cn_date expects a date" in problems("wecom", "{{ greeting | cn_date }}")[0]


@pytest.mark.parametrize(
    "text",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ greeting.__class__.__init__.__globals__ }}",
    ],
)
def test_sandbox_blocks_attribute_access(text: str) -> None:
    with pytest.raises(TemplateError, match=r"sandbox|unsafe|undefined|has no attribute"):
        render(text, SAMPLE_CONTEXT)
    with pytest.raises(TemplateError):
        validate_template("wecom", text)


def test_missing_value_at_render_is_an_error_not_blank() -> None:
    with pytest.raises(TemplateError, match="missing value"):
        render("{{ greeting }}您好", {})


def test_sms_needs_a_leading_signature() -> None:
    (problem,) = problems("sms", "{{ greeting }}，您的车该保养了")
    assert "must start with the 【signature】" in problem
    assert validate_template("sms", "【星途汽车】{{ greeting }}，您的车该保养了") == []
    # Only SMS needs it.
    assert validate_template("wecom", "{{ greeting }}，您的车该保养了") == []


@pytest.mark.parametrize("priority", ["marketing", "retention"])
def test_marketing_sms_needs_the_td_line(priority: str) -> None:
    (problem,) = problems("sms", SMS, priority=priority)
    assert f"must contain '{TD_LINE}'" in problem
    assert validate_template("sms", SMS + " 回复TD退订", priority=priority) == []
    assert validate_template("sms", SMS + " {{ unsubscribe_line }}", priority=priority) == []
    # A service reminder does not need it.
    assert validate_template("sms", SMS, priority="service") == []


def test_long_sms_is_a_warning() -> None:
    text = SMS + "，" + "请您提前预约" * 8
    (warning,) = validate_template("sms", text, name="long")
    assert "more than one segment (70)" in warning.message
    assert str(warning).startswith("template 'long': the sample SMS has")


def test_sensitive_words() -> None:
    words = sensitive_words()
    assert 45 <= len(words) <= 60
    for word in ("最", "第一", "国家级", "顶级", "绝对", "100%"):
        assert word in words
    (problem,) = problems("wecom", "{{ greeting }}，全城最低价，绝对划算")
    assert "'最'" in problem and "'绝对'" in problem
    # Ordinary words containing 最 are allowed phrases, not claims.
    assert validate_template("wecom", "{{ greeting }}，最近天气转凉，最后提醒您检查胎压") == []
    # Case-insensitive for Latin entries.
    assert "'NO.1'" in problems("push", "{{ series }} no.1 之选")[0]


def test_email_and_script_channels() -> None:
    assert validate_template("email", "{{ greeting }}：您的月度用车报告") == []
    assert validate_template("script", "{{ greeting }}您好，我是{{ advisor_name }}") == []
    assert "unknown channel" in problems("fax", "hi")[0]


@given(st.text(alphabet="张王李赵刘", min_size=1, max_size=2), st.integers(0, 999_999))
def test_render_never_leaks_markup(surname: str, km: int) -> None:
    context = dict(SAMPLE_CONTEXT, greeting=f"{surname}先生", odometer_km=km)
    out = render("{{ greeting }}已行驶{{ odometer_km | thousands }}公里", context)
    assert out == f"{surname}先生已行驶{km:,}公里"
