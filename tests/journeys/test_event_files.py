"""Event files and record-derived events on both databases: checks, quarantine, keys, storing."""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from sqlalchemy import Connection, Engine, func, insert, select

from baoke.errors import InputError
from baoke.journeys.event_files import (
    EVENT_SCHEMA,
    EventBatch,
    derive_record_events,
    read_event_file,
    store_events,
)
from baoke.store import models as m

ZONE = ZoneInfo("Asia/Shanghai")
UTC = dt.UTC
ALICE, BOB, CAROL = 1, 2, 3  # customers; Alice and Bob have mobiles, Carol has none
ALICE_MOBILE = "+8613800138000"
BOB_MOBILE = "+8613900139000"

# The derivation window: May 2024 in business time, (since, until].
SINCE = dt.datetime(2024, 5, 1, tzinfo=ZONE)
UNTIL = dt.datetime(2024, 5, 31, tzinfo=ZONE)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, sec, tzinfo=UTC)


def day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=ZONE).astimezone(UTC)


# --------------------------------------------------------------------------------------------
# the store


def _rows(conn: Connection, model: type[m.Base], rows: list[dict[str, Any]]) -> None:
    conn.execute(insert(model.__table__), rows)  # type: ignore[arg-type]


def _people(conn: Connection) -> None:
    _rows(conn, m.Dealer, [{"id": 1, "code": "D01", "name": "一店"}])
    _rows(
        conn, m.Staff, [{"id": 1, "staff_no": "S001", "dealer_id": 1, "name": "王", "role": "ca"}]
    )
    _rows(
        conn,
        m.Customer,
        [
            {"id": ALICE, "mobile": ALICE_MOBILE, "name": "张伟"},
            {"id": BOB, "mobile": BOB_MOBILE, "name": "李娜"},
            {"id": CAROL, "mobile": None, "name": "赵敏"},
        ],
    )
    _rows(
        conn,
        m.WecomRelation,
        [
            # Bob is a friend of the advisor; added and later deleted, both in May.
            {
                "id": 1,
                "customer_id": BOB,
                "staff_id": 1,
                "external_userid": "wm_bob",
                "state": "delivery_qr",
                "added_at": utc(2024, 5, 3, 2, 0),
                "deleted_at": utc(2024, 5, 20, 2, 0),
                "deleted_by": None,
            },
            # A contact never matched to a customer: no events, no resolution.
            {
                "id": 2,
                "customer_id": None,
                "staff_id": 1,
                "external_userid": "wm_ghost",
                "state": None,
                "added_at": utc(2024, 5, 4, 2, 0),
                "deleted_at": None,
                "deleted_by": None,
            },
        ],
    )


def _vehicles_and_orders(conn: Connection) -> None:
    _rows(
        conn,
        m.Vehicle,
        [
            # Delivered on the first day: its start *is* ``since``, so it is outside (since, …].
            {"id": 1, "vin": "LVIN0000000000001", "customer_id": ALICE, "series": "远峰",
             "model": "远峰 2.0T", "delivery_date": dt.date(2024, 5, 1)},
            {"id": 2, "vin": "LVIN0000000000002", "customer_id": ALICE, "series": "星岚",
             "model": None, "delivery_date": dt.date(2024, 5, 31)},  # start == until: inside
            {"id": 3, "vin": "LVIN0000000000003", "customer_id": None, "series": "星岚",
             "model": None, "delivery_date": dt.date(2024, 5, 10)},  # no owner: no event
        ],
    )  # fmt: skip
    order = {"dealer_id": 1, "vehicle_id": 2, "amount_fen": 50_000}
    _rows(
        conn,
        m.ServiceOrder,
        [
            {**order, "id": 1, "order_no": "SO1", "customer_id": ALICE,
             "order_type": "maintenance", "settled_on": dt.date(2024, 5, 15)},
            {**order, "id": 2, "order_no": "SO2", "customer_id": ALICE,
             "order_type": "repair", "settled_on": dt.date(2024, 6, 1)},  # after the window
        ],
    )  # fmt: skip


def _cases(conn: Connection) -> None:
    complaint = {"dealer_id": 1, "status": "open", "customer_id": BOB}
    _rows(
        conn,
        m.Complaint,
        [
            {**complaint, "id": 1, "complaint_no": "C1", "severity": "severe",
             "opened_at": utc(2024, 5, 10, 1, 0), "resolved_at": utc(2024, 6, 2, 1, 0)},
            {**complaint, "id": 2, "complaint_no": "C2", "severity": "light",
             "opened_at": utc(2024, 4, 10, 1, 0), "resolved_at": utc(2024, 5, 12, 1, 0)},
        ],
    )  # fmt: skip
    lead = {"dealer_id": 1, "created_on": dt.date(2024, 3, 1), "stage": "test_drive"}
    _rows(
        conn,
        m.Lead,
        [
            {**lead, "id": 1, "lead_no": "L1", "customer_id": CAROL, "status": "lost",
             "lost_reason": None, "lost_on": dt.date(2024, 5, 5)},
            {**lead, "id": 2, "lead_no": "L2", "customer_id": CAROL, "status": "open",
             "lost_reason": None, "lost_on": dt.date(2024, 5, 5)},  # not lost: no event
            {**lead, "id": 3, "lead_no": "L3", "customer_id": CAROL, "status": "lost",
             "lost_reason": "price", "lost_on": dt.date(2024, 4, 5)},  # before the window
        ],
    )  # fmt: skip
    _rows(
        conn,
        m.Referral,
        [
            {"id": 1, "referral_no": "R1", "referrer_id": ALICE, "referee_name": "周先生",
             "stage": "test_drive", "stage_at": utc(2024, 5, 6, 3, 0)},
        ],
    )  # fmt: skip
    _rows(
        conn,
        m.LoyaltyEntry,
        [
            {"id": 1, "entry_key": "P1", "customer_id": ALICE, "points": 200,
             "reason": "service", "occurred_at": utc(2024, 5, 15, 4, 0)},
            {"id": 2, "entry_key": "P2", "customer_id": ALICE, "points": -100,
             "reason": "gift shop", "occurred_at": utc(2024, 5, 16, 4, 0)},
            {"id": 3, "entry_key": "P3", "customer_id": ALICE, "points": 50,
             "reason": "birthday bonus", "occurred_at": utc(2024, 5, 17, 4, 0)},
            # Exactly at ``until``: inside. Exactly at ``since``: outside.
            {"id": 4, "entry_key": "P4", "customer_id": ALICE, "points": 10,
             "reason": "activity", "occurred_at": UNTIL.astimezone(UTC)},
            {"id": 5, "entry_key": "P5", "customer_id": ALICE, "points": 10,
             "reason": "activity", "occurred_at": SINCE.astimezone(UTC)},
        ],
    )  # fmt: skip


@pytest.fixture
def store(engine: Engine) -> Engine:
    with engine.begin() as conn:
        _people(conn)
        _vehicles_and_orders(conn)
        _cases(conn)
    return engine


@pytest.fixture
def conn(store: Engine) -> Iterator[Connection]:
    with store.begin() as connection:
        yield connection


# --------------------------------------------------------------------------------------------
# helpers


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", "utf-8")
    return path


def write_csv(path: Path, rows: list[dict[str, Any]], encoding: str = "utf-8") -> Path:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", encoding=encoding, newline="") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def quarantined(batch: EventBatch) -> dict[str, str]:
    """Reason of each quarantined row, by its event_id.

    The reason is the last column: it is called ``quarantine_reason`` when the file has a
    ``reason`` column of its own (an attribute of points_changed).
    """
    assert batch.quarantine_file is not None
    with batch.quarantine_file.open(encoding="utf-8-sig", newline="") as fh:
        header, *rows = list(csv.reader(fh))
    assert header[-1] in ("reason", "quarantine_reason")
    return {row[header.index("event_id")]: row[-1] for row in rows}


def by_key(batch: EventBatch) -> dict[str, dict[str, Any]]:
    return {row["event_key"]: row for row in batch.events.to_dicts()}


def read(path: Path, conn: Connection) -> EventBatch:
    return read_event_file(path, conn, zone=ZONE)


# --------------------------------------------------------------------------------------------
# reading files: happy paths


def test_jsonl_events_resolve_customers_and_attributes(tmp_path: Path, conn: Connection) -> None:
    path = write_jsonl(
        tmp_path / "events.jsonl",
        [
            {"event_id": "1", "type": "complaint_opened",
             "occurred_at": "2024-05-01T10:00:00+08:00", "mobile": "138 0013 8000",
             "severity": "Severe", "complaint_no": "C-9"},
            {"event_id": "2", "type": "wecom_friend_added", "occurred_at": "2024-05-01T10:00:00Z",
             "external_userid": "wm_bob",
             "attributes": {"channel_code": "店内活码", "staff_no": "S001"}},
            {"event_id": "3", "type": "call_outcome", "occurred_at": "2024-05-01 10:00",
             "customer_id": CAROL, "outcome": "booked", "task_id": 42},
            {"event_id": "4", "type": "reply_keyword", "occurred_at": "2024-05-01 10:00:30",
             "customer_id": "1", "attributes": {"keyword": "  退订 ", "channel": "SMS"}},
        ],
    )  # fmt: skip
    batch = read(path, conn)
    assert batch.events.schema == EVENT_SCHEMA
    assert (batch.rows_read, batch.quarantined, batch.quarantine_file) == (4, 0, None)
    assert not (tmp_path / "events.quarantine.csv").exists()
    events = by_key(batch)
    assert list(events) == ["ext:1", "ext:2", "ext:3", "ext:4"]
    assert {k: e["customer_id"] for k, e in events.items()} == {
        "ext:1": ALICE,
        "ext:2": BOB,
        "ext:3": CAROL,
        "ext:4": ALICE,
    }
    # Canonical JSON: sorted keys, compact, Chinese kept; choices lower-cased, ints as numbers,
    # a keyword only trimmed.
    assert events["ext:1"]["attributes"] == '{"complaint_no":"C-9","severity":"severe"}'
    assert events["ext:2"]["attributes"] == '{"channel_code":"店内活码","staff_no":"S001"}'
    assert events["ext:3"]["attributes"] == '{"outcome":"booked","task_id":42}'
    assert json.loads(events["ext:4"]["attributes"]) == {"channel": "sms", "keyword": "退订"}
    assert set(batch.events.get_column("source")) == {"file:events.jsonl"}


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("2024-05-01T10:00:00+08:00", utc(2024, 5, 1, 2, 0)),
        ("2024-05-01T10:00:00Z", utc(2024, 5, 1, 10, 0)),
        ("2024-05-01T10:00:00.250-05:00", dt.datetime(2024, 5, 1, 15, 0, 0, 250_000, UTC)),
        ("2024-05-01T10:00:00", utc(2024, 5, 1, 2, 0)),  # naive: business time
        ("2024-05-01 10:00", utc(2024, 5, 1, 2, 0)),
        ("2024-05-01 10:00:59", utc(2024, 5, 1, 2, 0, 59)),
    ],
)
def test_times_become_utc(
    tmp_path: Path, conn: Connection, written: str, expected: dt.datetime
) -> None:
    row = {"type": "price_change", "occurred_at": written, "model": "远峰"}
    batch = read(write_jsonl(tmp_path / "t.jsonl", [row]), conn)
    assert batch.events.get_column("occurred_at").to_list() == [expected]


def test_csv_with_bom(tmp_path: Path, conn: Connection) -> None:
    rows: list[dict[str, Any]] = [
        {"type": "service_visit", "occurred_at": "2024-05-02 09:30", "mobile": "13900139000",
         "order_type": "maintenance", "order_no": "SO-1", "event_id": ""},
        {"type": "new_model_launch", "occurred_at": "2024-05-02 09:30", "mobile": "",
         "order_type": "", "order_no": "", "series": "星岚", "event_id": "launch-1"},
    ]  # fmt: skip
    batch = read(write_csv(tmp_path / "bom.csv", rows, encoding="utf-8-sig"), conn)
    assert batch.quarantined == 0
    visit, launch = batch.events.to_dicts()
    assert visit["event_key"].startswith("h:") and len(visit["event_key"]) == 26
    assert (visit["customer_id"], visit["occurred_at"]) == (BOB, utc(2024, 5, 2, 1, 30))
    assert visit["attributes"] == '{"order_no":"SO-1","order_type":"maintenance"}'
    # A model event has no customer.
    assert launch == {
        "event_key": "ext:launch-1",
        "type": "new_model_launch",
        "customer_id": None,
        "occurred_at": utc(2024, 5, 2, 1, 30),
        "attributes": '{"series":"星岚"}',
        "source": "file:bom.csv",
    }


def test_csv_in_gbk(tmp_path: Path, conn: Connection) -> None:
    rows: list[dict[str, Any]] = [
        {"Type": "complaint_resolved", "Occurred At": "2024-05-03 12:00",
         "Customer ID": str(BOB), "complaint_no": "投诉-甲", "event_id": "g1"},
    ]  # fmt: skip
    path = write_csv(tmp_path / "gbk.csv", rows, encoding="gb18030")
    batch = read(path, conn)
    assert batch.quarantined == 0
    assert batch.events.get_column("attributes").to_list() == ['{"complaint_no":"投诉-甲"}']
    assert batch.events.get_column("customer_id").to_list() == [BOB]


def test_empty_unknown_csv_column_is_ignored_but_a_filled_one_is_not(
    tmp_path: Path, conn: Connection
) -> None:
    rows: list[dict[str, Any]] = [
        {"event_id": "ok", "type": "booking", "occurred_at": "2024-05-03 12:00",
         "customer_id": "1", "booked_for": "2024-05-10", "colour": ""},
        {"event_id": "typo", "type": "booking", "occurred_at": "2024-05-03 12:00",
         "customer_id": "1", "booked_for": "", "colour": "red"},
    ]  # fmt: skip
    batch = read(write_csv(tmp_path / "extra.csv", rows), conn)
    assert batch.events.get_column("event_key").to_list() == ["ext:ok"]
    assert quarantined(batch) == {
        "typo": "unknown attribute 'colour' for booking (its attributes: booked_for)"
    }


# --------------------------------------------------------------------------------------------
# reading files: what is quarantined, and why

GOOD: dict[str, Any] = {
    "type": "first_maintenance_done",
    "occurred_at": "2024-05-03 12:00",
    "customer_id": 1,
}

BAD_ROWS: dict[str, tuple[dict[str, Any], str]] = {
    "unknown-type": ({"type": "test_drove"}, "unknown event type 'test_drove'"),
    "missing-type": ({"type": None}, "type is missing"),
    "bad-time": (
        {"occurred_at": "03/05/2024"},
        "occurred_at '03/05/2024' is not a time like 2024-05-01T10:00:00+08:00",
    ),
    "no-time": ({"occurred_at": None}, "occurred_at is missing"),
    "unknown-id": ({"customer_id": 999}, "customer_id 999 is not a known customer"),
    "bad-id": ({"customer_id": "abc"}, "customer_id 'abc' is not a whole number"),
    "unknown-mobile": (
        {"customer_id": None, "mobile": "13700137000"},
        "mobile 137****7000 is not a known customer",
    ),
    "bad-mobile": (
        {"customer_id": None, "mobile": "12345"},
        "mobile ***** is not a valid mobile number",
    ),
    "unknown-wecom": (
        {"customer_id": None, "external_userid": "wm_ghost"},
        "external_userid wm_ghost is not a known customer",
    ),
    "no-customer": (
        {"customer_id": None},
        "first_maintenance_done needs a customer: give customer_id, mobile or external_userid",
    ),
    "missing-required": (
        {"type": "complaint_opened", "complaint_no": "C1"},
        "complaint_opened needs severity",
    ),
    "bad-choice": (
        {"type": "complaint_opened", "severity": "huge"},
        "severity 'huge' is not one of: severe, medium, light",
    ),
    "not-int": (
        {"type": "points_changed", "reason": "service", "points": "many"},
        "points 'many' is not a whole number",
    ),
    "unknown-attribute": (
        {"type": "service_visit", "order_typ": "repair"},
        "unknown attribute 'order_typ' for service_visit (its attributes: order_type, order_no)",
    ),
    "model-without-model": (
        {"type": "price_change", "customer_id": None},
        "price_change needs model or series",
    ),
    "model-with-customer": (
        {"type": "stock_arrival", "model": "远峰"},
        "stock_arrival is about a car model and takes no customer",
    ),
    "nested-not-object": ({"attributes": "[1]"}, "attributes must be a JSON object"),
    "nested-clash": (
        {"type": "service_visit", "order_no": "A", "attributes": {"order_no": "B"}},
        "attribute 'order_no' is given twice with different values",
    ),
}


def test_each_bad_row_is_quarantined_with_its_reason(tmp_path: Path, conn: Connection) -> None:
    rows = [{**GOOD, "event_id": "good-1"}]
    rows += [{**GOOD, **change, "event_id": name} for name, (change, _) in BAD_ROWS.items()]
    rows.append({**GOOD, "event_id": "good-2", "occurred_at": "2024-05-04 12:00"})
    batch = read(write_jsonl(tmp_path / "mixed.jsonl", rows), conn)

    assert batch.events.get_column("event_key").to_list() == ["ext:good-1", "ext:good-2"]
    assert (batch.rows_read, batch.quarantined) == (len(rows), len(BAD_ROWS))
    assert batch.quarantine_file == tmp_path / "mixed.quarantine.csv"
    reasons = quarantined(batch)
    assert set(reasons) == set(BAD_ROWS)
    for name, (_, reason) in BAD_ROWS.items():
        assert reason in reasons[name], name
    # The reason never spells out a customer's mobile.
    assert "13700137000" not in reasons["unknown-mobile"]


def test_several_problems_of_one_row_are_all_named(tmp_path: Path, conn: Connection) -> None:
    row = {"event_id": "x", "type": "call_outcome", "occurred_at": "soon", "customer_id": 1,
           "outcome": "maybe", "task_id": "t-1"}  # fmt: skip
    batch = read(write_jsonl(tmp_path / "many.jsonl", [row]), conn)
    reason = quarantined(batch)["x"]
    assert reason.split("; ")[0].startswith("occurred_at 'soon'")
    assert "outcome 'maybe' is not one of: connected," in reason
    assert "task_id 't-1' is not a whole number" in reason


def test_a_file_of_bad_rows_returns_no_events(tmp_path: Path, conn: Connection) -> None:
    rows: list[dict[str, Any]] = [
        {"event_id": str(i), "type": "nope", "occurred_at": "2024-05-01 10:00"} for i in range(3)
    ]
    batch = read(write_jsonl(tmp_path / "bad.jsonl", rows), conn)
    assert batch.events.height == 0
    assert batch.events.schema == EVENT_SCHEMA
    assert (batch.rows_read, batch.quarantined) == (3, 3)


def test_broken_json_lines_are_quarantined(tmp_path: Path, conn: Connection) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps({**GOOD, "event_id": "fine"}) + "\n{not json\n", "utf-8")
    batch = read(path, conn)
    assert batch.events.get_column("event_key").to_list() == ["ext:fine"]
    assert batch.quarantined == 1


def test_a_stale_quarantine_file_is_removed(tmp_path: Path, conn: Connection) -> None:
    stale = tmp_path / "clean.quarantine.csv"
    stale.write_text("old", "utf-8")
    read(write_jsonl(tmp_path / "clean.jsonl", [GOOD]), conn)
    assert not stale.exists()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("events.xlsx", "x", "must be JSON Lines (.jsonl, .ndjson) or CSV (.csv)"),
        ("events.txt", "x", "must be JSON Lines"),
        ("missing.jsonl", None, "file not found"),
        ("array.json", '[{"type": "booking"}]', "JSON array is not supported"),
        ("plain.json", "type,occurred_at\nbooking,2024-05-01 10:00\n", "does not hold JSON Lines"),
        ("notype.csv", "kind,occurred_at\nbooking,2024-05-01 10:00\n", "no type column"),
        ("empty.csv", "", "file is empty"),
    ],
)
def test_unusable_files_raise_input_error(
    tmp_path: Path, conn: Connection, name: str, content: str | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content, "utf-8")
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read(path, conn)


# --------------------------------------------------------------------------------------------
# keys and storing


def _stored(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(m.Event.__table__)).scalar_one())


def test_same_file_twice_stores_nothing_new(tmp_path: Path, conn: Connection) -> None:
    rows: list[dict[str, Any]] = [
        {"type": "reply_keyword", "occurred_at": "2024-05-01 10:00", "customer_id": 1,
         "keyword": "TD"},
        {"type": "reply_keyword", "occurred_at": "2024-05-01 10:00", "customer_id": 1,
         "keyword": "TD"},  # the same event twice: one key
        {"type": "reply_keyword", "occurred_at": "2024-05-01 10:00", "mobile": ALICE_MOBILE,
         "keyword": "TD"},  # the same event by another reference: the same key again
        {"type": "reply_keyword", "occurred_at": "2024-05-01 10:01", "customer_id": 1,
         "keyword": "TD"},
        {"type": "stock_arrival", "occurred_at": "2024-05-01 10:00", "model": "远峰",
         "event_id": "stock-7"},
    ]  # fmt: skip
    path = write_jsonl(tmp_path / "replies.jsonl", rows)
    first = read(path, conn)
    assert first.events.height == 3
    assert store_events(conn, first.events) == 3
    again = read(path, conn)
    assert again.events.equals(first.events)
    assert store_events(conn, again.events) == 0
    assert _stored(conn) == 3
    stored = conn.execute(select(m.Event.__table__.c.event_key, m.Event.__table__.c.occurred_at))
    assert {(k, t.replace(tzinfo=UTC) if t.tzinfo is None else t) for k, t in stored} == {
        (k, t) for k, t in first.events.select("event_key", "occurred_at").iter_rows()
    }


def test_renamed_file_gives_the_same_keys(tmp_path: Path, conn: Connection) -> None:
    rows = [GOOD]
    one = read(write_jsonl(tmp_path / "a.jsonl", rows), conn)
    two = read(write_csv(tmp_path / "b.csv", rows), conn)
    assert one.events.get_column("event_key").equals(two.events.get_column("event_key"))


def test_store_events_of_an_empty_frame(conn: Connection) -> None:
    assert store_events(conn, pl.DataFrame(schema=EVENT_SCHEMA)) == 0


# --------------------------------------------------------------------------------------------
# events derived from records

EXPECTED_RECORD_EVENTS = {
    "rec:vehicle_delivered:2": (
        ALICE,
        day_start(dt.date(2024, 5, 31)),
        {"series": "星岚", "vin": "LVIN0000000000002"},
    ),
    "rec:service_visit:1": (
        ALICE,
        day_start(dt.date(2024, 5, 15)),
        {"order_no": "SO1", "order_type": "maintenance"},
    ),
    "rec:complaint_opened:1": (
        BOB,
        utc(2024, 5, 10, 1, 0),
        {"complaint_no": "C1", "severity": "severe"},
    ),
    "rec:complaint_resolved:2": (
        BOB,
        utc(2024, 5, 12, 1, 0),
        {"complaint_no": "C2", "severity": "light"},
    ),
    "rec:lead_lost:1": (
        CAROL,
        day_start(dt.date(2024, 5, 5)),
        {"lead_no": "L1", "lost_reason": "unknown", "stage": "test_drive"},
    ),
    "rec:referral_stage:1:test_drive": (
        ALICE,
        utc(2024, 5, 6, 3, 0),
        {"referee_name": "周先生", "stage": "test_drive"},
    ),
    "rec:points_changed:1": (ALICE, utc(2024, 5, 15, 4, 0), {"points": 200, "reason": "service"}),
    # Unknown reasons: spending points is a redemption, earning them an activity.
    "rec:points_changed:2": (
        ALICE,
        utc(2024, 5, 16, 4, 0),
        {"points": -100, "reason": "redemption"},
    ),
    "rec:points_changed:3": (ALICE, utc(2024, 5, 17, 4, 0), {"points": 50, "reason": "activity"}),
    "rec:points_changed:4": (ALICE, UNTIL.astimezone(UTC), {"points": 10, "reason": "activity"}),
    "rec:wecom_friend_added:1": (
        BOB,
        utc(2024, 5, 3, 2, 0),
        {"channel_code": "delivery_qr", "staff_no": "S001"},
    ),
    "rec:wecom_friend_deleted:1": (
        BOB,
        utc(2024, 5, 20, 2, 0),
        {"deleted_by": "customer", "staff_no": "S001"},
    ),
}


def test_derive_record_events_in_the_window(conn: Connection) -> None:
    events = derive_record_events(conn, SINCE, UNTIL, zone=ZONE)
    assert events.schema == EVENT_SCHEMA
    got = {
        row["event_key"]: (row["customer_id"], row["occurred_at"], json.loads(row["attributes"]))
        for row in events.to_dicts()
    }
    assert got == EXPECTED_RECORD_EVENTS
    assert set(events.get_column("source")) == {"records"}
    assert events.get_column("occurred_at").is_sorted()
    types = dict(zip(events.get_column("event_key"), events.get_column("type"), strict=True))
    assert all(key.split(":")[1] == kind for key, kind in types.items())


def test_derived_attributes_are_canonical_json(conn: Connection) -> None:
    events = derive_record_events(conn, SINCE, UNTIL, zone=ZONE)
    for text in events.get_column("attributes"):
        obj = json.loads(text)
        assert text == json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def test_derive_outside_any_record(conn: Connection) -> None:
    since = dt.datetime(2023, 1, 1, tzinfo=UTC)
    assert derive_record_events(conn, since, since + dt.timedelta(days=30), zone=ZONE).height == 0


def test_derived_events_are_stored_once(conn: Connection) -> None:
    events = derive_record_events(conn, SINCE, UNTIL, zone=ZONE)
    assert store_events(conn, events) == len(EXPECTED_RECORD_EVENTS)
    assert store_events(conn, derive_record_events(conn, SINCE, UNTIL, zone=ZONE)) == 0
    # A wider window adds only what the narrower one did not have.
    wider = derive_record_events(conn, SINCE, UNTIL + dt.timedelta(days=5), zone=ZONE)
    assert store_events(conn, wider) == 2  # the June service order and the resolved complaint


def test_derive_needs_aware_times(conn: Connection) -> None:
    with pytest.raises(ValueError, match="time-zone aware"):
        derive_record_events(conn, dt.datetime(2024, 5, 1), UNTIL, zone=ZONE)
