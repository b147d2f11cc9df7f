"""Bulk reads and writes between polars frames and the store, the same on SQLite and PostgreSQL.

The import path never touches rows one at a time: it fetches the existing rows for a whole batch
of natural keys, compares in polars, and writes inserts and updates with one executemany each.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

import polars as pl
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    Time,
    bindparam,
    func,
    insert,
    select,
    text,
    tuple_,
    update,
)

# Enough for SQLite's bound-parameter limit and PostgreSQL's, with composite keys too.
KEY_CHUNK = 5_000


def polars_dtype(column: Column[Any]) -> pl.DataType:
    """The polars dtype that holds the values of a store column."""
    kind = column.type
    if isinstance(kind, DateTime):
        return pl.Datetime("us", "UTC")
    if isinstance(kind, Date):
        return pl.Date()
    if isinstance(kind, Time):
        return pl.Time()
    if isinstance(kind, Boolean):
        return pl.Boolean()
    if isinstance(kind, BigInteger | Integer | SmallInteger):
        return pl.Int64()
    if isinstance(kind, String | Text):
        return pl.String()
    return pl.String()


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def to_utc(frame: pl.DataFrame) -> pl.DataFrame:
    """Make every datetime column UTC-aware (SQLite gives naive UTC, PostgreSQL aware values)."""
    fixes = []
    for name, dtype in frame.schema.items():
        if isinstance(dtype, pl.Datetime):
            col = pl.col(name).dt.cast_time_unit("us")
            if dtype.time_zone is None:
                fixes.append(col.dt.replace_time_zone("UTC").alias(name))
            elif dtype.time_zone != "UTC":
                fixes.append(col.dt.convert_time_zone("UTC").alias(name))
            else:
                fixes.append(col.alias(name))
    return frame.with_columns(fixes) if fixes else frame


def collect_small(query: pl.LazyFrame) -> pl.DataFrame:
    """Run a lazy query on the in-memory engine.

    For the engine's frames of a few rows to a few tens of thousands, Polars' automatic
    choice sometimes picks the streaming engine (for a ``unique``, say), whose start-up costs
    about 0.7 ms a query here: two to four times the whole query in memory.
    """
    return query.collect(engine="in-memory")


def fetch_by_keys(
    conn: Connection,
    table: Table,
    key: Sequence[str],
    keys: pl.DataFrame,
    columns: Sequence[str],
    *,
    where: str = "",
) -> pl.DataFrame:
    """Rows of ``table`` whose ``key`` columns match a row of ``keys``; only ``columns`` returned.

    ``keys`` holds the key columns (named as in the table); nulls are skipped. A single-column
    key goes straight to the driver (one ``= ANY`` query on PostgreSQL, chunked ``IN`` on
    SQLite): this lookup runs for every batch of every import and must stay cheap. ``where``
    narrows a single-column lookup further in SQL (a fixed condition without parameters, e.g.
    ``type IN ('a', 'b')``), so rows the caller would drop are never sent.
    """
    wanted = list(dict.fromkeys([*key, *columns]))
    schema = {name: polars_dtype(table.c[name]) for name in wanted}
    distinct = collect_small(keys.lazy().select(list(key)).drop_nulls().unique())
    if distinct.height == 0:
        return pl.DataFrame(schema=schema)
    if len(key) == 1:
        values = distinct.get_column(key[0])
        return _fetch_single_key(conn, table, key[0], values, wanted, schema, where)
    if where:
        raise ValueError("fetch_by_keys: where narrows single-column lookups only")
    if conn.dialect.name == "postgresql":
        return _fetch_composite_pg(conn, table, key, distinct, wanted, schema)
    if conn.dialect.name == "sqlite":
        return _fetch_composite_sqlite(conn, table, key, distinct, wanted, schema)
    parts: list[pl.DataFrame] = []
    cols = [table.c[name] for name in wanted]
    target = tuple_(*(table.c[name] for name in key))
    for chunk in _chunks(distinct.rows(), KEY_CHUNK // len(key)):
        rows = conn.execute(select(*cols).where(target.in_(chunk))).all()
        parts.append(_frame(rows, schema))
    return to_utc(pl.concat(parts))


def _fetch_single_key(
    conn: Connection,
    table: Table,
    key: str,
    values: pl.Series,
    wanted: list[str],
    schema: dict[str, pl.DataType],
    where: str = "",
) -> pl.DataFrame:
    raw = conn.connection.driver_connection
    assert raw is not None
    names = ", ".join(wanted)
    narrow = f" AND ({where})" if where else ""
    cursor = raw.cursor()
    rows: list[Any] = []
    try:
        if conn.dialect.name == "postgresql":
            cursor.execute(
                f"SELECT {names} FROM {table.name} WHERE {key} = ANY(%s){narrow}",
                (values.to_list(),),
            )
            rows = cursor.fetchall()
            return to_utc(_frame(rows, schema))
        for chunk in _chunks(values.to_list(), KEY_CHUNK):
            marks = ",".join("?" * len(chunk))
            cursor.execute(
                f"SELECT {names} FROM {table.name} WHERE {key} IN ({marks}){narrow}", chunk
            )
            rows.extend(cursor.fetchall())
    finally:
        cursor.close()
    return _from_sqlite(rows, schema)


def _pg_type(column: Column[Any]) -> str:
    kind = column.type
    if isinstance(kind, BigInteger | Integer | SmallInteger):
        return "bigint"
    if isinstance(kind, Date):
        return "date"
    if isinstance(kind, DateTime):
        return "timestamptz"
    if isinstance(kind, Boolean):
        return "boolean"
    return "text"


def _fetch_composite_pg(
    conn: Connection,
    table: Table,
    key: Sequence[str],
    distinct: pl.DataFrame,
    wanted: list[str],
    schema: dict[str, pl.DataType],
) -> pl.DataFrame:
    """Composite keys on PostgreSQL: join against unnest()ed arrays, which the planner turns
    into an index or hash join; a long ``(a, b) IN (...)`` list would be a filter per row."""
    raw = conn.connection.driver_connection
    assert raw is not None
    arrays = ", ".join(f"%s::{_pg_type(table.c[name])}[]" for name in key)
    on = " AND ".join(f"t.{name} = k.{name}" for name in key)
    names = ", ".join(f"t.{name}" for name in wanted)
    sql = f"SELECT {names} FROM {table.name} t JOIN unnest({arrays}) AS k({', '.join(key)}) ON {on}"
    with raw.cursor() as cursor:
        cursor.execute(sql, [distinct.get_column(name).to_list() for name in key])
        rows = cursor.fetchall()
    return to_utc(_frame(rows, schema))


def _fetch_composite_sqlite(
    conn: Connection,
    table: Table,
    key: Sequence[str],
    distinct: pl.DataFrame,
    wanted: list[str],
    schema: dict[str, pl.DataType],
) -> pl.DataFrame:
    """Composite keys on SQLite: the keys as a VALUES list joined to the table. CROSS JOIN
    fixes the order (keys outside), so SQLite probes the unique index once per key; a
    row-value ``IN`` list would scan the whole table instead."""
    raw = conn.connection.driver_connection
    assert raw is not None
    names = ", ".join(f"t.{name}" for name in wanted)
    on = " AND ".join(f"t.{name} = k.column{i}" for i, name in enumerate(key, start=1))
    one = "(" + ", ".join("?" * len(key)) + ")"
    rows: list[Any] = []
    cursor = raw.cursor()
    try:
        for chunk in _chunks(distinct.select(list(key)).rows(), KEY_CHUNK // len(key)):
            values = ", ".join([one] * len(chunk))
            cursor.execute(
                f"SELECT {names} FROM (VALUES {values}) AS k CROSS JOIN {table.name} AS t ON {on}",
                [value for row in chunk for value in row],
            )
            rows.extend(cursor.fetchall())
    finally:
        cursor.close()
    return _from_sqlite(rows, schema)


def _from_sqlite(rows: list[Any], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """SQLite hands back dates and times as the text SQLAlchemy stored; parse them in bulk."""
    if not rows:  # a third of the engine's lookups find nothing: no frame to parse
        return pl.DataFrame(
            schema={
                name: pl.Datetime("us", "UTC") if isinstance(dtype, pl.Datetime) else dtype
                for name, dtype in schema.items()
            }
        )
    stored = {
        name: (
            pl.String()
            if isinstance(dtype, pl.Date | pl.Datetime | pl.Time)
            else pl.Int64()
            if isinstance(dtype, pl.Boolean)
            else dtype
        )
        for name, dtype in schema.items()
    }
    frame = pl.DataFrame(rows, schema=stored, orient="row")
    fixes = []
    for name, dtype in schema.items():
        col = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            fixes.append(col.str.to_datetime(strict=False, time_unit="us", time_zone="UTC"))
        elif isinstance(dtype, pl.Date):
            fixes.append(col.str.slice(0, 10).str.to_date("%Y-%m-%d"))
        elif isinstance(dtype, pl.Time):
            fixes.append(col.str.to_time("%H:%M:%S%.f"))
        elif isinstance(dtype, pl.Boolean):
            fixes.append(col.cast(pl.Boolean))
    return frame.with_columns(fixes) if fixes else frame


def fetch_all(conn: Connection, table: Table, columns: Sequence[str]) -> pl.DataFrame:
    """A whole (small) table, e.g. dealers or staff, as a frame."""
    schema = {name: polars_dtype(table.c[name]) for name in columns}
    rows = conn.execute(select(*(table.c[name] for name in columns))).all()
    return to_utc(_frame(rows, schema))


def _frame(rows: Sequence[Any], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    naive = {
        name: (pl.Datetime("us") if isinstance(dtype, pl.Datetime) else dtype)
        for name, dtype in schema.items()
    }
    data = [tuple(row) for row in rows]
    frame = pl.DataFrame(data, schema=naive, orient="row", strict=False)
    return frame


def _python_rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    # polars gives aware datetimes for UTC columns, which both dialects store correctly.
    return frame.to_dicts()


def bulk_insert(conn: Connection, table: Table, frame: pl.DataFrame) -> None:
    """Insert every row of ``frame`` (columns named as in the table) in one go.

    PostgreSQL: ``COPY … FROM STDIN`` in CSV; SQLite: one driver ``executemany`` with values
    already in SQLAlchemy's storage format, so the two paths read back identically.
    """
    if frame.height == 0:
        return
    raw = conn.connection.driver_connection
    assert raw is not None
    names = ", ".join(frame.columns)
    if conn.dialect.name == "postgresql":
        _copy_into(raw, table.name, frame)
        return
    if conn.dialect.name != "sqlite":
        conn.execute(insert(table), _python_rows(frame))
        return
    marks = ", ".join("?" * frame.width)
    cursor = raw.cursor()
    try:
        cursor.executemany(
            f"INSERT INTO {table.name} ({names}) VALUES ({marks})", _sqlite_values(frame).rows()
        )
    finally:
        cursor.close()


def bulk_insert_new(conn: Connection, table: Table, frame: pl.DataFrame, conflict: str) -> None:
    """Like :func:`bulk_insert`, but rows that would violate a unique index are skipped.

    ``conflict`` is the ``ON CONFLICT`` target, e.g. ``(segment, customer_id) WHERE exited_on
    IS NULL`` for a partial unique index. PostgreSQL copies into a temporary table first,
    because ``COPY`` itself cannot skip conflicts.
    """
    if frame.height == 0:
        return
    raw = conn.connection.driver_connection
    assert raw is not None
    names = ", ".join(frame.columns)
    if conn.dialect.name == "postgresql":
        _through_staging(
            raw,
            table,
            frame,
            f"INSERT INTO {table.name} ({names}) SELECT {names} FROM _staged "
            f"ON CONFLICT {conflict} DO NOTHING",
        )
        return
    marks = ", ".join("?" * frame.width)
    cursor = raw.cursor()
    try:
        cursor.executemany(
            f"INSERT INTO {table.name} ({names}) VALUES ({marks}) "
            f"ON CONFLICT {conflict} DO NOTHING",
            _sqlite_values(frame).rows(),
        )
    finally:
        cursor.close()


def _sqlite_values(frame: pl.DataFrame) -> pl.DataFrame:
    """Dates, times and datetimes as the text SQLAlchemy writes to SQLite; booleans as 0/1."""
    fixes = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            utc = col.dt.convert_time_zone("UTC") if dtype.time_zone else col
            fixes.append(utc.dt.strftime("%Y-%m-%d %H:%M:%S.%6f"))
        elif isinstance(dtype, pl.Date):
            fixes.append(col.dt.strftime("%Y-%m-%d"))
        elif isinstance(dtype, pl.Time):
            fixes.append(col.dt.strftime("%H:%M:%S.%6f"))
        elif isinstance(dtype, pl.Boolean):
            fixes.append(col.cast(pl.Int8))
    return frame.with_columns(fixes) if fixes else frame


def _through_staging(raw: Any, table: Table, frame: pl.DataFrame, statement: str) -> None:
    """PostgreSQL: ``COPY`` the frame into a temporary ``_staged`` table with ``table``'s types
    for its columns, run ``statement`` (which reads ``_staged``), and drop it.

    For what ``COPY`` cannot do by itself: skip conflicts, update in place.
    """
    names = ", ".join(frame.columns)
    with raw.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE _staged ON COMMIT DROP AS "
            f"SELECT {names} FROM {table.name} WITH NO DATA"
        )
    _copy_into(raw, "_staged", frame)
    with raw.cursor() as cursor:
        cursor.execute(statement)
        cursor.execute("DROP TABLE _staged")


def _copy_into(raw: Any, table: str, frame: pl.DataFrame) -> None:
    """PostgreSQL's COPY in CSV: many times faster than INSERT for large batches."""
    fixes = [
        pl.col(name).dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%d %H:%M:%S%.6f+00")
        for name, dtype in frame.schema.items()
        if isinstance(dtype, pl.Datetime) and dtype.time_zone
    ]
    data = (frame.with_columns(fixes) if fixes else frame).write_csv(
        include_header=False, null_value="", quote_style="non_numeric"
    )
    statement = f"COPY {table} ({', '.join(frame.columns)}) FROM STDIN WITH (FORMAT csv)"
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        copy.write(data.encode("utf-8"))


def bulk_upsert(conn: Connection, table: Table, frame: pl.DataFrame, key: str) -> None:
    """Insert or replace rows by the unique ``key`` column, in one pass.

    SQLite: one ``executemany`` of ``INSERT … ON CONFLICT DO UPDATE`` (half the work of a
    delete and an insert). PostgreSQL: delete the keys with one ``= ANY``, then ``COPY``.
    """
    if frame.height == 0:
        return
    raw = conn.connection.driver_connection
    assert raw is not None
    if conn.dialect.name == "postgresql":
        with raw.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {table.name} WHERE {key} = ANY(%s)", (frame[key].to_list(),)
            )
        _copy_into(raw, table.name, frame)
        return
    names = ", ".join(frame.columns)
    marks = ", ".join("?" * frame.width)
    updates = ", ".join(f"{c} = excluded.{c}" for c in frame.columns if c != key)
    cursor = raw.cursor()
    try:
        cursor.executemany(
            f"INSERT INTO {table.name} ({names}) VALUES ({marks}) "
            f"ON CONFLICT ({key}) DO UPDATE SET {updates}",
            _sqlite_values(frame).rows(),
        )
    finally:
        cursor.close()


def bulk_update(conn: Connection, table: Table, frame: pl.DataFrame, key: str = "id") -> None:
    """Update rows matched on ``key`` with the other columns of ``frame``; touches updated_at.

    PostgreSQL: ``COPY`` into a temporary table and one ``UPDATE … FROM``; SQLite: one driver
    ``executemany``. (A delete-and-copy would be faster still, but rows that others reference,
    such as journeys, cannot be deleted.)
    """
    if frame.height == 0:
        return
    columns = [name for name in frame.columns if name != key]
    stamp = "updated_at" in table.c and "updated_at" not in columns
    raw = conn.connection.driver_connection
    assert raw is not None
    if conn.dialect.name == "postgresql":
        sets = [f"{c} = u.{c}" for c in columns] + (["updated_at = now()"] if stamp else [])
        _through_staging(
            raw,
            table,
            frame,
            f"UPDATE {table.name} t SET {', '.join(sets)} FROM _staged u WHERE t.{key} = u.{key}",
        )
        return
    if conn.dialect.name != "sqlite":
        _update_generic(conn, table, frame, key, columns, stamp)
        return
    sets = [f"{c} = ?" for c in columns] + (["updated_at = CURRENT_TIMESTAMP"] if stamp else [])
    cursor = raw.cursor()
    try:
        cursor.executemany(
            f"UPDATE {table.name} SET {', '.join(sets)} WHERE {key} = ?",
            _sqlite_values(frame.select([*columns, key])).rows(),
        )
    finally:
        cursor.close()


def _update_generic(
    conn: Connection, table: Table, frame: pl.DataFrame, key: str, columns: list[str], stamp: bool
) -> None:
    values: dict[str, Any] = {name: bindparam(f"v_{name}") for name in columns}
    if stamp:
        values["updated_at"] = func.current_timestamp()
    statement = update(table).where(table.c[key] == bindparam("k_key")).values(values)
    renamed = frame.rename({name: f"v_{name}" for name in columns} | {key: "k_key"})
    conn.execute(statement, _python_rows(renamed))


def query_frame(
    conn: Connection, sql: str, params: Sequence[Any], schema: dict[str, pl.DataType]
) -> pl.DataFrame:
    """Run ``sql`` (``?`` placeholders) through the driver and return a frame of ``schema``.

    For large reads where SQLAlchemy's per-row result processing would dominate. Datetime
    parameters must be UTC-aware; they are passed as SQLite's stored text or as is.
    """
    raw = conn.connection.driver_connection
    assert raw is not None
    cursor = raw.cursor()
    try:
        if conn.dialect.name == "postgresql":
            cursor.execute(sql.replace("?", "%s"), list(params))
            return to_utc(_frame(cursor.fetchall(), schema))
        cursor.execute(sql, [_sqlite_param(p) for p in params])
        return _from_sqlite(cursor.fetchall(), schema)
    finally:
        cursor.close()


def _sqlite_param(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        utc = value.astimezone(dt.UTC) if value.tzinfo else value
        return utc.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def allocate_ids(conn: Connection, table: Table, count: int) -> pl.Series:
    """Reserve ``count`` new primary keys for ``table``, so related rows can be written in bulk.

    PostgreSQL draws them from the table's sequence (safe with concurrent writers); SQLite has a
    single writer per database, so the next free ids after the current maximum are taken.
    """
    if count == 0:
        return pl.Series("id", [], dtype=pl.Int64)
    if conn.dialect.name == "postgresql":
        rows = conn.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence(:table, 'id')) "
                "FROM generate_series(1, :count)"
            ),
            {"table": table.name, "count": count},
        ).scalars()
        return pl.Series("id", list(rows), dtype=pl.Int64)
    start = conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()
    return pl.int_range(start + 1, start + 1 + count, eager=True, dtype=pl.Int64).alias("id")


def changed_mask(new: pl.DataFrame, old_suffix: str, columns: Sequence[str]) -> pl.Expr:
    """True where any of ``columns`` differs (null-safe) from its ``<col><old_suffix>`` twin."""
    if not columns:
        return pl.lit(False)
    diffs = [~pl.col(c).eq_missing(pl.col(f"{c}{old_suffix}")) for c in columns]
    return pl.any_horizontal(diffs)
