"""Property tests for the mobile and VIN normalisers and the date-time parser (hypothesis)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import phonenumbers
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from baoke.ingest.kinds import KINDS
from baoke.ingest.validate import (
    CN_MOBILE_RE,
    VIN_TRANSLITERATION,
    WHITESPACE,
    InvalidValue,
    _parse_datetime_slow,  # the reference reading
    normalise_mobile,
    parse_field,
    validate_vin,
    vin_check_digit,
    vin_check_ok,
)

TZ = ZoneInfo("Asia/Shanghai")
MOBILE = KINDS["customers"].field("mobile")
VIN = KINDS["vehicles"].field("vin")
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

cn_digits = st.from_regex(r"1[0-9]{10}", fullmatch=True)
any_digits = st.from_regex(r"\+?[0-9]{5,16}", fullmatch=True)


def phonenumbers_verdict(national: str) -> str | None:
    """What phonenumbers alone says about an 11-digit Chinese number."""
    try:
        number = phonenumbers.parse(national, "CN")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    if phonenumbers.number_type(number) not in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


@FAST
@given(st.lists(cn_digits, min_size=1, max_size=40))
def test_fast_path_agrees_with_phonenumbers(numbers: list[str]) -> None:
    """The vectorised regex fast path accepts exactly what phonenumbers accepts."""
    fast = pl.Series(numbers).str.contains(CN_MOBILE_RE).to_list()
    parsed = parse_field(pl.Series(numbers), MOBILE, TZ).values.to_list()
    for number, is_fast, value in zip(numbers, fast, parsed, strict=True):
        verdict = phonenumbers_verdict(number)
        if is_fast:
            assert verdict == "+86" + number
        assert value == verdict


def test_fast_path_covers_every_assigned_prefix() -> None:
    # Every 3-digit prefix phonenumbers accepts for some number is also taken by the fast path.
    for prefix in range(130, 200):
        sample = f"{prefix}12345678"
        fast = pl.Series([sample]).str.contains(CN_MOBILE_RE)[0]
        assert fast == (phonenumbers_verdict(sample) is not None), sample


@FAST
@given(st.lists(st.one_of(cn_digits, any_digits), min_size=1, max_size=30))
def test_vectorised_equals_scalar(raws: list[str]) -> None:
    parsed = parse_field(pl.Series(raws), MOBILE, TZ)
    for raw, value, error in zip(raws, parsed.values, parsed.errors, strict=True):
        try:
            expected: str | None = normalise_mobile(raw)
        except InvalidValue as exc:
            expected = None
            assert error == exc.reason
        assert value == expected


@st.composite
def formatted_variants(draw: st.DrawFn) -> tuple[str, str]:
    number = draw(st.sampled_from(["138", "139", "150", "186", "177", "199", "166"]))
    number += draw(st.from_regex(r"[0-9]{8}", fullmatch=True))
    prefix = draw(st.sampled_from(["", "+86", "+86 ", "0086", "86", "+86-"]))
    sep = draw(st.sampled_from(["", " ", "-", ".", "  "]))
    body = number[:3] + sep + number[3:7] + sep + number[7:]
    if draw(st.booleans()) and not prefix and not sep:
        body += ".0"  # Excel float
    wrap = draw(st.sampled_from(["{}", " {} ", "{}\t"]))
    return number, wrap.format(prefix + body)


@FAST
@given(formatted_variants())
def test_formatting_variants_normalise_equal(case: tuple[str, str]) -> None:
    number, raw = case
    assert normalise_mobile(raw) == normalise_mobile(number) == "+86" + number
    assert parse_field(pl.Series([raw]), MOBILE, TZ).values[0] == "+86" + number


@FAST
@given(st.one_of(cn_digits, any_digits, formatted_variants().map(lambda c: c[1])))
def test_normalise_mobile_idempotent(raw: str) -> None:
    try:
        once = normalise_mobile(raw)
    except InvalidValue:
        return
    assert normalise_mobile(once) == once
    assert once.startswith("+")


# ---- VIN -------------------------------------------------------------------------------------

VIN_CHARS = "".join(sorted(VIN_TRANSLITERATION))
vin_body = st.text(alphabet=VIN_CHARS, min_size=17, max_size=17)


@st.composite
def valid_vins(draw: st.DrawFn) -> str:
    body = draw(vin_body)
    return body[:8] + vin_check_digit(body) + body[9:]


@FAST
@given(valid_vins())
def test_valid_vin_generator_passes_check(vin: str) -> None:
    assert validate_vin(vin) == (vin, True)
    assert validate_vin(vin.lower()) == (vin, True)


@FAST
@given(valid_vins(), st.integers(0, 16), st.characters(codec="ascii"))
def test_one_char_mutation_changes_outcome_or_is_caught(vin: str, pos: int, ch: str) -> None:
    mutated = vin[:pos] + ch + vin[pos + 1 :]
    if mutated.upper() == vin:
        return
    try:
        normalised, check = validate_vin(mutated)
    except InvalidValue:
        return  # caught as a bad character / length
    if normalised == vin:  # e.g. a space that normalisation removes... cannot happen at length 17
        return
    if VIN_TRANSLITERATION[normalised[pos]] == VIN_TRANSLITERATION[vin[pos]] and pos != 8:
        assert check  # same transliterated value: checksum cannot notice (known ISO limit)
    elif pos == 8 or (VIN_TRANSLITERATION[normalised[pos]] - VIN_TRANSLITERATION[vin[pos]]) % 11:
        # weights are non-zero mod 11 except position 9 itself, so the check changes
        assert not check


@FAST
@given(st.lists(st.one_of(vin_body, valid_vins(), st.text(max_size=20)), min_size=1, max_size=30))
def test_vin_vectorised_equals_scalar(raws: list[str]) -> None:
    parsed = parse_field(pl.Series(raws, dtype=pl.String), VIN, TZ)
    assert parsed.check_ok is not None
    for raw, value, check, error in zip(
        raws, parsed.values, parsed.check_ok, parsed.errors, strict=True
    ):
        if not raw.strip(WHITESPACE):
            assert value is None and error == "车架号不能为空"
            continue
        try:
            expected = validate_vin(raw)
        except InvalidValue as exc:
            assert value is None and check is None
            assert error == exc.reason
            continue
        assert (value, check) == expected
        assert error is None


@FAST
@given(st.lists(vin_body, min_size=1, max_size=50))
def test_vin_check_ok_matches_scalar(vins: list[str]) -> None:
    got = vin_check_ok(pl.Series(vins)).to_list()
    assert got == [vin_check_digit(v) == v[8] for v in vins]


@pytest.mark.parametrize("vin", ["1M8GDM9AXKP042788", "11111111111111111"])
def test_position_nine_mutation_always_detected(vin: str) -> None:
    for ch in "0123456789X":
        if ch != vin[8]:
            assert validate_vin(vin[:8] + ch + vin[9:])[1] is False


# ---- date-times: the ISO fast path reads what the regex path reads ----------------------

OPENED_AT = KINDS["complaints"].field("opened_at")
iso_zoned = st.builds(
    lambda day, h, m, s, frac, off: f"{day}T{h:02d}:{m:02d}:{s:02d}{frac}{off}",
    st.dates(min_value=dt.date(1990, 1, 1), max_value=dt.date(2099, 12, 31)).map(str)
    | st.from_regex(r"20[0-9]{2}-(0[0-9]|1[0-3])-[0-3][0-9]", fullmatch=True),
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 59),
    st.sampled_from(["", ".5", ".123", ".000001", ".987654"]),
    st.sampled_from(["Z", "z", "+08:00", "-03:30", "+14:00", "+00:00", "-11:45"]),
)
other_times = st.sampled_from(
    [
        "2026-10-11 13:51:51",
        "2026-10-11T13:51:51",
        "2026-10-11 13:51:51+08:00",
        "2026-10-11T13:51:51.1234567+08:00",
        "2026-10-11T13:51:51+0800",
        "2026-10-11T13:51:51+99:99",
        "2026/10/11 13:51",
        "2026年10月11日 13时51分",
        "46000",
        "not a time",
        "",
    ]
)


@FAST
@given(st.lists(iso_zoned | other_times | st.none(), min_size=1, max_size=30))
def test_datetime_fast_paths_agree_with_regex_path(raws: list[str | None]) -> None:
    series = pl.Series("t", raws, dtype=pl.String)
    parsed = parse_field(series, OPENED_AT, TZ)
    slow = [None if raw is None or not raw.strip() else _slow_datetime(raw.strip()) for raw in raws]
    assert parsed.values.to_list() == slow


def _slow_datetime(raw: str) -> dt.datetime | None:
    value = _parse_datetime_slow(pl.Series([raw], dtype=pl.String), TZ)[0]
    return value if isinstance(value, dt.datetime) else None
