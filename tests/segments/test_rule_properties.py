"""Property tests: random well-formed rule trees parse, compile, run in DuckDB and mean what
the reference says.

Each example is written as JSON (a YAML subset) so the parser is exercised too. The SQL result
is compared with a small Python evaluator of the documented semantics (NULL tests are false,
``not`` is two-valued, record windows are (as_of - N, as_of], everything stops at as_of), and a
rule and its ``not`` must partition the customers.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import duckdb
import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from baoke.profiles.schema import PROFILE_COLUMNS, RECORD_TABLES, Column, Kind
from baoke.segments import (
    AllOf,
    AnyOf,
    Condition,
    Field,
    Not,
    Offset,
    compile_condition,
    parse_rules,
)

AS_OF = dt.date(2024, 6, 30)
Data = tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]

# ---------------------------------------------------------------------------------------------
# Strategies: JSON-able rule trees
# ---------------------------------------------------------------------------------------------

TEXT_POOL = [
    "远峰",
    "灵犀EV",
    "穹岳",
    "杭州",
    "杭州市",
    "VIP",
    "高里程",
    "model_view",
    "app",
    "web",
]
texts = st.one_of(
    st.sampled_from(TEXT_POOL),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=6),
)
UNITS = {"d": 400, "w": 60, "m": 30, "y": 6}


@st.composite
def offsets(draw: st.DrawFn, signed: bool = True) -> str:
    unit = draw(st.sampled_from(sorted(UNITS)))
    low = -UNITS[unit] if signed else 0
    n = draw(st.integers(low, UNITS[unit]))
    if n == 0 and draw(st.booleans()):
        return "today"
    return f"{n:+d}{unit}" if signed else f"{n}{unit}"


def money(fen: int) -> st.SearchStrategy[Any]:
    """The ways to write an amount of ``fen`` in yuan."""
    forms: list[Any] = [f"¥{fen / 100:,.2f}", f"{fen / 100:.2f}元"]
    if fen % 100 == 0:
        forms += [fen // 100, f"{fen // 100}元"]
    return st.sampled_from(forms)


def scalars(column: Column) -> st.SearchStrategy[Any]:
    kind = column.kind
    if kind in (Kind.INT, Kind.FLOAT):
        return st.one_of(
            st.integers(-5, 200_000),
            st.integers(-20, 400).map(lambda n: n / 4),  # exact in binary and in decimal
        )
    if kind is Kind.MONEY:
        return st.integers(0, 1_000_000).flatmap(money)
    if kind in (Kind.DATE, Kind.TIMESTAMP):
        return st.one_of(
            st.dates(dt.date(2015, 1, 1), dt.date(2026, 12, 31)).map(dt.date.isoformat),
            offsets(),
        )
    if kind is Kind.BOOL:
        return st.booleans()
    if column.choices:
        return st.sampled_from(column.choices)
    return texts


def _is_iso(v: Any) -> bool:
    return isinstance(v, str) and len(v) == 10 and v[4] == "-"


def _unit(v: Any) -> str:
    return v[-1] if isinstance(v, str) and v[:1] in "+-" and v[-1:] in UNITS else ""


def _order_key(v: str) -> Any:
    return v if _is_iso(v) else int(v[:-1])


@st.composite
def predicate(draw: st.DrawFn, column: Column) -> dict[str, Any]:
    """{operator: value} for a column (the body of a field condition or a where entry)."""
    from baoke.segments.rules import _allowed_ops

    op = draw(st.sampled_from(_allowed_ops(column)))
    if op == "is_null":
        return {op: draw(st.booleans())}
    if op in ("in", "not_in"):
        return {op: draw(st.lists(scalars(column), min_size=1, max_size=3))}
    if op == "between":
        a, b = draw(scalars(column)), draw(scalars(column))
        if column.kind in (Kind.INT, Kind.FLOAT):
            a, b = sorted((a, b))
        elif column.kind is Kind.MONEY:
            lo, hi = sorted(draw(st.lists(st.integers(0, 1_000_000), min_size=2, max_size=2)))
            a, b = draw(money(lo)), draw(money(hi))
        elif (_is_iso(a) and _is_iso(b)) or _unit(a) == _unit(b) != "":
            # The parser rejects bounds it can see are reversed; relative ones of different
            # units are left alone (and may well match nothing).
            a, b = sorted((a, b), key=_order_key)
        return {op: [a, b]}
    if op in ("within_last", "within_next"):
        return {op: draw(offsets(signed=False))}
    if op == "contains":
        return {op: draw(texts)}
    return {op: draw(scalars(column))}


@st.composite
def field_conditions(draw: st.DrawFn) -> dict[str, Any]:
    column = draw(st.sampled_from(PROFILE_COLUMNS))
    return {"field": column.name, **draw(predicate(column))}


@st.composite
def count_conditions(draw: st.DrawFn) -> dict[str, Any]:
    table = draw(st.sampled_from(sorted(RECORD_TABLES)))
    columns = RECORD_TABLES[table][1]
    spec: dict[str, Any] = {"table": table}
    chosen = draw(st.lists(st.sampled_from(columns), max_size=2, unique_by=lambda c: c.name))
    if chosen:
        spec["where"] = {c.name: draw(predicate(c)) for c in chosen}
    if draw(st.booleans()):
        spec["within_last"] = draw(offsets(signed=False))
    if draw(st.booleans()):
        return {"exists": spec}
    op = draw(st.sampled_from(["=", "!=", ">", ">=", "<", "<=", "between"]))
    value: Any = draw(st.integers(0, 4))
    if op == "between":
        value = sorted((value, draw(st.integers(0, 4))))
    return {"count": spec, op: value}


rules = st.recursive(
    st.one_of(field_conditions(), count_conditions()),
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda xs: {"all": xs}),
        st.lists(children, min_size=1, max_size=3).map(lambda xs: {"any": xs}),
        children.map(lambda x: {"not": x}),
    ),
    max_leaves=6,
)

# ---------------------------------------------------------------------------------------------
# The reference semantics, in Python
# ---------------------------------------------------------------------------------------------


def shift(day: dt.date, offset: Offset) -> dt.date:
    """as_of + offset; months clamp to the month's last day (as DuckDB and Spark do)."""
    if offset.unit in ("d", "w"):
        return day + dt.timedelta(days=offset.amount * (7 if offset.unit == "w" else 1))
    months = offset.amount * (12 if offset.unit == "y" else 1)
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return dt.date(year, month + 1, min(day.day, last))


def resolve(value: Any) -> Any:
    return shift(AS_OF, value) if isinstance(value, Offset) else value


def passes(cond: Field, raw: Any) -> bool:
    """Whether one value passes a field test; a NULL passes only ``is_null: true``."""
    if cond.op == "is_null":
        return (raw is None) == cond.value
    if raw is None:
        return False
    if isinstance(raw, dt.datetime):
        raw = raw.date()  # timestamps count on their calendar day
    op, value = cond.op, cond.value
    if op == "contains":
        return value in raw
    if op in ("in", "not_in"):
        assert isinstance(value, tuple)
        found = any(raw == resolve(v) for v in value)
        return found if op == "in" else not found
    if op == "between":
        assert isinstance(value, tuple)
        return bool(resolve(value[0]) <= raw <= resolve(value[1]))
    if op == "within_last":
        assert isinstance(value, Offset)
        return bool(shift(AS_OF, Offset(-value.amount, value.unit)) <= raw <= AS_OF)
    if op == "within_next":
        assert isinstance(value, Offset)
        return bool(AS_OF <= raw <= shift(AS_OF, value))
    target = resolve(value)
    checks: dict[str, Callable[[Any, Any], bool]] = {
        "=": lambda a, b: bool(a == b),
        "!=": lambda a, b: bool(a != b),
        ">": lambda a, b: bool(a > b),
        ">=": lambda a, b: bool(a >= b),
        "<": lambda a, b: bool(a < b),
        "<=": lambda a, b: bool(a <= b),
        "before": lambda a, b: bool(a < b),
        "after": lambda a, b: bool(a > b),
    }
    return checks[op](raw, target)


def compare(op: str, n: int, value: int | tuple[int, int]) -> bool:
    if op == "between":
        assert isinstance(value, tuple)
        return value[0] <= n <= value[1]
    assert isinstance(value, int)
    return passes(Field("n", Kind.INT, op, value), n)


def evaluate(
    cond: Condition, row: dict[str, Any], records: dict[str, list[dict[str, Any]]]
) -> bool:
    if isinstance(cond, AllOf):
        return all(evaluate(c, row, records) for c in cond.items)
    if isinstance(cond, AnyOf):
        return any(evaluate(c, row, records) for c in cond.items)
    if isinstance(cond, Not):
        return not evaluate(cond.item, row, records)
    if isinstance(cond, Field):
        return passes(cond, row.get(cond.column))
    time_column = RECORD_TABLES[cond.table][0]
    n = 0
    for rec in records.get(cond.table, []):
        if rec["customer_id"] != row["customer_id"]:
            continue
        when = rec[time_column]
        day = when.date() if isinstance(when, dt.datetime) else when
        if day > AS_OF:
            continue
        if cond.within is not None:
            start = shift(AS_OF, Offset(-cond.within.amount, cond.within.unit))
            if day <= start:
                continue
        if all(passes(w, rec.get(w.column)) for w in cond.where):
            n += 1
    return compare(cond.op, n, cond.value)


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------


def ids(con: duckdb.DuckDBPyConnection, where: str) -> frozenset[int]:
    return frozenset(
        r[0] for r in con.execute(f"SELECT customer_id FROM profiles p WHERE {where}").fetchall()
    )


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(tree=rules)
def test_random_rules_match_the_reference_semantics(
    db: duckdb.DuckDBPyConnection, fixture_data: Data, tree: dict[str, Any]
) -> None:
    customers, records = fixture_data
    doc = json.dumps({"name": "r", "label": "随机", "rule": tree})
    [seg] = parse_rules(doc)
    everyone = frozenset(c["customer_id"] for c in customers)

    fixed = ids(db, compile_condition(seg.rule, as_of=AS_OF.isoformat()))
    floating = ids(db, compile_condition(seg.rule))
    negated = ids(db, compile_condition(Not(seg.rule)))
    rows = [{**c, "as_of": AS_OF} for c in customers]
    expected = frozenset(r["customer_id"] for r in rows if evaluate(seg.rule, r, records))

    assert fixed == floating == expected
    assert fixed | negated == everyone and not fixed & negated
    for as_of in (None, AS_OF.isoformat()):
        sqlglot.parse_one(compile_condition(seg.rule, "spark", as_of), read="spark")


@pytest.mark.parametrize("offset", [Offset(-1, "m"), Offset(1, "y"), Offset(-13, "m")])
def test_reference_shift_clamps(offset: Offset) -> None:
    # Self-check of the Python reference against DuckDB's own calendar arithmetic.
    con = duckdb.connect()
    for day in (dt.date(2024, 3, 31), dt.date(2024, 2, 29), dt.date(2023, 12, 31)):
        unit, n = ("MONTH", offset.amount) if offset.unit == "m" else ("YEAR", offset.amount)
        row = con.execute(f"SELECT CAST(DATE '{day}' + INTERVAL ({n}) {unit} AS DATE)").fetchone()
        assert row is not None and row[0] == shift(day, offset)
    con.close()
