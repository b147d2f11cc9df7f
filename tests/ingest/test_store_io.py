"""Key lookups into the store: found or not, the same columns and types on both backends."""

from __future__ import annotations

import datetime as dt

import polars as pl
from sqlalchemy import Engine, insert

from baoke.ingest.store_io import collect_small, fetch_by_keys
from baoke.store import models as m
from baoke.store.models import table


def _dealer_and_customer(engine: Engine) -> int:
    with engine.begin() as conn:
        conn.execute(insert(table(m.Dealer)).values(id=1, code="D1", name="一店"))
        conn.execute(
            insert(table(m.Customer)).values(
                id=7,
                name="张三",
                home_dealer_id=1,
                created_at=dt.datetime(2026, 3, 1, 8, 30, tzinfo=dt.UTC),
                updated_at=dt.datetime(2026, 3, 1, 8, 30, tzinfo=dt.UTC),
            )
        )
    return 7


def test_lookup_that_finds_nothing_has_the_columns_of_one_that_finds(engine: Engine) -> None:
    customer = _dealer_and_customer(engine)
    columns = ["name", "home_dealer_id", "created_at"]
    with engine.connect() as conn:
        found = fetch_by_keys(
            conn,
            table(m.Customer),
            ["id"],
            pl.DataFrame({"id": [customer, customer, None]}),
            columns,
        )
        missing = fetch_by_keys(
            conn, table(m.Customer), ["id"], pl.DataFrame({"id": [999]}), columns
        )
    assert found.height == 1  # the key given twice (and a null) asks once
    assert found.row(0, named=True) == {
        "id": customer,
        "name": "张三",
        "home_dealer_id": 1,
        "created_at": dt.datetime(2026, 3, 1, 8, 30, tzinfo=dt.UTC),
    }
    assert missing.height == 0
    assert missing.schema == found.schema
    assert found.schema["created_at"] == pl.Datetime("us", "UTC")


def test_collect_small_gives_what_the_default_engine_gives() -> None:
    frame = pl.DataFrame({"k": [3, 1, 3, None, 2], "v": ["c", "a", "c", "n", "b"]})
    query = frame.lazy().drop_nulls().unique("k", keep="first", maintain_order=True).sort("k")
    assert collect_small(query).equals(query.collect())
