"""Message templates: Jinja2 in a sandbox, checked at validation time, never first at send time.

A template is the text of one message for one channel. It may use only the variables of
:data:`CONTEXT_VARIABLES` (the personalisation context the journey engine fills from the
profile, the customer record, the dealer and the offer) and the filters of :data:`FILTERS`.

:func:`validate_template` compiles the text, refuses any variable outside the context, renders
it against :data:`SAMPLE_CONTEXT` (so a runtime error such as a blocked attribute shows now),
screens it against the sensitive-word lexicon (Advertising Law absolute claims) and, for SMS,
applies DOMAIN's message rules: a leading 【signature】, ``回复TD退订`` on marketing and retention
messages, and a warning above 70 characters (one Chinese SMS segment).

Templates run in :class:`jinja2.sandbox.SandboxedEnvironment` with :class:`StrictUndefined`:
operators write them, so ``{{ ''.__class__ }}`` and friends must fail, and a missing value must
fail loudly instead of sending "尊敬的先生" with an empty name.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

import jinja2
import jinja2.meta
from jinja2.sandbox import SandboxedEnvironment

from baoke.errors import BaokeError
from baoke.touches import CHANNELS, PRIORITY_CLASSES

__all__ = [
    "CHANNELS",
    "CONTEXT_VARIABLES",
    "FILTERS",
    "PRIORITY_CLASSES",
    "SAMPLE_CONTEXT",
    "SMS_MAX_CHARS",
    "TD_LINE",
    "UNKNOWN_DATE",
    "TemplateError",
    "TemplateIssue",
    "render",
    "sensitive_words",
    "template_variables",
    "validate_template",
]


SMS_MAX_CHARS = 70  # one Chinese SMS segment (UCS-2, 70 characters including the signature)
TD_LINE = "回复TD退订"
# Classes whose SMS carry offers: DOMAIN's win-back SMS carries the TD line too.
_TD_REQUIRED = ("marketing", "retention")
_SIGNATURE_RE = re.compile(r"【[^【】\s]{2,16}】")

CONTEXT_VARIABLES: dict[str, str] = {
    "greeting": "称呼: title + surname, e.g. 张先生 / 李女士",
    "surname": "姓, e.g. 张",
    "title": "先生 or 女士",
    "signature": "SMS signature registered for the brand or dealer, no brackets, e.g. 星途汽车",
    "brand": "brand name",
    "series": "car series of the main vehicle, e.g. 远峰",
    "model": "car model, e.g. 远峰 2.0T 四驱旗舰版",
    "odometer_km": "latest odometer reading in km (int; use |thousands for 23,568)",
    "dealer_name": "the customer's home dealer (store) name",
    "dealer_phone": "the dealer's service phone",
    "dealer_address": "the dealer's address",
    "advisor_name": "the customer's service advisor / butler (用车管家) name",
    "next_maintenance_due_date": "expected next maintenance date (date; use |cn_date)",
    "insurance_expiry": "insurance expiry date (date; use |cn_date)",
    "months_since_last_visit": "whole months since the last service visit (int)",
    "years_owned": "whole years since delivery (int), for anniversaries",
    "festival_name": "the festival of a festival trigger, e.g. 春节",
    "offer_name": "the offer's short name, e.g. 回厂关怀礼",
    "offer_detail": "what the offer gives, e.g. 免费检测+工时8折+免费洗车",
    "offer_deadline": "the last day of the offer (date; use |cn_date)",
    "booking_link": "short booking link",
    "model_of_interest": "lost lead / upgrade: the model of interest",
    "points_balance": "loyalty points balance (int)",
    "points_change": "points just earned or spent (int)",
    "member_level": "loyalty level name, e.g. 金卡",
    "referee_greeting": "referral: the referred friend's title + surname",
    "gift_link": "a gift redemption link",
    "unsubscribe_line": "the unsubscribe instruction, 回复TD退订",
}
"""Every variable a template may use, with its meaning (the journey engine's contract)."""

SAMPLE_CONTEXT: dict[str, object] = {
    "greeting": "张先生",
    "surname": "张",
    "title": "先生",
    "signature": "星途汽车",
    "brand": "星途",
    "series": "远峰",
    "model": "远峰 2.0T 四驱旗舰版",
    "odometer_km": 23568,
    "dealer_name": "杭州西湖店",
    "dealer_phone": "0571-88886666",
    "dealer_address": "杭州市西湖区文三路100号",
    "advisor_name": "王磊",
    "next_maintenance_due_date": dt.date(2024, 7, 15),
    "insurance_expiry": dt.date(2024, 8, 1),
    "months_since_last_visit": 4,
    "years_owned": 3,
    "festival_name": "春节",
    "offer_name": "回厂关怀礼",
    "offer_detail": "免费检测+工时8折",
    "offer_deadline": dt.date(2024, 7, 7),
    "booking_link": "t.cn/A6bK9x",
    "model_of_interest": "灵犀EV",
    "points_balance": 3200,
    "points_change": 500,
    "member_level": "金卡",
    "referee_greeting": "李女士",
    "gift_link": "t.cn/G7pQ2m",
    "unsubscribe_line": TD_LINE,
}
"""Realistic values of every context variable: validation renders each template against them."""


def _thousands(value: object) -> str:
    """23568 -> '23,568' (the odometer in the Spring Festival greeting)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"thousands expects a number, got {type(value).__name__}")
    return f"{value:,.0f}"


UNKNOWN_DATE = "近期"
"""What ``cn_date`` prints for a date the store does not know (no profile, no policy date)."""


def _cn_date(value: object) -> str:
    """2024-07-15 -> '7月15日' (short dates save SMS characters; the year is implied).

    None -> '近期' ("soon"): a customer without a known due date still gets a sensible
    "预计近期保养" rather than a failed send.
    """
    if value is None:
        return UNKNOWN_DATE
    if not isinstance(value, dt.date):
        raise TypeError(f"cn_date expects a date, got {type(value).__name__}")
    return f"{value.month}月{value.day}日"


FILTERS = {"thousands": _thousands, "cn_date": _cn_date}
"""Filters available besides Jinja's built-ins."""


class TemplateError(BaokeError):
    """A template cannot be used; ``problems`` lists every error found (``message`` joins them)."""

    def __init__(self, name: str, problems: list[str]) -> None:
        self.name = name
        self.problems = tuple(problems)
        super().__init__(f"template '{name}': " + "; ".join(problems))


@dataclass(frozen=True)
class TemplateIssue:
    """A warning about a usable template (e.g. an SMS longer than one segment)."""

    name: str
    message: str

    def __str__(self) -> str:
        return f"template '{self.name}': {self.message}"


@functools.cache
def _env() -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        # Messages are plain text, never HTML: escaping would turn "&" into "&amp;" in an SMS.
        autoescape=False,
        keep_trailing_newline=False,
    )
    env.filters.update(FILTERS)
    return env


@functools.cache
def _compiled(text: str) -> jinja2.Template:
    return _env().from_string(text)


@functools.cache
def template_variables(text: str) -> tuple[str, ...]:
    """The context variables a template text uses, sorted (an SMS provider's template
    parameters are these)."""
    return tuple(sorted(jinja2.meta.find_undeclared_variables(_env().parse(text))))


@functools.cache
def _lexicon() -> tuple[tuple[str, ...], tuple[str, ...]]:
    raw = resources.files("baoke.playbooks").joinpath("sensitive_words.txt").read_text("utf-8")
    words: list[str] = []
    allowed: list[str] = []
    for line in raw.splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if entry.startswith("!"):
            allowed.append(entry[1:].strip())
        else:
            words.append(entry)
    return tuple(words), tuple(allowed)


def sensitive_words() -> tuple[str, ...]:
    """The screened words of ``sensitive_words.txt`` (without the allowed phrases)."""
    return _lexicon()[0]


def _screen(text: str) -> list[str]:
    """Screened words found in ``text``, in lexicon order, after masking allowed phrases."""
    words, allowed = _lexicon()
    # Longest first, so an allowed phrase is masked whole before a shorter one could split it.
    for phrase in sorted(allowed, key=len, reverse=True):
        text = text.replace(phrase, "\0" * len(phrase))
    folded = text.casefold()
    return [w for w in words if w.casefold() in folded]


def _visible(rendered: str) -> str:
    return rendered.strip()


def validate_template(
    channel: str,
    text: str,
    *,
    name: str = "<template>",
    priority: str = "service",
) -> list[TemplateIssue]:
    """Check one template for ``channel``; raise :class:`TemplateError`, return the warnings.

    Errors: Jinja syntax, a variable outside :data:`CONTEXT_VARIABLES`, a failure rendering the
    sample context (a sandbox violation, a filter on the wrong type), a word of the sensitive
    lexicon; for SMS also a missing leading 【signature】 and, for ``priority`` marketing or
    retention, a missing ``回复TD退订``. Warning: an SMS sample longer than 70 characters.
    ``channel`` may also be ``script`` (a call script for a human task).
    """
    if channel not in (*CHANNELS, "script"):
        raise TemplateError(name, [f"unknown channel '{channel}'"])
    problems: list[str] = []
    env = _env()
    try:
        ast = env.parse(text)
    except jinja2.TemplateSyntaxError as err:
        problem = f"syntax error at template line {err.lineno}: {err.message}"
        raise TemplateError(name, [problem]) from None
    try:
        # This walks the compiler, which is where an unknown filter is found.
        names = jinja2.meta.find_undeclared_variables(ast)
    except jinja2.TemplateSyntaxError as err:
        problem = f"error at template line {err.lineno}: {err.message}"
        raise TemplateError(name, [problem]) from None
    unknown = sorted(names - set(CONTEXT_VARIABLES))
    if unknown:
        problems += [
            f"unknown variable '{var}'{_close(var)} (see the variables in docs/playbooks.md)"
            for var in unknown
        ]
        raise TemplateError(name, problems)
    try:
        sample = _compiled(text).render(SAMPLE_CONTEXT)
    except jinja2.TemplateSyntaxError as err:  # unknown filter: reported at compile time
        problem = f"error at template line {err.lineno}: {err.message}"
        raise TemplateError(name, [problem]) from None
    except jinja2.exceptions.SecurityError as err:
        raise TemplateError(name, [f"blocked by the sandbox: {err}"]) from None
    except Exception as err:  # any runtime failure of operator text is the template's fault
        raise TemplateError(name, [f"fails on the sample context: {err}"]) from None
    found = _screen(text)
    if found:
        problems.append(
            "contains the sensitive word(s) "
            + ", ".join(f"'{w}'" for w in found)
            + " (Advertising Law: no absolute claims)"
        )
    warnings: list[TemplateIssue] = []
    if channel == "sms":
        body = _visible(sample)
        if not _SIGNATURE_RE.match(body):
            problems.append("an SMS must start with the 【signature】, e.g. 【{{ signature }}】")
        if priority in _TD_REQUIRED and TD_LINE not in body:
            problems.append(f"a {priority} SMS must contain '{TD_LINE}'")
        if len(body) > SMS_MAX_CHARS:
            warnings.append(
                TemplateIssue(
                    name,
                    f"the sample SMS has {len(body)} characters, more than one segment "
                    f"({SMS_MAX_CHARS}); it will be billed as {-(-len(body) // 67)} messages",
                )
            )
    if problems:
        raise TemplateError(name, problems)
    return warnings


def _close(var: str) -> str:
    close = difflib.get_close_matches(var, list(CONTEXT_VARIABLES), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def render(template: str, context: Mapping[str, object]) -> str:
    """Render template text with ``context``; raise :class:`TemplateError` on any failure.

    The result is stripped of surrounding whitespace (YAML block scalars end with a newline).
    """
    try:
        return _compiled(template).render(dict(context)).strip()
    except jinja2.TemplateSyntaxError as err:
        raise TemplateError("<render>", [f"syntax error: {err.message}"]) from None
    except jinja2.UndefinedError as err:
        raise TemplateError("<render>", [f"missing value: {err.message}"]) from None
    except jinja2.exceptions.SecurityError as err:
        raise TemplateError("<render>", [f"blocked by the sandbox: {err}"]) from None
