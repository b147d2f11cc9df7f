"""Reads SQLite tables into Arrow files in a separate process.

The ADBC SQLite driver carries its own copy of the SQLite library. Two copies of SQLite in one
process break each other's POSIX locks (closing one copy's file handle drops the other's locks),
which can corrupt a WAL database that SQLAlchemy's connection is using at the same time. So the
fast Arrow reader runs in a child process, writes Arrow IPC files, and the parent maps them.

Protocol: a JSON object on stdin ``{"database": path, "out": dir, "queries": {name: sql}}``;
the child writes ``<out>/<name>.arrow`` for each query and prints ``{name: rows}`` as JSON.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa

# The driver guesses each column's type from its first batch and fails when a later batch
# disagrees (a column empty at first, text later). One batch per query makes the guess see
# every value; a column empty throughout arrives as int64 nulls, which the snapshot casts.
ONE_BATCH = str(100_000_000)


def _read(database: str, sql: str, target: Path) -> int:
    import adbc_driver_sqlite.dbapi as sqlite_dbapi

    with sqlite_dbapi.connect(database) as conn, conn.cursor() as cursor:
        cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": ONE_BATCH})
        cursor.execute(sql)
        table = cursor.fetch_arrow_table()
    with pa.OSFile(str(target), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return int(table.num_rows)


def main() -> None:
    """Child entry point: read every query (two at a time, one per core) and report rows."""
    spec: dict[str, Any] = json.load(sys.stdin)
    out = Path(spec["out"])
    queries: dict[str, str] = spec["queries"]
    # Largest tables first so the two threads finish together.
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            name: pool.submit(_read, spec["database"], sql, out / f"{name}.arrow")
            for name, sql in queries.items()
        }
        rows = {name: future.result() for name, future in futures.items()}
    json.dump(rows, sys.stdout)


if __name__ == "__main__":
    main()
