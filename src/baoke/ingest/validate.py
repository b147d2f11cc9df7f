"""Vectorised parsing and validation of raw string columns into typed values.

:func:`parse_field` turns one raw ``pl.String`` column into typed values plus a parallel column
of readable (Chinese) error reasons. All per-row work is done by polars expressions; Python is
only called once per *distinct* value where a library is needed (``phonenumbers`` for numbers
outside the Chinese-mobile fast path, ``json`` for JSON cells).

Chinese mobiles take a regex fast path built from ``phonenumbers``' own metadata (the CN mobile
``national_number_pattern``), so it accepts exactly the numbers ``phonenumbers`` accepts; the
test-suite checks that with hypothesis. Everything else (international numbers, odd shapes) is
decided by ``phonenumbers`` itself, once per distinct value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import phonenumbers
import polars as pl
from phonenumbers import PhoneMetadata, PhoneNumberFormat, PhoneNumberType

from baoke.ingest.kinds import FieldSpec, FieldType


class InvalidValue(ValueError):
    """A single value that cannot be parsed; ``reason`` is the user-facing message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Parsed:
    """Typed values of one column, with a reason for every rejected cell."""

    values: pl.Series  # typed result, null where empty or invalid
    errors: pl.Series  # pl.String, null where OK, else a readable Chinese reason
    check_ok: pl.Series | None = None  # VIN only: False when the ISO 3779 check digit is wrong


# --------------------------------------------------------------------------------------------
# shared constants

# Unicode White_Space, as stripped by polars' ``str.strip_chars()`` (Python's str.strip() also
# strips \x1c-\x1f, which polars keeps; scalar helpers use this set to agree with polars)
WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_FULLWIDTH_FROM = [chr(c) for c in range(0xFF01, 0xFF5F)] + ["\u3000"]
_FULLWIDTH_TO = [chr(c - 0xFEE0) for c in range(0xFF01, 0xFF5F)] + [" "]
_FULLWIDTH_TABLE = str.maketrans(dict(zip(_FULLWIDTH_FROM, _FULLWIDTH_TO, strict=True)))
_FULLWIDTH_RE = "[\uff01-\uff5e\u3000]"


def _cn_mobile_pattern() -> str:
    meta = PhoneMetadata.metadata_for_region("CN")
    pattern = None if meta is None or meta.mobile is None else meta.mobile.national_number_pattern
    if not pattern:  # pragma: no cover - phonenumbers always ships CN metadata
        return r"1[3-9]\d{9}"
    return str(pattern)


_CN_MOBILE_PATTERN = _cn_mobile_pattern()
CN_MOBILE_RE = f"^(?:{_CN_MOBILE_PATTERN})$"
_CN_MOBILE_PY = re.compile(CN_MOBILE_RE)

_MOBILE_SEPARATORS = "[" + WHITESPACE + r"\-.()（）\[\]/]"
_SPACE_DASH = "[" + WHITESPACE + r"\-]"
_SPACE_DASH_UNDERSCORE = "[" + WHITESPACE + r"_\-]"
_EXCEL_INT_FLOAT = r"^(\d+)\.0+$"
_CN_PREFIX = r"^(?:\+86|0086|86)(1\d{10})$"
_MOBILE_TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)

VIN_TRANSLITERATION: dict[str, int] = {
    **{str(d): d for d in range(10)},
    "A": 1, "B": 2, "C": 3, "D": 4, "E": 5, "F": 6, "G": 7, "H": 8,
    "J": 1, "K": 2, "L": 3, "M": 4, "N": 5, "P": 7, "R": 9,
    "S": 2, "T": 3, "U": 4, "V": 5, "W": 6, "X": 7, "Y": 8, "Z": 9,
}  # fmt: skip
VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_VIN_RE = "^[A-HJ-NPR-Z0-9]{17}$"
_VIN_PY = re.compile(_VIN_RE)
_VIN_LUT = np.zeros(256, dtype=np.int64)
for _c, _v in VIN_TRANSLITERATION.items():
    _VIN_LUT[ord(_c)] = _v
_VIN_WEIGHTS_NP = np.array(VIN_WEIGHTS, dtype=np.int64)

_TRUE = (
    "是",
    "同意",
    "已同意",
    "y",
    "yes",
    "true",
    "t",
    "1",
    "已授权",
    "授权",
    "有",
    "√",
    "✓",
    "ok",
    "on",
)
_FALSE = (
    "否",
    "不同意",
    "未同意",
    "拒绝",
    "n",
    "no",
    "false",
    "f",
    "0",
    "未授权",
    "不授权",
    "无",
    "撤回",
    "已撤回",
    "×",
    "✗",
    "off",
)
_BOOL_MAP: dict[str, bool] = {**dict.fromkeys(_TRUE, True), **dict.fromkeys(_FALSE, False)}

_EMAIL_RE = (
    r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}$"
)

_DATE_PART = r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"
_TIME_PART = r"(\d{1,2})\s*[:：时]\s*(\d{1,2})(?:\s*[:：分]\s*(\d{1,2})(?:\.(\d{1,9}))?)?\s*秒?"
_OFFSET_PART = r"(Z|z|[+-]\d{2}:?\d{2})"
_DATE_RE = rf"^{_DATE_PART}(?:(?:\s+|T){_TIME_PART}\s*{_OFFSET_PART}?)?$"
_DATETIME_RE = rf"^{_DATE_PART}(?:(?:\s+|T){_TIME_PART})?\s*{_OFFSET_PART}?$"
_COMPACT_DATE_RE = r"^(\d{4})(\d{2})(\d{2})$"
# ISO 8601 with a plausible offset, as the fast path reads it (anything else: the regex path)
_ISO_ZONED_RE = (
    r"^\d{4}-\d{2}-\d{2}T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?"
    r"(?:[Zz]|[+-](?:0\d|1[0-4]):[0-5]\d)$"
)
_SERIAL_RE = r"^\d{1,7}(?:\.\d+)?$"
EXCEL_SERIAL_MAX = 2_958_465  # 9999-12-31
_TIME_RE = r"^(\d{1,2})\s*[:：时点]\s*(\d{1,2})(?:\s*[:：分]\s*(\d{1,2}))?(?:\.\d+)?\s*秒?$"
_TIME_COMPACT_RE = r"^(\d{2})(\d{2})(\d{2})?$"

_MONEY_NOISE = r"[\s,，_'¥￥$]|元|人民币|RMB|rmb|CNY|cny"
_MONEY_RE = r"^([+-]?)(\d{1,15})(?:\.(\d*))?$"
_INT_UNITS = r"(?i)(?:km|公里|千米|kms|次|年|分)$"
_INT_RE = r"^([+-]?\d{1,18})(?:\.0*)?$"
_TAG_SEPARATORS = r"[,，、;；|｜\n\r\t]"
_STRING = pl.String


# --------------------------------------------------------------------------------------------
# scalar helpers


def _clean_scalar(raw: str) -> str:
    return raw.strip(WHITESPACE).translate(_FULLWIDTH_TABLE).strip(WHITESPACE)


def normalise_mobile(raw: str) -> str:
    """E.164 form (``+8613800138000``) of a mobile number; raises :class:`InvalidValue`.

    Accepts separators (spaces, dashes, dots, brackets), ``+86``/``0086``/``86`` prefixes on
    Chinese numbers, Excel floats (``13800138000.0``) and international ``+<cc>``/``00<cc>``
    numbers. ``phonenumbers`` decides validity: the number must be a valid mobile (or
    fixed-line-or-mobile) number.
    """
    text = _clean_scalar(raw)
    candidate = _mobile_candidate(text)
    if candidate:
        result = _phonenumbers_e164(candidate)
        if result is not None:
            return result
    raise InvalidValue(f"手机号格式错误: {text}")


def _mobile_candidate(text: str) -> str:
    m = re.match(_EXCEL_INT_FLOAT, text)
    if m:
        text = m.group(1)
    text = re.sub(_MOBILE_SEPARATORS, "", text)
    m = re.match(_CN_PREFIX, text)
    return m.group(1) if m else text


def _phonenumbers_e164(candidate: str) -> str | None:
    """E.164 of a cleaned candidate if phonenumbers calls it a valid mobile, else None."""
    if not candidate or not re.fullmatch(r"\+?\d{5,17}", candidate):
        return None
    if candidate.startswith("00"):
        candidate = "+" + candidate[2:]
    try:
        number = phonenumbers.parse(candidate, None if candidate.startswith("+") else "CN")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    if phonenumbers.number_type(number) not in _MOBILE_TYPES:
        return None
    e164: str = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    return e164


def vin_check_digit(vin: str) -> str:
    """ISO 3779 / North-American check digit (position 9) of a 17-character VIN."""
    vin = vin.upper()
    if len(vin) != 17:
        raise InvalidValue(f"车架号长度错误: {vin} (应为17位)")
    try:
        total = sum(VIN_TRANSLITERATION[c] * w for c, w in zip(vin, VIN_WEIGHTS, strict=True))
    except KeyError:
        raise InvalidValue(f"车架号含非法字符: {vin} (不允许 I/O/Q)") from None
    rem = total % 11
    return "X" if rem == 10 else str(rem)


def validate_vin(raw: str, label: str = "车架号") -> tuple[str, bool]:
    """(normalised VIN, check digit ok); raises :class:`InvalidValue` on length/characters."""
    shown = _clean_scalar(raw)
    vin = re.sub(_SPACE_DASH, "", shown).upper()
    if len(vin) != 17:
        raise InvalidValue(f"{label}长度错误: {shown} (应为17位)")
    if not _VIN_PY.match(vin):
        raise InvalidValue(f"{label}含非法字符: {shown} (不允许 I/O/Q)")
    return vin, vin_check_digit(vin) == vin[8]


# --------------------------------------------------------------------------------------------
# vectorised parsing


def parse_field(raw: pl.Series, spec: FieldSpec, tz: ZoneInfo) -> Parsed:
    """Parse one raw column according to ``spec``; see the module docstring."""
    name = raw.name
    s = raw if raw.dtype == pl.String else raw.cast(pl.String)
    stripped = s.str.strip_chars()
    empty = stripped.is_null() | (stripped.str.len_bytes() == 0)
    stripped = pl.select(pl.when(~empty).then(stripped)).to_series()
    check_ok: pl.Series | None = None

    values, errors, extra = _parse_deduplicated(stripped, spec, tz)
    if spec.type == FieldType.VIN:
        check_ok = extra
    if spec.required:
        errors = pl.select(
            pl.when(empty).then(pl.lit(f"{spec.label}不能为空")).otherwise(errors)
        ).to_series()
    return Parsed(
        values.alias(name),
        errors.alias(name).cast(pl.String),
        None if check_ok is None else check_ok.alias(name),
    )


_Result = tuple[pl.Series, pl.Series, "pl.Series | None"]
_Parser = Callable[[pl.Series, FieldSpec, ZoneInfo], _Result]
_DEDUPE_MIN_ROWS = 4096


def _parse_deduplicated(s: pl.Series, spec: FieldSpec, tz: ZoneInfo) -> _Result:
    """Run the type's parser once per distinct value when values repeat a lot."""
    parser = _PARSERS[spec.type]
    if spec.type in (FieldType.TEXT, FieldType.CODE) or len(s) < _DEDUPE_MIN_ROWS:
        return parser(s, spec, tz)
    uniques = s.unique()
    if len(uniques) * 2 > len(s):
        return parser(s, spec, tz)
    values, errors, extra = parser(uniques, spec, tz)
    table = pl.DataFrame({"k": uniques, "v": values, "e": errors})
    if extra is not None:
        table = table.with_columns(x=extra)
    joined = pl.DataFrame({"k": s}).join(
        table, on="k", how="left", nulls_equal=True, maintain_order="left"
    )
    return (
        joined.get_column("v"),
        joined.get_column("e"),
        joined.get_column("x") if extra is not None else None,
    )


def _ascii(s: pl.Series) -> pl.Series:
    """Full-width ASCII (１２３４, ＡＢＣ, ideographic space) to half-width."""
    if not s.str.contains(_FULLWIDTH_RE).any():
        return s
    return s.str.replace_many(_FULLWIDTH_FROM, _FULLWIDTH_TO).str.strip_chars()


def _fmt_error(s: pl.Series, bad: pl.Series, template: str) -> pl.Series:
    """``template`` with ``{}`` replaced by the cell text where ``bad`` is true, else null."""
    before, _, after = template.partition("{}")
    return (
        pl.select(pl.when(bad).then(pl.concat_str(pl.lit(before), s, pl.lit(after))))
        .to_series()
        .cast(pl.String)
    )


def _bad(s: pl.Series, ok: pl.Series) -> pl.Series:
    return s.is_not_null() & ~ok.fill_null(False)


def _parse_text(s: pl.Series, spec: FieldSpec, tz: ZoneInfo) -> _Result:
    return s, pl.Series([None] * len(s), dtype=pl.String), None


def _parse_code(s: pl.Series, spec: FieldSpec, tz: ZoneInfo) -> _Result:
    v = _ascii(s).str.replace_all(r"\s+", "").str.to_uppercase()
    v = pl.select(pl.when(v.str.len_bytes() > 0).then(v)).to_series()
    return v, pl.Series([None] * len(s), dtype=pl.String), None


def _parse_mobile(s: pl.Series, spec: FieldSpec, tz: ZoneInfo) -> _Result:
    clean = _ascii(s)
    cand = (
        clean.str.replace(_EXCEL_INT_FLOAT, "${1}")
        .str.replace_all(_MOBILE_SEPARATORS, "")
        .str.replace(_CN_PREFIX, "${1}")
    )
    fast = (cand.str.contains(CN_MOBILE_RE) & cand.str.contains("^[0-9]+$")).fill_null(False)
    values = pl.select(pl.when(fast).then(pl.concat_str(pl.lit("+86"), cand))).to_series()
    slow = cand.is_not_null() & ~fast
    if slow.any():
        uniques = cand.filter(slow).unique()
        mapping = {u: _phonenumbers_e164(u) for u in uniques.to_list()}
        looked_up = cand.replace_strict(mapping, default=None, return_dtype=pl.String)
        values = pl.select(pl.when(slow).then(looked_up).otherwise(values)).to_series()
    errors = _fmt_error(s, _bad(s, values.is_not_null()), f"{spec.label}格式错误: {{}}")
    return values, errors, None


def _parse_email(s: pl.Series, spec: FieldSpec, tz: ZoneInfo) -> _Result:
    v = _ascii(s).str.to_lowercase()
    ok = v.str.contains(_EMAIL_RE) & (v.str.len_bytes() <= 254)
    values = pl.select(pl.when(ok).then(v)).to_series()
    return values, _fmt_error(s, _bad(s, ok), f"{spec.label}格式错误: {{}}"), None


def vin_check_ok(vins: pl.Series) -> pl.Series:
    """Vectorised ISO 3779 check: True/False per well-formed VIN, null otherwise."""
    well_formed = vins.str.contains(_VIN_RE).fill_null(False)
    good = vins.filter(well_formed)
    out = pl.Series(vins.name, [None] * len(vins), dtype=pl.Boolean)
    if len(good) == 0:
        return out
    # all well-formed VINs are 17 ASCII bytes: view them as an (n, 17) byte matrix
    buf = good.str.join("").item().encode("ascii")
    codes = np.frombuffer(buf, dtype=np.uint8).reshape(-1, 17)
    rem = (_VIN_LUT[codes] @ _VIN_WEIGHTS_NP) % 11
    expected = np.where(rem == 10, ord("X"), rem + ord("0"))
    ok = pl.Series(vins.name, expected == codes[:, 8], dtype=pl.Boolean)
    return out.scatter(well_formed.arg_true(), ok)


def _parse_vin(s: pl.Series, spec: FieldSpec, tz: ZoneInfo) -> _Result:
    shown = _ascii(s)  # errors show the value as the scalar path does (half-width)
    v = shown.str.replace_all(_SPACE_DASH, "").str.to_uppercase()
    length_ok = v.str.len_chars() == 17
    chars_ok = v.str.contains(_VIN_RE)
    ok = (length_ok & chars_ok).fill_null(False)
    values = pl.select(pl.when(ok).then(v)).to_series()
    errors = pl.select(
        pl.when(s.is_not_null() & ~length_ok)
        .then(pl.concat_str(pl.lit(f"{spec.label}长度错误: "), shown, pl.lit(" (应为17位)")))
        .when(s.is_not_null() & ~chars_ok)
        .then(pl.concat_str(pl.lit(f"{spec.label}含非法字符: "), shown, pl.lit(" (不允许 I/O/Q)")))
    ).to_series()
    return values, errors, vin_check_ok(values)


# ---- dates and times


def _excel_serial(clean: pl.Series) -> pl.Series:
    """Float days of plausible Excel serial numbers, null elsewhere.

    Whole numbers from 1900 to 2100 are rejected: they are far more likely a bare year.
    """
    is_serial = clean.str.contains(_SERIAL_RE).fill_null(False)
    num = pl.select(pl.when(is_serial).then(clean.cast(pl.Float64, strict=False))).to_series()
    looks_like_year = clean.str.contains(r"^(?:19\d\d|20\d\d|2100)$").fill_null(False)
    ok = (num >= 1) & (num <= EXCEL_SERIAL_MAX) & ~looks_like_year
    return pl.select(pl.when(ok).then(num)).to_series()


def _serial_to_datetime(days: pl.Series) -> pl.Series:
    """Excel serial (1900 date system) to naive datetime; serials below 61 skip the leap bug."""
    whole = days.floor()
    epoch = pl.select(
        pl.when(whole < 61).then(pl.lit(-25568)).otherwise(pl.lit(-25569))
    ).to_series()  # days from 1970-01-01 to 1899-12-31 / 1899-12-30
    micros = ((days + epoch) * 86_400_000_000).round(0).cast(pl.Int64)
    return micros.cast(pl.Datetime("us"))


def _ymd(y: pl.Expr, m: pl.Expr, d: pl.Expr) -> pl.Expr:
    return pl.concat_str(y, pl.lit("-"), m.str.zfill(2), pl.lit("-"), d.str.zfill(2)).str.to_date(
        "%Y-%m-%d", strict=False
    )


def _with_fast_path(
    s: pl.Series, fast: pl.Series, slow: Callable[[pl.Series], pl.Series]
) -> pl.Series:
    """``fast`` where it parsed, else ``slow`` applied only to the remaining rows."""
    todo = fast.is_null() & s.is_not_null()
    if not todo.any():
        return fast
    rest = slow(s.filter(todo))
    out = fast.scatter(todo.arg_true(), rest) if len(rest) else fast
    return out


def _parse_date(s: pl.Series, spec: FieldSpec, tz: ZoneInfo) -> _Result:
    iso = s.str.contains(r"^\d{4}-\d{1,2}-\d{1,2}$").fill_null(False)
    fast = pl.select(pl.when(iso).then(s.str.to_date("%Y-%m-%d", strict=False))).to_series()
    values = _with_fast_path(s, fast, _parse_date_slow)
    errors = _fmt_error(s, _bad(s, values.is_not_null()), f"{spec.label}格式错误: {{}}")
    return values, errors, None


def _parse_date_slow(s: pl.Series) -> pl.Series:
    clean = _ascii(s)
    df = pl.DataFrame({"c": clean})
    full = pl.col("c").str.extract_groups(_DATE_RE)
    compact = pl.col("c").str.extract_groups(_COMPACT_DATE_RE)
    df = df.with_columns(full.alias("f"), compact.alias("k"))
    parsed = df.select(
        pl.coalesce(
            _ymd(pl.col("f").struct[0], pl.col("f").struct[1], pl.col("f").struct[2]),
            _ymd(pl.col("k").struct[0], pl.col("k").struct[1], pl.col("k").struct[2]),
        )
    ).to_series()
    serial = _serial_to_datetime(_excel_serial(clean)).dt.date()
    return pl.select(pl.coalesce(parsed, serial)).to_series()


def _hms(h: pl.Expr, m: pl.Expr, sec: pl.Expr, frac: pl.Expr | None = None) -> pl.Expr:
    parts = [
        h.str.zfill(2),
        pl.lit(":"),
        m.str.zfill(2),
        pl.lit(":"),
        sec.fill_null("0").str.zfill(2),
    ]
    if frac is not None:
        parts += [pl.lit("."), frac.fill_null("0").str.slice(0, 6).str.pad_end(6, "0")]
    return pl.concat_str(parts)


def _parse_datetime(s: pl.Series, spec: FieldSpec, tz: ZoneInfo) -> _Result:
    # Two fast paths: "YYYY-MM-DD HH:MM:SS" in business time, and ISO 8601 with an offset
    # (what apps and APIs send); everything else, and an ISO time the fast path could not
    # read, goes the regex path.
    canonical = s.str.contains(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$").fill_null(False)
    fast = pl.select(
        pl.when(canonical).then(
            s.str.to_datetime("%Y-%m-%d %H:%M:%S", strict=False, time_unit="us")
        )
    ).to_series()
    values = _localise(fast, tz)
    if canonical.all():
        return values, _datetime_errors(s, values, spec), None
    zoned = s.str.contains(_ISO_ZONED_RE).fill_null(False)
    if zoned.any():
        iso = s.str.replace(r"[Zz]$", "+00:00").str.to_datetime(
            "%Y-%m-%dT%H:%M:%S%.f%:z", strict=False, time_unit="us", time_zone="UTC"
        )
        values = pl.select(pl.when(zoned).then(iso).otherwise(values)).to_series()
    rest = ~canonical & s.is_not_null() & values.is_null()
    if rest.any():
        values = values.scatter(rest.arg_true(), _parse_datetime_slow(s.filter(rest), tz))
    return values, _datetime_errors(s, values, spec), None


def _datetime_errors(s: pl.Series, values: pl.Series, spec: FieldSpec) -> pl.Series:
    return _fmt_error(s, _bad(s, values.is_not_null()), f"{spec.label}格式错误: {{}}")


def _localise(naive: pl.Series, tz: ZoneInfo) -> pl.Series:
    """Naive business-time datetimes to UTC (ambiguous -> earliest, non-existent -> null)."""
    return naive.dt.replace_time_zone(
        str(tz.key), ambiguous="earliest", non_existent="null"
    ).dt.convert_time_zone("UTC")


def _parse_datetime_slow(s: pl.Series, tz: ZoneInfo) -> pl.Series:
    clean = _ascii(s)
    g = pl.col("g")
    df = pl.DataFrame({"c": clean}).with_columns(
        g=pl.col("c").str.extract_groups(_DATETIME_RE),
        k=pl.col("c").str.extract_groups(_COMPACT_DATE_RE),
    )
    date_s = pl.concat_str(
        g.struct[0], pl.lit("-"), g.struct[1].str.zfill(2), pl.lit("-"), g.struct[2].str.zfill(2)
    )
    time_s = (
        pl.when(g.struct[3].is_not_null())
        .then(_hms(g.struct[3], g.struct[4], g.struct[5], g.struct[6]))
        .otherwise(pl.lit("00:00:00.000000"))
    )
    compact_s = pl.concat_str(
        pl.col("k").struct[0],
        pl.lit("-"),
        pl.col("k").struct[1],
        pl.lit("-"),
        pl.col("k").struct[2],
        pl.lit(" 00:00:00.000000"),
    )
    out = df.select(
        naive=pl.coalesce(pl.concat_str(date_s, pl.lit(" "), time_s), compact_s).str.to_datetime(
            "%Y-%m-%d %H:%M:%S%.f", strict=False, time_unit="us"
        ),
        offset=g.struct[7],
    )
    naive = out.get_column("naive")
    offset = out.get_column("offset")
    serial = _serial_to_datetime(_excel_serial(clean))
    naive = pl.select(pl.coalesce(naive, serial)).to_series()
    # offset in minutes: "Z" -> 0, "+08:00"/"+0800" -> 480
    off_digits = offset.str.replace_all(":", "")
    sign = pl.select(pl.when(off_digits.str.starts_with("-")).then(-1).otherwise(1)).to_series()
    off_min = pl.select(
        pl.when(offset.str.to_uppercase() == "Z")
        .then(pl.lit(0, dtype=pl.Int64))
        .otherwise(
            sign
            * (
                off_digits.str.slice(1, 2).cast(pl.Int64, strict=False) * 60
                + off_digits.str.slice(3, 2).cast(pl.Int64, strict=False)
            )
        )
    ).to_series()
    has_offset = offset.is_not_null()
    shift = pl.select(pl.duration(minutes=pl.lit(off_min.fill_null(0)))).to_series()
    utc_from_offset = (naive - shift).dt.replace_time_zone("UTC")
    local = _localise(naive, tz)
    values = pl.select(pl.when(has_offset).then(utc_from_offset).otherwise(local)).to_series()
    return values.cast(pl.Datetime("us", "UTC"))


def _parse_time(s: pl.Series, spec: FieldSpec, tz: ZoneInfo) -> _Result:
    clean = _ascii(s)
    df = pl.DataFrame({"c": clean}).with_columns(
        a=pl.col("c").str.extract_groups(_TIME_RE),
        b=pl.col("c").str.extract_groups(_TIME_COMPACT_RE),
    )
    a, b = pl.col("a"), pl.col("b")
    values = df.select(
        pl.coalesce(
            _hms(a.struct[0], a.struct[1], a.struct[2]),
            _hms(b.struct[0], b.struct[1], b.struct[2]),
        ).str.to_time("%H:%M:%S", strict=False)
    ).to_series()
    errors = _fmt_error(s, _bad(s, values.is_not_null()), f"{spec.label}格式错误: {{}}")
    return values, errors, None


# ---- numbers


def _range_errors(
    s: pl.Series, value: pl.Series, spec: FieldSpec, scale: int, base: pl.Series
) -> pl.Series:
    low = spec.min_value * scale if spec.min_value is not None else None
    high = spec.max_value * scale if spec.max_value is not None else None
    too_low = value < low if low is not None else pl.Series([False] * len(value))
    too_high = value > high if high is not None else pl.Series([False] * len(value))
    negative_msg = (
        f"{spec.label}不能为负数: "
        if spec.min_value == 0 and scale == 100
        else f"{spec.label}超出范围: "
    )
    return pl.select(
        pl.when(too_low.fill_null(False))
        .then(pl.concat_str(pl.lit(negative_msg), s))
        .when(too_high.fill_null(False))
        .then(pl.concat_str(pl.lit(f"{spec.label}超出范围: "), s))
        .otherwise(base)
    ).to_series()


def _parse_money(s: pl.Series, spec: FieldSpec, tz: ZoneInfo) -> _Result:
    clean = _ascii(s).str.replace_all(_MONEY_NOISE, "")
    df = pl.DataFrame({"c": clean}).with_columns(g=pl.col("c").str.extract_groups(_MONEY_RE))
    g = pl.col("g")
    frac = g.struct[2].fill_null("")
    frac_ok = frac.str.slice(2).str.contains(r"^0*$")  # digits beyond fen must be zeros
    fen = g.struct[1].cast(pl.Int64, strict=False) * 100 + frac.str.slice(0, 2).str.pad_end(
        2, "0"
    ).cast(pl.Int64, strict=False)
    signed = pl.when(g.struct[0] == "-").then(-fen).otherwise(fen)
    out = df.select(
        fen=pl.when(frac_ok).then(signed),
        decimals=g.struct[1].is_not_null() & ~frac_ok,
    )
    fen_s = out.get_column("fen")
    too_precise = out.get_column("decimals")
    base = pl.select(
        pl.when(too_precise)
        .then(pl.concat_str(pl.lit(f"{spec.label}格式错误: "), s, pl.lit(" (最多两位小数)")))
        .when(_bad(s, fen_s.is_not_null()))
        .then(pl.concat_str(pl.lit(f"{spec.label}格式错误: "), s))
    ).to_series()
    errors = _range_errors(s, fen_s, spec, 100, base)
    values = pl.select(pl.when(errors.is_null()).then(fen_s)).to_series().cast(pl.Int64)
    return values, errors, None


def _parse_int(s: pl.Series, spec: FieldSpec, tz: ZoneInfo) -> _Result:
    clean = _ascii(s).str.replace_all(r"[\s,，_']", "").str.replace(_INT_UNITS, "")
    num = clean.str.extract(_INT_RE, 1).cast(pl.Int64, strict=False)
    base = _fmt_error(s, _bad(s, num.is_not_null()), f"{spec.label}格式错误: {{}}")
    errors = _range_errors(s, num, spec, 1, base)
    values = pl.select(pl.when(errors.is_null()).then(num)).to_series().cast(pl.Int64)
    return values, errors, None


# ---- categorical and structured


def _norm_key(s: pl.Series) -> pl.Series:
    return _ascii(s).str.to_lowercase().str.replace_all(_SPACE_DASH_UNDERSCORE, "")


def _norm_key_py(s: str) -> str:
    return re.sub(_SPACE_DASH_UNDERSCORE, "", s.translate(_FULLWIDTH_TABLE).lower())


def _parse_bool(s: pl.Series, spec: FieldSpec, tz: ZoneInfo) -> _Result:
    values = _norm_key(s).replace_strict(
        {_norm_key_py(k): v for k, v in _BOOL_MAP.items()}, default=None, return_dtype=pl.Boolean
    )
    errors = _fmt_error(
        s, _bad(s, values.is_not_null()), f"{spec.label}格式错误: {{}} (应为 是/否)"
    )
    return values, errors, None


def enum_lookup(spec: FieldSpec) -> dict[str, str]:
    """Normalised spelling -> canonical key for an ENUM field."""
    table: dict[str, str] = {}
    for key, spellings in spec.choices.items():
        for spelling in (key, *spellings):
            table.setdefault(_norm_key_py(spelling), key)
    return table


def _enum_hint(spec: FieldSpec, limit: int = 8) -> str:
    names = [spellings[0] if spellings else key for key, spellings in spec.choices.items()]
    hint = "/".join(names[:limit])
    return hint + ("/…" if len(names) > limit else "")


def _parse_enum(s: pl.Series, spec: FieldSpec, tz: ZoneInfo) -> _Result:
    values = _norm_key(s).replace_strict(enum_lookup(spec), default=None, return_dtype=pl.String)
    errors = _fmt_error(
        s, _bad(s, values.is_not_null()), f"{spec.label}格式错误: {{}} (可选: {_enum_hint(spec)})"
    )
    return values, errors, None


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _per_unique(s: pl.Series, fn: Callable[[str], bool]) -> pl.Series:
    uniques: Iterable[str] = s.drop_nulls().unique().to_list()
    mapping = {u: fn(u) for u in uniques}
    return s.replace_strict(mapping, default=None, return_dtype=pl.Boolean)


def _parse_json(s: pl.Series, spec: FieldSpec, tz: ZoneInfo) -> _Result:
    ok = _per_unique(s, _is_json)
    values = pl.select(pl.when(ok.fill_null(False)).then(s)).to_series()
    return values, _fmt_error(s, _bad(s, ok), f"{spec.label}格式错误: {{}}"), None


def _parse_tags(s: pl.Series, spec: FieldSpec, tz: ZoneInfo) -> _Result:
    items = (
        pl.col("s")
        .str.replace_all(_TAG_SEPARATORS, ",")
        .str.split(",")
        .list.eval(
            pl.element()
            .str.strip_chars()
            .filter(pl.element().str.strip_chars().str.len_bytes() > 0)
            .str.replace_all("\\", "\\\\", literal=True)
            .str.replace_all('"', '\\"', literal=True)
            .str.replace_all(r"[\x00-\x1f]", "")
        )
        .list.unique(maintain_order=True)
    )
    values = (
        pl.DataFrame({"s": s})
        .select(
            pl.when(items.list.len() > 0).then(
                pl.concat_str(pl.lit('["'), items.list.join('","'), pl.lit('"]'))
            )
        )
        .to_series()
    )
    return values, pl.Series([None] * len(s), dtype=pl.String), None


_PARSERS: dict[FieldType, _Parser] = {
    FieldType.TEXT: _parse_text,
    FieldType.CODE: _parse_code,
    FieldType.MOBILE: _parse_mobile,
    FieldType.EMAIL: _parse_email,
    FieldType.VIN: _parse_vin,
    FieldType.DATE: _parse_date,
    FieldType.DATETIME: _parse_datetime,
    FieldType.TIME: _parse_time,
    FieldType.MONEY: _parse_money,
    FieldType.INT: _parse_int,
    FieldType.BOOL: _parse_bool,
    FieldType.ENUM: _parse_enum,
    FieldType.JSON: _parse_json,
    FieldType.TAGS: _parse_tags,
}

__all__ = [
    "CN_MOBILE_RE",
    "WHITESPACE",
    "InvalidValue",
    "Parsed",
    "enum_lookup",
    "normalise_mobile",
    "parse_field",
    "validate_vin",
    "vin_check_digit",
    "vin_check_ok",
]
