"""The analytical snapshot: the operational tables the profile engine reads, kept in DuckDB.

The first refresh copies every table (cold); later refreshes read only rows changed since the
table's high-water mark — ``updated_at`` for mutable tables, ``id`` for append-only ones — and
replace them in the snapshot (delete by id, insert). Big reads go through ADBC, which hands
Arrow batches straight from SQLite or PostgreSQL (COPY) to DuckDB without Python objects per
row; on SQLite a small delta (a day's changes) is read in this process instead, through the
standard library's ``sqlite3`` (see :func:`read_sqlite_delta`).
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from sqlalchemy.engine import make_url

from baoke.errors import BaokeError, ConfigError


@dataclass(frozen=True)
class SnapshotTable:
    """One mirrored table: its columns with DuckDB types and how changes are found."""

    name: str  # name in the snapshot
    source: str  # name in the operational store
    columns: tuple[tuple[str, str], ...]  # (column, DuckDB type)
    mark: str  # "updated_at" or "id"
    window_column: str | None = None  # only rows with this time inside the events window


TABLES: tuple[SnapshotTable, ...] = (
    SnapshotTable(
        "customers",
        "customers",
        (
            ("id", "BIGINT"),
            ("mobile", "VARCHAR"),
            ("mobile_status", "VARCHAR"),
            ("name", "VARCHAR"),
            ("title", "VARCHAR"),
            ("email", "VARCHAR"),
            ("city", "VARCHAR"),
            ("birthday", "DATE"),
            ("family", "VARCHAR"),
            ("home_dealer_id", "BIGINT"),
            ("tags", "VARCHAR"),
            ("updated_at", "TIMESTAMP"),
        ),
        "updated_at",
    ),
    SnapshotTable(
        "vehicles",
        "vehicles",
        (
            ("id", "BIGINT"),
            ("customer_id", "BIGINT"),
            ("dealer_id", "BIGINT"),
            ("series", "VARCHAR"),
            ("model", "VARCHAR"),
            ("purchase_date", "DATE"),
            ("delivery_date", "DATE"),
            ("insurance_expiry", "DATE"),
            ("warranty_end", "DATE"),
            ("updated_at", "TIMESTAMP"),
        ),
        "updated_at",
    ),
    SnapshotTable(
        "service_orders",
        "service_orders",
        (
            ("id", "BIGINT"),
            ("customer_id", "BIGINT"),
            ("vehicle_id", "BIGINT"),
            ("dealer_id", "BIGINT"),
            ("order_type", "VARCHAR"),
            ("settled_on", "DATE"),
            ("amount_fen", "BIGINT"),
            ("mileage_km", "BIGINT"),
            ("updated_at", "TIMESTAMP"),
        ),
        "updated_at",
    ),
    SnapshotTable(
        "mileage_readings",
        "mileage_readings",
        (
            ("id", "BIGINT"),
            ("vehicle_id", "BIGINT"),
            ("read_on", "DATE"),
            ("odometer_km", "BIGINT"),
        ),
        "id",
    ),
    SnapshotTable(
        "leads",
        "leads",
        (
            ("id", "BIGINT"),
            ("customer_id", "BIGINT"),
            ("dealer_id", "BIGINT"),
            ("stage", "VARCHAR"),
            ("status", "VARCHAR"),
            ("lost_reason", "VARCHAR"),
            ("model_of_interest", "VARCHAR"),
            ("created_on", "DATE"),
            ("lost_on", "DATE"),
            ("updated_at", "TIMESTAMP"),
        ),
        "updated_at",
    ),
    SnapshotTable(
        "complaints",
        "complaints",
        (
            ("id", "BIGINT"),
            ("customer_id", "BIGINT"),
            ("dealer_id", "BIGINT"),
            ("severity", "VARCHAR"),
            ("status", "VARCHAR"),
            ("satisfaction", "BIGINT"),
            ("opened_at", "TIMESTAMP"),
            ("resolved_at", "TIMESTAMP"),
            ("updated_at", "TIMESTAMP"),
        ),
        "updated_at",
    ),
    SnapshotTable(
        "consents",
        "consents",
        (
            ("id", "BIGINT"),
            ("customer_id", "BIGINT"),
            ("channel", "VARCHAR"),
            ("purpose", "VARCHAR"),
            ("granted", "BOOLEAN"),
            ("granted_at", "TIMESTAMP"),
            ("withdrawn_at", "TIMESTAMP"),
            ("updated_at", "TIMESTAMP"),
        ),
        "updated_at",
    ),
    SnapshotTable(
        "events",
        "behaviour_events",
        (
            ("id", "BIGINT"),
            ("customer_id", "BIGINT"),
            ("occurred_at", "TIMESTAMP"),
            ("event_type", "VARCHAR"),
            ("source", "VARCHAR"),
            ("target", "VARCHAR"),
        ),
        "id",
        window_column="occurred_at",
    ),
    SnapshotTable(
        "wecom_relations",
        "wecom_relations",
        (
            ("id", "BIGINT"),
            ("customer_id", "BIGINT"),
            ("staff_id", "BIGINT"),
            ("state", "VARCHAR"),
            ("added_at", "TIMESTAMP"),
            ("deleted_at", "TIMESTAMP"),
            ("deleted_by", "VARCHAR"),
            ("updated_at", "TIMESTAMP"),
        ),
        "updated_at",
    ),
)

LARGEST_FIRST = (
    "events",
    "service_orders",
    "consents",
    "customers",
    "vehicles",
    "mileage_readings",
    "wecom_relations",
    "leads",
    "complaints",
)

# The keys of the rows each refresh replaced or dropped, for whoever keeps something derived
# per customer (the profile facts): the customer a row belongs to (before and after the
# change) and the car it is about, or ``everything`` when a table was copied whole. The
# consumer deletes what it has used; a refresh only appends.
CHANGED_KEYS = "changed_keys"

# On PostgreSQL a transaction stamps its rows with its start time and may commit after a
# refresh has seen later rows, so refreshes re-read a margin before the mark. SQLite has one
# writer at a time: rows committed later always carry later times, so no margin is needed.
MARK_MARGIN = {"postgresql": dt.timedelta(minutes=10), "sqlite": dt.timedelta(0)}


# A delta of at most this many rows (all tables together) is read in this process: starting the
# child reader costs a few tenths of a second, reading a row through sqlite3 a few microseconds.
IN_PROCESS_ROWS = 20_000

# How long the refresh waits for another writer to finish before it reads without the write
# barrier (see ``write_barrier``); it then keeps the marks it found, as before the barrier.
BARRIER_WAIT_SECONDS = 0.5


@dataclass
class SnapshotStats:
    """What a snapshot refresh read."""

    cold: bool
    rows_read: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    in_process: bool = False  # the delta was read through sqlite3, not the child reader


def adbc_uri(url: str) -> tuple[str, str]:
    """("sqlite"|"postgresql", driver URI) for a SQLAlchemy URL."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return "sqlite", parsed.database or ":memory:"
    if backend == "postgresql":
        plain = parsed.set(drivername="postgresql")
        return "postgresql", plain.render_as_string(hide_password=False)
    raise ConfigError(f"the profile engine reads SQLite or PostgreSQL, not {backend}")


def fetch_arrow(url: str, queries: dict[str, str]) -> dict[str, pa.Table]:
    """Run ``queries`` against the store; one Arrow table per query.

    PostgreSQL: ADBC in this process (binary COPY). SQLite: ADBC in a child process (see
    ``sqlite_reader`` for why), handing the results over as memory-mapped Arrow files.
    """
    backend, uri = adbc_uri(url)
    if backend == "postgresql":
        import adbc_driver_postgresql.dbapi as pg_dbapi

        tables = {}
        with pg_dbapi.connect(uri) as conn:
            for name, sql in queries.items():
                with conn.cursor() as cursor:
                    cursor.execute(sql)
                    tables[name] = cursor.fetch_arrow_table()
        return tables
    with tempfile.TemporaryDirectory(prefix="baoke-read-") as tmp:
        spec = {"database": uri, "out": tmp, "queries": queries}
        done = subprocess.run(
            [sys.executable, "-m", "baoke.profiles.sqlite_reader"],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["unknown error"])[-1]
            raise BaokeError(f"reading the store for the snapshot failed: {last}")
        tables = {}
        for name in queries:
            with pa.memory_map(str(Path(tmp) / f"{name}.arrow")) as source:
                # read_all copies out of the map, so the temporary files can go.
                tables[name] = pa.ipc.open_file(source).read_all()
        return tables


def write_barrier(database: str) -> str | None:
    """SQLite's clock, read while holding the write lock for an instant; None if busy.

    Rows are stamped ``updated_at = CURRENT_TIMESTAMP`` by a writer that holds the write lock
    (SQLite has one writer at a time). While this connection holds it, no other transaction
    has written anything it has not committed; so every row stamped before the returned
    second is committed already, and every row written from now on is stamped in it or
    later. A read that starts after this call may therefore set a table's next mark to the
    returned second: without it the mark is the newest stamp read, and every row stamped in
    that second (a whole bulk import, often) is read again on every refresh.
    """
    try:
        conn = sqlite3.connect(database, timeout=BARRIER_WAIT_SECONDS, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT CURRENT_TIMESTAMP").fetchone()
        finally:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return str(row[0]) if row and row[0] else None


def read_sqlite_delta(
    database: str, queries: dict[str, str], limit: int | None = None
) -> dict[str, pa.Table] | None:
    """Run ``queries`` in this process if together they return at most ``limit`` rows
    (default ``IN_PROCESS_ROWS``).

    Through the standard library's ``sqlite3``: the very SQLite library SQLAlchemy uses, so
    the two-libraries locking problem (see ``sqlite_reader``) does not arise. The rows are
    counted first (the delta conditions are on indexed columns, so counting costs what the
    delta does) in the same read transaction as the reads, so the counts hold. Columns come
    out as the ADBC driver gives them: integers as int64, text as string, a column with no
    value at all as int64 nulls. None (read nothing) when the delta is bigger, or when a
    column mixes kinds of values, so the child reader decides as it always has.
    """
    try:
        conn = sqlite3.connect(database, isolation_level=None)
        try:
            conn.execute("BEGIN")  # one read transaction: the counts hold for the reads
            return _read_delta(conn, queries, IN_PROCESS_ROWS if limit is None else limit)
        finally:
            conn.close()  # ends the read transaction
    except sqlite3.Error:
        return None  # the child reader reports what is wrong, as it always has


def _read_delta(
    conn: sqlite3.Connection, queries: dict[str, str], limit: int
) -> dict[str, pa.Table] | None:
    total = 0
    for sql in queries.values():
        row = conn.execute(f"SELECT count(*) FROM ({sql})").fetchone()
        total += int(row[0])
        if total > limit:
            return None
    tables: dict[str, pa.Table] = {}
    for name, sql in queries.items():
        cursor = conn.execute(sql)
        names = [column[0] for column in cursor.description]
        table = _rows_to_arrow(names, cursor.fetchall())
        if table is None:
            return None
        tables[name] = table
    return tables


def _rows_to_arrow(names: list[str], rows: list[tuple[Any, ...]]) -> pa.Table | None:
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrays = []
    for values in columns:
        try:
            array = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return None
        if pa.types.is_null(array.type):
            array = pa.nulls(len(values), pa.int64())
        elif not (
            pa.types.is_int64(array.type)
            or pa.types.is_string(array.type)
            or pa.types.is_float64(array.type)
        ):
            return None  # bytes, or something the child's driver would type otherwise
        arrays.append(array)
    return pa.table(arrays, names=names)


class Snapshot:
    """The DuckDB file holding the mirrored tables and their high-water marks."""

    def __init__(self, path: Path, *, checkpoint_threshold: str | None = None) -> None:
        """Open (or create) the snapshot at ``path``.

        ``checkpoint_threshold`` (a DuckDB size such as ``'256MB'``) is for a snapshot kept
        open across many refreshes: changes stay in the write-ahead log until it reaches that
        size, instead of being checkpointed into the file at every close.
        """
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # No progress bar: it would print into the JSON a command writes on stdout.
        self.db = duckdb.connect(str(path))
        self.db.execute("SET enable_progress_bar = false")
        if checkpoint_threshold is not None:
            self.db.execute("SET checkpoint_threshold = ?", [checkpoint_threshold])
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS _marks (tbl VARCHAR PRIMARY KEY, mark VARCHAR, "
            "source_url VARCHAR)"
        )
        self.db.execute(
            f"CREATE TABLE IF NOT EXISTS {CHANGED_KEYS} "
            "(customer_id BIGINT, vehicle_id BIGINT, everything BOOLEAN)"
        )

    def close(self) -> None:
        """Close the DuckDB connection."""
        self.db.close()

    def refresh(self, url: str, as_of: dt.date, events_window_days: int) -> SnapshotStats:
        """Bring every table up to date with the store at ``url``."""
        started = time.perf_counter()
        marks = dict(self.db.execute("SELECT tbl, mark FROM _marks").fetchall())
        owner = self.db.execute("SELECT DISTINCT source_url FROM _marks").fetchall()
        if owner and owner[0][0] != _fingerprint(url):
            # Another store: start over rather than mix two stores' rows.
            marks = {}
        cold = not marks
        window_start = as_of - dt.timedelta(days=events_window_days)
        stats = SnapshotStats(cold=cold)
        backend, database = adbc_uri(url)
        # Largest first, so the reader's two threads finish together.
        order = sorted(TABLES, key=lambda t: LARGEST_FIRST.index(t.name))
        queries = {
            table.name: self._query(table, marks.get(table.name), window_start, backend)
            for table in order
        }
        barrier = write_barrier(database) if backend == "sqlite" else None
        arrows = None
        if backend == "sqlite" and not cold:
            arrows = read_sqlite_delta(database, queries)
            stats.in_process = arrows is not None
        if arrows is None:
            arrows = fetch_arrow(url, queries)
        for table in TABLES:
            stats.rows_read[table.name] = self._apply(
                table, arrows.pop(table.name), marks.get(table.name), window_start
            )
        source = _fingerprint(url)
        rows = []
        for table in TABLES:
            mark = self._current_mark(table)
            if barrier is not None and table.mark == "updated_at":
                mark = barrier
            rows.append((table.name, mark, source))
        # One statement for all marks: each DuckDB statement costs about a millisecond.
        self.db.execute("DELETE FROM _marks")
        self.db.execute(
            f"INSERT INTO _marks VALUES {', '.join(['(?, ?, ?)'] * len(rows))}",
            [value for row in rows for value in row],
        )
        stats.seconds = time.perf_counter() - started
        return stats

    def _query(
        self, table: SnapshotTable, mark: str | None, window_start: dt.date, backend: str
    ) -> str:
        """The SELECT that reads what changed in ``table`` since ``mark`` (everything if None)."""
        select = ", ".join(name for name, _ in table.columns)
        zone = "+00" if backend == "postgresql" else ""  # marks are naive UTC
        conditions = []
        if mark is not None:
            if table.mark == "id":
                conditions.append(f"id > {int(mark)}")
            else:
                # Whole seconds, compared with >=: SQLite stamps rows to the second, so rows
                # written in the mark's own second after the last refresh are read again.
                since = dt.datetime.fromisoformat(mark) - MARK_MARGIN[backend]
                conditions.append(f"updated_at >= '{since:%Y-%m-%d %H:%M:%S}{zone}'")
        if table.window_column:
            conditions.append(f"{table.window_column} >= '{window_start:%Y-%m-%d}{zone}'")
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return f"SELECT {select} FROM {table.source}{where}"

    def _apply(
        self, table: SnapshotTable, arrow: pa.Table, mark: str | None, window_start: dt.date
    ) -> int:
        """Replace the changed rows (all rows when cold) of ``table`` in the snapshot."""
        if mark is not None and arrow.num_rows == 0:
            self._drop_outside_window(table, window_start)  # nothing changed: no delta to read
            return 0
        arrow = _naive_utc(arrow)
        typed = ", ".join(
            f"CAST({_cast_source(name, kind, arrow.schema.field(name).type)} AS {kind}) AS {name}"
            for name, kind in table.columns
        )
        self.db.register("_delta", arrow)
        try:
            if mark is None:
                self.db.execute(
                    f"CREATE OR REPLACE TABLE {table.name} AS SELECT {typed} FROM _delta"
                )
                self.db.execute(f"INSERT INTO {CHANGED_KEYS} (everything) VALUES (true)")
            elif arrow.num_rows:
                self._record_changes(table, "(SELECT CAST(id AS BIGINT) FROM _delta)", "_delta")
                self.db.execute(
                    f"DELETE FROM {table.name} WHERE id IN (SELECT CAST(id AS BIGINT) FROM _delta)"
                )
                self.db.execute(f"INSERT INTO {table.name} SELECT {typed} FROM _delta")
            self._drop_outside_window(table, window_start)
        finally:
            self.db.unregister("_delta")
        return int(arrow.num_rows)

    def _drop_outside_window(self, table: SnapshotTable, window_start: dt.date) -> None:
        """A windowed table (events) keeps only the rows inside its window."""
        if table.window_column:
            outside = f"{table.window_column} < TIMESTAMP '{window_start:%Y-%m-%d}'"
            self._record_changes(table, f"(SELECT id FROM {table.name} WHERE {outside})")
            self.db.execute(f"DELETE FROM {table.name} WHERE {outside}")

    def _record_changes(self, table: SnapshotTable, ids: str, delta: str | None = None) -> None:
        """Append to ``changed_keys`` the keys of ``table``'s rows whose id is in ``ids`` (as
        they are before the change) and of the new rows in ``delta``."""
        names = {name for name, _ in table.columns}
        customer = "id" if table.name == "customers" else "customer_id"
        if customer not in names:
            customer = "NULL"
        vehicle = "vehicle_id" if "vehicle_id" in names else "NULL"
        keys = f"CAST({customer} AS BIGINT), CAST({vehicle} AS BIGINT)"
        rows = f"SELECT {keys} FROM {table.name} WHERE id IN {ids}"
        if delta is not None:
            rows += f" UNION ALL SELECT {keys} FROM {delta}"
        self.db.execute(
            f"INSERT INTO {CHANGED_KEYS} (customer_id, vehicle_id) SELECT * FROM ({rows}) "
            "k(customer_id, vehicle_id) WHERE customer_id IS NOT NULL OR vehicle_id IS NOT NULL"
        )

    def _current_mark(self, table: SnapshotTable) -> str | None:
        column = "id" if table.mark == "id" else "updated_at"
        row = first_row(self.db.execute(f"SELECT max({column}) FROM {table.name}").fetchall())
        if row is None or row[0] is None:
            return "0" if table.mark == "id" else None
        return str(row[0])

    def table_arrow(self, name: str) -> pa.Table:
        """A whole snapshot table as Arrow (used to hand the same data to Spark)."""
        return self.db.sql(f"SELECT * FROM {name}").to_arrow_table()


def first_row(rows: list[Any]) -> Any:
    """The first row of a result, or None (DuckDB wants results read to the end)."""
    return rows[0] if rows else None


def scalar(db: duckdb.DuckDBPyConnection, sql: str) -> int:
    """The integer a one-value query returns (a count), 0 when it returns no row."""
    row = first_row(db.execute(sql).fetchall())
    return int(row[0]) if row else 0


def keep_day(db: duckdb.DuckDBPyConnection, state: str, day: dt.date, made_by: str) -> None:
    """Record in the one-row ``state`` table that its kept table is of ``day``, made by
    ``made_by`` (read back by :func:`kept_day`; written in the transaction that made it)."""
    db.execute(
        f"CREATE OR REPLACE TABLE {state} AS SELECT ?::DATE AS as_of, ?::VARCHAR AS made_by",
        [day, made_by],
    )


def kept_day(db: duckdb.DuckDBPyConnection, kept: str, state: str, made_by: str) -> dt.date | None:
    """The day the table ``kept`` is of, from its one-row ``state`` table (as_of, made_by):
    None unless both exist and the table was made by ``made_by``."""
    tables = {
        str(row[0])
        for row in db.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' "
            "AND table_name IN (?, ?)",
            [kept, state],
        ).fetchall()
    }
    if tables != {kept, state}:
        return None
    row = first_row(db.execute(f"SELECT as_of, made_by FROM {state}").fetchall())
    if row is None or row[1] != made_by:
        return None
    day: dt.date = row[0]
    return day


def _naive_utc(arrow: pa.Table) -> pa.Table:
    """PostgreSQL's timestamptz arrives zoned; the snapshot keeps naive UTC timestamps."""
    for index, column in enumerate(arrow.schema):
        if pa.types.is_timestamp(column.type) and column.type.tz is not None:
            naive = arrow.column(index).cast(pa.timestamp(column.type.unit))
            arrow = arrow.set_column(index, column.name, naive)
    return arrow


def _cast_source(name: str, kind: str, arrow_type: pa.DataType) -> str:
    # SQLite gives dates and times as text in SQLAlchemy's format ('2024-03-01' or
    # '2024-03-01 10:00:00.000000'), PostgreSQL typed values; both cast cleanly, except a
    # date stored as text with a time part.
    if kind == "DATE" and pa.types.is_string(arrow_type):
        return f"{name}[1:10]"
    if kind in ("DATE", "TIMESTAMP") and pa.types.is_integer(arrow_type):
        return f"CAST({name} AS VARCHAR)"  # a column with no value at all (see sqlite_reader)
    return name


def _fingerprint(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
