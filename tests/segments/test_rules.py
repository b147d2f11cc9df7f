"""The rule language: parsing, precise errors, and SQL executed for real in DuckDB.

Fixtures (``tests/segments/conftest.py``): five hand-made customers as of 2024-06-30 with
service orders, events, complaints, leads and WeCom relations; ``members(yaml)`` runs a rule
both with a fixed as_of and with ``p.as_of`` and checks they agree.
"""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot
from tests.segments.conftest import build_db

from baoke.profiles.schema import Kind
from baoke.segments import (
    AllOf,
    AnyOf,
    Count,
    Field,
    Not,
    Offset,
    RuleError,
    builtin_segments,
    compile_condition,
    load_rule_file,
    parse_rules,
    segment_query,
)

Members = Callable[[str], frozenset[int]]


def leaf(text: str) -> Field:
    """The single field condition of a one-segment document."""
    [seg] = parse_rules(text)
    assert isinstance(seg.rule, Field)
    return seg.rule


def parse_error(text: str, path: str = "segments/x.yaml") -> RuleError:
    with pytest.raises(RuleError) as info:
        parse_rules(textwrap.dedent(text), path)
    return info.value


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


def test_brief_example_parses_to_the_expected_tree() -> None:
    text = """
        name: replacement_candidates        # a comment
        label: 增换购潜客
        description: 车龄≥5年且近30天多次浏览新车型
        kind: segment
        rule:
          all:
            - field: car_age_years
              ">=": 5
            - count:
                table: events
                where:
                  event_type: model_view
                  target: {in: [穹岳, 灵犀EV]}
                within_last: 30d
              ">=": 3
    """
    [seg] = parse_rules(textwrap.dedent(text), "segments/r.yaml")
    assert seg.name == "replacement_candidates"
    assert seg.label == "增换购潜客"
    assert seg.kind == "segment"
    assert seg.source == "segments/r.yaml"
    events = Count(
        "events",
        (
            Field("event_type", Kind.TEXT, "=", "model_view"),
            Field("target", Kind.TEXT, "in", ("穹岳", "灵犀EV")),
        ),
        Offset(30, "d"),
        ">=",
        3,
    )
    assert seg.rule == AllOf((Field("car_age_years", Kind.FLOAT, ">=", 5), events))


def test_json_is_accepted() -> None:
    doc = {"name": "j", "label": "J", "rule": {"not": {"field": "is_owner", "=": True}}}
    [seg] = parse_rules(json.dumps(doc, ensure_ascii=False))
    assert isinstance(seg.rule, Not)


def test_several_segments_and_defaults() -> None:
    text = """
        segments:
          - {name: a, label: A, rule: {field: is_owner, eq: true}}
          - name: b
            label: B
            kind: tag
            rule: {any: [{field: age, lt: 30}, {field: age, is_null: true}]}
    """
    a, b = parse_rules(textwrap.dedent(text))
    assert (a.name, a.kind, a.description) == ("a", "segment", "")
    assert (b.name, b.kind) == ("b", "tag")
    assert isinstance(b.rule, AnyOf) and len(b.rule.items) == 2


@pytest.mark.parametrize(
    ("op_yaml", "op", "value"),
    [
        ("=: 3", "=", 3),
        ("eq: 3", "=", 3),
        ('"!=": 3', "!=", 3),
        ("ne: 3", "!=", 3),
        ('">": 3', ">", 3),
        ('">=": 3', ">=", 3),
        ("ge: 3", ">=", 3),
        ("<: 3", "<", 3),
        ("<=: 3", "<=", 3),
        ("in: [1, 2]", "in", (1, 2)),
        ("not_in: [1]", "not_in", (1,)),
        ("between: [1, 2.5]", "between", (1, 2.5)),
        ("is_null: true", "is_null", True),
        ("is_null: false", "is_null", False),
    ],
)
def test_numeric_operators(op_yaml: str, op: str, value: Any) -> None:
    cond = leaf(f"name: t\nlabel: T\nrule:\n  field: vehicle_count\n  {op_yaml}\n")
    assert (cond.column, cond.kind, cond.op, cond.value) == ("vehicle_count", Kind.INT, op, value)


@pytest.mark.parametrize(
    ("written", "fen"),
    [
        ("5000", 500_000),
        ("99.5", 9_950),
        ('"¥5,000"', 500_000),
        ('"￥5,000.25"', 500_025),
        ('"5000元"', 500_000),
        ('"1.2万"', 1_200_000),
        ('"1.2万元"', 1_200_000),
    ],
)
def test_money_in_yuan_becomes_fen(written: str, fen: int) -> None:
    assert leaf(f"name: t\nlabel: T\nrule:\n  field: spend_12m\n  '>=': {written}\n").value == fen


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("2024-01-31", dt.date(2024, 1, 31)),
        ('"2024-01-31"', dt.date(2024, 1, 31)),
        ("today", Offset(0, "d")),
        ("-30d", Offset(-30, "d")),
        ("+2w", Offset(2, "w")),
        ("-6m", Offset(-6, "m")),
        ("-1y", Offset(-1, "y")),
    ],
)
def test_date_values(written: str, value: object) -> None:
    assert (
        leaf(f"name: t\nlabel: T\nrule:\n  field: delivery_date\n  '<': {written}\n").value == value
    )


def test_date_window_operators() -> None:
    for op in ("within_last", "within_next"):
        cond = leaf(f"name: t\nlabel: T\nrule: {{field: insurance_expiry, {op}: 30d}}")
        assert cond == Field("insurance_expiry", Kind.DATE, op, Offset(30, "d"))
    cond = leaf("name: t\nlabel: T\nrule: {field: insurance_expiry, after: +15d}")
    assert cond.value == Offset(15, "d")


def test_exists_is_count_at_least_one() -> None:
    [seg] = parse_rules("name: t\nlabel: T\nrule: {exists: {table: complaints}}")
    assert seg.rule == Count("complaints", (), None, ">=", 1)


def test_text_values_keep_their_source_spelling() -> None:
    # YAML 1.1 would read these as a boolean and a float; for a text column they are text.
    cond = leaf("name: t\nlabel: T\nrule: {field: model, in: [on, 2.0T, 1.5]}")
    assert cond.value == ("on", "2.0T", "1.5")


# ---------------------------------------------------------------------------------------------
# Errors: position, pointer, message
# ---------------------------------------------------------------------------------------------


def test_unknown_field_with_suggestion_and_exact_position() -> None:
    err = parse_error(
        """\
        name: x
        label: X
        rule:
          all:
            - field: car_age_years
              ">=": 5
            - field: car_age
              ">=": 3
        """
    )
    assert (err.path, err.line, err.column) == ("segments/x.yaml", 7, 14)
    assert err.pointer == "rule.all[1].field"
    assert str(err) == (
        "segments/x.yaml:7:14: rule.all[1].field: unknown profile field 'car_age' "
        "(did you mean 'car_age_years'?)"
    )


@pytest.mark.parametrize(
    ("text", "line", "column", "pointer", "fragment"),
    [
        # unknown keys
        ("name: x\nlabel: X\nrule: {field: age, '>': 1}\nlabl: y\n", 4, 1, "labl",
         "unknown key 'labl' (did you mean 'label'?)"),
        ("name: x\nlabel: X\nrule:\n  alll: []\n", 4, 3, "rule.alll",
         "unknown condition key 'alll' (did you mean 'all'?)"),
        ("name: x\nlabel: X\nrule:\n  field: age\n  '>>': 1\n", 5, 3, "rule.>>",
         "unknown operator '>>' for field 'age'"),
        ("name: x\nlabel: X\nrule:\n  count: {table: events, wher: {}}\n  =: 0\n", 4, 26,
         "rule.count.wher", "unknown key 'wher' (did you mean 'where'?)"),
        ("name: x\nlabel: X\nrule:\n  '>=': 3\n", 4, 3, "rule.>=",
         "operator '>=' needs a 'field' or a 'count'"),
        ("name: x\nlabel: X\nrule:\n  age: 3\n", 4, 3, "rule.age",
         "write 'field: age' and an operator"),
        # unknown table / column
        ("name: x\nlabel: X\nrule:\n  exists: {table: event}\n", 4, 19, "rule.exists.table",
         "unknown record table 'event' (did you mean 'events'?)"),
        ("name: x\nlabel: X\nrule:\n  exists:\n    table: events\n    where:\n      targt: a\n",
         7, 7, "rule.exists.where.targt",
         "unknown column 'targt' of events (did you mean 'target'?)"),
        # operator not valid for the kind
        ("name: x\nlabel: X\nrule:\n  field: series\n  '>': a\n", 5, 3, "rule.>",
         "operator '>' does not apply to text field 'series'"),
        ("name: x\nlabel: X\nrule:\n  field: age\n  within_last: 3d\n", 5, 3, "rule.within_last",
         "does not apply to int field 'age'"),
        ("name: x\nlabel: X\nrule:\n  field: lifecycle_stage\n  contains: new\n", 5, 3,
         "rule.contains", "does not apply"),
        # two operators / none
        ("name: x\nlabel: X\nrule:\n  field: age\n  '>': 1\n  '<': 9\n", 6, 3, "rule.<",
         "one operator per condition, found '>' and '<'"),
        ("name: x\nlabel: X\nrule:\n  field: age\n", 4, 3, "rule",
         "field 'age' needs one operator"),
        ("name: x\nlabel: X\nrule:\n  field: age\n  count: {table: events}\n", 5, 3, "rule.count",
         "'count' cannot share a condition with 'field'"),
        ("name: x\nlabel: X\nrule:\n  exists: {table: events}\n  '>=': 2\n", 5, 3, "rule.>=",
         "exists takes no operator"),
        # malformed durations and dates
        ("name: x\nlabel: X\nrule: {field: insurance_expiry, within_next: 30days}\n", 3, 46,
         "rule.within_next", "malformed duration '30days'"),
        ("name: x\nlabel: X\nrule: {field: insurance_expiry, within_next: -30d}\n", 3, 46,
         "rule.within_next", "malformed duration '-30d'"),
        ("name: x\nlabel: X\nrule: {field: insurance_expiry, '<': 30d}\n", 3, 38, "rule.<",
         "relative date '30d' needs a sign"),
        ("name: x\nlabel: X\nrule:\n  count: {table: events, within_last: 1q}\n  =: 0\n", 4, 39,
         "rule.count.within_last", "malformed duration '1q'"),
        ("name: x\nlabel: X\nrule: {field: delivery_date, '<': 2024-02-30}\n", 3, 35, "rule.<",
         "'2024-02-30' is not a valid date: day is out of range for month"),
        ("name: x\nlabel: X\nrule: {field: delivery_date, '<': 30/06/2024}\n", 3, 35, "rule.<",
         "field 'delivery_date' is a date: 2024-06-30, today, or relative"),
        # empty lists / conditions
        ("name: x\nlabel: X\nrule:\n  all: []\n", 4, 8, "rule.all",
         "'all' needs a non-empty list"),
        ("name: x\nlabel: X\nrule:\n  any:\n    - {}\n", 5, 7, "rule.any[0]", "empty condition"),
        ("name: x\nlabel: X\nrule: {field: age, in: []}\n", 3, 24, "rule.in",
         "in needs a non-empty list"),
        # value typing
        ("name: x\nlabel: X\nrule: {field: age, '>': ten}\n", 3, 25, "rule.>",
         "field 'age' is a number, got 'ten'"),
        ("name: x\nlabel: X\nrule: {field: is_owner, =: maybe}\n", 3, 28, "rule.=",
         "is true or false"),
        ("name: x\nlabel: X\nrule: {field: spend_12m, '>': 5 dollars}\n", 3, 31, "rule.>",
         "is an amount in yuan"),
        ("name: x\nlabel: X\nrule: {field: spend_12m, '>': 0.001}\n", 3, 31, "rule.>",
         "finer than one fen"),
        ("name: x\nlabel: X\nrule: {field: value_tier, in: [high, hihg]}\n", 3, 38, "rule.in[1]",
         "'hihg' is not a value of field 'value_tier' (did you mean 'high'?); "
         "choices: high, mid, low"),
        ("name: x\nlabel: X\nrule: {field: age, =: null}\n", 3, 23, "rule.=", "use is_null"),
        ("name: x\nlabel: X\nrule: {field: age, between: [9, 1]}\n", 3, 29, "rule.between",
         "between needs low <= high"),
        ("name: x\nlabel: X\nrule: {field: age, between: [1]}\n", 3, 29, "rule.between",
         "a list of two values"),
        ("name: x\nlabel: X\nrule:\n  count: {table: events}\n  '>=': -1\n", 5, 9, "rule.>=",
         "whole number >= 0"),
        ("name: x\nlabel: X\nrule:\n  exists: {table: complaints, where: {severity: grave}}\n",
         4, 49, "rule.exists.where.severity", "choices: severe, medium, light"),
        # segment-level
        ("name: Bad-Name\nlabel: X\nrule: {field: age, '>': 1}\n", 1, 7, "name", "invalid name"),
        ("name: x\nlabel: X\nkind: tags\nrule: {field: age, '>': 1}\n", 3, 7, "kind",
         "unknown kind 'tags' (did you mean 'tag'?)"),
        ("name: x\nrule: {field: age, '>': 1}\n", 1, 1, "", "missing 'label'"),
        ("segments:\n  - {name: a, label: A, rule: {field: age, '>': 1}}\n"
         "  - {name: a, label: B, rule: {field: age, '>': 2}}\n", 3, 12, "segments[1].name",
         "duplicate segment name 'a' (line 2)"),
        ("name: x\nlabel: X\nrule: {field: age, '>': 1}\nname: y\n", 4, 1, "name",
         "duplicate key 'name' (first at line 1)"),
    ],
)  # fmt: skip
def test_error_positions(text: str, line: int, column: int, pointer: str, fragment: str) -> None:
    with pytest.raises(RuleError) as info:
        parse_rules(text, "r.yaml")
    err = info.value
    assert fragment in err.detail
    assert (err.line, err.column, err.pointer) == (line, column, pointer), str(err)


def test_yaml_syntax_error_has_a_line_and_a_hint_for_bare_operators() -> None:
    err = parse_error("name: x\nlabel: X\nrule:\n  field: age\n  >=: 5\n")
    assert (err.line, err.column) == (5, 4)
    assert "YAML syntax error" in err.detail and '">=": 3' in err.detail
    err = parse_error("name: x\nlabel: X\nrule:\n  field: age\n  !=: 5\n")
    assert err.line == 6 and "quote operators" in err.detail
    err = parse_error("name: x\nlabel: [X\n")
    assert err.line == 3 and err.detail.startswith("YAML syntax error")


def test_empty_document() -> None:
    err = parse_error("# nothing\n")
    assert (err.line, err.column, err.pointer) == (1, 1, "")


def test_all_errors_are_collected_in_file_order() -> None:
    err = parse_error(
        """\
        name: X
        label: X
        rule:
          any:
            - {field: seriess, =: a}
            - {field: delivery_date, '<': 30d}
            - {field: age, '>': 1}
        """
    )
    assert [(e.line, e.pointer) for e in err.errors] == [
        (1, "name"),
        (5, "rule.any[0].field"),
        (6, "rule.any[1].<"),
    ]
    assert err.errors[0] is err


def test_load_rule_file(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("name: x\nlabel: X\nrule: {field: agee, '>': 1}\n", encoding="utf-8")
    with pytest.raises(RuleError) as info:
        load_rule_file(path)
    assert info.value.path == str(path) and info.value.line == 3
    path.write_text("\ufeffname: x\nlabel: X\nrule: {field: age, '>': 1}\n", encoding="utf-8")
    [seg] = load_rule_file(path)
    assert seg.source == str(path)
    with pytest.raises(RuleError, match="cannot read"):
        load_rule_file(tmp_path / "missing.yaml")


# ---------------------------------------------------------------------------------------------
# Compilation, executed in DuckDB
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("{field: car_age_years, =: 5}", {4}),
        ("{field: series, '!=': 远峰}", {2, 4}),  # NULL series (3) is not a member
        ("{field: car_age_years, '>': 5}", {1}),
        ("{field: car_age_years, '>=': 5}", {1, 4}),
        ("{field: car_age_years, '<': 5}", {2, 5}),
        ("{field: car_age_years, '<=': 2}", {2, 5}),
        ("{field: series, in: [远峰, 灵犀EV]}", {1, 2, 5}),
        ("{field: series, not_in: [远峰]}", {2, 4}),
        ("{field: car_age_years, between: [2, 5]}", {2, 4}),
        ("{field: series, is_null: true}", {3}),
        ("{field: series, is_null: false}", {1, 2, 4, 5}),
        ("{field: tags, contains: VIP}", {1, 4}),
        ("{field: city, contains: 杭州}", {1, 4}),
        ("{field: city, contains: '%'}", set()),  # no LIKE wildcards
        ("{field: spend_12m, '>=': '¥5,000'}", {1, 4}),
        ("{field: spend_12m, '>': 5000元}", {1}),
        ("{field: spend_12m, between: [0, 1500]}", {2, 3, 5}),
        ("{field: is_owner, =: false}", {3}),
        ("{field: is_owner, '!=': true}", {3}),
        ("{field: lifecycle_stage, in: [new_owner, at_risk]}", {4, 5}),
        # dates around the as_of boundaries (as_of = 2024-06-30)
        ("{field: insurance_expiry, within_next: 30d}", {1, 4}),  # [06-30, 07-30]
        ("{field: insurance_expiry, within_next: 1w}", {4}),
        ("{field: insurance_expiry, within_next: today}", {4}),
        ("{field: insurance_expiry, after: +30d}", {2}),
        ("{field: insurance_expiry, before: today}", {5}),
        ("{field: insurance_expiry, '<': today}", {5}),
        ("{field: last_visit_date, within_last: 30d}", {2}),  # [05-31, 06-30]
        ("{field: last_visit_date, within_last: 6m}", {1, 2}),  # [2023-12-30, 06-30]
        ("{field: last_visit_date, before: -6m}", {4}),
        ("{field: last_visit_date, '<': -6m}", {4}),
        ("{field: last_visit_date, '>=': -26w}", {2}),  # -182 days: 2023-12-31
        ("{field: delivery_date, within_last: 2y}", {2, 5}),
        ("{field: delivery_date, '>=': 2022-07-01}", {2, 5}),
        ("{field: delivery_date, between: [2019-01-01, 2022-12-31]}", {2, 4}),
        ("{field: delivery_date, between: [-5y, -1y]}", {2, 4}),
    ],
)
def test_field_operators(members: Members, rule: str, expected: set[int]) -> None:
    assert members(rule) == expected


def test_combinators(members: Members) -> None:
    assert members("all: [{field: is_owner, =: true}, {field: car_age_years, '>=': 5}]") == {1, 4}
    assert members("any: [{field: series, =: 灵犀EV}, {field: age, '<': 30}]") == {2, 5}
    # not: NULL counts as "not a member" before negating, so 3 (NULL series) is in the negation.
    assert members("not: {field: series, =: 远峰}") == {2, 3, 4}
    assert members("not: {not: {field: series, =: 远峰}}") == {1, 5}
    assert members("not: {any: [{field: age, '<': 30}, {field: age, is_null: true}]}") == {
        1,
        2,
        4,
    }


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        # as_of - 120d = 2024-03-02 is outside the window; 2024-03-03 inside.
        (
            "count: {table: service_orders, where: {order_type: maintenance}, within_last: 120d}"
            "\n=: 0",
            {2, 3, 5, 1},
        ),
        (
            "count: {table: service_orders, where: {order_type: maintenance}, within_last: 121d}"
            "\n=: 0",
            {3, 5, 1},
        ),
        # all history up to as_of: 4's order of 2024-07-01 is not counted
        ("count: {table: service_orders}\n'>=': 2", {1}),
        ("count: {table: service_orders}\nbetween: [1, 1]", {2, 4}),
        ("exists: {table: service_orders, where: {amount_fen: {'>=': 500}}}", {1, 4}),
        ("exists: {table: service_orders, where: {amount_fen: {'>=': '¥801'}}}", {4}),
        ("exists: {table: service_orders, where: {settled_on: {within_last: 1m}}}", {1}),
        # events are timestamps: the calendar day counts; 2024-05-31 23:00 is outside 30d,
        # 2024-06-30 23:59:59 inside, 2024-07-01 00:00 (tomorrow) outside.
        (
            "count: {table: events, where: {event_type: model_view}, within_last: 30d}\n'>=': 2",
            {1, 4},
        ),
        (
            "count: {table: events, where: {target: 拓界}, within_last: 31d}\n=: 1",
            {1},
        ),
        ("exists: {table: events, where: {target: 穹岳}}", {1}),
        ("exists: {table: events, where: {target: 穹岳}, within_last: 30d}", {1}),
        ("exists: {table: events, where: {source: [web, mini_program]}}", {1, 2, 3}),
        ("exists: {table: events, where: {occurred_at: {'>=': today}}}", {1}),
        ("exists: {table: events, where: {occurred_at: 2024-06-30}}", {1}),
        ("exists: {table: complaints, where: {status: {in: [open, in_progress]}}}", {4}),
        ("exists: {table: leads, where: {lost_reason: {is_null: true}}}", {3}),
        ("exists: {table: wecom_relations, where: {deleted_by: customer}}", {2}),
        ("not: {exists: {table: wecom_relations}}", {3, 4, 5}),
    ],
)
def test_record_counts(members: Members, rule: str, expected: set[int]) -> None:
    assert members(rule) == expected


def test_month_arithmetic_clamps_to_month_end(
    make_db: Callable[..., duckdb.DuckDBPyConnection],
    members_on: Callable[..., frozenset[int]],
) -> None:
    # 2024-03-31 minus one month is 2024-02-29 in DuckDB and in Spark (ADD_MONTHS).
    customers = [
        {"customer_id": 1, "last_visit_date": dt.date(2024, 2, 29)},
        {"customer_id": 2, "last_visit_date": dt.date(2024, 2, 28)},
        {"customer_id": 3, "last_visit_date": dt.date(2023, 3, 31)},
    ]
    con = make_db(customers, {}, "2024-03-31")
    [seg] = parse_rules("name: t\nlabel: T\nrule: {field: last_visit_date, =: -1m}")
    assert members_on(con, seg.rule, "2024-03-31") == {1}
    [seg] = parse_rules("name: t\nlabel: T\nrule: {field: last_visit_date, within_last: 1y}")
    assert members_on(con, seg.rule, "2024-03-31") == {1, 2, 3}
    con.close()


def test_injection_is_a_harmless_literal(db: duckdb.DuckDBPyConnection, members: Members) -> None:
    evil = "x'); DROP TABLE profiles; --"
    for rule in (
        f"{{field: city, =: {json.dumps(evil)}}}",
        f"{{field: tags, contains: {json.dumps(evil)}}}",
        f"exists: {{table: events, where: {{target: {json.dumps(evil)}}}}}",
    ):
        assert members(rule) == set()
        [seg] = parse_rules(f"name: t\nlabel: T\nrule: {rule}" if "exists" not in rule else
                            f"name: t\nlabel: T\nrule:\n  {rule}")  # fmt: skip
        for dialect in ("duckdb", "spark"):
            sql = segment_query(seg, dialect)
            # One statement, the value intact as a single string literal.
            [statement] = sqlglot.parse(sql, read=dialect)
            assert statement is not None
            literals = [s.this for s in statement.find_all(sqlglot.exp.Literal) if s.is_string]
            assert evil in literals
    assert db.execute("SELECT COUNT(*) FROM profiles").fetchone() == (5,)


def test_compile_rejects_bad_arguments() -> None:
    [seg] = parse_rules("name: t\nlabel: T\nrule: {field: age, '>': 1}")
    with pytest.raises(ValueError, match="dialect"):
        compile_condition(seg.rule, dialect="oracle")
    with pytest.raises(ValueError, match="as_of"):
        compile_condition(seg.rule, as_of="30/06/2024")


def test_segment_query_shape() -> None:
    [seg] = parse_rules("name: t\nlabel: T\nrule: {field: age, '>': 30}")
    assert segment_query(seg) == "SELECT p.customer_id FROM profiles AS p WHERE p.age > 30"


# ---------------------------------------------------------------------------------------------
# Built-in segments
# ---------------------------------------------------------------------------------------------

BUILTIN_EXPECTED = {
    "tier_high": {1},
    "tier_mid": {4},
    "tier_low": {2, 5},
    "new_owners": {5},
    "maintained": {1, 2},
    "at_risk": {4},
    "prospects": {3},
    "high_churn_risk": {2},
    "first_buyers": {2, 5},  # 1 has two cars, 4 was delivered 5 years ago
    "replacement_candidates": {1, 2, 4},  # 1, 4: old car + SUV views; 2: intent 65
    "premium_interest": {1, 2},  # 2: 和悦 59 days ago (the 穹岳 view is tomorrow)
    "lost_leads_price": {2},
    "lost_leads_unknown": {3, 4},  # 3: reason not recorded
    "complaint_open": {4},
    "complaint_severe_open": {4},
    "first_maintenance_pending": {5},
    "maintenance_due_15d": {1, 4},
    "no_maintenance_120d": {1, 2, 5},
    "insurance_expiring_30d": {1, 4},
    "wecom_unreachable_owners": {2, 5},
    "tag_high_mileage": {1},
    "tag_ev_interest": {4},
    "tag_dormant": set(),
}


def test_builtins_load_with_unique_names_and_chinese_labels() -> None:
    segs = builtin_segments()
    names = [s.name for s in segs]
    assert len(names) == len(set(names))
    assert set(BUILTIN_EXPECTED) <= set(names)
    for s in segs:
        assert s.source == f"builtin:{s.name}"
        assert s.description and any("\u4e00" <= ch <= "\u9fff" for ch in s.label)
    assert sum(s.kind == "tag" for s in segs) >= 3


def test_builtin_members(db: duckdb.DuckDBPyConnection) -> None:
    by_name = {s.name: s for s in builtin_segments()}
    for name, expected in BUILTIN_EXPECTED.items():
        seg = by_name[name]
        for as_of in ("2024-06-30", None):
            rows = db.execute(segment_query(seg, as_of=as_of)).fetchall()
            assert {r[0] for r in rows} == expected, (name, as_of)


def test_every_builtin_runs_and_renders_valid_spark_sql(db: duckdb.DuckDBPyConnection) -> None:
    for seg in builtin_segments():
        db.execute(segment_query(seg)).fetchall()
        for as_of in ("2024-06-30", None):
            sql = segment_query(seg, "spark", as_of)
            tree = sqlglot.parse_one(sql, read="spark")
            assert tree.sql(dialect="spark") == sql
            # DuckDB's INTERVAL arithmetic must not leak into Spark SQL.
            assert "INTERVAL" not in sql


def test_spark_date_arithmetic() -> None:
    [seg] = parse_rules(
        "name: t\nlabel: T\nrule:\n  all:\n"
        "    - {field: delivery_date, within_last: 2y}\n"
        "    - {field: insurance_expiry, within_next: 2w}\n"
        "    - {field: last_visit_date, '<': -6m}\n"
    )
    sql = compile_condition(seg.rule, "spark")
    assert "ADD_MONTHS(p.as_of, -24)" in sql
    assert "DATE_ADD(p.as_of, 14)" in sql
    assert "ADD_MONTHS(p.as_of, -6)" in sql
    sql = compile_condition(seg.rule, "spark", as_of="2024-06-30")
    assert "ADD_MONTHS(CAST('2024-06-30' AS DATE), -24)" in sql


def test_doc_examples_parse() -> None:
    """Every YAML block in docs/segments.md is a valid rule file or rule body."""
    doc = Path(__file__).parents[2] / "docs" / "segments.md"
    blocks = doc.read_text(encoding="utf-8").split("```yaml\n")[1:]
    assert len(blocks) >= 5
    for block in (b.split("```")[0] for b in blocks):
        if block.startswith(("name:", "segments:")):
            assert parse_rules(block, "docs/segments.md")
        else:
            body = textwrap.indent(block, "  ")
            assert parse_rules(f"name: doc\nlabel: 文档\nrule:\n{body}", "docs/segments.md")


def test_a_record_window_counts_whole_local_days_across_a_clock_change() -> None:
    # New York moves its clocks forward at 2024-03-10 02:00: that day starts at 05:00 UTC
    # (EST) and the next at 04:00 UTC (EDT). A one-day window on as_of 03-10 holds exactly
    # the records of that local day, to the second on either side.
    inside = ("2024-03-10 05:00:00", "2024-03-11 03:59:59")
    outside = ("2024-03-10 04:59:59", "2024-03-11 04:00:00")
    events = [
        {"customer_id": n, "event_type": "model_view", "source": "app", "target": "穹岳",
         "occurred_at": dt.datetime.fromisoformat(at)}
        for n, at in enumerate((*inside, *outside), start=1)
    ]  # fmt: skip
    people = [{"customer_id": n} for n in range(1, 5)]
    con = build_db(people, {"events": events}, as_of="2024-03-10")
    [seg] = parse_rules("name: t\nlabel: T\nrule: {exists: {table: events, within_last: 1d}}\n")
    for as_of in ("2024-03-10", None):
        query = segment_query(seg, as_of=as_of, tz="America/New_York")
        assert {r[0] for r in con.execute(query).fetchall()} == {1, 2}
    con.close()


@pytest.mark.parametrize(
    ("rule", "utc", "shanghai"),
    [
        # 2024-05-31 23:00 UTC is 06-01 07:00 in Shanghai: inside the 30-day window there.
        ("{exists: {table: events, where: {target: 拓界}, within_last: 30d}}", set(), {1}),
        # 2024-06-30 23:59:59 UTC is already 07-01 in Shanghai: after as_of.
        ("{exists: {table: events, where: {occurred_at: 2024-06-30}}}", {1}, set()),
        ("{count: {table: events, where: {target: 穹岳}}, '>=': 2}", {1}, set()),
    ],
)
def test_timestamps_follow_the_business_time_zone(
    db: duckdb.DuckDBPyConnection, rule: str, utc: set[int], shanghai: set[int]
) -> None:
    [seg] = parse_rules(f"name: t\nlabel: T\nrule: {rule}\n")
    for as_of in ("2024-06-30", None):
        got = {r[0] for r in db.execute(segment_query(seg, as_of=as_of)).fetchall()}
        assert got == utc
        query = segment_query(seg, as_of=as_of, tz="Asia/Shanghai")
        assert {r[0] for r in db.execute(query).fetchall()} == shanghai
    spark_sql = segment_query(seg, "spark", tz="Asia/Shanghai")
    # A record's field is converted to the zone; a window's bounds are converted from it.
    assert (
        "CONVERT_TIMEZONE('UTC', 'Asia/Shanghai', r.occurred_at)" in spark_sql
        or "r.occurred_at < CONVERT_TIMEZONE('Asia/Shanghai', 'UTC', " in spark_sql
    )
    with pytest.raises(ValueError, match="time zone"):
        segment_query(seg, tz="Mars/Olympus")
