"""parse_field for every FieldType, error messages, and the scalar helpers."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from baoke.ingest.kinds import KINDS, FieldSpec, FieldType
from baoke.ingest.validate import (
    InvalidValue,
    Parsed,
    normalise_mobile,
    parse_field,
    validate_vin,
    vin_check_digit,
    vin_check_ok,
)

TZ = ZoneInfo("Asia/Shanghai")
UTC = dt.UTC


def field(kind: str, name: str) -> FieldSpec:
    return KINDS[kind].field(name)


def run(spec: FieldSpec, values: list[str | None]) -> Parsed:
    parsed = parse_field(pl.Series("raw", values, dtype=pl.String), spec, TZ)
    assert len(parsed.values) == len(values)
    assert parsed.errors.dtype == pl.String
    return parsed


def ok(spec: FieldSpec, raw: str) -> object:
    parsed = run(spec, [raw])
    assert parsed.errors[0] is None, parsed.errors[0]
    return parsed.values[0]


def err(spec: FieldSpec, raw: str) -> str:
    parsed = run(spec, [raw])
    assert parsed.values[0] is None
    message = parsed.errors[0]
    assert isinstance(message, str)
    return message


def test_big_column_deduplicated_path_matches_direct() -> None:
    spec = field("service-orders", "settled_on")
    values = ["2024-03-01", "2024/3/2", "bad", None, "45352"] * 2000  # repeats -> dedupe path
    big = run(spec, values)
    small = run(spec, values[:5])
    assert big.values.to_list() == small.values.to_list() * 2000
    assert big.errors.to_list() == small.errors.to_list() * 2000


# ---- required / empty ------------------------------------------------------------------------


def test_required_empty_is_error_optional_empty_is_null() -> None:
    req = field("service-orders", "order_no")
    parsed = run(req, ["", "  ", None, "RO1"])
    assert parsed.errors.to_list() == ["工单号不能为空"] * 3 + [None]
    opt = field("service-orders", "mileage")
    parsed = run(opt, ["", None, " "])
    assert parsed.values.to_list() == [None, None, None]
    assert parsed.errors.to_list() == [None, None, None]


# ---- text / code -----------------------------------------------------------------------------


def test_text_and_code() -> None:
    assert ok(field("customers", "name"), "  张三 ") == "张三"
    assert run(field("customers", "name"), ["   "]).values[0] is None
    code = field("service-orders", "order_no")
    assert ok(code, " ro 0001 ") == "RO0001"
    assert ok(code, "ｒｏ００１") == "RO001"
    assert run(code, [" "]).values.dtype == pl.String


# ---- mobile ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "13800138000",
        "138 0013 8000",
        "138-0013-8000",
        "138.0013.8000",
        "(138)00138000",
        "+86 138 0013 8000",
        "+8613800138000",
        "008613800138000",
        "8613800138000",
        "13800138000.0",
        "１３８００１３８０００",
    ],
)
def test_mobile_variants(raw: str) -> None:
    spec = field("customers", "mobile")
    assert ok(spec, raw) == "+8613800138000"
    assert normalise_mobile(raw) == "+8613800138000"


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+852 9123 4567", "+85291234567"),
        ("+1 415 555 2671", "+14155552671"),
        ("00447911123456", "+447911123456"),
    ],
)
def test_mobile_international(raw: str, e164: str) -> None:
    assert ok(field("customers", "mobile"), raw) == e164
    assert normalise_mobile(raw) == e164


@pytest.mark.parametrize(
    "raw",
    [
        "1380013800",
        "138001380001",
        "12800138000",
        "15400000000",
        "abc",
        "010-12345678",
        "+86 10 1234 5678",
        "+8613800138000x",
    ],
)
def test_mobile_invalid(raw: str) -> None:
    spec = field("customers", "mobile")
    assert err(spec, raw) == f"手机号格式错误: {raw}"
    with pytest.raises(InvalidValue) as exc:
        normalise_mobile(raw)
    assert exc.value.reason == f"手机号格式错误: {raw}"


def test_mobile_error_message_exact_and_uses_label() -> None:
    assert err(field("customers", "mobile"), "1380013800") == "手机号格式错误: 1380013800"
    assert err(field("vehicles", "mobile"), "123") == "车主手机格式错误: 123"


# ---- email -----------------------------------------------------------------------------------


def test_email() -> None:
    spec = field("customers", "email")
    assert ok(spec, " Zhang.San@Example.COM ") == "zhang.san@example.com"
    for bad in ("zhang", "a@b", "a@@b.com", "a b@c.com", "a@b.c"):
        assert err(spec, bad) == f"邮箱格式错误: {bad}"


# ---- VIN -------------------------------------------------------------------------------------

KNOWN_VINS = [
    ("1M8GDM9AXKP042788", "X"),  # the classic textbook example
    ("11111111111111111", "1"),
    ("1HGCM82633A004352", "3"),  # Honda Accord 2003, widely published
]


@pytest.mark.parametrize(("vin", "digit"), KNOWN_VINS)
def test_vin_check_digit_known_examples(vin: str, digit: str) -> None:
    assert vin_check_digit(vin) == digit
    assert validate_vin(vin.lower()) == (vin, True)
    parsed = run(field("vehicles", "vin"), [vin])
    assert parsed.values[0] == vin
    assert parsed.check_ok is not None and parsed.check_ok[0] is True


def test_vin_wrong_check_digit_is_not_an_error() -> None:
    parsed = run(field("vehicles", "vin"), ["1M8GDM9A1KP042788", " lsv au2180n2183294 "])
    assert parsed.errors.to_list() == [None, None]
    assert parsed.values.to_list() == ["1M8GDM9A1KP042788", "LSVAU2180N2183294"]
    assert parsed.check_ok is not None
    assert parsed.check_ok[0] is False
    assert validate_vin("1M8GDM9A1KP042788") == ("1M8GDM9A1KP042788", False)


def test_vin_errors() -> None:
    spec = field("vehicles", "vin")
    assert err(spec, "LSVAU2180N218329") == "车架号长度错误: LSVAU2180N218329 (应为17位)"
    assert err(spec, "LSVAU2180N21832OI") == "车架号含非法字符: LSVAU2180N21832OI (不允许 I/O/Q)"
    parsed = run(spec, ["LSVAU2180N218329", None])
    assert parsed.check_ok is not None and parsed.check_ok.to_list() == [None, None]
    with pytest.raises(InvalidValue, match="长度"):
        validate_vin("ABC")
    with pytest.raises(InvalidValue, match="非法字符"):
        validate_vin("1M8GDM9AXKP04278Q")
    with pytest.raises(InvalidValue):
        vin_check_digit("SHORT")


def test_vin_check_ok_vectorised_nulls_for_malformed() -> None:
    s = pl.Series(["1M8GDM9AXKP042788", "bad", None, "1M8GDM9A1KP042788"])
    assert vin_check_ok(s).to_list() == [True, None, None, False]


# ---- dates -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "2024-03-01",
        "2024/3/1",
        "2024.3.1",
        "2024年3月1日",
        "20240301",
        "2024-03-01 00:00:00",
        "2024-3-1 10:30",
        "45352",
        "45352.75",
        "2024-03-01T10:00:00+08:00",
        "２０２４－０３－０１",
    ],
)
def test_date_formats(raw: str) -> None:
    assert ok(field("service-orders", "settled_on"), raw) == dt.date(2024, 3, 1)


@pytest.mark.parametrize(
    "raw",
    [
        "2024-02-30",
        "2023-02-29",
        "2024-13-01",
        "2024",
        "abc",
        "24-03-01",
        "0",
        "3000000",
        "2024-03-01 junk",
        "01/03/2024",
    ],
)
def test_date_invalid(raw: str) -> None:
    assert err(field("service-orders", "settled_on"), raw) == f"结算日期格式错误: {raw}"


def test_date_dtype_and_leap_day() -> None:
    parsed = run(field("service-orders", "settled_on"), ["2024-02-29", None])
    assert parsed.values.dtype == pl.Date
    assert parsed.values.to_list() == [dt.date(2024, 2, 29), None]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-03-01 10:00", dt.datetime(2024, 3, 1, 2, 0, tzinfo=UTC)),
        ("2024-03-01 10:00:00", dt.datetime(2024, 3, 1, 2, 0, tzinfo=UTC)),
        ("2024/3/1 10:00", dt.datetime(2024, 3, 1, 2, 0, tzinfo=UTC)),
        ("2024-03-01T10:00:00+08:00", dt.datetime(2024, 3, 1, 2, 0, tzinfo=UTC)),
        ("2024-03-01T10:00:00Z", dt.datetime(2024, 3, 1, 10, 0, tzinfo=UTC)),
        ("2024-03-01T10:00:00.250-0500", dt.datetime(2024, 3, 1, 15, 0, 0, 250000, tzinfo=UTC)),
        ("2024-03-01", dt.datetime(2024, 2, 29, 16, 0, tzinfo=UTC)),
        ("20240301", dt.datetime(2024, 2, 29, 16, 0, tzinfo=UTC)),
        ("45352.5", dt.datetime(2024, 3, 1, 4, 0, tzinfo=UTC)),
        ("2024年3月1日 10:05", dt.datetime(2024, 3, 1, 2, 5, tzinfo=UTC)),
    ],
)
def test_datetime_formats(raw: str, expected: dt.datetime) -> None:
    assert ok(field("complaints", "opened_at"), raw) == expected


def test_datetime_dtype_and_invalid() -> None:
    spec = field("complaints", "opened_at")
    parsed = run(spec, ["2024-03-01 10:00:00", "2024-03-01 25:00:00", "2024-02-30 10:00", "x"])
    assert parsed.values.dtype == pl.Datetime("us", "UTC")
    assert parsed.errors.to_list()[1:] == [
        "投诉时间格式错误: 2024-03-01 25:00:00",
        "投诉时间格式错误: 2024-02-30 10:00",
        "投诉时间格式错误: x",
    ]


def test_datetime_business_timezone_matters() -> None:
    spec = field("complaints", "opened_at")
    raw = pl.Series(["2024-07-01 12:00:00"])
    berlin = parse_field(raw, spec, ZoneInfo("Europe/Berlin")).values[0]
    assert berlin == dt.datetime(2024, 7, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("8:00", dt.time(8)),
        ("08:00:00", dt.time(8)),
        ("0800", dt.time(8)),
        ("21:30", dt.time(21, 30)),
        ("8点30", dt.time(8, 30)),
        ("083015", dt.time(8, 30, 15)),
    ],
)
def test_time_formats(raw: str, expected: dt.time) -> None:
    assert ok(field("customers", "contact_from"), raw) == expected


@pytest.mark.parametrize("raw", ["25:00", "8:61", "800", "noon"])
def test_time_invalid(raw: str) -> None:
    assert err(field("customers", "contact_from"), raw) == f"接收时段开始格式错误: {raw}"


# ---- money / int -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "fen"),
    [
        ("1,234.50", 123450),
        ("¥1234.5", 123450),
        ("￥1234.5", 123450),
        ("1234元", 123400),
        ("１２３４", 123400),
        ("0.01", 1),
        ("12.500", 1250),
        (" 99 ", 9900),
        ("1234.", 123400),
        ("99999999999.99", 9999999999999),
    ],
)
def test_money(raw: str, fen: int) -> None:
    value = ok(field("service-orders", "amount"), raw)
    assert value == fen
    assert isinstance(value, int)


def test_money_errors() -> None:
    spec = field("service-orders", "amount")
    assert err(spec, "1.234") == "金额格式错误: 1.234 (最多两位小数)"
    assert err(spec, "-5") == "金额不能为负数: -5"
    assert err(spec, "abc") == "金额格式错误: abc"
    assert err(spec, "1.2.3") == "金额格式错误: 1.2.3"
    signed = FieldSpec("delta", FieldType.MONEY, ("delta",), "差额")
    assert ok(signed, "-5.5") == -550
    assert run(spec, ["1"]).values.dtype == pl.Int64


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("12,345", 12345),
        ("12345.0", 12345),
        ("12345km", 12345),
        ("12345 KM", 12345),
        ("12345公里", 12345),
        ("０", 0),
    ],
)
def test_int(raw: str, value: int) -> None:
    assert ok(field("service-orders", "mileage"), raw) == value


def test_int_errors_and_range() -> None:
    spec = field("service-orders", "mileage")
    assert err(spec, "-5") == "里程超出范围: -5"
    assert err(spec, "2000001") == "里程超出范围: 2000001"
    assert err(spec, "1.5") == "里程格式错误: 1.5"
    assert err(spec, "many") == "里程格式错误: many"
    year = field("vehicles", "model_year")
    assert err(year, "1970") == "年款超出范围: 1970"
    assert ok(year, "2024") == 2024


# ---- bool / enum -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("是", True),
        ("否", False),
        ("同意", True),
        ("不同意", False),
        ("拒绝", False),
        ("Y", True),
        ("n", False),
        ("Yes", True),
        ("no", False),
        ("TRUE", True),
        ("false", False),
        ("1", True),
        ("0", False),
        ("已授权", True),
        ("未授权", False),
    ],
)
def test_bool(raw: str, value: bool) -> None:
    assert ok(field("consents", "granted"), raw) is value


def test_bool_invalid() -> None:
    assert err(field("consents", "granted"), "也许") == "是否同意格式错误: 也许 (应为 是/否)"


def test_enum_matches_key_and_spellings_case_insensitive() -> None:
    spec = field("service-orders", "order_type")
    assert ok(spec, "保养") == "maintenance"
    assert ok(spec, "MAINTENANCE") == "maintenance"
    assert ok(spec, " 钣金喷漆 ") == "repair"
    assert ok(field("leads", "stage"), "Test Drive") == "test_drive"
    assert ok(field("customers", "title"), "mr.") == "先生"
    message = err(spec, "洗车")
    assert message.startswith("工单类型格式错误: 洗车 (可选: ")
    assert "保养" in message and "维修" in message


# ---- json / tags -----------------------------------------------------------------------------


def test_json() -> None:
    spec = field("events", "properties")
    assert ok(spec, '{"model": "ID.4", "n": 1}') == '{"model": "ID.4", "n": 1}'
    assert ok(spec, "[1, 2]") == "[1, 2]"
    assert err(spec, "{bad") == "属性格式错误: {bad"


@pytest.mark.parametrize(
    ("raw", "tags"),
    [
        ("VIP, 老客户、 高价值;;", ["VIP", "老客户", "高价值"]),
        ("a|b|a", ["a", "b"]),
        ("单个", ["单个"]),
        ('x"y\\z；w', ['x"y\\z', "w"]),
        ("a\tb", ["a", "b"]),
    ],
)
def test_tags(raw: str, tags: list[str]) -> None:
    value = ok(field("customers", "tags"), raw)
    assert isinstance(value, str)
    assert json.loads(value) == tags


def test_tags_only_separators_is_null() -> None:
    parsed = run(field("customers", "tags"), [",,、 ;"])
    assert parsed.values.to_list() == [None]
    assert parsed.errors.to_list() == [None]


def test_every_field_type_is_handled() -> None:
    for ftype in FieldType:
        spec = FieldSpec("x", ftype, ("x",), "某字段")
        parsed = parse_field(pl.Series(["", None]), spec, TZ)
        assert parsed.values.to_list() == [None, None]


def test_non_string_input_is_cast() -> None:
    parsed = parse_field(pl.Series([12345, None]), field("service-orders", "mileage"), TZ)
    assert parsed.values.to_list() == [12345, None]
