"""A tiny profile store for rule tests: hand-made customers whose right answers are obvious.

The ``profiles`` table and the record tables are created from the catalogue in
``baoke.profiles.schema`` (Kind → DuckDB type), so a catalogue change is picked up here.
All dates are relative to AS_OF = 2024-06-30; the comments give the distances that matter.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import duckdb
import pytest

from baoke.profiles.schema import PROFILE_COLUMNS, RECORD_TABLES, Column, Kind
from baoke.segments import Condition, SegmentDef, compile_condition, parse_rules

AS_OF = "2024-06-30"
D = dt.date.fromisoformat

DUCK_TYPES = {
    Kind.INT: "BIGINT",
    Kind.FLOAT: "DOUBLE",
    Kind.MONEY: "BIGINT",
    Kind.DATE: "DATE",
    Kind.TIMESTAMP: "TIMESTAMP",
    Kind.BOOL: "BOOLEAN",
    Kind.TEXT: "VARCHAR",
    Kind.TAGS: "VARCHAR[]",
}

# Five customers; anything not given is NULL.
CUSTOMERS: list[dict[str, Any]] = [
    {
        "customer_id": 1,
        "is_owner": True,
        "vehicle_count": 2,
        "series": "远峰",
        "car_age_years": 6.0,
        "months_since_delivery": 72,
        "delivery_date": D("2018-06-01"),
        "spend_12m": 600_000,  # ¥6,000
        "value_tier": "high",
        "lifecycle_stage": "maintained",
        "insurance_expiry": D("2024-07-30"),  # as_of + 30d: last day inside within_next 30d
        "last_visit_date": D("2023-12-30"),  # exactly as_of - 6 months
        "next_maintenance_due_date": D("2024-07-15"),  # as_of + 15d
        "first_maintenance_done": True,
        "odometer_km": 120_000,
        "age": 40,
        "tags": ["高里程", "VIP"],
        "city": "杭州市",
        "upgrade_intent": 40,
        "churn_risk": 10,
        "wecom_reachable": True,
        "lead_status": "won",
        "days_since_last_visit": 183,
        "app_active_90d": True,
    },
    {
        "customer_id": 2,
        "is_owner": True,
        "vehicle_count": 1,
        "series": "灵犀EV",
        "car_age_years": 2.0,
        "months_since_delivery": 23,
        "delivery_date": D("2022-07-01"),  # as_of - 2y + 1d: inside within_last 2y
        "spend_12m": 150_000,
        "value_tier": "low",
        "lifecycle_stage": "maintained",
        "insurance_expiry": D("2024-07-31"),  # as_of + 31d: outside
        "last_visit_date": D("2024-06-01"),
        "next_maintenance_due_date": D("2024-07-16"),  # as_of + 16d: outside
        "first_maintenance_done": True,
        "odometer_km": 30_000,
        "age": 30,
        "tags": [],
        "city": "宁波市",
        "upgrade_intent": 65,
        "churn_risk": 70,
        "wecom_reachable": False,
        "lead_status": "lost",
        "lead_lost_reason": "price",
        "days_since_last_visit": 29,
        "app_active_90d": False,
    },
    {
        "customer_id": 3,  # a prospect: almost everything NULL
        "is_owner": False,
        "vehicle_count": 0,
        "spend_12m": 0,
        "lifecycle_stage": "prospect",
        "lead_status": "lost",  # reason not recorded
        "upgrade_intent": 20,
    },
    {
        "customer_id": 4,
        "is_owner": True,
        "vehicle_count": 1,
        "series": "星岚",
        "car_age_years": 5.0,
        "months_since_delivery": 60,
        "delivery_date": D("2019-06-30"),
        "spend_12m": 500_000,  # exactly ¥5,000
        "value_tier": "mid",
        "lifecycle_stage": "at_risk",
        "insurance_expiry": D("2024-06-30"),  # today
        "last_visit_date": D("2023-12-29"),  # one day before as_of - 6 months
        "next_maintenance_due_date": D("2024-06-30"),
        "first_maintenance_done": True,
        "odometer_km": 99_999,
        "age": 35,
        "tags": ["VIP"],
        "city": "杭州",
        "upgrade_intent": 30,
        "churn_risk": 69,
        "wecom_reachable": True,
        "lead_status": "lost",
        "lead_lost_reason": "unknown",
        "open_complaint": True,
        "open_complaint_severity": "severe",
        "days_since_last_visit": 184,
        "app_active_90d": True,
    },
    {
        "customer_id": 5,
        "is_owner": True,
        "vehicle_count": 1,
        "series": "远峰",
        "car_age_years": 0.1,
        "months_since_delivery": 1,
        "delivery_date": D("2024-05-20"),
        "spend_12m": 0,
        "value_tier": "low",
        "lifecycle_stage": "new_owner",
        "insurance_expiry": D("2024-06-29"),  # expired yesterday
        "next_maintenance_due_date": D("2024-11-20"),
        "first_maintenance_done": False,
        "odometer_km": 500,
        "age": 25,
        "tags": ["新车"],
        "city": "上海市",
        "upgrade_intent": 0,
        "churn_risk": 0,
        "wecom_reachable": False,
        "open_complaint": False,
        "days_since_last_visit": 41,
        "app_active_90d": False,
    },
]
ALL_IDS = frozenset(c["customer_id"] for c in CUSTOMERS)

TS = dt.datetime.fromisoformat
RECORDS: dict[str, list[dict[str, Any]]] = {
    "service_orders": [
        # as_of - 120d = 2024-03-02; the window (as_of - 120d, as_of] starts on 2024-03-03.
        {"customer_id": 1, "order_type": "maintenance", "settled_on": D("2024-03-01"),
         "amount_fen": 80_000},
        {"customer_id": 1, "order_type": "repair", "settled_on": D("2024-06-01"),
         "amount_fen": 20_000},
        {"customer_id": 2, "order_type": "maintenance", "settled_on": D("2024-03-02"),
         "amount_fen": 42_000},
        {"customer_id": 4, "order_type": "maintenance", "settled_on": D("2024-03-03"),
         "amount_fen": 98_000},
        {"customer_id": 4, "order_type": "maintenance", "settled_on": D("2024-07-01"),
         "amount_fen": 98_000},  # after as_of: never counted
    ],
    "events": [
        # as_of - 30d = 2024-05-31: events on that calendar day are outside within_last 30d.
        {"customer_id": 1, "event_type": "model_view", "source": "app", "target": "穹岳",
         "occurred_at": TS("2024-06-10 10:00:00")},
        {"customer_id": 1, "event_type": "model_view", "source": "web", "target": "穹岳",
         "occurred_at": TS("2024-06-30 23:59:59")},
        {"customer_id": 1, "event_type": "model_view", "source": "app", "target": "拓界",
         "occurred_at": TS("2024-05-31 23:00:00")},
        {"customer_id": 2, "event_type": "model_view", "source": "app", "target": "穹岳",
         "occurred_at": TS("2024-07-01 00:00:00")},  # tomorrow
        {"customer_id": 2, "event_type": "model_view", "source": "mini_program", "target": "和悦",
         "occurred_at": TS("2024-05-02 09:00:00")},  # as_of - 59d
        {"customer_id": 4, "event_type": "model_view", "source": "app", "target": "灵犀EV",
         "occurred_at": TS("2024-06-01 08:00:00")},
        {"customer_id": 4, "event_type": "model_view", "source": "app", "target": "灵犀EV",
         "occurred_at": TS("2024-06-02 08:00:00")},
        {"customer_id": 4, "event_type": "model_view", "source": "app", "target": "灵犀EV",
         "occurred_at": TS("2024-06-03 08:00:00")},
        {"customer_id": 3, "event_type": "page_view", "source": "web", "target": "首页",
         "occurred_at": TS("2024-06-20 08:00:00")},
    ],
    "complaints": [
        {"customer_id": 4, "severity": "severe", "status": "open", "satisfaction": 3,
         "opened_at": TS("2024-06-25 12:00:00")},
        {"customer_id": 1, "severity": "light", "status": "closed", "satisfaction": 8,
         "opened_at": TS("2023-01-05 12:00:00")},
    ],
    "leads": [
        {"customer_id": 2, "stage": "quote", "status": "lost", "lost_reason": "price",
         "model_of_interest": "穹岳", "created_on": D("2024-01-10"), "lost_on": D("2024-02-01")},
        {"customer_id": 3, "stage": "inquiry", "status": "lost", "model_of_interest": "拓界",
         "created_on": D("2024-05-10"), "lost_on": D("2024-06-01")},
    ],
    "wecom_relations": [
        {"customer_id": 1, "state": "delivery_qr", "added_at": TS("2018-06-05 10:00:00")},
        {"customer_id": 2, "state": "service_qr", "added_at": TS("2022-07-05 10:00:00"),
         "deleted_by": "customer", "deleted_at": TS("2024-01-01 10:00:00")},
    ],
}  # fmt: skip


def record_columns(table: str) -> list[Column]:
    """customer_id plus the catalogue's columns of a record table."""
    return [Column("customer_id", Kind.INT, "客户ID"), *RECORD_TABLES[table][1]]


def _create(con: duckdb.DuckDBPyConnection, table: str, columns: list[Column]) -> None:
    cols = ", ".join(f"{c.name} {DUCK_TYPES[c.kind]}" for c in columns)
    con.execute(f"CREATE TABLE {table} ({cols})")


def _insert(
    con: duckdb.DuckDBPyConnection, table: str, columns: list[Column], rows: list[dict[str, Any]]
) -> None:
    if not rows:
        return
    names = [c.name for c in columns]
    marks = ", ".join("?" for _ in names)
    con.executemany(
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})",
        [[row.get(n) for n in names] for row in rows],
    )


def build_db(
    customers: list[dict[str, Any]],
    records: dict[str, list[dict[str, Any]]],
    as_of: str = AS_OF,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with ``profiles`` (as_of filled in) and every record table."""
    con = duckdb.connect()
    _create(con, "profiles", list(PROFILE_COLUMNS))
    rows = [{**c, "as_of": D(as_of)} for c in customers]
    _insert(con, "profiles", list(PROFILE_COLUMNS), rows)
    for table in RECORD_TABLES:
        cols = record_columns(table)
        _create(con, table, cols)
        _insert(con, table, cols, records.get(table, []))
    return con


@pytest.fixture(scope="module")
def db() -> Iterator[duckdb.DuckDBPyConnection]:
    """The five customers and their records."""
    con = build_db(CUSTOMERS, RECORDS)
    yield con
    con.close()


def run_members(
    con: duckdb.DuckDBPyConnection, cond: Condition, as_of: str = AS_OF
) -> frozenset[int]:
    """Members of ``cond``; checks that the fixed-date and the p.as_of SQL agree."""
    results = []
    for when in (as_of, None):
        sql = f"SELECT p.customer_id FROM profiles p WHERE {compile_condition(cond, as_of=when)}"
        results.append(frozenset(r[0] for r in con.execute(sql).fetchall()))
    assert results[0] == results[1], "as_of literal and p.as_of disagree"
    return results[0]


def one_rule(rule_yaml: str) -> SegmentDef:
    """A segment around an indented rule body."""
    body = "\n".join("  " + line for line in rule_yaml.strip("\n").splitlines())
    [seg] = parse_rules(f"name: t\nlabel: 测试\nrule:\n{body}\n")
    return seg


@pytest.fixture(scope="module")
def members(
    db: duckdb.DuckDBPyConnection,
) -> Callable[[str], frozenset[int]]:
    """Members of a rule given as YAML (the body of ``rule:``)."""

    def run(rule_yaml: str) -> frozenset[int]:
        return run_members(db, one_rule(rule_yaml).rule)

    return run


@pytest.fixture(scope="module")
def cond_members(
    db: duckdb.DuckDBPyConnection,
) -> Callable[[Condition], frozenset[int]]:
    """Members of a parsed condition on the shared database."""

    def run(cond: Condition) -> frozenset[int]:
        return run_members(db, cond)

    return run


@pytest.fixture(scope="session")
def make_db() -> Callable[..., duckdb.DuckDBPyConnection]:
    """``build_db`` for tests that need their own customers or as_of."""
    return build_db


@pytest.fixture(scope="session")
def members_on() -> Callable[..., frozenset[int]]:
    """``run_members`` for tests with their own database."""
    return run_members


@pytest.fixture(scope="session")
def fixture_data() -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """The customers and records behind ``db`` (for oracles written in Python)."""
    return CUSTOMERS, RECORDS
