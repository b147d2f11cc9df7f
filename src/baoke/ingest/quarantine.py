"""Write rejected rows to ``<source stem>.quarantine.csv`` next to the source file.

The quarantine file holds the rejected rows exactly as read (original columns, original
spelling) plus a final ``reason`` column, encoded as UTF-8 with a BOM so that Excel shows the
Chinese text correctly. A user fixes the rows in it and re-imports the file.

Life cycle (each import run describes its own rejects):

* the file is created lazily, when the first bad row of this run is written; a quarantine file
  left by an earlier run is truncated and replaced at that moment (rows are appended as they
  come, so an interrupted run leaves the rows written so far);
* a run that writes no bad rows removes a stale quarantine file from an earlier run on
  :meth:`QuarantineWriter.close`, so a leftover file never suggests problems that were fixed;
* if the source directory is not writable, the file goes to the current directory instead.

Rows are written as they arrive, so memory stays flat however many rows are rejected.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from types import TracebackType
from typing import IO

import polars as pl

from baoke.errors import InputError

REASON_COL = "reason"


def quarantine_path(source: Path) -> Path:
    """Where the quarantine file for ``source`` goes: ``<dir>/<stem>.quarantine.csv``."""
    return source.with_name(f"{source.stem}.quarantine.csv")


class QuarantineWriter:
    """Append rejected rows and their reasons to a CSV next to the source."""

    def __init__(self, source: Path, columns: list[str]) -> None:
        self._source = Path(source)
        self._columns = list(columns)
        self._target = quarantine_path(self._source)
        self._fh: IO[bytes] | None = None
        self._count = 0
        self._closed = False
        header_names = [*self._columns, REASON_COL]
        if REASON_COL in self._columns:
            header_names[-1] = "quarantine_reason"
        self._header = header_names

    @property
    def path(self) -> Path | None:
        """The quarantine file, once at least one row was written."""
        return self._target if self._count else None

    @property
    def count(self) -> int:
        """Number of rows written so far."""
        return self._count

    def _open(self) -> IO[bytes]:
        if self._fh is not None:
            return self._fh
        for target in (self._target, Path.cwd() / self._target.name):
            try:
                fh = target.open("wb")
            except OSError:
                continue
            self._target, self._fh = target, fh
            fh.write(b"\xef\xbb\xbf")
            self._write_frame(pl.DataFrame(schema={n: pl.String for n in self._header}), True)
            return fh
        raise InputError(f"cannot write quarantine file {self._target}")

    def _write_frame(self, frame: pl.DataFrame, header: bool) -> None:
        assert self._fh is not None
        buf = io.BytesIO()
        frame.write_csv(buf, include_header=header, quote_style="necessary")
        self._fh.write(buf.getvalue())

    def write(self, rows: pl.DataFrame, reasons: pl.Series) -> None:
        """Append ``rows`` (original columns; extra columns are ignored) with their reasons."""
        if self._closed:
            raise ValueError("QuarantineWriter is closed")
        if rows.height != len(reasons):
            raise ValueError("rows and reasons differ in length")
        if rows.height == 0:
            return
        self._open()
        cols = [
            (
                rows.get_column(c).cast(pl.String)
                if c in rows.columns
                else pl.Series(c, [None] * rows.height, dtype=pl.String)
            ).alias(c)
            for c in self._columns
        ]
        out = pl.DataFrame([*cols, reasons.cast(pl.String).alias(self._header[-1])])
        self._write_frame(out, False)
        self._count += rows.height

    def close(self) -> None:
        """Finish the file (or remove a stale one when nothing was written)."""
        if self._closed:
            return
        self._closed = True
        if self._fh is not None:
            self._fh.close()
        elif self._target.exists():
            with contextlib.suppress(OSError):
                self._target.unlink()

    def __enter__(self) -> QuarantineWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
